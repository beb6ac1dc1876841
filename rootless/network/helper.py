"""What the network helpers (slirp4netns, the pasta guard) share: how they are started, how their
readiness is read, how their failure is told, and how they are found.

A helper runs in its own session (a terminal's Ctrl-C reaches the container and rootless, not it),
with its output in a log file in the container's runtime dir, the write end of a *ready* pipe (it
says when it is configured) and the read end of an *exit* pipe (EOF ends it; see
rootless.network.handle for that contract).
"""

import contextlib
import os
import select
import shutil
import time

from rootless import process
from rootless.errors import NetworkError

READY_TIMEOUT = 10.0


def close_quietly(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def find(name: str, package: str) -> str:
    """The helper's path, or a one-line NetworkError naming the Debian package to install."""
    path = shutil.which(name)
    if not path:
        raise NetworkError(
            f"{name} is not installed: install the Debian package {package} (apt install {package})"
        )
    return path


def spawn(
    name: str,
    argv: list[str],
    log_path: str,
    ready: tuple[int, int],
    exit_: tuple[int, int],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> process.Child:
    """Start a helper in its own session, its output in log_path, with the write end of the ready
    pipe and the read end of the exit pipe; the caller keeps ready[0] and exit_[1]. On failure every
    pipe end is closed and a one-line NetworkError raised."""
    (ready_r, ready_w), (exit_r, exit_w) = ready, exit_
    try:
        with open(log_path, "wb") as log:
            child = process.spawn(argv, stdin="null", stdout=log, stderr=log, pass_fds=(ready_w, exit_r),
                                  new_session=True, env=env, cwd=cwd)  # fmt: skip
    except OSError as e:
        for fd in (ready_r, ready_w, exit_r, exit_w):
            close_quietly(fd)
        raise NetworkError(f"cannot start {name}: {e.strerror or e}") from None
    close_quietly(ready_w)
    close_quietly(exit_r)
    return child


@contextlib.contextmanager
def starting(handle, ready_r: int):
    """While a helper starts: any failure ends it at once (no process is left behind); the ready
    pipe is closed either way."""
    try:
        yield
    except BaseException:
        handle.kill()
        raise
    finally:
        close_quietly(ready_r)


def wait_ready(fd: int, line: bool, timeout: float = READY_TIMEOUT) -> bytes | None:
    """Read the ready pipe until a byte (or, with ``line``, a whole line) arrives; None on EOF before
    that (the helper died) or on timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if not poller.poll(left * 1000):
            continue
        chunk = os.read(fd, 256)
        if not chunk:
            return None
        data += chunk
        if not line or data.endswith(b"\n"):
            return data


def why_not_ready(child: process.Child, log_path: str, skip: tuple[str, ...] = ()) -> str:
    """Why a helper did not become ready: the last line of its log, else how it ended."""
    if child.poll() is None:
        return tail(log_path, skip) or "it did not become ready in time"
    return tail(log_path, skip) or f"exit status {child.returncode}"


def tail(path: str | None, skip: tuple[str, ...] = ()) -> str:
    """The last non-empty line of a helper's log that contains none of `skip`."""
    try:
        with open(path, errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except (OSError, TypeError):
        return ""
    lines = [ln for ln in lines if not any(s in ln for s in skip)]
    return lines[-1] if lines else ""


def version(argv: list[str]) -> str | None:
    """The version line a command prints, or None if it cannot be run."""
    try:
        out = process.run(argv, timeout=5)
    except (OSError, TimeoutError):
        return None
    for text in (out.stdout + "\n" + out.stderr).splitlines():
        if text.startswith(("slirp4netns version", "pasta ")) or "version" in text.lower():
            return text.strip()
    return None
