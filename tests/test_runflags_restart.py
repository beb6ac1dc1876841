"""--restart end to end as the unprivileged user (podman-run(1)): the monitor runs the container again
by its policy, inspect and ps count the restarts, and a container the user stops stays stopped."""

import json
import time

import pytest
from conftest import Rootless


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    r = Rootless(str(tmp_path_factory.mktemp("restart")))
    r.trust(registry)
    r("pull", busybox_ref, check=True)
    r.img = busybox_ref
    yield r
    r.cleanup()


def settled(rl, name, count, timeout=60):
    """Wait until the container has exited for good after `count` restarts; its inspect JSON."""
    deadline = time.monotonic() + timeout
    while True:
        d = json.loads(rl("inspect", name, check=True).stdout)[0]
        done = d["State"]["Status"] == "exited" and not d["State"]["Restarting"]
        if (done and d["RestartCount"] == count) or time.monotonic() > deadline:
            return d
        time.sleep(0.1)


def wait_count(rl, name, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = json.loads(rl("inspect", name, check=True).stdout)[0]
        if d["RestartCount"] >= count:
            return d
        time.sleep(0.1)
    raise AssertionError(f"{name} was not restarted {count} times")


def test_on_failure_with_retries(rl):
    rl("run", "-d", "--name", "onf", "--network", "none", "--restart", "on-failure:2",
       rl.img, "sh", "-c", "echo ran; exit 3", check=True)  # fmt: skip
    d = settled(rl, "onf", 2)
    assert (d["RestartCount"], d["State"]["ExitCode"]) == (2, 3)
    assert d["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert rl("logs", "onf").stdout == "ran\n" * 3
    ps = rl("ps", "-a", "--filter", "name=onf", "--format", "{{.Restarts}}", check=True)
    assert ps.stdout == "2\n"
    rl("rm", "onf", check=True)


def test_on_failure_does_not_restart_a_success(rl):
    rl("run", "-d", "--name", "ok", "--network", "none", "--restart", "on-failure",
       rl.img, "true", check=True)  # fmt: skip
    d = settled(rl, "ok", 0)
    assert (d["RestartCount"], d["State"]["ExitCode"]) == (0, 0)
    rl("rm", "ok", check=True)


def test_always_until_the_user_stops_it_and_start_resets_the_count(rl):
    rl("run", "-d", "--name", "alw", "--network", "none", "--restart", "always",
       rl.img, "sh", "-c", "echo up; sleep 0.3", check=True)  # fmt: skip
    wait_count(rl, "alw", 2)
    rl("stop", "-t", "1", "alw", check=True)
    d = settled(rl, "alw", None, timeout=0)
    count = d["RestartCount"]
    assert d["State"]["Status"] == "exited" and not d["State"]["Restarting"]
    time.sleep(1.5)  # a restart would have happened by now (the delay is well under a second)
    assert settled(rl, "alw", None, timeout=0)["RestartCount"] == count
    rl("start", "alw", check=True)  # the user's start: podman counts from 0 again
    assert json.loads(rl("inspect", "alw").stdout)[0]["RestartCount"] == 0
    rl("rm", "-f", "-t", "0", "alw", check=True)


def test_foreground_run_returns_and_the_container_restarts(rl):
    cp = rl("run", "--name", "fg", "--network", "none", "--restart", "on-failure:1",
            rl.img, "sh", "-c", "echo hi; exit 4")  # fmt: skip
    assert (cp.returncode, cp.stdout) == (4, "hi\n")
    d = settled(rl, "fg", 1)
    assert (d["RestartCount"], d["State"]["ExitCode"]) == (1, 4)
    assert (
        rl("logs", "fg").stdout == "hi\n"
    )  # the restart's output (the first run's was on the tty)
    rl("rm", "fg", check=True)


def test_no_policy_shows_as_podman(rl, podman, registry):
    podman.trust(registry)
    podman("pull", rl.img, check=True)
    for args in ([], ["--restart", "no"], ["--restart", "unless-stopped"]):
        rl("run", "--name", "p", "--network", "none", *args, rl.img, "true", check=True)
        podman("create", "--name", "p", *args, rl.img, "true", check=True)
        mine = json.loads(rl("inspect", "p").stdout)[0]["HostConfig"]["RestartPolicy"]
        theirs = json.loads(podman("inspect", "p").stdout)[0]["HostConfig"]["RestartPolicy"]
        assert mine == theirs
        # unless-stopped runs `true` again and again (podman's does the same): remove it with -f
        rl("rm", "-f", "-t", "0", "p", check=True)
        podman("rm", "-f", "p", check=True)
