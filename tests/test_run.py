"""`rootless run` end to end as the unprivileged user: process resolution, options, exit codes,
namespaces, mounts, security defaults, stdio and signals, storage drivers and cleanup."""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import Rootless
from support import oci

from rootless import idmap

OV = ("--storage-driver", "overlay")


@pytest.fixture(scope="module")
def rl(tmp_path_factory, registry, busybox_ref):
    r = Rootless(str(tmp_path_factory.mktemp("run")))
    r.trust(registry)
    layout = str(tmp_path_factory.mktemp("layouts") / "ep")
    oci.add_image(
        layout,
        "ep",
        oci.busybox_layers(),
        config={
            "Env": [oci.PATH_ENV, "FOO=from-image", "BAR=img"],
            "Entrypoint": ["/bin/echo", "ep"],
            "Cmd": ["default-cmd"],
            "WorkingDir": "/home/user",
            "User": "user",
        },
    )
    registry.push(layout, "ep", "busybox:ep")
    r("pull", busybox_ref, check=True)
    r("pull", f"{registry.host}/busybox:ep", check=True)
    r.img = busybox_ref
    r.ep = f"{registry.host}/busybox:ep"
    yield r
    r.cleanup()


def run(rl, *args, input=None, driver=OV, network=("--network", "none"), rm=True, **kw):
    argv = [*driver, "run", *(["--rm"] if rm else []), *network, *args]
    return rl(*argv, input=input, **kw)


def leftovers(rl):
    cdir = os.path.join(rl.data_dir, "rootless", "containers")
    rdir = os.path.join(rl.runtime_dir, "rootless")
    return [n for d in (cdir, rdir) if os.path.isdir(d) for n in os.listdir(d)]


def my_mounts(rl):
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if rl.base in ln]


# --- basics and exit codes ------------------------------------------------------------------------


def test_echo_and_cleanup(rl):
    cp = run(rl, rl.img, "echo", "hello from inside")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "hello from inside\n", "")
    assert leftovers(rl) == []
    assert my_mounts(rl) == []


@pytest.mark.parametrize(
    "cmd,code",
    [
        (["sh", "-c", "exit 3"], 3),
        (["sh", "-c", "exit 0"], 0),
        (["false"], 1),
        (["nosuchcommand"], 127),
        (["/no/such/path"], 127),
        (["/etc/passwd"], 126),
        (["/etc"], 126),
    ],
)
def test_exit_codes(rl, cmd, code):
    cp = run(rl, rl.img, *cmd)
    assert cp.returncode == code, cp.stderr
    if code in (126, 127):
        assert cp.stderr.startswith("Error: ") and cp.stderr.count("\n") == 1
    assert leftovers(rl) == []


def test_signal_exit_code_is_128_plus_n(rl):
    cp = run(rl, "--init", rl.img, "sh", "-c", "kill -9 $$")
    assert cp.returncode == 137
    cp = run(rl, "--init", rl.img, "sh", "-c", "kill -TERM $$")
    assert cp.returncode == 143


def test_unknown_image_is_125(rl):
    missing = rl.img.rsplit("/", 1)[0] + "/nope:latest"
    cp = run(rl, missing, "true", timeout=60)
    assert cp.returncode == 125
    assert "Trying to pull" in cp.stderr  # a pull attempt, then one error line
    assert cp.stderr.splitlines()[-1].startswith("Error: ")
    assert leftovers(rl) == []


# --- namespaces ------------------------------------------------------------------------------------


def test_pid1_hostname_uidmap(rl):
    cp = run(
        rl,
        rl.img,
        "sh",
        "-c",
        "echo $$; hostname; cat /proc/self/uid_map; cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
    )
    pid1, host, map0, map1, procs = cp.stdout.split("\n")[:5]
    assert pid1 == "1"
    assert len(host) == 12
    assert map0.split() == ["0", str(os.getuid()), "1"]
    first = idmap.for_user().uid_ranges[1]
    assert map1.split() == ["1", str(first.host), str(first.size)]
    # nothing from the host in the pid namespace (no overlay daemon either): only this shell's own
    # processes (command lines, since busybox briefly shows as `exe` while it re-executes an applet)
    assert "python" not in procs and "fuse" not in procs and "rootless" not in procs, procs
    assert procs.startswith("sh -c echo $$"), procs


