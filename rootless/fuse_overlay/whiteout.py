"""Writing whiteouts and opaque markers in the upper dir.

A whiteout is written as a 0/0 character device and an opaque directory as
``user.overlay.opaque=y``: what kernel overlayfs with ``userxattr`` reads, so an upper dir written
here also mounts with the kernel driver. If mknod of 0/0 is refused (EPERM: an unprivileged user
outside a user namespace), the ``.wh.NAME`` file encoding is written instead.
"""

import errno
import logging
import os
import stat

from rootless.fuse_overlay.layers import WH_PREFIX, fd_path

log = logging.getLogger("rootless.fuse_overlay")

_fallback = False


def make_whiteout(dirfd: int, name: bytes) -> None:
    """Whiteout ``name`` inside upper directory ``dirfd`` (which must not hold ``name``)."""
    global _fallback
    if not _fallback:
        try:
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dirfd)
            return
        except PermissionError:
            _fallback = True
            log.warning("mknod of a 0/0 whiteout is not permitted here; writing .wh. files")
    fd = os.open(
        WH_PREFIX + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o000, dir_fd=dirfd
    )
    os.close(fd)


def remove_whiteout(dirfd: int, name: bytes) -> bool:
    """Remove a whiteout for ``name`` in either encoding; True if there was one."""
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        os.unlink(name, dir_fd=dirfd)
        return True
    try:
        os.unlink(WH_PREFIX + name, dir_fd=dirfd)
        return True
    except (FileNotFoundError, OSError) as e:
        if isinstance(e, FileNotFoundError) or e.errno == errno.ENAMETOOLONG:
            return False
        raise


def set_opaque(dirfd: int) -> None:
    os.setxattr(fd_path(dirfd), "user.overlay.opaque", b"y")


def clear_dir(dirfd: int) -> None:
    """Empty an upper directory that holds only whiteouts and markers (before rmdir or rename over)."""
    dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        names = os.listdir(dfd)
    finally:
        os.close(dfd)
    for n in names:
        bn = os.fsencode(n)
        try:
            os.unlink(bn, dir_fd=dirfd)
        except IsADirectoryError:
            sub = os.open(
                bn, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd
            )
            try:
                clear_dir(sub)
            finally:
                os.close(sub)
            os.rmdir(bn, dir_fd=dirfd)
