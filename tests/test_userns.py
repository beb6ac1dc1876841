"""User namespaces for real, as the unprivileged test user: `rootless unshare`, rootless.userns, and
every id-mapping error path in docs/subuid.md, each leaving no process behind."""

import os
import pwd
import shutil
import signal
import uuid

import pytest

from rootless import idmap, syscalls, userns
from rootless.errors import IdMapError

ME = pwd.getpwuid(os.getuid()).pw_name


def my_children() -> list[int]:
    """Children (running or zombie) of this test process."""
    out: list[int] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out += [int(p) for p in f.read().split()]
    return out


def marked_processes(marker: str) -> list[int]:
    """Processes (ours) whose environment carries `marker`: what a `rootless` run left behind."""
    needle = f"ROOTLESS_TEST_MARK={marker}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.fixture
def run(rootless):
    """`rootless` with a marker in the environment; asserts no process of the run survives it."""
    marks = []

    def _run(*args, env=None, **kw):
        mark = uuid.uuid4().hex
        marks.append(mark)
        return rootless(*args, env={**(env or {}), "ROOTLESS_TEST_MARK": mark}, **kw)

    yield _run
    for mark in marks:
        assert marked_processes(mark) == [], "a rootless process was left behind"


@pytest.fixture
def no_leftovers():
    before = set(my_children())
    yield
    assert set(my_children()) - before == set(), "a child process was left behind"


def expected_map(kind: str) -> list[list[str]]:
    m = idmap.for_user()
    return [line.split() for line in (m.uid_map_lines() if kind == "uid" else m.gid_map_lines())]


def map_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


# the happy path --------------------------------------------------------------------------------


def test_unshare_shows_the_subordinate_maps(run):
    m = idmap.for_user()
    assert not m.is_single, (
        "the test user needs /etc/subuid and /etc/subgid entries (setup-host.sh)"
    )
    cp = run("unshare", "cat", "/proc/self/uid_map", check=True)
    assert map_rows(cp.stdout) == expected_map("uid")
    assert map_rows(cp.stdout)[0] == ["0", str(os.getuid()), "1"]
    assert map_rows(cp.stdout)[1][0] == "1"
    cp = run("unshare", "cat", "/proc/self/gid_map", check=True)
    assert map_rows(cp.stdout) == expected_map("gid")
    assert cp.stderr == ""


def test_unshare_id_is_root(run):
    cp = run("unshare", "id", "-u", check=True)
    assert cp.stdout == "0\n"
    assert run("unshare", "id", "-g", check=True).stdout == "0\n"


def test_file_created_as_uid_33_is_owned_by_subuid_start_plus_32(run, tmp_path):
    m = idmap.for_user()
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    target = d / "www-data-file"
    # chdir first (as container root): tmp_path's parents are 0700, so uid 33 could not walk them
    code = (
        "import os, sys; os.chdir(sys.argv[1]); os.setgroups([]); os.setresgid(33, 33, 33); "
        "os.setresuid(33, 33, 33); open('www-data-file', 'w').write('hi')"
    )
    run("unshare", shutil.which("python3") or "python3", "-c", code, str(d), check=True)
    st = os.stat(target)
    assert st.st_uid == m.uid_ranges[1].host + 32
    assert st.st_gid == m.gid_ranges[1].host + 32
    # and `rootless unshare` sees it as 33 again, and can remove it
    assert run("unshare", "stat", "-c", "%u:%g", str(target), check=True).stdout == "33:33\n"


