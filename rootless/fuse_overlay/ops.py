"""The pyfuse3.Operations of the overlay: lookup, readdir, copy-up triggers, whiteouts, rename.

Every operation runs synchronously on the calling worker (all work is local syscalls) and is
wrapped so that an OSError becomes its errno and any other exception is logged and answered with
EIO: nothing may escape into pyfuse3's main loop. Permissions are checked by the kernel
(``default_permissions``); the daemon only gives new objects the caller's ownership.
"""

import errno
import logging
import os
import stat

import pyfuse3

from rootless.fuse_overlay import copyup, layers, whiteout
from rootless.fuse_overlay.boundary import _check_name, _err, fuse_op
from rootless.fuse_overlay.copyup import CopyUpMixin
from rootless.fuse_overlay.dirs import DirsMixin
from rootless.fuse_overlay.hardlinks import HardlinkIndex
from rootless.fuse_overlay.inodes import ROOT_INODE, InodeTable, Node, key_of
from rootless.fuse_overlay.layers import NAME_MAX, WH_PREFIX, fd_path
from rootless.fuse_overlay.names import NamesMixin
from rootless.fuse_overlay.rename import RenameMixin
from rootless.fuse_overlay.xattrs import XattrsMixin

log = logging.getLogger("rootless.fuse_overlay")

TIMEOUT = 86400.0  # lower layers never change and the upper dir is ours alone


