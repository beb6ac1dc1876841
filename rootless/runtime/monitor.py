"""The container's monitor: the host-side process that owns one start of a container (like podman's
conmon). It runs as the host user.

It writes the container's /etc files and record, forks the setup process into a new user namespace
(rootless.runtime.setup), reads the processes' pids off the channel (rootless.runtime.channel),
starts the network helper and holds its exit fd, places the init in its cgroup, sends Go, and then,
in the foreground (``rootless run``: the monitor is the rootless process itself), forwards signals
and relays the pty, or, detached (``run -d``, ``start``: a forked, daemonized process with its own
diagnostics in <runtime dir>/monitor.log, spawn()), writes the container's output to its log
(rootless.runtime.logs). When setup is gone it records the exit code and time and cleans up.
Killing the monitor ends the container (setup gets SIGTERM through PDEATHSIG and kills the
namespace holder); `ps` then says "exited" with an unknown code (state.refresh).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

from rootless import process, userns
from rootless import syscalls as sc
from rootless.errors import EXIT_RUNTIME, RootlessError
from rootless.runtime import console, deadline, plan, rootfs, state
from rootless.runtime.channel import Channel, Failed, Go, Pid, Pty, Started, close_all
from rootless.runtime.storage import Storage


class Monitor:
    """One start of one container (see the module docstring)."""

    def __init__(self, p: plan.Plan, rec, *, stdio=None, status: Channel | None = None):
        self.plan, self.rec = p, rec
        self.stdio = stdio  # detached: the container's stdin, stdout and stderr
        self.status = status  # detached: the channel to the CLI that waits for the start
        self.detached = stdio is not None
        self.cgroup = dataclasses.replace(p.cgroup, container_id=rec.id) if p.cgroup else None
        self.launch: plan.Launch | None = None
        self.storage: Storage | None = None
        self.setup: process.Child | None = None
        self.chan: Channel | None = None
        self.net = None
        self.init_pid = 0
        self.master: int | None = None
        self.failed: Failed | None = None
        self.fwd: console.SignalForwarder | None = None  # foreground: signals to the container
        self.relay = None  # detached -i: rootless.runtime.logs.StdinRelay
        self.private: tuple = ()  # fds setup must not hold (the stdin pipe's writing end: its EOF)
        self.deadline: deadline.Deadline | None = None  # --timeout

    # ---- before the container's processes exist -------------------------------------------------
    def prepare(self) -> None:
        """The container's files, storage dirs and record, for this start."""
        from rootless.network import etc

        o, rec = self.plan.opts, self.rec
        self.launch = launch = plan.launch(self.plan, rec)
        os.makedirs(rec.run_dir, mode=0o700, exist_ok=True)
        volatile = o.volatile or (o.rm and not self.detached)
        shift = self.plan.userns.options() if self.plan.userns else ()  # ids shifted by the overlay
        self.storage = Storage(
            o.storage_driver, list(self.plan.image.layer_dirs), rec.dir, volatile, shift
        )
        self.storage.prepare_host()
        rootfs.rewrite(
            os.path.join(rec.run_dir, "hostname"), launch.hostname
        )  # as podman: no newline
        if self.plan.network == "container":  # NAME's files, with this container's names added
            if not o.no_hosts:
                hosts = os.path.join(self.plan.network_options["run_dir"], "hosts")
                etc.add_entries(hosts, [("127.0.0.1", [launch.hostname, rec.name])])
        else:  # rewritten once a network helper runs
            self._write_etc(None)
        rootfs.rewrite(os.path.join(rec.run_dir, "containerenv"), _containerenv(self.plan, rec))
        proc = launch.process
        rec.command = proc.args
        rec.hostname, rec.network = launch.hostname, o.network
        rec.process = _process_config(proc)
        rec.pids, rec.net = {}, None
        rec.mounts = [dataclasses.asdict(m) for m in self.plan.mounts]
        rec.set_pid("monitor", os.getpid())
        state.reserve_exit(rec)  # room for the exit code, taken while the store has some
        rec.set_state("created", exit_code=None, finished=None, pid=0)

    # ---- up to the command's exec ---------------------------------------------------------------
    def start(self) -> None:
        """Fork setup, learn the pids, start the network, apply the cgroup, send Go."""
        if not self.detached:  # from now on a signal to rootless is the container's
            self._forward_signals()
        mine, theirs = Channel.pair()
        self.chan = mine
        monitor, ours = os.getpid(), (mine, self.status, *self.private)

        def body() -> int:
            from rootless.runtime import setup  # imported by _import_setup, in the child

            return setup.main(
                self.plan, self.launch, self.storage, theirs, self.stdio, self.rec, monitor, ours
            )

        if self.plan.pod is not None:  # the infra whose namespaces it joins still runs
            from rootless.pods import members

            members.check_running(self.plan.pod)
        try:
            self.setup = userns.fork_userns(body, extra_unshare_flags=sc.CLONE_NEWNS,
                                            pdeathsig=signal.SIGTERM, join=self._userns(),
                                            meanwhile=_import_setup)  # fmt: skip
        finally:
            theirs.close()
            if self.stdio is not None:
                close_all(*self.stdio[1:])
        self.rec.set_pid("setup", self.setup.pid)
        self._read_until_init()
        if not self.init_pid:
            return
        self.rec.set_state("running", pid=self.init_pid, started=time.time())
        if self.plan.opts.pidfile:
            deadline.write_pidfile(self.plan.opts.pidfile, self.init_pid)
        if self.plan.opts.timeout:
            self.deadline = deadline.Deadline.arm(self.init_pid, self.plan.opts.timeout)
        if self.fwd is not None:
            self.fwd.target(self.init_pid)
        if self.plan.network not in ("none", "host", "container"):
            try:
                self._start_network()
            except RootlessError:
                if self._container_failed():
                    return  # its own error wins: the network helper only lost its namespace
                raise
            if self.plan.network == "bridge" and self.plan.opts.pod and self.plan.pod is None:
                from rootless.pods import members  # a pod's infra: the pod's name in the DNS

                members.register_pod_name(self.plan.opts.pod, self.rec)
        if self.launch.need_cgroup:  # before Go: the init is in its cgroup before the command runs
            self.cgroup.apply(self.init_pid)
            self.rec.cgroup, self.rec.limits = self.cgroup.state(), self.cgroup.limits.to_inspect()
            self.rec.save()
        if self.launch.need_go:
            self.chan.send(Go())  # if the init has died meanwhile, its Failed message follows

    def _container_failed(self) -> bool:
        """After a network helper failed: whether the container's init had died first (it then
        sent its own Failed message, which says what went wrong)."""
        init = self.rec.pid_of("init")
        for _ in range(100):  # the helper fails once the namespace is gone: the init is dying
            if not init or not state.alive(*init):
                break
            time.sleep(0.02)
        else:
            return False
        self.collect()
        return self.failed is not None

    def _userns(self) -> str | None:
        """The user namespace to join instead of making one: the per-user network helper's for a
        container on networks (attaching to it), NAME's for --network container:NAME."""
        if self.plan.network == "bridge":
            from rootless.network.bridge import BridgeHandle
            from rootless.network.usernet import Session

            self.net = BridgeHandle(Session.attach(self.rec.id, self.rec.name))
            return self.net.userns_path
        ns = self.plan.namespace("user")
        return ns.path if ns is not None else None

    def _write_etc(self, net) -> None:
        """The container's hosts and resolv.conf (rootless.network.etc), for its network `net`."""
        from rootless.network import etc

        hosts, resolv = etc.container_files(self.plan.opts, self.plan.network, self.launch.hostname,
                                            self.rec.name, net, self.plan.image.layer_dirs)  # fmt: skip
        for name, text in (("hosts", hosts), ("resolv.conf", resolv)):
            if text is not None:
                rootfs.rewrite(os.path.join(self.rec.run_dir, name), text)

    def _read_until_init(self) -> None:
        while not self.init_pid and self.failed is None:
            if not self._handle(self.chan.recv()):
                return

    def collect(self) -> None:
        """Read the rest of the channel: the pty master, a failure; EOF once the command is exec'd."""
        while self._handle(self.chan.recv()):
            pass

    def _handle(self, msg) -> bool:
        """Take one message; False at EOF."""
        if msg is None:
            return False
        if isinstance(msg, Pid):
            self.rec.set_pid(msg.role, msg.pid)
            if msg.role == "init":
                self.init_pid = msg.pid
        elif isinstance(msg, Pty):
            self.master = msg.fd
        elif isinstance(msg, Failed) and self.failed is None:
            self.failed = msg
        return True

    def _start_network(self) -> None:
        from rootless.network import mode, ports

        o, rec, pid = self.plan.opts, self.rec, self.init_pid
        published = ports.parse_publish_all(o.publish)
        if o.publish_all:
            exposed = (self.plan.image.config.get("config") or {}).get("ExposedPorts") or {}
            if o.expose:
                from rootless.runtime import runflags

                exposed = {**exposed, **runflags.exposed(o.expose)}
            taken = {(m.container_port, m.protocol) for m in published}
            published += [
                m for m in ports.publish_all(exposed) if (m.container_port, m.protocol) not in taken
            ]
        if self.plan.network == "bridge":
            net = self.net
            net.connect(pid, rec, self.plan.network_options["endpoints"], published)
        else:
            # a nested user namespace (--userns=keep-id...): the helper runs as root of setup's,
            # which owns the nested one (as root of the nested one it could not reach the init)
            owner = self.setup.pid if self.plan.userns is not None else pid
            self.net = net = mode.start(self.plan.network, f"/proc/{pid}/ns/net", f"/proc/{owner}/ns/user",
                                        rec.run_dir, self.plan.network_options, published)  # fmt: skip
        self._write_etc(net)
        rec.net = net.to_dict()
        for role, hpid in (("net", net.pid), ("net_helper", net.helper_pid)):
            if hpid:
                rec.set_pid(role, hpid)
        rec.save()

    # ---- while the container runs ---------------------------------------------------------------
    def _forward_signals(self) -> None:
        winch = None
        if self.plan.opts.tty:
            winch = lambda: self.master is not None and sc.copy_winsize(0, self.master)  # noqa: E731
        self.fwd = console.SignalForwarder(on_winch=winch).install()

    def foreground(self) -> int:
        """rootless run: signals to the container, the pty to the terminal; setup's exit code."""
        if not self.fwd.pid:  # the init never came: signals go to setup, which ends the container
            self.fwd.target(self.setup.pid)
        try:
            self.collect()
            if self.master is not None and self.failed is None:
                console.relay_pty(self.master, self.plan.opts.interactive)
            return self.setup.wait()
        finally:
            self.fwd.uninstall()

    def detached_run(self, log, pipes: tuple[int, int], stdin=None) -> int:
        """run -d: tell the CLI once the command runs, then log its output until setup is gone;
        `stdin` (-i): (the stdin socket, the stdin pipe's writing end or -1 with a pty)."""
        from rootless.runtime import logs

        self.collect()
        if stdin is not None:
            pty = self.master is not None
            self.relay = logs.StdinRelay(stdin[0], self.master if pty else stdin[1], pty)
        if self.failed is None and self.init_pid and self.status is not None:
            self.status.send(Started())
            self.status.close()
        logs.pump(log, pipes[0], pipes[1], self.master, self.setup.pid, self.relay)
        return self.setup.wait()

    # ---- the whole start ------------------------------------------------------------------------
    def run(self, attach) -> int:
        """prepare(), start(), then attach() (foreground or detached_run); the exit code. A failure
        of the container's processes raises a RootlessError with their code."""
        self.prepare()
        rc = None
        try:
            self.start()
            checks = deadline.health_timer(self.rec) if self.init_pid else None
            rc = attach()
            if checks is not None:
                checks.stop()
            if self.deadline is not None and self.deadline.cancel():
                rc = -1  # podman's: the container was killed at its --timeout
        except BaseException:
            if self.deadline is not None:
                self.deadline.cancel()
            if self.setup is not None and self.setup.returncode is None:
                self.setup.kill_and_reap()
            raise
        finally:
            if self.fwd is not None:
                self.fwd.uninstall()
            if self.net is not None:
                self.net.stop()
            close_all(self.chan, self.master)
            if not self.plan.opts.rm:
                self._exited(rc)
        if self.failed is not None:
            if not self.plan.opts.rm:
                self._exited(self.failed.code)
            raise RootlessError(self.failed.message, exit_code=self.failed.code)
        return rc

    def _exited(self, code: int | None) -> None:
        """Record the exit: first in its reserved room (a full store cannot lose it), then the
        record (refresh() reads the room when that save failed)."""
        now = time.time()
        state.record_exit(self.rec, code, now)
        try:
            self.rec.set_state("exited", exit_code=code, finished=now, pid=0)
        except RootlessError as e:
            process.say(f"WARNING: container {self.rec.name}: {e}")

    def cleanup(self) -> None:
        """After the run: the cgroup, and the container itself for --rm."""
        if self.cgroup is not None:
            self.cgroup.cleanup()
        if self.plan.opts.rm:
            remove_quietly(self.rec)
        self.pod_exit()

    def pod_exit(self) -> None:
        """A pod's container has exited: the pod's exit policy may stop its infra."""
        if self.plan.pod is not None:
            from rootless.pods import members

            members.after_exit(self.plan.pod, self.rec.id)


