"""A small token server implementing the Docker registry token spec, and a registry that trusts it.

`TokenServer` serves GET /token?service=S&scope=repository:NAME:ACTIONS on 127.0.0.1, answering
{"token", "access_token", "expires_in", "issued_at"} with an RS256 JWT that Debian's docker-registry
(auth: token) accepts: `kid` is the libtrust key id of the signing key, whose self-signed certificate
is the registry's rootcertbundle. Signing uses the openssl CLI (no Python crypto dependency).
With `users`, requests must carry Basic credentials; with `anonymous=True`, requests without
credentials get pull access. Every request is logged in `.requests` for assertions.
`TokenRegistry` is a `support.registry.Registry` that starts with `auth: token` and pushes with an
admin token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
from support.registry import Registry, free_port

SERVICE = "rootless-test-registry"
ISSUER = "rootless-test-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _libtrust_kid(der_spki: bytes) -> str:
    digest = hashlib.sha256(der_spki).digest()[:30]  # 240 bits
    s = base64.b32encode(digest).decode().rstrip("=")
    return ":".join(s[i : i + 4] for i in range(0, 48, 4))


class TokenServer:
    def __init__(
        self, workdir: str, *, users: dict[str, str] | None = None, anonymous: bool = False
    ):
        self.workdir = workdir
        self.users = users or {}
        self.anonymous = anonymous
        self.requests: list[dict] = []
        os.makedirs(workdir, exist_ok=True)
        self.key = os.path.join(workdir, "token.key")
        self.cert = os.path.join(workdir, "token.crt")
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                self.key,
                "-out",
                self.cert,
                "-days",
                "2",
                "-subj",
                "/CN=rootless-test-token",
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "pkey", "-in", self.key, "-pubout", "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.kid = _libtrust_kid(der)
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._server: ThreadingHTTPServer | None = None

    def make_token(self, access: list[dict], subject: str = "") -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64(sig)}"

    def start(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urlparse(self.path)
                q = parse_qs(u.query)
                user = None
                hdr = self.headers.get("Authorization", "")
                if hdr.startswith("Basic "):
                    user, _, pw = base64.b64decode(hdr[6:]).decode().partition(":")
                    if server.users.get(user) != pw:
                        return self._reply(401, {"details": "bad credentials"})
                elif not server.anonymous:
                    return self._reply(401, {"details": "credentials required"})
                server.requests.append({"path": u.path, "query": q, "user": user})
                if u.path != "/token" or q.get("service", [""])[0] != SERVICE:
                    return self._reply(400, {"details": "bad service"})
                access = []
                for scope in q.get("scope", []):
                    typ, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    allowed = [
                        a for a in actions.split(",") if a == "pull" or (a == "push" and user)
                    ]
                    access.append({"type": typ, "name": name, "actions": allowed})
                tok = server.make_token(access, user or "")
                self._reply(
                    200,
                    {
                        "token": tok,
                        "access_token": tok,
                        "expires_in": 600,
                        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                )

            def _reply(self, code: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class TokenRegistry(Registry):
    """docker-registry with `auth: token` trusting `tokens`; pushes with an admin token."""

    def __init__(self, workdir: str, tokens: TokenServer):
        super().__init__(workdir)
        self.tokens = tokens

    def start(self) -> TokenRegistry:
        os.makedirs(self.workdir, exist_ok=True)
        cfg = (
            "\n".join(
                [
                    "version: 0.1",
                    "log:",
                    "  level: warn",
                    "storage:",
                    "  filesystem:",
                    f"    rootdirectory: {self.workdir}/data",
                    "http:",
                    f"  addr: {self.host}",
                    "auth:",
                    "  token:",
                    f"    realm: {self.tokens.realm}",
                    f"    service: {SERVICE}",
                    f"    issuer: {ISSUER}",
                    f"    rootcertbundle: {self.tokens.cert}",
                ]
            )
            + "\n"
        )
        path = os.path.join(self.workdir, "config.yml")
        with open(path, "w") as f:
            f.write(cfg)
        self.log = open(os.path.join(self.workdir, "registry.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", path], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: see {self.workdir}/registry.log")
            try:
                if httpx.get(self.url + "/v2/", timeout=1).status_code == 401:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not come up within 20 s")

    def _client(self) -> httpx.Client:
        tok = self.tokens.make_token(
            [
                {"type": "repository", "name": "busybox", "actions": ["pull", "push"]},
                {"type": "repository", "name": "private", "actions": ["pull", "push"]},
            ],
            "admin",
        )
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {tok}"}, timeout=60
        )
