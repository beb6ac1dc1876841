"""Exec endpoints: POST /containers/{id}/exec (create), POST /exec/{id}/start (the connection
hijacked; tty and non-tty, stdin when attached, detached) and GET /exec/{id}/json, onto
rootless.runtime.api.exec.

Exec instances live in the server's memory (as Docker's, until the service exits). A start forks
a child whose stdin, stdout and stderr are pipes to this thread; the child runs the library's exec
(which joins the container and relays a pty for tty) and exits with the process's code. This
thread multiplexes the pipes onto the connection (8-byte frames; raw for tty) and copies what the
client sends to stdin; it ends when the process's output has ended and the child is reaped.
"""

from __future__ import annotations

import os
import select
import signal
import threading

from rootless.api import fds
from rootless.api.containers import find
from rootless.api.ctrstreams import frame, hung_up
from rootless.api.protocol import ApiError, Hijack, Request, Response, once, route
from rootless.errors import RootlessError


class Instance:
    def __init__(self, eid: str, cid: str, body: dict):
        self.id, self.cid = eid, cid
        self.argv = list(body.get("Cmd") or [])
        self.tty = bool(body.get("Tty"))
        self.stdin = bool(body.get("AttachStdin"))
        self.stdout = bool(body.get("AttachStdout", True))
        self.stderr = bool(body.get("AttachStderr", True))
        self.env = [e for e in body.get("Env") or [] if "=" in e]
        self.user = body.get("User") or None
        self.workdir = body.get("WorkingDir") or None
        self.privileged = bool(body.get("Privileged"))
        self.started = self.running = False
        self.exit_code: int | None = None
        self.pid = 0


_EXECS: dict[str, Instance] = {}
_LOCK = threading.Lock()


@route("POST", "/containers/{name}/exec")
def create(req: Request):
    from rootless.runtime import api

    rec = find(req.args["name"])
    body = req.json()
    if not body.get("Cmd"):
        raise ApiError(400, "No exec command specified")
    if rec.state not in api.ACTIVE:
        raise ApiError(409, f"Container {rec.id} is not running")
    for key in ("DetachKeys", "ConsoleSize"):
        body.pop(key, None)
    inst = Instance(os.urandom(32).hex(), rec.id, body)
    with _LOCK:
        _EXECS[inst.id] = inst
    return Response(201, b'{"Id": "%s"}' % inst.id.encode())


def _get(eid: str) -> Instance:
    with _LOCK:
        inst = _EXECS.get(eid)
    if inst is None:
        raise ApiError(404, f"No such exec instance: {eid}")
    return inst


@route("GET", "/exec/{eid}/json")
def inspect(req: Request):
    inst = _get(req.args["eid"])
    return {
        "ID": inst.id,
        "Running": inst.running,
        "ExitCode": inst.exit_code,
        "ProcessConfig": {
            "tty": inst.tty,
            "entrypoint": inst.argv[0],
            "arguments": inst.argv[1:],
            "privileged": inst.privileged,
            "user": inst.user or "",
        },  # fmt: skip
        "OpenStdin": inst.stdin,
        "OpenStderr": inst.stderr,
        "OpenStdout": inst.stdout,
        "CanRemove": False,
        "ContainerID": inst.cid,
        "DetachKeys": "",
        "Pid": inst.pid,
    }


@route("POST", "/exec/{eid}/resize")
def resize(req: Request):
    _get(req.args["eid"])
    once("POST /exec/{id}/resize: ignored (rootless keeps the pty's size)")
    return Response(201, b"")


