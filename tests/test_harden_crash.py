"""A crash never leaves unreachable state (issue #14). A container's removal is one rename (the
directory to a hidden trash name, record and storage together) under the containers lock, then the
deletion: a removal killed before the rename leaves the container as it was (`rm -f` again works), one
killed after it leaves a trash directory that the next listing collects, as it collects a container
directory without a record (what older versions left: overlay's mode-000 work/work, invisible to
`ps -a`). `info`'s overlay probe leaves nothing in $TMPDIR.
"""

from __future__ import annotations

import os
import subprocess
import time

NONE = ["--network", "none"]


def _containers(rootless) -> str:
    return os.path.join(rootless.data_dir, "rootless", "containers")


def _entries(rootless) -> list[str]:
    return sorted(n for n in os.listdir(_containers(rootless)) if not n.endswith(".lock"))


def _exited(rootless, ref: str, name: str) -> str:
    cid = rootless("run", "--name", name, *NONE, ref, "true", check=True)
    cid = rootless("inspect", "--format", "{{.Id}}", name, check=True).stdout.strip()
    assert os.path.isdir(os.path.join(_containers(rootless), cid))
    return cid


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_what_a_crash_leaves_is_collected_by_the_next_listing(rootless, registry, busybox_ref):
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    root = _containers(rootless)
    # 1. a directory without a record (a removal or a create killed part-way, by older versions)
    a = _exited(rootless, busybox_ref, "a")
    os.rename(os.path.join(root, a, "config.json"), os.path.join(root, a, ".removing"))
    # 2. a trash directory whose remover was killed
    b = _exited(rootless, busybox_ref, "b")
    os.rename(os.path.join(root, b), os.path.join(root, f".removing-{b}-{_dead_pid()}"))
    # 3. a trash directory whose remover still works on it: left to that remover
    c = _exited(rootless, busybox_ref, "c")
    busy = os.path.join(root, f".removing-{c}-{os.getpid()}")
    os.rename(os.path.join(root, c), busy)
    # 4. a live container stays
    _exited(rootless, busybox_ref, "d")
    assert len(_entries(rootless)) == 4
    out = rootless("ps", "-a", "--format", "{{.Names}}", check=True).stdout.split()
    assert out == ["d"]
    left = _entries(rootless)
    assert len(left) == 2 and os.path.basename(busy) in left, left
    # the collector removes files of subordinate ids too: nothing of a or b remains anywhere
    assert not [n for n in left if a in n or b in n]
    os.rename(busy, os.path.join(root, f".removing-{c}-{_dead_pid()}"))
    rootless("rm", "-f", "d", check=True)
    rootless("ps", "-a", check=True)
    assert _entries(rootless) == []


def test_kill_9_during_rm_f_leaves_nothing_unreachable(rootless, registry, busybox_ref):
    """rm -f killed at different points of its work: afterwards the container is either still
    listed (and removable) or gone for good; no directory outlives the next listing."""
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    for i, delay in enumerate((0.05, 0.15, 0.3, 0.5, 0.8, 1.2)):
        name = f"k{i}"
        rootless("run", "-d", "--name", name, *NONE, busybox_ref, "sleep", "1000", check=True)
        p = subprocess.Popen([*rootless.argv0, "rm", "-f", name], env=rootless.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)  # fault injection at varying points, not a timing assertion
        p.kill()
        p.wait()
        listed = rootless("ps", "-a", "--format", "{{.Names}}", check=True).stdout.split()
        cp = rootless("rm", "-f", name)
        assert cp.returncode == 0, cp.stderr  # gone already, or removed now
        if name in listed:
            assert cp.stdout.strip() == name
    assert rootless("ps", "-a", "-q", check=True).stdout == ""
    assert _entries(rootless) == []


def test_info_overlay_probe_leaves_nothing(rootless, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    rootless("info", check=True, env={"TMPDIR": str(tmp)})
    assert os.listdir(tmp) == []
