"""`rootless exec`: run another process in a running container.

The CLI (host user) forks a joiner that enters the container's cgroup, then joins all of the init's
namespaces at once with setns(pidfd, ...) (the pidfd pins the very process whose start time the
record holds, so a recycled pid is never joined), and forks the process, which is then in the
container's pid namespace. That process takes the container's user (or -u), environment (plus -e),
working directory (or -w), capabilities, seccomp filter and no_new_privs exactly as the container's
init did (container.become), and execs. The joiner waits for it and exits with its status; the CLI
relays the pty for -t and forwards signals. Exec failures come back as one line with 126/127.
"""

import os
import signal
import socket

from rootless import syscalls as sc
from rootless.errors import EXIT_RUNTIME, ContainerError, RootlessError
from rootless.process import exit_code, flush_stdio
from rootless.runtime import process, spec, state

_NS = (
    ("user", sc.CLONE_NEWUSER),
    ("mnt", sc.CLONE_NEWNS),
    ("uts", sc.CLONE_NEWUTS),
    ("ipc", sc.CLONE_NEWIPC),
    ("net", sc.CLONE_NEWNET),
    ("cgroup", sc.CLONE_NEWCGROUP),
    ("pid", sc.CLONE_NEWPID),
)


def _ns_flags(pid: int) -> int:
    flags = 0
    for name, flag in _NS:
        try:
            theirs = os.stat(f"/proc/{pid}/ns/{name}").st_ino
        except OSError as e:
            raise ContainerError(f"cannot read the container's namespaces: {e.strerror}") from None
        if theirs != os.stat(f"/proc/self/ns/{name}").st_ino:
            flags |= flag
    return flags


def join_cgroup(path: str, unit: str | None) -> None:
    """Move this process into the container's leaf cgroup. From a login session the common ancestor
    (user-UID.slice) is not ours to write, so, as podman does, ask the user's systemd: it attaches the
    process to the container's delegated scope (with PID 1's help) at the same leaf."""
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")
        return
    except PermissionError:
        if not unit or f"/{unit}/" not in path + "/":
            raise
    from rootless import cgroups

    bus = cgroups.user_bus_address()
    if not bus:
        raise ContainerError(
            "no user D-Bus to ask systemd to move the process into the container's cgroup"
        )
    sub = "/" + (path + "/").split(f"/{unit}/", 1)[1].rstrip("/")
    try:
        cgroups.systemd_call(bus, "AttachProcessesToUnit", "ssau", (unit, sub, [os.getpid()]))
    except cgroups.CgroupError as e:
        raise ContainerError(f"cannot attach the process to {unit}: {e}") from None
    with open("/proc/self/cgroup") as f:
        now = f.read().strip().rpartition(":")[2]
    if not path.endswith(now):
        raise ContainerError(f"systemd did not move the process into {path}")


