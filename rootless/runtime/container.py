"""Orchestration of `rootless run` and `start`: the processes, the namespaces and their order, cleanup.

Processes (host pids; each one reaps its child and dies with its parent through PDEATHSIG):

  monitor (host user)             resolves the image and options, writes the record, starts the
   |                              network helper (holds its exit fd), forwards signals, relays the pty
   |                              or writes the log, records the exit code and time, cleans up
   +- [fuse-overlay daemon]       foreground `run` only: started first (storage.prestart_fuse), it
   |                              imports pyfuse3 meanwhile, then joins setup's user+mount namespaces
   |                              and mounts; the monitor reaps it, setup watches it (pidfd) and ends it
   +- setup (userns root)         fork_userns(CLONE_NEWNS): mounts the storage; owns the fuse daemon
       +- fuse-overlay daemon     (fuse-overlay, run -d/start; PDEATHSIG) if it dies, setup kills the container
       +- nsmon                   unshare(NEWNS|NEWPID|NEWUTS|NEWIPC[|NEWNET]), fork, wait
           +- init (PID 1)        rootfs mounts, pivot_root, hostname, lo; after "go" (in its
                                  cgroup) NEWCGROUP; user, caps, seccomp, exec

In the foreground (`rootless run`) the monitor is the rootless process itself. With `run -d` and
`start` it is a forked, detached process (setsid, stdio on /dev/null and its own diagnostics in
<runtime dir>/monitor.log) that holds the container's stdout/stderr (pipes, or the pty master with -t)
and writes them to <container dir>/ctr.log in podman's k8s-file format (rootless.runtime.logs); the
CLI prints the id once the command has been exec'd. Killing the monitor ends the container (setup
gets SIGTERM and kills nsmon); `ps` then says "exited" with an unknown code (state.refresh).

The storage is mounted before the pid namespace exists, so the fuse daemon is neither visible nor
killable from the container. Pipes carry: tagged host pids (`daemon N`, `nsmon N`, `init N`; setup
and nsmon -> monitor), "go" (monitor -> init, once the network helper is up and the cgroup applied),
and one-line errors with their exit code (any -> monitor); the error pipe reaching EOF with no
message means the command was exec'd. All pids are kept in the record with their start times.
"""

import errno
import os
import signal
import socket
import time

from rootless import paths
from rootless import syscalls as sc
from rootless.errors import EXIT_RUNTIME, ContainerError, RootlessError
from rootless.process import exit_code, flush_stdio
from rootless.runtime import capabilities, process, rootfs, spec, state
from rootless.runtime.storage import Storage

TINI = "/usr/bin/tini-static"  # static: it runs inside the container


def _find_image(ref: str):
    from rootless.image.store import Store

    store = Store.open()
    img = store.lookup_image(ref)
    if img is not None:
        return img
    try:
        from rootless.image.pull import ensure_image
    except ImportError:
        raise ContainerError(
            f"{ref}: image not known locally; pull it first with `rootless pull {ref}`"
        ) from None
    return ensure_image(ref)