@route("POST", "/exec/{eid}/start")
def start(req: Request):
    from rootless.runtime import api

    inst = _get(req.args["eid"])
    body = req.json()
    with _LOCK:
        if inst.started:
            raise ApiError(409, f"Exec command {inst.id} has already run")
        inst.started = True
    rec = find(inst.cid)
    if rec.state not in api.ACTIVE:
        raise ApiError(409, f"Container {rec.id} is not running")
    if body.get("Tty") is not None:
        inst.tty = bool(body["Tty"])
    if body.get("Detach"):
        inst.running = True
        child = _fork(inst, rec, None, None, None, detach=True)
        inst.exit_code = child.wait()
        inst.running = False
        return Response(200, b"")
    return Hijack(lambda sock, early: _relay(inst, rec, sock, early))


def _fork(inst: Instance, rec, stdin, stdout, stderr, detach: bool = False):
    """The child that runs the library's exec with these fds as its stdio."""
    from rootless import process

    def main() -> int:
        from rootless.runtime import api

        os.setpgid(0, 0)  # its own group: the joiner and a non-tty process are killed with it
        null = os.open(os.devnull, os.O_RDWR)
        for fd, target in ((stdin, 0), (stdout, 1), (stderr if not inst.tty else stdout, 2)):
            os.dup2(null if fd is None else fd, target)
        for fd in {null, stdin, stdout, stderr} - {None, 0, 1, 2}:
            os.close(fd)
        try:
            return api.exec(rec, inst.argv, interactive=inst.stdin and stdin is not None,
                            tty=inst.tty, env=inst.env, user=inst.user, workdir=inst.workdir,
                            detach=detach)  # fmt: skip
        except RootlessError as e:
            os.write(2, f"{e}\n".encode())
            return e.exit_code

    keep = [fd for fd in (stdin, stdout, stderr) if fd is not None]
    with fds.keep_in_child(*keep):
        return process.fork(main, context="exec in the container")


def _relay(inst: Instance, rec, sock, early: bytes) -> None:
    in_r = in_w = None
    if inst.stdin:
        in_r, in_w = fds.pipe()
    out_r, out_w = fds.pipe()
    err_r, err_w = fds.pipe()
    inst.running = True
    try:
        child = _fork(inst, rec, in_r, out_w, err_w)
    except BaseException:
        fds.close(in_r, in_w, out_r, out_w, err_r, err_w)
        inst.running = False
        raise
    inst.pid = child.pid
    fds.close(in_r, out_w, err_w)
    stdin = [in_w]  # None once closed (an fd number is closed once: it may be reused at once)
    gone = True
    try:
        gone = _pump(inst, sock, early, stdin, {out_r: "stdout", err_r: "stderr"})
    finally:
        fds.close(stdin[0], out_r, err_r)
        if gone:  # nobody reads the output: end the exec rather than hold the service
            try:
                os.killpg(child.pid, signal.SIGKILL)  # a tty's process: SIGHUP as its pty closes
            except ProcessLookupError:
                pass
        inst.exit_code = child.wait()
        inst.running = False


def _pump(inst: Instance, sock, early: bytes, stdin: list, outputs: dict) -> bool:
    """Copy the client's bytes to stdin and the process's output to the client until the output
    has ended; whether the client went away first."""
    from rootless.runtime.console import write_all

    if stdin[0] is not None and early:
        write_all(stdin[0], early)
    open_out = set(outputs)
    reading_client = stdin[0] is not None
    while open_out:
        watch = list(open_out) + ([sock] if reading_client else [])
        try:
            ready, _, _ = select.select(watch, [], [], 1.0)
        except InterruptedError:
            continue
        if not ready and hung_up(sock):
            return True
        if sock in ready:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data:
                write_all(stdin[0], data)
            else:
                reading_client = False
                fds.close(stdin[0])  # EOF to the process
                stdin[0] = None
        for fd in [f for f in ready if f in open_out]:
            data = os.read(fd, 65536)
            if not data:
                open_out.discard(fd)
                continue
            stream = outputs[fd]
            if not (inst.stdout if stream == "stdout" else inst.stderr):
                continue
            try:
                sock.sendall(data if inst.tty else frame(stream, data))
            except OSError:
                return True
    return False
