"""Named and anonymous volumes as the unprivileged user, with the real CLI: `volume` verbs with
podman's output and exit codes (podman side by side for the JSON and the table), data that outlives
its container, ownership inside the user namespace (a new volume belongs to container root, files a
container writes land on the host as the user's subordinate ids, :U), copy-up from the image, the
image's VOLUMEs as anonymous volumes, --volumes-from, --mount type=volume, rm -v, run --rm,
refusals (in use, missing, bad options) and nothing left behind."""

import json
import os
import stat

import pytest
from conftest import Rootless
from support import stores
from support.images import subordinate_id

NONE = ("--network", "none")


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(Rootless, tmp_path_factory, registry, busybox_ref, "volumes")


@pytest.fixture
def rl(store):
    """The module's store; after each test no container, volume, process or mount is left."""
    yield store
    store("rm", "-af", "-t", "0", "-v", check=True, timeout=300)
    store("volume", "rm", "-af", check=True)
    stores.assert_nothing_left(store)
    assert store("volume", "ls", "-q").stdout == ""


def run(rl, *args, check=True):
    return rl("run", "--rm", *NONE, *args, check=check)


def inspect(rl, name):
    cp = rl("volume", "inspect", name, check=True)
    return json.loads(cp.stdout)[0]


def volumes_dir(rl):
    return os.path.join(rl.data_dir, "rootless", "volumes")


def test_create_ls_inspect_exists_rm_as_podman(rl, podman):
    assert (
        rl("volume", "create", "--label", "app=web", "--label", "tier", "data").stdout == "data\n"
    )
    podman("volume", "create", "--label", "app=web", "--label", "tier", "data", check=True)
    mine, theirs = inspect(rl, "data"), json.loads(podman("volume", "inspect", "data").stdout)[0]
    assert list(mine) == list(theirs)  # the same fields in the same order
    assert mine["Mountpoint"] == os.path.join(volumes_dir(rl), "data", "_data")
    assert mine["Labels"] == theirs["Labels"] == {"app": "web", "tier": ""}
    assert (mine["Driver"], mine["Scope"], mine["Options"]) == ("local", "local", {})
    assert mine["CreatedAt"].endswith("Z") or "+" in mine["CreatedAt"]
    # the volume's root belongs to container root: the user's own uid on the host
    st = os.stat(mine["Mountpoint"])
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.getuid(), 0o755)
    assert rl("volume", "ls").stdout == podman("volume", "ls").stdout
    assert rl("volume", "ls", "--format", "json").stdout.count('"Name": "data"') == 1
    fmt = "{{.Name}} {{.Driver}} {{.Labels}}"
    assert (
        rl("volume", "ls", "--format", fmt).stdout == podman("volume", "ls", "--format", fmt).stdout
    )
    anon = rl("volume", "create", check=True).stdout.strip()
    assert len(anon) == 64 and anon in rl("volume", "ls", "-q").stdout.split()
    assert rl("volume", "ls", "--filter", "label=app=web", "-q").stdout == "data\n"
    assert rl("volume", "exists", "data").returncode == 0
    assert (
        rl("volume", "exists", "nope").returncode
        == podman("volume", "exists", "nope").returncode
        == 1
    )
    assert rl("volume", "rm", "data", anon).stdout == f"data\n{anon}\n"
    assert not os.path.exists(os.path.join(volumes_dir(rl), "data"))


