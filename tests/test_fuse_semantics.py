"""The last overlay semantics gaps (O_DIRECT, renameat2 flags, fallocate, file-attribute ioctls,
hard-linked lower files), each held against kernel overlayfs mounted beside rootless.fuse_overlay.

As in test_fuse_overlay.py, the semantic tests are marked `root`: the root pass runs them as real
root, and the unprivileged pass re-runs this module as container root inside `rootless unshare`
(`test_semantics_inside_user_namespace`), where the kernel overlay mounts with `userxattr`.
Where pyfuse3 cannot carry an operation at all (fallocate, ioctl), the test pins what a program
sees on each filesystem, as docs/conformance.md describes.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import subprocess
import sys

import pytest
from support.overlay_helpers import KernelOverlay, Overlay, opaque, read, whiteout, write

from rootless import syscalls
from rootless.fuse_overlay import hardlinks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_USERNS = os.environ.get("ROOTLESS_TEST_IN_USERNS") == "1"
AT_FDCWD = -100


@pytest.fixture
def pair(tmp_path):
    """(ours, kernel): the same layer layout under two bases, one per filesystem."""
    ours, kern = Overlay(tmp_path / "fuse"), KernelOverlay(tmp_path / "kernel")
    try:
        yield ours, kern
    finally:
        try:
            ours.close()
        finally:
            kern.close()


def mount_both(pair, build) -> None:
    for o in pair:
        build(o)
        o.mount()


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def rename2(src: str, dst: str, flags: int) -> None:
    syscalls.renameat2(AT_FDCWD, src, AT_FDCWD, dst, flags)


def tree(root: str) -> dict[str, str]:
    """Every path under `root` with its content ('<dir>' for directories)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirs:
            out[os.path.normpath(os.path.join(rel, d))] = "<dir>"
        for f in files:
            out[os.path.normpath(os.path.join(rel, f))] = read(os.path.join(dirpath, f))
    return out


def dd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dd", *args, "status=none"], capture_output=True)


# ---- O_DIRECT -----------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.timeout(60)
def test_o_direct_writes_and_reads_as_kernel_overlayfs(pair):
    mount_both(pair, lambda o: write(o.lower(2, "low"), "L" * 8192 + "tail"))
    for o in pair:
        r = dd("if=/dev/zero", f"of={o.m('x')}", "bs=4096", "count=4", "oflag=direct")
        assert r.returncode == 0, (o.base, r.stderr)
        assert os.path.getsize(o.m("x")) == 16384
        r = dd(f"if={o.m('x')}", "bs=4096", "iflag=direct")
        assert r.returncode == 0 and r.stdout == b"\0" * 16384, (o.base, r.stderr)
        # a lower file: read with O_DIRECT, then written with O_DIRECT (copy-up)
        r = dd(f"if={o.m('low')}", "bs=4096", "iflag=direct")
        assert r.returncode == 0 and r.stdout == b"L" * 8192 + b"tail", (o.base, r.stderr)
        r = dd(
            "if=/dev/zero", f"of={o.m('low')}", "bs=4096", "count=1", "seek=1",
            "conv=notrunc", "oflag=direct",
        )  # fmt: skip
        assert r.returncode == 0, (o.base, r.stderr)
        assert read(o.m("low")) == "L" * 4096 + "\0" * 4096 + "tail"
        assert read(o.up("low")) == read(o.m("low"))
        assert read(o.lower(2, "low")) == "L" * 8192 + "tail"


@pytest.mark.root
@pytest.mark.timeout(60)
def test_o_direct_write_is_seen_by_a_reader_that_cached_the_file(pair):
    mount_both(pair, lambda o: write(o.lower(2, "f"), "c" * 8192))
    for o in pair:
        cached = os.open(o.m("f"), os.O_RDONLY)
        try:
            assert os.pread(cached, 8192, 0) == b"c" * 8192  # now in the page cache
            fd = os.open(o.m("f"), os.O_WRONLY | os.O_DIRECT)
            try:
                buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
                buf.write(b"D" * 4096)
                assert os.pwritev(fd, [buf], 4096) == 4096
            finally:
                os.close(fd)
            assert os.pread(cached, 8192, 0) == b"c" * 4096 + b"D" * 4096, o.base
        finally:
            os.close(cached)


# ---- renameat2 ----------------------------------------------------------------------------------


def _exchange_layers(o) -> None:
    write(o.lower(2, "low1"), "low1")
    write(o.lower(2, "low2"), "low2")
    write(o.lower(1, "d", "low3"), "low3")


