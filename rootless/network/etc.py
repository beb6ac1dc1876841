"""The container's /etc/hosts and /etc/resolv.conf: the one place that writes them, for every mode.

Also what they are made from on the host side: the host's resolvers (``host_nameservers``), its
default gateway (``host_gateway``) and its own address towards it (``host_address``).
"""

import socket

HOST_ALIAS = "host.containers.internal"
LOCAL_NAME_ADDRESS = "127.0.1.1"  # the container's own names with no interface address of its own


def hosts(
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
        lines.append(f"{address or LOCAL_NAME_ADDRESS}\t{own}")
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


def resolv_conf(
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


def resolv_conf_for(mode: str, dns: str | None = None) -> str:
    """A container's /etc/resolv.conf: its network helper's DNS server if it has one, else the host's
    resolvers (without the host's loopback ones, which the container cannot reach, unless it shares
    the host's network)."""
    if dns:
        return resolv_conf([dns])
    servers = host_nameservers()
    if mode != "host":
        servers = [s for s in servers if not is_loopback(s)]
    return resolv_conf(servers)


def is_loopback(addr: str) -> bool:
    """127.0.0.0/8 or ::1 (as ipaddress says, without its ~1 ms import on the start path)."""
    addr = addr.split("%", 1)[0]
    for family, loopback in ((socket.AF_INET, None), (socket.AF_INET6, bytes(15) + b"\x01")):
        try:
            packed = socket.inet_pton(family, addr)
        except OSError:
            continue
        return packed[0] == 127 if loopback is None else packed == loopback
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


def host_address(gateway: str | None) -> str | None:
    """The host's own IPv4 address on its default route (towards `gateway`), or None."""
    if not gateway:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((gateway, 9))  # no packet is sent
            return s.getsockname()[0]
    except OSError:
        return None