def _cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _write(path: str, text: str) -> None:
    """Rewrite a file in place (same inode), so that a bind mount of it shows the new text."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class _Pipes:
    """The fds the processes share; each process closes what it does not use."""

    stdio: tuple[int, int, int] | None = None  # detached: the container's stdin, stdout, stderr
    status_w: int = -1  # detached: "ok" / "CODE message" to the waiting CLI

    def __init__(self, need_go: bool, tty: bool):
        self.err_r, self.err_w = os.pipe2(os.O_CLOEXEC)
        self.info_r, self.info_w = os.pipe2(os.O_CLOEXEC)
        self.go_r, self.go_w = os.pipe2(os.O_CLOEXEC) if need_go else (-1, -1)
        if tty:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.tty_host, self.tty_ctr = a, b
        else:
            self.tty_host = self.tty_ctr = None

    @staticmethod
    def close(*fds):
        for fd in fds:
            if fd is None or fd == -1:
                continue
            try:
                if isinstance(fd, socket.socket):
                    fd.close()
                else:
                    os.close(fd)
            except OSError:
                pass


def _wait_child_and_daemon(pid: int, daemon) -> int:
    """Wait for our child `pid` while watching a daemon that is not our child (its pidfd): if the
    daemon dies first, the root filesystem is gone and the child is killed. Returns the wait status."""
    import select

    child_fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(child_fd, select.POLLIN)
        poller.register(daemon.pidfd, select.POLLIN)
        while True:
            try:
                ready = {fd for fd, _ in poller.poll()}
            except InterruptedError:
                continue
            if child_fd in ready:
                break
            if daemon.pidfd in ready:
                poller.unregister(daemon.pidfd)
                os.write(2, b"WARNING: the overlay daemon died: stopping the container\n")
                os.kill(pid, signal.SIGKILL)
    finally:
        os.close(child_fd)
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue


def _report(fd: int, code: int, message: str) -> None:
    try:
        os.write(fd, f"{code} {message}".replace("\n", " ").encode(errors="replace")[:4000])
    except OSError:
        pass


class Runner:
    def __init__(self, opts: spec.RunOptions, rec=None):
        self.opts = opts
        self.rec = rec  # an existing (stopped) container to start again
        self.detached = False
        self.stdio = None
        self.status_w = -1

    # ---- host side -------------------------------------------------------------------------------
    def prepare(self) -> None:
        o = self.opts
        from rootless.network.mode import parse_network

        self.net_mode, self.net_opts = parse_network(o.network)
        if self.net_mode in ("none", "host") and o.publish:
            raise ContainerError(f"-p cannot be used with --network {self.net_mode}")
        self.prepare_security()
        self._prepare_rest()

    def prepare_security(self) -> None:
        """Capabilities, seccomp (compiled to BPF) and no_new_privs, as for the container (and exec)."""
        o = self.opts
        self.caps = capabilities.compute(o.cap_add, o.cap_drop, o.privileged)
        self.seccomp_profile = None
        self.no_new_privs = False
        unconfined = o.privileged
        for so in o.security_opts:
            key, _, val = so.partition("=")
            if key == "seccomp":
                if val == "unconfined":
                    unconfined = True
                else:
                    from rootless.runtime import seccomp

                    self.seccomp_profile = seccomp.load_profile_file(val)
            elif key in ("no-new-privileges", "no_new_privileges"):
                self.no_new_privs = val in ("", "true", "1")
            elif key in ("label", "apparmor", "mask", "unmask", "proc-opts"):
                pass
            else:
                raise ContainerError(
                    f"--security-opt {so}: unknown option; use seccomp=..., no-new-privileges"
                )
        if not unconfined and self.seccomp_profile is None:
            from rootless.runtime import seccomp

            self.seccomp_profile = seccomp.default_profile()
        if unconfined:
            self.seccomp_profile = None
        self.seccomp_bpf = None
        if self.seccomp_profile is not None:
            from rootless.runtime import seccomp

            try:
                cache = os.path.join(paths.data_home(), "cache", "seccomp")
                self.seccomp_bpf = seccomp.bpf(self.seccomp_profile, self.caps, cache)
            except OSError as e:
                raise ContainerError(
                    f"cannot compile the seccomp profile: {e.strerror or e}"
                ) from None

    def _prepare_rest(self) -> None:
        o = self.opts
        self.mounts = [rootfs.parse_volume(v) for v in o.volumes]
        self.mounts += [rootfs.parse_tmpfs(t) for t in o.tmpfs]
        self.mounts += [rootfs.parse_mount(m) for m in o.mounts]
        if o.init and not os.path.exists(TINI):
            raise ContainerError(f"--init needs {TINI}: install Debian's tini package")
        self.cgroup = None
        if o.limits or o.cgroup_manager or o.cgroups == "disabled" or _cgroup_v2():
            # on cgroup v2 every container gets a cgroup (podman's default --pids-limit 2048);
            # elsewhere only explicit limits need a plan, and they fail with the reason and the fix
            from rootless import cgroups

            limits = cgroups.Limits.from_cli(**o.limits)
            manager = "disabled" if o.cgroups == "disabled" else o.cgroup_manager
            self.cgroup = cgroups.plan(limits, manager, "")
        if o.rootfs:
            from types import SimpleNamespace

            path = os.path.abspath(o.image)
            if not os.path.isdir(path):
                raise ContainerError(f"--rootfs {o.image}: not a directory")
            self.image = SimpleNamespace(id="", config={}, layer_dirs=[path])
        elif self.rec is not None and self.rec.image_id:
            self.image = _find_image(self.rec.image_id)
        else:
            self.image = _find_image(o.image)

    def _create(self):
        o = self.opts
        if self.rec is None:
            from dataclasses import asdict

            saved = asdict(o)
            # `start` parses these again, maybe from another directory: keep host paths absolute
            saved["volumes"] = [_abs_source(v) for v in o.volumes]
            saved["env_files"] = [os.path.abspath(f) for f in o.env_files]
            saved["security_opts"] = [
                "seccomp=" + os.path.abspath(so[8:])
                if so.startswith("seccomp=") and so != "seccomp=unconfined"
                else so
                for so in o.security_opts
            ]
            # one save: the record is created with its run options
            self.rec = state.create(
                o.image,
                self.image.id,
                name=o.name,
                rm=o.rm,
                storage_driver=o.storage_driver,
                options={"run": saved},
            )
        rec = self.rec
        if self.cgroup is not None:
            self.cgroup.container_id = rec.id
        return rec

    def run(self) -> int:
        """Foreground: this process is the container's monitor."""
        self.prepare()
        o = self.opts
        rec = self._create()
        try:
            return self._run(rec)
        finally:
            if self.cgroup is not None:
                self.cgroup.cleanup()
            if o.rm:
                self._remove(rec)

    # ---- detached: a forked monitor process ----------------------------------------------------------
    def run_detached(self) -> str:
        """Start the container under a detached monitor; return its id once the command runs."""
        self.prepare()
        rec = self._create()
        return self.spawn_monitor(rec)

    def spawn_monitor(self, rec) -> str:
        self.detached = True
        if self.cgroup is not None:
            self.cgroup.container_id = rec.id
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        flush_stdio()
        pid = os.fork()
        if pid == 0:
            os.close(status_r)
            self.status_w = status_w
            code = EXIT_RUNTIME
            try:
                code = self._monitor_detached(rec)
            except BaseException as e:  # noqa: B036 - never unwind into the CLI's code
                _report(self.status_w, EXIT_RUNTIME, f"internal error in the monitor: {e}")
            finally:
                os._exit(code)
        os.close(status_w)
        try:
            raw = _read_all(status_r)
        finally:
            os.close(status_r)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        text = raw.decode(errors="replace").strip()
        if text == "ok":
            return rec.id
        code, _, msg = text.partition(" ")
        if not code.isdigit():
            code, msg = str(EXIT_RUNTIME), "the container's monitor died while starting it"
        raise RootlessError(msg, exit_code=int(code))

    def _monitor_detached(self, rec) -> int:
        from rootless.runtime import logs

        os.setsid()
        pid = os.fork()  # not a session leader: never gets a controlling terminal
        if pid:
            os._exit(0)
        os.makedirs(rec.run_dir, mode=0o700, exist_ok=True)
        os.chdir("/")  # pin no directory of the user's for the container's lifetime
        null = os.open(os.devnull, os.O_RDWR)
        diag = os.open(
            os.path.join(rec.run_dir, "monitor.log"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        os.dup2(null, 0)
        os.dup2(diag, 1)
        os.dup2(diag, 2)
        os.close(diag)
        for s in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
            signal.signal(s, signal.SIG_IGN)
        o = self.opts
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r = in_w = -1
        if o.interactive and not o.tty:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)  # held open: the command sees no EOF, as podman -di
        self.stdio = (in_r if in_r != -1 else null, out_w, err_w)
        rc = EXIT_RUNTIME
        try:
            rc = self._run(rec, log=logs.LogWriter(rec.log_path), pipes=(out_r, err_r))
        except RootlessError as e:
            _report(self.status_w, e.exit_code, str(e))
            rc = e.exit_code
        except BaseException as e:  # noqa: B036
            _report(self.status_w, EXIT_RUNTIME, f"{type(e).__name__}: {e}")
        finally:
            _Pipes.close(self.status_w, out_r, err_r, in_w)
            self.status_w = -1
            if self.cgroup is not None:
                self.cgroup.cleanup()
            if o.rm:
                state.write_exit(rec.id, rc)
                self._remove(rec)
        return rc

    def _remove(self, rec) -> None:
        import shutil

        try:
            state.remove_files(rec)
        except OSError:
            # the setup process did not get to remove subordinate-owned files: do it in a userns
            from rootless.runtime.storage import remove_tree
            from rootless.userns import fork_userns

            try:
                fork_userns(lambda: remove_tree(rec.dir)).wait()
            except RootlessError:
                pass
            shutil.rmtree(rec.run_dir, ignore_errors=True)

    def _run(self, rec, log=None, pipes=None) -> int:
        o = self.opts
        hostname = o.hostname or (os.uname().nodename if self.net_mode == "host" else rec.id[:12])
        self.hostname = hostname
        self.proc = spec.resolve(o, self.image.config, hostname)
        if o.init:
            self.proc.args = [rootfs.INIT_PATH, "--", *self.proc.args]
        os.makedirs(rec.run_dir, mode=0o700, exist_ok=True)
        self.storage = Storage(
            o.storage_driver, self.image.layer_dirs, rec.dir, volatile=o.rm and not self.detached
        )
        self.storage.prepare_host()
        from rootless.network.handle import NetworkHandle

        unstarted = NetworkHandle(self.net_mode)
        etc = {}
        for name, text in (
            ("hostname", hostname + "\n"),
            ("hosts", unstarted.hosts(hostname, (rec.name,))),
            ("resolv.conf", unstarted.resolv_conf()),
        ):
            path = os.path.join(rec.run_dir, name)
            _write(path, text)
            etc["/etc/" + name] = path
        self.rootfs_cfg = rootfs.RootfsConfig(
            root="",
            etc_files=etc,
            mounts=self.mounts,
            read_only=o.read_only,
            privileged=o.privileged,
            init=TINI if o.init else None,
            workdir=self.proc.cwd,
            new_netns=self.net_mode != "host",
        )
        rec.command = self.proc.args
        rec.options.update(
            hostname=hostname,
            network=o.network,
            process={
                "args": self.proc.args,
                "env": self.proc.env,
                "cwd": self.proc.cwd,
                "user": self.proc.user,
            },
            pids={},
            net=None,
            mounts=[m.__dict__ if hasattr(m, "__dict__") else repr(m) for m in self.mounts],
        )
        rec.set_pid("monitor", os.getpid())
        rec.set_state("created", exit_code=None, finished=None, pid=0)
        cg = self.cgroup
        need_cgroup = cg is not None and (
            cg.manager != "none" or cg.limits.oom_score_adj is not None
        )
        need_go = self.net_mode not in ("none", "host") or need_cgroup
        p = self.pipes = _Pipes(need_go, o.tty)
        p.stdio = self.stdio
        p.status_w = self.status_w
        from rootless.userns import fork_userns

        net = None
        child = None
        err = b""
        rc = None
        try:
            try:
                child = fork_userns(self._setup_main, extra_unshare_flags=sc.CLONE_NEWNS)
            finally:
                _Pipes.close(p.err_w, p.info_w, p.go_r, p.tty_ctr)
                if p.stdio is not None:
                    _Pipes.close(*p.stdio[1:])
            rec.set_pid("setup", child.pid)
            pids = _parse_pids(_read_all(p.info_r))
            for role, pid in pids.items():
                rec.set_pid(role, pid)
            init_pid = pids.get("init", 0)
            master = None
            if init_pid:
                rec.set_state("running", pid=init_pid, started=time.time())
                if o.tty:
                    try:
                        _msg, fds, _f, _a = socket.recv_fds(p.tty_host, 16, 1)
                        master = fds[0] if fds else None
                    except OSError:
                        master = None
                if self.net_mode not in ("none", "host"):
                    net = self._start_network(rec, init_pid)
                    rec.options["net"] = net.to_dict()
                    for role, pid in (("net", net.pid), ("net_helper", net.helper_pid)):
                        if pid:
                            rec.set_pid(role, pid)
                    rec.save()
                if need_cgroup:
                    # before "go": the init is placed in its cgroup before it runs the command
                    cg.apply(init_pid)
                    rec.options["cgroup"] = cg.state()
                    rec.options["limits"] = cg.limits.to_inspect()
                    rec.save()
                if need_go:
                    os.write(p.go_w, b"go")
            if self.detached:
                err = _read_all(p.err_r)  # EOF: the command was exec'd (or failed to be)
                if not err and init_pid:
                    os.write(p.status_w, b"ok\n")
                    _Pipes.close(p.status_w)
                    p.status_w = self.status_w = -1
                from rootless.runtime import logs

                logs.pump(log, pipes[0], pipes[1], master, child.pid)
                if master is not None:
                    os.close(master)
                rc = child.wait()
            else:
                fwd = process.SignalForwarder(
                    init_pid or child.pid,
                    on_winch=(lambda: process.copy_winsize(0, master))
                    if master is not None
                    else None,
                ).install()
                try:
                    if master is not None:
                        err = b""
                        process.relay_pty(master, o.interactive)
                        os.close(master)
                    err = _read_all(p.err_r)
                    rc = child.wait()
                finally:
                    fwd.uninstall()
        except BaseException:
            if child is not None and child.returncode is None:
                child.kill()
                child.wait()
            raise
        finally:
            if net is not None:
                net.stop()
            _Pipes.close(p.err_r, p.info_r, p.go_w, p.tty_host)
            if not o.rm:
                rec.set_state("exited", exit_code=rc, finished=time.time(), pid=0)
        if err:
            code, _, msg = err.decode(errors="replace").partition(" ")
            code = int(code) if code.isdigit() else EXIT_RUNTIME
            if not o.rm:
                rec.set_state("exited", exit_code=code, finished=time.time(), pid=0)
            raise RootlessError(msg, exit_code=code)
        return rc

    def _start_network(self, rec, pid: int):
        from rootless.network import mode
        from rootless.network import ports as netports

        ports = netports.parse_publish_all(self.opts.publish)
        if self.opts.publish_all:
            exposed = (self.image.config.get("config") or {}).get("ExposedPorts")
            taken = {(m.container_port, m.protocol) for m in ports}
            ports += [
                m
                for m in netports.publish_all(exposed)
                if (m.container_port, m.protocol) not in taken
            ]
        net = mode.start(
            self.net_mode,
            f"/proc/{pid}/ns/net",
            f"/proc/{pid}/ns/user",
            rec.run_dir,
            self.net_opts,
            ports,
        )
        _write(os.path.join(rec.run_dir, "resolv.conf"), net.resolv_conf())
        _write(os.path.join(rec.run_dir, "hosts"), net.hosts(self.hostname, (rec.name,)))
        return net

    # ---- setup process (root in the user namespace, own mount namespace) -------------------------
    def _setup_main(self) -> int:
        p = self.pipes
        parent = os.getppid()
        self._monitor_pid = 0
        self._orphaned = False

        def on_term(*_):  # rootless died (PDEATHSIG) or someone asked us to stop: end the container
            self._orphaned = True
            if self._monitor_pid:
                os.kill(self._monitor_pid, signal.SIGKILL)

        _Pipes.close(p.err_r, p.info_r, p.go_w, p.tty_host, p.status_w)
        os.setsid()
        for s in process.FORWARDED:
            signal.signal(s, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, on_term)
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            return EXIT_RUNTIME
        try:
            return self._setup_body(p)
        finally:
            if os.getppid() != parent and self.opts.rm:  # nobody else will clean up
                try:
                    state.remove_files(self.rec)
                except OSError:
                    pass

    def _setup_body(self, p) -> int:
        try:
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            root = self.storage.mount()
        except Exception as e:
            _report(
                p.err_w,
                getattr(e, "exit_code", EXIT_RUNTIME),
                f"mounting the container's root: {e}",
            )
            self._cleanup_storage()
            return EXIT_RUNTIME
        try:
            self.rootfs_cfg.root = root
            flags = (
                sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC
            )  # the cgroup namespace is the init's, once it is in its cgroup (_start_process)
            if self.net_mode != "host":
                flags |= sc.CLONE_NEWNET
            if self._orphaned:
                return EXIT_RUNTIME
            daemon = self.storage.proc
            if daemon is not None:
                os.write(p.info_w, f"daemon {daemon.pid}\n".encode())
            pid = os.fork()
            if pid == 0:
                self._monitor_main(flags)  # never returns
            self._monitor_pid = pid
            if self._orphaned:
                os.kill(pid, signal.SIGKILL)
            os.write(p.info_w, f"nsmon {pid}\n".encode())
            _Pipes.close(p.err_w, p.info_w, p.go_r, p.tty_ctr)
            if p.stdio is not None:
                _Pipes.close(*p.stdio)
            status = None
            if daemon is not None and daemon.pidfd >= 0:
                # watch the daemon (ours, or the monitor's child) through its pidfd
                status = _wait_child_and_daemon(pid, daemon)
            while status is None:
                try:
                    wpid, wstatus = os.wait()
                except InterruptedError:
                    continue
                except ChildProcessError:
                    return EXIT_RUNTIME
                if wpid == pid:
                    status = wstatus
                    break
                if daemon is not None and wpid == daemon.pid:
                    # the root filesystem is gone: the container cannot go on
                    daemon.returncode = os.waitstatus_to_exitcode(wstatus)
                    os.write(2, b"WARNING: the overlay daemon died: stopping the container\n")
                    os.kill(pid, signal.SIGKILL)
            return exit_code(status)
        finally:
            self._cleanup_storage()

    def _cleanup_storage(self) -> None:
        try:
            self.storage.unmount()
        finally:
            if self.opts.rm:
                try:
                    self.storage.remove()
                except OSError as e:
                    os.write(2, f"WARNING: removing the container's storage: {e}\n".encode())

    def _monitor_main(self, flags: int) -> None:
        p = self.pipes
        rc = EXIT_RUNTIME
        try:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            try:
                sc.unshare(flags)
            except OSError as e:
                _report(p.err_w, EXIT_RUNTIME, f"creating the container's namespaces: {e.strerror}")
                os._exit(EXIT_RUNTIME)
            pid = os.fork()
            if pid == 0:
                self._init_main()  # never returns
            os.write(p.info_w, f"init {pid}\n".encode())
            _Pipes.close(p.err_w, p.info_w, p.go_r, p.tty_ctr)
            if p.stdio is not None:
                _Pipes.close(*p.stdio)
            rc = exit_code(os.waitpid(pid, 0)[1])
        finally:
            os._exit(rc)

    # ---- the container's PID 1 -------------------------------------------------------------------
    def _init_main(self) -> None:
        p = self.pipes
        code = EXIT_RUNTIME
        try:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            _Pipes.close(p.info_w)
            sc.sethostname(self.hostname)
            if self.net_mode != "host":
                from rootless.network.netlink import loopback_up

                loopback_up()
                _write("/proc/sys/net/ipv4/ping_group_range", "0 0")  # podman's default sysctl
            rootfs.setup(self.rootfs_cfg)
            self._start_process()
        except process.ExecError as e:
            code = e.code
            _report(p.err_w, e.code, str(e))
        except RootlessError as e:
            code = e.exit_code
            _report(p.err_w, code, str(e))
        except OSError as e:
            _report(p.err_w, EXIT_RUNTIME, f"setting up the container: {e}")
        except BaseException as e:  # noqa: B036 - never unwind into the parent's code
            _report(
                p.err_w,
                EXIT_RUNTIME,
                f"internal error in the container setup: {type(e).__name__}: {e}",
            )
        os._exit(code)

    def _start_process(self) -> None:
        p = self.pipes
        o = self.opts
        proc = self.proc
        user = spec.resolve_user(proc.user)
        env = dict(proc.env)
        env.setdefault("HOME", user.home)
        if p.stdio is not None and not o.tty:
            for target, fd in enumerate(p.stdio):
                os.dup2(fd, target)  # dup2 clears O_CLOEXEC on the copy
        if o.tty:
            master, slave = process.open_pty_in_container()
            os.fchown(slave, user.uid, user.gid)
            socket.send_fds(p.tty_ctr, [b"m"], [master])
            os.close(master)
            process.make_controlling(slave)
        elif not o.interactive and p.stdio is None:
            fd = os.open("/dev/null", os.O_RDONLY)
            os.dup2(fd, 0)
            os.close(fd)
        _Pipes.close(p.tty_ctr)
        if p.go_r != -1:
            if os.read(p.go_r, 2) != b"go":
                os._exit(EXIT_RUNTIME)  # rootless failed and reports it
            os.close(p.go_r)
        sc.unshare(
            sc.CLONE_NEWCGROUP
        )  # rooted at the container's cgroup: /proc/self/cgroup is 0::/
        try:
            os.chdir(proc.cwd)
        except OSError as e:
            raise ContainerError(
                f"cannot chdir to working directory {proc.cwd}: {e.strerror}"
            ) from None
        become(self, user, o.cap_add)
        process.execve(proc.args, env)


def become(sec, user, cap_add) -> None:
    """Take on the container's security settings (sec: a prepared Runner) as `user`, before exec."""
    process.reset_signals()
    if sec.seccomp_bpf is not None:
        sc.seccomp_load_bpf(sec.seccomp_bpf)
    if sec.no_new_privs:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    capabilities.drop_bounding(sec.caps)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(user.groups)
    except OSError:  # denied (single-id namespace) or a group outside the mapping
        pass
    try:
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        raise ContainerError(
            f"user {user.uid}:{user.gid} is not mapped in the container's user namespace: "
            "add subordinate ids for your user (see docs/subuid.md) or run as root in the container"
        ) from None
    capabilities.set_process(sec.caps, user.uid, cap_add)


def _abs_source(volume: str) -> str:
    src, sep, rest = volume.partition(":")
    if sep and src.startswith("."):
        src = os.path.abspath(src)
    return src + sep + rest


def _parse_pids(raw: bytes) -> dict[str, int]:
    out = {}
    for line in raw.decode(errors="replace").splitlines():
        role, _, pid = line.partition(" ")
        if pid.strip().isdigit():
            out[role] = int(pid)
    return out


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return out
        out += chunk


def run(opts: spec.RunOptions) -> int:
    if not os.path.isdir(paths.data_home()):
        os.makedirs(paths.data_home(), mode=0o700, exist_ok=True)
    return Runner(opts).run()


def run_detached(opts: spec.RunOptions) -> str:
    """`run -d`: the container's id, once its command runs under a detached monitor."""
    if not os.path.isdir(paths.data_home()):
        os.makedirs(paths.data_home(), mode=0o700, exist_ok=True)
    return Runner(opts).run_detached()


def options_of(rec) -> spec.RunOptions:
    """The RunOptions a container was created with (for start, exec and inspect)."""
    saved = dict(rec.options.get("run") or {})
    known = spec.RunOptions.__dataclass_fields__
    saved = {k: v for k, v in saved.items() if k in known}
    saved.setdefault("image", rec.image)
    saved["name"] = rec.name
    return spec.RunOptions(**saved)


def start_detached(rec) -> None:
    """Start a created or exited container again on its preserved storage, under a new monitor."""
    with state.lock():  # two `start`s at once must not run the container twice on one upper dir
        fresh = state.load(rec.id)
        if fresh is None:
            raise state.NoSuchContainer(
                f'no container with name or ID "{rec.name}" found: no such container'
            )
        if fresh.state in ("running", "stopping") or (
            fresh.state == "created" and fresh.alive("monitor")
        ):
            return
        fresh.state = "created"
        fresh.options["pids"] = {}
        fresh.set_pid("monitor", os.getpid())  # until the monitor takes over
        fresh._save_locked()
    rec = fresh
    runner = Runner(options_of(rec), rec=rec)
    try:
        runner.prepare()
    except BaseException:
        rec.set_state("exited")
        raise
    runner.spawn_monitor(rec)
