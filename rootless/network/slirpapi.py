"""The slirp4netns API socket client: one JSON request per connection (``add_hostfwd``,
``list_hostfwd``), the client shutting down its write side and reading the reply to EOF.

A container's runtime dir can be too deep for sockaddr_un (108 bytes): a long socket path is reached
through /proc/self/fd/N of its directory.
"""

import json
import os
import socket

from rootless.errors import NetworkError


def request(path: str, req: dict, timeout: float = 5.0) -> dict:
    """One exchange: connect, send one JSON request, shut the write side, read the reply to EOF."""
    dir_fd = None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            if len(os.fsencode(path)) > 100:  # too long for sockaddr_un: through the directory's fd
                dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
                s.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
            else:
                s.connect(path)
            s.sendall(json.dumps(req).encode())
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except OSError as e:
            raise NetworkError(f"cannot talk to slirp4netns at {path}: {e.strerror or e}") from None
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
    try:
        reply = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        raise NetworkError(
            f"slirp4netns answered {req.get('execute')} with something that is not JSON"
        ) from None
    return reply if isinstance(reply, dict) else {"return": reply}


def describe(reply: dict) -> str:
    """The error text of a reply, for a one-line message."""
    err = reply.get("error")
    if isinstance(err, dict):
        return str(err.get("desc") or err)
    return json.dumps(reply)[:200]


def list_hostfwd(path: str) -> list[dict]:
    """slirp4netns ``list_hostfwd`` entries (the reply comes with or without a ``return`` wrapper)."""
    reply = request(path, {"execute": "list_hostfwd"})
    body = reply.get("return", reply)
    if "error" in reply or not isinstance(body, dict) or not isinstance(body.get("entries"), list):
        raise NetworkError(f"slirp4netns list_hostfwd failed: {describe(reply)}")
    return body["entries"]
