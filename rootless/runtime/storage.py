"""Storage drivers for a container's root filesystem: overlay (kernel), fuse-overlay and vfs.

Each driver mounts the image's layers plus the container's upper dir at <container dir>/merged (vfs:
a plain copy at <container dir>/rootfs) from inside the user+mount namespace, and undoes it. The kernel
overlay mount lives in that mount namespace only, so it vanishes with it; the fuse daemon is a child
of the caller, who reaps it through unmount(). The daemon is started here (the fuse-overlayfs command
line of rootless.fuse_overlay) with PR_SET_PDEATHSIG=SIGKILL, so it dies with its owner even when the
owner is SIGKILLed and cannot unmount.

A foreground `run` starts the fuse daemon earlier instead (prestart_fuse / early_prestart, class
Prestarted): its interpreter imports pyfuse3 while the run sets up, and setup mounts /dev/fuse itself
and hands it the fd. The driver choice itself is rootless.config.select_driver.
"""

import errno
import os
import signal
import stat
import sys

from rootless import syscalls as sc
from rootless.errors import ContainerError

DRIVERS = ("overlay", "fuse-overlay", "vfs")


class Storage:
    def __init__(self, driver: str, layer_dirs: list[str], cdir: str, volatile: bool = False):
        if driver not in DRIVERS:
            raise ContainerError(
                f"unknown storage driver {driver!r}: use overlay, fuse-overlay or vfs"
            )
        self.driver = driver
        self.layers = list(layer_dirs)  # bottom first
        self.cdir = cdir
        self.upper = os.path.join(cdir, "upper")
        self.work = os.path.join(cdir, "work")
        self.merged = os.path.join(cdir, "merged")
        self.rootfs = os.path.join(cdir, "rootfs")
        self.proc = None
        # kernel overlay: mount with `volatile` (no syncs to the upper fs, none at unmount), for an
        # upper dir that is removed after one use (a foreground --rm run; podman does the same)
        self.volatile = volatile

    def prepare_host(self) -> None:
        """Create the container's storage dirs as the host user (= container root)."""
        if self.driver == "vfs":
            return
        for d in (self.upper, self.work, self.merged):
            os.makedirs(d, mode=0o755, exist_ok=True)
            os.chmod(d, 0o755)

    def mount(self) -> str:
        """Mount (in the current user+mount namespace); return the root path."""
        if self.driver == "overlay":
            return self._mount_overlay()
        if self.driver == "fuse-overlay":
            lowers = list(reversed(self.layers))
            pre = _prestarted if _prestarted is not None and _prestarted.usable() else None
            if pre is not None:
                self.proc = pre.mount(lowers, self.upper, self.work, self.merged)
            else:
                self.proc = _spawn_fuse(lowers, self.upper, self.work, self.merged)
            return self.merged
        return self._vfs()

    def unmount(self) -> None:
        if isinstance(self.proc, Prestarted):
            proc, self.proc = self.proc, None
            proc.stop(self.merged)
        elif self.proc is not None:
            from rootless import fuse_overlay

            proc, self.proc = self.proc, None
            fuse_overlay.stop(proc, self.merged)
        else:
            try:
                sc.umount2(self.merged, sc.MNT_DETACH)
            except OSError:
                pass

    def _mount_overlay(self) -> str:
        lowers = list(reversed(self.layers)) if self.layers else []
        if not lowers:
            empty = os.path.join(self.cdir, "empty")
            os.makedirs(empty, exist_ok=True)
            lowers = [empty]
        data = f"lowerdir={':'.join(lowers)},upperdir={self.upper},workdir={self.work},userxattr"
        cwd = None
        if len(data) > 3800:  # the mount data is one page: use paths relative to the layers' parent
            base = os.path.commonpath(lowers)
            cwd = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
            os.chdir(base)
            rel = [os.path.relpath(x, base) for x in lowers]
            data = f"lowerdir={':'.join(rel)},upperdir={self.upper},workdir={self.work},userxattr"
        try:
            try:
                sc.mount("overlay", self.merged, "overlay", 0, data + ",volatile" * self.volatile)
            except OSError as e:
                if not self.volatile or e.errno != errno.EINVAL:
                    raise
                sc.mount("overlay", self.merged, "overlay", 0, data)  # a kernel before 5.10
        except OSError as e:
            raise ContainerError(
                f"cannot mount the kernel overlay ({e.strerror}): this kernel may not allow overlay in a "
                "user namespace; use --storage-driver fuse-overlay or vfs"
            ) from None
        finally:
            if cwd is not None:
                os.fchdir(cwd)
                os.close(cwd)
        return self.merged

    # --- vfs: a plain copy of the layers, whiteouts applied -------------------------------------------
    def _vfs(self) -> str:
        done = os.path.join(self.cdir, "rootfs.done")
        if not os.path.exists(done):
            if os.path.exists(self.rootfs):
                remove_tree(self.rootfs)
            os.mkdir(self.rootfs, 0o755)
            for layer in self.layers:
                _apply_layer(layer, self.rootfs)
            open(done, "w").close()
        sc.mount(self.rootfs, self.rootfs, None, sc.MS_BIND)
        self.merged = self.rootfs
        return self.rootfs

    def remove(self) -> None:
        """Remove the container's storage (call inside the user namespace: owners are subordinate ids)."""
        for d in (
            self.upper,
            self.work,
            self.merged,
            self.rootfs,
            os.path.join(self.cdir, "empty"),
        ):
            if os.path.lexists(d):
                remove_tree(d)


