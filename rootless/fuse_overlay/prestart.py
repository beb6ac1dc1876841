"""The fuse-overlay daemon started early, for a foreground `rootless run`: its one home.

A foreground `run` starts the daemon's interpreter before anything else (``early()``, from the
CLI's first lines, before click is imported; else ``start()``, from `run`), so that it imports
pyfuse3 and trio (most of its start-up) in parallel with the monitor's work, then waits on a
socket. The container's setup process (root in the user namespace, own mount namespace) opens
/dev/fuse, mounts the root itself (``fd=N``, as fusermount3 does for libfuse) and sends the daemon
that fd, its own pid and the overlay options (a rootless.runtime.channel ``MountFuse`` message),
then goes on at once: the container's first lookups wait in the kernel until the daemon serves
them, so the daemon's import overlaps the namespaces, the rootfs mounts and the network helper's
start. The daemon, still single-threaded, joins setup's user and mount namespaces (setns), becomes
root there as setup is, and serves /dev/fd/N (``main()``, ``python -m rootless.fuse_overlay.prestart``).

Ownership: the monitor is the daemon's parent and reaps it (``reap()``); setup watches it through
its pidfd (the container is stopped if it dies) and ends it (``Prestarted.stop()``). PDEATHSIG
(SIGKILL) ties it to the monitor; it has its own session and stays in the host pid namespace, so
the container can neither see nor signal it. This module imports nothing heavy: the CLI imports it
before click.
"""

import os
import signal
import sys

_prestarted = None  # the daemon this process started, until it is claimed or reaped


class Prestarted:
    """A fuse-overlay daemon started by the monitor before the user namespace exists."""

    def __init__(self, child, chan):
        self.child = child  # rootless.process.Child: its pidfd is inherited by setup
        self.pid = child.pid
        self.owner = os.getpid()
        self.chan = chan
        self.claimed = False

    @property
    def pidfd(self) -> int:
        return self.child.pidfd

    def usable(self) -> bool:
        """In setup: only the monitor that started the daemon (our parent) can hand it over."""
        return not self.claimed and self.chan is not None and os.getppid() == self.owner

    def mount(self, lowers: list[str], upper: str, work: str, mountpoint: str, extra=()):
        """In setup: mount the root on a fresh /dev/fuse fd and hand the fd to the daemon."""
        from rootless import syscalls as sc
        from rootless.errors import ContainerError
        from rootless.fuse_overlay import mount_options
        from rootless.runtime.channel import MountFuse

        self.claimed = True
        if self.child.exited():
            raise ContainerError("the overlay daemon is gone")
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
            # allow_other: container users other than root; only processes in this userns qualify
            opts = ",".join(mount_options(lowers, upper, work, ["allow_other", *extra]))
            chan, self.chan = self.chan, None
            sent = chan.send(MountFuse(os.getpid(), opts, fuse))
            chan.close()
            if not sent:
                sc.umount2(mountpoint, sc.MNT_DETACH)
                raise ContainerError("cannot reach the overlay daemon")
        finally:
            os.close(fuse)  # the daemon holds the connection now: if it dies, the fs is gone
        return self

    def exited(self) -> bool:
        return self.child.exited()

    def stop(self, mountpoint: str, timeout: float = 10.0) -> None:
        """In setup, once every container process is gone: detach the mount, end the daemon and
        wait until it has exited (the monitor reaps it). SIGKILL, not a graceful SIGTERM: the
        daemon caches no writes (no writeback cache; every write reached the upper dir before the
        writer's syscall returned), the mount is already detached, and its interpreter's orderly
        exit would cost ~20 ms on every `run --rm`."""
        from rootless import syscalls as sc

        try:
            sc.umount2(mountpoint, sc.MNT_DETACH)
        except OSError:
            pass
        if not self.child.exited():
            self.child.kill()
            self.child.wait_exited(timeout)

    def reap(self) -> None:
        """In the monitor, once setup is gone: make sure the daemon has ended, and reap it."""
        if self.chan is not None:
            self.chan.close()
            self.chan = None
        self.child.kill_and_reap()


