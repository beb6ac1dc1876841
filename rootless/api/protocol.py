"""The Docker API's request and response types, its error JSON and the route registry the endpoint
modules register into: everything a handler needs, so handlers import this and never `routing`.

A handler takes a Request and returns a JSON-able value (200), a Response, a Stream (a chunked body
from an iterator of bytes) or a Hijack (the connection becomes a raw stream: attach, exec start).
Errors are ApiError(status, message) → ``{"message": ...}`` with that status; a RootlessError
becomes 404 (no such container/image/network/volume), 409 (wrong state, in use) or 500 with its
one line (`status_of`).
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import NamedTuple

from rootless.errors import RootlessError

log = logging.getLogger("rootless.api")

API_VERSION = "1.41"  # what the Debian docker client speaks; newer clients negotiate down to it
MIN_API_VERSION = "1.24"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def not_implemented(what: str) -> ApiError:
    return ApiError(501, f"{what} is not implemented by rootless (see docs/api.md)")


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes = b""):
        self.method = method
        url = urllib.parse.urlsplit(target)
        self.path = urllib.parse.unquote(url.path)
        self.query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.args: dict[str, str] = {}
        self.version = API_VERSION
        m = re.match(r"^/v(\d+\.\d+)(/.*)$", self.path)
        if m:
            self.version, self.path = m.group(1), m.group(2)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        v = self.param(name)
        if v is None:
            return default
        return v.lower() not in ("", "0", "false", "no")

    def int_param(self, name: str, default: int | None = None) -> int | None:
        v = self.param(name)
        if v in (None, ""):
            return default
        try:
            return int(v)
        except ValueError:
            raise ApiError(400, f"parameter {name}={v!r}: not an integer") from None

    def json_param(self, name: str, default=None):
        v = self.param(name)
        if not v:
            return default
        try:
            return json.loads(v)
        except ValueError:
            raise ApiError(400, f"parameter {name}: not valid JSON") from None

    def json(self, default=None):
        if not self.body.strip():
            return {} if default is None else default
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None

    @property
    def upgrade(self) -> bool:
        return "upgrade" in self.headers.get("connection", "").lower()


class Response(NamedTuple):
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple = ()


class Stream(NamedTuple):
    """A chunked body: each item of `chunks` is sent (and flushed) as it comes."""

    chunks: Iterable[bytes]
    content_type: str = "application/json"
    status: int = 200
    headers: tuple = ()


class Hijack(NamedTuple):
    """The connection becomes a raw stream: run(sock, early_bytes) owns it until it returns."""

    run: Callable
    content_type: str = "application/vnd.docker.raw-stream"


def json_response(value, status: int = 200) -> Response:
    return Response(status, json.dumps(value).encode())


def error_json(status: int, message: str) -> Response:
    return Response(status, json.dumps({"message": message}).encode() + b"\n")


def json_lines(items: Iterable[dict]) -> Iterable[bytes]:
    for item in items:
        yield item if isinstance(item, bytes) else json.dumps(item).encode() + b"\r\n"


# --- the route registry (filled by the endpoint modules on import) -----------------------------

ROUTES: list[tuple[str, re.Pattern, Callable]] = []
_WARNED: set[str] = set()


def route(method: str, pattern: str):
    """Register a handler: ``{x}`` matches one path segment, ``{x*}`` the rest (image names)."""

    def to_re(p: str) -> re.Pattern:
        p = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.+)", p)
        p = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", p)
        return re.compile(f"^{p}$")

    def deco(fn):
        ROUTES.append((method, to_re(pattern), fn))
        return fn

    return deco


def once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def status_of(e: RootlessError) -> int:
    text = str(e).lower()
    if "no such" in text or "not found" in text or "not known" in text or "unknown image" in text:
        return 404
    if e.exit_code == 2 or "in use" in text or "already" in text or "is running" in text:
        return 409
    if "not running" in text or "cannot" in text and "state" in text:
        return 409
    return 500


def check_params(req: Request, known: Iterable[str]) -> None:
    """A query parameter outside `known` (and not empty or default-looking) is a 400 naming it."""
    allowed = set(known)
    for name, values in req.query.items():
        if name not in allowed and any(v not in ("", "0", "false") for v in values):
            raise ApiError(
                400, f"parameter {name!r} of {req.method} {req.path} is not supported by rootless"
            )
