"""--userns=keep-id[:uid=,gid=], nomap, auto[:size=], --uidmap/--gidmap and --subuidname end to end
as the unprivileged user, beside podman 4.3 (podman-run(1)): the container's maps, user, HOME and
/etc/passwd and /etc/group entries as podman makes them, files in a bind mount owned by the user on
the host, the image's files with their owners and not one layer copied or chowned (the fuse overlay
shifts ids), inspect's UsernsMode/IDMappings, auto's ranges, and podman's errors for bad values. Every id is derived from the user that
runs the tests (the `ids` marker: the second test user runs them too)."""

import grp
import json
import os
import pwd
import subprocess
import sys

import pytest
from conftest import Rootless
from support.podman import Podman

SHOW = (
    "id; cat /proc/self/uid_map /proc/self/gid_map; echo HOME=$HOME; tail -1 /etc/passwd; "
    "tail -1 /etc/group; pwd"
)


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    r = Rootless(str(tmp_path_factory.mktemp("keepid")))
    r.trust(registry)
    r("pull", busybox_ref, check=True)
    r.img = busybox_ref
    yield r
    r("rm", "-af", "-t", "0", timeout=120)
    r.cleanup()


@pytest.fixture(scope="module")
def pm(tmp_path_factory, registry, busybox_ref):
    p = Podman(str(tmp_path_factory.mktemp("keepid-podman")))
    p.trust(registry)
    p("pull", busybox_ref, check=True)
    yield p
    p.cleanup()


def me():
    pw = pwd.getpwuid(os.getuid())
    return pw.pw_name, os.getuid(), os.getgid()


def errors(cp) -> list[str]:
    """stderr without podman's warnings (a rootless podman warns about "/" not being shared)."""
    return [ln for ln in cp.stderr.splitlines() if ln and "level=warning" not in ln]


def subids():
    """(first host id, total count) of this user's subordinate uids (rootless maps them in order)."""
    name = pwd.getpwuid(os.getuid()).pw_name
    ranges = []
    for line in open("/etc/subuid"):  # noqa: SIM115
        f = line.strip().split(":")
        if len(f) == 3 and f[0] in (name, str(os.getuid())):
            ranges.append((int(f[1]), int(f[2])))
    assert ranges, f"{name} has no subordinate uids"
    return ranges[0][0], sum(c for _s, c in ranges)


def other_user() -> str | None:
    """Another user with subordinate ids (for --subuidname), if /etc/subuid has one."""
    name = pwd.getpwuid(os.getuid()).pw_name
    for line in open("/etc/subuid"):  # noqa: SIM115
        f = line.strip().split(":")
        if len(f) == 3 and f[0] not in (name, str(os.getuid())):
            return f[0]
    return None


@pytest.mark.parametrize(
    "mode", ["keep-id", "keep-id:uid=200,gid=300", "nomap", "auto", "auto:size=2000"]
)
def test_modes_are_podmans(rl, pm, mode):
    ours = rl("run", "--rm", f"--userns={mode}", rl.img, "sh", "-c", SHOW, check=True)
    theirs = pm("run", "--rm", f"--userns={mode}", rl.img, "sh", "-c", SHOW, check=True)
    assert ours.stdout == theirs.stdout
    name, uid, gid = me()
    lines = ours.stdout.splitlines()
    if mode == "keep-id":
        assert (
            lines[0]
            == f"uid={uid}({name}) gid={gid}({grp.getgrgid(gid).gr_name}) groups={gid}({name})"
        )
        assert lines[1].split() == ["0", "1", str(uid)]
        assert lines[2].split() == [str(uid), "0", "1"]
        assert f"{name}:*:{uid}:{gid}:" in ours.stdout and f"{name}:x:{gid}:{name}" in ours.stdout
        assert "HOME=/\n" in ours.stdout
    elif mode.startswith("keep-id"):
        assert lines[0] == "uid=200(200) gid=300(300) groups=300(300)"
    elif mode == "nomap":
        assert lines[1].split() == ["0", "1", str(subids()[1])]  # every subordinate id, not you
    elif mode == "auto:size=2000":
        assert lines[1].split() == ["0", "1", "2000"]


