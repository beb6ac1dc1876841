"""Container logs in podman's k8s-file format: written by the detached monitor, read by `logs`.

Each line of <container dir>/ctr.log is ``<RFC 3339 time with ns> <stdout|stderr> <F|P> <text>``: F
ends a line of output, P is a piece of a longer line (or of a last line with no newline) that the
next entry continues. pump() copies the container's stdout/stderr pipes (or its pty) into the log
until the container's setup process exits; read() parses entries back for --since/--tail/-t/-f.
"""

import os
import select
import time

from rootless.runtime.console import write_all

_MAX_PARTIAL = 16 * 1024  # longer lines are written as P pieces


def timestamp(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    tm = time.localtime(secs)
    off = tm.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", tm)
        + f".{frac:09d}{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"
    )


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch for a log timestamp (RFC 3339, nanoseconds allowed)."""
    import datetime

    main, _, rest = text.partition(".")
    frac = ""
    tz = rest
    if rest:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
    else:
        for sep in ("+", "-", "Z"):
            j = main.rfind(sep, 19)
            if j != -1:
                main, tz = main[:j], main[j:]
                break
    if tz == "Z":
        tz = "+00:00"
    dt = datetime.datetime.fromisoformat(main + (tz or ""))
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


class LogWriter:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.partial: dict[str, bytes] = {}
        self.dropped = 0  # bytes not logged because the store was full

    def feed(self, stream: str, data: bytes) -> None:
        buf = self.partial.get(stream, b"") + data
        out = []
        ts = timestamp().encode()
        tag = stream.encode()
        while True:
            i = buf.find(b"\n")
            if i == -1:
                break
            out.append(b"%s %s F %s\n" % (ts, tag, buf[:i]))
            buf = buf[i + 1 :]
        while len(buf) >= _MAX_PARTIAL:
            out.append(b"%s %s P %s\n" % (ts, tag, buf[:_MAX_PARTIAL]))
            buf = buf[_MAX_PARTIAL:]
        self.partial[stream] = buf
        if out:
            self._write(b"".join(out))

    def _write(self, data: bytes) -> None:
        """Append to the log; on a full (or read-only) store the lines are dropped, as conmon
        drops them, and the container runs on (its exit code must still be recorded)."""
        try:
            write_all(self.fd, data)
        except OSError as e:
            if e.errno not in (28, 30, 122):  # ENOSPC, EROFS, EDQUOT
                raise
            self.dropped += len(data)

    def flush(self) -> None:
        ts = timestamp().encode()
        for stream, buf in self.partial.items():
            if buf:
                self._write(b"%s %s P %s\n" % (ts, stream.encode(), buf))
        self.partial.clear()

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


def pump(log: LogWriter, out_r: int, err_r: int, master: int | None, child_pid: int) -> None:
    """Copy the container's output into the log until every writer is gone or setup has exited."""
    import errno

    streams = {out_r: "stdout", err_r: "stderr"}
    if master is not None:
        streams[master] = "stdout"
    try:
        pidfd = os.pidfd_open(child_pid)
    except OSError:
        pidfd = None
    open_fds = set(streams)
    exited = False
    while open_fds:
        fds = list(open_fds) + ([pidfd] if pidfd is not None and not exited else [])
        try:
            ready, _, _ = select.select(fds, [], [], 0 if exited else None)
        except InterruptedError:
            continue
        if pidfd in ready:
            exited = True  # drain what is buffered, then stop
            ready.remove(pidfd)
        if exited and not ready:
            break
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError as e:
                if e.errno != errno.EIO:  # EIO: the pty's last slave closed
                    raise
                data = b""
            if not data:
                open_fds.discard(fd)
                continue
            log.feed(streams[fd], data)
    if pidfd is not None:
        os.close(pidfd)
    log.close()


# --- reading ----------------------------------------------------------------------------------------


def parse_line(line: bytes):
    """(timestamp text, stream, full?, content bytes) of one log entry, or None."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return parts[0].decode(), parts[1].decode(), parts[2] == b"F", content


def entries(path: str, offset: int = 0, final: bool = True):
    """Whole messages (P pieces joined) from offset: yields (ts, stream, content, resume offset).
    With final=False a trailing piece with no end yet is held back (resume from the offset given)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(offset)
        pending: dict[str, tuple[str, bytes, int]] = {}
        pos = offset
        for line in f:
            if not line.endswith(b"\n"):
                break  # being written
            start = pos
            pos += len(line)
            e = parse_line(line)
            if e is None:
                continue
            ts, stream, full, content = e
            first_ts, acc, first = pending.pop(stream, (ts, b"", start))
            acc += content
            if full:
                safe = min([pos] + [v[2] for v in pending.values()])
                yield first_ts, stream, acc + b"\n", safe
            else:
                pending[stream] = (first_ts, acc, first)
        if final:
            for stream, (ts, acc, _first) in pending.items():  # a last line with no newline
                yield ts, stream, acc, pos


def follow(rec, offset: int, emit, pause: float = 0.1):
    """Pass the entries a running container adds to its log from `offset` to emit(ts, stream,
    content), flushing stdout and stderr as they come, until the container has exited and its
    monitor has finished; return its final record."""
    import sys

    from rootless.runtime import manage

    while True:
        fresh = manage.get(rec.id)
        done = fresh.state not in manage.ACTIVE and not fresh.alive("monitor")
        got = False
        for ts, stream, content, off in entries(rec.log_path, offset, final=done):
            emit(ts, stream, content)
            offset = off
            got = True
        for s in (sys.stdout, sys.stderr):
            s.flush()
        if done:
            return fresh
        if not got:
            time.sleep(pause)
