"""rename and renameat2 for the overlay: plain, RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT.

A mixin of ``OverlayOps`` (it uses its node plumbing and copy-up). Both names are brought into the
upper dir first (a directory from lower layers with its whole tree, made opaque, so that a moved
directory never shows what lies below its new name), then renamed with one ``renameat2`` in the
upper dir, and whiteouts are left where a lower object would show through the old name.

What kernel overlayfs does, and so do we: RENAME_NOREPLACE fails with EEXIST on an existing target;
RENAME_EXCHANGE swaps two existing names of any types (ENOENT if either is missing); RENAME_WHITEOUT
is refused with EINVAL (overlayfs takes only NOREPLACE and EXCHANGE). One difference, on purpose:
a directory that comes from a lower layer is moved by copying it up, where kernel overlayfs without
``redirect_dir`` answers EXDEV (and mv(1) then copies it itself).
"""

import errno
import os

import pyfuse3

from rootless import syscalls
from rootless.fuse_overlay import layers, whiteout

RENAME_FLAGS = syscalls.RENAME_NOREPLACE | syscalls.RENAME_EXCHANGE


class RenameMixin:
    def _do_rename(self, dold, name_old, dnew, name_new, flags: int) -> None:
        if flags & ~RENAME_FLAGS or (
            flags & syscalls.RENAME_NOREPLACE and flags & syscalls.RENAME_EXCHANGE
        ):
            raise pyfuse3.FUSEError(errno.EINVAL)
        if flags & syscalls.RENAME_EXCHANGE:
            self._rename_exchange(dold, name_old, dnew, name_new)
        else:
            self._rename_plain(dold, name_old, dnew, name_new, flags)

    def _copy_up_to_move(self, node) -> None:
        """Bring ``node`` into the upper dir so it can be renamed there as one object."""
        if node.is_dir:
            if node.lowers:
                self._copy_up_tree(node)
            else:
                self._copy_up_dir(node)
        else:
            self._copy_up(node)

    def _moved(self, node, dold, name_old, dnew, name_new) -> None:
        """Bookkeeping after ``node`` went from dold/name_old to dnew/name_new in the upper dir."""
        node.remove_alias(dold, name_old)
        node.aliases.insert(0, (dnew, name_new))
        dnew.children[name_new] = node
        if not node.is_dir:
            node.fd = dnew.upper

    def _rename_plain(self, dold, name_old, dnew, name_new, flags: int) -> None:
        src = self._child(dold, name_old)
        if src is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        dst = self._child(dnew, name_new)
        if dst is not None and flags & syscalls.RENAME_NOREPLACE:
            raise pyfuse3.FUSEError(errno.EEXIST)
        if dst is src:
            return
        if dst is not None:
            if src.is_dir and not dst.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            if not src.is_dir and dst.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if dst.is_dir and self._listing(dst):
                raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        self._copy_up_to_move(src)
        self._copy_up_dir(dnew)
        old_visible_below = layers.lower_has(dold.lowers, name_old)
        new_visible_below = layers.lower_has(dnew.lowers, name_new)
        up = layers.lstat_at(dnew.upper, name_new)
        if dst is not None and dst.is_dir and dst.upper is not None:
            whiteout.clear_dir(dst.upper)
        elif up is not None and layers.is_whiteout(up) and src.is_dir:
            os.unlink(name_new, dir_fd=dnew.upper)
        if src.is_dir and new_visible_below:
            whiteout.set_opaque(src.upper)
        os.rename(name_old, name_new, src_dir_fd=dold.upper, dst_dir_fd=dnew.upper)
        self._drop_wh_file(dnew.upper, name_new)
        if old_visible_below:
            whiteout.make_whiteout(dold.upper, name_old)
        if dst is not None:
            self._forget_name(dst, dnew, name_new)
        self._moved(src, dold, name_old, dnew, name_new)
        self._changed(dold)
        self._changed(dnew)

    def _rename_exchange(self, dold, name_old, dnew, name_new) -> None:
        a = self._child(dold, name_old)
        b = self._child(dnew, name_new)
        if a is None or b is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if a is b:  # two names of one inode: the kernel's vfs_rename also does nothing
            return
        self._copy_up_to_move(a)
        self._copy_up_to_move(b)
        self._copy_up_dir(dold)
        self._copy_up_dir(dnew)
        syscalls.renameat2(dold.upper, name_old, dnew.upper, name_new, syscalls.RENAME_EXCHANGE)
        # a directory now over a name that exists below must not merge with it
        if a.is_dir and layers.lower_has(dnew.lowers, name_new):
            whiteout.set_opaque(a.upper)
        if b.is_dir and layers.lower_has(dold.lowers, name_old):
            whiteout.set_opaque(b.upper)
        self._moved(a, dold, name_old, dnew, name_new)
        self._moved(b, dnew, name_new, dold, name_old)
        self._changed(dold)
        self._changed(dnew)
