"""Directory handles of the overlay: opendir (a snapshot of the merged listing), readdir,
releasedir, fsyncdir. A mixin of ``OverlayOps`` (rootless.fuse_overlay.ops)."""

import os

import pyfuse3

from rootless.fuse_overlay.boundary import CACHE_READDIR, fuse_op


class DirsMixin:
    @fuse_op
    def opendir(self, inode, ctx):
        node = self._node(inode)
        self._dh += 1
        self.dirhandles[self._dh] = (node, self._listing(node))
        node.hold(-self._dh)
        if CACHE_READDIR:  # every change goes through us, so the kernel may keep listings
            return pyfuse3.FileInfo(fh=self._dh, keep_cache=True, cache_readdir=True)
        return self._dh

    @fuse_op
    def readdir(self, fh, start_id, token):
        node, listing = self.dirhandles[fh]
        for i in range(start_id, len(listing)):
            name = listing[i]
            child = self._child(node, name)
            if child is None:
                continue
            try:
                e = self._entry(child)
            except (OSError, pyfuse3.FUSEError):
                continue
            if not pyfuse3.readdir_reply(token, name, e, i + 1):
                break
            child.lookups += 1

    @fuse_op
    def releasedir(self, fh):
        node, _ = self.dirhandles.pop(fh)
        node.unhold(-fh)
        self.table.maybe_free(node)

    @fuse_op
    def fsyncdir(self, fh, datasync):
        node, _ = self.dirhandles[fh]
        if node.upper is not None:
            fd = os.open(b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.upper)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