def _fuse_opts(lowers: list[str], upper: str, work: str) -> list[str]:
    from rootless.fuse_overlay import mount_options

    # allow_other: container users other than root; only processes in this userns qualify
    return mount_options(lowers, upper, work, ["allow_other"])


# --- fuse-overlay started early: its interpreter imports pyfuse3 and trio while the run sets up ------
_prestarted = None


class Prestarted:
    """A fuse-overlay daemon started by the monitor before the user namespace exists.

    Its interpreter imports pyfuse3 and trio (most of its start-up) in parallel with the monitor's
    work, then waits on a socket. Setup (root in the user namespace, own mount namespace) opens
    /dev/fuse, mounts the root itself (`fd=N`, as fusermount3 does for libfuse) and sends the
    daemon that fd, its own pid and the overlay options, then goes on at once: the container's
    first lookups wait in the kernel until the daemon serves them, so the daemon's import overlaps
    the namespaces, the rootfs mounts and the network helper's start. The daemon, still
    single-threaded, joins setup's user and mount namespaces (setns), becomes root there as setup
    is, and serves /dev/fd/N. The monitor is its parent and reaps it (reap()); setup watches it
    through a pidfd (the container is stopped if it dies) and ends it (stop()). PDEATHSIG (SIGKILL)
    ties it to the monitor; it has its own session and stays in the host pid namespace, so the
    container can neither see nor signal it.
    """

    def __init__(self, popen, sock: int):
        self.popen = popen
        self.pid = popen.pid
        self.owner = os.getpid()
        self.sock = sock
        self.returncode = None
        self.pidfd = -1
        self.claimed = False

    def usable(self) -> bool:
        """In setup: only the monitor that started the daemon (our parent) can hand it over."""
        return not self.claimed and self.sock >= 0 and os.getppid() == self.owner

    def mount(self, lowers: list[str], upper: str, work: str, mountpoint: str):
        """In setup: mount the root on a fresh /dev/fuse fd and hand the fd to the daemon."""
        import json
        import socket

        self.claimed = True
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except OSError as e:
            raise ContainerError(f"the overlay daemon is gone ({e.strerror})") from None
        try:
            fuse = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise ContainerError(
                f"cannot open /dev/fuse ({e.strerror}): use --storage-driver overlay or vfs"
            ) from None
        try:
            data = f"fd={fuse},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other"
            try:
                sc.mount(
                    "rootless-overlay", mountpoint, "fuse.overlay", sc.MS_NOSUID | sc.MS_NODEV, data
                )
            except OSError as e:
                raise ContainerError(f"cannot mount fuse-overlay: {e.strerror}") from None
            opts = ",".join(_fuse_opts(lowers, upper, work))
            msg = json.dumps({"pid": os.getpid(), "options": opts}).encode()
            try:
                with socket.socket(fileno=self.sock) as sk:
                    self.sock = -1
                    socket.send_fds(sk, [msg], [fuse])
            except OSError as e:
                sc.umount2(mountpoint, sc.MNT_DETACH)
                raise ContainerError(f"cannot reach the overlay daemon: {e.strerror}") from None
        finally:
            os.close(fuse)  # the daemon holds the connection now: if it dies, the fs is gone
        return self

    def exited(self) -> bool:
        import select

        return bool(select.select([self.pidfd], [], [], 0)[0]) if self.pidfd >= 0 else True

    def stop(self, mountpoint: str, timeout: float = 10.0) -> None:
        """In setup, once every container process is gone: detach the mount, end the daemon and
        wait until it has exited (the monitor reaps it). SIGKILL, not a graceful SIGTERM: the
        daemon caches no writes (no writeback cache; every write reached the upper dir before the
        writer's syscall returned), the mount is already detached, and its interpreter's orderly
        exit would cost ~20 ms on every `run --rm`."""
        import select

        try:
            sc.umount2(mountpoint, sc.MNT_DETACH)
        except OSError:
            pass
        if self.pidfd >= 0:
            if not self.exited():
                os.kill(self.pid, signal.SIGKILL)
                select.select([self.pidfd], [], [], timeout)
            os.close(self.pidfd)
            self.pidfd = -1

    def reap(self) -> None:
        """In the monitor, once setup is gone: make sure the daemon has ended, and reap it."""
        if self.sock >= 0:
            os.close(self.sock)
            self.sock = -1
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