def test_bind_mount_files_belong_to_the_user(rl, tmp_path):
    """The point of keep-id: what the container writes in a -v directory is the user's on the host."""
    d = tmp_path / "shared"
    d.mkdir()
    (d / "mine").write_text("x")
    cmd = "touch /v/file; mkdir /v/dir; echo hi > /v/dir/f; ls -ln /v/mine; id -u"
    cp = rl("run", "--rm", "--userns=keep-id", "-v", f"{d}:/v", rl.img, "sh", "-c", cmd, check=True)
    _, uid, gid = me()
    out = cp.stdout.split()
    assert out[2:4] == [str(uid), str(gid)] and out[-1] == str(uid)  # the user's file is the user's
    for p in (d / "file", d / "dir", d / "dir" / "f"):
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == (uid, gid), p


def test_nomap_root_writes_as_the_first_subordinate_id(rl, tmp_path):
    """Without your id in the map, the container's root is your first subordinate id on the host
    (it can still reach its root filesystem and mounts under your private directories)."""
    d = tmp_path / "nomap"
    d.mkdir()
    os.chmod(d, 0o777)
    rl("run", "--rm", "--userns=nomap", "-v", f"{d}:/v", rl.img, "touch", "/v/f", check=True)
    assert os.lstat(d / "f").st_uid == subids()[0]


def test_auto_takes_a_free_range_and_keeps_it(rl):
    fmt = "{{json .HostConfig.IDMappings.UidMap}}"
    size = 1000  # ranges are ids of rootless's own namespace: the first starts at 1, after root
    for name in ("a1", "a2"):
        rl("create", "--name", name, f"--userns=auto:size={size}", rl.img, "cat",
           "/proc/self/uid_map", check=True)  # fmt: skip
    try:
        first, second = (json.loads(rl("inspect", "--format", fmt, n, check=True).stdout)
                         for n in ("a1", "a2"))  # fmt: skip
        assert first == [f"0:1:{size}"] and second == [f"0:{1 + size}:{size}"]
        for _ in range(2):  # the same range on every start
            out = rl("start", "-a", "a2", check=True).stdout.split()
            assert out == ["0", str(1 + size), str(size)]
        n = subids()[1]
        cp = rl("run", "--rm", f"--userns=auto:size={n}", rl.img, "true")
        assert cp.returncode == 125
        assert (
            cp.stderr == "Error: creating container storage: could not find enough available IDs\n"
        )
    finally:
        rl("rm", "-f", "-t", "0", "a1", "a2")


def test_uidmap_without_the_user_and_subuidname(rl, pm):
    show = "id; cat /proc/self/uid_map /proc/self/gid_map"
    ours = rl("run", "--rm", "--uidmap=0:1:500", rl.img, "sh", "-c", show, check=True).stdout
    theirs = pm("run", "--rm", "--uidmap=0:1:500", rl.img, "sh", "-c", show, check=True).stdout
    assert ours == theirs
    name = pwd.getpwuid(os.getuid()).pw_name
    # rootless podman 4.3 cannot use --subuidname at all; rootless maps your own ranges (= nomap)
    by_name = rl("run", "--rm", f"--subuidname={name}", rl.img, "sh", "-c", show, check=True)
    nomap = rl("run", "--rm", "--userns=nomap", rl.img, "sh", "-c", show, check=True)
    assert by_name.stdout == nomap.stdout
    other = other_user()
    if other is not None:  # another user's ranges are not ours to map
        cp = rl("run", "--rm", f"--subuidname={other}", rl.img, "true")
        assert cp.returncode == 125 and len(cp.stderr.splitlines()) == 1
        assert cp.stderr.startswith(f"Error: --subuidname {other}: its range ")


