"""Typed messages between rootless's processes, and the channel that carries them.

A Channel is one end of a SOCK_SEQPACKET socketpair: each message is one packet (so several writers
never interleave), encoded by ``encode`` as its kind and its fields' values separated by NUL bytes
(the packet is the frame, the fields are ints and text) and read back by ``decode``; a message with
an ``fd`` field carries that fd alongside (SCM_RIGHTS). Both ends are
O_CLOEXEC, so a process that execs drops its end by itself: reading EOF means that every process
holding the other end has exec'd or exited, which is how "the command was exec'd" is seen.

Who sends what (see docs/DEVELOPING.md, "Life of rootless run -d"):
- ``Pid(role, pid)``: setup -> monitor (``daemon``, ``nsholder``), the namespace holder -> monitor
  (``init``), the exec joiner -> CLI (``process``); host pids, kept in the container's record.
- ``Pty(fd)``: the container's init (or an exec'd process) -> monitor: the pty master for -t.
- ``Go()``: monitor -> init, once the network helper runs and the cgroup is applied.
- ``Failed(code, message)``: any of them -> its parent side: one line and the exit code; then EOF.
- ``Started()``: the detached monitor -> the CLI that forked it: the command runs.
- ``Ready()`` / ``Go()``: the user-namespace handshake of rootless.userns (child -> parent ->
  child); ``Failed`` there carries the unshare errno.
- ``MountFuse(pid, options, fd)``: setup -> the early-started fuse-overlay daemon: the /dev/fuse fd
  of the mount setup made, setup's pid (whose namespaces the daemon joins) and the overlay options.
- ``CopyOp(op, path, options, fd)`` / ``CopyDone(result)``: the `cp` CLI -> its copier in a
  container (rootless.runtime.copier) and back: stat, get (a tar to fd) or put (a tar from fd),
  options and result as JSON text; a failure is ``Failed`` with the errno.
"""

from __future__ import annotations

import os
import select
import socket
from typing import NamedTuple

MAX_MESSAGE = 4000  # characters of a Failed message

# Messages are NamedTuples: immutable and typed like frozen dataclasses, but ~8x cheaper to define,
# which counts on every `rootless run` (rootless.runtime imports them before the first fork).


class Pid(NamedTuple):
    role: str
    pid: int


class Pty(NamedTuple):
    fd: int = -1


class Go(NamedTuple):
    pass


class Ready(NamedTuple):
    pass


class Started(NamedTuple):
    pass


class Failed(NamedTuple):
    code: int
    message: str
    errno: int = 0


class MountFuse(NamedTuple):
    pid: int
    options: str
    fd: int = -1


class CopyOp(NamedTuple):
    op: str
    path: str
    options: str  # JSON
    fd: int = -1


class CopyDone(NamedTuple):
    result: str  # JSON


Message = Pid | Pty | Go | Ready | Started | Failed | MountFuse | CopyOp | CopyDone
KINDS: dict[str, type] = {
    c.__name__: c for c in (Pid, Pty, Go, Ready, Started, Failed, MountFuse, CopyOp, CopyDone)
}
_INTS = frozenset({"pid", "code", "errno"})  # the int fields; the others are text


def encode(msg: Message) -> bytes:
    if isinstance(msg, Failed):
        msg = msg._replace(message=msg.message.replace("\n", " ")[:MAX_MESSAGE])
    values = [str(v).replace("\0", " ") for k, v in zip(msg._fields, msg, strict=True) if k != "fd"]
    return "\0".join([type(msg).__name__, *values]).encode(errors="replace")


def decode(data: bytes, fds: list[int] = ()) -> Message:
    """The message in one packet (ValueError if it is not one), with the fd it carried if any."""
    kind, *values = data.decode(errors="replace").split("\0")
    cls = KINDS.get(kind)
    names = [f for f in cls._fields if f != "fd"] if cls else []
    if cls is None or len(values) != len(names):
        raise ValueError(f"not a message: {data[:80]!r}")
    try:
        fields = {n: int(v) if n in _INTS else v for n, v in zip(names, values, strict=True)}
    except ValueError:
        raise ValueError(f"not a message: {data[:80]!r}") from None
    if "fd" in cls._fields:
        fields["fd"] = fds[0] if fds else -1
    return cls(**fields)


class Channel:
    """One end of a channel (see the module docstring)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    @staticmethod
    def pair() -> tuple[Channel, Channel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        return Channel(a), Channel(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: Message) -> bool:
        """Send one message (and its fd); False if nobody holds the other end any more."""
        fd = getattr(msg, "fd", -1)
        try:
            if fd >= 0:
                socket.send_fds(self.sock, [encode(msg)], [fd])
            else:
                self.sock.send(encode(msg))
            return True
        except OSError:  # EPIPE, ECONNRESET: the other side is gone
            return False

    def fail(self, code: int, message: str) -> None:
        """process.fork's `report`: a Failed message (best effort)."""
        self.send(Failed(code, message))

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message; None at EOF (every holder of the other end exec'd or exited).
        TimeoutError if `timeout` seconds pass first; a packet that is no message counts as EOF."""
        if timeout is not None and not select.select([self.sock], [], [], timeout)[0]:
            raise TimeoutError("no message in time")
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 1)
                break
            except InterruptedError:
                continue
            except OSError:  # ECONNRESET
                return None
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        try:
            return decode(data, fds)
        except ValueError:
            return None

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.sock.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def close_all(*items) -> None:
    """Close channels, sockets and fds (None and -1 are skipped), ignoring errors."""
    for item in items:
        if item is None or item == -1:
            continue
        try:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()
        except OSError:
            pass