def _process_config(proc):
    from rootless.runtime.state import ProcessConfig

    return ProcessConfig(args=proc.args, env=proc.env, cwd=proc.cwd, user=proc.user)


def remove_quietly(rec) -> None:
    """Remove a finished --rm container's files (inside the user namespace where needed)."""
    from rootless.runtime import state

    try:
        state.remove_files(rec)  # setup removed the storage: usually all that is left
    except OSError:
        from rootless.runtime import manage

        try:
            manage.remove_storage(rec)
        except RootlessError:
            pass
    if any(m.get("volume") for m in rec.mounts):  # podman's run --rm: its anonymous volumes too
        from rootless.volumes import usage

        try:
            usage.remove_anonymous(rec)
        except (OSError, RootlessError) as e:
            process.say(f"WARNING: removing the container's anonymous volumes: {e}")


def _containerenv(p: plan.Plan, rec) -> str:
    """/run/.containerenv as podman writes it: empty, or who and what it is with --privileged."""
    if not p.opts.privileged:
        return ""
    from rootless import __version__

    return (
        f'engine="rootless-{__version__}"\nname="{rec.name}"\nid="{rec.id}"\n'
        f'image="{rec.image}"\nimageid="{rec.image_id}"\nrootless={int(os.getuid() != 0)}\n'
    )


