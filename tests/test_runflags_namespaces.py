"""--uts, --ipc, --pid and --cgroupns beside podman 4.3: private (a namespace of the container's own)
or host (the caller's: the test process's own namespaces are the host's), --ipc none (no /dev/shm),
and podman's errors; another container's namespace is refused with the way (a pod)."""

import os

import pytest
from conftest import Rootless
from support import stores

NONE = ("--network", "none")
LINKS = "for n in uts ipc pid cgroup; do readlink /proc/self/ns/$n; done"


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(
        Rootless, tmp_path_factory, registry, busybox_ref, "runflags-ns"
    )


@pytest.fixture
def pm(podman, registry, rl):
    return stores.podman_with(podman, registry, rl.img)


def host_ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def namespaces(tool, img, *args) -> dict[str, bool]:
    """Which of uts, ipc, pid and cgroup the container shares with the host."""
    links = tool("run", "--rm", *NONE, *args, img, "sh", "-c", LINKS, check=True).stdout.split()
    return {
        k: link == host_ns(k)
        for k, link in zip(("uts", "ipc", "pid", "cgroup"), links, strict=True)
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--uts", "host"],
        ["--uts", "private"],
        ["--ipc", "host"],
        ["--ipc", "private"],
        ["--ipc", "shareable"],
        ["--pid", "host"],
        ["--pid", "private"],
        ["--cgroupns", "host"],
        ["--cgroupns", "private"],
    ],
    ids=lambda a: "-".join(a).lstrip("-"),
)
def test_namespaces_as_podman(rl, pm, args):
    mine = namespaces(rl, rl.img, *args)
    if args == ["--ipc", "host"] and not os.path.ismount("/dev/mqueue"):
        # podman binds the host's /dev/mqueue and fails where the host has none mounted; rootless
        # leaves the container's empty and runs
        out = pm("run", "--rm", *NONE, *args, rl.img, "true")
        assert out.returncode == 125 and "statfs /dev/mqueue" in out.stderr
        theirs = {**mine, "ipc": True}
    else:
        theirs = namespaces(pm, rl.img, *args)
    flag, mode = args[0][2:], args[1]
    kind = "cgroup" if flag == "cgroupns" else flag
    assert mine[kind] == theirs[kind] == (mode == "host"), (mine, theirs)
    # the other namespaces stay as without the flag (podman's cgroupns default differs per host)
    for other in ("uts", "ipc", "pid"):
        if other != kind:
            assert mine[other] is theirs[other] is False, other


def test_what_a_host_namespace_shows(rl, pm):
    # --uts host: the host's name (and -h is refused as podman refuses it)
    host = os.uname().nodename
    for tool in (rl, pm):
        assert tool("run", "--rm", "--uts", "host", *NONE, rl.img, "hostname").stdout == host + "\n"
    # --pid host: the host's processes, the command not pid 1
    me = str(os.getpid())
    out = rl(
        "run",
        "--rm",
        "--pid",
        "host",
        *NONE,
        rl.img,
        "sh",
        "-c",
        f"echo $$; test -d /proc/{me} && echo seen",
    )
    pid, seen = out.stdout.split()
    assert pid != "1" and seen == "seen"
    # --ipc none: no /dev/shm; --ipc host: the host's /dev/shm (a file made there shows)
    for tool in (rl, pm):
        assert (
            tool("run", "--rm", "--ipc", "none", *NONE, rl.img, "test", "-e", "/dev/shm").returncode
            == 1
        )
    name = f"rootless-test-{os.getpid()}"
    try:
        out = rl("run", "--rm", "--ipc", "host", *NONE, rl.img, "ls", "/dev/shm", check=True)
        assert name not in out.stdout
        with open(f"/dev/shm/{name}", "w"):
            pass
        assert name in rl("run", "--rm", "--ipc", "host", *NONE, rl.img, "ls", "/dev/shm").stdout
    finally:
        os.unlink(f"/dev/shm/{name}")


def test_exec_into_host_pid_container(rl):
    cid = rl(
        "run", "-d", "--pid", "host", "--uts", "host", *NONE, rl.img, "sleep", "60", check=True
    ).stdout.strip()
    try:
        out = rl(
            "exec", cid, "sh", "-c", "readlink /proc/self/ns/pid; hostname", check=True
        ).stdout.split()
        assert out == [host_ns("pid"), os.uname().nodename]
    finally:
        rl("rm", "-f", "-t", "0", cid)


def test_errors_as_podman(rl, pm):
    for args in (
        ["--uts", "bogus"],
        ["--ipc", "bogus"],
        ["--pid", "bogus"],
        ["--cgroupns", "bogus"],
        ["--uts", "host", "-h", "foo"],
    ):
        mine = rl("run", "--rm", *args, *NONE, rl.img, "true")
        theirs = pm("run", "--rm", *args, *NONE, rl.img, "true")
        assert mine.returncode == theirs.returncode == 125, args
        assert mine.stderr == theirs.stderr, args
    # podman looks the container up; rootless cannot join it and says what to do instead
    out = rl("run", "--rm", "--pid", "container:other", *NONE, rl.img, "true")
    assert out.returncode == 125 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("Error: --pid container:other:") and "--pod" in out.stderr
    assert rl("ps", "-aq").stdout == ""
