"""slirp4netns and pasta for real, as the unprivileged user, against a stand-in container.

The stand-in is what the runtime will create: a process in its own user+net namespace
(``unshare --user --map-root-user --net``); commands run inside it with ``nsenter -U -n``. Each test
asserts it leaves no helper process behind (every helper's command line names the sandbox's netns).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.net import free_port
from support.wait import poll

from rootless import slirp
from rootless.errors import NetworkError
from rootless.network import etc
from rootless.network import ports as netports
from rootless.network.ports import parse_publish

BUSYBOX = "/bin/busybox"
MODES = ["slirp4netns", "pasta"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pids_mentioning(marker: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if marker.encode() in cmd:
            out.append(int(d))
    return out


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except OSError:
        return True


class Sandbox:
    """A stand-in container: a sleeping process in new user and network namespaces."""

    def __init__(self, tmp_path):
        self.proc = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--net", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        own = os.readlink("/proc/self/ns/user")
        poll(lambda: os.readlink(f"/proc/{self.pid}/ns/user") != own)
        self.netns = f"/proc/{self.pid}/ns/net"
        self.userns = f"/proc/{self.pid}/ns/user"
        self.runtime_dir = str(tmp_path / f"rt{self.pid}")
        os.mkdir(self.runtime_dir, 0o700)
        self.children: list[subprocess.Popen] = []

    def cmd(self, *argv):
        return ["nsenter", "--preserve-credentials", "-U", "-n", "-t", str(self.pid), *argv]

    def run(self, *argv, check=True, timeout=30, **kw):
        return subprocess.run(
            self.cmd(*argv), capture_output=True, text=True, check=check, timeout=timeout, **kw
        )

    def spawn(self, *argv, **kw):
        p = subprocess.Popen(self.cmd(*argv), stdin=subprocess.DEVNULL, **kw)
        self.children.append(p)
        return p

    def python(self, code: str, **kw):
        env = dict(os.environ, PYTHONPATH=REPO)
        return self.run(sys.executable, "-c", textwrap.dedent(code), env=env, **kw)

    def close(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
            p.wait()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def sandbox(tmp_path):
    boxes = []

    def make():
        box = Sandbox(tmp_path)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.close()
    # no helper of any sandbox survives the test
    for box in boxes:
        left = poll(
            lambda box=box: not [p for p in pids_mentioning(box.netns) if not gone(p)] or None, 10
        )
        assert left


@pytest.fixture
def www(tmp_path):
    d = tmp_path / "www"
    d.mkdir()
    (d / "index.html").write_text("hello from the container\n")
    os.chmod(tmp_path, 0o755)
    return str(d)


def start_httpd(box, www):
    box.spawn(BUSYBOX, "httpd", "-f", "-p", "80", "-h", www)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def assert_stopped(net):
    net.stop()
    assert gone(net.pid) and gone(net.helper_pid)


@pytest.mark.parametrize("mode", MODES)
def test_published_tcp_port_serves_the_containers_httpd(mode, sandbox, www):
    box = sandbox()
    port = free_port()
    net = slirp.start(
        mode, box.netns, box.userns, box.runtime_dir, {}, parse_publish(f"127.0.0.1:{port}:80")
    )
    try:
        assert [str(p) for p in net.ports] == [f"127.0.0.1:{port}->80/tcp"]
        start_httpd(box, www)
        body = poll(lambda: fetch(f"http://127.0.0.1:{port}/index.html"))
        assert body == "hello from the container\n"
        if mode == "slirp4netns":
            (entry,) = net.list_forwards()
            assert entry["host_port"] == port and entry["guest_port"] == 80
            assert entry["host_addr"] == "127.0.0.1"
    finally:
        assert_stopped(net)
    # the port is free again
    netports.resolve_ports(parse_publish(f"127.0.0.1:{port}:80"))


@pytest.mark.parametrize("mode", MODES)
def test_random_host_port_and_range(mode, sandbox, www):
    box = sandbox()
    base = free_port()
    ports = parse_publish("127.0.0.1::80") + parse_publish(f"127.0.0.1:{base}-{base + 1}:80-81")
    if any(p.host_port and not _free(p.host_port) for p in ports):
        pytest.fail(f"port {base + 1} happened to be in use; rerun")
    net = slirp.start(mode, box.netns, box.userns, box.runtime_dir, {}, ports)
    try:
        start_httpd(box, www)
        random_port = net.ports[0].host_port
        assert random_port > 0
        for p in (random_port, base):
            assert poll(lambda p=p: fetch(f"http://127.0.0.1:{p}/")) == "hello from the container\n"
    finally:
        assert_stopped(net)


def _free(port):
    try:
        netports.resolve_ports(parse_publish(f"127.0.0.1:{port}:1"))
        return True
    except NetworkError:
        return False


UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"echo:" + data, peer)
"""


