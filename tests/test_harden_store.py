"""A full or read-only store (issue #14): the user's own store on a small tmpfs (mounted by the
root pass, owned by the test user; every rootless command runs as that user). With the filesystem
full, reading verbs (ps -a, inspect, logs) work and write nothing, `rm -f` frees the space, the exit
code of a container that exits while the store is full survives, and every writing verb that fails
part-way (run, create, pull, load, commit, volume create) prints one `Error:` line naming the
store and the fix and leaves no half-written record, temporary file or directory. Read-only: the
same reading verbs work, writing verbs say "read-only".
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest
from support import oci
from support.registry import Registry

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER = os.environ.get("ROOTLESS_TEST_USER", "tester")
EXE = "/opt/rootless/venv/bin/rootless"
NONE = ["--network", "none"]


class UserStore:
    """Runs rootless as USER with its store (XDG_DATA_HOME) on a tmpfs of `size`."""

    def __init__(self, size: str):
        self.pw = pwd.getpwnam(USER)
        self.base = tempfile.mkdtemp(prefix="rootless-full-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.data = os.path.join(self.base, "data")
        self.sig = os.path.join(self.base, "sig")
        for d in ("data", "config", "run", "sig"):
            os.mkdir(os.path.join(self.base, d), 0o700)
            os.chown(os.path.join(self.base, d), self.pw.pw_uid, self.pw.pw_gid)
        os.chmod(self.sig, 0o755)
        opts = f"size={size},mode=0700,uid={self.pw.pw_uid},gid={self.pw.pw_gid}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "rlstore", self.data], check=True)
        self.store = os.path.join(self.data, "rootless")
        self.env = {
            "HOME": self.pw.pw_dir,
            "PATH": "/opt/rootless/venv/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "XDG_DATA_HOME": self.data,
            "XDG_CONFIG_HOME": os.path.join(self.base, "config"),
            "XDG_RUNTIME_DIR": os.path.join(self.base, "run"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": os.environ.get("PYTHONPATH", REPO),
        }

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = [f"{k}={v}" for k, v in self.env.items()]
        return subprocess.run(
            ["runuser", "-u", USER, "--", "env", "-i", *env, EXE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        cp = self(*args)
        assert cp.returncode == 0, (args, cp.stdout, cp.stderr)
        return cp

    def fill(self) -> None:
        """Fill the filesystem as the user would (a big file), to the last page."""
        for bs in ("1M", "4k"):
            subprocess.run(
                ["runuser", "-u", USER, "--", "dd", "if=/dev/zero", f"bs={bs}",
                 f"of={self.data}/filler-{bs}"],
                capture_output=True,
            )  # fmt: skip
        st = os.statvfs(self.data)
        assert st.f_bavail == 0, "the tmpfs did not fill"

    def unfill(self) -> None:
        for bs in ("1M", "4k"):
            os.unlink(os.path.join(self.data, f"filler-{bs}"))

    def snapshot(self) -> list[str]:
        """Every path in the store but the fillers, for before/after comparisons."""
        out = []
        for dirpath, dirs, files in os.walk(self.data):
            for n in dirs + files:
                out.append(os.path.relpath(os.path.join(dirpath, n), self.data))
        return sorted(p for p in out if not p.startswith("filler-"))

    def cleanup(self) -> None:
        subprocess.run(["mount", "-o", "remount,rw", self.data], capture_output=True)
        self("rm", "-a", "-f")
        log = os.path.join(self.base, "run", "monitor.log")
        if os.path.exists(log):  # the detached monitors' diagnostics, for a failing run
            with open(log) as f:
                print(f.read())
        subprocess.run(["umount", "-l", self.data], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def one_error(cp, *fragments):
    lines = cp.stderr.strip().splitlines()
    errors = [x for x in lines if x.startswith("Error: ")]
    assert cp.returncode == 125, (cp.returncode, cp.stderr)
    assert len(errors) == 1 and lines[-1] == errors[0], cp.stderr  # progress lines may precede
    for f in fragments:
        assert f in errors[0], cp.stderr
    assert "Errno" not in cp.stderr and "OSError" not in cp.stderr and "Traceback" not in cp.stderr


def no_debris(s, before: list[str], after: list[str]) -> None:
    """Nothing new but empty lock files and empty directories (no record, data or temporary)."""

    def debris(p: str) -> bool:
        full = os.path.join(s.data, p)
        if os.path.isdir(full):
            return bool(os.listdir(full))
        return not (p.endswith(".lock") and os.path.getsize(full) == 0)

    new = sorted(p for p in set(after) - set(before) if debris(p))
    assert not [p for p in after if p.endswith(".tmp") or ".tmp." in p], after
    assert not new, f"left behind: {new}"


@pytest.fixture
def store(tmp_path):
    s = UserStore("48m")
    try:
        layout = str(tmp_path / "layout")
        oci.add_image(
            layout, "localhost/busybox:latest", oci.busybox_layers(), config=oci.BUSYBOX_CONFIG
        )
        archive = os.path.join(s.base, "busybox.tar")
        oci.write_oci_archive(layout, archive)
        os.chmod(archive, 0o644)
        s.archive = archive
        s.ok("load", "-q", "-i", archive)
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def own_registry(tmp_path):
    """A registry of this test's own, stopped at its end (the session's would outlive it as a
    child of the root pass, which later root tests check for)."""
    reg = Registry(str(tmp_path / "registry")).start()
    try:
        layout = oci.build_busybox_layout(str(tmp_path / "busybox"))
        reg.push(layout, "latest", "busybox:latest", fmt="oci")
        yield reg
    finally:
        reg.stop()


def test_full_store(store, own_registry):
    s, registry, busybox_ref = store, own_registry, f"{own_registry.host}/busybox:latest"
    cfg = os.path.join(s.base, "config", "containers")
    os.makedirs(cfg)
    with open(os.path.join(cfg, "registries.conf"), "w") as f:
        f.write(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    shutil.chown(cfg, USER, USER)
    s.ok("run", "-d", "--name", "code3", *NONE, "busybox", "sh", "-c", "echo hi; exit 3")
    assert s.ok("wait", "code3").stdout == "3\n"
    # a container that exits once the store is full: its monitor cannot save the record
    s.ok("run", "-d", "--name", "late", *NONE, "-v", f"{s.sig}:/sig", "busybox", "sh", "-c",
         "while [ ! -e /sig/go ]; do sleep 0.1; done; echo bye; exit 3")  # fmt: skip
    s.ok("run", "-d", "--name", "live", *NONE, "busybox", "sleep", "1000")
    s.fill()
    open(os.path.join(s.sig, "go"), "w").close()
    for _ in range(300):
        got = s.ok("inspect", "--format", "{{.State.Status}}", "late").stdout.strip()
        if got == "exited":
            break
        subprocess.run(["sleep", "0.1"])
    before = s.snapshot()
    # reading verbs work and write nothing
    ps = s.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    assert "code3 Exited (3)" in ps and "late Exited (3)" in ps and "live Up" in ps, ps
    [late] = json.loads(s.ok("inspect", "late").stdout)
    assert late["State"]["ExitCode"] == 3
    assert s.ok("logs", "code3").stdout == "hi\n"
    s.ok("images")
    s.ok("volume", "ls")
    no_debris(s, before, s.snapshot())
    # writing verbs fail with one line, and leave nothing behind
    full = ("the store at", "is full", "free some space")
    one_error(s("run", "--rm", *NONE, "busybox", "true"), *full)
    one_error(s("create", "--name", "new", *NONE, "busybox", "true"), *full)
    one_error(s("volume", "create", "vol"), *full)
    one_error(s("commit", "code3", "snap"), *full)
    one_error(s("pull", "-q", busybox_ref), *full)
    one_error(s("load", "-q", "-i", s.archive), "full")
    no_debris(s, before, s.snapshot())
    # rm -f works on a full store and frees its space; then the store is usable again
    cp = s.ok("rm", "-f", "late", "code3", "live")
    assert len(cp.stdout.split()) == 3
    assert s.ok("ps", "-a", "-q").stdout == ""
    s.unfill()
    assert s.ok("run", "--rm", *NONE, "busybox", "echo", "again").stdout == "again\n"


def test_read_only_store(store):
    s = store
    s.ok("run", "-d", "--name", "code3", *NONE, "busybox", "sh", "-c", "echo hi; exit 3")
    assert s.ok("wait", "code3").stdout == "3\n"
    s.ok("volume", "create", "vol")
    subprocess.run(["mount", "-o", "remount,ro", s.data], check=True)
    ps = s.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    assert "code3 Exited (3)" in ps
    assert s.ok("logs", "code3").stdout == "hi\n"
    [rec] = json.loads(s.ok("inspect", "code3").stdout)
    assert rec["State"]["ExitCode"] == 3
    s.ok("images")
    s.ok("volume", "ls")
    ro = ("the store at", "is read-only")
    one_error(s("run", "--rm", *NONE, "busybox", "true"), *ro)
    one_error(s("create", *NONE, "busybox", "true"), *ro)
    one_error(s("volume", "create", "v2"), *ro)
    one_error(s("tag", "busybox", "other"), *ro)
    one_error(s("rm", "code3"), *ro)
    subprocess.run(["mount", "-o", "remount,rw", s.data], check=True)
    s.ok("rm", "code3")
