"""Container logs in podman's k8s-file format: written by the detached monitor, read by `logs`.

Each line of <container dir>/ctr.log is ``<RFC 3339 time with ns> <stdout|stderr> <F|P> <text>``: F
ends a line of output, P is a piece of a line that the next entry of its stream continues (output
that has not ended its line yet, a prompt, is written at once, as conmon does). pump() copies the
container's stdout/stderr pipes (or its pty) into the log until the container's setup process
exits, and for an -i container what a client of its stdin socket sends to its stdin; entries()
parses entries back for --since/--tail/-t/-f.
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
    """A container's log in podman's k8s-file format; with `max_size` (--log-opt max-size) it is
    truncated when a write would grow it past that, as conmon truncates it."""

    def __init__(self, path: str, max_size: int = 0):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.partial: dict[str, bytes] = {}
        self.dropped = 0  # bytes not logged because the store was full
        self.max_size = max_size
        self.size = os.fstat(self.fd).st_size if max_size else 0

    @classmethod
    def of(cls, rec) -> "LogWriter":
        """The writer of container `rec`'s log (/dev/null for the none and passthrough drivers)."""
        size = (rec.run.log_opts.get("max-size") if rec.run else None) or ""
        if size:
            from rootless.runtime.runflags import log_size

            return cls(rec.log_path or os.devnull, log_size(size))
        return cls(rec.log_path or os.devnull)

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
        while buf:  # what has no newline yet is written at once (a prompt), as conmon does
            out.append(b"%s %s P %s\n" % (ts, tag, buf[:_MAX_PARTIAL]))
            buf = buf[_MAX_PARTIAL:]
        self.partial[stream] = buf
        if out:
            self._write(b"".join(out))

    def _write(self, data: bytes) -> None:
        """Append to the log; on a full (or read-only) store the lines are dropped, as conmon
        drops them, and the container runs on (its exit code must still be recorded)."""
        try:
            if self.max_size:  # entry by entry, as conmon writes them
                for entry in data.splitlines(keepends=True):
                    if self.size + len(entry) > self.max_size:
                        os.ftruncate(self.fd, 0)
                        self.size = 0
                    self.size += len(entry)
                    write_all(self.fd, entry)
                return
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


def stdin_socket(run_dir: str) -> str:
    """The unix socket a detached monitor of an interactive (-i) container listens on: what a
    client sends there is the container's stdin (the Docker API's attach with stdin)."""
    return os.path.join(run_dir, "attach")


def socket_address(path: str, dir_fd: int) -> str:
    """An address for the socket at `path` that fits sockaddr_un (108 bytes): through
    /proc/self/fd/N of its directory (`dir_fd`, an O_PATH fd held while binding or connecting),
    as rootless.network.usernet.sockaddr."""
    if len(os.fsencode(path)) <= 100:
        return path
    return f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}"


# what `rootless attach` sends first: its EOF (a detach, or the end of its input) leaves the
# container's stdin open for the next client, as podman's attach does
KEEP_STDIN = b"\0rootless:keep-stdin\0"


class StdinRelay:
    """The stdin socket's one client at a time: its bytes to the container's stdin (`dest`: the
    pipe, or the pty master), its EOF the container's (the pipe closed, or ^D to the pty), as
    Docker's StdinOnce; the socket is closed then. A client that begins with KEEP_STDIN (attach)
    only leaves: the next one may connect."""

    def __init__(self, listener, dest: int, pty: bool):
        self.listener, self.dest, self.pty, self.client = listener, dest, pty, None
        self.first = self.keep = False

    def fds(self) -> list:
        return [x for x in (self.listener, self.client) if x is not None]

    def handle(self, ready: list) -> None:
        if self.listener is not None and self.listener in ready:
            conn, _ = self.listener.accept()
            if self.client is None:
                self.client, self.first, self.keep = conn, True, False
            else:
                conn.close()  # one client at a time
        if self.client is not None and self.client in ready:
            try:
                data = self.client.recv(65536)
            except OSError:
                data = b""
            if data:
                if self.first:
                    self.first = False
                    if data.startswith(KEEP_STDIN):
                        self.keep, data = True, data[len(KEEP_STDIN) :]
                write_all(self.dest, data)
                return
            if self.keep:  # attach's end (or detach): it leaves, the next one may connect
                self.client.close()
                self.client = None
                return
            if self.pty:
                write_all(self.dest, b"\x04")
            self.close()

    def close(self) -> None:
        """Close the sockets, and the pipe (the relay's: the monitor gave it over)."""
        for sock in (self.client, self.listener):
            if sock is not None:
                sock.close()
        self.client = self.listener = None
        if not self.pty and self.dest is not None:
            os.close(self.dest)
        self.dest = None