def test_hostname_and_name(rl):
    cp = run(
        rl,
        "--hostname",
        "box1",
        "--name",
        "named1",
        rl.img,
        "sh",
        "-c",
        "hostname; cat /etc/hostname; echo; grep box1 /etc/hosts",  # podman writes no newline
    )
    assert cp.stdout.splitlines()[:2] == ["box1", "box1"]
    assert "box1" in cp.stdout.splitlines()[2]


def test_name_in_use(rl):
    cp = run(rl, "--name", "keepme", rl.img, "true", rm=False)
    assert cp.returncode == 0
    rec = [n for n in leftovers(rl)]
    assert len(rec) == 2  # the record dir and the runtime dir
    cfg = os.path.join(rl.data_dir, "rootless", "containers", rec[0], "config.json")
    if not os.path.exists(cfg):
        cfg = os.path.join(rl.data_dir, "rootless", "containers", rec[1], "config.json")
    with open(cfg) as f:
        data = json.load(f)
    assert data["name"] == "keepme" and data["state"] == "exited" and data["exit_code"] == 0
    assert data["image_id"] and data["created"]
    cp = run(rl, "--name", "keepme", rl.img, "true")
    assert cp.returncode == 125 and "already in use" in cp.stderr
    rl("unshare", "rm", "-rf", os.path.join(rl.data_dir, "rootless", "containers"), check=True)
    subprocess.run(["rm", "-rf", os.path.join(rl.runtime_dir, "rootless")], check=True)


def test_network_none_has_only_lo_up(rl):
    cp = run(rl, rl.img, "cat", "/proc/net/dev")
    assert [ln.split(":")[0].strip() for ln in cp.stdout.splitlines()[2:]] == ["lo"]
    script = (
        # the listener's stdin stays open: at EOF of /dev/null busybox nc may close before reading
        "sleep 10 | nc -l -p 7777 > /tmp/got & "
        # connect once the listener is in LISTEN (port 7777 = 0x1E61, state 0A; nc may listen on ::)
        "until cat /proc/net/tcp /proc/net/tcp6 | grep -q ':1E61 [0-9A-F]*:0000 0A'; do sleep 0.05; done; "
        "echo over-lo | nc 127.0.0.1 7777; "
        "for i in $(seq 200); do [ -s /tmp/got ] && break; sleep 0.05; done; cat /tmp/got"
    )
    cp = run(rl, rl.img, "sh", "-c", script)
    assert cp.stdout == "over-lo\n", cp.stderr


def test_network_host(rl):
    cp = run(rl, rl.img, "cat", "/proc/net/dev", network=("--network", "host"))
    with open("/proc/net/dev") as f:
        assert len(cp.stdout.splitlines()) == len(f.read().splitlines())


def test_ipc_uts_cgroup_namespaces_are_new(rl):
    cp = run(
        rl,
        rl.img,
        "sh",
        "-c",
        "for n in ipc uts cgroup mnt; do readlink /proc/self/ns/$n; done",
    )
    mine = [os.readlink(f"/proc/self/ns/{n}") for n in ("ipc", "uts", "cgroup", "mnt")]
    theirs = cp.stdout.split()
    assert len(theirs) == 4
    for a, b in zip(mine, theirs, strict=True):
        assert a != b


# --- process: entrypoint, cmd, env, workdir, user ---------------------------------------------------


