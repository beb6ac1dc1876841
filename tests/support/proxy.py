"""A reverse HTTP proxy in front of a registry that corrupts chosen blobs in transit.

`FlipProxy(upstream_url, corrupt={digest, ...})` listens on 127.0.0.1 and forwards every request to
the upstream registry; a GET of /v2/<repo>/blobs/<digest> for a digest in `corrupt` comes back with
one byte flipped in the middle of the body (same length, so only the digest check can catch it).
`.hits` counts the corrupted responses. `fail_first={digest: n}` answers the first n GETs of that
blob with 503 (a transient error); `stall={digest}` never answers that blob (until stop()).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from support.registry import free_port

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class FlipProxy:
    def __init__(
        self,
        upstream: str,
        corrupt: set[str] = frozenset(),
        *,
        fail_first: dict[str, int] | None = None,
        stall: set[str] = frozenset(),
    ):
        self.upstream = upstream.rstrip("/")
        self.corrupt = set(corrupt)
        self.fail_first = dict(fail_first or {})
        self.stall = set(stall)
        self.failed = 0
        self._stop = threading.Event()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.hits = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FlipProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self, method: str):
                digest = self.path.rsplit("/", 1)[-1].split("?")[0]
                if method == "GET" and "/blobs/" in self.path:
                    if digest in proxy.stall:
                        proxy._stop.wait(120)
                        return
                    if proxy.fail_first.get(digest, 0) > 0:
                        proxy.fail_first[digest] -= 1
                        proxy.failed += 1
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP | {"host"}}
                with httpx.Client(timeout=60) as c:
                    r = c.request(method, proxy.upstream + self.path, headers=headers)
                body = r.content
                if method == "GET" and "/blobs/" in self.path and digest in proxy.corrupt and body:
                    b = bytearray(body)
                    b[len(b) // 2] ^= 0xFF
                    body = bytes(b)
                    proxy.hits += 1
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                self._forward("GET")

            def do_HEAD(self):
                self._forward("HEAD")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
