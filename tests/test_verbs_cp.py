"""`cp` (and `container cp`) beside podman 4.3, as the unprivileged user: host to container and back,
container to container, files, directories, `DIR/.`, existing and new destinations, a tar on stdin
and stdout, ownership with and without --archive, --overwrite, volume and tmpfs destinations,
created, running and exited containers, symlinks that point out of the container (they resolve
inside it), and podman's errors and exit codes. Each case runs on both engines and the results
(host trees, the container's files as `cp CTR:PATH -` lists them, exit codes, messages) must match."""

from __future__ import annotations

import difflib
import io
import os
import pprint
import re
import shutil
import stat
import subprocess
import tarfile

import pytest
from conftest import Rootless
from support.podman import Podman

NONE = ("--network", "none")


def _host_tree(base: str) -> None:
    os.makedirs(f"{base}/h/d/sub")
    for path, text in (("h/f", "hello\n"), ("h/d/a", "x\n"), ("h/d/sub/b", "y\n")):
        with open(f"{base}/{path}", "w") as f:
            f.write(text)
    os.chmod(f"{base}/h/d/sub/b", 0o640)
    os.symlink("/etc/passwd", f"{base}/h/d/lnk")
    os.makedirs(f"{base}/vol")
    os.makedirs(f"{base}/out")
    with open(f"{base}/secret", "w") as f:
        f.write("host secret\n")


@pytest.fixture(scope="module")
def engines(tmp_path_factory, registry, busybox_ref):
    """rootless and podman, each with: cr (created), rn (running, a volume on /vol and a tmpfs
    on /tt, symlinks out of the root), usr (running as 1000:1000), ex (exited)."""
    rl = Rootless(str(tmp_path_factory.mktemp("cp-rootless")))
    pm = Podman(str(tmp_path_factory.mktemp("cp-podman")))
    try:
        for e in (rl, pm):
            e.work = str(tmp_path_factory.mktemp("cp-work"))
            _host_tree(e.work)
            e.trust(registry)
            e("pull", "-q", busybox_ref, check=True)
            e("create", "--name", "cr", *NONE, busybox_ref, "sleep", "1000", check=True)
            links = (f"ln -s /../../../../..{e.work} /tmp/esc; "
                     f"ln -s ../../../../../..{e.work}/secret /tmp/esc2; ln -s /etc /tmp/etclink; "
                     "mkdir /tmp/q /tmp/q/f; echo z > /tmp/z; ln -s /tmp/tgt /tmp/dang; "
                     "ln -s /nonexist/x /tmp/dang2")  # fmt: skip
            e("run", "-d", "--name", "rn", *NONE, "--tmpfs", "/tt", "-v", f"{e.work}/vol:/vol",
              busybox_ref, "sh", "-c", f"{links}; exec sleep 1000", check=True)  # fmt: skip
            e("run", "-d", "--name", "usr", *NONE, "--user", "1000:1000", busybox_ref,
              "sleep", "1000", check=True)  # fmt: skip
            e("run", "--name", "ex", *NONE, busybox_ref, "sh", "-c", links, check=True)
            assert e("exec", "rn", "test", "-L", "/tmp/esc").returncode == 0
        yield {"rootless": rl, "podman": pm}
    finally:
        for e in (rl, pm):
            e("rm", "-af", "-t", "0", timeout=300)
            if hasattr(e, "work"):
                subprocess.run(["chmod", "-R", "u+w", e.work], capture_output=True)
                shutil.rmtree(e.work, ignore_errors=True)
        pm.cleanup()
        rl.cleanup()


def _arg(e, a: str) -> str:
    return a.replace("@", e.work)