def test_image_entrypoint_cmd_user_workdir(rl):
    cp = run(rl, rl.ep)
    assert cp.stdout == "ep default-cmd\n"
    cp = run(rl, rl.ep, "a", "b")
    assert cp.stdout == "ep a b\n"
    cp = run(rl, "--entrypoint", "sh", rl.ep, "-c", "id -u; id -g; id -G; pwd; echo $HOME $FOO")
    assert cp.stdout.split("\n")[:5] == [
        "1000",
        "1000",
        "1000 50",
        "/home/user",
        "/home/user from-image",
    ]
    cp = run(rl, "--entrypoint", "id", rl.ep)  # --entrypoint drops the image's Cmd
    assert cp.stdout.startswith("uid=1000(user)")
    cp = run(rl, "--entrypoint", '["/bin/echo", "x y"]', rl.ep, "z")
    assert cp.stdout == "x y z\n"


def test_env_rules(rl, tmp_path):
    envf = tmp_path / "env"
    envf.write_text("# comment\nFOO=from-file\nBAZ=file\n\nFROMHOST\n")
    os.chmod(tmp_path, 0o755)
    cp = run(
        rl,
        "--entrypoint",
        "env",
        "--env-file",
        str(envf),
        "-e",
        "BAZ=cli",
        "-e",
        "NEW",
        rl.ep,
        env={"FROMHOST": "hv", "NEW": "n"},
    )
    env = dict(line.split("=", 1) for line in cp.stdout.splitlines())
    assert env["FOO"] == "from-file"
    assert env["BAR"] == "img"
    assert env["BAZ"] == "cli"
    assert env["NEW"] == "n"
    assert env["FROMHOST"] == "hv"
    assert env["container"] == "podman"
    assert env["HOME"] == "/home/user"
    assert env["HOSTNAME"]
    cp = run(rl, "--env-file", str(tmp_path / "missing"), rl.img, "true")
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1 and "--env-file" in cp.stderr


def test_workdir_and_user_options(rl):
    cp = run(rl, "-w", "/tmp", "-u", "1000:50", rl.img, "sh", "-c", "pwd; id -u; id -g; echo $HOME")
    assert cp.stdout.split("\n")[:4] == ["/tmp", "1000", "50", "/home/user"]
    # as podman: a -w the image does not have is an error (126), not made
    cp = run(rl, "-w", "/new/dir", rl.img, "true")
    assert cp.returncode == 126, cp.stderr
    assert cp.stderr.startswith('Error: workdir "/new/dir" does not exist on container ')
    assert cp.stderr.count("\n") == 1
    cp = run(rl, "-u", "www-data", rl.img, "id")
    assert cp.stdout.startswith("uid=33(www-data) gid=33(www-data)")
    cp = run(rl, "-u", "user:staff", rl.img, "id", "-g")
    assert cp.stdout == "50\n"
    cp = run(rl, "-u", "4242", rl.img, "sh", "-c", "id -u; id -g; echo $HOME")
    assert cp.stdout.split("\n")[:3] == ["4242", "0", "/"]
    # as podman: the unknown uid gets an /etc/passwd entry (home: the workdir) and a group
    cp = run(
        rl, "-u", "4242", "-w", "/tmp", rl.img, "sh", "-c", "id; echo $HOME; grep 4242 /etc/passwd"
    )
    assert cp.stdout.split("\n")[:3] == [
        "uid=4242(4242) gid=0(root) groups=0(root)",
        "/tmp",
        "4242:*:4242:0:container user:/tmp:/bin/sh",
    ]
    cp = run(rl, "-u", "1000", rl.img, "id")  # the primary group is listed too, as podman does
    assert cp.stdout.startswith("uid=1000(user) gid=1000(user) groups=")
    assert "1000(user)" in cp.stdout.split("groups=")[1]
    cp = run(rl, "-u", "nosuchuser", rl.img, "true")
    # podman 4.3: 126 (the runtime could not start the command)
    assert cp.returncode == 126 and "nosuchuser" in cp.stderr and cp.stderr.count("\n") == 1
    assert leftovers(rl) == []