def prestart_fuse() -> None:
    """Start the fuse-overlay daemon's interpreter now (monitor, before the user namespace)."""
    global _prestarted
    import socket
    import subprocess

    if _prestarted is not None:
        return  # early_prestart() did it

    from rootless import paths

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    # -S (no site: ~5 ms less) with the venv's site-packages passed on explicitly
    sitedirs = [p for p in sys.path if p.endswith("-packages")]
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (pkg_root, *sitedirs, env.get("PYTHONPATH")) if p
    )
    parent = os.getpid()

    def child_setup():
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    # the command line says what it is (ps, leak checks): the overlay daemon for this store
    cmd = [sys.executable, "-S", "-m", "rootless.runtime.storage", "rootless.fuse_overlay"]
    cmd += [str(theirs.fileno()), paths.data_home()]
    try:
        popen = subprocess.Popen(
            cmd,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
            preexec_fn=child_setup,
            start_new_session=True,
        )
    except OSError:
        mine.close()
        return  # Storage.mount() starts it the ordinary way and reports the error
    finally:
        theirs.close()
    _prestarted = Prestarted(popen, mine.detach())


def early_prestart(argv: list[str]) -> None:
    """From the CLI's first lines, before click is imported: if this is a foreground
    `rootless [GLOBAL OPTIONS] run` whose driver will be fuse-overlay, start the daemon now, ~30 ms
    sooner than `run` could. A wrong guess only costs a daemon that reap_prestarted() kills."""
    flag = None
    args = iter(argv)
    verb = None
    for a in args:
        if a in ("--storage-driver", "--log-level"):
            v = next(args, None)
            if a == "--storage-driver":
                flag = v
        elif a.startswith("--storage-driver="):
            flag = a.partition("=")[2]
        elif not a.startswith("-"):
            verb = a
            break
    if verb != "run":
        return
    for a in args:  # run's own options, up to the image
        if a in ("-d", "--detach", "--detach=true") or (
            a.startswith("-") and not a.startswith("--") and "d" in a[1:] and a[1:].isalpha()
        ):
            return
        if not a.startswith("-"):
            break
    try:
        from rootless.config import select_driver

        if select_driver(flag)[0] != "fuse-overlay":
            return
    except Exception:  # noqa: BLE001 - `run` reports a bad setting itself
        return
    import atexit

    prestart_fuse()
    atexit.register(reap_prestarted)  # --help, usage errors: nothing is left behind


def reap_prestarted() -> None:
    global _prestarted
    pre, _prestarted = _prestarted, None
    if pre is not None and pre.owner == os.getpid():
        pre.reap()


