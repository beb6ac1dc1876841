"""Networking helpers that need no helper process: published-port specs, host-port checks, the
container's /etc/hosts and /etc/resolv.conf, and loopback/address/route work inside a netns.

Owns:
- ``PortMapping`` and ``parse_publish()`` for ``-p [HOSTIP:][HOSTPORT:]CTRPORT[/tcp|udp]`` (with
  ranges), ``publish_all()`` for ``-P`` from an image's ExposedPorts, ``resolve_ports()`` which picks
  random host ports for ``HOSTPORT`` 0 and refuses ports already taken on the host;
- ``hosts_content()`` / ``resolv_conf_content()`` / ``host_nameservers()`` / ``host_gateway()``;
- ``setup_loopback()`` and ``netns_state()`` / ``verify_netns()``: netlink (pyroute2) inside the
  *current* network namespace. pyroute2 0.9 runs its own asyncio loop internally, so call these only
  from a process (or thread) where no trio/asyncio loop is running -- in the runtime that is the forked
  container-setup process, after it has joined the container's user and net namespaces. pyroute2 is
  imported lazily (it costs ~0.1 s).
"""

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass, replace

from rootless.errors import RootlessError

PROTOCOLS = ("tcp", "udp")


class NetworkError(RootlessError):
    """A network mode, published port or network helper is unusable."""


@dataclass(frozen=True)
class PortMapping:
    """One published port: host_ip:host_port on the host -> container_port in the container.

    ``host_ip`` "" means all addresses (0.0.0.0, as in podman); ``host_port`` 0 means "pick a free
    one" until ``resolve_ports()`` has run.
    """

    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @property
    def bind_ip(self) -> str:
        return self.host_ip or "0.0.0.0"

    def __str__(self) -> str:
        host = self.host_ip or "0.0.0.0"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.host_port}->{self.container_port}/{self.protocol}"


def _port_range(text: str, what: str, spec: str, allow_zero: bool = False) -> tuple[int, int]:
    lo_s, sep, hi_s = text.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
    except ValueError:
        raise NetworkError(
            f"invalid {what} port {text!r} in -p {spec!r}: use a number 1-65535 or a range like 8080-8090"
        ) from None
    lowest = 0 if allow_zero and not sep else 1
    if not (lowest <= lo <= 65535 and lowest <= hi <= 65535) or hi < lo:
        raise NetworkError(
            f"invalid {what} port {text!r} in -p {spec!r}: use a number 1-65535 or a range like 8080-8090"
        )
    return lo, hi


def parse_publish(spec: str) -> list[PortMapping]:
    """Parse one ``-p``/``--publish`` value into mappings (a range gives one mapping per port).

    Forms (as podman): ``CTRPORT``, ``HOSTPORT:CTRPORT``, ``HOSTIP:HOSTPORT:CTRPORT``,
    ``HOSTIP::CTRPORT`` (random host port), each port may be a range ``A-B`` and the whole may end in
    ``/tcp`` or ``/udp`` (default tcp). An IPv6 ``HOSTIP`` is written in brackets.
    """
    s = spec.strip()
    if not s:
        raise NetworkError("empty -p value: use -p [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]")
    body, slash, proto = s.rpartition("/") if "/" in s else (s, "", "tcp")
    proto = proto.lower()
    if slash and proto not in PROTOCOLS:
        raise NetworkError(f"invalid protocol {proto!r} in -p {spec!r}: use /tcp or /udp")
    host_ip = ""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1 : end + 2] != ":":
            raise NetworkError(
                f"invalid -p {spec!r}: write an IPv6 host address as [ADDR]:HOSTPORT:CTRPORT"
            )
        host_ip, body = body[1:end], body[end + 2 :]
        parts = [host_ip, *body.split(":")]
        if len(parts) != 3:
            raise NetworkError(f"invalid -p {spec!r}: use [HOSTIP]:HOSTPORT:CTRPORT")
    else:
        parts = body.split(":")
    if len(parts) == 1:
        host_ip, host_s, ctr_s = "", "", parts[0]
    elif len(parts) == 2:
        host_ip, (host_s, ctr_s) = "", parts
    elif len(parts) == 3:
        host_ip, host_s, ctr_s = parts
    else:
        raise NetworkError(f"invalid -p {spec!r}: use [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]")
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise NetworkError(
                f"invalid host IP {host_ip!r} in -p {spec!r}: use an IP address such as 127.0.0.1"
            ) from None
    c_lo, c_hi = _port_range(ctr_s, "container", spec)
    if host_s:
        h_lo, h_hi = _port_range(host_s, "host", spec, allow_zero=True)
        if h_lo == 0:
            h_hi = 0
    else:
        h_lo = h_hi = 0
    count = c_hi - c_lo + 1
    if h_lo and h_hi - h_lo + 1 != count:
        raise NetworkError(
            f"invalid -p {spec!r}: the host and container port ranges must be the same size"
        )
    return [PortMapping(host_ip, h_lo + i if h_lo else 0, c_lo + i, proto) for i in range(count)]


