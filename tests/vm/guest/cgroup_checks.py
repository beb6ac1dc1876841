"""In-guest cgroup tests: run INSIDE the UML guest as the unprivileged user (tests/vm/run-guest-tests.sh).

Not collected on the host (the name does not match test_*.py): the host has hybrid cgroups and no
systemd. Each test starts a real child process held at a gate, lets rootless.cgroups place it in its
cgroup, then releases it and checks what the kernel did. Tests named *undelegated* need the guest's
user@.service restricted to `Delegate=memory pids`; run-guest-tests.sh runs them in a second phase.
"""

import os
import subprocess
import sys
import time

import pytest

from rootless import cgroups
from rootless.cgroups import CgroupError, Limits

PY = sys.executable


class Gated:
    """A python child (the container's init) that waits on stdin, runs CODE, prints one line, then waits
    again before exiting, so that its cgroup can be read while it still exists: systemd removes a
    scope's cgroup as soon as its last process exits."""

    def __init__(self, code: str):
        body = "import os, sys\nos.read(0, 1)\n" + code + "\nsys.stdout.flush()\nos.read(0, 1)\n"
        self.proc = subprocess.Popen(
            [PY, "-c", body], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def go(self) -> str:
        self.proc.stdin.write("x")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def finish(self, timeout=120) -> int:
        try:
            self.proc.communicate("x", timeout=timeout)
        except (BrokenPipeError, ValueError):
            self.proc.wait(timeout)
        return self.proc.returncode


def run_limited(code: str, limits: Limits | None, cid: str, manager=None):
    """Run CODE as a container init placed by plan(...).apply(); returns (plan, its line, stats)."""
    plan = cgroups.plan(limits, manager, cid)
    child = Gated(code)
    try:
        plan.apply(child.proc.pid)
        line = child.go()
        stats = cgroups.read_stats(plan.path) if plan.path else None
        assert child.finish() == 0
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()
        plan.cleanup()
    return plan, line, stats


def test_guest_is_systemd_cgroup_v2():
    assert cgroups.is_unified()
    assert cgroups.user_bus_address()
    plan = cgroups.plan(Limits.from_cli(memory="32m"), None, "probe")
    assert plan.manager == "systemd"


ALLOC = (
    "import subprocess\n"
    "r = subprocess.run([sys.executable, '-c', 'b = b\"x\" * (48 << 20)'])\n"
    "print(r.returncode)"
)


def test_memory_limit_oom_kills_and_unlimited_succeeds():
    plan, rc, stats = run_limited(ALLOC, Limits.from_cli(memory="24m"), "mem1")
    assert rc == "-9"  # the allocation was OOM-killed; the container's init lives on
    assert stats["oom_kills"] >= 1, stats
    assert stats["memory_limit"] == 24 << 20
    assert not os.path.exists(plan.path)  # cleaned up
    plan, rc, stats = run_limited(ALLOC, None, "mem2")
    assert rc == "0"
    assert plan.manager == "systemd" and stats["pids_limit"] == 2048  # podman's default applies
    assert stats["memory_limit"] is None and stats["oom_kills"] == 0


FORKER = """
import time
kids, refused = [], 0
for _ in range(40):
    try:
        pid = os.fork()
    except BlockingIOError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
print(len(kids), refused)
"""


def test_pids_limit_refuses_forks():
    _, out, stats = run_limited(FORKER, Limits.from_cli(pids_limit="10"), "pids1")
    forked, refused = map(int, out.split())
    assert forked == 9 and refused == 31, out  # the init itself is the 10th
    assert stats["pids_limit"] == 10


BUSY = "import time\nend = time.monotonic() + 2\nwhile time.monotonic() < end: pass\nprint('done')"


def test_cpus_throttles_a_busy_loop():
    _, _, lim = run_limited(BUSY, Limits.from_cli(cpus="0.2"), "cpu1")
    _, _, free = run_limited(BUSY, None, "cpu2")
    assert lim["cpu_quota_usec"] == 20000 and lim["cpu_period_usec"] == 100000
    assert lim["cpu_nr_throttled"] > 0 and free["cpu_nr_throttled"] == 0
    # The guest's clock and its share of the host's CPU vary with the host's load, so no figure of
    # time is compared: the kernel's own accounting says the quota held, about 20 ms of CPU in
    # each period the loop ran in (slack: the guest's coarse tick lets a period overrun a little;
    # the unlimited loop would use 100 ms of each).
    assert lim["cpu_usage_usec"] <= 1.5 * 20000 * (lim["cpu_nr_periods"] + 1), lim


def test_stats_report_the_limits():
    limits = Limits.from_cli(
        memory="64m", memory_reservation="16m", cpus="0.5", cpu_shares="512", pids_limit="99"
    )
    plan = cgroups.plan(limits, None, "stats1")
    child = Gated("b = b'x' * (4 << 20); print(1)")
    try:
        plan.apply(child.proc.pid)
        child.go()  # memory is charged to the cgroup where it is allocated: allocate after the move
        s = cgroups.read_stats(plan.path)
        assert s["memory_limit"] == 64 << 20
        assert s["memory_low"] == 16 << 20
        assert (s["cpu_quota_usec"], s["cpu_period_usec"]) == (50000, 100000)
        assert s["cpu_weight"] == limits.cpu_weight_value() == 20
        assert s["pids_limit"] == 99 and s["pids_current"] == 1
        assert s["memory_usage"] >= 4 << 20
    finally:
        child.finish()
        plan.cleanup()


def test_monitor_is_not_in_the_container_cgroup():
    plan = cgroups.plan(Limits.from_cli(pids_limit="5"), None, "mon1")
    child = Gated("pass")
    try:
        plan.apply(child.proc.pid)
        assert cgroups.own_cgroup() != cgroups.own_cgroup(child.proc.pid)
        with open(os.path.join(plan.path, "cgroup.procs")) as f:
            assert f.read().split() == [str(child.proc.pid)]
    finally:
        child.finish()
        plan.cleanup()


def test_oom_score_adj():
    _, out, _ = run_limited(
        "print(open('/proc/self/oom_score_adj').read())",
        Limits.from_cli(oom_score_adj="500"),
        "oom1",
    )
    assert out.strip() == "500"
    with pytest.raises(CgroupError, match="can only raise it"):
        cgroups.plan(Limits.from_cli(oom_score_adj="-500"), None, "oom2")


def test_kernel_without_cpuset_is_an_error_with_a_fix():
    # The UML kernel has no cpuset controller at all.
    with pytest.raises(CgroupError) as e:
        cgroups.plan(Limits.from_cli(cpuset_cpus="0"), None, "cs1")
    assert "--cpuset-cpus" in str(e.value) and "no cpuset cgroup controller" in str(e.value)
    assert e.value.exit_code == 125
    assert cgroups.plan(Limits.from_cli(cpuset_cpus="0"), "disabled", "cs1").manager == "none"


CGROUPFS_CHILD = """
import subprocess, sys
from rootless import cgroups
from rootless.cgroups import Limits
plan = cgroups.plan(Limits.from_cli(memory="24m"), "cgroupfs", "cfs1")
child = subprocess.Popen([sys.executable, "-c", "import os; os.read(0, 1); b = b'x' * (48 << 20)"], stdin=subprocess.PIPE)
plan.apply(child.pid)
child.communicate(b"x")
s = cgroups.read_stats(plan.path)
print(plan.manager, child.returncode, s["memory_limit"], s["oom_kills"], plan.path)
plan.cleanup()
"""


def test_cgroupfs_manager_in_a_delegated_unit():
    # A Delegate=yes scope is a delegated subtree, like the inside of another container.
    out = subprocess.run(
        [
            "systemd-run",
            "--user",
            "--scope",
            "--quiet",
            "-p",
            "Delegate=yes",
            PY,
            "-c",
            CGROUPFS_CHILD,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert out[:4] == ["cgroupfs", "-9", str(24 << 20), "1"], out
    assert out[4].endswith("/rootless-cfs1")


def test_undelegated_controller_error():
    """Phase 2: user@.service has only `Delegate=memory pids`."""
    with pytest.raises(CgroupError) as e:
        cgroups.plan(Limits.from_cli(cpus="0.5"), None, "und1")
    msg = str(e.value)
    assert "--cpus" in msg and "cpu controller is not delegated" in msg
    assert "/etc/systemd/system/user@.service.d/delegate.conf" in msg and "Delegate=" in msg
    # What is delegated still works, and no limits never fails.
    _, _, stats = run_limited("print(1)", Limits.from_cli(memory="32m"), "und2")
    assert stats["memory_limit"] == 32 << 20
    assert cgroups.plan(None, None, "und3").manager == "systemd"


# --------------------------------------------------------------------------------------------------
# The product itself: `rootless` as a freshly logged-in user of a systemd distro, on a busybox image
# loaded from an oci-archive (the guest has no registry and no network; tests/support/oci.py builds it).

ROOTLESS = [PY, "-m", "rootless"]
IMAGE = "localhost/busybox:latest"


def cli(*args, timeout=180, check=False):
    cp = subprocess.run([*ROOTLESS, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert cp.returncode == 0, (args, cp.stdout, cp.stderr)
    return cp


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """The busybox test image in tester's own store (`rootless load`, as a user would)."""
    from support import oci  # tests/conftest.py puts tests/ on sys.path

    d = tmp_path_factory.mktemp("image")
    layout, archive = str(d / "layout"), str(d / "busybox.tar")
    oci.add_image(layout, IMAGE, oci.busybox_layers(), config=oci.BUSYBOX_CONFIG)
    oci.write_oci_archive(layout, archive)
    cli("load", "-i", archive, check=True)
    return IMAGE


def test_rootless_run_smoke(image):
    cp = cli("run", "--rm", image, "sh", "-c", "echo hello from $(id -u)")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == "hello from 0"


def test_cli_memory_limit_oom_kills(image):
    eat = "head -c 48m /dev/zero | tail >/dev/null; echo rc=$?"
    cp = cli("run", "--rm", "--memory", "24m", image, "sh", "-c", eat)
    assert "rc=137" in cp.stdout, (cp.stdout, cp.stderr)
    cp = cli("run", "--rm", image, "sh", "-c", eat)
    assert "rc=0" in cp.stdout, (cp.stdout, cp.stderr)


def test_cli_pids_limit_refuses_forks(image):
    forks = "for i in $(seq 20); do sleep 3 & done 2>&1; wait; echo done"
    cp = cli("run", "--rm", "--pids-limit", "8", image, "sh", "-c", forks)
    assert "can't fork" in cp.stdout + cp.stderr, (cp.stdout, cp.stderr)


LIMITS = {
    "--memory": "32m",
    "--memory-reservation": "8m",
    "--memory-swap": "64m",
    "--cpus": "0.5",
    "--cpu-shares": "512",
    "--pids-limit": "20",
    "--oom-score-adj": "100",
}


@pytest.fixture(scope="module")
def limited(image):
    """A detached container with every limit the guest kernel can enforce (it has no cpuset)."""
    cli("rm", "-f", "lim")
    args = [x for kv in LIMITS.items() for x in kv]
    cli("run", "-d", "--name", "lim", *args, image, "sleep", "600", check=True)
    yield "lim"
    cli("rm", "-f", "-t", "0", "lim")


def _scope(cid: str) -> str:
    uid = os.getuid()
    return (
        f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/app.slice/"
        f"rootless-{cid}.scope"
    )


def test_stats_ps_inspect_show_the_limits(limited):
    import json

    [s] = json.loads(cli("stats", "--no-stream", "--format", "json", limited, check=True).stdout)
    assert s["name"] == "lim" and s["cgroup"].endswith("/container"), s
    assert s["mem_limit"] == 32 << 20 and s["pids_limit"] == 20, s
    assert (s["cpu_quota_usec"], s["cpu_period_usec"]) == (50000, 100000), s
    assert s["mem_usage"] > 0 and s["pids"] >= 1 and s["cpu_usage_usec"] > 0, s

    table = cli("stats", "--no-stream", check=True).stdout.splitlines()
    assert table[0].split("  ")[0] == "ID" and "MEM USAGE / LIMIT" in table[0], table
    assert "PIDS" in table[0] and "CPU TIME" in table[0] and "AVG CPU %" in table[0], table
    [row] = [ln for ln in table[1:] if " lim " in ln]
    assert " / 33.55MB " in row, table  # podman prints limits in SI units: 32 MiB = 33.55MB

    fmt = "{{.Names}} {{.Memory}} {{.NanoCpus}} {{.PidsLimit}} {{.CpuShares}}"
    assert cli("ps", "--format", fmt, check=True).stdout.split() == [
        "lim",
        str(32 << 20),
        str(5 * 10**8),
        "20",
        "512",
    ]

    [data] = json.loads(cli("inspect", limited, check=True).stdout)
    hc = data["HostConfig"]
    assert hc["Memory"] == 32 << 20 and hc["MemoryReservation"] == 8 << 20, hc
    assert hc["MemorySwap"] == 64 << 20 and hc["NanoCpus"] == 5 * 10**8, hc
    assert hc["CpuShares"] == 512 and hc["PidsLimit"] == 20, hc
    assert hc["OomScoreAdj"] == 100 and hc["CpusetCpus"] == "", hc
    pid = data["State"]["Pid"]
    with open(f"/proc/{pid}/oom_score_adj") as f:
        assert f.read().strip() == "100"


def _forks_refused(name: str) -> int:
    out = cli(
        "exec",
        name,
        "sh",
        "-c",
        'for i in $(seq 30); do sleep 5 & done 2>&1 | grep -c "can.t fork"',
    )
    return int(out.stdout.strip() or 0)


def test_exec_restart_and_rm_keep_to_the_cgroup(limited):
    """exec joins the container's cgroup from a login session (through the user's systemd), the limits
    hold for exec'd processes and after a restart, and `rm` removes the scope after the monitor is
    SIGKILLed."""
    same = '[ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] && echo yes'
    assert cli("exec", limited, "sh", "-c", same).stdout.strip() == "yes"
    assert cli("exec", limited, "cat", "/proc/self/cgroup").stdout.strip() == "0::/"  # cgroup ns
    eat = "head -c 48m /dev/zero | tail >/dev/null; echo $?"
    assert cli("exec", limited, "sh", "-c", eat).stdout.strip() == "137"  # --memory
    assert _forks_refused(limited) > 0  # --pids-limit
    cli("restart", "-t", "0", limited, check=True)
    assert _forks_refused(limited) > 0  # still, after a restart

    cid = cli("inspect", "--format", "{{.Id}}", limited, check=True).stdout.strip()
    assert os.path.isdir(_scope(cid))
    monitor = int(cli("inspect", "--format", "{{.State.ConmonPid}}", limited).stdout)
    os.kill(monitor, 9)
    status = ""
    for _ in range(100):
        status = cli("ps", "-a", "--format", "{{.Status}}").stdout.strip()
        if status.startswith("Exited (unknown)"):
            break
        time.sleep(0.1)
    assert status.startswith("Exited (unknown)"), status
    cli("rm", limited, check=True)
    for _ in range(100):
        if not os.path.isdir(_scope(cid)):
            break
        time.sleep(0.1)
    assert not os.path.isdir(_scope(cid))  # rm removed the scope anyway
    assert cli("ps", "-aq").stdout.strip() == ""


def test_cli_undelegated_controller(image):
    """Phase 2 (Delegate=memory pids): --cpus fails before the container starts, with the fix."""
    cp = cli("run", "--rm", "--cpus", "0.5", image, "echo", "started")
    assert cp.returncode == 125 and "started" not in cp.stdout
    assert "cpu controller is not delegated" in cp.stderr and "Delegate=" in cp.stderr
    cp = cli("run", "--rm", "--cgroups=disabled", "--cpus", "0.5", image, "echo", "ok")
    assert cp.returncode == 0 and cp.stdout.strip() == "ok", cp.stderr
