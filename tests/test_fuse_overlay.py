"""Overlay semantics of rootless.fuse_overlay, checked through a real FUSE mount.

The semantic tests are marked `root`: the root pass runs them as real root, and the unprivileged
pass re-runs this same module as container root inside a user namespace
(`test_semantics_inside_user_namespace`), where euid is 0 again so exactly those tests run. One
more test runs the filesystem as the plain unprivileged user (fusermount3, no namespace).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
from support.overlay_helpers import Overlay, is_whiteout, opaque, read, whiteout, write

from rootless import fuse_overlay

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_USERNS = os.environ.get("ROOTLESS_TEST_IN_USERNS") == "1"


@pytest.fixture
def ovl(tmp_path):
    o = Overlay(tmp_path)
    try:
        yield o
    finally:
        o.close()


def expect_errno(code, fn, *args, **kw):
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    assert ei.value.errno == code, (
        f"{fn.__name__}{args}: {ei.value!r}, wanted {errno.errorcode[code]}"
    )


def listing(path):
    names = os.listdir(path)
    assert len(names) == len(set(names)), f"duplicates in {names}"
    return sorted(names)


# ---- lookup and readdir -----------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.timeout(60)
def test_lookup_goes_top_down(ovl):
    write(ovl.lower(2, "a"), "bottom")
    write(ovl.lower(1, "a"), "top")
    write(ovl.lower(2, "b"), "only-bottom")
    write(ovl.lower(2, "c"), "bottom")
    write(ovl.up("c"), "upper")
    ovl.mount()
    assert read(ovl.m("a")) == "top"
    assert read(ovl.m("b")) == "only-bottom"
    assert read(ovl.m("c")) == "upper"
    expect_errno(errno.ENOENT, os.stat, ovl.m("nope"))
    # a directory in an upper layer merges with the same directory below
    write(ovl.lower(2, "d", "low"), "1")
    write(ovl.lower(1, "d", "high"), "2")
    ovl.remount()
    assert listing(ovl.m("d")) == ["high", "low"]
    # a file above a directory hides the directory
    write(ovl.lower(2, "fd", "inner"), "x")
    write(ovl.lower(1, "fd"), "file")
    ovl.remount()
    assert read(ovl.m("fd")) == "file"


@pytest.mark.root
@pytest.mark.timeout(60)
def test_readdir_merges_without_duplicates_or_whiteouts(ovl):
    for n in ("both", "low1", "gone_chr", "gone_wh"):
        write(ovl.lower(2, n), n)
    write(ovl.lower(1, "both"), "top")
    write(ovl.lower(1, "top1"), "t")
    whiteout(ovl.l1, "gone_chr", "chr")
    whiteout(ovl.l1, "gone_wh", "wh")
    write(ovl.up("upperonly"), "u")
    write(ovl.up("both"), "u")
    big = ovl.lower(2, "big")
    os.mkdir(big)
    for i in range(1500):
        open(os.path.join(big, f"entry-{i:05d}-{'x' * 40}"), "w").close()
    os.mkdir(ovl.lower(1, "big"))
    for i in range(0, 1500, 3):
        open(os.path.join(ovl.lower(1, "big"), f"entry-{i:05d}-{'x' * 40}"), "w").close()
    ovl.mount()
    assert listing(ovl.mnt) == ["big", "both", "low1", "top1", "upperonly"]
    assert len(listing(ovl.m("big"))) == 1500
    out = subprocess.run(["ls", "-a", ovl.mnt], capture_output=True, text=True, check=True)
    assert ".wh.gone_wh" not in out.stdout and "gone_chr" not in out.stdout
    # entries created and removed through the mount show up in the next listing
    write(ovl.m("new"), "n")
    os.unlink(ovl.m("low1"))
    assert listing(ovl.mnt) == ["big", "both", "new", "top1", "upperonly"]


@pytest.mark.root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("encoding", ["chr", "wh"])
def test_whiteouts_in_both_encodings(ovl, encoding):
    write(ovl.lower(2, "f"), "lower")
    write(ovl.lower(2, "dir", "inside"), "x")
    whiteout(ovl.l1, "f", encoding)
    whiteout(ovl.l1, "dir", encoding)
    ovl.mount()
    expect_errno(errno.ENOENT, os.stat, ovl.m("f"))
    expect_errno(errno.ENOENT, os.stat, ovl.m("dir"))
    expect_errno(errno.ENOENT, os.stat, ovl.m(".wh.f"))
    assert listing(ovl.mnt) == []
    write(ovl.m("f"), "again")
    assert read(ovl.m("f")) == "again"
    os.mkdir(ovl.m("dir"))
    assert listing(ovl.m("dir")) == []


@pytest.mark.root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("encoding", ["user", "trusted", "marker"])
def test_opaque_dirs_in_both_encodings(ovl, encoding):
    if encoding == "trusted" and IN_USERNS:
        pytest.skip("trusted.* xattrs can only be written by real root (covered by the root pass)")
    write(ovl.lower(2, "d", "hidden"), "x")
    write(ovl.lower(2, "d", "sub", "deep"), "x")
    write(ovl.lower(1, "d", "visible"), "y")
    opaque(ovl.lower(1, "d"), encoding)
    ovl.mount()
    assert listing(ovl.m("d")) == ["visible"]
    expect_errno(errno.ENOENT, os.stat, ovl.m("d", "hidden"))
    assert not any(n.startswith("user.overlay") for n in os.listxattr(ovl.m("d")))


# ---- copy-up ----------------------------------------------------------------------------------


def _lower_file(ovl):
    path = write(ovl.lower(2, "p", "q", "f"), "lower data\n" * 1000, 0o640)
    os.setxattr(path, "user.k", b"v")
    os.chown(path, 1000, 1000)
    os.utime(path, ns=(1_000_000_000_123, 2_000_000_000_456))
    os.chmod(ovl.lower(2, "p", "q"), 0o751)
    os.chown(ovl.lower(2, "p", "q"), 1000, 65534)
    os.utime(ovl.lower(2, "p", "q"), ns=(3_000_000_000, 4_000_000_000))
    return path


COPY_UP_OPS = {
    "open_write": lambda p: open(p, "r+").close(),
    "append": lambda p: open(p, "a").write("more\n"),
    "truncate": lambda p: os.truncate(p, 5),
    "chmod": lambda p: os.chmod(p, 0o600),
    "chown": lambda p: os.chown(p, 1000, 1001),
    "utimens": lambda p: os.utime(p, ns=(5_000_000_000, 6_000_000_000)),
    "setxattr": lambda p: os.setxattr(p, "user.new", b"1"),
    "removexattr": lambda p: os.removexattr(p, "user.k"),
    "link": lambda p: os.link(p, p + ".link"),
}


@pytest.mark.root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("op", sorted(COPY_UP_OPS))
def test_copy_up_preserves_data_mode_owner_times_xattrs(ovl, op):
    lower = _lower_file(ovl)
    before = os.stat(lower)
    ovl.mount()
    f = ovl.m("p", "q", "f")
    ino = os.stat(f).st_ino
    COPY_UP_OPS[op](f)
    up = ovl.up("p", "q", "f")
    assert os.path.isfile(up), "no copy-up happened"
    st = os.stat(f)
    ust = os.lstat(up)
    assert st.st_ino == ino, "inode number changed on copy-up"
    data = read(f)
    assert data == {"truncate": "lower", "append": "lower data\n" * 1000 + "more\n"}.get(
        op, "lower data\n" * 1000
    )
    assert read(up) == data
    assert stat.S_IMODE(ust.st_mode) == (0o600 if op == "chmod" else 0o640)
    assert (ust.st_uid, ust.st_gid) == ((1000, 1001) if op == "chown" else (1000, 1000))
    if op == "utimens":
        assert ust.st_mtime_ns == 6_000_000_000
    elif op not in ("truncate", "append"):
        assert ust.st_mtime_ns == before.st_mtime_ns
    xattrs = {n: os.getxattr(up, n) for n in os.listxattr(up)}
    expected = {"user.k": b"v"}
    if op == "setxattr":
        expected["user.new"] = b"1"
    if op == "removexattr":
        expected = {}
    assert xattrs == expected
    assert (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns) == (
        ust.st_mode,
        ust.st_uid,
        ust.st_gid,
        ust.st_mtime_ns,
    )
    # parents were created in the upper dir with their own mode, owner and times
    pq = os.stat(ovl.up("p", "q"))
    assert stat.S_IMODE(pq.st_mode) == 0o751 and (pq.st_uid, pq.st_gid) == (1000, 65534)
    if op != "link":  # a new name in p/q changes its mtime
        assert pq.st_mtime_ns == 4_000_000_000
    # the lower layer is never touched, and the work dir holds no leftovers
    assert read(lower) == "lower data\n" * 1000 and os.stat(lower).st_mtime_ns == before.st_mtime_ns
    assert os.listdir(os.path.join(ovl.work, "work")) == []
    if op == "link":
        assert os.stat(f + ".link").st_ino == ino and os.stat(f).st_nlink == 2


@pytest.mark.root
@pytest.mark.timeout(60)
def test_copy_up_of_special_files_and_symlinks(ovl):
    os.symlink("target", ovl.lower(2, "ln"))
    os.mkfifo(ovl.lower(2, "fifo"), 0o640)
    os.lchown(ovl.lower(2, "ln"), 1000, 1000)
    ovl.mount()
    os.chmod(ovl.m("fifo"), 0o600)
    assert stat.S_ISFIFO(os.lstat(ovl.up("fifo")).st_mode)
    os.chown(ovl.m("ln"), 1000, 1001, follow_symlinks=False)
    assert os.readlink(ovl.up("ln")) == "target"
    assert (os.lstat(ovl.up("ln")).st_uid, os.lstat(ovl.up("ln")).st_gid) == (1000, 1001)


# ---- deletion, whiteouts written, opaque on re-create -------------------------------------------


@pytest.mark.root
@pytest.mark.timeout(60)
def test_deleting_lower_entries_leaves_whiteouts(ovl):
    write(ovl.lower(2, "f"), "x")
    os.mkdir(ovl.lower(2, "emptydir"))
    write(ovl.lower(1, "d", "g"), "y")
    write(ovl.up("uonly"), "z")
    ovl.mount()
    os.unlink(ovl.m("f"))
    os.rmdir(ovl.m("emptydir"))
    os.unlink(ovl.m("d", "g"))
    os.unlink(ovl.m("uonly"))
    for name in ("f", "emptydir", "d/g", "uonly"):
        expect_errno(errno.ENOENT, os.lstat, ovl.m(name))
    assert listing(ovl.mnt) == ["d"] and listing(ovl.m("d")) == []
    st = os.lstat(ovl.up("f"))  # written as a 0/0 char device, as kernel overlayfs does
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert is_whiteout(ovl.up("emptydir")) and is_whiteout(ovl.up("d", "g"))
    assert not os.path.lexists(ovl.up("uonly")), "an upper-only file needs no whiteout"
    assert os.path.exists(ovl.lower(2, "f"))
    ovl.remount()  # whiteouts persist
    assert listing(ovl.mnt) == ["d"]


@pytest.mark.root
@pytest.mark.timeout(60)
def test_rmdir_of_merged_dir_with_lower_content_is_enotempty(ovl):
    write(ovl.lower(2, "d", "a"), "x")
    write(ovl.lower(1, "d", "b"), "x")
    ovl.mount()
    expect_errno(errno.ENOTEMPTY, os.rmdir, ovl.m("d"))
    os.unlink(ovl.m("d", "a"))
    expect_errno(errno.ENOTEMPTY, os.rmdir, ovl.m("d"))
    os.unlink(ovl.m("d", "b"))
    os.rmdir(ovl.m("d"))
    expect_errno(errno.ENOENT, os.stat, ovl.m("d"))
    assert is_whiteout(ovl.up("d"))


@pytest.mark.root
@pytest.mark.timeout(60)
def test_recreated_deleted_dir_is_opaque(ovl):
    write(ovl.lower(2, "d", "old"), "x")
    write(ovl.lower(2, "d", "sub", "older"), "x")
    ovl.mount()
    shutil.rmtree(ovl.m("d"))
    os.mkdir(ovl.m("d"))
    assert listing(ovl.m("d")) == []
    assert os.getxattr(ovl.up("d"), "user.overlay.opaque") == b"y"
    write(ovl.m("d", "new"), "n")
    ovl.remount()
    assert listing(ovl.m("d")) == ["new"]
    # re-creating a deleted file gives the new content
    write(ovl.lower(2, "f"), "old")
    ovl.remount()
    os.unlink(ovl.m("f"))
    write(ovl.m("f"), "new")
    assert read(ovl.m("f")) == "new"


# ---- rename -------------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.timeout(60)
def test_rename_lower_files_and_dirs(ovl):
    write(ovl.lower(2, "f"), "file")
    write(ovl.lower(2, "d", "a"), "A")
    write(ovl.lower(1, "d", "sub", "b"), "B")
    os.symlink("a", ovl.lower(2, "d", "l"))
    write(ovl.lower(2, "d2", "x"), "x")
    ovl.mount()
    os.rename(ovl.m("f"), ovl.m("g"))
    assert read(ovl.m("g")) == "file"
    expect_errno(errno.ENOENT, os.stat, ovl.m("f"))
    ino = os.stat(ovl.m("d")).st_ino
    os.rename(ovl.m("d"), ovl.m("e"))  # a directory from lower layers: no EXDEV
    assert os.stat(ovl.m("e")).st_ino == ino
    assert listing(ovl.m("e")) == ["a", "l", "sub"]
    assert read(ovl.m("e", "sub", "b")) == "B" and os.readlink(ovl.m("e", "l")) == "a"
    expect_errno(errno.ENOENT, os.stat, ovl.m("d"))
    # mv(1) as a user would use it, into a subdirectory
    subprocess.run(["mv", ovl.m("d2"), ovl.m("e", "d2")], check=True)
    assert listing(ovl.m("e", "d2")) == ["x"]
    ovl.remount()
    assert listing(ovl.mnt) == ["e", "g"]
    assert listing(ovl.m("e")) == ["a", "d2", "l", "sub"]
    # a new dir at the old name is empty, not the lower dir
    os.mkdir(ovl.m("d"))
    assert listing(ovl.m("d")) == []


@pytest.mark.root
@pytest.mark.timeout(60)
def test_rename_over_existing_targets(ovl):
    write(ovl.lower(2, "src"), "S")
    write(ovl.lower(2, "dst"), "D")
    write(ovl.lower(2, "srcdir", "in"), "1")
    write(ovl.lower(2, "dstdir", "gone"), "2")
    write(ovl.lower(2, "full", "x"), "3")
    ovl.mount()
    os.rename(ovl.m("src"), ovl.m("dst"))
    assert read(ovl.m("dst")) == "S"
    expect_errno(errno.ENOENT, os.stat, ovl.m("src"))
    os.unlink(ovl.m("dstdir", "gone"))  # dstdir is now empty in the merged view
    os.rename(ovl.m("srcdir"), ovl.m("dstdir"))
    assert listing(ovl.m("dstdir")) == ["in"]
    expect_errno(errno.ENOTEMPTY, os.rename, ovl.m("dstdir"), ovl.m("full"))
    expect_errno(errno.EISDIR, os.rename, ovl.m("dst"), ovl.m("full"))
    expect_errno(errno.ENOTDIR, os.rename, ovl.m("full"), ovl.m("dst"))
    write(ovl.m("u1"), "u1")
    write(ovl.m("u2"), "u2")
    os.rename(ovl.m("u1"), ovl.m("u2"))
    assert read(ovl.m("u2")) == "u1"
    ovl.remount()
    assert listing(ovl.mnt) == ["dst", "dstdir", "full", "u2"]
    assert listing(ovl.m("dstdir")) == ["in"]


# ---- hardlinks, symlinks, fifos, sockets, xattrs, statfs, fsync ---------------------------------


@pytest.mark.root
@pytest.mark.timeout(60)
def test_hardlinks_keep_one_inode_and_link_count_across_copy_up(ovl):
    write(ovl.lower(2, "a"), "shared")
    os.makedirs(ovl.lower(2, "other"))
    os.link(ovl.lower(2, "a"), ovl.lower(2, "other", "b"))
    ovl.mount()
    sa, sb = os.stat(ovl.m("a")), os.stat(ovl.m("other", "b"))
    assert sa.st_ino == sb.st_ino and sa.st_nlink == sb.st_nlink == 2
    with open(ovl.m("a"), "a") as f:  # copy-up through one name
        f.write("+more")
    assert read(ovl.m("other", "b")) == "shared+more"
    sa, sb = os.stat(ovl.m("a")), os.stat(ovl.m("other", "b"))
    assert sa.st_ino == sb.st_ino and sa.st_nlink == sb.st_nlink == 2
    os.link(ovl.m("a"), ovl.m("c"))
    assert os.stat(ovl.m("other", "b")).st_nlink == 3
    ovl.remount()
    sa, sb, sc = (os.stat(ovl.m(n)) for n in ("a", "other/b", "c"))
    assert sa.st_ino == sb.st_ino == sc.st_ino and sa.st_nlink == 3
    os.unlink(ovl.m("c"))
    assert os.stat(ovl.m("a")).st_nlink == 2


@pytest.mark.root
@pytest.mark.timeout(60)
def test_symlinks_fifos_sockets(ovl):
    os.symlink("../t", ovl.lower(2, "lowlink"))
    ovl.mount()
    assert os.readlink(ovl.m("lowlink")) == "../t"
    os.symlink("x" * 1000, ovl.m("long"))
    assert os.readlink(ovl.m("long")) == "x" * 1000
    assert stat.S_ISLNK(os.lstat(ovl.m("long")).st_mode)
    os.mkfifo(ovl.m("fifo"))
    assert stat.S_ISFIFO(os.stat(ovl.m("fifo")).st_mode)
    r = os.open(ovl.m("fifo"), os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(ovl.m("fifo"), os.O_WRONLY)
    os.write(w, b"through the fifo")
    assert os.read(r, 100) == b"through the fifo"
    os.close(r)
    os.close(w)
    s = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(ovl.mnt)  # a relative name: tmp paths can exceed sun_path's 108 bytes
    try:
        s.bind("sock")
        assert stat.S_ISSOCK(os.stat(ovl.m("sock")).st_mode)
    finally:
        os.chdir(cwd)
        s.close()
    expect_errno(errno.EPERM, os.mknod, ovl.m("fake-whiteout"), stat.S_IFCHR, os.makedev(0, 0))


@pytest.mark.root
@pytest.mark.timeout(60)
def test_xattrs_and_private_overlay_xattrs(ovl):
    write(ovl.lower(2, "f"), "x")
    os.setxattr(ovl.lower(2, "f"), "user.a", b"1")
    ovl.mount()
    assert os.getxattr(ovl.m("f"), "user.a") == b"1"
    os.setxattr(ovl.m("f"), "user.b", b"2" * 3000)
    assert sorted(os.listxattr(ovl.m("f"))) == ["user.a", "user.b"]
    assert os.getxattr(ovl.m("f"), "user.b") == b"2" * 3000
    os.removexattr(ovl.m("f"), "user.a")
    expect_errno(errno.ENODATA, os.getxattr, ovl.m("f"), "user.a")
    expect_errno(errno.ENODATA, os.removexattr, ovl.m("f"), "user.nope")
    os.mkdir(ovl.m("d"))
    os.setxattr(ovl.m("d"), "user.dir", b"d")
    assert os.getxattr(ovl.m("d"), "user.dir") == b"d"
    expect_errno(errno.EOPNOTSUPP, os.setxattr, ovl.m("d"), "user.overlay.opaque", b"y")
    assert os.getxattr(ovl.lower(2, "f"), "user.a") == b"1"


@pytest.mark.root
@pytest.mark.timeout(60)
def test_statfs_and_fsync(ovl):
    ovl.mount()
    a, b = os.statvfs(ovl.mnt), os.statvfs(ovl.upper)
    assert (a.f_bsize, a.f_blocks, a.f_files) == (b.f_bsize, b.f_blocks, b.f_files)
    assert a.f_namemax == 255
    fd = os.open(ovl.m("f"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"data")
    os.fsync(fd)
    os.fdatasync(fd)
    os.close(fd)
    dfd = os.open(ovl.mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    assert read(ovl.up("f")) == "data"


# ---- identity, limits, errno --------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.timeout(60)
def test_inode_numbers_are_stable(ovl):
    write(ovl.lower(2, "d", "f"), "x")
    write(ovl.lower(2, "g"), "x")
    ovl.mount()
    inos = {n: os.stat(ovl.m(n)).st_ino for n in ("d", "d/f", "g")}
    assert len(set(inos.values())) == 3
    os.chmod(ovl.m("d", "f"), 0o600)  # copy-up of the file and its parent
    os.rename(ovl.m("g"), ovl.m("h"))
    assert os.stat(ovl.m("d")).st_ino == inos["d"]
    assert os.stat(ovl.m("d", "f")).st_ino == inos["d/f"]
    assert os.stat(ovl.m("h")).st_ino == inos["g"]
    if not IN_USERNS:  # make the kernel forget every inode, then look up again
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
    assert os.stat(ovl.m("d", "f")).st_ino == inos["d/f"]


@pytest.mark.root
@pytest.mark.timeout(60)
def test_names_of_256_bytes_are_enametoolong(ovl):
    ovl.mount()
    ok, bad = "n" * 255, "n" * 256
    write(ovl.m(ok), "fine")
    os.mkdir(ovl.m("d" * 255))
    assert read(ovl.m(ok)) == "fine"
    expect_errno(errno.ENAMETOOLONG, os.stat, ovl.m(bad))
    expect_errno(errno.ENAMETOOLONG, open, ovl.m(bad), "w")
    expect_errno(errno.ENAMETOOLONG, os.mkdir, ovl.m(bad))
    expect_errno(errno.ENAMETOOLONG, os.rename, ovl.m(ok), ovl.m(bad))
    expect_errno(errno.ENAMETOOLONG, os.symlink, "t", ovl.m(bad))


@pytest.mark.root
@pytest.mark.timeout(90)
def test_deep_paths_near_and_beyond_4096_bytes(ovl):
    comp = "c" * 200
    # lower: a chain whose full path inside the mount is over 4096 bytes
    fd = os.open(ovl.l2, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(24):
        os.mkdir(comp, dir_fd=fd)
        nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    with open(os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd), "w") as f:
        f.write("deep")
    os.close(fd)
    ovl.mount()
    # a path just under PATH_MAX resolves in one call
    near = os.path.join(ovl.mnt, *[comp] * ((4000 - len(ovl.mnt)) // 201))
    assert len(near) < 4096 and os.path.isdir(near)
    # walk with relative paths, as pjdfstest does, below 4096 bytes from the mount root
    fd = os.open(ovl.mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(24):
            nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        assert open(os.open("leaf", os.O_RDONLY, dir_fd=fd)).read() == "deep"
        # copy-up and create at that depth
        with open(os.open("leaf", os.O_WRONLY | os.O_APPEND, dir_fd=fd), "w") as f:
            f.write("er")
        os.mkdir("new" * 80, dir_fd=fd)
        os.rename("leaf", "new" * 80 + "/leaf", src_dir_fd=fd, dst_dir_fd=fd)
        assert open(os.open("new" * 80 + "/leaf", os.O_RDONLY, dir_fd=fd)).read() == "deeper"
        os.unlink("new" * 80 + "/leaf", dir_fd=fd)
    finally:
        os.close(fd)


@pytest.mark.root
@pytest.mark.timeout(60)
def test_fstat_of_open_unlinked_file_shows_nlink_0(ovl):
    write(ovl.lower(2, "low"), "lower")
    ovl.mount()
    with open(ovl.m("up"), "w+") as f:
        f.write("upper")
        os.unlink(ovl.m("up"))
        assert os.fstat(f.fileno()).st_nlink == 0
        f.seek(0)
        assert f.read() == "upper"
        f.write("!")
        os.fchmod(f.fileno(), 0o600)
        assert stat.S_IMODE(os.fstat(f.fileno()).st_mode) == 0o600
    with open(ovl.m("low")) as f:
        os.unlink(ovl.m("low"))
        assert os.fstat(f.fileno()).st_nlink == 0
        assert f.read() == "lower"
    expect_errno(errno.ENOENT, os.stat, ovl.m("low"))


@pytest.mark.root
@pytest.mark.timeout(60)
def test_errno_mapping(ovl):
    write(ovl.lower(2, "f"), "x")
    write(ovl.lower(2, "d", "x"), "x")
    ovl.mount()
    expect_errno(errno.ENOENT, open, ovl.m("missing"))
    expect_errno(errno.ENOENT, os.unlink, ovl.m("missing"))
    expect_errno(errno.ENOENT, os.rename, ovl.m("missing"), ovl.m("x"))
    expect_errno(errno.EEXIST, os.mkdir, ovl.m("d"))
    expect_errno(errno.EEXIST, os.symlink, "t", ovl.m("f"))
    expect_errno(errno.EEXIST, os.link, ovl.m("f"), ovl.m("d"))
    expect_errno(errno.ENOTDIR, os.stat, ovl.m("f", "x"))
    expect_errno(errno.ENOTDIR, os.rmdir, ovl.m("f"))
    expect_errno(errno.EISDIR, open, ovl.m("d"), "w")
    expect_errno(errno.EISDIR, os.unlink, ovl.m("d"))
    expect_errno(errno.ENOTEMPTY, os.rmdir, ovl.m("d"))
    expect_errno(errno.EINVAL, os.rename, ovl.m("d"), ovl.m("d", "inside"))
    expect_errno(errno.ENODATA, os.getxattr, ovl.m("f"), "user.none")
    expect_errno(errno.EPERM, os.link, ovl.m("d"), ovl.m("dl"))
    os.chmod(ovl.m("f"), 0o000)
    os.chmod(ovl.m("d"), 0o500)
    # permission checks are the kernel's (default_permissions): run as an unprivileged id
    code = (
        "import os,sys\n"
        "os.setgid(1000); os.setuid(1000)\n"
        "errs = []\n"
        "for fn in (lambda: open(sys.argv[1]), lambda: open(sys.argv[2] + '/new', 'w')):\n"
        "    try: fn(); errs.append(0)\n"
        "    except OSError as e: errs.append(e.errno)\n"
        "print(errs)\n"
    )
    if not IN_USERNS:  # allow_other is needed for another uid to enter the mount
        ovl.umount()
        ovl.mount("allow_other")
    out = subprocess.run(
        [sys.executable, "-c", code, ovl.m("f"), ovl.m("d")], capture_output=True, text=True
    )
    assert out.stdout.strip() == f"[{errno.EACCES}, {errno.EACCES}]", out.stderr


# ---- mount lifecycle and kernel interoperability ------------------------------------------------


@pytest.mark.root
@pytest.mark.timeout(60)
def test_sigterm_unmounts_and_external_unmount_stops_the_daemon(ovl):
    write(ovl.lower(2, "f"), "x")
    ovl.mount()
    proc = ovl.proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not fuse_overlay.is_mounted(ovl.mnt)
    ovl.proc = None
    ovl.mount()
    proc = ovl.proc
    if os.geteuid() == 0:
        subprocess.run(["umount", ovl.mnt], check=True)
    assert proc.wait(10) == 0
    ovl.proc = None
    assert os.listdir(ovl.mnt) == []


@pytest.mark.root
@pytest.mark.timeout(60)
def test_command_line_takes_fuse_overlayfs_syntax(ovl):
    write(ovl.lower(1, "top"), "1")
    write(ovl.lower(2, "bottom"), "2")
    opts = f"lowerdir={ovl.l1}:{ovl.l2},upperdir={ovl.upper},workdir={ovl.work}"
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run(
        [sys.executable, "-m", "rootless.fuse_overlay", "-o", opts, ovl.mnt],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    try:
        assert r.returncode == 0, r.stderr
        assert listing(ovl.mnt) == ["bottom", "top"]
    finally:
        subprocess.run(["umount", ovl.mnt], check=False)
    deadline = time.monotonic() + 10
    while fuse_overlay.is_mounted(ovl.mnt) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not fuse_overlay.is_mounted(ovl.mnt)
    bad = subprocess.run(
        [sys.executable, "-m", "rootless.fuse_overlay", "-f", "-o", "upperdir=/x", ovl.mnt],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0 and "lowerdir" in bad.stderr


@pytest.mark.root
@pytest.mark.timeout(60)
def test_spawn_failure_is_one_line_error(ovl):
    with pytest.raises(fuse_overlay.OverlayError) as ei:
        fuse_overlay.spawn([ovl.l1], ovl.upper, ovl.work, os.path.join(ovl.base, "no-such-dir"))
    assert "\n" not in str(ei.value) and "no-such-dir" in str(ei.value)


@pytest.mark.root
@pytest.mark.timeout(60)
def test_kernel_overlayfs_reads_an_upper_dir_we_wrote(ovl):
    from rootless import syscalls

    write(ovl.lower(2, "keep"), "k")
    write(ovl.lower(2, "del"), "d")
    write(ovl.lower(2, "dir", "old"), "o")
    write(ovl.lower(2, "mod"), "before")
    ovl.mount()
    os.unlink(ovl.m("del"))
    shutil.rmtree(ovl.m("dir"))
    os.mkdir(ovl.m("dir"))
    write(ovl.m("dir", "new"), "n")
    write(ovl.m("mod"), "after")
    ours = {p: sorted(os.listdir(ovl.m(p))) for p in ("", "dir")}
    ovl.umount()
    kwork = os.path.join(ovl.base, "kwork")
    os.mkdir(kwork)
    data = f"lowerdir={ovl.l1}:{ovl.l2},upperdir={ovl.upper},workdir={kwork},userxattr"
    syscalls.mount("overlay", ovl.mnt, "overlay", 0, data)
    try:
        theirs = {p: sorted(os.listdir(ovl.m(p))) for p in ("", "dir")}
        assert read(ovl.m("mod")) == "after"
    finally:
        syscalls.umount2(ovl.mnt, syscalls.MNT_DETACH)
    assert theirs == ours


# ---- the two unprivileged ways to run it --------------------------------------------------------


@pytest.mark.timeout(900)
def test_semantics_inside_user_namespace(tmp_path):
    """Re-run every `root` test above as container root inside `rootless unshare` (the subuid map
    containers get), in a mount namespace of its own (util-linux unshare -m, private propagation)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["ROOTLESS_TEST_IN_USERNS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    rl_unshare = [sys.executable, "-m", "rootless", "unshare"]
    cmd = [
        *rl_unshare, "unshare", "-m", "--",
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x",
        "--basetemp", str(tmp_path / "inner"), os.path.abspath(__file__),
    ]  # fmt: skip
    try:
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=850)
    finally:  # the inner run made files owned by subordinate ids: remove them from inside
        inner = str(tmp_path / "inner")
        subprocess.run([*rl_unshare, "rm", "-rf", inner], env=env, check=False)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    m = re.search(r"(\d+) passed", r.stdout)
    assert m and int(m.group(1)) >= 30, r.stdout[-3000:]


