"""Building overlay layers in tmp dirs and mounting rootless.fuse_overlay on them for tests.

`Overlay` owns one mount: two lower dirs (l1 on top of l2), an upper, a work dir and a mountpoint
under a tmp dir. `close()` always unmounts and reaps the daemon, also after a failed test.
"""

from __future__ import annotations

import os
import stat
import subprocess

from rootless import fuse_overlay


def whiteout(dirpath: str, name: str, encoding: str = "chr") -> None:
    """Write a whiteout for `name` in a lower layer: 'chr' (0/0 char device) or 'wh' (.wh.NAME)."""
    if encoding == "chr":
        os.mknod(os.path.join(dirpath, name), stat.S_IFCHR | 0o600, os.makedev(0, 0))
    else:
        open(os.path.join(dirpath, ".wh." + name), "w").close()


def opaque(dirpath: str, encoding: str = "user") -> None:
    """Mark a lower directory opaque: 'user'/'trusted' xattr or the '.wh..wh..opq' marker file."""
    if encoding == "marker":
        open(os.path.join(dirpath, ".wh..wh..opq"), "w").close()
    else:
        os.setxattr(dirpath, f"{encoding}.overlay.opaque", b"y")


def write(path: str, data: str = "", mode: int | None = None) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def is_whiteout(path: str) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        d, n = os.path.split(path)
        return os.path.exists(os.path.join(d, ".wh." + n))
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class Overlay:
    def __init__(self, base: str):
        self.base = str(base)
        self.l1, self.l2, self.upper, self.work, self.mnt = (
            os.path.join(self.base, n) for n in ("l1", "l2", "upper", "work", "mnt")
        )
        for d in (self.l1, self.l2, self.upper, self.work, self.mnt):
            os.makedirs(d, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def lower(self, layer: int, *parts: str) -> str:
        return os.path.join(self.l1 if layer == 1 else self.l2, *parts)

    def up(self, *parts: str) -> str:
        return os.path.join(self.upper, *parts)

    def m(self, *parts: str) -> str:
        return os.path.join(self.mnt, *parts)

    def mount(self, *options: str) -> str:
        assert self.proc is None
        self.proc = fuse_overlay.spawn(
            [self.l1, self.l2], self.upper, self.work, self.mnt, options=list(options)
        )
        return self.mnt

    def umount(self) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        fuse_overlay.stop(proc, self.mnt)
        return proc.returncode

    def remount(self) -> str:
        self.umount()
        return self.mount()

    def close(self) -> None:
        try:
            self.umount()
        finally:
            if fuse_overlay.is_mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False)


class KernelOverlay(Overlay):
    """The same layout mounted by kernel overlayfs (`userxattr`: it also mounts inside a user
    namespace), to hold rootless.fuse_overlay's answers against the kernel's side by side."""

    def mount(self, *options: str) -> str:
        from rootless import syscalls

        assert self.proc is None
        kwork = os.path.join(self.base, "kwork")
        os.makedirs(kwork, exist_ok=True)
        data = f"lowerdir={self.l1}:{self.l2},upperdir={self.upper},workdir={kwork},userxattr"
        syscalls.mount("overlay", self.mnt, "overlay", 0, ",".join([data, *options]))
        self.proc = True
        return self.mnt

    def umount(self) -> int | None:
        from rootless import syscalls

        if self.proc is None:
            return None
        self.proc = None
        syscalls.umount2(self.mnt, syscalls.MNT_DETACH)
        return 0

    def close(self) -> None:
        self.umount()
