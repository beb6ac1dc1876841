"""The escape suite: from inside a default `rootless run` container, none of the classic break-outs
reaches the host. The attempts are a static C program (tests/support/escape/escape.c) built with
gcc -static and bind-mounted read-only into the container."""

import os
import select
import subprocess
import time

import pytest
from conftest import Rootless
from support.procs import overlay_daemons

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "support", "escape", "escape.c")


@pytest.fixture(scope="module")
def esc(tmp_path_factory, registry, busybox_ref):
    d = tmp_path_factory.mktemp("escape")
    os.chmod(d, 0o755)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "escape"), SRC], check=True)
    r = Rootless(str(tmp_path_factory.mktemp("escape-store")))
    r.trust(registry)
    r("pull", busybox_ref, check=True)
    r.img = busybox_ref
    r.bindir = str(d)
    yield r
    r.cleanup()


def run(esc, *args, driver="overlay", **kw):
    return esc(
        "--storage-driver", driver, "run", "--rm", "--network", "none",
        "-v", f"{esc.bindir}:/esc:ro", *args, **kw,
    )  # fmt: skip


def test_chroot_escape_still_sees_the_container_root(esc):
    cp = run(esc, esc.img, "sh", "-c", "cd /tmp && /esc/escape chroot")
    assert cp.returncode == 0, cp.stderr
    entries = set(cp.stdout.split())
    assert "CHROOT-FAILED" not in entries  # the attempt really ran (CAP_SYS_CHROOT is a default)
    assert {"bin", "etc", "opt", "esc", "proc"} <= entries  # the container's root ...
    # ... and nothing that only the host has at its root (this host has /work, /boot, /lib64 ...)
    host_only = set(os.listdir("/")) - {"bin", "etc", "opt", "proc", "sys", "dev", "run", "tmp", "usr",
                                        "var", "home", "root", "sbin", "mnt"}  # fmt: skip
    assert host_only and not (host_only & entries), entries
    # ... with the image's files, not the host's
    cp = run(esc, esc.img, "sh", "-c", "cd /tmp && /esc/escape chroot >/dev/null; cat /opt/keep/k")
    assert cp.stdout == "modified in layer 2\n"


def test_write_to_masked_and_readonly_paths_fails(esc):
    script = (
        "for p in /proc/acpi/x /sys/firmware/x /proc/sys/kernel/hostname /proc/sys/vm/drop_caches /sys/kernel/x; do "
        "  (echo 1 > $p) 2>/dev/null && echo WROTE $p || echo denied; done; "
        "umount /proc/acpi 2>/dev/null && echo UNMASKED || echo denied; "
        "cat /proc/keys /proc/timer_list 2>/dev/null | wc -c"
    )
    cp = run(esc, esc.img, "sh", "-c", script)
    assert cp.stdout.split() == ["denied"] * 6 + ["0"], cp.stdout


def test_mount_fails(esc):
    for argv in (
        ["mount", "-t", "tmpfs", "none", "/mnt"],
        ["mount", "-t", "proc", "proc", "/mnt"],
        ["mount", "--bind", "/", "/mnt"],
        ["unshare", "-m", "true"],
    ):  # (a nested user namespace, `unshare -U -r`, is allowed, as podman's profile allows it)
        cp = run(esc, esc.img, *argv)
        assert cp.returncode != 0, argv
    cp = run(esc, esc.img, "grep", "-c", " /mnt ", "/proc/mounts")
    assert cp.stdout.strip() == "0"


def test_kill_and_ptrace_of_host_processes_fail(esc):
    victim = subprocess.Popen(["sleep", "300"])
    p = subprocess.Popen(
        [*esc.argv0, "--storage-driver", "fuse-overlay", "run", "--rm", "-i", "--network", "none",
         "-v", f"{esc.bindir}:/esc:ro", esc.img, "sh", "-c",
         "echo ready; read pids; /esc/escape ptrace $pids; /esc/escape kill $pids; echo done"],
        env=esc.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert select.select([p.stdout], [], [], 30)[0], "the container did not start"
        assert p.stdout.readline() == b"ready\n"
        daemons = overlay_daemons(esc.base)
        assert daemons, "no fuse-overlay daemon found for the container"
        targets = [victim.pid, *daemons, os.getpid()]
        out, err = p.communicate((" ".join(map(str, targets)) + "\n").encode(), timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = out.decode().splitlines()
    assert lines[-1] == "done", (out, err)
    results = [ln.split() for ln in lines[:-1]]
    assert len(results) == 2 * len(targets)
    for _pid, res in results:
        assert res == "ESRCH"  # not even visible from the container's pid namespace
    time.sleep(0.1)
    assert victim.poll() is None
    victim.kill()
    victim.wait()
    deadline = time.monotonic() + 10
    while overlay_daemons(esc.base) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert overlay_daemons(esc.base) == []  # and it was stopped with the container


def test_host_proc_1_environ_is_unreachable(esc):
    cp = run(esc, "-e", "MARK=inside", esc.img, "sh", "-c",
             "/esc/escape read /proc/1/environ | tr '\\0' '\\n'; echo; cd /tmp; /esc/escape chroot >/dev/null; "
             "/esc/escape read /proc/1/environ | tr '\\0' '\\n'")  # fmt: skip
    # /proc/1 is the container's own init both times: its environment, not the host init's
    assert cp.stdout.count("MARK=inside") == 2, cp.stdout
    assert cp.stdout.count("container=podman") == 2
    # and the host's pid 1 is simply not there
    cp = run(esc, esc.img, "sh", "-c", "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '")
    assert cp.stdout.split()[0] == "1" and len(cp.stdout.split()) <= 5
