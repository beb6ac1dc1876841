"""The per-user network namespace, client side: finding (or starting) the helper that holds it, and
the requests containers and `rootless network` send it.

The helper (rootless.network.usernetd) is one per user (per runtime dir). It holds a user
namespace and, in it, a network namespace with a bridge per user-defined network in use, joined to
the host by slirp4netns; containers on networks run in that user namespace (podman's rootless
model), which is what lets the helper move a veth into their network namespaces. It listens on
``<runtime dir>/usernet/ctl.sock`` (SOCK_SEQPACKET, one JSON object per packet, each request
answered by ``{"ok": true, ...}`` or ``{"ok": false, "error": "one line", "code": N}``).

Lifetime: a container's monitor ``attach``es over a connection it keeps for the container's life:
that connection is the session, and its closing (the monitor stopping it, or dying, SIGKILL
included) makes the helper remove the container's interfaces, names and ports. When the last
session is gone, the helper exits and the namespace goes with it. Starting and attaching happen
under an exclusive flock of ``<runtime dir>/usernet.lock``, which the helper also takes before it
exits, so a container never attaches to a helper on its way out.

Requests: ``attach {id, name}`` -> ``{pid}`` (the holder of the namespaces); ``connect {id, name,
pid, endpoints}`` -> ``{endpoints}`` (interfaces, addresses, DNS servers); ``disconnect {id,
network}``; ``ports {id, ports}`` (published ports, to the container's first address);
``names {id, names}`` (more DNS names for a container, e.g. its pod's); ``status``.
"""

from __future__ import annotations

import json
import os
import socket

from rootless import paths
from rootless.errors import NetworkError

START_TIMEOUT = 30.0
REPLY_TIMEOUT = 30.0


def run_dir() -> str:
    return os.path.join(paths.runtime_dir(), "usernet")


def ctl_path() -> str:
    return os.path.join(run_dir(), "ctl.sock")


def lock():
    """The per-user network helper's start/stop lock."""
    return paths.locked(
        os.path.join(paths.runtime_dir(), "usernet.lock"), makedirs=paths.runtime_dir()
    )


def sockaddr(path: str, dir_fd: int) -> str:
    """A unix socket address for `path` that fits sockaddr_un: through /proc/self/fd/N of its
    directory (`dir_fd`, an O_PATH fd the caller keeps open while binding or connecting)."""
    if len(os.fsencode(path)) <= 100:
        return path
    return f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}"


def _connect() -> socket.socket | None:
    """A connection to the running helper, or None if there is none."""
    path = ctl_path()
    try:
        dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        s.connect(sockaddr(path, dir_fd))
    except OSError:
        s.close()
        return None
    finally:
        os.close(dir_fd)
    return s


def exchange(sock: socket.socket, msg: dict, timeout: float = REPLY_TIMEOUT) -> dict:
    """Send one request and read its answer; a refusal becomes a NetworkError (its code kept)."""
    sock.settimeout(timeout)
    try:
        sock.send(json.dumps(msg).encode())
        data = sock.recv(1 << 20)
    except OSError as e:
        raise NetworkError(
            f"the network namespace helper did not answer {msg.get('op')}: {e.strerror or e}"
        ) from None
    if not data:
        raise NetworkError(
            f"the network namespace helper went away during {msg.get('op')}: see {run_dir()}/usernetd.log"
        )
    reply = json.loads(data)
    if not reply.get("ok"):
        raise NetworkError(reply.get("error") or "the network namespace helper refused",
                           exit_code=reply.get("code") or 125)  # fmt: skip
    return reply


def _start() -> None:
    """Start the helper (daemonized, its own session) and wait until it listens."""
    from rootless import process

    r, w = os.pipe()  # w is inherited by the helper across its exec; r stays here
    os.set_inheritable(w, True)

    def body() -> int:
        os.close(r)
        process.daemonize()
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        os.makedirs(run_dir(), mode=0o700, exist_ok=True)
        log = os.open(os.path.join(run_dir(), "usernetd.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # fmt: skip
        for fd, target in ((null, 0), (log, 1), (log, 2)):
            os.dup2(fd, target)
        os.closerange(3, w)
        os.closerange(w + 1, 1 << 16)
        argv = process.python_module("rootless.network.usernetd", str(w))
        os.execv(argv[0], argv)
        return 127

    try:
        child = process.fork(body, pdeathsig=None, context="starting the network namespace helper")
    finally:
        os.close(w)
    try:
        child.wait()  # the middle process: it exits once the helper is detached
        ready = process.wait_readable([r], START_TIMEOUT)
        line = os.read(r, 4096).decode(errors="replace").strip() if ready else ""
    finally:
        os.close(r)
    if line != "ready":
        why = line.removeprefix("error: ") or "it did not start in time"
        raise NetworkError(
            f"cannot start the network namespace helper: {why} (see {run_dir()}/usernetd.log)"
        )


class Session:
    """A container's session with the helper (see the module docstring)."""

    def __init__(self, sock: socket.socket, pid: int):
        self.sock, self.pid = sock, pid

    @classmethod
    def attach(cls, cid: str, name: str) -> Session:
        with lock():
            sock = _connect()
            if sock is None:
                _start()
                sock = _connect()
                if sock is None:
                    raise NetworkError(
                        f"the network namespace helper does not listen: see {run_dir()}/usernetd.log"
                    )
            try:
                reply = exchange(sock, {"op": "attach", "id": cid, "name": name})
            except BaseException:
                sock.close()
                raise
        return cls(sock, reply["pid"])

    def request(self, msg: dict) -> dict:
        return exchange(self.sock, msg)

    def close(self) -> None:
        self.sock.close()


def request(msg: dict) -> dict | None:
    """One request on a connection of its own (``network connect`` and ``disconnect`` of a running
    container); None if no helper runs (no container is on a network)."""
    sock = _connect()
    if sock is None:
        return None
    with sock:
        return exchange(sock, msg)


def register_names(rec, names: list[str]) -> None:
    """More DNS names for a running container on networks, on each of its networks, for as long
    as it runs (a pod's name for its infra container, say). Registering again replaces them."""
    if request({"op": "names", "id": rec.id, "names": list(names)}) is None:
        raise NetworkError(f"container {rec.name} is not running on a network")
