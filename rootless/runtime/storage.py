"""Storage drivers for a container's root filesystem: overlay (kernel), fuse-overlay and vfs.

Each driver mounts the image's layers plus the container's upper dir at <container dir>/merged (vfs:
a plain copy at <container dir>/rootfs) from inside the user+mount namespace, and undoes it. The kernel
overlay mount lives in that mount namespace only, so it vanishes with it; the fuse daemon is a child
of the caller, who reaps it through unmount(). The daemon is started here (the fuse-overlayfs command
line of rootless.fuse_overlay) with PR_SET_PDEATHSIG=SIGKILL, so it dies with its owner even when the
owner is SIGKILLed and cannot unmount.

A foreground `run` starts the fuse daemon earlier instead (rootless.fuse_overlay.prestart): its
interpreter imports pyfuse3 while the run sets up, and setup mounts /dev/fuse itself and hands it the
fd. The driver choice itself is rootless.config.select_driver.
"""

import errno
import os
import signal
import stat

from rootless import syscalls as sc
from rootless.errors import ContainerError

DRIVERS = ("overlay", "fuse-overlay", "vfs")


class Storage:
    def __init__(self, driver: str, layer_dirs: list[str], cdir: str, volatile: bool = False,
                 fuse_options: tuple[str, ...] = ()):  # fmt: skip
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
        # fuse-overlay: uidmapping=/gidmapping= for a nested user namespace (rootless.runtime.usermode)
        self.fuse_options = tuple(fuse_options)

    def prepare_host(self) -> None:
        """Create the container's storage dirs as the host user (= container root)."""
        if self.driver == "vfs":
            return
        for d in (self.upper, self.work, self.merged):
            os.makedirs(d, mode=0o755, exist_ok=True)
            os.chmod(d, 0o755)
        if self.layers:  # the container's `/` has its top layer's root mode, as under podman
            os.chmod(self.upper, stat.S_IMODE(os.stat(self.layers[-1]).st_mode))

    def mount(self) -> str:
        """Mount (in the current user+mount namespace); return the root path."""
        if self.driver == "overlay":
            return self._mount_overlay()
        if self.driver == "fuse-overlay":
            from rootless.fuse_overlay import prestart

            lowers = list(reversed(self.layers))
            pre = prestart.claim()
            if pre is not None:
                self.proc = pre.mount(lowers, self.upper, self.work, self.merged, self.fuse_options)
            else:
                self.proc = _spawn_fuse(lowers, self.upper, self.work, self.merged,
                                        extra=self.fuse_options)  # fmt: skip
            return self.merged
        return self._vfs()

    def unmount(self) -> None:
        if self.proc is not None:  # fuse-overlay: its daemon, started early or by mount()
            from rootless import fuse_overlay
            from rootless.fuse_overlay.prestart import Prestarted

            proc, self.proc = self.proc, None
            if isinstance(proc, Prestarted):
                proc.stop(self.merged)
            else:
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
        if (
            len(data) > 3800
        ):  # the mount data is one page: short links to the layers, as podman's l/
            import shutil

            links = os.path.join(self.cdir, "l")
            shutil.rmtree(links, ignore_errors=True)
            os.mkdir(links, 0o700)
            for i, lower in enumerate(lowers):
                os.symlink(lower, os.path.join(links, str(i)))
            cwd = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
            os.chdir(self.cdir)
            rel = ":".join(f"l/{i}" for i in range(len(lowers)))
            data = f"lowerdir={rel},upperdir=upper,workdir=work,userxattr"
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


def _spawn_fuse(lowers: list[str], upper: str, work: str, mountpoint: str, timeout: float = 30.0,
                extra: tuple[str, ...] = ()):  # fmt: skip
    """Start the fuse-overlay daemon in the foreground with PDEATHSIG; return once the mount is live."""
    from rootless import fuse_overlay

    # allow_other: container users other than root; only processes in this userns qualify
    return fuse_overlay.spawn(
        lowers, upper, work, mountpoint, options=["allow_other", *extra], timeout=timeout,
        new_session=False, pdeathsig=signal.SIGKILL,
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
