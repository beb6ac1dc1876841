"""User-defined networks end to end, as the unprivileged user with the real CLI and the Debian python
image: containers on a network reach each other by IP, name and alias over TCP; -p from the host
reaches a container on a network; an --internal network cannot reach the Debian mirror while the
default network can; connect and disconnect while running; network rm of a network in use is
refused; --network container:NAME; and nothing is left afterwards (no helper process, namespace,
interface or socket)."""

import json
import os

import pytest
from support.images import curl, exec_ok, free_port, wait_for_http
from support.wait import poll

pytestmark = pytest.mark.workload

MIRROR = "http://deb.debian.org/debian/dists/bookworm/Release"
FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=8)\n"
    "    print('status', r.status, r.read(40).decode(errors='replace').split(chr(10))[0])\n"
    "except Exception as e:\n"
    "    print('error', type(e).__name__, e)\n"
)


@pytest.fixture
def rl(rootless, registry, python_ref):
    rootless.trust(registry)
    rootless("pull", "-q", python_ref, check=True, timeout=600)
    rootless.img = python_ref
    yield rootless
    rootless("rm", "-af", "-t", "0", timeout=120)
    assert_no_helper(rootless)


def helper_pids(rootless) -> list[int]:
    """Processes of this store's per-user network helper (its owner, holder and slirp4netns)."""
    marker = os.path.join(rootless.runtime_dir, "rootless", "usernet").encode()
    out = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if b"rootless.network.usernetd" in cmd and rootless.runtime_dir.encode() in env:
            out.append(int(d))
        elif b"slirp4netns" in cmd and marker in os.readlink(f"/proc/{d}/cwd").encode():
            out.append(int(d))
    return out


def assert_no_helper(rootless) -> None:
    poll(lambda: not helper_pids(rootless), timeout=15)
    assert not os.path.exists(os.path.join(rootless.runtime_dir, "rootless", "usernet", "ctl.sock"))