@pytest.mark.root
@pytest.mark.timeout(60)
def test_rename_exchange_of_files_as_kernel_overlayfs(pair):
    mount_both(pair, _exchange_layers)
    for o in pair:
        write(o.m("up1"), "up1")
        write(o.m("up2"), "up2")
        before = {n: os.stat(o.m(n)).st_ino for n in ("up1", "up2", "low1", "low2", "d/low3")}
        ex = syscalls.RENAME_EXCHANGE
        rename2(o.m("up1"), o.m("up2"), ex)  # two upper files
        rename2(o.m("low1"), o.m("up1"), ex)  # a lower file (copied up) and an upper one
        rename2(o.m("low2"), o.m("d", "low3"), ex)  # two lower files, two layers, two dirs
        os.mkdir(o.m("e"))
        write(o.m("e", "in"), "in")
        rename2(o.m("e"), o.m("up2"), ex)  # a directory and a file
        os.link(o.m("low1"), o.m("hard"))
        rename2(o.m("low1"), o.m("hard"), ex)  # two names of one inode: nothing happens
        assert errno_of(rename2, o.m("up1"), o.m("missing"), ex) == errno.ENOENT
        assert errno_of(rename2, o.m("missing"), o.m("up1"), ex) == errno.ENOENT
        after = {n: os.stat(o.m(n)).st_ino for n in ("up1", "e", "low1", "low2", "d/low3")}
        # inode numbers travel with the objects
        assert after["low1"] == before["up2"] and after["up1"] == before["low1"], o.base
        assert after["e"] == before["up1"] and after["low2"] == before["d/low3"], o.base
        assert after["d/low3"] == before["low2"], o.base
    ours, kern = pair
    expected = {
        "up1": "low1", "low1": "up2", "hard": "up2", "low2": "low3", "d": "<dir>",
        "d/low3": "low2", "up2": "<dir>", "up2/in": "in", "e": "up1",
    }  # fmt: skip
    assert tree(kern.mnt) == expected
    assert tree(ours.mnt) == expected
    ours.remount()
    assert tree(ours.mnt) == expected
    assert read(ours.lower(2, "low1")) == "low1"


@pytest.mark.root
@pytest.mark.timeout(60)
def test_rename_exchange_of_directories(pair):
    def build(o):
        write(o.lower(2, "ld", "a"), "a")
        write(o.lower(2, "ld", "sub", "b"), "b")
        write(o.lower(2, "other", "x"), "x")

    mount_both(pair, build)
    for o in pair:
        os.mkdir(o.m("u1"))
        write(o.m("u1", "one"), "1")
        os.mkdir(o.m("u2"))
        write(o.m("u2", "two"), "2")
        rename2(o.m("u1"), o.m("u2"), syscalls.RENAME_EXCHANGE)
        assert tree(o.m("u1")) == {"two": "2"} and tree(o.m("u2")) == {"one": "1"}
    ours, kern = pair
    assert tree(ours.mnt) == tree(kern.mnt)
    # directories that come from lower layers: kernel overlayfs without redirect_dir refuses
    # with EXDEV (mv(1) then copies); ours copies them up, as its plain rename does
    kerr = errno_of(rename2, kern.m("u1"), kern.m("other"), syscalls.RENAME_EXCHANGE)
    assert kerr in (0, errno.EXDEV)
    rename2(ours.m("u1"), ours.m("other"), syscalls.RENAME_EXCHANGE)  # upper <-> lower
    rename2(ours.m("ld"), ours.m("u2"), syscalls.RENAME_EXCHANGE)  # lower <-> upper
    expected = {
        "other": "<dir>", "other/two": "2", "u1": "<dir>", "u1/x": "x",
        "u2": "<dir>", "u2/a": "a", "u2/sub": "<dir>", "u2/sub/b": "b",
        "ld": "<dir>", "ld/one": "1",
    }  # fmt: skip
    assert tree(ours.mnt) == expected, "a lower directory's entries leaked into a moved one"
    ours.remount()
    assert tree(ours.mnt) == expected
    ours.umount()  # kernel overlayfs reads the upper dir we wrote the same way
    kern.umount()
    KernelOverlay(ours.base).mount()
    try:
        assert tree(ours.mnt) == expected
    finally:
        syscalls.umount2(ours.mnt, syscalls.MNT_DETACH)