def pump(log: LogWriter, out_r: int, err_r: int, master: int | None, child_pid: int,
         stdin: StdinRelay | None = None) -> None:  # fmt: skip
    """Copy the container's output into the log until every writer is gone or setup has exited;
    meanwhile `stdin`'s client to the container's stdin."""
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
        fds += stdin.fds() if stdin is not None and not exited else []
        try:
            ready, _, _ = select.select(fds, [], [], 0 if exited else None)
        except InterruptedError:
            continue
        if pidfd in ready:
            exited = True  # drain what is buffered, then stop
            ready.remove(pidfd)
        if stdin is not None and not exited:
            stdin.handle(ready)
        ready = [fd for fd in ready if fd in open_fds]
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
    if stdin is not None:
        stdin.close()
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


def _lines_backward(f, end: int, block: int = 1 << 16):
    """(start offset, line) of each whole line before `end`, last first (a line with no newline at
    the end of the file is being written and is left out, as entries() leaves it out)."""
    stop = pos = end
    while pos > 0:  # the end of the last whole line
        n = min(block, pos)
        pos -= n
        f.seek(pos)
        cut = f.read(n).rfind(b"\n")
        if cut != -1:
            stop = pos + cut + 1
            break
    else:
        return
    pos, carry = stop, b""
    while pos > 0:
        n = min(block, pos)
        pos -= n
        f.seek(pos)
        parts = (f.read(n) + carry).split(b"\n")
        parts.pop()  # after the last newline: nothing
        at = pos
        if pos > 0:  # the first part may begin before this block
            carry = parts.pop(0) + b"\n"
            at += len(carry)
        starts = []
        for ln in parts:
            starts.append(at)
            at += len(ln) + 1
        for start, ln in zip(reversed(starts), reversed(parts), strict=True):
            yield start, ln + b"\n"


def tail(path: str, n: int) -> list[tuple[str, str, bytes]]:
    """The last n messages (timestamp of the first piece, stream, content), read from the end of
    the log: `logs --tail N` of a large log reads its end, not all of it.

    A message is the P pieces of one stream and the F entry that ends it, or the pieces at the end
    that no F ended yet; messages are in the order of their last entry. Going backwards, a message
    is whole once the previous F of its stream (or the file's start) is passed."""
    if n <= 0:
        return []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    import heapq

    done: list[tuple[int, str, str, bytes]] = []  # (end offset, ts, stream, content)
    latest: list[int] = []  # the ends of the n latest whole messages (a heap: the oldest first)
    current: dict[str, list] = {}  # stream -> [end offset, ts of the earliest piece, pieces, ended]
    with f:
        for start, line in _lines_backward(f, f.seek(0, os.SEEK_END)):
            e = parse_line(line)
            if e is None:
                continue
            ts, stream, full, content = e
            cur = current.get(stream)
            if full and cur is not None:
                done.append(_message(cur, stream))
                (heapq.heappush if len(latest) < n else heapq.heappushpop)(latest, cur[0])
                del current[stream]
                cur = None
            if cur is None:
                if len(latest) >= n and all(c[0] < latest[0] for c in current.values()):
                    break  # the n latest are whole, and this message is older than all of them
                cur = current[stream] = [start, ts, [], full]
                if full:
                    cur[2].append(content)
                    continue
            cur[1] = ts
            cur[2].append(content)
        else:
            done += [_message(c, s) for s, c in current.items()]
    done.sort(key=lambda m: m[0], reverse=True)
    return [(ts, stream, content) for _, ts, stream, content in reversed(done[:n])]


def _message(cur: list, stream: str) -> tuple[int, str, str, bytes]:
    end, ts, pieces, ended = cur
    return end, ts, stream, b"".join(reversed(pieces)) + (b"\n" if ended else b"")


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
