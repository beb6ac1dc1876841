"""`rootless exec`: run another process in a running container.

The CLI (host user) forks a joiner that enters the container's cgroup, then joins all of the init's
namespaces at once with setns(pidfd, ...) (the pidfd pins the very process whose start time the
record holds, so a recycled pid is never joined), and forks the process, which is then in the
container's pid namespace. That process takes the container's user (or -u), environment (plus -e),
working directory (or -w), and the security settings the container was created with
(rootless.runtime.security: capabilities, seccomp filter, no_new_privs) and resource limits
(rootless.runtime.ulimits), and execs. The joiner tells
the CLI the process's host pid (a ``Pid`` message), waits for it and exits with its status; the CLI
relays the pty for -t and forwards signals. Exec failures come back as one ``Failed`` line with
126/127.
"""

from __future__ import annotations

import os
import signal

from rootless import process
from rootless import syscalls as sc
from rootless.errors import ContainerError, RootlessError
from rootless.runtime import command, console, plan, security, spec, state, ulimits
from rootless.runtime.channel import Channel, Failed, Pid, Pty, close_all


def _ns_flags(pid: int) -> int:
    """The namespaces of `pid` that are not ours: the ones to join."""
    flags = 0
    for name, flag in plan.NAMESPACES.values():
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


class _Request:
    """What to run and how, resolved on the host from the record and the exec flags."""

    def __init__(self, rec, argv, *, interactive, tty, env, user, workdir, detach, preserve_fds):
        saved = rec.process or state.ProcessConfig()
        self.argv, self.interactive, self.tty, self.detach = argv, interactive, tty, detach
        self.preserve_fds = security.preserved_fds(preserve_fds, {})[0]
        self.env = dict(saved.env)
        if tty:
            self.env.setdefault("TERM", "xterm")
        for item in env:
            spec.env_line(item, "-e", self.env)
        self.user = user if user is not None else saved.user
        self.cwd = workdir or saved.cwd or "/"
        if not self.cwd.startswith("/"):
            raise ContainerError(f"--workdir {self.cwd!r}: must be an absolute path")
        self.security = security.of_options(plan.options_of(rec))
        if user is not None and user != saved.user:
            # podman: a non-root user other than the container's gets no capabilities at all
            self.security = self.security._replace(cap_add=())
        self.rlimits = ulimits.limits(plan.options_of(rec).ulimits)  # the container's, as podman
        self.cgroup = (rec.cgroup or {}).get("path")
        self.unit = (rec.cgroup or {}).get("unit")


def _process_main(req: _Request, chan: Channel) -> int:
    """In the container: no host fd (security.close_host_fds), stdio or a pty, the working
    directory, the security settings, exec."""
    security.close_host_fds(req.preserve_fds, chan.fileno())
    u = spec.resolve_user(req.user)
    env = dict(req.env)
    env.setdefault("HOME", u.home)
    if req.detach:
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    elif req.tty:
        console.take_pty(u.uid, u.gid, lambda fd: chan.send(Pty(fd)))
    elif not req.interactive:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
    ulimits.apply(req.rlimits)
    command.exec_as(req.argv, env, req.cwd, req.security, u)
    return 0  # not reached


def _joiner_main(req: _Request, pidfd: int, flags: int, chan: Channel, cli_end: Channel) -> int:
    """In the host pid namespace: the cgroup, then the container's namespaces; fork the process,
    non-dumpable (security.seal) until it execs."""
    cli_end.close()
    security.seal()
    if req.cgroup:
        try:
            join_cgroup(req.cgroup, req.unit)
        except (OSError, RootlessError) as ex:
            raise ContainerError(f"cannot join the container's cgroup: {ex}") from None
    try:
        sc.setns(pidfd, flags)
    except OSError as ex:
        raise ContainerError(f"cannot join the container's namespaces: {ex}") from None
    os.close(pidfd)
    if (
        os.getuid() != 0
    ):  # a nested user namespace (--userns=keep-id...): be its root, as the init was
        os.setresgid(0, 0, 0)
        os.setgroups([])
        os.setresuid(0, 0, 0)
    child = process.fork(
        lambda: _process_main(req, chan),
        pdeathsig=None if req.detach else signal.SIGKILL,  # -d: the process lives on without us
        report=chan.fail,
        context="exec in the container",
        bug="internal error in exec",
    )
    chan.send(Pid("process", child.pid))
    chan.close()
    if req.detach:
        return 0  # the process is reparented to the container's init
    for s in console.FORWARDED:
        signal.signal(s, signal.SIG_IGN)
    return child.wait()


def _init_pidfd(rec, init: tuple[int, int | None]) -> int:
    """A pidfd of the container's init, checked to be the very process the record names."""
    try:
        pidfd = os.pidfd_open(init[0])
    except OSError:
        raise ContainerError(f"container {rec.name} is not running: start it first") from None
    if not state.alive(*init):
        os.close(pidfd)
        raise ContainerError(f"container {rec.name} is not running: start it first")
    return pidfd


def exec_in(rec, argv: list[str], *, interactive: bool = False, tty: bool = False,
            env: list[str] = (), user: str | None = None, workdir: str | None = None,
            detach: bool = False, preserve_fds: int = 0) -> int:  # fmt: skip
    """Run argv in the running container `rec`; its exit code (0 at once with detach)."""
    init = rec.pid_of("init")
    if rec.state != "running" or not init:
        raise ContainerError(f"container {rec.name} is not running: start it first")
    if not argv:
        raise ContainerError("exec needs a command to run")
    pidfd = _init_pidfd(rec, init)
    try:
        req = _Request(rec, argv, interactive=interactive, tty=tty, env=env, user=user,
                       workdir=workdir, detach=detach, preserve_fds=preserve_fds)  # fmt: skip
        flags = _ns_flags(init[0])
    except BaseException:
        os.close(pidfd)
        raise
    mine, theirs = Channel.pair()
    try:
        joiner = process.fork(lambda: _joiner_main(req, pidfd, flags, theirs, mine), pdeathsig=None,
                              report=theirs.fail, context="exec in the container")  # fmt: skip
    finally:
        close_all(pidfd, theirs)
    target, master, failed = joiner.pid, None, None
    with mine:
        while (msg := mine.recv()) is not None:  # EOF: the process exec'd (or failed to)
            if isinstance(msg, Pid):
                target = msg.pid
            elif isinstance(msg, Pty):
                master = msg.fd
            elif isinstance(msg, Failed) and failed is None:
                failed = msg
    return _attach(joiner, target, master, failed, interactive, detach)


def _attach(joiner, target: int, master, failed, interactive: bool, detach: bool) -> int:
    fwd = None
    if not detach:
        winch = (lambda: sc.copy_winsize(0, master)) if master is not None else None
        fwd = console.SignalForwarder(target, on_winch=winch).install()
    try:
        if master is not None and failed is None:
            console.relay_pty(master, interactive)
        rc = joiner.wait()
    finally:
        if fwd is not None:
            fwd.uninstall()
        close_all(master)
    if failed is not None:
        raise RootlessError(failed.message, exit_code=failed.code)
    return rc