def _daemon_main(sock_fd: int) -> int:
    """The prestarted daemon: import, wait for setup's message, join its namespaces and serve."""
    import json
    import socket

    import pyfuse3  # noqa: F401 - the point: import the heavy modules before we are needed
    import trio  # noqa: F401

    from rootless.fuse_overlay import (
        mount,
        ops,  # noqa: F401
    )

    with socket.socket(fileno=sock_fd) as sk:
        data, fds, _flags, _addr = socket.recv_fds(sk, 1 << 16, 1)
    if not data or not fds:
        return 0  # the run ended before it needed us
    fuse = fds[0]
    try:
        msg = json.loads(data)
        for ns, flag in (("user", sc.CLONE_NEWUSER), ("mnt", sc.CLONE_NEWNS)):
            fd = os.open(f"/proc/{int(msg['pid'])}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                sc.setns(fd, flag)
            finally:
                os.close(fd)
        os.setresgid(0, 0, 0)
        try:
            os.setgroups([])
        except PermissionError:
            pass
        os.setresuid(0, 0, 0)
        # "/" stands in for the mount point: it is mounted already, and we are the one to serve it
        cfg = mount.parse_options([msg["options"]], "/")
    except (OSError, ValueError, KeyError, TypeError, mount.OptionError) as e:
        print(f"rootless-overlay: joining the container: {e}", file=sys.stderr)
        return 1
    cfg.mountpoint = f"/dev/fd/{fuse}"  # libfuse serves an fd that its caller mounted
    return mount.run(cfg, None)


def _spawn_fuse(lowers: list[str], upper: str, work: str, mountpoint: str, timeout: float = 30.0):
    """Start the fuse-overlay daemon in the foreground with PDEATHSIG; return once the mount is live."""
    import signal

    try:
        from rootless import fuse_overlay
    except ImportError:
        raise ContainerError(
            "the fuse-overlay storage driver is not available: use --storage-driver overlay or vfs"
        ) from None
    parent = os.getpid()

    def pdeathsig():
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return fuse_overlay.spawn(
        lowers, upper, work, mountpoint, options=["allow_other"], timeout=timeout,
        new_session=False, preexec_fn=pdeathsig,
    )  # fmt: skip


def remove_tree(path: str) -> None:
    """rm -rf that also copes with 0000 dirs (overlay's work/work) as root in the userns."""
    import shutil

    def onerror(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
        except FileNotFoundError:
            pass

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=onerror)
    else:
        os.unlink(path)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for n in names:
        if n.startswith(("user.overlay.", "trusted.overlay.")):
            continue
        try:
            os.setxattr(dst, n, os.getxattr(src, n, follow_symlinks=False), follow_symlinks=False)
        except OSError:
            pass


def _apply_layer(layer: str, root: str) -> None:
    links: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = os.path.relpath(dirpath, layer)
        tdir = root if rel == "." else os.path.join(root, rel)
        for name in dirnames + filenames:
            src = os.path.join(dirpath, name)
            dst = os.path.join(tdir, name)
            st = os.lstat(src)
            if _is_whiteout(st):
                if os.path.lexists(dst):
                    remove_tree(dst)
                continue
            if stat.S_ISDIR(st.st_mode):
                opaque = False
                try:
                    opaque = os.getxattr(src, "user.overlay.opaque", follow_symlinks=False) == b"y"
                except OSError:
                    pass
                if os.path.lexists(dst) and (
                    opaque or not os.path.isdir(dst) or os.path.islink(dst)
                ):
                    remove_tree(dst)
                if not os.path.lexists(dst):
                    os.mkdir(dst, 0o700)
                continue
            if os.path.lexists(dst):
                remove_tree(dst)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], dst)
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISREG(st.st_mode):
                import shutil

                with open(src, "rb") as fi, open(dst, "wb") as fo:
                    shutil.copyfileobj(fi, fo, 1 << 20)
            else:
                try:
                    os.mknod(dst, st.st_mode, st.st_rdev)
                except OSError as e:
                    if e.errno != errno.EPERM:
                        raise
                    continue
            if st.st_nlink > 1:
                links[key] = dst
            _set_meta(src, dst, st)
    # directory metadata last (children written first would bump mtimes)
    for dirpath, dirnames, _ in os.walk(layer):
        for name in dirnames:
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, layer)
            _set_meta(src, os.path.join(root, rel), os.lstat(src))
    _set_meta(layer, root, os.lstat(layer))


def _set_meta(src: str, dst: str, st: os.stat_result) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


if __name__ == "__main__":  # the prestarted fuse-overlay daemon (prestart_fuse)
    sys.exit(_daemon_main(int(sys.argv[2])))