def start() -> None:
    """Start the fuse-overlay daemon's interpreter now (monitor, before the user namespace)."""
    global _prestarted
    if _prestarted is not None:
        return  # early() did it
    from rootless import paths, process
    from rootless.runtime.channel import Channel

    mine, theirs = Channel.pair()
    # the command line says what it is (ps, leak checks): the overlay daemon for this store
    cmd = process.python_module(
        "rootless.fuse_overlay.prestart", str(theirs.fileno()), paths.data_home(), site=False
    )
    try:
        child = process.spawn(cmd, pass_fds=(theirs.fileno(),), stdin="null", stdout="null",
                              pdeathsig=signal.SIGKILL, new_session=True)  # fmt: skip
    except OSError:
        mine.close()
        return  # Storage.mount() starts it the ordinary way and reports the error
    finally:
        theirs.close()
    _prestarted = Prestarted(child, mine)


def early(argv: list[str]) -> None:
    """From the CLI's first lines, before click is imported: if this is a foreground
    `rootless [GLOBAL OPTIONS] run` whose driver will be fuse-overlay, start the daemon now, ~30 ms
    sooner than `run` could. A wrong guess only costs a daemon that reap() kills."""
    if not _is_foreground_run(argv):
        return
    try:
        from rootless.config import select_driver

        if select_driver(_driver_flag(argv))[0] != "fuse-overlay":
            return
    except Exception:  # noqa: BLE001 - `run` reports a bad setting itself
        return
    import atexit

    start()
    atexit.register(reap)  # --help, usage errors: nothing is left behind


def _driver_flag(argv: list[str]) -> str | None:
    flag = None
    args = iter(argv)
    for a in args:
        if a == "--storage-driver":
            flag = next(args, None)
        elif a == "--log-level":
            next(args, None)
        elif a.startswith("--storage-driver="):
            flag = a.partition("=")[2]
        elif not a.startswith("-"):
            break
    return flag


def _is_foreground_run(argv: list[str]) -> bool:
    args = iter(argv)
    for a in args:
        if a in ("--storage-driver", "--log-level"):
            next(args, None)
        elif not a.startswith("-"):
            if a != "run":
                return False
            break
    else:
        return False
    for a in args:  # run's own options, up to the image
        if a in ("-d", "--detach", "--detach=true") or (
            a.startswith("-") and not a.startswith("--") and "d" in a[1:] and a[1:].isalpha()
        ):
            return False
        if not a.startswith("-"):
            break
    return True


def claim():
    """In setup: the daemon the monitor started early, if it can be used here (else None)."""
    pre = _prestarted
    return pre if pre is not None and pre.usable() else None


def reap() -> None:
    """In the process that started the daemon: end and reap it (idempotent)."""
    global _prestarted
    pre, _prestarted = _prestarted, None
    if pre is not None and pre.owner == os.getpid():
        pre.reap()


def main(sock_fd: int) -> int:
    """The prestarted daemon: import, wait for setup's message, join its namespaces and serve."""
    import socket

    import pyfuse3  # noqa: F401 - the point: import the heavy modules before we are needed
    import trio  # noqa: F401

    from rootless import syscalls as sc
    from rootless.fuse_overlay import mount, ops  # noqa: F401
    from rootless.runtime.channel import Channel, MountFuse

    with Channel(socket.socket(fileno=sock_fd)) as chan:
        msg = chan.recv()
    if not isinstance(msg, MountFuse) or msg.fd < 0:
        return 0  # the run ended before it needed us
    try:
        for ns, flag in (("user", sc.CLONE_NEWUSER), ("mnt", sc.CLONE_NEWNS)):
            sc.setns_path(f"/proc/{msg.pid}/ns/{ns}", flag)
        os.setresgid(0, 0, 0)
        try:
            os.setgroups([])
        except PermissionError:
            pass
        os.setresuid(0, 0, 0)
        # "/" stands in for the mount point: it is mounted already, and we are the one to serve it
        cfg = mount.parse_options([msg.options], "/")
    except (OSError, ValueError, mount.OptionError) as e:
        print(f"rootless-overlay: joining the container: {e}", file=sys.stderr)
        return 1
    cfg.mountpoint = f"/dev/fd/{msg.fd}"  # libfuse serves an fd that its caller mounted
    return mount.run(cfg, None)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
