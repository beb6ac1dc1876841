"""Reading the layer stack: directory fds, per-layer lookups, whiteout and opaque detection.

Everything here works relative to directory file descriptors (the *at() calls, through ``dir_fd=``),
never by rebuilding full paths, so path length inside the mount is only bounded by the kernel's own
limits. Both whiteout encodings are read: a 0/0 character device (kernel overlayfs, our store) and a
``.wh.NAME`` file (the OCI/docker tar convention). A directory is opaque if it carries
``user.overlay.opaque=y`` or ``trusted.overlay.opaque=y``, or contains ``.wh..wh..opq``.
"""

import errno
import os
import stat

WH_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
OPAQUE_XATTRS = ("user.overlay.opaque", "trusted.overlay.opaque")
PRIVATE_XATTR_PREFIXES = (b"user.overlay.", b"trusted.overlay.")
NAME_MAX = 255

O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def lstat_at(dirfd: int, name: bytes) -> os.stat_result | None:
    """fstatat without following symlinks; None if the name does not exist in this layer."""
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def has_wh_file(dirfd: int, name: bytes) -> bool:
    """True if this layer holds a ``.wh.NAME`` whiteout file for ``name``."""
    if len(name) + len(WH_PREFIX) > NAME_MAX:
        return False
    return lstat_at(dirfd, WH_PREFIX + name) is not None


def open_dir(dirfd: int, name: bytes) -> int:
    """An O_PATH directory fd for ``name`` inside ``dirfd`` (never following a symlink)."""
    return os.open(name, O_DIR_PATH, dir_fd=dirfd)


def fd_path(fd: int, name: bytes | None = None) -> bytes:
    """A short path naming ``fd`` (or ``name`` inside it) for calls without a dir_fd form (xattrs)."""
    if name is None:
        return b"/proc/self/fd/%d" % fd
    return b"/proc/self/fd/%d/%s" % (fd, name)


def is_opaque(fd: int) -> bool:
    """True if the directory behind ``fd`` is opaque in either encoding."""
    path = fd_path(fd)
    for attr in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, attr) == b"y":
                return True
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM, errno.EACCES):
                raise
    return lstat_at(fd, OPAQUE_MARKER) is not None


def is_private_xattr(name: bytes | str) -> bool:
    if isinstance(name, str):
        name = os.fsencode(name)
    return name.startswith(PRIVATE_XATTR_PREFIXES)


def find(layers: list[tuple[int, int]], name: bytes):
    """Resolve ``name`` top-down through ``layers`` [(layer index, dir fd), ...], top first.

    Returns None (absent or whited out), ``("file", layer, dirfd, stat)`` or
    ``("dir", [(layer, dir fd opened here, stat), ...], opaque_reached)``.
    A directory merges with directories of the same name below it until an opaque one; a
    non-directory below a directory is hidden.
    """
    dirs = []
    for layer, fd in layers:
        st = lstat_at(fd, name)
        if st is None:
            if has_wh_file(fd, name):
                break
            continue
        if is_whiteout(st):
            break
        if stat.S_ISDIR(st.st_mode):
            dfd = open_dir(fd, name)
            dirs.append((layer, dfd, st))
            if is_opaque(dfd):
                break
            continue
        if dirs:
            break
        return ("file", layer, fd, st)
    if dirs:
        return ("dir", dirs)
    return None


def lower_has(layers: list[tuple[int, int]], name: bytes) -> bool:
    """True if ``name`` is visible in the merged view of ``layers`` (used to decide on whiteouts)."""
    for _layer, fd in layers:
        st = lstat_at(fd, name)
        if st is None:
            if has_wh_file(fd, name):
                return False
            continue
        return not is_whiteout(st)
    return False


def merged_listing(layers: list[tuple[int, int]]) -> list[bytes]:
    """The merged names of one directory across ``layers``: no duplicates, no whiteouts, no markers."""
    seen: set[bytes] = set()
    out: list[bytes] = []
    for _layer, fd in layers:
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        try:
            with os.scandir(dfd) as it:
                layer_names = []
                for e in it:
                    n = os.fsencode(e.name)
                    if n.startswith(WH_PREFIX):
                        if n != OPAQUE_MARKER:
                            layer_names.append((n[len(WH_PREFIX) :], True))
                        continue
                    if not (e.is_dir(follow_symlinks=False) or e.is_file(follow_symlinks=False)):
                        if not e.is_symlink() and is_whiteout(e.stat(follow_symlinks=False)):
                            layer_names.append((n, True))
                            continue
                    layer_names.append((n, False))
        finally:
            os.close(dfd)
        new = []
        for n, hidden in layer_names:
            if n in seen:
                continue
            new.append(n)
            if not hidden:
                out.append(n)
        seen.update(new)
    return out