@pytest.mark.timeout(60)
def test_plain_unprivileged_user_with_fusermount3(ovl):
    """Outside any namespace: fusermount3 mounts, `.wh.` files are read and written."""
    write(ovl.lower(2, "a"), "A")
    write(ovl.lower(2, "b"), "B")
    write(ovl.lower(2, "d", "x"), "X")
    whiteout(ovl.l1, "b", "wh")
    os.makedirs(ovl.lower(1, "d"))
    opaque(ovl.lower(1, "d"), "marker")
    ovl.mount()
    assert listing(ovl.mnt) == ["a", "d"] and listing(ovl.m("d")) == []
    with open(ovl.m("a"), "a") as f:
        f.write("+")
    assert read(ovl.up("a")) == "A+"
    os.unlink(ovl.m("a"))
    expect_errno(errno.ENOENT, os.stat, ovl.m("a"))
    assert is_whiteout(ovl.up("a"))
    ovl.remount()
    assert listing(ovl.mnt) == ["d"]
    assert ovl.umount() == 0
    assert not fuse_overlay.is_mounted(ovl.mnt)


@pytest.mark.root
@pytest.mark.timeout(60)
def test_chown_minus_one_updates_ctime_as_kernel_overlayfs_does(ovl):
    """pjdfstest chown/00.t: Linux updates ctime on chown(-1, -1); keep setuid across touch."""
    ovl.mount()
    subprocess.run(["touch", ovl.m("f")], check=True)  # upper: no copy-up to change ctime
    before = os.stat(ovl.up("f")).st_ctime_ns
    time.sleep(0.05)  # beyond the coarse clock's granularity
    os.chown(ovl.m("f"), -1, -1)
    after = os.stat(ovl.up("f")).st_ctime_ns
    assert after > before
    assert os.stat(ovl.m("f")).st_ctime_ns == after
    write(ovl.m("s"), "x")
    os.chmod(ovl.m("s"), 0o4755)
    os.utime(ovl.m("s"))
    assert stat.S_IMODE(os.stat(ovl.m("s")).st_mode) == 0o4755