def test_image_files_keep_their_owners_and_no_layer_is_touched(rl):
    """The image's files show their owners (0, 1000, 65534) in every mode as without one, and the
    store's layers are the same files afterwards: no copy, no chown (only the containers' dirs)."""
    store = os.path.join(rl.data_dir, "rootless")
    snap = [
        "unshare", "find", store, "-path", os.path.join(store, "containers"), "-prune", "-o",
        "-printf", "%p %i %U %G %m %s %T@\n",
    ]  # fmt: skip
    before = rl(*snap, check=True).stdout
    look = "stat -c '%u:%g %n' / /bin /etc /home/user; ls -lnR /bin /home /usr /var 2>&1 | md5sum"
    plain = rl("run", "--rm", rl.img, "sh", "-c", look, check=True).stdout
    assert "1000:1000 /home/user" in plain and "0:0 /bin" in plain
    for mode in ("keep-id", "keep-id:uid=5,gid=6", "nomap", "auto"):
        kept = rl("run", "--rm", f"--userns={mode}", rl.img, "sh", "-c", look, check=True).stdout
        assert kept == plain, mode
    after = rl(*snap, check=True).stdout
    assert after == before


def test_files_written_in_the_root_keep_the_container_ids_on_disk(rl):
    """A file the keep-id user creates in the root filesystem is stored with its container uid in
    the store's mapping (container uid N is on-disk id N seen from `rootless unshare`), so that
    commit, diff and a later default run see the same owner."""
    _, uid, gid = me()
    rl(
        "run",
        "--name",
        "kw",
        "--userns=keep-id",
        rl.img,
        "sh",
        "-c",
        "echo x > /tmp/made",
        check=True,
    )
    cid = rl("inspect", "--format", "{{.Id}}", "kw", check=True).stdout.strip()
    upper = os.path.join(rl.data_dir, "rootless", "containers", cid, "upper", "tmp", "made")
    st = rl("unshare", "stat", "-c", "%u:%g", upper, check=True).stdout.strip()
    assert st == f"{uid}:{gid}"
    rl("rm", "kw", check=True)


def test_exec_runs_as_the_keep_id_user(rl):
    _, uid, gid = me()
    rl("run", "-d", "--name", "ke", "--userns=keep-id", rl.img, "sleep", "60", check=True)
    try:
        assert rl("exec", "ke", "id", "-u", check=True).stdout.strip() == str(uid)
        assert rl("exec", "-u", "0", "ke", "id", "-u", check=True).stdout.strip() == "0"
        maps = rl("exec", "ke", "cat", "/proc/self/uid_map", check=True).stdout.split()
        assert maps[:3] == ["0", "1", str(uid)]
    finally:
        rl("rm", "-f", "-t", "0", "ke")


def test_create_then_start_and_inspect_as_podman(rl, pm):
    _, uid, _ = me()
    fmt = "{{json .HostConfig.UsernsMode}} {{json .HostConfig.IDMappings}}"
    for args in (["--userns=keep-id"], [], ["--userns=host"]):
        rl("create", "--name", "ki", *args, rl.img, "id", "-u", check=True)
        pm("create", "--name", "ki", *args, rl.img, "id", "-u", check=True)
        ours = rl("inspect", "--format", fmt, "ki", check=True).stdout
        theirs = pm("inspect", "--format", fmt, "ki", check=True).stdout
        assert ours == theirs, args
        if args == ["--userns=keep-id"]:
            assert json.loads(ours.split(" ", 1)[1])["UidMap"][1] == f"{uid}:0:1"
            assert rl("start", "-a", "ki", check=True).stdout.strip() == str(uid)
            # the kernel overlay cannot shift ids without a copy: this container uses the fuse one
            assert rl("inspect", "--format", "{{.Driver}}", "ki", check=True).stdout.strip() == (
                "fuse-overlay"
            )
        rl("rm", "ki", check=True)
        pm("rm", "ki", check=True)


