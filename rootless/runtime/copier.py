"""A copier: one process with a container's filesystem as its root, serving `cp`'s requests.

For a running container the copier joins the init's user and mount namespaces (by a pidfd that
pins the very process the record names, as exec does): its root is then the container's root, with
its volumes, tmpfs and /dev as the container sees them, and it is root in the container's user
namespace. For a stopped (or created) container it is root in a new user namespace with the user's
mapping and its own mount namespace, mounts the container's storage as the runtime does, binds its
volumes and bind mounts, and chroots into it. Either way a symlink in the container resolves inside
the container: an absolute one from the container's root, `..` never above it.

The CLI sends ``CopyOp`` messages over a channel: ``stat`` (what a path is), ``resolve`` (where
a path that may not exist leads: a dangling symlink is written through, as podman does), ``get`` (a tar of a
path to the fd sent with it, every entry owned by the container's user, as podman's copier chowns
them) and ``put``
(extract the tar on the fd into a directory, owned by the container's user with --archive, else as
the archive says). Each is answered by ``CopyDone`` or ``Failed`` (with the errno), in turn; EOF on
the channel ends the copier.
"""

from __future__ import annotations

import errno
import json
import os
import signal

from rootless import process
from rootless import syscalls as sc
from rootless.errors import ContainerError, RootlessError
from rootless.runtime import archive, state
from rootless.runtime.channel import Channel, CopyDone, CopyOp, Failed, close_all


class CopyFailed(RootlessError):
    """A request the copier could not do; `errno` says why (ENOENT: no such path)."""

    def __init__(self, message: str, err: int = 0):
        super().__init__(message)
        self.errno = err


def _owner(user: str) -> tuple[int, int]:
    from rootless.runtime import spec

    u = spec.resolve_user(user)
    return u.uid, u.gid


def _do(msg: CopyOp, req: dict) -> dict:
    opts = json.loads(msg.options or "{}")
    if msg.op == "stat":
        return archive.stat_path(msg.path, req["cwd"])
    if msg.op == "resolve":  # where a path leads, symlinks followed, even if it does not exist
        return {"resolved": os.path.realpath(os.path.join(req["cwd"], msg.path))}
    if msg.op == "get":
        archive.write_tar(msg.path, os.dup(msg.fd), top=opts.get("top"), owner=_owner(req["user"]),
                          exclude=True, ignore_unreadable=req["running"])  # fmt: skip
        return {}
    if msg.op == "put":
        owner = _owner(req["user"]) if opts.get("archive", True) else None
        try:
            archive.extract_tar(
                os.dup(msg.fd), msg.path, owner=owner, overwrite=opts.get("overwrite", False)
            )
        except archive.NotATar:
            raise CopyFailed("not a tar archive", errno.EINVAL) from None
        return {}
    raise CopyFailed(f"unknown copy request {msg.op!r}")


def serve(chan: Channel, req: dict) -> int:
    """Answer the CLI's requests until it closes the channel."""
    os.chdir("/")
    while (msg := chan.recv()) is not None:
        if not isinstance(msg, CopyOp):
            continue
        try:
            chan.send(CopyDone(json.dumps(_do(msg, req))))
        except CopyFailed as e:
            chan.send(Failed(125, str(e), e.errno))
        except OSError as e:
            text = e.strerror or str(e)
            if e.filename:
                text = f"{e.filename}: {text}"
            chan.send(Failed(125, text, e.errno or 0))
        except RootlessError as e:
            chan.send(Failed(e.exit_code, str(e)))
        finally:
            if msg.fd >= 0:
                close_all(msg.fd)
    return 0


def _keep_only(chan: Channel) -> None:
    """Close what the CLI had open when it forked us (another copier's channel, its pipes): an end
    held here would keep the other side from ever seeing EOF."""
    fd = chan.fileno()
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)


