"""Capabilities as podman >= 4.0.3 (issue #14, CVE-2022-27649): the inheritable and ambient sets
are empty unless --cap-add asks for a capability for a non-root user; all five sets of
/proc/self/status compared with podman's, side by side, for run and exec."""

import pytest
from conftest import Rootless
from support.podman import Podman

CASES = {
    "container-root": [],
    "user": ["--user", "1000"],
    "cap-add": ["--cap-add", "NET_ADMIN,sys_time"],
    "cap-drop": ["--cap-drop", "CHOWN", "--cap-drop", "cap_kill"],
    "drop-all-add": ["--cap-drop", "ALL", "--cap-add", "CHOWN"],
    "user-cap-add": ["--user", "1000", "--cap-add", "NET_ADMIN"],
    "user-drop-all": ["--user", "1000:1000", "--cap-drop", "ALL"],
    "privileged": ["--privileged"],
    "user-privileged": ["--user", "1000", "--privileged"],
}
PROBE = "grep ^Cap /proc/self/status"


def _sets(cp) -> dict[str, str]:
    assert cp.returncode == 0, cp.stderr
    return dict(line.split(":\t") for line in cp.stdout.splitlines())


@pytest.fixture(scope="module")
def engines(tmp_path_factory, registry, busybox_ref):
    rl = Rootless(str(tmp_path_factory.mktemp("caps-rootless")))
    pm = Podman(str(tmp_path_factory.mktemp("caps-podman")))
    try:
        for e in (rl, pm):
            e.trust(registry)
            e("pull", "-q", busybox_ref, check=True)
        yield {"rootless": rl, "podman": pm}
    finally:
        pm.cleanup()
        rl.cleanup()


@pytest.mark.parametrize("case", CASES)
def test_run_capability_sets_as_podman(engines, busybox_ref, case):
    got = {
        name: _sets(
            e("run", "--rm", "--network", "none", *CASES[case], busybox_ref, "sh", "-c", PROBE)
        )
        for name, e in engines.items()
    }
    assert got["rootless"] == got["podman"]
    if "--cap-add" not in CASES[case] or "--user" not in CASES[case]:
        assert got["rootless"]["CapInh"] == got["rootless"]["CapAmb"] == "0000000000000000"


@pytest.mark.parametrize("case", ["container-root", "cap-add", "user-cap-add", "privileged"])
def test_exec_capability_sets_as_podman(engines, busybox_ref, case):
    got = {}
    for name, e in engines.items():
        e("run", "-d", "--name", f"caps-{case}", "--network", "none", *CASES[case], busybox_ref,
          "sleep", "1000", check=True)  # fmt: skip
        try:
            got[name] = [_sets(e("exec", *u, f"caps-{case}", "sh", "-c", PROBE))
                         for u in ((), ("-u", "0"), ("-u", "1000"))]  # fmt: skip
        finally:
            e("rm", "-f", "-t", "0", f"caps-{case}")
    assert got["rootless"] == got["podman"]