# --- mounts ----------------------------------------------------------------------------------------


def test_dev_proc_sys(rl):
    script = (
        "ls /dev | tr '\\n' ' '; echo; readlink /dev/ptmx; readlink /dev/fd; "
        "grep -E ' /(proc|sys|dev|dev/pts|dev/shm|dev/mqueue) ' /proc/mounts | cut -d' ' -f2,3,4; "
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c; echo w > /sys/kernel/x || echo sysro"
    )
    cp = run(rl, rl.img, "sh", "-c", script)
    lines = cp.stdout.splitlines()
    devs = set(lines[0].split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd",
            "stdin", "stdout", "stderr"} <= devs  # fmt: skip
    assert "sda" not in devs and "vda" not in devs and "fuse" not in devs
    assert lines[1:3] == ["pts/ptmx", "/proc/self/fd"]
    mounts = {ln.split()[0]: ln.split()[1:] for ln in lines[3:9]}
    assert mounts["/proc"][0] == "proc"
    assert mounts["/sys"][0] == "sysfs" and mounts["/sys"][1].startswith("ro")
    assert mounts["/dev"][0] == "tmpfs"
    assert mounts["/dev/pts"][0] == "devpts"
    assert mounts["/dev/shm"][0] == "tmpfs"
    assert mounts["/dev/mqueue"][0] == "mqueue"
    assert "4" in lines and "sysro" in lines


def test_etc_files_generated(rl):
    cp = run(
        rl,
        "--hostname",
        "hh",
        rl.img,
        "sh",
        "-c",
        "cat /etc/hostname; echo; cat /etc/hosts; grep -c . /etc/resolv.conf; grep -E ' /etc/(hosts|hostname|resolv.conf) ' /proc/mounts | wc -l",
    )
    out = cp.stdout.splitlines()
    assert out[0] == "hh"
    assert any(ln.startswith("127.0.0.1") and "localhost" in ln for ln in out)
    assert out[-1] == "2"  # --network none: the image's resolv.conf stays, as with podman 4.3


def test_volumes(rl, tmp_path):
    src = tmp_path / "vol"
    src.mkdir()
    (src / "f").write_text("from host\n")
    os.chmod(tmp_path, 0o755)
    cp = run(rl, "-v", f"{src}:/data", rl.img, "sh", "-c", "cat /data/f; echo back > /data/g")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "from host\n"
    assert (src / "g").read_text() == "back\n"
    cp = run(rl, "-v", f"{src}:/data:ro", rl.img, "sh", "-c", "cat /data/f; touch /data/h")
    assert cp.returncode == 1 and "Read-only file system" in cp.stderr
    assert not (src / "h").exists()
    for opt in (":ro", ""):  # podman 4.3 refuses a missing bind source, and creates nothing
        cp = run(rl, "-v", f"{tmp_path}/absent/dir:/x{opt}", rl.img, "true")
        assert cp.returncode == 125 and cp.stderr == (
            f"Error: statfs {tmp_path}/absent/dir: no such file or directory\n"
        )
        assert not (tmp_path / "absent").exists()


def test_tmpfs_and_mount(rl, tmp_path):
    src = tmp_path / "m"
    src.mkdir()
    (src / "f").write_text("m\n")
    os.chmod(tmp_path, 0o755)
    cp = run(
        rl,
        "--tmpfs", "/scratch:size=1m,mode=1777",
        "--mount", f"type=bind,source={src},target=/mb,ro",
        "--mount", "type=tmpfs,target=/mt,tmpfs-size=2m",
        rl.img, "sh", "-c",
        "grep -E ' /(scratch|mb|mt) ' /proc/mounts | cut -d' ' -f2,3,4; cat /mb/f; touch /scratch/x /mt/y && echo ok",
    )  # fmt: skip
    lines = cp.stdout.splitlines()
    m = {ln.split()[0]: ln.split()[1:] for ln in lines[:3]}
    assert m["/scratch"][0] == "tmpfs" and "size=1024k" in m["/scratch"][1]
    assert m["/mt"][0] == "tmpfs" and "size=2048k" in m["/mt"][1]
    assert m["/mb"][1].startswith("ro")
    assert lines[3:] == ["m", "ok"]
    cp = run(rl, "--mount", "type=volume,target=/x", rl.img, "true")  # an anonymous volume
    assert cp.returncode == 0, cp.stderr
    cp = run(rl, "--mount", "type=devpts,target=/x", rl.img, "true")
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1