def udp_roundtrip(box, net, server_ip: str, port: int) -> bytes:
    box.spawn(sys.executable, "-c", UDP_ECHO)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(0.2)

        def ask():
            c.sendto(b"ping", (server_ip, port))
            return c.recv(2048)

        return poll(ask)


UDP_CASES = [
    # (mode, options, host ip to publish on and send to)
    ("slirp4netns", {"allow_host_loopback": True}, "127.0.0.1"),
    # without host loopback, libslirp cannot send UDP replies back to a loopback client (podman
    # #4586); clients on the host's own address work
    ("slirp4netns", {}, "HOSTADDR"),
    # pasta 2023-03 (Debian 12) loses UDP replies to loopback clients (its splice path); clients on
    # the host's own address work when their address is mapped to the gateway (--map-gw: without
    # it the container sees its own address as the source)
    ("pasta", {"args": ["--map-gw"]}, "HOSTADDR"),
]


@pytest.mark.parametrize("mode,opts,ip", UDP_CASES)
def test_udp_forwarding(mode, opts, ip, sandbox):
    box = sandbox()
    if ip == "HOSTADDR":
        ip = slirp.host_address(etc.host_gateway())
        assert ip, "this test needs a host with a default route"
    port = free_port(socket.SOCK_DGRAM)
    ports = parse_publish(f"{ip}:{port}:53/udp")
    net = slirp.start(mode, box.netns, box.userns, box.runtime_dir, opts, ports)
    try:
        assert udp_roundtrip(box, net, ip, port) == b"echo:ping"
    finally:
        assert_stopped(net)


def test_none_has_only_lo_up_and_no_route_out(sandbox):
    box = sandbox()
    net = slirp.start("none", box.netns, box.userns, box.runtime_dir, {}, [])
    out = box.python(
        """
        import json, socket
        from rootless.network import netlink
        netlink.loopback_up()
        state = netlink.verify_netns()
        try:
            socket.create_connection(("10.0.2.2", 80), timeout=2)
            reach = "connected"
        except OSError as e:
            reach = e.strerror
        print(json.dumps({"state": state, "default": netlink.has_default_route(), "reach": reach}))
        """
    )
    got = json.loads(out.stdout)
    assert sorted(got["state"]["links"]) == ["lo"]
    assert got["state"]["links"]["lo"]["up"]
    assert "127.0.0.1/8" in got["state"]["links"]["lo"]["addresses"]
    assert got["default"] is False
    assert got["reach"] == "Network is unreachable"
    assert net.pid is None
    net.stop()


def test_slirp4netns_configures_the_container_as_podman(sandbox):
    box = sandbox()
    net = slirp.start("slirp4netns", box.netns, box.userns, box.runtime_dir, {}, [])
    try:
        out = box.python(
            """
            import json
            from rootless.network import netlink
            netlink.loopback_up()
            print(json.dumps(netlink.verify_netns("tap0", "10.0.2.100/24", "10.0.2.2")))
            """
        )
        state = json.loads(out.stdout)
        assert state["links"]["tap0"]["mtu"] == 65520
        assert net.address == "10.0.2.100" and net.gateway == "10.0.2.2"
        # podman's: slirp4netns's DNS first, the host's non-loopback nameservers after it
        assert net.resolv_conf().startswith("nameserver 10.0.2.3\n")
        assert "10.0.2.100\tctr" in net.hosts("ctr").splitlines()
        cmdline = open(f"/proc/{net.helper_pid}/cmdline", "rb").read().split(b"\0")
        for flag in (
            b"--configure",
            b"--mtu=65520",
            b"--disable-host-loopback",
            b"--enable-sandbox",
            b"--enable-seccomp",
        ):
            assert flag in cmdline
        assert os.path.exists(net.api_socket)
    finally:
        assert_stopped(net)