def run_foreground(p: plan.Plan, rec) -> int:
    """`rootless run`: this process is the container's monitor; with a restart policy that applies
    to the exit, a detached monitor takes over and restarts the container (as podman's does)."""
    mon = Monitor(p, rec)
    rc = None
    try:
        rc = mon.run(mon.foreground)
        return rc
    finally:
        mon.cleanup()
        if rc is not None and p.opts.restart and _restarts(rec, rc):
            child = process.fork(lambda: _detached_main(None, rec, None, None, after=rc),
                                 pdeathsig=None, context="in the monitor")  # fmt: skip
            child.wait()  # the first process: it exits as soon as the monitor is detached


def spawn(p: plan.Plan, rec) -> str:
    """Start the container under a detached monitor; return its id once the command runs."""
    mine, theirs = Channel.pair()
    try:
        child = process.fork(lambda: _detached_main(p, rec, theirs, mine), pdeathsig=None,
                             report=theirs.fail, context="in the monitor", bug="internal error in the monitor")  # fmt: skip
    finally:
        theirs.close()
    try:
        msg = mine.recv()
    finally:
        mine.close()
    child.wait()  # the monitor's first process: it exits as soon as the monitor is detached
    if isinstance(msg, Started):
        return rec.id
    if isinstance(msg, Failed):
        raise RootlessError(msg.message, exit_code=msg.code)
    raise RootlessError("the container's monitor died while starting it", exit_code=EXIT_RUNTIME)


