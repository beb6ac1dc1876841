"""The safe tree writer: creating a layer's files below its root so that nothing can leave it.

Every path is resolved component by component from the layer root with O_NOFOLLOW (openat-style),
so no entry can leave the layer: `..`, absolute names, writes through a symlink an earlier entry
planted, and hard links to anything outside are refused (LayerError, one line). Modes, owners
(mapped by the user namespace: an unmapped id is an IdRangeError), times and xattrs are kept;
whiteouts become 0/0 character devices and opaque directories get the xattr
`user.overlay.opaque=y`, which kernel overlayfs (userxattr) and rootless's FUSE overlay both read.
The writer knows nothing of tar: rootless.image.layer maps archive entries onto it. Plain os calls
only; it runs in a forked child in the user namespace, with no trio.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from rootless.errors import LayerError

OPAQUE_XATTR = "user.overlay.opaque"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class IdRangeError(Exception):
    def __init__(self, kind: str, ident: int, name: str):
        super().__init__(f"{kind} {ident} of {name} is outside the mapped range")
        self.kind, self.ident, self.name = kind, ident, name


@dataclass
class Meta:
    """An entry's metadata: its name in the archive (for messages), mode, owner, mtime, xattrs."""

    name: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    @property
    def times(self) -> tuple[int, int]:
        return (self.mtime * 10**9, self.mtime * 10**9)


def split(name: str, what: str = "entry") -> list[str]:
    """Components of an archive name, refusing absolute names and `..`."""
    if name.startswith("/"):
        raise LayerError(f"layer {what} {name!r} is an absolute path; refusing the layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer {what} {name!r} contains '..'; refusing the layer")
    return parts