class OverlayOps(CopyUpMixin, DirsMixin, NamesMixin, RenameMixin, XattrsMixin, pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        lowerdirs: list[str],
        upperdir: str,
        workdir: str,
        *,
        timeout: float = TIMEOUT,
        keep_cache: bool = True,
        shift=None,
    ):
        super().__init__()
        self.timeout = timeout
        self.keep_cache = keep_cache
        self.table = InodeTable()
        self.hardlinks = HardlinkIndex()
        self.euid = os.geteuid()
        self.shift = shift  # rootless.fuse_overlay.idshift.IdShift: on-disk ids <-> the caller's
        upper = os.open(upperdir, layers.O_DIR_PATH)
        lowers = [(i + 1, os.open(p, layers.O_DIR_PATH)) for i, p in enumerate(lowerdirs)]
        wd = os.open(workdir, layers.O_DIR_PATH)
        try:
            os.mkdir(b"work", 0o700, dir_fd=wd)
        except FileExistsError:
            pass
        self.work = os.open(b"work", layers.O_DIR_PATH, dir_fd=wd)
        os.close(wd)
        whiteout.clear_dir(self.work)
        if os.stat(self.work).st_dev != os.stat(upper).st_dev:
            raise OSError(errno.EXDEV, "upperdir and workdir must be on the same filesystem")
        ust = os.stat(upper)
        root = self.table.new(key_of(ust), True, ino=ROOT_INODE)
        root.upper = upper
        root.lowers = lowers
        root.lookups = 1
        self.root = root
        self.dirhandles: dict[int, tuple[Node, list[bytes]]] = {}
        self.handles: dict[int, Node] = {}
        self.lower_handles: dict[int, int] = {}  # read-only fds on lower files: their open flags
        self._dh = 0

    # ---- node plumbing -------------------------------------------------------------------

    def _node(self, ino: int) -> Node:
        node = self.table.get(ino)
        if node is None:
            raise _err(errno.ESTALE)
        return node

    def _child(self, d: Node, name: bytes) -> Node | None:
        """The merged child ``name`` of directory ``d`` (no lookup count taken)."""
        node = d.children.get(name)
        if node is not None:
            return node
        if name.startswith(WH_PREFIX):
            return None
        found = layers.find(d.layers(), name)
        if found is None:
            return None
        if found[0] == "file":
            _kind, layer, fd, st = found
            key = key_of(st)
            node = self.table.existing(key, False)
            if node is None:
                node = self.table.new(key, False)
                node.fd, node.layer = fd, layer
                if layer:
                    node.frozen = True
                    node.cached_entry = self._entry(node, st)
            if (d, name) not in node.aliases:
                node.aliases.append((d, name))
        else:
            dirs = found[1]
            top_layer, top_fd, top_st = dirs[0]
            key = key_of(top_st)
            node = self.table.existing(key, True)
            if node is not None:  # already known under another name: keep the first
                for _l, fd, _s in dirs:
                    os.close(fd)
                return node
            node = self.table.new(key, True)
            if top_layer == 0:
                node.upper = top_fd
                node.lowers = [(layer, fd) for layer, fd, _s in dirs[1:]]
            else:
                node.lowers = [(layer, fd) for layer, fd, _s in dirs]
                node.frozen = True
                node.cached_entry = self._entry(node, top_st)
            node.aliases.append((d, name))
        d.children[name] = node
        return node

    def _stat(self, node: Node) -> os.stat_result:
        if node.is_dir:
            return os.stat(node.top_fd())
        if node.unlinked or not node.aliases:
            for fd in node.open_fds:
                if fd >= 0:
                    return os.fstat(fd)
            raise _err(errno.ENOENT)
        return os.stat(node.name, dir_fd=node.fd, follow_symlinks=False)

    def _entry(self, node: Node, st: os.stat_result | None = None) -> pyfuse3.EntryAttributes:
        if st is None:
            e = node.cached_entry
            if e is not None:
                if node.unlinked:
                    e.st_nlink = 0
                return e
            st = self._stat(node)
        e = pyfuse3.EntryAttributes()
        e.st_ino = node.ino
        e.generation = 0
        e.entry_timeout = self.timeout
        e.attr_timeout = self.timeout
        e.st_mode = st.st_mode
        nlink = st.st_nlink
        if node.is_dir:
            if node.upper is not None and node.lowers or len(node.lowers) > 1:
                nlink = 1  # a merged dir, as kernel overlayfs reports it
        elif node.unlinked:
            nlink = 0
        e.st_nlink = nlink
        e.st_uid, e.st_gid = (
            self.shift.out(st.st_uid, st.st_gid) if self.shift else (st.st_uid, st.st_gid)
        )
        e.st_rdev = st.st_rdev
        e.st_size = st.st_size
        e.st_blksize = st.st_blksize
        e.st_blocks = st.st_blocks
        e.st_atime_ns = st.st_atime_ns
        e.st_mtime_ns = st.st_mtime_ns
        e.st_ctime_ns = st.st_ctime_ns
        return e

    def _changed(self, d: Node) -> None:
        d.listing = None

    def _listing(self, d: Node) -> list[bytes]:
        if d.listing is None:
            d.listing = layers.merged_listing(d.layers())
        return d.listing

    def _register_upper(self, node: Node) -> None:
        fd, name = node.loc()
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        self.table.register(key_of(st), node)

    # ---- creating names --------------------------------------------------------------------

    def _owner(self, d: Node, ctx) -> tuple[int, int]:
        dst = self._stat(d)
        sh = self.shift
        if dst.st_mode & stat.S_ISGID:
            gid = dst.st_gid
        else:
            gid = sh.disk_gid(ctx.gid) if sh else ctx.gid
        return (sh.disk_uid(ctx.uid) if sh else ctx.uid), gid

    def _create_at(self, d: Node, name: bytes, ctx, make, *, is_dir=False, mode=None):
        """Create ``name`` in dir ``d`` through ``make(dirfd, name)``; handles whiteouts, owner."""
        _check_name(name)
        if self._child(d, name) is not None:
            raise _err(errno.EEXIST)
        self._copy_up_dir(d)
        uid, gid = self._owner(d, ctx)
        hidden = layers.lstat_at(d.upper, name) is not None or layers.has_wh_file(d.upper, name)
        opaque = is_dir and (hidden or layers.lower_has(d.lowers, name))
        if not hidden and not opaque:
            result = make(d.upper, name)
            self._set_owner(d.upper, name, uid, gid, mode)
        else:
            tmp = copyup.tmpname()
            result = make(self.work, tmp)
            try:
                self._set_owner(self.work, tmp, uid, gid, mode)
                if opaque:
                    tfd = layers.open_dir(self.work, tmp)
                    try:
                        whiteout.set_opaque(tfd)
                    finally:
                        os.close(tfd)
                if is_dir:  # a directory cannot replace the whiteout device by rename
                    whiteout.remove_whiteout(d.upper, name)
                os.rename(tmp, name, src_dir_fd=self.work, dst_dir_fd=d.upper)
                self._drop_wh_file(d.upper, name)
            except BaseException:
                copyup.remove_tmp(self.work, tmp)
                raise
        self._changed(d)
        node = self._child(d, name)
        if node is None:
            raise _err(errno.EIO)
        return node, result

    @staticmethod
    def _drop_wh_file(dirfd: int, name: bytes) -> None:
        if len(name) + len(WH_PREFIX) <= NAME_MAX:
            try:
                os.unlink(WH_PREFIX + name, dir_fd=dirfd)
            except FileNotFoundError:
                pass

    def _set_owner(self, dirfd: int, name: bytes, uid: int, gid: int, mode) -> None:
        if self.euid != 0 and uid == self.euid and gid == os.getegid():
            return
        try:
            os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
        except OSError as e:
            if self.euid == 0 and e.errno != errno.EINVAL:
                raise
            return
        if mode is not None and mode & 0o6000:
            os.chmod(name, mode & 0o7777, dir_fd=dirfd)

    # ---- lookups and attributes ------------------------------------------------------------

    @fuse_op
    def lookup(self, parent_inode, name, ctx=None):
        d = self._node(parent_inode)
        if len(name) > NAME_MAX:
            raise _err(errno.ENAMETOOLONG)
        if name == b".":
            node = d
        elif name == b"..":
            node = d.parent or self.root
        else:
            node = self._child(d, name)
        if node is None:
            raise _err(errno.ENOENT)
        e = self._entry(node)
        node.lookups += 1
        return e

    async def forget(self, inode_list):
        try:
            for ino, n in inode_list:
                node = self.table.get(ino)
                if node is None:
                    continue
                node.lookups -= n
                self.table.maybe_free(node)
        except Exception:
            log.exception("forget failed")

    @fuse_op
    def getattr(self, inode, ctx=None):
        return self._entry(self._node(inode))

    @fuse_op
    def setattr(self, inode, attr, fields, fh, ctx):
        node = self._node(inode)
        if node.unlinked or (not node.is_dir and not node.aliases):
            return self._setattr_fd(node, attr, fields, fh)
        self._copy_up(node, data=not (fields.update_size and attr.st_size == 0))
        fd, name = node.loc()
        if fields.update_size:
            if fh is not None and fh in self.handles:
                os.ftruncate(fh, attr.st_size)
            else:
                os.truncate(fd_path(fd, name), attr.st_size)
        # chown(-1, -1) reaches us as a setattr with nothing to set (FUSE forwards the ctime bit
        # only with writeback caching): let the upper fs update ctime, as kernel overlayfs does
        only_ctime = not (
            fields.update_size
            or fields.update_mode
            or fields.update_uid
            or fields.update_gid
            or fields.update_atime
            or fields.update_mtime
        )
        if fields.update_uid or fields.update_gid or only_ctime:
            uid, gid = self._chown_ids(attr, fields)
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
        if fields.update_mode:
            os.chmod(name, stat.S_IMODE(attr.st_mode), dir_fd=fd)
        if fields.update_atime or fields.update_mtime:
            cur = os.stat(name, dir_fd=fd, follow_symlinks=False)
            at = attr.st_atime_ns if fields.update_atime else cur.st_atime_ns
            mt = attr.st_mtime_ns if fields.update_mtime else cur.st_mtime_ns
            os.utime(name, ns=(at, mt), dir_fd=fd, follow_symlinks=False)
        return self._entry(node)

    def _chown_ids(self, attr, fields) -> tuple[int, int]:
        uid = attr.st_uid if fields.update_uid else -1
        gid = attr.st_gid if fields.update_gid else -1
        if self.shift is not None:
            uid, gid = self.shift.disk_uid(uid), self.shift.disk_gid(gid)
        return uid, gid

    def _setattr_fd(self, node, attr, fields, fh):
        fd = fh if fh in self.handles else next((f for f in node.open_fds if f >= 0), None)
        if fd is None:
            raise _err(errno.ENOENT)
        if fields.update_size:
            os.ftruncate(fd, attr.st_size)
        if fields.update_uid or fields.update_gid:
            os.fchown(fd, *self._chown_ids(attr, fields))
        if fields.update_mode:
            os.fchmod(fd, stat.S_IMODE(attr.st_mode))
        if fields.update_atime or fields.update_mtime:
            cur = os.fstat(fd)
            at = attr.st_atime_ns if fields.update_atime else cur.st_atime_ns
            mt = attr.st_mtime_ns if fields.update_mtime else cur.st_mtime_ns
            os.utime(fd, ns=(at, mt))
        return self._entry(node)

    @fuse_op
    def readlink(self, inode, ctx):
        node = self._node(inode)
        return os.readlink(node.name, dir_fd=node.fd)

    @fuse_op
    def statfs(self, ctx):
        st = os.statvfs(fd_path(self.root.upper))
        s = pyfuse3.StatvfsData()
        for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail"):
            setattr(s, f, getattr(st, f))
        for f in ("f_files", "f_ffree", "f_favail"):
            setattr(s, f, getattr(st, f))
        s.f_namemax = NAME_MAX
        return s

    # ---- renaming (names.NamesMixin creates and removes names) ---------------------------

    @fuse_op
    def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        dold = self._node(parent_inode_old)
        dnew = self._node(parent_inode_new)
        _check_name(name_new)
        self._do_rename(dold, name_old, dnew, name_new, flags)

    # ---- files -----------------------------------------------------------------------------

    def _open_flags(self, flags: int) -> int:
        # O_DIRECT stays with the kernel: it bypasses the FUSE page cache for that file (and keeps
        # the cache coherent for other opens) and hands us its requests in buffers of its own,
        # which are not aligned for an O_DIRECT backing file (EINVAL), so ours is opened buffered
        drop = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_APPEND | os.O_DIRECT
        return (flags & ~drop) | os.O_NOFOLLOW | os.O_CLOEXEC

    @fuse_op
    def open(self, inode, flags, ctx):
        node = self._node(inode)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC
        fl = self._open_flags(flags)
        if node.unlinked or not node.aliases:
            src = next((fd for fd in node.open_fds if fd >= 0), None)
            if src is None or src < 0:
                raise _err(errno.ENOENT)
            fd = os.open(fd_path(src), fl & ~os.O_NOFOLLOW)
        else:
            if writing:
                self._copy_up(node, data=not (flags & os.O_TRUNC))
            fd = os.open(node.name, fl, dir_fd=node.fd)
            if node.layer:
                self.lower_handles[fd] = fl
        node.hold(fd)
        self.handles[fd] = node
        return pyfuse3.FileInfo(fh=fd, keep_cache=self.keep_cache and not writing)

    @fuse_op
    def create(self, parent_inode, name, mode, flags, ctx):
        d = self._node(parent_inode)
        fl = self._open_flags(flags) | os.O_CREAT | os.O_EXCL
        m = stat.S_IMODE(mode)
        node, fd = self._create_at(
            d, name, ctx, lambda dfd, n: os.open(n, fl, m, dir_fd=dfd), mode=m
        )
        node.hold(fd)
        self.handles[fd] = node
        e = self._entry(node)
        node.lookups += 1
        return pyfuse3.FileInfo(fh=fd, keep_cache=False), e

    @fuse_op
    def read(self, fh, off, size):
        if fh in self.lower_handles:
            self._follow_copy_up(fh)
        return os.pread(fh, size, off)

    def _follow_copy_up(self, fh: int) -> None:
        """A read-only handle opened on a lower file that has since been copied up reads the
        upper file from now on, as kernel overlayfs does (the same fd number, through dup2)."""
        node = self.handles.get(fh)
        if node is None or node.layer or node.unlinked or not node.aliases:
            return
        fl = self.lower_handles.pop(fh)
        new = os.open(node.name, fl, dir_fd=node.fd)
        try:
            os.dup2(new, fh, inheritable=False)
        finally:
            os.close(new)

    @fuse_op
    def write(self, fh, off, buf):
        return os.pwrite(fh, buf, off)

    # flush is left unimplemented: its first ENOSYS tells the kernel to stop sending one per
    # close(); data is written through at write() time and closed at release().

    @fuse_op
    def release(self, fh):
        node = self.handles.pop(fh, None)
        self.lower_handles.pop(fh, None)
        os.close(fh)
        if node is not None:
            node.unhold(fh)
            self.table.maybe_free(node)

    @fuse_op
    def fsync(self, fh, datasync):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
