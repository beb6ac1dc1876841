"""run/create flags beside podman 4.3: --pull (always, missing, never, newer), --replace, --cidfile
and --env-host, which act before the container is made, --shm-size, --group-add, --expose, --tz and
run --rmi, with
podman's errors (one line, exit 125 or 126) and nothing made when they refuse."""

import pytest
from conftest import Rootless
from support import stores
from support.net import http_get
from support.wait import poll

NONE = ("--network", "none")


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(
        Rootless, tmp_path_factory, registry, busybox_ref, "runflags-create"
    )


@pytest.fixture
def pm(podman, registry, rl):
    return stores.podman_with(podman, registry, rl.img)


def same_refusal(rl, pm, *args):
    mine, theirs = rl(*args), pm(*args)
    assert mine.returncode == theirs.returncode == 125, (mine.stderr, theirs.stderr)
    assert mine.stderr == theirs.stderr, args
    assert rl("ps", "-aq").stdout == ""


def test_pull_policies(rl, pm, registry):
    same_refusal(rl, pm, "run", "--rm", "--pull", "bogus", *NONE, rl.img, "true")
    missing = f"{registry.host}/nosuch:latest"
    same_refusal(rl, pm, "run", "--rm", "--pull", "never", *NONE, missing, "true")
    same_refusal(rl, pm, "create", "--pull=never", *NONE, missing, "true")
    for policy in ("always", "missing", "never", "newer", "ALWAYS"):
        cp = rl("run", "--rm", "--pull", policy, *NONE, rl.img, "echo", policy)
        assert (cp.returncode, cp.stdout) == (0, policy + "\n"), cp.stderr
    # always asks the registry: an image that is gone there fails, as podman's
    registry_only = f"{registry.host}/busybox:gone"
    rl("tag", rl.img, registry_only, check=True)
    cp = rl("run", "--rm", "--pull", "always", *NONE, registry_only, "true")
    assert cp.returncode == 125 and cp.stderr.splitlines()[-1].startswith("Error: ")
    assert "manifest unknown" in cp.stderr
    assert rl("run", "--rm", "--pull", "never", *NONE, registry_only, "true").returncode == 0


def test_cidfile(rl, pm, tmp_path):
    path = tmp_path / "cid"
    cid = rl("run", "-d", "--cidfile", str(path), *NONE, rl.img, "sleep", "60", check=True)
    assert path.read_text() == cid.stdout.strip()
    rl("rm", "-f", "-t", "0", cid.stdout.strip(), check=True)
    fg = tmp_path / "fg"
    rl("run", "--rm", "--cidfile", str(fg), *NONE, rl.img, "true", check=True)
    assert len(fg.read_text()) == 64
    created = tmp_path / "created"
    out = rl("create", "--cidfile", str(created), *NONE, rl.img, "true", check=True).stdout
    assert created.read_text() == out.strip()
    rl("rm", out.strip(), check=True)
    same_refusal(rl, pm, "create", "--cidfile", str(created), *NONE, rl.img, "true")


def test_replace(rl, pm):
    same_refusal(rl, pm, "run", "--replace", *NONE, rl.img, "true")
    first = rl("run", "-d", "--name", "r", *NONE, rl.img, "sleep", "60", check=True).stdout
    second = rl("run", "-d", "--replace", "--name", "r", *NONE, rl.img, "sleep", "60", check=True)
    assert second.stdout != first
    assert rl("ps", "-a", "--format", "{{.Names}} {{.ID}}").stdout.split() == [
        "r",
        second.stdout[:12],
    ]
    rl("create", "--replace", "--name", "r", *NONE, rl.img, "echo", "replaced", check=True)
    assert rl("start", "-a", "r").stdout == "replaced\n"
    # --replace with a new name just creates
    rl("create", "--replace", "--name", "r2", *NONE, rl.img, "true", check=True)
    rl("rm", "-f", "-t", "0", "r", "r2", check=True)