def run_py(rl, *opts, code: str, args=()):
    cp = rl("run", "--rm", *opts, rl.img, "python3", "-c", code, *args, timeout=180)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def test_two_containers_by_name_alias_and_ip(rl):
    rl("network", "create", "appnet", check=True)
    rl("run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www", rl.img,
       "sh", "-c", "echo hello from web > /tmp/index.html && cd /tmp && exec python3 -m http.server 8000",
       check=True)  # fmt: skip
    (info,) = json.loads(rl("inspect", "web").stdout)
    ip = info["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
    assert ip.startswith("10.89.0.")
    code = (
        "import socket, sys, urllib.request\n"
        "for host in sys.argv[1:]:\n"
        "    for _ in range(100):\n"
        "        try:\n"
        "            body = urllib.request.urlopen(f'http://{host}:8000/index.html', timeout=5).read()\n"
        "            break\n"
        "        except OSError:\n"
        "            import time; time.sleep(0.1)\n"
        "    print(host, socket.gethostbyname(host), body.decode().strip())\n"
    )
    out = run_py(rl, "--network", "appnet", code=code, args=("web", "www", "WEB.dns.podman", ip))
    assert out.splitlines() == [
        f"{h} {ip} hello from web" for h in ("web", "www", "WEB.dns.podman", ip)
    ]
    # the client's view: /etc/resolv.conf points at the network's DNS server, /etc/hosts has itself
    cp = rl("run", "--rm", "--name", "cli", "--hostname", "cli", "--network", "appnet", rl.img,
            "sh", "-c", "cat /etc/resolv.conf; grep cli /etc/hosts", check=True)  # fmt: skip
    lines = cp.stdout.splitlines()
    assert lines[:2] == ["search dns.podman", "nameserver 10.89.0.1"]
    assert lines[-1].startswith("10.89.0.") and lines[-1].endswith("\tcli cli")
    # names of containers on other networks do not resolve; other names are forwarded upstream
    rl("network", "create", "other", check=True)
    out = run_py(rl, "--network", "other", code="import socket\ntry:\n    print(socket.gethostbyname('web'))\n"
                 "except OSError as e:\n    print('unknown', e.errno)\n")  # fmt: skip
    assert out.startswith("unknown")
    rl("rm", "-f", "-t", "0", "web", check=True)


def test_internal_network_cannot_reach_outside(rl):
    rl("network", "create", "--internal", "closed", check=True)
    inside = run_py(rl, "--network", "closed", code=FETCH, args=(MIRROR,))
    assert inside.startswith("error"), inside
    ip_only = run_py(rl, "--network", "closed", code=FETCH, args=("http://192.0.2.1:9/",))
    assert "unreachable" in ip_only.lower(), ip_only
    outside = run_py(rl, code=FETCH, args=(MIRROR,))  # the default network (slirp4netns)
    assert outside.startswith("status 200"), outside
    rl("network", "create", "open", check=True)
    assert run_py(rl, "--network", "open", code=FETCH, args=(MIRROR,)).startswith("status 200")


def test_publish_to_a_container_on_a_network(rl):
    rl("network", "create", "pubnet", check=True)
    port = free_port()
    rl("run", "-d", "--name", "srv", "--network", "pubnet", "-p", f"127.0.0.1:{port}:8000", rl.img,
       "sh", "-c", "echo published > /tmp/index.html && cd /tmp && exec python3 -m http.server 8000",
       check=True)  # fmt: skip
    assert wait_for_http(f"http://127.0.0.1:{port}/index.html") == "published\n"
    assert rl("port", "srv").stdout.strip() == f"8000/tcp -> 127.0.0.1:{port}"
    rl("rm", "-f", "-t", "0", "srv", check=True)
    with pytest.raises(AssertionError):
        curl(f"http://127.0.0.1:{port}/index.html")  # the port went with the container
    assert_no_helper(rl)


def test_connect_disconnect_while_running_and_rm_in_use(rl):
    rl("network", "create", "n1", check=True)
    rl("network", "create", "n2", check=True)
    rl("run", "-d", "--name", "a", "--network", "n1", rl.img, "sleep", "600", check=True)
    rl("run", "-d", "--name", "b", "--network", "n2", rl.img, "sleep", "600", check=True)
    resolve = "import socket, sys\ntry:\n    print(socket.gethostbyname(sys.argv[1]))\nexcept OSError:\n    print('none')\n"
    assert exec_ok(rl, "a", "python3", "-c", resolve, "b").strip() == "none"
    cp = rl("network", "connect", "--alias", "bee", "n1", "b")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", "")
    b_ip = exec_ok(rl, "b", "python3", "-c", resolve, "b").strip()
    assert exec_ok(rl, "a", "python3", "-c", resolve, "bee").strip().startswith("10.89.0.")
    assert "eth1" in exec_ok(rl, "b", "cat", "/proc/net/dev")
    hosts = exec_ok(rl, "b", "cat", "/etc/hosts")
    assert (
        hosts.count("\tb b") == 0
        and len([ln for ln in hosts.splitlines() if ln.endswith(" b")]) == 2
    )
    cp = rl("network", "connect", "n1", "b")
    assert cp.returncode == 125 and "is already connected to network" in cp.stderr
    cp = rl("network", "rm", "n1")
    assert cp.returncode == 2
    assert cp.stderr.strip() == ('Error: "n1" has associated containers with it. Use -f to forcibly '
                                 "delete containers and pods: network is being used")  # fmt: skip
    rl("network", "disconnect", "n1", "b", check=True)
    assert exec_ok(rl, "a", "python3", "-c", resolve, "bee").strip() == "none"
    assert "eth1" not in exec_ok(rl, "b", "cat", "/proc/net/dev")
    assert b_ip  # b kept its first network
    cp = rl("network", "disconnect", "n1", "b")
    assert (cp.returncode, cp.stderr.strip()) == (
        125,
        "Error: container b is not connected to network n1",
    )
    cp = rl("network", "rm", "-f", "n1")
    assert (cp.returncode, cp.stdout) == (0, "n1\n")
    assert rl("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["b"]


def test_network_container_joins_its_namespace(rl):
    rl("network", "create", "shared", check=True)
    rl("run", "-d", "--name", "holder", "--network", "shared", rl.img,
       "python3", "-m", "http.server", "--bind", "127.0.0.1", "8000", check=True)  # fmt: skip
    code = (
        "import time, urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://127.0.0.1:8000/', timeout=5).status); break\n"
        "    except OSError:\n"
        "        time.sleep(0.1)\n"
    )
    out = run_py(rl, "--name", "joiner", "--network", "container:holder", code=code)
    assert out.strip() == "200"  # the holder's loopback is the joiner's
    cp = rl("run", "--rm", "--network", "container:nope", rl.img, "true")
    assert cp.returncode == 125 and 'no container with name or ID "nope" found' in cp.stderr


BAD_RUN = [
    (["--network", "nope"], "unable to find network with name or ID nope: network not found", 125),
    (["--network", "good:ip=10.1.1.1"], "requested static ip 10.1.1.1 not in any subnet on network good", 126),
    (["--network", "good:foo=bar"], "invalid option for network good: unknown bridge network option: foo", 125),
    (["--network", "good", "--network", "slirp4netns"], "can only set extra network names, selected mode slirp4netns conflicts with bridge: invalid argument", 125),
    (["--network", "slirp4netns", "--network", "good"], "cannot set multiple networks without bridge network mode, selected mode slirp4netns: invalid argument", 125),
    (["--network", "none", "--network-alias", "x"], "--network-alias can only be set when the network mode is bridge: invalid argument", 125),
]  # fmt: skip


@pytest.mark.parametrize("args,message,code", BAD_RUN, ids=[" ".join(b[0]) for b in BAD_RUN])
def test_bad_network_flags(rl, args, message, code):
    rl("network", "create", "--subnet", "10.89.7.0/24", "good", check=True)
    cp = rl("run", "--rm", *args, rl.img, "true")
    assert (cp.returncode, cp.stderr.strip().splitlines()[-1]) == (code, f"Error: {message}")
    assert rl("ps", "-aq").stdout == ""
    assert_no_helper(rl)


def test_static_ip_taken_leaves_nothing(rl):
    rl("network", "create", "--subnet", "10.89.8.0/24", "fixed", check=True)
    rl(
        "run",
        "-d",
        "--name",
        "first",
        "--network",
        "fixed:ip=10.89.8.50",
        rl.img,
        "sleep",
        "600",
        check=True,
    )
    cp = rl("run", "--rm", "--network", "fixed:ip=10.89.8.50", rl.img, "true")
    assert cp.returncode == 126
    assert "requested ip address 10.89.8.50 is already allocated to container ID" in cp.stderr
    status = rl("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "first").stdout.strip()
    assert status == "10.89.8.50"
    rl("rm", "-f", "-t", "0", "first", check=True)
    assert_no_helper(rl)
