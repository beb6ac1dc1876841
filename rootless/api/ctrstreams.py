"""A container's output as Docker streams it: GET /containers/{id}/logs and POST
/containers/{id}/attach (the connection hijacked after ``101 UPGRADED``), from the container's
k8s-file log (rootless.runtime.logs).

Non-tty output is multiplexed: each frame is an 8-byte header (stream 1 = stdout, 2 = stderr,
three zero bytes, the big-endian length) and the bytes; a tty container's output is raw. The log
file is opened before anything is read and read through that descriptor (/proc/self/fd/N), so the
output of an auto-removed container is not lost when its directory goes. Every follow ends when
the container has exited and its monitor is gone (or its record is removed); attach first waits
for the container to start, as Docker's (the client attaches, then starts).
"""

from __future__ import annotations

import os
import struct
import time
from collections import deque

from rootless.api import fds
from rootless.api.containers import find
from rootless.api.protocol import ApiError, Hijack, Request, Stream, check_params, route


def frame(stream: str, data: bytes) -> bytes:
    return struct.pack(">BxxxL", 2 if stream == "stderr" else 1, len(data)) + data


class _Log:
    """The container's log, held open from the start."""

    def __init__(self, rec):
        self.rec = rec
        self.fd = None
        try:
            self.fd = fds.open_file(rec.log_path, os.O_RDONLY | os.O_CREAT)
        except OSError:
            pass  # removed meanwhile: nothing to show

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def size(self) -> int:
        return os.fstat(self.fd).st_size if self.fd is not None else 0

    def entries(self, offset: int = 0, final: bool = True):
        from rootless.runtime import logs

        if self.fd is None:
            return iter(())
        return logs.entries(self.path, offset, final=final)

    def pieces(self, offset: int):
        """(ts, stream, bytes, next offset) of each entry from offset, a line's pieces as they
        were written (so a prompt shows before its line ends)."""
        from rootless.runtime import logs

        if self.fd is None:
            return
        with open(self.path, "rb") as f:
            f.seek(offset)
            for line in f:
                if not line.endswith(b"\n"):
                    return  # being written
                offset += len(line)
                e = logs.parse_line(line)
                if e is not None:
                    ts, stream, full, content = e
                    yield ts, stream, content + b"\n" if full else content, offset

    def close(self) -> None:
        fds.close(self.fd)
        self.fd = None


class _Shape:
    """Which streams, how (framed or raw, timestamps) and when (since, until)."""

    def __init__(self, tty: bool, stdout=True, stderr=True, timestamps=False, since=None,
                 until=None):  # fmt: skip
        self.tty, self.stdout, self.stderr = tty, stdout, stderr
        self.timestamps, self.since, self.until = timestamps, since, until

    def render(self, ts: str, stream: str, content: bytes) -> bytes:
        if not (self.stdout if stream != "stderr" else self.stderr):
            return b""
        if self.since is not None or self.until is not None or self.timestamps:
            from rootless.api.ctrconfig import _utc
            from rootless.runtime.logs import parse_timestamp

            t = parse_timestamp(ts)
            if (self.since is not None and t < self.since) or (
                self.until is not None and t > self.until
            ):
                return b""
            if self.timestamps:
                content = _utc(t).encode() + b" " + content
        return content if self.tty else frame(stream, content)


def _done(rec, seen: list) -> bool:
    """Whether the container has finished (and the monitor with it); seen[0]: it ran meanwhile."""
    from rootless.runtime import manage, state

    fresh = state.load(rec.id)
    if fresh is None:
        return True
    fresh = state.refresh(fresh)
    if fresh.state in manage.ACTIVE or fresh.alive("monitor") or (
        fresh.started, fresh.finished, fresh.state) != (rec.started, rec.finished, rec.state):  # fmt: skip
        seen[0] = True
    return seen[0] and fresh.state not in manage.ACTIVE and not fresh.alive("monitor") and (
        not fresh.restarting)  # fmt: skip


def follow(log: _Log, offset: int, shape: _Shape, wait_start: bool):
    """Rendered output from offset until the container is done (see the module docstring)."""
    seen = [not wait_start]
    pause = 0.02
    while True:
        done = _done(log.rec, seen)
        got = False
        for ts, stream, content, off in log.pieces(offset):
            offset = off
            data = shape.render(ts, stream, content)
            if data:
                got = True
                yield data
        if done:
            return
        if not got:
            yield b""
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)
        else:
            pause = 0.02


def _past(log: _Log, shape: _Shape, tail: int | None, final: bool):
    """(rendered chunks of what is logged already, the offset after it)."""
    items = log.entries(0, final=final)
    if tail is not None:
        items = deque(items, maxlen=tail) if tail > 0 else ()
    out, offset = [], 0
    for ts, stream, content, off in items:
        offset = off
        data = shape.render(ts, stream, content)
        if data:
            out.append(data)
    if tail is not None or final:
        offset = log.size()
    return out, offset