def parse_publish_all(specs: list[str] | tuple[str, ...]) -> list[PortMapping]:
    """Parse several ``-p`` values and refuse the same host port published twice."""
    out: list[PortMapping] = []
    for spec in specs:
        out.extend(parse_publish(spec))
    _check_duplicates(out)
    return out


def publish_all(exposed_ports: dict | list | None, host_ip: str = "") -> list[PortMapping]:
    """``-P``: one mapping with a random host port per image ExposedPorts key ("80/tcp", "53/udp")."""
    out = []
    for key in sorted(exposed_ports or ()):
        port_s, _, proto = key.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in PROTOCOLS:
            continue  # sctp: neither slirp4netns nor pasta can forward it
        lo, hi = _port_range(port_s, "exposed", key)
        out.extend(PortMapping(host_ip, 0, p, proto) for p in range(lo, hi + 1))
    return out


def _check_duplicates(ports: list[PortMapping]) -> None:
    seen: dict[tuple[str, int], PortMapping] = {}
    for m in ports:
        if not m.host_port:
            continue
        key = (m.protocol, m.host_port)
        prev = seen.get(key)
        if prev is not None and (not prev.host_ip or not m.host_ip or prev.host_ip == m.host_ip):
            raise NetworkError(
                f"host port {m.host_port}/{m.protocol} is published twice: give each -p its own host port"
            )
        seen[key] = m


