"""`rootless run` networking end to end (the runtime calls rootless.slirp): published ports, none,
bad input, and no helper left after kill -9 of rootless."""

import os
import re
import signal
import socket
import subprocess
import urllib.request

import pytest
from support.wait import poll


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _helpers(token: str) -> list[int]:
    """Live slirp4netns/pasta processes serving a container whose process command line has ``token``."""
    out = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if not any(b"slirp4netns" in a or b"pasta" in a for a in cmd[:6]):
            continue
        for arg in cmd:
            m = re.fullmatch(rb"/proc/(\d+)/ns/net", arg)
            if m:
                try:
                    with open(f"/proc/{m.group(1).decode()}/cmdline", "rb") as f:
                        target = f.read()
                except OSError:
                    target = b""
                if token.encode() in target:
                    out.append(int(d))
    return out


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def image(rootless, registry, busybox_ref):
    rootless.trust(registry)
    rootless("pull", busybox_ref, check=True)
    return busybox_ref


HTTPD = (
    "mkdir /tmp/{0} && echo hello from run > /tmp/{0}/index.html && exec httpd -f -p 80 -h /tmp/{0}"
)


@pytest.mark.parametrize("mode", ["slirp4netns", "pasta"])
def test_run_publish_and_kill_9(mode, rootless, image):
    port = _free_port()
    token = f"token{port}"
    proc = subprocess.Popen(
        [
            *rootless.argv0,
            "run",
            "--rm",
            "--network",
            mode,
            "-p",
            f"127.0.0.1:{port}:80",
            image,
            "sh",
            "-c",
            HTTPD.format(token),
        ],
        env=rootless.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        body = poll(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read()
        )
        assert body == b"hello from run\n"
        helpers = _helpers(token)
        assert helpers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    # the helper does not outlive rootless, and the port is free again
    poll(lambda: all(not os.path.exists(f"/proc/{p}") or _zombie(p) for p in helpers))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        poll(lambda: s.bind(("127.0.0.1", port)) or True)


def test_run_default_network_is_slirp4netns(rootless, image):
    r = rootless("run", "--rm", image, "sh", "-c", "ip route; cat /etc/resolv.conf; cat /etc/hosts")
    assert r.returncode == 0, r.stderr
    assert "default via 10.0.2.2 dev tap0" in r.stdout
    assert "nameserver 10.0.2.3" in r.stdout
    assert "localhost" in r.stdout


def test_run_network_none_has_only_lo(rootless, image):
    r = rootless("run", "--rm", "--network", "none", image, "sh", "-c", "ip -o link; ip route")
    assert r.returncode == 0, r.stderr
    links = [ln.split(":")[1].strip() for ln in r.stdout.splitlines() if ": " in ln]
    assert links == ["lo"]
    assert "default" not in r.stdout


@pytest.mark.parametrize(
    "args,words",
    [
        (["--network", "bogus"], "unable to find network with name or ID bogus: network not found"),
        (["-p", "8080:80/sctp"], "invalid protocol"),
        (["-p", "x:80"], "invalid host port"),
    ],
)
def test_run_bad_network_input(args, words, rootless, image):
    r = rootless("run", "--rm", *args, image, "true")
    assert r.returncode == 125
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_run_port_conflict(rootless, image):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = rootless("run", "--rm", "-p", f"127.0.0.1:{port}:80", image, "true")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f"Error: host port 127.0.0.1:{port}/tcp is already in use: stop what uses it or publish another host port"
    )


def test_run_publish_all_uses_the_image_exposed_ports(rootless, image):
    token = f"pall{_free_port()}"
    cid = rootless(
        "run", "-d", "-P", "--name", token, image, "sh", "-c", HTTPD.format(token), check=True
    ).stdout.strip()
    try:
        out = rootless("port", token, check=True).stdout
        m = re.search(r"80/tcp -> [0-9.]+:(\d+)", out)
        assert m, out  # the image exposes 80/tcp; -P gave it a random host port
        port = int(m.group(1))
        body = poll(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read()
        )
        assert body == b"hello from run\n"
    finally:
        rootless("rm", "-f", "-t", "0", cid, check=True)