class DirTree:
    """Directory fds below the layer root, resolved without following any symlink."""

    def __init__(self, root_fd: int):
        self.root = root_fd
        self.cache: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def invalidate(self, parts: list[str]) -> None:
        """Forget cached fds at or below `parts` (it was just removed or replaced)."""
        key = tuple(parts)
        for k in [k for k in self.cache if k[: len(key)] == key]:
            os.close(self.cache.pop(k))

    def dir(self, parts: list[str], *, create: bool, name: str) -> int:
        key = tuple(parts)
        if not key:
            return self.root
        fd = self.cache.get(key)
        if fd is not None:
            return fd
        parent = self.dir(parts[:-1], create=create, name=name)
        comp = parts[-1]
        try:
            fd = os.open(comp, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise LayerError(
                    f"layer entry {name!r} refers to {'/'.join(parts)!r}, which is not in the layer"
                ) from None
            os.mkdir(comp, 0o755, dir_fd=parent)
            fd = os.open(comp, DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(
                    f"layer entry {name!r} goes through {'/'.join(parts)!r}, which is a symlink or not a directory; refusing the layer"
                ) from None
            raise
        if len(self.cache) > 256:
            self.close()
        self.cache[key] = fd
        return fd


def remove_at(parent: int, name: str) -> None:
    """Remove whatever `name` is in dir fd `parent` (a tree if it is a directory)."""
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        _rmtree_at(parent, name)
    except PermissionError:
        # EPERM from unlink on a directory on some filesystems
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise
        _rmtree_at(parent, name)


def _rmtree_at(parent: int, name: str) -> None:
    fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                _rmtree_at(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def rmtree(path: str) -> None:
    """Remove a tree without following symlinks (run inside the user namespace for mapped owners)."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    pfd = os.open(parent, DIR_FLAGS)
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            _rmtree_at(pfd, name)
        else:
            os.unlink(name, dir_fd=pfd)
    finally:
        os.close(pfd)


def id_mapped(ident: int) -> bool:
    """Whether `ident` is mapped in this user namespace (read from /proc/self/uid_map)."""
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, _, count = (int(x) for x in line.split())
                if inside <= ident < inside + count:
                    return True
    except OSError:
        return True
    return False


class TreeWriter:
    """Writes entries below the root fd; ``finish()`` sets directory times, deepest first."""

    def __init__(self, root_fd: int):
        self.tree = DirTree(root_fd)
        self.dir_times: list[tuple[list[str], int]] = []
        self.sgid_dirs: set[tuple[str, ...]] = set()
        self.xattrs_skipped = 0

    def _chown(self, name: str, meta: Meta, *, fd: int | None = None, parent: int | None = None):
        try:
            if fd is not None:
                os.fchown(fd, meta.uid, meta.gid)
            else:
                os.chown(name, meta.uid, meta.gid, dir_fd=parent, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.EINVAL:
                kind, ident = ("uid", meta.uid) if not id_mapped(meta.uid) else ("gid", meta.gid)
                raise IdRangeError(kind, ident, meta.name) from None
            raise

    def _needs_chown(self, parts: list[str], meta: Meta) -> bool:
        """Owned by someone else than root, or in a set-gid directory (which set another group)."""
        return bool(meta.uid or meta.gid) or tuple(parts[:-1]) in self.sgid_dirs

    def _xattrs(self, fd: int, meta: Meta) -> None:
        for xname, raw in meta.xattrs.items():
            if xname.startswith(("user.overlay.", "trusted.")):
                self.xattrs_skipped += 1  # never let a layer forge overlay metadata
                continue
            try:
                os.setxattr(fd, xname, raw)
            except OSError:
                self.xattrs_skipped += 1

    def _create(self, parent: int, base: str, make, parts: list[str]):
        try:
            return make()
        except FileExistsError:
            remove_at(parent, base)
            self.tree.invalidate(parts)
            return make()

    def parent(self, parts: list[str], name: str) -> int:
        """The fd of the directory that holds `parts`, created (mode 0755) as needed."""
        return self.tree.dir(parts[:-1], create=True, name=name)

    def root(self, meta: Meta) -> None:
        """The layer root's own entry."""
        self._chown("", Meta("/", meta.mode, meta.uid, meta.gid), fd=self.tree.root)
        os.fchmod(self.tree.root, stat.S_IMODE(meta.mode))
        self._xattrs(self.tree.root, meta)
        self.dir_times.append(([], meta.mtime))

    def opaque(self, dirparts: list[str], name: str) -> None:
        os.setxattr(self.tree.dir(dirparts, create=True, name=name), OPAQUE_XATTR, b"y")

    def whiteout(self, dirparts: list[str], target: str, name: str) -> None:
        parent = self.tree.dir(dirparts, create=True, name=name)
        if not target or target in (".", ".."):
            raise LayerError(f"layer entry {name!r} is a malformed whiteout; refusing the layer")
        remove_at(parent, target)
        self.tree.invalidate([*dirparts, target])
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)

    def directory(self, parts: list[str], meta: Meta) -> None:
        parent, base = self.parent(parts, meta.name), parts[-1]
        mode = stat.S_IMODE(meta.mode)
        fresh = True
        try:
            os.mkdir(base, mode & 0o777, dir_fd=parent)
        except FileExistsError:
            fresh = False
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                remove_at(parent, base)
                self.tree.invalidate(parts)
                os.mkdir(base, 0o700, dir_fd=parent)
        fd = self.tree.dir(parts, create=False, name=meta.name)  # cached for the children
        if not fresh or self._needs_chown(parts, meta):
            self._chown(base, meta, fd=fd)
        if not fresh or mode & 0o7000:
            os.fchmod(fd, mode)
        if mode & stat.S_ISGID:
            self.sgid_dirs.add(tuple(parts))
        else:
            self.sgid_dirs.discard(tuple(parts))
        self._xattrs(fd, meta)
        self.dir_times.append((parts, meta.mtime))

    def regular(self, parts: list[str], meta: Meta, src, size: int) -> None:
        """A regular file whose `size` bytes are read from `src`."""
        parent, base = self.parent(parts, meta.name), parts[-1]
        mode = stat.S_IMODE(meta.mode)
        fd = self._create(
            parent, base, lambda: os.open(base, _FILE_FLAGS, mode & 0o777, dir_fd=parent), parts
        )
        try:
            left = size
            while left > 0:
                b = src.read(min(_CHUNK, left))
                if not b:
                    raise LayerError(f"layer entry {meta.name!r} is truncated")
                left -= len(b)
                mv = memoryview(b)
                while mv:
                    mv = mv[os.write(fd, mv) :]
            if self._needs_chown(parts, meta):
                self._chown(base, meta, fd=fd)
            if meta.mode & 0o7000:
                os.fchmod(fd, mode)  # after chown, which clears set-id bits
            self._xattrs(fd, meta)
            os.utime(fd, ns=meta.times)
        finally:
            os.close(fd)

    def symlink(self, parts: list[str], target: str, meta: Meta) -> None:
        parent, base = self.parent(parts, meta.name), parts[-1]
        self._create(parent, base, lambda: os.symlink(target, base, dir_fd=parent), parts)
        if self._needs_chown(parts, meta):
            self._chown(base, meta, parent=parent)
        os.utime(base, ns=meta.times, dir_fd=parent, follow_symlinks=False)

    def hardlink(self, parts: list[str], tparts: list[str], name: str, linkname: str) -> None:
        """A hard link to an entry already in the layer (never to anything outside it)."""
        parent, base = self.parent(parts, name), parts[-1]
        if not tparts:
            raise LayerError(
                f"layer hard link {name!r} points at the layer root; refusing the layer"
            )
        tparent = self.tree.dir(tparts[:-1], create=False, name=name)
        try:
            os.stat(tparts[-1], dir_fd=tparent, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(
                f"layer hard link {name!r} -> {linkname!r} points outside the layer or at nothing; refusing the layer"
            ) from None
        if tparts == parts:
            return
        link = lambda: os.link(  # noqa: E731
            tparts[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False
        )
        self._create(parent, base, link, parts)

    def fifo(self, parts: list[str], meta: Meta) -> None:
        parent, base = self.parent(parts, meta.name), parts[-1]
        self._create(parent, base, lambda: os.mkfifo(base, 0o600, dir_fd=parent), parts)
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, dir_fd=parent)
        try:
            self._chown(base, meta, fd=fd)
            os.fchmod(fd, stat.S_IMODE(meta.mode))
            os.utime(fd, ns=meta.times)
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directory times last (creating children changes them), deepest first."""
        for parts, mtime in sorted(self.dir_times, key=lambda x: -len(x[0])):
            ns = (mtime * 10**9, mtime * 10**9)
            try:
                if not parts:
                    os.utime(self.tree.root, ns=ns)
                    continue
                parent = self.tree.dir(parts[:-1], create=False, name="/".join(parts))
                os.utime(parts[-1], ns=ns, dir_fd=parent, follow_symlinks=False)
            except (OSError, LayerError):
                pass
        self.tree.close()
