"""User namespaces that need root to set up: a user without subordinate ids (`tester-nosub`, run
through runuser), and rootless itself running as root (the identity map, no helpers)."""

import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from rootless import idmap, userns

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTLESS = shutil.which("rootless", path=os.path.dirname(sys.executable)) or "rootless"
USER = os.environ.get("ROOTLESS_TEST_USER", "tester")  # the users setup-host.sh makes
NOSUB = USER + "-nosub"


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess:
    pw = pwd.getpwnam(user)
    env = [
        f"HOME={pw.pw_dir}",
        f"USER={user}",
        f"LOGNAME={user}",
        "SHELL=/bin/sh",
        f"PATH={os.path.dirname(sys.executable)}:/usr/bin:/bin:/usr/sbin:/sbin",
        f"PYTHONPATH={os.environ.get('PYTHONPATH') or REPO}",
        "LANG=C.UTF-8",
    ]
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", *env, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_user_without_subordinate_ids_gets_one_id_and_the_warning():
    pw = pwd.getpwnam(NOSUB)
    cp = as_user(NOSUB, ROOTLESS, "unshare", "cat", "/proc/self/uid_map", "/proc/self/gid_map")
    assert cp.returncode == 0, cp.stderr
    rows = [line.split() for line in cp.stdout.splitlines()]
    assert rows == [["0", str(pw.pw_uid), "1"], ["0", str(pw.pw_gid), "1"]]
    lines = cp.stderr.splitlines()
    assert len(lines) == 1, cp.stderr
    assert lines[0].startswith(
        f"WARNING: no subordinate ids for {NOSUB} in /etc/subuid and /etc/subgid:"
    )
    assert "some images will not work" in lines[0]
    assert "sudo usermod --add-subuids" in lines[0]


def test_user_without_subordinate_ids_is_root_inside():
    cp = as_user(NOSUB, ROOTLESS, "unshare", "sh", "-c", "id -u; cat /proc/self/setgroups")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "0\ndeny\n"


def test_root_gets_the_identity_map_without_helpers(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.environ.get("PYTHONPATH") or REPO,
        # no helper is needed (or used) as root
        "ROOTLESS_NEWUIDMAP": str(tmp_path / "none"),
        "ROOTLESS_NEWGIDMAP": str(tmp_path / "none"),
    }
    cp = subprocess.run(
        [
            ROOTLESS,
            "unshare",
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; readlink /proc/self/ns/user",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert [line.split() for line in lines[:2]] == [["0", "0", "4294967295"]] * 2
    assert lines[2] != os.readlink("/proc/self/ns/user")  # a new namespace all the same
    assert cp.stderr == ""


def test_root_in_process_api_leaves_nothing_behind():
    def child_uid_and_ns() -> int:
        return (
            0 if os.getuid() == 0 and open("/proc/self/setgroups").read().strip() == "allow" else 1
        )

    assert userns.run_in_userns(child_uid_and_ns) == 0
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
        assert f.read().split() == []


@pytest.fixture
def shared_dir():
    """A root-owned 0755 directory the test users can reach (pytest's root tmp dirs are 0700)."""
    d = tempfile.mkdtemp(prefix="rootless-test-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d)


def test_fd_form_is_used_when_the_helper_supports_it(shared_dir):
    """shadow >= 4.14 takes `fd:N` (an fd of /proc/PID) instead of a PID. This host's 4.13 does not,
    so a root-owned wrapper that advertises the form checks what it gets, then calls the real helper."""
    tmp_path = shared_dir
    log = tmp_path / "log"
    log.write_text("")
    log.chmod(0o666)
    wrappers = {}
    for name in ("newuidmap", "newgidmap"):
        w = tmp_path / name
        w.write_text(
            "#!/bin/sh\n"
            "# usage: newuidmap [<pid>|fd:<pidfd>] <uid> <loweruid> <count>\n"
            'case "$1" in fd:*) ;; *) echo "no fd form: $1" >&2; exit 1;; esac\n'
            'dir=$(readlink "/proc/self/fd/${1#fd:}")\n'
            f'echo "{name} $1 $dir" >> {log}\n'
            "shift\n"
            f'exec /usr/bin/{name} "${{dir#/proc/}}" "$@"\n'
        )
        os.chown(w, 0, 0)
        w.chmod(0o4755)  # passes rootless's setuid check; the kernel ignores it on scripts
        wrappers[name] = str(w)
    cp = as_user(
        USER,
        f"ROOTLESS_NEWUIDMAP={wrappers['newuidmap']}",
        f"ROOTLESS_NEWGIDMAP={wrappers['newgidmap']}",
        ROOTLESS,
        "unshare",
        "cat",
        "/proc/self/uid_map",
    )
    assert cp.returncode == 0, cp.stderr
    first = idmap.for_user(USER, pwd.getpwnam(USER).pw_uid).uid_ranges[1]
    expected = [["0", str(pwd.getpwnam(USER).pw_uid)], ["1", str(first.host)]]
    assert [line.split()[:2] for line in cp.stdout.splitlines()] == expected
    calls = log.read_text().splitlines()
    # both helpers run at the same time (rootless.userns), so they log in either order
    assert sorted(c.split()[0] for c in calls) == ["newgidmap", "newuidmap"]
    for c in calls:
        _, target, procdir = c.split()
        assert target.startswith("fd:") and procdir.startswith("/proc/")