def test_slirp4netns_options_mtu_and_cidr(sandbox):
    box = sandbox()
    _, opts = slirp.parse_network("slirp4netns:mtu=1500,cidr=10.9.8.0/24")
    net = slirp.start("slirp4netns", box.netns, box.userns, box.runtime_dir, opts, [])
    try:
        out = box.python(
            """
            import json
            from rootless.network import netlink
            print(json.dumps(netlink.verify_netns("tap0", "10.9.8.100/24", "10.9.8.2")))
            """
        )
        assert json.loads(out.stdout)["links"]["tap0"]["mtu"] == 1500
        assert "nameserver 10.9.8.3" in net.resolv_conf()
    finally:
        assert_stopped(net)


@pytest.fixture
def host_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from the host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    t.join()


def wget(box, url):
    return box.run(BUSYBOX, "wget", "-q", "-O", "-", url, check=False, timeout=20)


@pytest.mark.parametrize("allow", [True, False])
def test_slirp4netns_host_loopback(allow, sandbox, host_server):
    box = sandbox()
    opts = {"allow_host_loopback": True} if allow else {}
    net = slirp.start("slirp4netns", box.netns, box.userns, box.runtime_dir, opts, [])
    try:
        r = wget(box, f"http://10.0.2.2:{host_server}/")
        if allow:
            assert r.returncode == 0 and r.stdout == "hello from the host\n"
            assert ("10.0.2.2", "host.containers.internal") in net.hosts_entries()
        else:
            assert r.returncode != 0 and r.stdout == ""
            assert ("10.0.2.2", "host.containers.internal") not in net.hosts_entries()
    finally:
        assert_stopped(net)


def test_pasta_reaches_the_host_loopback_through_its_gateway(sandbox, host_server):
    """Only with podman's --map-gw; by default (and with --no-map-gw) the host's loopback is out."""
    box = sandbox()
    net = slirp.start("pasta", box.netns, box.userns, box.runtime_dir, {"args": ["--map-gw"]}, [])
    try:
        ((ip, name),) = net.hosts_entries()
        assert name == "host.containers.internal"
        r = wget(box, f"http://{ip}:{host_server}/")
        assert r.returncode == 0 and r.stdout == "hello from the host\n"
        assert net.resolv_conf().startswith("nameserver 169.254.1.1\n")
    finally:
        assert_stopped(net)
    for args in ([], ["--no-map-gw"]):
        _pasta_no_host_loopback(sandbox, host_server, ip, args)


def _pasta_no_host_loopback(sandbox, host_server, ip, args):
    box2 = sandbox()
    net = slirp.start("pasta", box2.netns, box2.userns, box2.runtime_dir, {"args": args}, [])
    try:
        assert net.hosts_entries() == []
        r = box2.python(
            f"""
            import socket
            try:
                socket.create_connection(("{ip}", {host_server}), timeout=1)
                print("connected")
            except OSError as e:
                print("failed", e)
            """
        )
        assert r.stdout.startswith("failed")
    finally:
        assert_stopped(net)


PEER_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80))
s.listen(5)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode() + b"\\n")
    c.close()
"""


@pytest.mark.parametrize("mode", MODES)
def test_client_source_address_seen_by_the_container(mode, sandbox):
    """pasta keeps the client's address; slirp4netns shows its gateway (documented difference)."""
    box = sandbox()
    port = free_port()
    net = slirp.start(
        mode, box.netns, box.userns, box.runtime_dir, {}, parse_publish(f"127.0.0.1:{port}:80")
    )
    try:
        box.spawn(sys.executable, "-c", PEER_SERVER)

        def peer():
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                return c.makefile().readline().strip()

        seen = poll(peer)
        assert seen == ("127.0.0.1" if mode == "pasta" else "10.0.2.2")
    finally:
        assert_stopped(net)


@pytest.mark.parametrize("mode", MODES)
def test_port_conflict_is_a_clean_error(mode, sandbox):
    box = sandbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(NetworkError) as e:
            slirp.start(
                mode,
                box.netns,
                box.userns,
                box.runtime_dir,
                {},
                parse_publish(f"127.0.0.1:{port}:80"),
            )
    assert str(e.value) == (
        f"host port 127.0.0.1:{port}/tcp is already in use: stop what uses it or publish another host port"
    )
    assert e.value.exit_code == 125
    assert pids_mentioning(box.netns) == []


@pytest.mark.parametrize("mode,package", [("slirp4netns", "slirp4netns"), ("pasta", "passt")])
def test_missing_binary_names_the_package(mode, package, sandbox, tmp_path, monkeypatch):
    box = sandbox()
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(NetworkError) as e:
        slirp.start(mode, box.netns, box.userns, box.runtime_dir, {}, [])
    assert f"install the Debian package {package}" in str(e.value)
    assert pids_mentioning(box.netns) == []


