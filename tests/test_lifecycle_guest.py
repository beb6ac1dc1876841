"""Lifecycle with real cgroup v2 limits, in the systemd guest (tests/vm/, User-Mode Linux): `exec` joins
the container's cgroup from a login session (through the user's systemd), limits hold for exec'd
processes, `restart` keeps them, and after the monitor is SIGKILLed `rm` removes the scope.

Root pass: booting the guest needs root (tests/vm/boot.sh); the checks inside run as `tester`."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VM = os.path.join(REPO, "tests", "vm")
VENV = "/opt/rootless/venv"

SCRIPT = r"""
cd /tmp
export PYTHONPATH=@REPO@
R="@VENV@/bin/python -m rootless"
rm -rf /tmp/lc-rfs; mkdir -p /tmp/lc-rfs/bin; cp /bin/busybox /tmp/lc-rfs/bin/
for a in sh cat head tail sleep seq; do ln -s busybox /tmp/lc-rfs/bin/$a; done
$R rm -af >/dev/null 2>&1
$R run -d --name lim --memory 32m --pids-limit 20 --rootfs /tmp/lc-rfs /bin/sleep 300 >/dev/null
echo "same-cgroup: $($R exec lim sh -c '[ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] && echo yes')"
echo "cgroup-ns-root: $($R exec lim cat /proc/self/cgroup)"
echo "oom: $($R exec lim sh -c 'head -c 48m /dev/zero | tail >/dev/null; echo $?')"
echo "forks: $($R exec lim sh -c 'for i in $(seq 30); do sleep 5 & done 2>&1 | grep -c "can.t fork"')"
$R restart -t 0 lim >/dev/null
echo "after-restart: $($R exec lim sh -c 'for i in $(seq 30); do sleep 5 & done 2>&1 | grep -c "can.t fork"')"
cg=$($R inspect --format '{{.Id}}' lim)
scope=/sys/fs/cgroup/user.slice/user-$(id -u).slice/user@$(id -u).service/app.slice/rootless-$cg.scope
echo "scope-before: $(test -d $scope && echo present)"
kill -9 $($R inspect --format '{{.State.ConmonPid}}' lim)
for i in $(seq 100); do $R ps -a --format '{{.Status}}' | grep -q '^Exited (unknown)' && break; sleep 0.1; done
echo "status: $($R ps -a --format '{{.Status}}' | cut -c1-16)"
$R rm lim >/dev/null
for i in $(seq 100); do test -d $scope || break; sleep 0.1; done
echo "scope-after: $(test -d $scope && echo present || echo gone)"
echo "left: $($R ps -aq | wc -l)"
"""


@pytest.mark.root
@pytest.mark.timeout(1800)
def test_exec_and_limits_in_the_systemd_guest(tmp_path):
    env = dict(os.environ, VM_RUN=str(tmp_path / "vm"))
    img = subprocess.run(
        [os.path.join(VM, "build-image.sh")], env=env, capture_output=True, text=True, timeout=1500
    )
    assert img.returncode == 0, img.stderr[-2000:]
    venv = os.path.realpath(VENV)
    boot = subprocess.run(
        [os.path.join(VM, "boot.sh"), img.stdout.strip(), REPO, venv],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    try:
        assert boot.returncode == 0, boot.stderr[-2000:]
        script = SCRIPT.replace("@REPO@", REPO).replace("@VENV@", venv)
        cp = subprocess.run(
            [os.path.join(VM, "run-in-guest.sh"), "-u", "tester", "-t", "300"],
            input=script, env=env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
    finally:
        subprocess.run([os.path.join(VM, "shutdown.sh")], env=env, timeout=120)
    got = dict(ln.split(": ", 1) for ln in cp.stdout.splitlines() if ": " in ln)
    why = (cp.stdout, cp.stderr)
    assert got.get("same-cgroup") == "yes", why  # exec joined the container's leaf cgroup
    assert got.get("cgroup-ns-root") == "0::/", why  # the cgroup namespace starts at its cgroup
    assert got.get("oom") == "137", why  # --memory holds for an exec'd process
    assert int(got.get("forks") or 0) > 0, why  # --pids-limit too
    assert int(got.get("after-restart") or 0) > 0, why  # and again after a restart
    assert got.get("scope-before") == "present", why
    assert got.get("status") == "Exited (unknown)", why  # the monitor was SIGKILLed
    assert got.get("scope-after") == "gone", why  # rm removed the scope anyway
    assert got.get("left") == "0", why