def exec_in(
    rec,
    argv: list[str],
    *,
    interactive: bool = False,
    tty: bool = False,
    env: list[str] = (),
    user: str | None = None,
    workdir: str | None = None,
    detach: bool = False,
) -> int:
    from rootless.runtime.container import Runner, _Pipes, _read_all, _report, options_of

    if rec.state != "running":
        raise ContainerError(f"container {rec.name} is not running: start it first")
    init = rec.options.get("pids", {}).get("init")
    if not init:
        raise ContainerError(f"container {rec.name} is not running: start it first")
    if not argv:
        raise ContainerError("exec needs a command to run")
    try:
        pidfd = os.pidfd_open(init[0])
    except OSError:
        raise ContainerError(f"container {rec.name} is not running: start it first") from None
    if not state.alive(*init):
        os.close(pidfd)
        raise ContainerError(f"container {rec.name} is not running: start it first")
    sec = Runner(options_of(rec))
    sec.prepare_security()
    saved = rec.options.get("process") or {}
    envd = dict(saved.get("env") or {})
    if tty:
        envd.setdefault("TERM", "xterm")
    for item in env:
        spec._env_line(item, "-e", envd)
    proc_user = user if user is not None else saved.get("user", "")
    cwd = workdir or saved.get("cwd") or "/"
    if not cwd.startswith("/"):
        raise ContainerError(f"--workdir {cwd!r}: must be an absolute path")
    flags = _ns_flags(init[0])
    cgroup = (rec.options.get("cgroup") or {}).get("path")
    unit = (rec.options.get("cgroup") or {}).get("unit")
    cap_add = list((rec.options.get("run") or {}).get("cap_add") or [])

    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    info_r, info_w = os.pipe2(os.O_CLOEXEC)
    tty_host = tty_ctr = None
    if tty:
        tty_host, tty_ctr = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def process_main() -> None:  # in the container: never returns
        code = EXIT_RUNTIME
        try:
            if not detach:  # -d: the joiner exits at once and the process lives on
                sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            u = spec.resolve_user(proc_user)
            e = dict(envd)
            e.setdefault("HOME", u.home)
            if detach:
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
            elif tty:
                master, slave = process.open_pty_in_container()
                os.fchown(slave, u.uid, u.gid)
                socket.send_fds(tty_ctr, [b"m"], [master])
                os.close(master)
                process.make_controlling(slave)
            elif not interactive:
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
            _Pipes.close(tty_ctr)
            try:
                os.chdir(cwd)
            except OSError as ex:
                raise ContainerError(
                    f"cannot chdir to working directory {cwd}: {ex.strerror}"
                ) from None
            from rootless.runtime.container import become

            become(sec, u, cap_add)
            process.execve(argv, e)
        except process.ExecError as ex:
            code = ex.code
            _report(err_w, ex.code, str(ex))
        except RootlessError as ex:
            code = ex.exit_code
            _report(err_w, code, str(ex))
        except OSError as ex:
            _report(err_w, EXIT_RUNTIME, f"exec in the container: {ex}")
        except BaseException as ex:  # noqa: B036
            _report(err_w, EXIT_RUNTIME, f"internal error in exec: {type(ex).__name__}: {ex}")
        os._exit(code)

    def joiner_main() -> None:  # host pid namespace, then the container's others: never returns
        code = EXIT_RUNTIME
        try:
            os.close(info_r)
            os.close(err_r)
            _Pipes.close(tty_host)
            if cgroup:
                try:
                    join_cgroup(cgroup, unit)
                except (OSError, RootlessError) as ex:
                    _report(err_w, EXIT_RUNTIME, f"cannot join the container's cgroup: {ex}")
                    os._exit(EXIT_RUNTIME)
            try:
                sc.setns(pidfd, flags)
            except OSError as ex:
                _report(err_w, EXIT_RUNTIME, f"cannot join the container's namespaces: {ex}")
                os._exit(EXIT_RUNTIME)
            os.close(pidfd)
            pid = os.fork()
            if pid == 0:
                process_main()
            os.write(info_w, f"{pid}\n".encode())
            os.close(info_w)
            os.close(err_w)
            _Pipes.close(tty_ctr)
            if detach:
                os._exit(0)  # the process is reparented to the container's init
            for s in process.FORWARDED:
                signal.signal(s, signal.SIG_IGN)
            code = exit_code(os.waitpid(pid, 0)[1])
        finally:
            os._exit(code)

    flush_stdio()
    child = os.fork()
    if child == 0:
        joiner_main()
    os.close(pidfd)
    _Pipes.close(info_w, err_w, tty_ctr)
    master = None
    raw = _read_all(info_r)
    os.close(info_r)
    target = int(raw) if raw.strip().isdigit() else child
    if tty and raw.strip():
        try:
            _m, fds, _f, _a = socket.recv_fds(tty_host, 16, 1)
            master = fds[0] if fds else None
        except OSError:
            master = None
    fwd = None
    if not detach:
        fwd = process.SignalForwarder(
            target,
            on_winch=(lambda: process.copy_winsize(0, master)) if master is not None else None,
        ).install()
    try:
        if master is not None:
            process.relay_pty(master, interactive)
            os.close(master)
        err = _read_all(err_r)
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
    finally:
        if fwd is not None:
            fwd.uninstall()
        _Pipes.close(err_r, tty_host)
    rc = exit_code(status)
    if err:
        code, _, msg = err.decode(errors="replace").partition(" ")
        raise RootlessError(msg, exit_code=int(code) if code.isdigit() else EXIT_RUNTIME)
    return rc
