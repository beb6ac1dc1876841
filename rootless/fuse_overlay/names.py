"""Making and removing names in the overlay: mkdir, mknod, symlink, link, unlink, rmdir. A new name
replaces a whiteout in the upper dir atomically; removing a name that a lower layer also has leaves
a whiteout. A mixin of ``OverlayOps`` (rootless.fuse_overlay.ops: ``_create_at`` gives a new object
its owner)."""

import errno
import os
import stat

from rootless.fuse_overlay import copyup, layers, whiteout
from rootless.fuse_overlay.boundary import _check_name, _err, fuse_op
from rootless.fuse_overlay.inodes import Node


class NamesMixin:
    @fuse_op
    def mkdir(self, parent_inode, name, mode, ctx):
        d = self._node(parent_inode)
        m = stat.S_IMODE(mode)
        node, _ = self._create_at(
            d, name, ctx, lambda fd, n: os.mkdir(n, m, dir_fd=fd), is_dir=True, mode=m
        )
        e = self._entry(node)
        node.lookups += 1
        return e

    @fuse_op
    def mknod(self, parent_inode, name, mode, rdev, ctx):
        if stat.S_ISCHR(mode) and rdev == 0:
            raise _err(errno.EPERM)  # that would be a whiteout
        d = self._node(parent_inode)
        node, _ = self._create_at(
            d, name, ctx, lambda fd, n: os.mknod(n, mode, rdev, dir_fd=fd), mode=stat.S_IMODE(mode)
        )
        e = self._entry(node)
        node.lookups += 1
        return e

    @fuse_op
    def symlink(self, parent_inode, name, target, ctx):
        d = self._node(parent_inode)
        node, _ = self._create_at(d, name, ctx, lambda fd, n: os.symlink(target, n, dir_fd=fd))
        e = self._entry(node)
        node.lookups += 1
        return e

    @fuse_op
    def link(self, inode, new_parent_inode, new_name, ctx):
        node = self._node(inode)
        d = self._node(new_parent_inode)
        if node.is_dir:
            raise _err(errno.EPERM)
        self._copy_up(node)
        if node.unlinked or not node.aliases:
            raise _err(errno.ENOENT)

        def make(fd, n):
            os.link(node.name, n, src_dir_fd=node.fd, dst_dir_fd=fd, follow_symlinks=False)

        _check_name(new_name)
        if self._child(d, new_name) is not None:
            raise _err(errno.EEXIST)
        self._copy_up_dir(d)
        if layers.lstat_at(d.upper, new_name) is not None:  # a whiteout: replace it atomically
            tmp = copyup.tmpname()
            make(self.work, tmp)
            os.rename(tmp, new_name, src_dir_fd=self.work, dst_dir_fd=d.upper)
        else:
            make(d.upper, new_name)
            self._drop_wh_file(d.upper, new_name)
        node.aliases.append((d, new_name))
        d.children[new_name] = node
        self._changed(d)
        e = self._entry(node)
        node.lookups += 1
        return e

    @fuse_op
    def unlink(self, parent_inode, name, ctx):
        d = self._node(parent_inode)
        node = self._child(d, name)
        if node is None:
            raise _err(errno.ENOENT)
        if node.is_dir:
            raise _err(errno.EISDIR)
        if node.layer == 0:
            os.unlink(name, dir_fd=d.upper)
        if layers.lower_has(d.lowers, name):
            self._copy_up_dir(d)
            whiteout.make_whiteout(d.upper, name)
        self._forget_name(node, d, name)

    def _forget_name(self, node: Node, d: Node, name: bytes) -> None:
        node.remove_alias(d, name)
        self._changed(d)
        if not node.aliases:
            node.unlinked = True
        elif not node.is_dir:
            p = node.aliases[0][0]
            if node.layer == 0:
                node.fd = p.upper
            else:
                node.fd = next((fd for lay, fd in p.lowers if lay == node.layer), node.fd)

    @fuse_op
    def rmdir(self, parent_inode, name, ctx):
        d = self._node(parent_inode)
        node = self._child(d, name)
        if node is None:
            raise _err(errno.ENOENT)
        if not node.is_dir:
            raise _err(errno.ENOTDIR)
        if self._listing(node):
            raise _err(errno.ENOTEMPTY)
        if node.upper is not None:
            whiteout.clear_dir(node.upper)
            os.rmdir(name, dir_fd=d.upper)
        if layers.lower_has(d.lowers, name):
            self._copy_up_dir(d)
            whiteout.make_whiteout(d.upper, name)
        self._forget_name(node, d, name)