def test_read_only(rl):
    cp = run(
        rl,
        "--read-only",
        rl.img,
        "sh",
        "-c",
        "touch /x 2>&1; touch /tmp/a /run/b /var/tmp/c /dev/shm/d && echo writable",
    )
    assert "Read-only file system" in cp.stdout
    assert "writable" in cp.stdout


def test_writes_go_to_the_container_not_the_image(rl):
    cp = run(rl, rl.img, "sh", "-c", "echo changed > /opt/keep/k; rm /opt/hl1; cat /opt/keep/k")
    assert cp.stdout == "changed\n"
    cp = run(rl, rl.img, "sh", "-c", "cat /opt/keep/k /opt/hl1; ls /opt/data; cat /opt/gone/reborn")
    assert cp.stdout == "modified in layer 2\nhardlinked\nc\nreborn in layer 3\n"


# --- security defaults -----------------------------------------------------------------------------

DEFAULT_CAPS = 0x800405FB  # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP


def caps(text):
    return {
        ln.split(":")[0]: int(ln.split()[1], 16) for ln in text.splitlines() if ln.startswith("Cap")
    }


def test_default_capabilities(rl):
    cp = run(rl, rl.img, "grep", "^Cap", "/proc/self/status")
    c = caps(cp.stdout)
    assert c["CapBnd"] == c["CapPrm"] == c["CapEff"] == DEFAULT_CAPS
    assert c["CapInh"] == c["CapAmb"] == 0  # podman >= 4.0.3 (tests/test_harden_caps.py)
    cp = run(rl, "-u", "1000", rl.img, "grep", "^Cap", "/proc/self/status")
    c = caps(cp.stdout)
    assert c["CapBnd"] == DEFAULT_CAPS and c["CapEff"] == 0 and c["CapPrm"] == 0


def test_cap_add_drop(rl):
    cp = run(
        rl,
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "chown",
        rl.img,
        "grep",
        "^Cap",
        "/proc/self/status",
    )
    c = caps(cp.stdout)
    assert c["CapEff"] == (DEFAULT_CAPS | (1 << 12)) & ~1 == c["CapBnd"]
    cp = run(
        rl,
        "--cap-drop",
        "ALL",
        rl.img,
        "sh",
        "-c",
        "grep ^CapBnd /proc/self/status; chown 1000 /tmp 2>&1 || echo denied",
    )
    assert caps(cp.stdout)["CapBnd"] == 0 and "denied" in cp.stdout
    cp = run(rl, "--cap-add", "CAP_NOT_A_THING", rl.img, "true")
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1 and "NOT_A_THING" in cp.stderr


def test_masked_and_readonly_paths(rl):
    script = (
        "cat /proc/keys /proc/timer_list /proc/interrupts 2>/dev/null | wc -c; ls -A /proc/acpi /sys/firmware | grep -v ':$' | grep -c .; "
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo sysro; "
        "grep -E ' /proc/(sys|bus|fs|irq) ' /proc/mounts | cut -d' ' -f4 | cut -c1-2 | sort -u"
    )
    cp = run(rl, rl.img, "sh", "-c", script)
    assert cp.stdout.splitlines() == ["0", "0", "sysro", "ro"]


