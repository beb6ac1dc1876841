"""A reverse HTTP proxy in front of a registry that corrupts chosen blobs in transit.

`FlipProxy(upstream_url, corrupt={digest, ...})` listens on 127.0.0.1 and forwards every request to
the upstream registry; a GET of /v2/<repo>/blobs/<digest> for a digest in `corrupt` comes back with
one byte flipped in the middle of the body (same length, so only the digest check can catch it).
`.hits` counts the corrupted responses. `fail_first={digest: n}` answers the first n GETs of that
blob with 503 (a transient error); `stall={digest}` never answers that blob (until stop()).

`FaultProxy` is the general misbehaving registry for the hostile-registry and push tests: canned
answers (huge, chunked, redirect loops, crafted manifests), stalls before the headers or mid-body,
slow but steady bodies, and a log of every request.
"""

from __future__ import annotations

import threading
import time
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


# --- a registry that misbehaves on purpose -------------------------------------------------------
class Reply:
    """A canned answer: status, headers and body (bytes, or a size of filler to stream); chunked
    sends it without Content-Length; `delay` waits before the headers."""

    def __init__(
        self,
        status: int = 200,
        body: bytes | int = b"",
        headers: dict | None = None,
        *,
        chunked: bool = False,
        delay: float = 0.0,
    ):
        self.status, self.body, self.headers = status, body, dict(headers or {})
        self.chunked, self.delay = chunked, delay


class FaultProxy:
    """A reverse proxy in front of a real registry that misbehaves on chosen paths.

    Every request (any method, Host kept so upload Locations point back here) is forwarded to
    `upstream` unless a rule matches; `log` records (method, path, status) once answered, `seen`
    (method, path) as soon as a request arrives. Rules, keyed by a
    substring of the path, or "=PATH" for exactly that path (the first matching rule wins):
    - `replies[sub] = Reply(...)`: answer that instead (a huge or chunked body, a 302 loop, ...);
    - `stall_after[sub] = n`: forward the headers and the first n bytes of the body, then send
      nothing until stop();
    - `stall[sub]`: never answer (until stop());
    - `drip[sub] = (size, interval)`: forward the body `size` bytes at a time, `interval` s apart;
    - `redirect_loop`: substrings whose requests are redirected to themselves forever;
    - `drop[sub] = n`: forward the next n such requests, then close the connection without
      answering (the registry did the work; the client never hears of it);
    - `methods`: rules apply only to these methods (default GET and HEAD).
    """

    def __init__(self, upstream: str, *, methods: tuple[str, ...] = ("GET", "HEAD")):
        self.upstream = upstream.rstrip("/")
        self.replies: dict[str, Reply] = {}
        self.stall_after: dict[str, int] = {}
        self.stall: set[str] = set()
        self.drip: dict[str, tuple[int, float]] = {}
        self.redirect_loop: set[str] = set()
        self.drop: dict[str, int] = {}
        self.methods = methods
        self.log: list[tuple[str, str, int]] = []
        self.seen: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._server: ThreadingHTTPServer | None = None

    def _rule(self, table, method: str, path: str):
        if method not in self.methods:
            return None
        for sub in table:
            if (sub[1:] == path) if sub.startswith("=") else (sub in path):
                return table[sub] if isinstance(table, dict) else sub
        return None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _head(self, status: int, headers: dict, length: int | None) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if length is None:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def _reply(self, method: str, rep: Reply) -> None:
                if rep.delay:
                    time.sleep(rep.delay)
                body = rep.body
                size = body if isinstance(body, int) else len(body)
                self._head(rep.status, rep.headers, None if rep.chunked else size)
                if method == "HEAD":
                    return
                sent = 0
                while sent < size:
                    n = min(1 << 16, size - sent)
                    part = b" " * n if isinstance(body, int) else body[sent : sent + n]
                    self.wfile.write(b"%x\r\n%s\r\n" % (n, part) if rep.chunked else part)
                    sent += n
                if rep.chunked:
                    self.wfile.write(b"0\r\n\r\n")

            def _forward(self, method: str):
                path = self.path
                proxy.seen.append((method, path))
                status = 0
                try:
                    status = self._handle(method, path)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    proxy.log.append((method, path, status))

            def _handle(self, method: str, path: str) -> int:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                if proxy._rule(proxy.stall, method, path):
                    proxy._stop.wait(120)
                    self.close_connection = True
                    return -1
                if proxy._rule(proxy.redirect_loop, method, path):
                    self._head(302, {"Location": path}, 0)
                    return 302
                rep = proxy._rule(proxy.replies, method, path)
                if rep is not None:
                    self._reply(method, rep)
                    return rep.status
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                with httpx.Client(timeout=60) as c:
                    r = c.request(method, proxy.upstream + path, headers=headers, content=data)
                body = r.content
                sub = proxy._rule({k: k for k in proxy.drop}, method, path)
                if sub is not None and proxy.drop[sub] > 0:
                    proxy.drop[sub] -= 1
                    self.close_connection = True
                    return -2
                out = {k: v for k, v in r.headers.items() if k.lower() not in HOP}
                self._head(r.status_code, out, len(body))
                if method == "HEAD":
                    return r.status_code
                cut = proxy._rule(proxy.stall_after, method, path)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    proxy._stop.wait(120)
                    self.close_connection = True
                    return r.status_code
                drip = proxy._rule(proxy.drip, method, path)
                step, pause = drip if drip else (len(body) or 1, 0.0)
                for i in range(0, len(body), step):
                    self.wfile.write(body[i : i + step])
                    self.wfile.flush()
                    if pause and i + step < len(body):
                        time.sleep(pause)
                return r.status_code

            def do_GET(self):
                self._forward("GET")

            def do_HEAD(self):
                self._forward("HEAD")

            def do_POST(self):
                self._forward("POST")

            def do_PUT(self):
                self._forward("PUT")

            def do_PATCH(self):
                self._forward("PATCH")

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

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