@pytest.mark.parametrize("mode", MODES)
def test_helper_dying_at_startup_is_one_line_and_leaves_nothing(mode, sandbox, tmp_path):
    box = sandbox()
    bad = str(tmp_path / "no-such-netns")
    with pytest.raises(NetworkError) as e:
        slirp.start(mode, bad, box.userns, box.runtime_dir, {}, [])
    msg = str(e.value)
    assert msg.startswith(f"{mode} failed to start: ") and "\n" not in msg
    assert pids_mentioning(bad) == []


OWNER = """
import os, signal, sys, time
from rootless import slirp
from rootless.network.ports import parse_publish
mode, netns, userns, rt, port, holder = sys.argv[1:]
net = slirp.start(mode, netns, userns, rt, {}, parse_publish(f"127.0.0.1:{port}:80"))
print(net.pid, net.helper_pid, flush=True)
if holder == "wait":   # a monitor: wait for the container to exit, then exit without stop()
    while os.path.exists(netns):
        time.sleep(0.02)
    sys.exit(0)
time.sleep(3600)
"""


def start_owner(box, mode, how):
    """A stand-in for rootless: it starts the helper and holds the exit fd."""
    port = free_port()
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, mode, box.netns, box.userns, box.runtime_dir, str(port), how],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    box.children.append(owner)
    pids = [int(x) for x in owner.stdout.readline().split()]
    assert len(pids) == 2 and all(not gone(p) for p in pids)
    return owner, pids, port


@pytest.mark.parametrize("mode", MODES)
def test_helper_dies_with_sigkill_of_its_owner(mode, sandbox):
    box = sandbox()
    owner, pids, port = start_owner(box, mode, "sleep")
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert poll(lambda: all(gone(p) for p in pids), 10)
    assert _free(port)
    # the container itself is still alive: only the helper went
    assert box.proc.poll() is None


@pytest.mark.parametrize("mode", MODES)
def test_helper_never_outlives_the_container(mode, sandbox):
    box = sandbox()
    owner, pids, port = start_owner(box, mode, "wait")
    box.proc.kill()  # the container dies; its monitor exits without calling stop()
    box.proc.wait()
    assert owner.wait(timeout=10) == 0
    assert poll(lambda: all(gone(p) for p in pids), 10)
    assert _free(port)


@pytest.mark.parametrize("mode", MODES)
def test_handle_state_round_trip(mode, sandbox):
    """Another process (rootless port / cleanup) can describe and wait for a helper it did not start."""
    box = sandbox()
    port = free_port()
    net = slirp.start(
        mode, box.netns, box.userns, box.runtime_dir, {}, parse_publish(f"127.0.0.1:{port}:80")
    )
    try:
        state = json.loads(json.dumps(net.to_dict()))
        other = slirp.NetworkHandle.from_dict(state)
        assert (
            other.ports == net.ports and other.mode == mode and other.helper_pid == net.helper_pid
        )
        assert other.resolv_conf() == net.resolv_conf() and other.hosts("c") == net.hosts("c")
        net.release()  # what the container's monitor exiting does
        other.stop()
        assert gone(net.helper_pid)
    finally:
        assert_stopped(net)


def test_helpers_info():
    info = slirp.helpers_info()
    assert info["slirp4netns"]["available"] and info["slirp4netns"]["version"].startswith(
        "slirp4netns version"
    )
    assert info["pasta"]["available"] and info["pasta"]["package"] == "passt"
    assert "unknown" not in info["pasta"]["version"]


def test_slirp4netns_api_socket_in_a_deep_runtime_dir(sandbox, www):
    """A container's runtime dir (XDG_RUNTIME_DIR/rootless/<64-hex id>) can exceed sockaddr_un."""
    box = sandbox()
    deep = os.path.join(box.runtime_dir, "d" * 64, "e" * 40)
    os.makedirs(deep)
    port = free_port()
    net = slirp.start(
        "slirp4netns", box.netns, box.userns, deep, {}, parse_publish(f"127.0.0.1:{port}:80")
    )
    try:
        assert len(net.api_socket) > 108
        assert [e["host_port"] for e in net.list_forwards()] == [port]
        start_httpd(box, www)
        assert poll(lambda: fetch(f"http://127.0.0.1:{port}/")) == "hello from the container\n"
    finally:
        assert_stopped(net)