def test_seccomp_default_unconfined_and_profile(rl, tmp_path):
    cp = run(rl, rl.img, "grep", "^Seccomp:", "/proc/self/status")
    assert cp.stdout.split() == ["Seccomp:", "2"]
    cp = run(
        rl, "--security-opt", "seccomp=unconfined", rl.img, "grep", "^Seccomp:", "/proc/self/status"
    )
    assert cp.stdout.split() == ["Seccomp:", "0"]
    # as under podman, a user namespace can be created inside (its profile allows unshare/clone3)
    cp = run(rl, rl.img, "unshare", "-U", "true")
    assert (cp.returncode, cp.stderr) == (0, "")
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }))  # fmt: skip
    os.chmod(tmp_path, 0o755)
    cp = run(rl, "--security-opt", f"seccomp={prof}", rl.img, "mkdir", "/tmp/x")
    assert cp.returncode == 1 and "Permission denied" in cp.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    cp = run(rl, "--security-opt", f"seccomp={bad}", rl.img, "true")
    assert cp.returncode == 125 and cp.stderr.count("\n") == 1


def test_no_new_privileges(rl):
    cp = run(
        rl,
        "--security-opt",
        "no-new-privileges",
        rl.img,
        "grep",
        "^NoNewPrivs",
        "/proc/self/status",
    )
    assert cp.stdout.split() == ["NoNewPrivs:", "1"]
    cp = run(rl, rl.img, "grep", "^NoNewPrivs", "/proc/self/status")
    assert cp.stdout.split() == ["NoNewPrivs:", "0"]


def test_privileged(rl):
    cp = run(
        rl,
        "--privileged",
        rl.img,
        "sh",
        "-c",
        "grep -E '^(CapBnd|Seccomp):' /proc/self/status; grep -c ' /proc/keys ' /proc/mounts",
    )
    lines = cp.stdout.split("\n")
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    assert int(lines[0].split()[1], 16) == (1 << (last + 1)) - 1
    assert lines[1].split() == ["Seccomp:", "0"]
    assert lines[2] == "0"


# --- stdio, tty, signals ---------------------------------------------------------------------------


def test_stdin_stdout_binary_passthrough(rl):
    data = bytes(range(256)) * 4096 + b"\x00tail"
    cp = run(rl, "-i", rl.img, "cat", input=data)
    assert cp.returncode == 0 and cp.stdout == data
    cp = run(rl, "-i", rl.img, "sh", "-c", "wc -c; echo eof-seen")
    assert cp.stdout.split() == ["0", "eof-seen"]
    cp = run(rl, rl.img, "cat", input=b"not passed without -i")
    assert cp.stdout == b""
    cp = run(rl, rl.img, "sh", "-c", "echo out; echo err >&2")
    assert (cp.stdout, cp.stderr) == ("out\n", "err\n")


def test_tty(rl):
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child execs rootless on a fresh pty
        try:
            os.execvpe(
                rl.argv0[0],
                [*rl.argv0, *OV, "run", "--rm", "-it", "--network", "none", rl.img, "sh"],
                rl.env,
            )
        finally:
            os._exit(99)
    out = b""

    def read_until(token, timeout=20):
        nonlocal out
        end = time.monotonic() + timeout
        while token not in out and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        return token in out

    import fcntl
    import struct
    import termios

    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 91, 0, 0))
        assert read_until(b"/ # "), out  # the shell's prompt: it reads its input from now on
        os.write(fd, b"tty; stty size; echo T=$TERM\n")
        assert read_until(b"T=xterm\r\n"), out
        assert b"/dev/pts/0" in out and b"33 91" in out
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 101, 0, 0))
        os.kill(pid, signal.SIGWINCH)
        deadline = time.monotonic() + 10
        while b"44 101" not in out and time.monotonic() < deadline:
            os.write(fd, b"stty size\n")
            read_until(b"44 101", 1)
        assert b"44 101" in out
        os.write(fd, b"exit 6\n")
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 6
    assert leftovers(rl) == []