def test_uidmap_that_maps_the_user(rl, pm):
    _, uid, _ = me()
    n = int(rl("unshare", "cat", "/proc/self/uid_map", check=True).stdout.split()[-1])  # subuids
    maps = ["--uidmap", "0:1:10", "--uidmap", "10:0:1", "--uidmap", f"11:11:{n - 10}"]
    show = "cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /bin /home/user"
    ours = rl("run", "--rm", *maps, rl.img, "sh", "-c", show, check=True).stdout
    theirs = pm("run", "--rm", *maps, rl.img, "sh", "-c", show, check=True).stdout
    assert ours == theirs
    assert ours.splitlines()[1].split() == ["10", "0", "1"]


@pytest.mark.parametrize(
    "args",
    [
        ["--userns=bogus"],
        ["--userns=keep-id:foo=1"],
        ["--userns=keep-id:uid=x"],
        ["--userns=keep-id:gid=-1"],
        ["--userns=nomap:x"],
        ["--uidmap=x"],
        ["--uidmap=0:1"],
        ["--uidmap=0:1:0"],
        ["--gidmap=1:2:3:4"],
        ["--userns=keep-id", "--uidmap=0:1:5"],
        ["--userns=private"],
    ],
)
def test_bad_values_fail_as_in_podman(rl, pm, args):
    ours = rl("run", "--rm", *args, rl.img, "true")
    theirs = pm("run", "--rm", *args, rl.img, "true")
    assert (ours.returncode, theirs.returncode) == (125, 125)
    assert errors(ours) == errors(theirs) and len(errors(ours)) == 1


def test_unsupported_modes_are_refused_with_one_line(rl):
    rl("run", "-d", "--name", "kn", rl.img, "sleep", "60", check=True)
    try:
        for args in (
            ["--userns=keep-id", "--pod=new:kp"],
            ["--userns=nomap", "--pod=new:kp"],
            ["--uidmap=0:1:5", "--subuidname=x"],
            ["--userns=keep-id", "--network=container:kn"],
            ["--userns=ns:/proc/1/ns/user"],
            ["--userns=container:kn"],
        ):
            cp = rl("run", "--rm", *args, rl.img, "true")
            assert cp.returncode == 125, args
            assert len(cp.stderr.splitlines()) == 1 and cp.stderr.startswith("Error: "), cp.stderr
        cp = rl("--storage-driver", "vfs", "run", "--rm", "--userns=keep-id", rl.img, "true")
        assert cp.returncode == 125 and cp.stderr.startswith("Error: ") and "vfs" in cp.stderr
        assert len(cp.stderr.splitlines()) == 1
        assert "kp" not in rl("pod", "ps", "--format", "{{.Name}}").stdout  # nothing was made
    finally:
        rl("rm", "-f", "-t", "0", "kn")


def test_overlay_daemon_shifts_ids_at_its_boundary(rl, tmp_path):
    """The fuse overlay alone (fuse-overlayfs's uidmapping=/gidmapping=, as the runtime mounts it
    for a nested namespace): on-disk id d shows as the id container id d maps to; a chown target is
    stored as the container id it stands for; an id outside the map shows as the overflow id."""
    d = tmp_path / "ov"
    for sub in ("l", "u", "w", "m"):
        (d / sub).mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    script = f"""set -e
cd {d}
touch l/f l/far && chown 5:6 l/f && chown 500:500 l/far
{sys.executable} -m rootless.fuse_overlay \
  -o lowerdir=l,upperdir=u,workdir=w,uidmapping=0:10:100,gidmapping=0:20:100 m
stat -c %u:%g m/f m/far
chown 12:23 m/f
stat -c %u:%g m/f u/f
umount m
"""
    out = rl("unshare", "unshare", "-m", "sh", "-c", script, check=True).stdout.split()
    assert out == ["15:26", "65534:65534", "12:23", "2:3"]


def test_no_process_left(rl):
    """Every container above is gone, and so are its processes (the fuse daemon too)."""
    rl("rm", "-af", "-t", "0")
    out = subprocess.run(["pgrep", "-u", str(os.getuid()), "-f", rl.data_dir],
                         capture_output=True, text=True).stdout  # fmt: skip
    assert out == ""