def test_env_host(rl):
    env = {"ROOTLESS_TEST_MARK": "from-host", "LANG": "C.UTF-8"}
    script = 'echo "$ROOTLESS_TEST_MARK $LANG $OVERRIDE"'
    cp = rl("run", "--rm", "--env-host", "-e", "OVERRIDE=mine", *NONE, rl.img, "sh", "-c", script,
            env=env, check=True)  # fmt: skip
    assert cp.stdout == "from-host C.UTF-8 mine\n"
    cp = rl("run", "--rm", *NONE, rl.img, "sh", "-c", script, env=env, check=True)
    assert cp.stdout == "  \n"  # without it nothing of the caller's environment crosses


def test_shm_size_as_podman(rl, pm):
    df = ["df", "-k", "/dev/shm"]
    for size, kib in (("1m", "1024"), ("1g", "1048576"), ("100k", "100")):
        for tool in (rl, pm):
            out = tool("run", "--rm", "--shm-size", size, *NONE, rl.img, *df, check=True).stdout
            assert out.splitlines()[1].split()[1] == kib, (tool, out)
    default = [tool("run", "--rm", *NONE, rl.img, *df, check=True).stdout.splitlines()[1].split()[1]
               for tool in (rl, pm)]  # fmt: skip
    assert default[0] == default[1]
    for tool in (rl, pm):
        cid = tool("create", "--shm-size", "10m", *NONE, rl.img, "true", check=True).stdout.strip()
        assert tool("inspect", "-f", "{{.HostConfig.ShmSize}}", cid).stdout == "10485760\n"
        tool("rm", cid, check=True)
    same_refusal(rl, pm, "run", "--rm", "--shm-size", "bogus", *NONE, rl.img, "true")


def test_group_add_as_podman(rl, pm):
    for args in (["--group-add", "12"], ["--user", "1000", "--group-add", "12", "--group-add", "staff"],
                 ["--group-add", "keep-groups"]):  # fmt: skip
        mine = rl("run", "--rm", *NONE, *args, rl.img, "id", "-G", check=True).stdout
        theirs = pm("run", "--rm", *NONE, *args, rl.img, "id", "-G", check=True).stdout
        assert sorted(mine.split()) == sorted(theirs.split()), args
    same_refusal(rl, pm, "run", "--rm", "--group-add", "keep-groups", "--group-add", "1", *NONE,
                 rl.img, "true")  # fmt: skip
    mine = rl("run", "--rm", "--group-add", "nosuch", *NONE, rl.img, "true")
    theirs = pm("run", "--rm", "--group-add", "nosuch", *NONE, rl.img, "true")
    assert mine.returncode == theirs.returncode == 126
    assert "Unable to find group nosuch: no matching entries in group file" in mine.stderr
    assert mine.stderr.startswith("Error: ") and mine.stderr.count("\n") == 1
    cid = rl(
        "create", "--group-add", "12", "--group-add", "staff", *NONE, rl.img, "true", check=True
    )
    assert (
        rl("inspect", "-f", "{{.HostConfig.GroupAdd}}", cid.stdout.strip()).stdout == "[12 staff]\n"
    )
    rl("rm", cid.stdout.strip(), check=True)


def test_rmi(tmp_path, registry, busybox_ref):
    """run --rmi: the image goes once the container has exited (implying --rm), unless another
    container uses it; with -d podman 4.3 leaves the image, and so does rootless."""
    store = Rootless(str(tmp_path / "rmi"))
    store.trust(registry)
    try:
        store("pull", "-q", busybox_ref, check=True)
        keeper = store("create", *NONE, busybox_ref, "true", check=True).stdout.strip()
        cp = store("run", "--rmi", *NONE, busybox_ref, "sh", "-c", "exit 3")
        assert cp.returncode == 3
        assert store("images", "-q").stdout.strip()  # the other container still uses it
        store("rm", keeper, check=True)
        cp = store("run", "--rmi", *NONE, busybox_ref, "echo", "last")
        assert (cp.returncode, cp.stdout) == (0, "last\n")
        assert store("images", "-q").stdout == "" and store("ps", "-aq").stdout == ""
        store("pull", "-q", busybox_ref, check=True)
        cid = store("run", "-d", "--rmi", *NONE, busybox_ref, "true", check=True).stdout.strip()
        store("wait", cid)
        assert store("images", "-q").stdout.strip()
    finally:
        store("rm", "-af", "-t", "0", timeout=300)
        store.cleanup()


