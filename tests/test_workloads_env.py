"""What a process finds in a real Debian container, under rootless and under podman side by side:
the environment, the identity of a named non-root user, limits, capabilities, /dev/shm and /.
One probe script runs once per engine (and per user); each test compares one fact. A difference
that is a defect of the runtime is an xfail naming it (strict: the fix turns it into a failure that
says to remove the mark)."""

import json

import pytest
from support.images import run_opts, workload_store
from support.podman import Podman

pytestmark = pytest.mark.workload

PROBE = r"""
import json, os, resource, subprocess
def sh(cmd):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True).stdout.strip()
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
st = os.statvfs("/dev/shm")
print(json.dumps({
    "env": {k: v for k, v in os.environ.items() if k not in ("HOSTNAME", "_")},
    "hostname_env": os.environ.get("HOSTNAME") == os.uname().nodename,
    "id": sh("id"),
    "home": os.path.expanduser("~"),
    "containerenv": os.path.exists("/run/.containerenv"),
    "shm_kib": st.f_blocks * st.f_frsize // 1024,
    "mqueue": "/dev/mqueue" in sh("cut -d' ' -f2 /proc/mounts"),
    "root_mode": oct(os.stat("/").st_mode & 0o7777),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    "caps": {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    "umask": sh("umask"),
    "cwd": os.getcwd(),
}))
"""


@pytest.fixture(scope="module")
def probes(tmp_path_factory, registry, python_ref):
    """{engine: {"root": facts, "nobody": facts}} for rootless and podman in the python image."""
    rl = workload_store(str(tmp_path_factory.mktemp("env-rootless")), registry, python_ref)
    pm = Podman(str(tmp_path_factory.mktemp("env-podman")))
    pm.trust(registry)
    try:
        pm("pull", "-q", python_ref, check=True, timeout=600)
        out = {}
        for engine, run, opts in (("rootless", rl, run_opts()), ("podman", pm, [])):
            out[engine] = {}
            for user in ("root", "nobody"):
                cp = run("run", "--rm", *opts, "-u", user, python_ref, "python3", "-c", PROBE)
                assert cp.returncode == 0, f"{engine}: {cp.stderr}"
                out[engine][user] = json.loads(cp.stdout)
        yield out
    finally:
        pm.cleanup()
        rl.cleanup()


def same(probes, key, user="root"):
    assert probes["rootless"][user][key] == probes["podman"][user][key]


@pytest.mark.parametrize("user", ["root", "nobody"], ids=["uid0", "nobody"])
def test_identity_home_and_workdir(probes, user):
    for key in ("id", "home", "cwd", "umask", "hostname_env"):
        same(probes, key, user)


@pytest.mark.parametrize("user", ["root", "nobody"], ids=["uid0", "nobody"])
def test_environment(probes, user):
    assert probes["rootless"][user]["env"] == probes["podman"][user]["env"]


def test_containerenv(probes):
    same(probes, "containerenv")


def test_dev_shm_size(probes):
    same(probes, "shm_kib")


def test_dev_mqueue(probes):
    same(probes, "mqueue")


def test_root_dir_mode(probes):
    same(probes, "root_mode")


def test_open_files_limit(probes):
    """Podman's rootless default: the caller's hard limit (capped at 1048576), soft and hard."""
    same(probes, "nofile")


def test_capabilities_of_root(probes):
    same(probes, "caps")


def test_capabilities_of_a_non_root_user(probes):
    same(probes, "caps", "nobody")