def _bind_probe(m: PortMapping, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in m.bind_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    try:
        if m.protocol == "tcp":
            # as the helpers do: a TIME_WAIT leftover must not count as "in use", a listener must
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((m.bind_ip, port))
        if m.protocol == "tcp":
            s.listen(1)
    except BaseException:
        s.close()
        raise
    return s


def resolve_ports(ports: list[PortMapping]) -> list[PortMapping]:
    """Check every host port is free (one-line error if not) and pick free ports for host_port 0."""
    _check_duplicates(ports)
    out = []
    held = []
    try:
        for m in ports:
            try:
                s = _bind_probe(m, m.host_port)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise NetworkError(
                        f"host port {m.bind_ip}:{m.host_port}/{m.protocol} is already in use: "
                        "stop what uses it or publish another host port"
                    ) from None
                if e.errno == errno.EACCES:
                    raise NetworkError(
                        f"cannot bind host port {m.host_port}/{m.protocol} as an ordinary user: publish a port "
                        "at or above net.ipv4.ip_unprivileged_port_start"
                    ) from None
                if e.errno == errno.EADDRNOTAVAIL:
                    raise NetworkError(
                        f"host address {m.bind_ip} of -p {m} is not on this host: use one of its addresses"
                    ) from None
                raise NetworkError(f"cannot bind host port {m}: {e.strerror}") from None
            held.append(s)  # keep random ports distinct from each other
            if not m.host_port:
                m = replace(m, host_port=s.getsockname()[1])
            out.append(m)
    finally:
        for s in held:
            s.close()
    return out


# ---- /etc/hosts and /etc/resolv.conf -------------------------------------------------------------

HOST_ALIAS = "host.containers.internal"


def hosts_content(
    hostname: str,
    address: str | None = None,
    names: tuple[str, ...] = (),
    extra: list[tuple[str, str]] | None = None,
) -> str:
    """The container's /etc/hosts: localhost lines, the container's own name(s) on its address (or
    127.0.1.1 with no interface), then ``extra`` (ip, name) pairs such as host.containers.internal."""
    lines = [
        "127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4",
        "::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6",
    ]
    own = " ".join(dict.fromkeys(n for n in (hostname, *names) if n))
    if own:
        lines.append(f"{address or '127.0.1.1'}\t{own}")
    for ip, name in extra or ():
        lines.append(f"{ip}\t{name}")
    return "\n".join(lines) + "\n"


def _read_resolv(path: str = "/etc/resolv.conf") -> tuple[list[str], list[str], list[str]]:
    servers, search, options = [], [], []
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return servers, search, options
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options.extend(words[1:])
    return servers, search, options


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The host's nameservers, in order."""
    return _read_resolv(path)[0]


def resolv_conf_content(
    nameservers: list[str], search: list[str] | None = None, options: list[str] | None = None
) -> str:
    """A resolv.conf with ``nameservers`` first; search and options default to the host's."""
    _, h_search, h_options = _read_resolv()
    search = h_search if search is None else search
    options = h_options if options is None else options
    lines = []
    if search:
        lines.append("search " + " ".join(search))
    lines.extend(f"nameserver {ns}" for ns in nameservers)
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_gateway() -> str | None:
    """The host's IPv4 default gateway (from /proc/net/route), or None."""
    try:
        with open("/proc/net/route") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return None
    for row in rows:
        cols = row.split()
        if len(cols) >= 4 and cols[1] == "00000000" and int(cols[3], 16) & 0x2:
            return socket.inet_ntoa(int(cols[2], 16).to_bytes(4, "little"))
    return None


# ---- inside the container's netns (pyroute2, synchronous) ----------------------------------------


def setup_loopback() -> None:
    """Bring ``lo`` up in the current network namespace (needs CAP_NET_ADMIN over it, i.e. call after
    joining the container's user namespace). Raises NetworkError on failure."""
    from pyroute2 import IPRoute

    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="lo")
            if not idx:
                raise NetworkError("the container's network namespace has no loopback device")
            ipr.link("set", index=idx[0], state="up")
    except OSError as e:
        raise NetworkError(
            f"cannot bring up lo in the container's network namespace: {e.strerror or e}"
        ) from None


def netns_state() -> dict:
    """What the current netns looks like: ``{"links": {name: {"up", "mtu", "addresses"}},
    "routes": [{"dst", "gateway", "oif"}]}`` (IPv4 and IPv6 addresses as "addr/prefix")."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {}
        links = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            links[name] = {
                "up": bool(link["flags"] & 1),  # IFF_UP
                "mtu": link.get_attr("IFLA_MTU"),
                "addresses": [],
            }
        for a in ipr.get_addr():
            name = names.get(a["index"])
            if name in links:
                links[name]["addresses"].append(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        routes = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=family, table=254):
                dst = r.get_attr("RTA_DST")
                routes.append(
                    {
                        "dst": f"{dst}/{r['dst_len']}" if dst else "default",
                        "gateway": r.get_attr("RTA_GATEWAY"),
                        "oif": names.get(r.get_attr("RTA_OIF")),
                    }
                )
    return {"links": links, "routes": routes}


def verify_netns(
    interface: str | None = None, address: str | None = None, gateway: str | None = None
) -> dict:
    """Check the current netns: lo is up; if ``interface`` is given, it is up and (optionally) carries
    ``address`` ("10.0.2.100/24"), and the default route goes via ``gateway``. Returns netns_state();
    raises NetworkError naming what is missing."""
    state = netns_state()
    links = state["links"]
    if not links.get("lo", {}).get("up"):
        raise NetworkError("lo is not up in the container's network namespace")
    if interface:
        link = links.get(interface)
        if link is None or not link["up"]:
            raise NetworkError(
                f"{interface} is missing or down in the container's network namespace"
            )
        if address and address not in link["addresses"]:
            raise NetworkError(
                f"{interface} lacks address {address} in the container's network namespace"
            )
        if gateway and not any(
            r["dst"] == "default" and r["gateway"] == gateway for r in state["routes"]
        ):
            raise NetworkError(f"the container has no default route via {gateway}")
    return state


def has_default_route() -> bool:
    """Whether the current netns has any default route (``--network none`` must not)."""
    return any(r["dst"] == "default" for r in netns_state()["routes"])


def close_quietly(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