def tar_listing(data: bytes) -> list[tuple]:
    """A tar's entries without times: name, type, mode, owner, size, link target, content."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        for m in tf:
            if skipped(m.name):
                continue
            body = tf.extractfile(m).read() if m.isreg() else b""
            size = m.size
            if os.path.basename(m.name) in GENERATED:
                body, size = b"", 0
            link = WORKDIR.sub("@", m.linkname)
            out.append((m.name.rstrip("/"), m.type, m.mode, m.uid, m.gid, size, link, body))
    return sorted(out)


WORKDIR = re.compile(r"/\S*/cp-work\d+")  # each engine's own host directory
# what each engine writes for itself, with its own content (ids, names, addresses)
GENERATED = frozenset(("hostname", "hosts", "resolv.conf"))
# what podman's runtime adds and rootless's does not: not cp's business
# (and the tmpfs mount point, which podman shows as the directory under the mount)
RUNTIME_ONLY = frozenset(("mtab", ".containerenv"))


def skipped(name: str) -> bool:
    return os.path.basename(name) in RUNTIME_ONLY or name.startswith("root/tt")


def host_listing(path: str) -> list[tuple]:
    """A host tree: relative names, types, modes, owner is the user, sizes, link targets, content."""
    out = []
    for root, dirs, files in os.walk(path):
        for n in sorted(dirs + files):
            p = os.path.join(root, n)
            if skipped(os.path.relpath(p, path)):
                continue
            st = os.lstat(p)
            assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), p
            body = b""
            if stat.S_ISREG(st.st_mode) and n not in GENERATED:
                with open(p, "rb") as f:
                    body = f.read()
            link = WORKDIR.sub("@", os.readlink(p)) if stat.S_ISLNK(st.st_mode) else ""
            out.append(
                (os.path.relpath(p, path), stat.S_IFMT(st.st_mode), oct(st.st_mode), link, body)
            )
    return sorted(out)


def in_ctr(e, ctr: str, path: str) -> list[tuple]:
    cp = e("cp", f"{ctr}:{path}", "-", text=False)
    assert cp.returncode == 0, cp.stderr
    return tar_listing(cp.stdout)


def both(engines, fn):
    got = {name: fn(e) for name, e in engines.items()}
    a, b = (pprint.pformat(got[k], width=150).splitlines() for k in ("rootless", "podman"))
    assert got["rootless"] == got["podman"], "\n".join(difflib.unified_diff(a, b, lineterm=""))
    return got["rootless"]


def cp(e, *args, check=True, **kw):
    r = e("cp", *(_arg(e, a) for a in args), **kw)
    if check:
        assert r.returncode == 0, r.stderr
    return r


# (name, cp arguments, where to look afterwards: (container, path) or a host path under the work dir)
TO_CONTAINER = [
    ("file-into-dir-created", ["@/h/f", "cr:/tmp/"], ("cr", "/tmp/f")),
    ("file-renamed-created", ["@/h/f", "cr:/tmp/g"], ("cr", "/tmp/g")),
    ("dir-into-dir-created", ["@/h/d", "cr:/tmp/"], ("cr", "/tmp/d")),
    ("dir-dot-new-created", ["@/h/d/.", "cr:/tmp/new"], ("cr", "/tmp/new")),
    ("dir-new-name-running", ["@/h/d", "rn:/tmp/nd"], ("rn", "/tmp/nd")),
    ("dir-dot-into-existing", ["@/h/d/.", "rn:/opt"], ("rn", "/opt")),
    ("file-onto-file", ["@/h/f", "rn:/tmp/z"], ("rn", "/tmp/z")),
    ("through-inner-symlink", ["@/h/f", "rn:/tmp/etclink/"], ("rn", "/etc/f")),
    ("dotdot-stays-inside", ["@/h/f", "rn:/../../tmp/dd"], ("rn", "/tmp/dd")),
    ("through-dangling-symlink", ["@/h/f", "rn:/tmp/dang"], ("rn", "/tmp/tgt")),
    ("into-tmpfs", ["@/h/d", "rn:/tt/"], ("rn", "/tt/d")),
    ("into-exited", ["@/h/d", "ex:/tmp/"], ("ex", "/tmp/d")),
    ("archive-default-owner", ["@/h/d", "usr:/tmp/da"], ("usr", "/tmp/da")),
    ("archive-false-short", ["-a=false", "@/h/f", "usr:/tmp/fna"], ("usr", "/tmp/fna")),
    ("archive-false-long", ["--archive=false", "@/h/d", "usr:/tmp/dna"], ("usr", "/tmp/dna")),
    ("container-to-container", ["rn:/etc/passwd", "cr:/tmp/pw"], ("cr", "/tmp/pw")),
    ("container-dir-to-container", ["ex:/var", "usr:/tmp/var2"], ("usr", "/tmp/var2")),
    ("container-cp-alias", ["@/h/f", "rn:/tmp/alias"], ("rn", "/tmp/alias")),
]


@pytest.mark.parametrize("name,args,where", TO_CONTAINER, ids=[c[0] for c in TO_CONTAINER])
def test_cp_into_containers_as_podman(engines, name, args, where):
    def go(e):
        verb = ("container", "cp") if name == "container-cp-alias" else ("cp",)
        r = e(*verb, *(_arg(e, a) for a in args))
        assert r.returncode == 0, r.stderr
        if where[0] != "usr":
            return in_ctr(e, *where), None
        # podman's `cp CTR:PATH -` of a non-root container's files reports ids of its own making:
        # the owners are compared as the container sees them
        return ids_dropped(in_ctr(e, *where)), owners(e, *where)

    listing, ids = both(engines, go)
    assert listing
    if name.startswith("archive-default"):
        assert ids == {"1000:1000"}
    elif name.startswith("archive-false"):
        assert ids == {"0:0"}


def ids_dropped(listing: list[tuple]) -> list[tuple]:
    return [x[:3] + x[5:] for x in listing]


def owners(e, ctr: str, path: str) -> set[str]:
    """The owners of a running container's files, as it sees them."""
    r = e("exec", ctr, "find", path, "-exec", "stat", "-c", "%u:%g", "{}", "+")
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