@pytest.mark.parametrize(
    "args, code, text",
    [
        (("volume", "create", "dup"), 125, "volume with name dup already exists"),
        (("volume", "inspect", "nope"), 125, "no such volume nope"),
        (("volume", "rm", "nope"), 1, 'no volume with name "nope" found'),
        (("volume", "create", "bad/name"), 125, "names must match"),
        (("volume", "create", "--opt", "type=ext4", "--opt", "device=/dev/sda1", "v"), 125, "type=tmpfs"),
        (("volume", "create", "--opt", "o=size=10m", "v"), 125, "rootless cannot run mount"),
        (("volume", "create", "--opt", "foo=bar", "v"), 125, "invalid volume option 'foo'"),
        (("volume", "create", "--driver", "nfs", "v"), 125, "only the local driver"),
        (("run", "--rm", "-v", "bad/name:/d", "IMG", "true"), 125, "-v bad/name:/d"),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_podmans_code(rl, podman, args, code, text):
    rl("volume", "create", "dup", check=True)
    podman("volume", "create", "dup", check=True)
    args = tuple(rl.img if a == "IMG" else a for a in args)
    cp = rl(*args)
    assert cp.returncode == code, cp.stderr
    assert cp.stderr.count("\n") == 1 and cp.stderr.startswith("Error: ") and text in cp.stderr
    assert "Traceback" not in cp.stderr
    if args[0] == "volume" and args[1] in ("inspect", "rm"):
        assert podman(*args).returncode == code  # podman's exit code
    assert sorted(rl("volume", "ls", "-q").stdout.split()) == ["dup"]  # nothing half-created


def test_data_survives_the_container_and_lands_as_subordinate_ids(rl):
    rl("run", "--name", "writer", *NONE, "-u", "1000:1000", "-v", "keep:/data:U", rl.img,
       "sh", "-c", "echo kept > /data/file", check=True)  # fmt: skip
    rl("rm", "writer", check=True)
    assert run(rl, "-v", "keep:/data", rl.img, "cat", "/data/file").stdout == "kept\n"
    path = os.path.join(inspect(rl, "keep")["Mountpoint"], "file")
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (subordinate_id("uid", 1000), subordinate_id("gid", 1000))
    # read-only, and the mount is nosuid,nodev as podman's
    cp = run(
        rl,
        "-v",
        "keep:/data:ro",
        rl.img,
        "sh",
        "-c",
        "grep ' /data ' /proc/mounts; touch /data/x",
        check=False,
    )
    assert cp.returncode != 0 and "Read-only file system" in cp.stderr
    opts = cp.stdout.split()[3].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(opts)


def test_first_use_copies_the_image_up_and_chowns_to_the_user(rl):
    # a path the image has: its files are copied in, with its owner, mode and times (podman's rule)
    out = run(rl, "-u", "1000:1000", "-v", "etcvol:/etc", rl.img, "ls", "-ldn", "/etc").stdout
    assert out.split()[2:4] == ["0", "0"]
    names = os.listdir(inspect(rl, "etcvol")["Mountpoint"])
    assert "passwd" in names and "group" in names
    # a path the image lacks: the volume's root becomes the container user's
    out = run(rl, "-u", "1000:1000", "-v", "fresh:/newdir", rl.img, "ls", "-ldn", "/newdir").stdout
    assert out.split()[2:4] == ["1000", "1000"]
    st = os.stat(inspect(rl, "fresh")["Mountpoint"])
    assert st.st_uid == subordinate_id("uid", 1000)
    data = inspect(rl, "etcvol")
    assert "NeedsCopyUp" not in data and "NeedsChown" not in data  # done once
    # nocopy leaves a fresh volume empty
    assert run(rl, "-v", "empty:/etc:nocopy", rl.img, "/bin/ls", "/etc").stdout == ""


def test_in_use_is_refused_and_force_removes_the_container(rl, podman):
    rl("run", "-d", "--name", "user", *NONE, "-v", "busy:/d", rl.img, "sleep", "300", check=True)
    cid = rl("inspect", "--format", "{{.Id}}", "user", check=True).stdout.strip()
    cp = rl("volume", "rm", "busy")
    assert cp.returncode == 2  # podman's code for a volume in use
    assert cp.stderr.startswith(
        "Error: volume busy is being used by the following container(s): " + cid
    )
    assert cp.stderr.count("\n") == 1
    assert rl("volume", "exists", "busy").returncode == 0
    assert inspect(rl, "busy")["MountCount"] == 1
    assert rl("volume", "prune", "-f").stdout == ""  # prune keeps what a container uses
    assert rl("volume", "rm", "-f", "-t", "0", "busy").stdout == "busy\n"
    assert rl("ps", "-aq").stdout == ""
    assert rl("volume", "exists", "busy").returncode == 1


def test_anonymous_volumes_rm_v_and_run_rm(rl):
    rl("run", "--name", "anon", *NONE, "-v", "/scratch", "-v", "named:/named",
       rl.img, "sh", "-c", "echo a > /scratch/a", check=True)  # fmt: skip
    mounts = json.loads(rl("inspect", "--format", "{{json .Mounts}}", "anon").stdout)
    byname = {m["Destination"]: m for m in mounts}
    anon = byname["/scratch"]["Name"]
    assert byname["/scratch"]["Type"] == byname["/named"]["Type"] == "volume"
    assert inspect(rl, anon)["Anonymous"] is True and "Anonymous" not in inspect(rl, "named")
    rl("rm", "anon", check=True)  # without -v the anonymous volume stays, as with podman
    assert rl("volume", "exists", anon).returncode == 0
    rl("volume", "rm", anon, check=True)
    rl("run", "--name", "anon2", *NONE, "-v", "/scratch", rl.img, "true", check=True)
    anon = json.loads(rl("inspect", "--format", "{{json .Mounts}}", "anon2").stdout)[0]["Name"]
    rl("rm", "-v", "anon2", check=True)
    assert rl("volume", "exists", anon).returncode == 1
    # run --rm removes its anonymous volumes and keeps the named ones
    before = set(rl("volume", "ls", "-q").stdout.split())
    run(
        rl, "-v", "/scratch", "-v", "named:/named", "--mount", "type=volume,dst=/m2", rl.img, "true"
    )
    assert set(rl("volume", "ls", "-q").stdout.split()) == before


def test_volumes_from_and_mount_type_volume(rl):
    rl("run", "--name", "src", *NONE, "--mount", "type=volume,src=shared,dst=/shared", "-v", "/anon",
       rl.img, "sh", "-c", "echo s > /shared/s; echo a > /anon/a", check=True)  # fmt: skip
    out = run(rl, "--volumes-from", "src", rl.img, "cat", "/shared/s", "/anon/a").stdout
    assert out == "s\na\n"
    cp = run(rl, "--volumes-from", "src:ro", rl.img, "touch", "/shared/t", check=False)
    assert cp.returncode != 0 and "Read-only" in cp.stderr
    cp = run(rl, "--mount", "type=volume,src=shared,dst=/s,ro", rl.img, "cat", "/s/s")
    assert cp.stdout == "s\n"
    cp = run(rl, "--volumes-from", "nope", rl.img, "true", check=False)
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1 and "nope" in cp.stderr


def test_tmpfs_and_bind_volumes(rl, tmp_path):
    rl(
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=2m,uid=1000",
        "tv",
        check=True,
    )
    out = run(
        rl, "-v", "tv:/t", rl.img, "sh", "-c", "grep ' /t ' /proc/mounts; stat -c %u /t"
    ).stdout
    line, uid = out.splitlines()
    assert line.split()[2] == "tmpfs" and "size=2048k" in line and uid == "1000"
    host = tmp_path / "hostdir"
    host.mkdir()
    rl(
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        f"device={host}",
        "bv",
        check=True,
    )
    run(rl, "-v", "bv:/b", rl.img, "sh", "-c", "echo b > /b/file")
    assert (host / "file").read_text() == "b\n"
    rl("volume", "rm", "bv", check=True)
    assert (host / "file").exists()  # removing a bind volume leaves the user's directory alone
    cp = rl(
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        "device=/nonexistent",
        "bv2",
    )
    assert cp.returncode == 125 and "an/existing/host/dir" in cp.stderr


def test_prune_removes_only_unused_volumes(rl):
    rl("volume", "create", "--label", "keep=no", "old", check=True)
    rl("volume", "create", "other", check=True)
    rl("run", "--name", "holder", *NONE, "-v", "held:/h", rl.img, "true", check=True)  # fmt: skip
    assert rl("volume", "prune", "-f", "--filter", "label=keep=no").stdout == "old\n"
    cp = rl("volume", "prune", input="n\n")
    assert "The following volumes will be removed:\nother\n" in cp.stdout and cp.returncode == 0
    assert rl("volume", "exists", "other").returncode == 0
    assert rl("volume", "prune", "-f").stdout == "other\n"
    assert rl("volume", "ls", "--filter", "dangling=false", "-q").stdout == "held\n"