def test_expose_with_publish_all(rl, pm):
    args = ["-P", "--expose", "8080", "--expose", "9000-9001/udp"]
    # podman's side is created, not run (its rootlessport once hung a loaded CI machine for
    # minutes): podman 4.3 binds -P's ports at create and shows them in inspect
    bindings = "{{range $p, $v := .HostConfig.PortBindings}}{{$p}} {{end}}"
    theirs = pm("create", *args, rl.img, "sleep", "60", check=True).stdout.strip()
    theirs_ports = pm("inspect", "-f", bindings, theirs, check=True).stdout.split()
    pm("rm", "-f", "-t", "0", theirs)
    mine = rl("run", "-d", *args, rl.img, "httpd", "-f", "-p", "8080", "-h", "/etc", check=True)
    try:
        out = rl("port", mine.stdout.strip()).stdout
        mine_ports = sorted(line.split(" -> ")[0] for line in out.splitlines())
        assert mine_ports == sorted(theirs_ports)  # the image's own 80/tcp too
        assert {"8080/tcp", "9000/udp", "9001/udp"} <= set(mine_ports)  # fmt: skip
        line = next(x for x in out.splitlines() if "8080" in x)
        host_port = int(line.rsplit(":", 1)[1])
        assert "root:" in poll(lambda: http_get(f"http://127.0.0.1:{host_port}/passwd"), timeout=30)
    finally:
        rl("rm", "-f", "-t", "0", mine.stdout.strip())
    for bad in ("bogus", "0"):
        same_refusal(rl, pm, "create", "--expose", bad, *NONE, rl.img, "true")
    # podman checks the protocol where there is a network to publish on
    same_refusal(rl, pm, "create", "--expose", "80/xyz", rl.img, "true")


def test_tz_as_podman(rl, pm):
    for tz in ("Asia/Tokyo", "America/New_York", "local"):
        mine = rl("run", "--rm", "--tz", tz, *NONE, rl.img, "date", "+%Z", check=True).stdout
        theirs = pm("run", "--rm", "--tz", tz, *NONE, rl.img, "date", "+%Z", check=True).stdout
        assert mine == theirs, tz
    assert rl("run", "--rm", "--tz", "Asia/Tokyo", *NONE, rl.img, "date", "+%Z").stdout == "JST\n"
    same_refusal(rl, pm, "run", "--rm", "--tz", "Bogus/Zone", *NONE, rl.img, "true")


def test_platform_as_podman(rl, pm):
    """--platform: the host's runs at once; another makes the local image count as missing, and a
    registry that has nothing else gives the same image, with podman's warning."""
    assert rl("run", "--rm", "--platform", "linux/amd64", *NONE, rl.img, "echo", "ran").stderr == ""
    for platform in ("linux/arm64", "bogus", "linux/amd64/v2"):
        mine = rl("run", "--rm", "--platform", platform, *NONE, rl.img, "echo", "ran")
        theirs = pm("run", "--rm", "--platform", platform, *NONE, rl.img, "echo", "ran")
        assert mine.returncode == theirs.returncode == 0 and mine.stdout == theirs.stdout == "ran\n"
        warning = [line for line in theirs.stderr.splitlines() if line.startswith("WARNING")]
        assert warning and warning[0] in mine.stderr.splitlines(), (platform, mine.stderr)
    same_refusal(rl, pm, "run", "--rm", "--platform", "linux/arm64", "--pull", "never", *NONE,
                 rl.img, "true")  # fmt: skip
