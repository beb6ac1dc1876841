"""Resource limits on this host (hybrid cgroups, no systemd): parsing, the planner's decisions, and
that limits which cannot be enforced fail with the documented message while runs without them work.
Enforcement itself is tested in the systemd + cgroup v2 guest (tests/vm/run-guest-tests.sh)."""

import os
import subprocess
import sys

import pytest

from rootless import cgroups
from rootless.cgroups import CgroupError, Limits

HYBRID = not cgroups.is_unified()


def test_this_host_is_hybrid():
    # The premise of the tests below; the guest covers cgroup v2.
    assert HYBRID and os.path.isdir("/sys/fs/cgroup/unified")


@pytest.mark.parametrize(
    "text,value",
    [
        ("64m", 64 << 20),
        ("1g", 1 << 30),
        ("512k", 512 << 10),
        ("100", 100),
        ("64MB", 64 << 20),
        ("1.5g", 3 << 29),
        ("-1", -1),
    ],
)
def test_parse_bytes(text, value):
    assert cgroups.parse_bytes(text) == value


def test_from_cli_and_cgroup_files():
    lim = Limits.from_cli(
        memory="64m",
        memory_swap="96m",
        memory_reservation="32m",
        cpus="0.5",
        cpu_shares="1024",
        pids_limit="50",
    )
    assert lim.files() == {
        "memory.max": str(64 << 20),
        "memory.swap.max": str(32 << 20),
        "memory.low": str(32 << 20),
        "cpu.max": "50000 100000",
        "cpu.weight": "39",
        "pids.max": "50",
    }
    assert Limits.from_cli(memory="64m").files()["memory.swap.max"] == str(64 << 20)  # as podman
    assert Limits.from_cli(memory="64m", memory_swap="-1").files()["memory.swap.max"] == "max"
    assert Limits.from_cli(pids_limit="-1").files()["pids.max"] == "max"
    assert Limits().files() == {"pids.max": "2048"}  # podman's default
    assert Limits().files(default_pids=False) == {}
    assert Limits().explicit() == []  # the default is not an explicit limit
    assert Limits.from_cli(cpu_weight="300").files() == {"cpu.weight": "300", "pids.max": "2048"}
    assert Limits.from_cli(cpuset_cpus="0-1,3").files()["cpuset.cpus"] == "0-1,3"
    assert Limits.from_cli(memory="64m", cpus="1").to_inspect()["NanoCpus"] == 10**9


@pytest.mark.parametrize(
    "kw,text",
    [
        ({"memory": "lots"}, "invalid --memory"),
        ({"memory": "1m"}, "minimum memory limit is 6m"),
        ({"memory_swap": "64m"}, "--memory-swap needs --memory"),
        ({"memory": "64m", "memory_swap": "32m"}, "at least --memory"),
        ({"cpus": "half"}, "invalid --cpus"),
        ({"cpus": "999"}, "between 0 and"),
        ({"cpu_shares": "1"}, "between 2 and 262144"),
        ({"cpu_shares": "512", "cpu_weight": "10"}, "give only one"),
        ({"cpuset_cpus": "a-b"}, "invalid --cpuset-cpus"),
        ({"oom_score_adj": "2000"}, "between -1000 and 1000"),
    ],
)
def test_bad_values_are_one_line_errors(kw, text):
    with pytest.raises(CgroupError, match=text) as e:
        Limits.from_cli(**kw)
    assert e.value.exit_code == 125 and "\n" not in str(e.value)


@pytest.mark.skipif(not HYBRID, reason="this host's premise")
def test_explicit_limits_on_hybrid_host_fail_with_the_fix():
    for kw in (
        {"memory": "64m"},
        {"cpus": "0.5"},
        {"pids_limit": "10"},
        {"memory": "64m", "cpus": "1"},
    ):
        with pytest.raises(CgroupError) as e:
            cgroups.plan(Limits.from_cli(**kw), None, "c1")
        msg = str(e.value)
        assert e.value.exit_code == 125
        assert "cgroup v1" in msg and "systemd.unified_cgroup_hierarchy=1" in msg
        assert "--cgroups=disabled" in msg
        for flag in kw:
            assert "--" + flag.replace("_", "-") in msg
    for manager in ("systemd", "cgroupfs"):
        with pytest.raises(CgroupError, match="cgroup v1"):
            cgroups.plan(Limits.from_cli(memory="64m"), manager, "c1")


@pytest.mark.skipif(not HYBRID, reason="this host's premise")
def test_no_limits_or_disabled_never_fail_here():
    for manager in (None, "systemd", "cgroupfs", "disabled"):
        p = cgroups.plan(Limits(), manager, "c2")
        assert p.manager == "none"
        p.apply(os.getpid())  # nothing to do, nothing fails
        assert p.path is None
        p.cleanup()
    p = cgroups.plan(Limits.from_cli(memory="64m", cpus="0.5"), "disabled", "c3")
    assert p.manager == "none" and not p.required


def test_unknown_manager():
    with pytest.raises(CgroupError, match="use systemd, cgroupfs or disabled"):
        cgroups.plan(None, "lxc", "c4")


def test_oom_score_adj_without_cgroups():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        p = cgroups.plan(Limits.from_cli(oom_score_adj="700"), None, "c5")
        p.apply(child.pid)
        with open(f"/proc/{child.pid}/oom_score_adj") as f:
            assert f.read().strip() == "700"
    finally:
        child.communicate(b"")
    if os.geteuid() != 0:
        with pytest.raises(CgroupError, match="can only raise it"):
            cgroups.plan(Limits.from_cli(oom_score_adj="-100"), None, "c6")


def test_stats_verb_without_containers(rootless):
    cp = rootless("stats", "--no-stream", check=True)
    assert cp.stdout.split("\n")[0].split()[:2] == ["ID", "NAME"]
    cp = rootless("stats", "--no-stream", "--format", "json", check=True)
    assert cp.stdout.strip() == "[]"


def test_run_with_memory_fails_here_and_without_limits_works(rootless, registry, busybox_ref):
    """The issue's acceptance on this hybrid host, with the real CLI and a pulled image."""
    rootless.trust(registry)
    rootless("pull", busybox_ref, check=True)
    cp = rootless("run", "--rm", "--memory", "64m", busybox_ref, "echo", "started")
    assert cp.returncode == 125 and "started" not in cp.stdout
    assert cp.stderr.count("\n") == 1 and cp.stderr.startswith("Error: cannot enforce --memory")
    assert "cgroup v1" in cp.stderr and "systemd.unified_cgroup_hierarchy=1" in cp.stderr
    assert "--cgroups=disabled" in cp.stderr
    cp = rootless("run", "--rm", "--cgroups=disabled", "--memory", "64m", busybox_ref, "true")
    assert cp.returncode == 0, cp.stderr
    cp = rootless("run", "--rm", busybox_ref, "echo", "ok")
    assert cp.returncode == 0 and cp.stdout.strip() == "ok", cp.stderr