def test_exit_codes_pass_through(run):
    assert run("unshare", "sh", "-c", "exit 7").returncode == 7
    assert run("unshare", "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    cp = run("unshare", "no-such-command-here")
    assert cp.returncode == 127
    assert cp.stderr == "Error: no-such-command-here: command not found\n"


def test_environment_and_options_pass_through(run):
    cp = run("unshare", "sh", "-c", 'echo "$ROOTLESS_UNSHARE $FOO"', env={"FOO": "bar"}, check=True)
    assert cp.stdout == "1 bar\n"
    # options after the command belong to the command
    assert run("unshare", "ls", "-d", "/", check=True).stdout == "/\n"


def test_default_command_is_the_shell(run):
    cp = run("unshare", input="id -u; exit 3\n", env={"SHELL": "/bin/sh"})
    assert (cp.returncode, cp.stdout) == (3, "0\n")


def test_malformed_line_warns_and_still_works(run, tmp_path):
    sub = tmp_path / "subuid"
    first = idmap.for_user().uid_ranges[1]  # the user's real range (newuidmap checks it), then junk
    sub.write_text(f"{ME}:{first.host}:{first.size}\n{ME}:oops\n")
    cp = run("unshare", "id", "-u", env={"ROOTLESS_SUBUID_FILE": str(sub)}, check=True)
    assert cp.stdout == "0\n"
    assert f"{sub}:2: malformed line skipped" in cp.stderr
    assert len(cp.stderr.splitlines()) == 1


# the API ------------------------------------------------------------------------------------------


def test_run_in_userns_returns_the_childs_result(no_leftovers):
    assert userns.run_in_userns(lambda: os.getuid() + 3) == 3
    assert userns.run_in_userns(lambda: None) == 0

    def mounts_tmpfs(path: str) -> int:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        syscalls.mount("tmpfs", path, "tmpfs")
        return 0

    assert userns.run_in_userns(mounts_tmpfs, "/mnt") == 0


def test_fork_userns_extra_flags_and_wait(no_leftovers):
    mine = os.readlink("/proc/self/ns/uts")
    with userns.fork_userns(
        lambda: os.readlink("/proc/self/ns/uts") != mine or 9,
        extra_unshare_flags=syscalls.CLONE_NEWUTS,
    ) as child:
        assert child.pid > 0
        assert child.wait() == 1  # True: a new UTS namespace
    child = userns.fork_userns(lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert child.wait() == 128 + signal.SIGKILL


def test_child_exception_is_one_line_and_125(capfd, no_leftovers):
    def boom():
        raise ValueError("bad thing")

    assert userns.run_in_userns(boom) == 125
    err = capfd.readouterr().err
    # one line, and no Python type name (errors.describe): "invalid value" for a ValueError
    assert err == "Error: in the user namespace: invalid value: bad thing\n"


def test_range_too_small_shows_as_einval(tmp_path, capfd, no_leftovers):
    """What the images engineer catches: chown to an unmapped id fails with EINVAL."""
    f = tmp_path / "f"
    f.write_text("")

    def chown_outside():
        try:
            os.chown(f, 70000, 70000)
        except OSError as e:
            return e.errno
        return 0

    assert userns.run_in_userns(chown_outside) == 22  # EINVAL


# fallback and errors ---------------------------------------------------------------------------------


def test_fallback_without_entries_warns_once(tmp_path, monkeypatch, capfd, no_leftovers):
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("ROOTLESS_SUBUID_FILE", str(empty))
    monkeypatch.setenv("ROOTLESS_SUBGID_FILE", str(empty))
    monkeypatch.setattr(userns, "_warned_single", False)

    def maps() -> int:
        with open("/proc/self/uid_map") as u, open("/proc/self/setgroups") as g:
            print(u.read().split(), g.read().strip(), flush=True)
        return 0

    assert userns.run_in_userns(maps) == 0
    assert userns.run_in_userns(maps) == 0
    out, err = capfd.readouterr()
    assert out == f"['0', '{os.getuid()}', '1'] deny\n" * 2
    assert err.count("some images will not work") == 1
    assert err.startswith(f"WARNING: no subordinate ids for {ME} in {empty} and {empty}:")


def test_fallback_with_nsswitch_sss_says_so(run, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    ns = tmp_path / "nsswitch.conf"
    ns.write_text("subid: sss\n")
    env = {
        "ROOTLESS_SUBUID_FILE": str(empty),
        "ROOTLESS_SUBGID_FILE": str(empty),
        "ROOTLESS_NSSWITCH_FILE": str(ns),
    }
    cp = run("unshare", "cat", "/proc/self/uid_map", env=env, check=True)
    assert map_rows(cp.stdout) == [["0", str(os.getuid()), "1"]]
    assert cp.stderr.count("\n") == 1
    assert "some images will not work" in cp.stderr
    assert f"getsubids {ME}" in cp.stderr


def test_range_overlapping_own_uid(run, tmp_path):
    sub = tmp_path / "subuid"
    sub.write_text(f"{ME}:{os.getuid() - 10}:65536\n")
    cp = run("unshare", "true", env={"ROOTLESS_SUBUID_FILE": str(sub)})
    assert cp.returncode == 125
    assert cp.stderr.startswith(f"Error: {sub}:1: the range {os.getuid() - 10}-")
    assert f"contains {ME}'s own uid {os.getuid()}" in cp.stderr
    assert cp.stderr.count("\n") == 1


def test_missing_helper(run, tmp_path, monkeypatch, no_leftovers):
    cp = run("unshare", "true", env={"ROOTLESS_NEWUIDMAP": str(tmp_path / "newuidmap")})
    assert cp.returncode == 125
    assert cp.stderr == (
        f"Error: newuidmap not found at {tmp_path}/newuidmap (ROOTLESS_NEWUIDMAP), and your subordinate ids "
        "need it; install the uidmap package: sudo apt-get install uidmap\n"
    )
    monkeypatch.setenv("ROOTLESS_NEWGIDMAP", str(tmp_path / "nope"))
    with pytest.raises(
        IdMapError, match="install the uidmap package: sudo apt-get install uidmap$"
    ):
        userns.run_in_userns(lambda: 0)


def test_helper_not_setuid(run, tmp_path, monkeypatch, no_leftovers):
    copy = tmp_path / "newuidmap"
    shutil.copy("/usr/bin/newuidmap", copy)  # a copy by the user loses setuid root
    cp = run("unshare", "true", env={"ROOTLESS_NEWUIDMAP": str(copy)})
    assert cp.returncode == 125
    assert cp.stderr.startswith(f"Error: {copy} is not setuid root and has no file capabilities")
    assert f"sudo chmod u+s {copy}" in cp.stderr
    assert cp.stderr.count("\n") == 1
    monkeypatch.setenv("ROOTLESS_NEWUIDMAP", str(copy))
    with pytest.raises(IdMapError, match="is not setuid root"):
        userns.fork_userns(lambda: 0)


def test_helper_failure_is_condensed_and_nothing_is_left(
    run, tmp_path, monkeypatch, capfd, no_leftovers
):
    # ranges that are not ours in /etc/subuid: rootless asks, newuidmap refuses
    sub = tmp_path / "subuid"
    sub.write_text(f"{ME}:300000:65536\n")
    cp = run("unshare", "true", env={"ROOTLESS_SUBUID_FILE": str(sub)})
    assert cp.returncode == 125
    assert cp.stderr.startswith(
        "Error: newuidmap failed: newuidmap: uid range [1-65537) -> [300000-365536) not allowed; "
        f"the ranges rootless read from {sub} for {ME} must be ones newuidmap allows"
    )
    assert f"getsubids {ME}" in cp.stderr
    assert cp.stderr.count("\n") == 1

    monkeypatch.setenv("ROOTLESS_SUBUID_FILE", str(sub))
    ran = tmp_path / "ran"
    with pytest.raises(IdMapError, match="^newuidmap failed"):
        userns.fork_userns(lambda: ran.write_text("the child must never run"))
    assert not ran.exists()
    assert capfd.readouterr().err == ""


def test_unshare_failure_kills_and_reaps_the_child(no_leftovers):
    with pytest.raises(IdMapError, match=r"^cannot create a user namespace \(Invalid argument\)"):
        userns.fork_userns(lambda: 0, extra_unshare_flags=0x1)  # not a namespace flag: EINVAL
