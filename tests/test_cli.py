"""The CLI boundary and `rootless info`, as a user sees them."""

import json
import os
import pwd
import subprocess

import pytest

from rootless import idmap


def test_help_lists_verbs(rootless):
    cp = rootless("--help", check=True)
    for verb in ("info", "unshare"):
        assert f"  {verb}" in cp.stdout


def test_unknown_command_is_a_usage_error_with_exit_125(rootless):
    cp = rootless("frobnicate")
    assert cp.returncode == 125
    assert "No such command 'frobnicate'" in cp.stderr
    assert "Traceback" not in cp.stderr


def test_unknown_flag_is_a_usage_error_with_exit_125(rootless):
    cp = rootless("info", "--no-such-flag")
    assert cp.returncode == 125
    assert "No such option" in cp.stderr


def test_info_reports_subordinate_ids_and_passes(rootless):
    cp = rootless("info")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    first = idmap.for_user().uid_ranges[1]  # the user's own subordinate range, from /etc/subuid
    assert f"host_id: {first.host}" in cp.stdout
    assert "devFuseUsable: true" in cp.stdout
    assert "slirp4netns: slirp4netns version" in cp.stdout


def test_info_json(rootless):
    cp = rootless("info", "--format", "json", check=True)
    report = json.loads(cp.stdout)
    assert report["host"]["rootless"] is True
    first = idmap.for_user().uid_ranges[1]
    assert report["host"]["user"]["uidmap"][1] == {
        "container_id": 1,
        "host_id": first.host,
        "size": first.size,
    }
    assert report["host"]["kernelOverlayInUserns"]["usable"] is True
    assert report["store"]["graphRoot"] == os.path.join(rootless.data_dir, "rootless")
    # limits the host cannot enforce are a (non-fatal) problem with a fix, and only then
    cgroup_problem = any("cgroup" in p["what"] for p in report["problems"])
    assert cgroup_problem == (not report["host"]["cgroups"]["limitsAvailable"])
    assert not any(p["fatal"] for p in report["problems"])


@pytest.mark.root
def test_info_for_a_user_without_subordinate_ids_names_the_fix():
    nosub = os.environ.get("ROOTLESS_TEST_USER", "tester") + "-nosub"  # made by setup-host.sh
    cp = subprocess.run(
        [
            "runuser",
            "-u",
            nosub,
            "--",
            "env",
            "-i",
            f"HOME={pwd.getpwnam(nosub).pw_dir}",
            "PATH=/usr/bin:/bin",
            *([f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else []),
            "/opt/rootless/venv/bin/rootless",
            "info",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 0, cp.stderr
    assert f"no subordinate ids for {nosub}" in cp.stdout
    assert "usermod --add-subuids" in cp.stdout
