"""Tar streams of a file tree, written from a path and extracted into a directory, for `cp`.

Both run against the current root: inside a container's mount namespace (or a chroot into its
mounted storage) for the container's side, on the host for the host's side. `write_tar` walks a
path without following symlinks below it and names the entries under `top` (or, with top None, a
directory's contents only: podman's `DIR/.`); it can rewrite every entry's owner (podman chowns a
container's files to its user) or map the host's ids to the container's. `extract_tar` creates
every entry through directory fds opened with O_NOFOLLOW, so an entry never lands outside the
destination through a symlink (one in the archive or one already there); it replaces what is in the
way only as podman's --overwrite allows, and owns the result as asked (or as the archive says).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile

# podman's copier leaves these out of a copy of the container's root (they are the runtime's mounts)
EXCLUDED = frozenset(("/dev", "/proc", "/sys"))


class NotATar(Exception):
    """The input is no (compressed) tar archive."""


def stat_path(path: str, cwd: str = "/") -> dict:
    """What `path` (relative to cwd, symlinks followed) is: {"is_dir", "resolved"}, and for the
    Docker API's path stat its size, mode, mtime and, for a symlink, its target; OSError if none."""
    full = os.path.join(cwd or "/", path)
    full = full.rstrip("/") or "/"
    st = os.stat(full)
    lst = os.lstat(full)
    link = os.readlink(full) if stat.S_ISLNK(lst.st_mode) else ""
    return {"is_dir": stat.S_ISDIR(st.st_mode), "resolved": os.path.realpath(full),
            "size": lst.st_size, "mode": lst.st_mode, "mtime": lst.st_mtime, "link": link}  # fmt: skip


def write_tar(path: str, fd: int, *, top: str | None, owner=None, idmap=None,
              exclude: bool = False, ignore_unreadable: bool = False) -> None:  # fmt: skip
    """Write the tree at `path` as a tar to fd (closed here). owner: (uid, gid) for every entry;
    idmap: a function (uid, gid) -> (uid, gid) instead; exclude: leave out /dev, /proc and /sys,
    and the contents of the mounts below path (a container's volumes and tmpfs, as podman does)."""
    out = os.fdopen(fd, "wb")
    with out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add(full: str, name: str | None) -> None:
            if exclude and full in EXCLUDED:
                return
            if name is not None:
                try:
                    _add_one(tf, full, name, owner, idmap)
                except PermissionError:
                    if not ignore_unreadable:
                        raise
                    return
            if os.path.isdir(full) and not os.path.islink(full):
                if exclude and os.stat(full).st_dev != top_dev:
                    return  # a mount below (a volume, a tmpfs): its point only, as podman
                try:
                    entries = sorted(os.listdir(full))
                except PermissionError:
                    if not ignore_unreadable:
                        raise
                    return
                for e in entries:
                    add(os.path.join(full, e), e if name is None else f"{name}/{e}")

        top_dev = os.stat(path).st_dev
        if top is None and not stat.S_ISDIR(os.stat(path).st_mode):
            top = os.path.basename(path)
        add(path, top)


def _add_one(tf: tarfile.TarFile, full: str, name: str, owner, idmap) -> None:
    ti = tf.gettarinfo(full, arcname=name)
    if ti is None:  # a socket: tar has no type for it
        return
    if owner is not None:
        ti.uid, ti.gid = owner
    elif idmap is not None:
        ti.uid, ti.gid = idmap(ti.uid, ti.gid)
    ti.uname = ti.gname = ""
    if ti.isreg():
        with open(full, "rb") as f:
            tf.addfile(ti, f)
    else:
        tf.addfile(ti)


def _parts(name: str) -> list[str]:
    """An entry's path as components, never leaving the destination."""
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise OSError(errno.EINVAL, f"refusing an entry outside the destination: {name}")
        parts.append(p)
    return parts


