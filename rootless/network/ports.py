"""Published ports: ``PortMapping`` and ``parse_publish()`` for ``-p [HOSTIP:][HOSTPORT:]CTRPORT[/tcp|udp]``
(with ranges), ``publish_all()`` for ``-P`` from an image's ExposedPorts, and ``resolve_ports()``,
which refuses host ports already taken and picks random ones for ``HOSTPORT`` 0.
"""

import errno
import ipaddress
import socket
from dataclasses import dataclass, replace

from rootless.errors import NetworkError

PROTOCOLS = ("tcp", "udp")


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