def _detached_main(p: plan.Plan | None, rec, status: Channel | None, cli_end: Channel | None,
                   after: int | None = None) -> int:  # fmt: skip
    """The detached monitor: a new session, no terminal, stdio on /dev/null, its own log. It runs
    the container (unless `after`: its exit code, it has run already), then restarts it as long
    as its restart policy says so."""
    close_all(cli_end)
    process.daemonize()
    os.makedirs(rec.run_dir, mode=0o700, exist_ok=True)
    os.chdir("/")  # pin no directory of the user's for the container's lifetime
    null = os.open(os.devnull, os.O_RDWR)
    diag = os.open(
        os.path.join(rec.run_dir, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    for fd, target in ((null, 0), (diag, 1), (diag, 2)):
        os.dup2(fd, target)
    os.close(diag)
    for s in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(s, signal.SIG_IGN)
    rc, ran = (after, True) if after is not None else _detached_run(p, rec, status)
    if ran and (p is None or p.opts.restart):  # a command that never ran is not restarted
        rc = _restart_loop(rec.id, rc)
    return rc


def _restarts(rec, rc: int) -> bool:
    from rootless.runtime import restart, state

    fresh = state.load(rec.id)
    return (fresh is not None and fresh.run is not None and not restart.stopped_by_user(fresh)
            and restart.should_restart(fresh.run.restart, rc, fresh.restart_count))  # fmt: skip


def _restart_loop(cid: str, rc: int) -> int:
    """Run the container again while its restart policy says so (rootless.runtime.restart): after
    a delay, unless meanwhile the user stopped it or a user's `start` took it over."""
    from rootless.runtime import restart, state

    wait = 0.0
    while True:
        with state.lock():
            fresh = state.load(cid)
            if fresh is None or not _restarts(fresh, rc):
                return rc
            fresh.set_pid("monitor", os.getpid())
            fresh.restarting = True
            fresh.save(locked=True)
        wait = restart.delay(wait, (fresh.finished or 0) - (fresh.started or 0))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not restart.stopped_by_user(fresh):
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        with state.lock():
            fresh = state.load(cid)
            mine = fresh is not None and (fresh.pid_of("monitor") or (0,))[0] == os.getpid()
            if not mine or restart.stopped_by_user(fresh):
                if mine:
                    fresh.restarting = False
                    fresh.save(locked=True)
                return rc
            fresh.restarting = False
            fresh.restart_count += 1
            fresh.save(locked=True)
        try:
            p = plan.prepare(plan.options_of(fresh), fresh.image_id or None)
        except RootlessError as e:
            process.say(f"restarting container {fresh.name}: {e}")
            return rc
        rc, ran = _detached_run(p, fresh, None)
        if not ran:
            return rc


def _detached_run(p: plan.Plan, rec, status: Channel | None) -> tuple[int, bool]:
    """One run of the container under this (detached) monitor, its output to its log: its exit
    code, and whether its command ran."""
    from rootless.runtime import logs

    o = p.opts
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r = in_w = -1
    if o.interactive and not o.tty:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)  # held open: the command sees no EOF, as podman -di
    stdin = in_r if in_r != -1 else os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    mon = Monitor(p, rec, stdio=(stdin, out_w, err_w), status=status)
    rc, ran = EXIT_RUNTIME, False
    listener = _stdin_socket(rec) if o.interactive else None
    relayed = (listener, in_w) if listener is not None else None
    if relayed is not None:
        mon.private = (relayed[1], listener.fileno())
        in_w = -1  # the relay's now: it closes it at the client's EOF (or the end)
    try:
        rc = mon.run(lambda: mon.detached_run(logs.LogWriter.of(rec), (out_r, err_r),
                                              relayed))  # fmt: skip
        ran = True
    except BaseException as e:  # noqa: B036 - the CLI that waits must hear why
        rc, message = process.failure(e, "in the monitor", "internal error in the monitor")
        if status is not None:
            status.fail(rc, message)
        else:
            process.say(f"container {rec.name}: {message}")
    finally:
        close_all(status, out_r, err_r, in_w, stdin)
        if listener is not None:
            if mon.relay is None:  # never handed over: the pipe is still ours
                close_all(relayed[1])
            _remove_stdin_socket(rec, listener)
        if mon.cgroup is not None:
            mon.cgroup.cleanup()
        if o.rm:
            from rootless.runtime import state

            state.write_exit(rec.id, rc)
            remove_quietly(rec)
        mon.pod_exit()
    return rc, ran


def _stdin_socket(rec):
    """The socket an -i container's stdin comes from (rootless.runtime.logs.stdin_socket), 0600."""
    import socket

    from rootless.runtime import logs

    path = logs.stdin_socket(rec.run_dir)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dir_fd = os.open(rec.run_dir, os.O_PATH | os.O_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(logs.socket_address(path, dir_fd))
    finally:
        os.umask(old)
        os.close(dir_fd)
    sock.listen(4)
    return sock


def _remove_stdin_socket(rec, listener) -> None:
    from rootless.runtime import logs

    listener.close()
    try:
        os.unlink(logs.stdin_socket(rec.run_dir))
    except OSError:
        pass


def _import_setup() -> None:
    """In the setup process, while the monitor writes its uid and gid maps: import the modules only
    setup and the container's init need (setup, init, nsholder, state...), off the monitor's path."""
    import rootless.runtime.setup  # noqa: F401