FROM_CONTAINER = [
    ("file-into-dir", ["rn:/etc/passwd", "@/out/FROM/"]),
    ("file-new-name", ["rn:/etc/passwd", "@/out/FROM/pw"]),
    ("dir-into-dir", ["rn:/etc", "@/out/FROM/"]),
    ("dir-new-name", ["rn:/etc", "@/out/FROM/e"]),
    ("dir-dot-into-dir", ["cr:/etc/.", "@/out/FROM/"]),
    ("symlink-source", ["rn:/tmp/etclink", "@/out/FROM/"]),
    ("owned-by-1000", ["usr:/tmp", "@/out/FROM/t"]),
    ("whole-root-running", ["rn:/", "@/out/FROM/root"]),
    ("whole-root-created", ["cr:/", "@/out/FROM/root"]),
    ("whole-root-exited", ["ex:/", "@/out/FROM/root"]),
    ("volume-running", ["rn:/vol", "@/out/FROM/"]),
]


@pytest.mark.parametrize("name,args", FROM_CONTAINER, ids=[c[0] for c in FROM_CONTAINER])
def test_cp_out_of_containers_as_podman(engines, name, args):
    def go(e):
        dest = f"{e.work}/out/{name}"
        os.makedirs(dest)
        cp(e, *(a.replace("FROM", name) for a in args))
        return host_listing(dest)

    assert both(engines, go)


def test_symlinks_out_of_the_root_stay_inside(engines):
    def go(e):
        before = sorted(os.listdir(e.work))
        put = cp(e, "@/h/f", "rn:/tmp/esc/", check=False)
        get = cp(e, "ex:/tmp/esc2", "@/out/esc2", check=False)
        get2 = cp(e, "rn:/tmp/esc", "@/out/", check=False)
        assert sorted(os.listdir(e.work)) == before  # nothing written beside the host's files
        assert not os.path.exists(f"{e.work}/out/esc2")
        return [(r.returncode, r.stderr) for r in (put, get, get2)]

    got = both(engines, go)
    assert [c for c, _ in got] == [125, 125, 125]
    assert (
        got[1][1]
        == 'Error: "/tmp/esc2" could not be found on container ex: no such file or directory\n'
    )


def test_stdout_and_stdin_archives(engines):
    def go(e):
        outs = [tar_listing(cp(e, src, "-", text=False).stdout)
                for src in ("rn:/etc/passwd", "rn:/etc/.", "cr:/")]  # fmt: skip
        outs.append(ids_dropped(tar_listing(cp(e, "usr:/tmp", "-", text=False).stdout)))
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w:gz") as tf:
            tf.add(f"{e.work}/h/d", arcname="sd")
            tf.add(f"{e.work}/h/f", arcname="sf")
        cp(e, "-", "rn:/tmp/", input=data.getvalue())
        cp(e, "-", "cr:/tmp", input=data.getvalue())
        return outs, in_ctr(e, "rn", "/tmp/sd"), in_ctr(e, "cr", "/tmp/sf")

    outs, sd, sf = both(engines, go)
    assert [x[0] for x in outs[0]] == ["passwd"]
    assert not any(x[0].split("/")[0] in ("dev", "proc", "sys") for x in outs[2])
    assert {(x[3], x[4]) for x in sd} == {(0, 0)}


def test_volume_destination_owned_by_the_user(engines):
    def go(e):
        cp(e, "@/h/d", "rn:/vol/")
        cp(e, "@/h/f", "cr:/tmp/volless")  # a created container's volumes are binds too
        return host_listing(f"{e.work}/vol")

    assert both(engines, go)


def test_overwrite(engines):
    def go(e):
        ow = f"{e.work}/out/ow"
        os.makedirs(f"{ow}/z")  # a directory in the way of the file z
        with open(f"{ow}/etc", "w") as f:  # a file in the way of the directory etc
            f.write("in the way\n")
        res = []
        for args in (["rn:/etc", "@/out/ow/"], ["--overwrite", "rn:/etc", "@/out/ow/"],
                     ["rn:/tmp/z", "@/out/ow/"], ["--overwrite", "rn:/tmp/z", "@/out/ow/"],
                     ["@/h/f", "rn:/tmp/q/"], ["--overwrite", "@/h/f", "rn:/tmp/q/"]):  # fmt: skip
            res.append(cp(e, *args, check=False).returncode)
        return res, host_listing(ow), in_ctr(e, "rn", "/tmp/q")

    res, _, _ = both(engines, go)
    assert res == [125, 0, 125, 0, 125, 0]


