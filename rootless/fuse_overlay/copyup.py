"""Copy-up: bring a lower object into the upper dir atomically through the work dir.

A file is rebuilt under a temporary name in the work dir (data, then xattrs, owner, mode and
times) and renamed into its place in the upper dir, so the upper dir never shows a half-copied
file. Parent directories are copied up first, top-down, the same way; the times of the upper
parent are restored afterwards. Overlay-private xattrs are never copied.
"""

import errno
import itertools
import os
import stat

from rootless.fuse_overlay import layers, whiteout
from rootless.fuse_overlay.boundary import _err
from rootless.fuse_overlay.inodes import Node
from rootless.fuse_overlay.layers import fd_path, is_private_xattr

_counter = itertools.count()


def tmpname() -> bytes:
    return b"#%d.%x" % (os.getpid(), next(_counter))


def copy_xattrs(src_path: bytes, dst_path: bytes, follow: bool) -> None:
    try:
        names = os.listxattr(src_path, follow_symlinks=follow)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return
        raise
    for name in names:
        if is_private_xattr(name):
            continue
        try:
            value = os.getxattr(src_path, name, follow_symlinks=follow)
            os.setxattr(dst_path, name, value, follow_symlinks=follow)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EPERM, errno.ENODATA) and not name.startswith(
                "user."
            ):
                continue
            raise


def copy_data(src: int, dst: int) -> None:
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while True:
        buf = os.read(src, 1 << 20)
        if not buf:
            return
        view = memoryview(buf)
        while view:
            view = view[os.write(dst, view) :]


def _chown(name: bytes, st: os.stat_result, dir_fd: int) -> None:
    try:
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    except PermissionError:
        if os.geteuid() == 0:
            raise
    except OSError as e:  # EINVAL: the id is not mapped in this user namespace
        if e.errno != errno.EINVAL:
            raise


def build_copy(
    srcdir: int, name: bytes, st: os.stat_result, work: int, *, data: bool = True
) -> bytes:
    """Create a copy of srcdir/name in the work dir; returns its temporary name."""
    tmp = tmpname()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode):
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=srcdir)
        try:
            dst = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=work
            )
            try:
                if data:
                    copy_data(src, dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=srcdir), tmp, dir_fd=work)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(tmp, 0o700, dir_fd=work)
    else:
        os.mknod(tmp, st.st_mode, st.st_rdev, dir_fd=work)
    try:
        is_lnk = stat.S_ISLNK(st.st_mode)
        if not is_lnk:
            copy_xattrs(fd_path(srcdir, name), fd_path(work, tmp), follow=False)
        _chown(tmp, st, work)
        if not is_lnk:
            os.chmod(tmp, mode, dir_fd=work)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=work, follow_symlinks=False)
    except BaseException:
        remove_tmp(work, tmp)
        raise
    return tmp


def remove_tmp(work: int, tmp: bytes) -> None:
    try:
        os.unlink(tmp, dir_fd=work)
    except IsADirectoryError:
        os.rmdir(tmp, dir_fd=work)
    except FileNotFoundError:
        pass


def install(work: int, tmp: bytes, dirfd: int, name: bytes, *, keep_dir_times: bool = True) -> None:
    """Rename work/tmp to dirfd/name, keeping the parent's times as they were if asked."""
    pst = os.stat(dirfd) if keep_dir_times else None
    os.rename(tmp, name, src_dir_fd=work, dst_dir_fd=dirfd)
    if pst is not None:
        os.utime(b".", ns=(pst.st_atime_ns, pst.st_mtime_ns), dir_fd=dirfd, follow_symlinks=False)


class CopyUpMixin:
    """Copy-up as operations of ``OverlayOps`` (rootless.fuse_overlay.ops): a directory chain, a
    file (and its other hard-linked names), or a whole merged tree made opaque."""

    def _copy_up_dir(self, node: Node) -> None:
        chain = []
        n = node
        while n.upper is None:
            chain.append(n)
            n = n.parent
        for d in reversed(chain):
            p = d.parent
            src = d.lowers[0][1]
            st = os.stat(src)
            tmp = build_copy(src, b".", st, self.work)
            install(self.work, tmp, p.upper, d.name)
            d.upper = layers.open_dir(p.upper, d.name)
            d.thaw()
            self._register_upper(d)

    def _copy_up(self, node: Node, data: bool = True) -> None:
        if node.is_dir:
            self._copy_up_dir(node)
            return
        if node.layer == 0:
            return
        if node.unlinked or not node.aliases:
            raise _err(errno.ENOENT)
        parent, name = node.aliases[0]
        self._copy_up_dir(parent)
        st = os.stat(name, dir_fd=node.fd, follow_symlinks=False)
        lower_fd, lower_layer = node.fd, node.layer
        tmp = build_copy(node.fd, name, st, self.work, data=data)
        install(self.work, tmp, parent.upper, name)
        node.fd, node.layer = parent.upper, 0
        node.thaw()
        self._register_upper(node)
        if st.st_nlink > 1:
            self._link_lower_aliases(node, st, lower_fd, lower_layer)

    def _link_lower_aliases(self, node: Node, st, lower_fd: int, lower_layer: int) -> None:
        """Hardlinks: give every other visible name of this lower inode the same upper inode."""
        layer_root = next(fd for layer, fd in self.root.lowers if layer == lower_layer)
        found = self.hardlinks.names(lower_layer, layer_root, st.st_ino)
        for dirpath, f in found:
            d = self.root
            for comp in dirpath.split(b"/"):
                if comp in (b"", b"."):
                    continue
                d = self._child(d, comp) if d is not None and d.is_dir else None
                if d is None:
                    break
            if d is None or not d.is_dir:
                continue
            target = self._child(d, f)
            if target is not node:
                continue
            if d.upper is not None and layers.lstat_at(d.upper, f) is not None:
                continue  # already upper (the name just copied up)
            self._copy_up_dir(d)
            os.link(node.name, f, src_dir_fd=node.fd, dst_dir_fd=d.upper, follow_symlinks=False)
            if (d, f) not in node.aliases:
                node.aliases.append((d, f))

    def _copy_up_tree(self, node: Node) -> None:
        """Copy a whole merged directory into the upper dir and make it opaque."""
        self._copy_up_dir(node)
        for name in list(self._listing(node)):
            c = self._child(node, name)
            if c is None:
                continue
            if c.is_dir:
                self._copy_up_tree(c)
            else:
                self._copy_up(c)
        if node.lowers:
            whiteout.set_opaque(node.upper)
            for _l, fd in node.lowers:
                os.close(fd)
            node.lowers = []
            node.listing = None