def hung_up(sock) -> bool:
    """Whether the client closed its connection (not only its sending side, as a client that
    attaches without stdin does at once)."""
    import select

    p = select.poll()
    p.register(sock, select.POLLHUP)
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in p.poll(0))


def _time(req: Request, name: str) -> float | None:
    v = req.param(name)
    if v in (None, "", "0"):
        return None
    try:
        return float(v)
    except ValueError:
        from rootless.commands.logs import _since

        try:
            return _since(v)
        except Exception:  # noqa: BLE001 - one error line for any bad time
            raise ApiError(400, f"{name}={v!r}: not a time") from None


@route("GET", "/containers/{name}/logs")
def logs(req: Request):
    check_params(req, ("follow", "stdout", "stderr", "since", "until", "timestamps", "tail",
                       "details"))  # fmt: skip
    rec = find(req.args["name"])
    rec.check_logged()
    stdout, stderr = req.flag("stdout"), req.flag("stderr")
    if not (stdout or stderr):
        raise ApiError(400, "Bad parameters: you must choose at least one stream")
    tail_v = req.param("tail") or "all"
    try:
        tail = None if tail_v == "all" or int(tail_v) < 0 else int(tail_v)
    except ValueError:
        raise ApiError(400, f"tail={tail_v!r}: a number or all") from None
    tty = bool(rec.run and rec.run.tty)
    shape = _Shape(tty, stdout, stderr, req.flag("timestamps"), _time(req, "since"),
                   _time(req, "until"))  # fmt: skip
    follow_ = req.flag("follow")
    log = _Log(rec)

    def chunks():
        try:
            past, offset = _past(log, shape, tail, final=not follow_)
            yield from past
            if follow_:
                yield from follow(log, offset, shape, wait_start=False)
        finally:
            log.close()

    return Stream(chunks(), "application/vnd.docker.raw-stream")


@route("POST", "/containers/{name}/attach")
def attach(req: Request):
    check_params(req, ("stream", "stdin", "stdout", "stderr", "logs", "detachKeys"))
    rec = find(req.args["name"])
    stdin = req.flag("stdin") and bool(rec.run and rec.run.interactive)  # else ignored, as Docker
    tty = bool(rec.run and rec.run.tty)
    shape = _Shape(tty, req.flag("stdout"), req.flag("stderr"))
    log = _Log(rec)
    stream_, replay = req.flag("stream"), req.flag("logs")
    start_at = log.size()  # without logs=1: only what comes from now on

    def run(sock, early: bytes) -> None:
        feeder = _StdinFeeder(sock, early, rec) if stdin else None
        try:
            offset = start_at
            if replay:
                past, offset = _past(log, shape, None, final=not stream_)
                for data in past:
                    sock.sendall(data)
            if stream_:
                for data in follow(log, offset, shape, wait_start=True):
                    if data:
                        sock.sendall(data)
                    elif hung_up(sock):
                        return
        except OSError:
            pass  # the client went away
        finally:
            log.close()
            if feeder is not None:
                feeder.stop()

    ctype = "application/vnd.docker.raw-stream"
    if not tty:
        ctype = "application/vnd.docker.multiplexed-stream"
    return Hijack(run, ctype)


class _StdinFeeder:
    """A thread copying what an attached client sends to the container's stdin socket (its
    monitor's, rootless.runtime.logs.stdin_socket), connected once the container runs; the
    client's EOF is the container's."""

    def __init__(self, sock, early: bytes, rec):
        import threading

        from rootless.runtime.logs import stdin_socket

        self.sock, self.early, self.path = sock, early, stdin_socket(rec.run_dir)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _connect(self):
        from rootless.runtime.logs import socket_address

        while not self.done.is_set():
            conn = fds.unix_socket()
            dir_fd = None
            try:
                dir_fd = fds.open_file(os.path.dirname(self.path), os.O_PATH)
                conn.connect(socket_address(self.path, dir_fd))
                return conn
            except OSError:
                fds.close_socket(conn)
                self.done.wait(0.05)
            finally:
                fds.close(dir_fd)
        return None

    def _run(self) -> None:
        conn = self._connect()  # meanwhile what the client sends waits in the socket's buffer
        if conn is None:
            return
        try:
            if self.early:
                conn.sendall(self.early)
            while data := self.sock.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            fds.close_socket(conn)  # the client's EOF: the container's stdin is closed

    def stop(self) -> None:
        import socket

        self.done.set()
        try:
            self.sock.shutdown(socket.SHUT_RD)  # wakes the thread's recv
        except OSError:
            pass
        self.thread.join(5)
