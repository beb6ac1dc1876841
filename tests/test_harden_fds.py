"""No host file descriptor reaches a container (issue #14): every fd above stdio that rootless
inherits (a directory, a file, a socket, the user's terminal, an O_PATH fd) is closed before the
container's process runs, through `run` and `exec` (`exec -w /proc/self/fd/N` too), except
--preserve-fds N and systemd's socket activation (LISTEN_FDS), as podman."""

import os
import socket
import subprocess

import pytest
from conftest import Rootless

SECRET = "host-secret-4711"


@pytest.fixture(scope="module")
def r(tmp_path_factory, registry, busybox_ref):
    r = Rootless(str(tmp_path_factory.mktemp("harden-fds")))
    r.trust(registry)
    r("pull", busybox_ref, check=True)
    r.img = busybox_ref
    host = tmp_path_factory.mktemp("host-dir")
    (host / "secret").write_text(SECRET + "\n")
    r.host = str(host)
    yield r
    r("rm", "-a", "-f", "-t", "0")
    r.cleanup()


def _inherited(r):
    """fds of every kind, at known numbers: {number: kind} and the fds to close afterwards."""
    d = os.open(r.host, os.O_RDONLY | os.O_DIRECTORY)
    f = os.open(os.path.join(r.host, "secret"), os.O_RDONLY)
    s1, s2 = socket.socketpair()
    master, slave = os.openpty()
    p = os.open(r.host, os.O_PATH)
    fds = {d: "dir", f: "file", s1.fileno(): "socket", slave: "tty", p: "O_PATH"}
    return fds, [d, f, p, master, slave], [s1, s2]


def _call(r, *args, pass_fds=(), env=None, shell_redirects=""):
    argv = [*r.argv0, *args]
    if shell_redirects:
        argv = ["sh", "-c", f'exec "$@" {shell_redirects}', "sh", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, pass_fds=pass_fds,
                          env={**r.env, **(env or {})})  # fmt: skip


PROBE = (
    "for fd in $FDS; do [ -e /proc/self/fd/$fd ] && echo LEAK $fd; "
    "cat /proc/self/fd/$fd/secret 2>/dev/null; ls /proc/self/fd/$fd/ 2>/dev/null; done; "
    "ls /proc/self/fd | tr '\\n' ' '"
)


def _check(cp, fds):
    assert cp.returncode == 0, cp.stderr
    assert "LEAK" not in cp.stdout and SECRET not in cp.stdout, (fds, cp.stdout)
    assert cp.stdout.split() == ["0", "1", "2", "3"], cp.stdout  # 3: ls's own directory


def test_run_passes_no_inherited_fd(r):
    fds, raw, socks = _inherited(r)
    try:
        nums = " ".join(map(str, fds))
        cp = _call(r, "run", "--rm", "--network", "none", "-e", f"FDS={nums}", r.img, "sh", "-c",
                   PROBE, pass_fds=tuple(fds))  # fmt: skip
        _check(cp, fds)
        # the reported attack, as a shell user tries it: exec 7</home/USER
        cp = _call(r, "run", "--rm", "--network", "none", r.img, "sh", "-c",
                   "cat /proc/self/fd/7/secret; cd /proc/self/fd/7 && ls ..",
                   shell_redirects=f"7<{r.host}")  # fmt: skip
        assert SECRET not in cp.stdout and "work" not in cp.stdout.split(), cp.stdout
        # a tty on stdio is the container's own pty with -t, and the caller's fds stay out
        cp = _call(r, "run", "--rm", "-t", "--network", "none", "-e", f"FDS={nums}", r.img, "sh",
                   "-c", PROBE, pass_fds=tuple(fds))  # fmt: skip
        assert "LEAK" not in cp.stdout and SECRET not in cp.stdout, cp.stdout
    finally:
        for fd in raw:
            os.close(fd)
        for s in socks:
            s.close()


