"""The file descriptors the API server owns, closed in every process forked from it.

The library forks monitors and exec joiners from the server's threads. A forked child must not keep
the server's sockets or another request's pipes (a hijacked connection or an exec's stdin would
never see EOF, a socket would outlive the service): every fd the server makes is registered here,
and a fork handler closes them in the child, except those the forking thread marked as its child's
(`keep_in_child`). A fork waits while another thread makes and registers a pipe, so no child
inherits one unregistered.
"""

from __future__ import annotations

import contextlib
import os
import threading

_OWNED: set[int] = set()
_LOCAL = threading.local()
_MAKING = threading.Lock()  # held while an fd is made and registered; a fork waits for it


def own(fd: int) -> int:
    _OWNED.add(fd)
    return fd


def disown(fd: int) -> None:
    _OWNED.discard(fd)


def close(*fds: int | None) -> None:
    """Close and forget owned fds (None and -1 are skipped; closing twice is harmless)."""
    with _MAKING:
        for fd in fds:
            if fd is None or fd < 0:
                continue
            disown(fd)
            with contextlib.suppress(OSError):
                os.close(fd)


def unix_socket():
    """A new unix stream socket, owned from the start."""
    import socket

    with _MAKING:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        own(sock.fileno())
    return sock


def close_socket(sock) -> None:
    with _MAKING:
        disown(sock.fileno())
        with contextlib.suppress(OSError):
            sock.close()


def accept(sock, timeout: float):
    """A connection from a listening socket (owned), or None after `timeout` seconds."""
    import select

    if not select.select([sock], [], [], timeout)[0]:
        return None
    with _MAKING:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, TimeoutError):
            return None
        own(conn.fileno())
    return conn


def pipe() -> tuple[int, int]:
    """A close-on-exec pipe, both ends owned from the start."""
    with _MAKING:
        r, w = os.pipe2(os.O_CLOEXEC)
        own(r)
        own(w)
    return r, w


def open_file(path: str, flags: int, mode: int = 0o600) -> int:
    """os.open (close-on-exec), the fd owned from the start."""
    with _MAKING:
        return own(os.open(path, flags | os.O_CLOEXEC, mode))


@contextlib.contextmanager
def keep_in_child(*fds: int):
    """While inside, a fork from this thread keeps these owned fds (they are its child's)."""
    _LOCAL.keep = set(fds)
    try:
        yield
    finally:
        _LOCAL.keep = set()


def _before_fork() -> None:
    _MAKING.acquire()


def _after_fork_in_parent() -> None:
    _MAKING.release()


def _after_fork_in_child() -> None:
    global _MAKING
    _MAKING = threading.Lock()
    keep = getattr(_LOCAL, "keep", set())
    for fd in list(_OWNED - keep):
        with contextlib.suppress(OSError):
            os.close(fd)
    _OWNED.clear()
    _LOCAL.keep = set()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