class _Extractor:
    def __init__(self, root_fd: int, owner, chown: bool, overwrite: bool, devices: bool):
        self.root_fd, self.owner, self.chown = root_fd, owner, chown
        self.overwrite, self.devices = overwrite, devices
        self.dirs: list[tuple[list[str], int, float]] = []  # modes and times, set last

    def _ids(self, m: tarfile.TarInfo) -> tuple[int, int]:
        return self.owner if self.owner is not None else (m.uid, m.gid)

    def open_dir(self, parts: list[str], create: bool = True) -> int:
        """A fd of root/parts, every component a real directory (created 0755 if missing)."""
        fd = os.dup(self.root_fd)
        try:
            for p in parts:
                try:
                    nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=fd)  # fmt: skip
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(p, 0o755, dir_fd=fd)
                    if self.chown and self.owner is not None:
                        os.chown(p, *self.owner, dir_fd=fd, follow_symlinks=False)
                    nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=fd)  # fmt: skip
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _clear(self, dfd: int, name: str, entry_is_dir: bool, shown: str) -> bool:
        """Make room for an entry; True if a directory is already there to keep."""
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            return False
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and entry_is_dir:
            return True
        if is_dir != entry_is_dir and not self.overwrite:
            raise OSError(errno.EEXIST, f'creating "{shown}": file exists')
        if is_dir:
            shutil.rmtree(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)
        return False

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _parts(m.name)
        if not parts:
            return
        if (m.ischr() or m.isblk()) and not self.devices:
            return
        dfd = self.open_dir(parts[:-1])
        try:
            self._create(tf, m, dfd, parts)
        finally:
            os.close(dfd)

    def _create(self, tf, m, dfd: int, parts: list[str]) -> None:
        name = parts[-1]
        keep = self._clear(dfd, name, m.isdir(), "/" + "/".join(parts))
        if m.isdir():
            if not keep:
                os.mkdir(name, 0o700, dir_fd=dfd)
            self.dirs.append((parts, m.mode, m.mtime))
        elif m.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)  # fmt: skip
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(tf.extractfile(m), out, 1 << 20)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=dfd)
        elif m.islnk():
            src = _parts(m.linkname)
            sfd = self.open_dir(src[:-1], create=False)
            try:
                os.link(src[-1], name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(sfd)
            return
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=dfd)
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            try:
                os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=dfd)
            except PermissionError:
                return  # no devices in a user namespace
        else:
            return
        if self.chown:
            os.chown(name, *self._ids(m), dir_fd=dfd, follow_symlinks=False)
        if m.isdir():
            return
        if not m.issym():
            os.chmod(name, m.mode, dir_fd=dfd)
        os.utime(name, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)

    def finish(self) -> None:
        for parts, mode, mtime in reversed(self.dirs):
            dfd = self.open_dir(parts[:-1], create=False)
            try:
                os.chmod(parts[-1], mode, dir_fd=dfd)
                os.utime(parts[-1], (mtime, mtime), dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(dfd)


def extract_tar(fd: int, dest: str, *, owner=None, chown: bool = True, overwrite: bool = False,
                devices: bool = True) -> None:  # fmt: skip
    """Extract the (possibly compressed) tar on fd (closed here) into the directory dest. owner:
    (uid, gid) for every entry, else the archive's ids (chown=False: the caller's own ids);
    overwrite: replace a directory by a non-directory and vice versa; devices: create device nodes
    (where permitted) rather than leave them out. NotATar if fd carries no tar."""
    src = os.fdopen(fd, "rb")
    with src:
        try:
            tf = tarfile.open(fileobj=src, mode="r|*")
        except tarfile.TarError:
            raise NotATar() from None
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            ex = _Extractor(root_fd, owner, chown, overwrite, devices)
            with tf:
                for m in tf:
                    ex.entry(tf, m)
            ex.finish()
        except tarfile.TarError as e:
            raise OSError(errno.EIO, f"reading the archive: {e}") from None
        finally:
            os.close(root_fd)
