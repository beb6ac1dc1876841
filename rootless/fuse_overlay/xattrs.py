"""Extended attributes of the overlay's objects: get, list, set, remove (a write copies the object
up first; the overlay's private xattrs are hidden). A mixin of ``OverlayOps``."""

import errno
import os

from rootless.fuse_overlay import layers
from rootless.fuse_overlay.boundary import _err, fuse_op
from rootless.fuse_overlay.inodes import Node
from rootless.fuse_overlay.layers import fd_path


class XattrsMixin:
    def _xpath(self, node: Node) -> tuple[bytes, bool]:
        if node.is_dir:
            return fd_path(node.top_fd()), True
        if node.unlinked or not node.aliases:
            fd = next((fd for fd in node.open_fds if fd >= 0), None)
            if fd is None:
                raise _err(errno.ENOENT)
            return fd_path(fd), True
        return fd_path(node.fd, node.name), False

    @fuse_op
    def getxattr(self, inode, name, ctx):
        if layers.is_private_xattr(name):
            raise _err(errno.EOPNOTSUPP)
        path, follow = self._xpath(self._node(inode))
        return os.getxattr(path, name, follow_symlinks=follow)

    @fuse_op
    def listxattr(self, inode, ctx):
        path, follow = self._xpath(self._node(inode))
        names = [os.fsencode(n) for n in os.listxattr(path, follow_symlinks=follow)]
        return [n for n in names if not layers.is_private_xattr(n)]

    @fuse_op
    def setxattr(self, inode, name, value, ctx):
        if layers.is_private_xattr(name):
            raise _err(errno.EOPNOTSUPP)
        node = self._node(inode)
        if not node.unlinked and node.aliases or node.is_dir:
            self._copy_up(node)
        path, follow = self._xpath(node)
        os.setxattr(path, name, value, follow_symlinks=follow)

    @fuse_op
    def removexattr(self, inode, name, ctx):
        if layers.is_private_xattr(name):
            raise _err(errno.EOPNOTSUPP)
        node = self._node(inode)
        path, follow = self._xpath(node)
        os.getxattr(path, name, follow_symlinks=follow)  # ENODATA before any copy-up
        if not node.unlinked and node.aliases or node.is_dir:
            self._copy_up(node)
        path, follow = self._xpath(node)
        os.removexattr(path, name, follow_symlinks=follow)