def test_exec_passes_no_inherited_fd(r):
    r("run", "-d", "--name", "fds", "--network", "none", r.img, "sleep", "1000", check=True)
    fds, raw, socks = _inherited(r)
    try:
        nums = " ".join(map(str, fds))
        for flags in ((), ("-u", "1000"), ("-t",)):
            cp = _call(r, "exec", *flags, "-e", f"FDS={nums}", "fds", "sh", "-c", PROBE,
                       pass_fds=tuple(fds))  # fmt: skip
            if flags == ("-t",):
                assert "LEAK" not in cp.stdout and SECRET not in cp.stdout, cp.stdout
            else:
                _check(cp, fds)
        d = next(n for n, kind in fds.items() if kind == "dir")
        for fd in (d, next(n for n, kind in fds.items() if kind == "O_PATH")):
            cp = _call(r, "exec", "-w", f"/proc/self/fd/{fd}", "fds", "sh", "-c", "cat secret; ls ..",
                       pass_fds=tuple(fds))  # fmt: skip
            assert cp.returncode != 0 and SECRET not in cp.stdout, cp.stdout
            assert "work" not in cp.stdout.split(), cp.stdout
            assert cp.stderr.startswith("Error: ") and "Error:" not in cp.stderr[7:], cp.stderr
        cp = _call(r, "run", "--rm", "--network", "none", "-w", f"/proc/self/fd/{d}", r.img,
                   "cat", "secret", pass_fds=tuple(fds))  # fmt: skip
        assert cp.returncode != 0 and SECRET not in cp.stdout, cp.stdout
    finally:
        for fd in raw:
            os.close(fd)
        for s in socks:
            s.close()
        r("rm", "-f", "-t", "0", "fds")


def test_preserve_fds_and_socket_activation(r):
    probe = "cat <&3; echo x >&4; ls /proc/self/fd | tr '\\n' ' '; echo; env | grep ^LISTEN_ | sort"
    redirects = f"3<{r.host}/secret 4>/dev/null 5<{r.host}"
    cp = _call(r, "run", "--rm", "--network", "none", "--preserve-fds", "2", r.img, "sh", "-c",
               probe, shell_redirects=redirects)  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0] == SECRET and lines[1].split() == ["0", "1", "2", "3", "4", "5"], lines
    assert len(lines) == 2, lines  # fd 5 above is ls's own; no LISTEN_* without socket activation
    # systemd's socket activation: LISTEN_FDS for this very process (LISTEN_PID unset or ours)
    cp = _call(r, "run", "--rm", "--network", "none", r.img, "sh", "-c", probe,
               shell_redirects=redirects, env={"LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"})  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0] == SECRET and lines[1].split() == ["0", "1", "2", "3", "4", "5"], lines
    assert lines[2:] == ["LISTEN_FDNAMES=a:b", "LISTEN_FDS=2", "LISTEN_PID=1"], lines
    # LISTEN_FDS meant for another process passes nothing
    cp = _call(r, "run", "--rm", "--network", "none", r.img, "sh", "-c", "ls /proc/self/fd",
               shell_redirects=redirects, env={"LISTEN_FDS": "2", "LISTEN_PID": "1"})  # fmt: skip
    assert cp.stdout.split() == ["0", "1", "2", "3"], cp.stdout
    # exec --preserve-fds
    r("run", "-d", "--name", "pfds", "--network", "none", r.img, "sleep", "1000", check=True)
    try:
        cp = _call(r, "exec", "--preserve-fds", "1", "pfds", "sh", "-c", "cat <&3; ls /proc/self/fd",
                   shell_redirects=redirects)  # fmt: skip
        assert cp.stdout.split() == [SECRET, "0", "1", "2", "3", "4"], cp.stdout
    finally:
        r("rm", "-f", "-t", "0", "pfds")
    # an fd that is not there is podman's error
    cp = _call(r, "run", "--rm", "--network", "none", "--preserve-fds", "1", r.img, "true")
    assert cp.returncode == 125
    assert cp.stderr.strip() == (
        "Error: file descriptor 3 is not available - the preserve-fds option requires that all "
        "file descriptors must be passed"
    ), cp.stderr