@pytest.mark.root
@pytest.mark.timeout(60)
def test_die_with_parent_unmounts_when_the_spawner_exits(ovl):
    code = (
        "import sys\n"
        "from rootless import fuse_overlay\n"
        "p = fuse_overlay.spawn([sys.argv[1]], sys.argv[2], sys.argv[3], sys.argv[4],"
        " die_with_parent=True)\n"
        "print(p.pid, flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run(
        [sys.executable, "-c", code, ovl.l1, ovl.upper, ovl.work, ovl.mnt],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout.split()[0])
    try:
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}"), "the daemon outlived its spawner"
        assert not fuse_overlay.is_mounted(ovl.mnt)
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
        if fuse_overlay.is_mounted(ovl.mnt):
            subprocess.run(["umount", "-l", ovl.mnt], check=False)


@pytest.mark.root
@pytest.mark.timeout(60)
def test_we_read_an_upper_dir_kernel_overlayfs_wrote(ovl):
    from rootless import syscalls

    write(ovl.lower(2, "keep"), "k")
    write(ovl.lower(2, "del"), "d")
    write(ovl.lower(2, "dir", "old"), "o")
    write(ovl.lower(2, "mod"), "before")
    write(ovl.lower(2, "mvdir", "inner"), "i")
    kwork = os.path.join(ovl.base, "kwork")
    os.mkdir(kwork)
    data = f"lowerdir={ovl.l1}:{ovl.l2},upperdir={ovl.upper},workdir={kwork},userxattr"
    syscalls.mount("overlay", ovl.mnt, "overlay", 0, data)
    try:
        os.unlink(ovl.m("del"))
        shutil.rmtree(ovl.m("dir"))
        os.mkdir(ovl.m("dir"))
        write(ovl.m("dir", "new"), "n")
        write(ovl.m("mod"), "after")
        subprocess.run(["mv", ovl.m("mvdir"), ovl.m("moved")], check=True)
        theirs = {p: listing(ovl.m(p)) for p in ("", "dir", "moved")}
    finally:
        syscalls.umount2(ovl.mnt, syscalls.MNT_DETACH)
    ovl.mount()
    ours = {p: listing(ovl.m(p)) for p in ("", "dir", "moved")}
    assert ours == theirs
    assert read(ovl.m("mod")) == "after" and read(ovl.m("moved", "inner")) == "i"