ERRORS = [
    (["@/h/f", "nosuch:/tmp"], 'Error: container "nosuch" does not exist'),
    (["nosuch:/tmp", "@/out"], 'Error: container "nosuch" does not exist'),
    (["@/h/nosuch", "rn:/tmp"], 'Error: "@/h/nosuch" could not be found on the host: no such file or directory'),
    (["rn:/nosuch", "@/out"], 'Error: "/nosuch" could not be found on container rn: no such file or directory'),
    (["cr:/nosuch", "@/out"], 'Error: "/nosuch" could not be found on container cr: no such file or directory'),
    (["@/h/f", "rn:/tmp/no/such"], 'Error: "/tmp/no/such" could not be found on container rn: no such file or directory'),
    (["@/h/f", "rn:/tmp/dang2"], 'Error: "/tmp/dang2" could not be found on container rn: no such file or directory'),
    (["@/h/f", "cr:/tmp/nodir/"], 'Error: "/tmp/nodir/" could not be found on container cr: no such file or directory'),
    (["rn:/etc/passwd", "@/out/nodir/"], 'Error: "@/out/nodir/" could not be found on the host: no such file or directory'),
    (["@/h/f", "@/out/x"], "Error: name or ID cannot be empty"),
    (["-", "-"], "Error: name or ID cannot be empty"),
    (["rn:", "@/out"], 'Error: invalid arguments "rn:", "@/out": you must specify paths'),
    (["@/h/d", "rn:/etc/passwd"], "Error: destination must be a directory when copying a directory"),
    (["rn:/etc", "@/h/f"], "Error: destination must be a directory when copying a directory"),
    (["-", "rn:/tmp/newdir"], "Error: destination must be a directory when copying from stdin"),
    (["-", "rn:/etc/passwd"], "Error: destination must be a directory when copying from stdin"),
    (["@/h/f"], "Error: accepts 2 arg(s), received 1"),
    (["-a", "false", "@/h/f", "rn:/tmp"], "Error: accepts 2 arg(s), received 3"),
]  # fmt: skip


@pytest.mark.parametrize("args,message", ERRORS, ids=[" ".join(c[0]) for c in ERRORS])
def test_errors_as_podman(engines, args, message):
    def go(e):
        r = cp(e, *args, check=False, input="")
        return r.returncode, r.stderr.replace(e.work, "@")

    assert both(engines, go) == (125, message + "\n")


def test_stdin_that_is_no_tar(engines):
    def go(e):
        r = cp(e, "-", "rn:/tmp/", check=False, input="garbage\n")
        return r.returncode, r.stderr

    assert both(engines, go) == (
        125, "Error: source must be a (compressed) tar archive when copying from stdin\n")  # fmt: skip


@pytest.mark.parametrize("driver", ["overlay", "fuse-overlay", "vfs"])
def test_stopped_containers_on_each_storage_driver(engines, busybox_ref, driver):
    """rootless alone: a created container's storage is mounted for the copy, then let go (no fuse
    daemon or mount stays); a copy within one stopped container works too; the container then
    runs on what was copied."""
    from support import leftovers

    rl = engines["rootless"]
    name = f"sd-{driver}"
    rl("--storage-driver", driver, "create", "--name", name, *NONE, busybox_ref,
       "cat", "/tmp/d/a", "/tmp/d/sub/b", "/tmp/pw", check=True)  # fmt: skip
    cp(rl, "@/h/d", f"{name}:/tmp/")
    cp(rl, f"{name}:/etc/passwd", f"{name}:/tmp/pw")
    got = {x[0] for x in in_ctr(rl, name, "/tmp")}
    assert got >= {"tmp/d/a", "tmp/d/sub/b", "tmp/pw"}
    cid = rl("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()
    assert [m for m in leftovers.mounts(rl) if cid in m] == []  # gone with the copier
    r = rl("start", "-a", name)
    assert (r.returncode, r.stdout.split("\n")[:3]) == (
        0,
        ["x", "y", "root:x:0:0:root:/root:/bin/sh"],
    )
    rl("rm", name, check=True)


def test_trailing_slashes(engines):
    """podman cleans a container path (a file's `PATH/` is the file) but puts nothing into a file
    named as a directory."""

    def go(e):
        os.makedirs(f"{e.work}/out/slash")
        got = cp(e, "rn:/etc/passwd/", "@/out/slash/", check=False).returncode
        put = cp(e, "@/h/f", "rn:/tmp/z/", check=False).returncode
        return got, put, host_listing(f"{e.work}/out/slash"), in_ctr(e, "rn", "/tmp/z")

    assert both(engines, go)[:2] == (0, 125)