def _ns_flags(pid: int) -> int:
    flags = 0
    for name, flag in (("user", sc.CLONE_NEWUSER), ("mnt", sc.CLONE_NEWNS)):
        if os.stat(f"/proc/{pid}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
            flags |= flag
    return flags


def _joined(pidfd: int, flags: int, chan: Channel, mine: Channel, req: dict) -> int:
    from rootless.runtime import security

    mine.close()
    security.seal()  # the container's processes must not ptrace or read the copier
    try:
        sc.setns(pidfd, flags)
    except OSError as ex:
        raise ContainerError(f"cannot join the container's namespaces: {ex}") from None
    _keep_only(chan)
    return serve(chan, req)


def _mounted(rec, layers: list[str], chan: Channel, mine: Channel, req: dict) -> int:
    from rootless.runtime import rootfs
    from rootless.runtime.storage import Storage

    mine.close()
    _keep_only(chan)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    storage = Storage(rec.storage_driver, layers, rec.dir)
    root = storage.mount()
    host_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in rec.mounts:
            if m.get("kind") != "bind" or not m.get("source"):
                continue
            target = rootfs.secure_join(root, m["target"])
            if os.path.isdir(m["source"]) == os.path.isdir(target) and os.path.lexists(target):
                rootfs.bind(m["source"], target)
        os.chroot(root)
        return serve(chan, req)
    finally:
        os.fchdir(host_root)  # back out of the container: unmounting reads the host's /proc
        os.chroot(".")
        storage.unmount()


class Copier:
    """The CLI's end: a copier process for one container (see the module docstring)."""

    putting = False  # what the CLI asked of it: for messages

    def __init__(self, rec):
        self.rec = rec
        saved = rec.process or state.ProcessConfig()
        init = rec.pid_of("init")
        running = bool(init) and state.alive(*init)
        req = {"user": saved.user or "", "cwd": saved.cwd or "/", "running": running}
        mine, theirs = Channel.pair()
        try:
            if running:
                self.child = self._join(init[0], theirs, mine, req)
            else:
                self.child = self._mount(theirs, mine, req)
        except BaseException:
            close_all(mine)
            raise
        finally:
            close_all(theirs)
        self.chan = mine

    def _join(self, pid: int, theirs: Channel, mine: Channel, req: dict):
        try:
            pidfd = os.pidfd_open(pid)
            flags = _ns_flags(pid)
        except OSError:
            raise ContainerError(
                f"container {self.rec.name} stopped meanwhile: try again"
            ) from None
        try:
            return process.fork(lambda: _joined(pidfd, flags, theirs, mine, req),
                                report=theirs.fail, context="copy in the container")  # fmt: skip
        finally:
            os.close(pidfd)

    def _mount(self, theirs: Channel, mine: Channel, req: dict):
        from rootless import userns
        from rootless.image.store import Store
        from rootless.runtime.storage import Storage

        img = Store.open().lookup_image(self.rec.image_id) if self.rec.image_id else None
        if img is None:
            raise ContainerError(
                f"the image of container {self.rec.name} is no longer in the store"
            )
        layers = list(img.layer_dirs)
        Storage(self.rec.storage_driver, layers, self.rec.dir).prepare_host()
        return userns.fork_userns(lambda: _mounted(self.rec, layers, theirs, mine, req),
                                  extra_unshare_flags=sc.CLONE_NEWNS,
                                  pdeathsig=signal.SIGKILL)  # fmt: skip

    def send(self, op: str, path: str, fd: int = -1, **options) -> None:
        if not self.chan.send(CopyOp(op, path, json.dumps(options), fd)):
            raise self._gone()

    def reply(self) -> dict:
        msg = self.chan.recv()
        if isinstance(msg, Failed):
            raise CopyFailed(msg.message, msg.errno)
        if not isinstance(msg, CopyDone):
            raise self._gone()
        return json.loads(msg.result or "{}")

    def call(self, op: str, path: str, fd: int = -1, **options) -> dict:
        self.send(op, path, fd, **options)
        return self.reply()

    def _gone(self) -> RootlessError:
        self.chan.close()
        code = self.child.wait()
        return ContainerError(f"the copier of container {self.rec.name} ended (exit {code})")

    def close(self) -> None:
        self.chan.close()
        self.child.wait()
