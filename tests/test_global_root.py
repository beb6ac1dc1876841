"""The global --root and --runroot (podman's): another store and another runtime directory for one
command, with every process of the run (the monitor of a detached container included) using them."""

import os

import pytest
from conftest import Rootless


@pytest.fixture
def rl(tmp_path, registry, busybox_ref):
    r = Rootless(str(tmp_path / "default"))
    r.trust(registry)
    r.img = busybox_ref
    yield r
    other = str(tmp_path / "other")
    if os.path.isdir(other):  # files of subordinate ids: removed inside the user namespace
        r("unshare", "rm", "-rf", other)
    r.cleanup()


def test_root_and_runroot_hold_everything(rl, tmp_path):
    root, run = str(tmp_path / "other" / "root"), str(tmp_path / "other" / "run")
    g = ["--root", root, "--runroot", run]
    rl(*g, "pull", "-q", rl.img, check=True)
    assert rl(*g, "images", "-q").stdout.strip()
    assert rl("images", "-q").stdout == ""  # the default store has nothing
    cid = rl(*g, "run", "-d", "--network", "none", rl.img, "sleep", "60", check=True).stdout.strip()
    try:
        assert rl(*g, "ps", "-q", "--no-trunc").stdout.split() == [cid]
        assert rl("ps", "-aq").stdout == ""
        assert rl(*g, "exec", cid, "echo", "in").stdout == "in\n"
        assert os.listdir(root) and os.listdir(run)
        assert not os.path.exists(os.path.join(rl.data_dir, "rootless", "containers", cid))
    finally:
        rl(*g, "rm", "-f", "-t", "0", cid, check=True)
    assert rl(*g, "ps", "-aq").stdout == ""
    out = rl(*g, "run", "--rm", "--network", "none", rl.img, "echo", "ok", check=True)
    assert out.stdout == "ok\n"
    rl(*g, "rmi", "-a", check=True)
    bad = rl("--root", "", "images")
    assert (
        bad.returncode == 125 and bad.stderr.startswith("Error: ") and bad.stderr.count("\n") == 1
    )