@pytest.mark.root
@pytest.mark.timeout(60)
def test_rename_noreplace_and_whiteout_flags_as_kernel_overlayfs(pair):
    def build(o):
        write(o.lower(2, "low"), "low")
        write(o.lower(2, "low2"), "low2")

    mount_both(pair, build)
    results = []
    for o in pair:
        write(o.m("up"), "up")
        nr = syscalls.RENAME_NOREPLACE
        got = [
            errno_of(rename2, o.m("up"), o.m("low"), nr),
            errno_of(rename2, o.m("low"), o.m("up"), nr),
            errno_of(rename2, o.m("up"), o.m("new"), nr),
            errno_of(rename2, o.m("low"), o.m("new2"), nr),
            errno_of(rename2, o.m("new"), o.m("x"), nr | syscalls.RENAME_EXCHANGE),
            errno_of(rename2, o.m("new"), o.m("low2"), syscalls.RENAME_WHITEOUT),
            errno_of(rename2, o.m("new"), o.m("y"), syscalls.RENAME_WHITEOUT),
        ]
        results.append((got, tree(o.mnt)))
    (ours, ours_tree), (kern, kern_tree) = results
    assert ours == kern
    # overlayfs takes only NOREPLACE and EXCHANGE: RENAME_WHITEOUT is EINVAL, as root and as
    # container root in a user namespace alike
    inval = errno.EINVAL
    assert kern == [errno.EEXIST, errno.EEXIST, 0, 0, inval, inval, inval]
    assert ours_tree == kern_tree == {"low2": "low2", "new": "up", "new2": "low"}


# ---- fallocate and the file-attribute ioctls: what pyfuse3 3.5 cannot carry ---------------------

FALLOCATE_MODES = {
    "plain": ["-l", "8192"],
    "keep_size": ["-n", "-o", "8192", "-l", "4096"],
    "punch_hole": ["-p", "-o", "0", "-l", "4096"],
    "zero_range": ["-z", "-o", "0", "-l", "4096"],
    "collapse_range": ["-c", "-o", "0", "-l", "4096"],
    "insert_range": ["-i", "-o", "0", "-l", "4096"],
}


