"""`attach` beside podman 4.3: a running container's output from now on and its exit code, stdin
for a container made with -i (EOF closes it), the detach keys (the container runs on), and the
refusal of a container that does not run."""

import subprocess

import pytest
from conftest import Rootless
from support import stores
from support.wait import poll

NONE = ("--network", "none")


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    yield from stores.busybox_store(Rootless, tmp_path_factory, registry, busybox_ref, "attach")


@pytest.fixture
def pm(podman, registry, rl):
    return stores.podman_with(podman, registry, rl.img)


def attach(tool, argv0, cid, data: bytes | None = None, *flags):
    """Start `attach` (stdin a pipe, fed `data` then closed)."""
    p = subprocess.Popen([*argv0, "attach", *flags, cid], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool.env)  # fmt: skip
    if data is not None:
        p.stdin.write(data)
        p.stdin.flush()
    return p


def test_output_and_exit_code(rl):
    ticking = "while [ ! -e /tmp/stop ]; do echo tick; sleep 0.2; done; echo bye >&2; exit 4"
    cid = rl("run", "-d", *NONE, rl.img, "sh", "-c", ticking, check=True).stdout.strip()
    try:
        p = attach(rl, rl.argv0, cid, None, "--no-stdin")
        assert p.stdout.readline() == b"tick\n"  # attached: its output from now on
        rl("exec", cid, "touch", "/tmp/stop", check=True)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 4 and set(out.split()) <= {b"tick"} and err == b"bye\n"
    finally:
        rl("rm", "-f", "-t", "0", cid)


def test_stdin_of_an_interactive_container(rl):
    cid = rl("run", "-d", "-i", *NONE, rl.img, "sh", "-c", "read x; echo got $x; exit 5",
             check=True).stdout.strip()  # fmt: skip
    p = attach(rl, rl.argv0, cid)
    out, _ = p.communicate(b"hello\n", timeout=60)
    assert (p.returncode, out) == (5, b"got hello\n")
    rl("rm", cid, check=True)


def test_detach_keys_leave_it_running(rl):
    cid = rl("run", "-d", "-i", *NONE, rl.img, "cat", check=True).stdout.strip()
    try:
        p = attach(rl, rl.argv0, cid, b"abc\n")
        poll(lambda: "abc" in rl("logs", cid).stdout, timeout=30)
        p.stdin.write(b"\x10\x11")  # ctrl-p, ctrl-q
        p.stdin.flush()
        assert p.wait(timeout=30) == 0
        assert rl("inspect", "-f", "{{.State.Status}}", cid).stdout == "running\n"
        p = attach(rl, rl.argv0, cid, b"xyz\n", "--detach-keys", "ctrl-x")
        poll(lambda: "xyz" in rl("logs", cid).stdout, timeout=30)
        p.stdin.write(b"\x18")
        p.stdin.flush()
        assert p.wait(timeout=30) == 0
    finally:
        rl("rm", "-f", "-t", "0", cid)


def test_refusals(rl, pm):
    for tool in (rl, pm):
        cid = tool("create", *NONE, rl.img, "true", check=True).stdout.strip()
        out = tool("attach", cid)
        assert out.returncode == 125 and "you can only attach to running containers" in out.stderr
        tool("rm", cid, check=True)
    bad = rl("attach", "--detach-keys", "ctrl-1", "nosuch")
    assert bad.returncode == 125 and bad.stderr == "Error: invalid detach keys: ctrl-1\n"
    assert rl("attach", "nosuch").returncode == 125
