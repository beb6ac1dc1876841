"""run/create flags beside podman 4.3: --sysctl (the IPC and network namespaces' own parameters,
written before the command starts), --read-only-tmpfs, --pidfile and --timeout, with podman's
errors (one line; 125 before anything is made, 126/127 where runc fails the start)."""

import time

import pytest
from conftest import Rootless
from support import stores

NONE = ("--network", "none")


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(
        Rootless, tmp_path_factory, registry, busybox_ref, "runflags-sysctl"
    )


@pytest.fixture
def pm(podman, registry, rl):
    return stores.podman_with(podman, registry, rl.img)


def same(rl, pm, *args):
    """Both runs' exit code, output and error output, which must be podman's."""
    mine, theirs = rl("run", "--rm", *args), pm("run", "--rm", *args)
    assert (mine.returncode, mine.stdout) == (theirs.returncode, theirs.stdout), (args, mine.stderr)
    return mine, theirs


def test_sysctl_as_podman(rl, pm):
    for name, value, path in (
        ("net.ipv4.ip_forward", "1", "net/ipv4/ip_forward"),
        ("net.ipv4.ping_group_range", "0 0", "net/ipv4/ping_group_range"),
        ("kernel.shmmax", "65536", "kernel/shmmax"),
        ("fs.mqueue.msg_max", "20", "fs/mqueue/msg_max"),
    ):
        mine, _ = same(
            rl, pm, "--sysctl", f"{name}={value}", *NONE, rl.img, "cat", f"/proc/sys/{path}"
        )
        assert mine.stdout.split() == value.split(), name
    # the container's own namespaces: the host's value is untouched
    with open("/proc/sys/kernel/shmmax") as f:
        assert f.read().strip() != "65536"
    # with the default network (slirp4netns) too, and still read-only for the command
    out = rl("run", "--rm", "--sysctl", "net.ipv4.ip_default_ttl=42", rl.img, "sh", "-c",
             "cat /proc/sys/net/ipv4/ip_default_ttl; echo 1 > /proc/sys/net/ipv4/ip_default_ttl")  # fmt: skip
    assert out.stdout == "42\n" and out.returncode != 0


def test_sysctl_errors_as_podman(rl, pm):
    cases = [
        ("--sysctl", "kernel.hostname=x", *NONE),
        ("--sysctl", "bogus", *NONE),
        ("--sysctl", "net.ipv4.ip_forward = 1", *NONE),
        ("--sysctl", "net.ipv4.ip_forward=1", "--network", "host"),
    ]
    for args in cases:
        mine, theirs = (
            rl("run", "--rm", *args, rl.img, "true"),
            pm("run", "--rm", *args, rl.img, "true"),
        )
        assert mine.returncode == theirs.returncode == 125, args
        assert mine.stderr == theirs.stderr, args
    # refused by the kernel when the container starts: runc's words and podman's codes
    for args, code, words in (
        (("--sysctl", "net.ipv4.nosuch=1"), 127, "open /proc/sys/net/ipv4/nosuch: no such file or directory"),
        (("--sysctl", "net.ipv4.ip_forward=bogus"), 126, "write /proc/sys/net/ipv4/ip_forward: invalid argument"),
    ):  # fmt: skip
        mine, theirs = (
            rl("run", "--rm", *args, *NONE, rl.img, "true"),
            pm("run", "--rm", *args, *NONE, rl.img, "true"),
        )
        assert mine.returncode == theirs.returncode == code, (args, mine.stderr)
        assert words in theirs.stderr and words in mine.stderr
        assert mine.stderr.startswith("Error: ") and mine.stderr.count("\n") == 1
    assert rl("ps", "-aq").stdout == ""


def test_sysctl_kept_by_create_and_start(rl):
    cid = rl("create", "--sysctl", "kernel.msgmax=4096", *NONE, rl.img, "cat", "/proc/sys/kernel/msgmax",
             check=True).stdout.strip()  # fmt: skip
    try:
        assert rl("start", "-a", cid).stdout == "4096\n"
    finally:
        rl("rm", "-f", "-t", "0", cid)


def test_read_only_tmpfs_as_podman(rl, pm):
    probe = [
        "sh",
        "-c",
        "touch /tmp/x 2>/dev/null && echo writable || echo read-only",
    ]
    for args, expect in (
        (["--read-only"], "writable"),
        (["--read-only", "--read-only-tmpfs"], "writable"),
        (["--read-only", "--read-only-tmpfs=true"], "writable"),
        (["--read-only", "--read-only-tmpfs=false"], "read-only"),
        (["--read-only-tmpfs=false"], "writable"),  # without --read-only it changes nothing
    ):
        mine, _ = same(rl, pm, *args, *NONE, rl.img, *probe)
        assert mine.stdout == expect + "\n", args
    mine = rl("run", "--rm", "--read-only-tmpfs=bogus", *NONE, rl.img, "true")
    theirs = pm("run", "--rm", "--read-only-tmpfs=bogus", *NONE, rl.img, "true")
    assert mine.returncode == theirs.returncode == 125
    assert mine.stderr == theirs.stderr.splitlines(keepends=True)[0]  # podman adds a "See" line


def test_pidfile(rl, tmp_path):
    path = tmp_path / "ctr.pid"
    cid = rl(
        "run", "-d", "--pidfile", str(path), *NONE, rl.img, "sleep", "60", check=True
    ).stdout.strip()
    try:
        pid = rl("inspect", "-f", "{{.State.Pid}} {{.PidFile}}", cid, check=True).stdout.split()
        assert path.read_text() == pid[0] and pid[1] == str(path)
        with open(f"/proc/{pid[0]}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] == b"sleep"
    finally:
        rl("rm", "-f", "-t", "0", cid)
    assert path.exists()  # podman leaves it too
    bad = rl(
        "run", "--rm", "--pidfile", str(tmp_path / "nodir" / "pid"), *NONE, rl.img, "echo", "ran"
    )
    assert bad.returncode == 0 and bad.stdout == "ran\n" and "WARNING: --pidfile" in bad.stderr


def test_timeout_as_podman(rl, pm):
    start = time.monotonic()
    mine = rl("run", "--name", "timed", "--timeout", "2", *NONE, rl.img, "sleep", "60")
    assert time.monotonic() - start < 30
    theirs = pm("run", "--name", "timed", "--timeout", "2", *NONE, rl.img, "sleep", "60")
    assert mine.returncode == theirs.returncode == 255
    fmt = "{{.State.ExitCode}} {{.Config.Timeout}}"
    assert (
        rl("inspect", "-f", fmt, "timed").stdout
        == pm("inspect", "-f", fmt, "timed").stdout
        == "-1 2\n"
    )
    assert rl("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (-1)")
    rl("rm", "timed", check=True)
    pm("rm", "timed", check=True)
    # detached, and a command that ends first keeps its own code
    cid = rl("run", "-d", "--timeout", "1", *NONE, rl.img, "sleep", "60", check=True).stdout.strip()
    assert rl("wait", cid).stdout == "-1\n"
    rl("rm", cid, check=True)
    assert rl("run", "--rm", "--timeout", "30", *NONE, rl.img, "sh", "-c", "exit 3").returncode == 3
    for bad in ("bogus", "-1"):
        mine = rl("run", "--rm", "--timeout", bad, *NONE, rl.img, "true")
        theirs = pm("run", "--rm", "--timeout", bad, *NONE, rl.img, "true")
        assert mine.returncode == theirs.returncode == 125
        assert mine.stderr == theirs.stderr.splitlines(keepends=True)[0]
    assert rl("ps", "-aq").stdout == ""