def _start(rl, *args):
    return subprocess.Popen(
        [*rl.argv0, *OV, "run", "--rm", "--network", "none", *args],
        env=rl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_line(proc, text, timeout=20):
    import select

    end = time.monotonic() + timeout
    buf = ""
    while time.monotonic() < end:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            buf += line
            if text in line:
                return buf
    raise AssertionError(f"no {text!r} in {buf!r}")


def test_a_signal_right_after_the_command_starts_is_forwarded(rl):
    """The forwarder is in place before the command runs: a signal sent as soon as the container
    prints is the container's, never rootless's own (SIGUSR1 would end rootless)."""
    for _ in range(5):
        p = _start(
            rl, rl.img, "sh", "-c", "trap 'echo got-usr1; exit 5' USR1; echo up; sleep 5 & wait"
        )
        assert p.stdout.readline() == "up\n"
        p.send_signal(signal.SIGUSR1)
        out, err = p.communicate(timeout=30)
        assert (p.returncode, out) == (5, "got-usr1\n"), err


def test_signals_are_forwarded(rl):
    p = _start(
        rl,
        rl.img,
        "sh",
        "-c",
        "trap 'echo got-usr1' USR1; trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done",
    )
    _wait_for_line(p, "ready")
    p.send_signal(signal.SIGUSR1)
    _wait_for_line(p, "got-usr1")
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 7
    p.stdout.close()
    p.stderr.close()


def test_init_runs_tini_as_pid1(rl):
    cp = run(rl, "--init", rl.img, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$")
    first, me = cp.stdout.splitlines()[:2]
    assert first.startswith("/run/podman-init -- sh")
    assert me != "1"
    p = _start(rl, "--init", rl.img, "sh", "-c", "echo ready; sleep 100")
    _wait_for_line(p, "ready")
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 143
    p.stdout.close()
    p.stderr.close()


def test_killing_rootless_leaves_nothing(rl):
    p = _start(rl, rl.img, "sh", "-c", "echo ready; sleep 100")
    _wait_for_line(p, "ready")
    p.kill()
    p.wait(10)
    p.stdout.close()
    p.stderr.close()
    deadline = time.monotonic() + 20
    while leftovers(rl) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(rl) == []
    assert my_mounts(rl) == []


# --- storage drivers -------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["overlay", "fuse-overlay", "vfs"])
def test_storage_drivers(rl, driver):
    cp = run(rl, rl.img, "sh", "-c", "cat /opt/keep/k; ls /opt/data; echo new > /etc/x; cat /etc/x; ls /etc/motd-layer1 2>&1 | wc -l; ps -o comm | grep -v COMMAND | grep -vxc -e sh -e ps -e grep -e exe || true",
             driver=("--storage-driver", driver))  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    # nothing but the shell and its pipeline is seen in the pid namespace
    assert cp.stdout.split() == ["modified", "in", "layer", "2", "c", "new", "1", "0"]
    assert leftovers(rl) == []
    assert my_mounts(rl) == []


def test_default_driver_is_the_one_info_reports(rootless, registry, busybox_ref):
    # podman's rule: kernel overlay where it works in a user namespace, else fuse-overlay, else vfs
    # (a fresh store: the probe leaves its cache in the runtime dir; more in test_storage.py)
    rootless.trust(registry)
    rootless("pull", busybox_ref, check=True)
    info = json.loads(rootless("info", "--format", "json", check=True).stdout)
    host = info["host"]
    want = (
        "overlay"
        if host["kernelOverlayInUserns"]["usable"]
        else "fuse-overlay"
        if host["fuse"]["devFuseUsable"]
        else "vfs"
    )
    assert info["store"]["graphDriverName"] == want
    cp = run(
        rootless, busybox_ref, "sh", "-c", "grep ' / ' /proc/mounts | cut -d' ' -f3", driver=()
    )
    assert cp.returncode == 0, cp.stderr
    if want != "vfs":
        assert cp.stdout.strip() == {"overlay": "overlay", "fuse-overlay": "fuse.overlay"}[want]