@pytest.mark.root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", sorted(FALLOCATE_MODES))
def test_fallocate_modes_kernel_supports_ours_answers_eopnotsupp(pair, mode):
    """pyfuse3 3.5 registers no fallocate handler: libfuse answers ENOSYS and the kernel turns
    that into EOPNOTSUPP for every mode (docs/conformance.md). Pinned, so that a pyfuse3 that
    gains fallocate shows up here; posix_fallocate(3) falls back to writing and works."""
    mount_both(pair, lambda o: write(o.lower(2, "low"), "x" * 16384))
    ours, kern = pair
    for o in pair:
        write(o.m("up"), "y" * 16384)
    for name in ("up", "low"):
        k = subprocess.run(["fallocate", *FALLOCATE_MODES[mode], kern.m(name)], capture_output=True)
        assert k.returncode == 0, k.stderr
        before = read(ours.m(name))
        r = subprocess.run(
            ["fallocate", *FALLOCATE_MODES[mode], ours.m(name)], capture_output=True, text=True
        )
        assert r.returncode == 1 and (
            "Operation not supported" in r.stderr or "mode is unsupported" in r.stderr
        ), r.stderr
        assert read(ours.m(name)) == before
    r = subprocess.run(["fallocate", "-x", "-l", "65536", ours.m("low")], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(ours.m("low")) == 65536
    assert read(ours.up("low")) == "x" * 16384 + "\0" * (65536 - 16384)


@pytest.mark.root
@pytest.mark.timeout(60)
def test_file_attribute_ioctls_kernel_answers_ours_is_eopnotsupp(pair):
    """lsattr/chattr: kernel overlayfs reads the real inode's flags (and keeps +a/+i of its own);
    pyfuse3 3.5 registers no ioctl handler, so lsattr and chattr see EOPNOTSUPP on ours."""
    mount_both(pair, lambda o: write(o.lower(2, "low"), "x"))
    ours, kern = pair
    for o in pair:
        write(o.m("up"), "y")
        os.mkdir(o.m("d"))
    for name in ("low", "up", "d"):
        k = subprocess.run(["lsattr", "-d", kern.m(name)], capture_output=True, text=True)
        assert k.returncode == 0 and k.stdout.split()[1] == kern.m(name), k.stderr
        r = subprocess.run(["lsattr", "-d", ours.m(name)], capture_output=True, text=True)
        assert r.returncode != 0 and "Operation not supported" in r.stderr, r.stderr
    k = subprocess.run(["chattr", "+d", kern.m("up")], capture_output=True, text=True)
    assert k.returncode == 0, k.stderr
    assert "d" in subprocess.run(["lsattr", kern.m("up")], capture_output=True, text=True).stdout
    r = subprocess.run(["chattr", "+d", ours.m("up")], capture_output=True, text=True)
    assert r.returncode != 0 and "Operation not supported" in r.stderr, r.stderr


# ---- hard-linked lower files ---------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.timeout(60)
def test_hardlink_index_lists_only_names_that_share_an_inode(tmp_path):
    root = tmp_path / "layer"
    write(str(root / "a" / "f"), "f")
    os.makedirs(root / "b" / "c")
    os.link(root / "a" / "f", root / "b" / "c" / "g")
    os.link(root / "a" / "f", root / "top")
    write(str(root / "single"), "s")
    os.symlink("t", root / "ln")
    os.link(root / "ln", root / "b" / "ln2", follow_symlinks=False)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        index = hardlinks.build(fd)
    finally:
        os.close(fd)
    got = {ino: sorted(names) for ino, names in index.items()}
    assert got == {
        os.stat(root / "top").st_ino: [(b"", b"top"), (b"a", b"f"), (b"b/c", b"g")],
        os.lstat(root / "ln").st_ino: [(b"", b"ln"), (b"b", b"ln2")],
    }


@pytest.mark.root
@pytest.mark.timeout(60)
def test_copy_up_of_hardlinked_lower_files_links_every_visible_name(tmp_path):
    ovl = Overlay(tmp_path)
    try:
        write(ovl.lower(2, "a", "f"), "shared")
        for name in ("b/g", "c/d/e/h", "gone/x", "op/y", "zz"):
            os.makedirs(os.path.dirname(ovl.lower(2, name)), exist_ok=True)
            os.link(ovl.lower(2, "a", "f"), ovl.lower(2, name))
        whiteout(ovl.l1, "gone")  # a name under a whited-out dir is not visible
        os.makedirs(ovl.lower(1, "op"))
        opaque(ovl.lower(1, "op"))  # nor one under an opaque dir above it
        write(ovl.lower(2, "p"), "second")
        os.link(ovl.lower(2, "p"), ovl.lower(2, "a", "q"))
        write(ovl.lower(1, "m1"), "top layer")
        os.makedirs(ovl.lower(1, "a"))
        os.link(ovl.lower(1, "m1"), ovl.lower(1, "a", "m2"))
        os.unlink(ovl.lower(2, "zz"))  # a name that no longer exists
        ovl.mount()
        with open(ovl.m("c", "d", "e", "h"), "a") as f:  # copy-up through one name
            f.write("+")
        names = ("a/f", "b/g", "c/d/e/h")
        sts = [os.stat(ovl.m(n)) for n in names]
        assert {s.st_ino for s in sts} == {sts[0].st_ino} and {s.st_nlink for s in sts} == {3}
        assert all(read(ovl.m(n)) == "shared+" for n in names)
        assert sorted(os.listdir(ovl.mnt)) == ["a", "b", "c", "m1", "op", "p"]
        assert not os.path.exists(ovl.up("op", "y")) and not os.path.exists(ovl.up("gone"))
        with open(ovl.m("p"), "a") as f:  # the same layer again: its index is built already
            f.write("!")
        assert read(ovl.m("a", "q")) == "second!"
        assert os.stat(ovl.m("a", "q")).st_ino == os.stat(ovl.m("p")).st_ino
        os.chmod(ovl.m("a", "m2"), 0o600)  # another layer
        assert stat_mode(ovl.m("m1")) == 0o600 and os.stat(ovl.up("m1")).st_nlink == 2
        ovl.remount()
        assert len({os.stat(ovl.m(n)).st_ino for n in names}) == 1
        assert read(ovl.lower(2, "a", "f")) == "shared"
    finally:
        ovl.close()


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o7777


# ---- the same, inside a user namespace --------------------------------------------------------


@pytest.mark.timeout(600)
def test_semantics_inside_user_namespace(tmp_path):
    """Re-run every `root` test above as container root inside `rootless unshare` (the subuid map
    containers get), in a mount namespace of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["ROOTLESS_TEST_IN_USERNS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    rl_unshare = [sys.executable, "-m", "rootless", "unshare"]
    cmd = [
        *rl_unshare, "unshare", "-m", "--",
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", "-m", "root",
        "--basetemp", str(tmp_path / "inner"), os.path.abspath(__file__),
    ]  # fmt: skip
    try:
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=550)
    finally:  # the inner run made files owned by subordinate ids: remove them from inside
        subprocess.run([*rl_unshare, "rm", "-rf", str(tmp_path / "inner")], env=env, check=False)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    m = re.search(r"(\d+) passed", r.stdout)
    assert m and int(m.group(1)) >= 14, r.stdout[-3000:]
