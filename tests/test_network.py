"""Parsing and content of the networking library: -p specs, -P, --network values, hosts/resolv.conf.

No namespaces here; tests/test_network_helpers.py runs slirp4netns and pasta for real.
"""

import socket

import pytest

from rootless import slirp
from rootless.errors import NetworkError, RootlessError
from rootless.network import etc
from rootless.network import ports as netports
from rootless.network.ports import PortMapping, parse_publish


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("8080:80", [PortMapping("", 8080, 80, "tcp")]),
        ("127.0.0.1:8080:80", [PortMapping("127.0.0.1", 8080, 80, "tcp")]),
        ("127.0.0.1:8080:80/udp", [PortMapping("127.0.0.1", 8080, 80, "udp")]),
        ("8080:80/TCP", [PortMapping("", 8080, 80, "tcp")]),
        ("80", [PortMapping("", 0, 80, "tcp")]),
        ("127.0.0.1::80", [PortMapping("127.0.0.1", 0, 80, "tcp")]),
        ("[::1]:8080:80", [PortMapping("::1", 8080, 80, "tcp")]),
        (
            "127.0.0.1:8080-8082:80-82/udp",
            [PortMapping("127.0.0.1", 8080 + i, 80 + i, "udp") for i in range(3)],
        ),
        ("90-91", [PortMapping("", 0, 90, "tcp"), PortMapping("", 0, 91, "tcp")]),
    ],
)
def test_parse_publish(spec, expected):
    assert parse_publish(spec) == expected


@pytest.mark.parametrize(
    "spec,words",
    [
        ("", "empty"),
        ("8080:80/sctp", "protocol"),
        ("abc:80", "host port"),
        ("8080:0", "container port"),
        ("8080:70000", "container port"),
        ("1.2.3:8080:80", "host IP"),
        ("a:b:c:d", "HOSTPORT:CTRPORT"),
        ("8080-8082:80-81", "same size"),
        ("8082-8080:80-82", "host port"),
        ("[::1:8080:80", "IPv6"),
    ],
)
def test_parse_publish_rejects(spec, words):
    with pytest.raises(NetworkError) as e:
        parse_publish(spec)
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    assert isinstance(e.value, RootlessError) and e.value.exit_code == 125


def test_publish_twice_is_refused():
    with pytest.raises(NetworkError, match="published twice"):
        netports.parse_publish_all(["8080:80", "127.0.0.1:8080:81"])
    # same host port, different protocols or distinct addresses: fine
    assert len(netports.parse_publish_all(["8080:80", "8080:80/udp"])) == 2
    assert len(netports.parse_publish_all(["127.0.0.1:8080:80", "127.0.0.2:8080:80"])) == 2


def test_publish_all_from_exposed_ports():
    got = netports.publish_all({"80/tcp": {}, "53/udp": {}, "9000-9001": {}, "132/sctp": {}})
    assert got == [
        PortMapping("", 0, 53, "udp"),
        PortMapping("", 0, 80, "tcp"),
        PortMapping("", 0, 9000, "tcp"),
        PortMapping("", 0, 9001, "tcp"),
    ]


def test_resolve_ports_picks_free_ports_and_refuses_taken_ones():
    ports = netports.resolve_ports(parse_publish("127.0.0.1::80") + parse_publish("127.0.0.1::81"))
    assert all(p.host_port > 0 for p in ports)
    assert ports[0].host_port != ports[1].host_port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(NetworkError, match=f"127.0.0.1:{port}/tcp is already in use"):
            netports.resolve_ports(parse_publish(f"127.0.0.1:{port}:80"))
        with pytest.raises(NetworkError, match="already in use"):
            netports.resolve_ports(parse_publish(f"{port}:80"))  # 0.0.0.0 overlaps 127.0.0.1
        # the same number over UDP is free
        assert (
            netports.resolve_ports(parse_publish(f"127.0.0.1:{port}:80/udp"))[0].host_port == port
        )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        with pytest.raises(NetworkError, match="udp is already in use"):
            netports.resolve_ports(parse_publish(f"127.0.0.1:{port}:53/udp"))
    with pytest.raises(NetworkError, match="not on this host"):
        netports.resolve_ports(parse_publish("192.0.2.254:8080:80"))


@pytest.mark.parametrize(
    "value,expected",
    [
        ("", ("slirp4netns", {})),
        ("slirp4netns", ("slirp4netns", {})),
        (
            "slirp4netns:allow_host_loopback=true,mtu=1500,cidr=10.1.2.0/24,port_handler=slirp4netns",
            (
                "slirp4netns",
                {
                    "allow_host_loopback": True,
                    "mtu": 1500,
                    "cidr": "10.1.2.0/24",
                    "port_handler": "slirp4netns",
                },
            ),
        ),
        ("slirp4netns:allow_host_loopback=false", ("slirp4netns", {"allow_host_loopback": False})),
        ("pasta", ("pasta", {})),
        ("pasta:--no-map-gw,-m,1500", ("pasta", {"args": ["--no-map-gw", "-m", "1500"]})),
        ("none", ("none", {})),
        ("host", ("host", {})),
    ],
)
def test_parse_network(value, expected):
    assert slirp.parse_network(value) == expected


@pytest.mark.parametrize(
    "value,words",
    [
        ("ns:/proc/1/ns/net", "is not supported"),
        ("container:", "must provide name or ID"),
        ("slirp4netns:frobnicate=1", "unknown slirp4netns option"),
        ("slirp4netns:mtu=abc", "mtu"),
        ("slirp4netns:mtu=70000", "mtu"),
        ("slirp4netns:cidr=10.0.2.0/28", "cidr"),
        ("slirp4netns:allow_host_loopback=maybe", "true or false"),
        ("slirp4netns:port_handler=rootlesskit", "port_handler"),
        ("none:x", "takes no options"),
    ],
)
def test_parse_network_rejects(value, words):
    with pytest.raises(NetworkError) as e:
        slirp.parse_network(value)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_hosts_content():
    text = etc.hosts("web", "10.0.2.100", ("mycontainer",), [("10.0.2.2", etc.HOST_ALIAS)])
    lines = text.splitlines()
    assert lines[0].startswith("127.0.0.1\tlocalhost")
    assert "10.0.2.100\tweb mycontainer" in lines
    assert "10.0.2.2\thost.containers.internal" in lines
    assert "127.0.0.1\tbox" in etc.hosts("box").splitlines()  # no address: podman's --network none


def test_resolv_conf_content(tmp_path):
    text = etc.resolv_conf(["10.0.2.3"], ["example.org"], ["ndots:2"])
    assert text == "search example.org\nnameserver 10.0.2.3\noptions ndots:2\n"
    f = tmp_path / "resolv.conf"
    f.write_text("# c\nnameserver 127.0.0.53\nnameserver 192.0.2.53 ; x\nsearch a b\n")
    # podman's reading: a line with anything after the address is no nameserver line
    assert etc.host_nameservers(str(f)) == ["127.0.0.53"]


def test_handles_without_helper():
    none = slirp.start("none", "", "", "", {}, [])
    assert none.pid is None and none.hosts_entries() == []
    none.stop()
    host = slirp.start("host", "", "", "", {}, [])
    assert host.resolv_conf() == etc.resolv_conf(etc.host_nameservers())
    with pytest.raises(NetworkError, match="-p cannot be used with --network none"):
        slirp.start("none", "", "", "", {}, parse_publish("8080:80"))
    with pytest.raises(NetworkError, match="unknown network mode"):
        slirp.start("weird", "", "", "", {}, [])
