"""The container's /etc/hosts and /etc/resolv.conf: the one place that writes them, for every mode,
as podman 4.3 (containers/common's etchosts and resolvconf) writes them.

/etc/hosts (``hosts_file``): the ``--add-host`` entries, then the base file (containers.conf
``base_hosts_file``: "" is the host's /etc/hosts, "image" the image's, "none" nothing, else a
path), each line as "IP<TAB>names"; then, for names not listed yet, ``127.0.0.1 localhost``,
``::1 localhost``, ``host.containers.internal`` (the host's address; containers.conf
``host_containers_internal_ip``, "none" leaves it out), and the container's own addresses with its
hostname and name (127.0.0.1 with ``--network none``, none with ``--network host``).

/etc/resolv.conf (``resolv_file``): ``--dns`` (and containers.conf ``dns_servers``) replace
everything; otherwise the network's own servers (a user network's DNS server, slirp4netns's
10.0.2.3) come first and the host's nameservers follow (without loopback ones, and without IPv6
ones unless the container has IPv6, when it has a network namespace of its own; 8.8.8.8 and 8.8.4.4
when none is left). ``--dns-search``/``--dns-option`` (and containers.conf) replace the host's
search domains and options; "." as a search domain means none.

Also what they are made from on the host side: the host's resolvers (``host_nameservers``), its
default gateway (``host_gateway``) and its own address towards it (``host_address``).
"""

from __future__ import annotations

import os
import socket

HOST_ALIAS = "host.containers.internal"
HOSTS_FILE = "/etc/hosts"
RESOLV_FILE = "/etc/resolv.conf"
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")
DEFAULT_DNS6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")
STUBS = {"127.0.0.53": "/run/systemd/resolve/resolv.conf",
         "127.0.0.1": "/run/NetworkManager/no-stub-resolv.conf"}  # fmt: skip


# --- /etc/hosts ------------------------------------------------------------------------------


def parse_hosts(text: str) -> list[tuple[str, list[str]]]:
    """(ip, names) of each line with at least one name; comments dropped."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2:
            out.append((words[0], words[1:]))
    return out


def parse_add_host(value: str) -> tuple[str, str]:
    """One ``--add-host NAME:IP`` value (podman 4.3: IP may be IPv6, or ``host-gateway``)."""
    from rootless.errors import ContainerError

    name, sep, ip = value.partition(":")
    if not sep or not name:
        raise ContainerError(f'bad format for add-host: "{value}"')
    if ip != "host-gateway" and not _is_ip(ip):
        raise ContainerError(f'invalid IP address in add-host: "{ip}"')
    return name, ip


def _is_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            pass
    return False


# containers.conf [containers] keys this module reads
CONF_KEYS = ("base_hosts_file", "host_containers_internal_ip", "dns_servers", "dns_searches",
             "dns_options")  # fmt: skip


def settings() -> dict:
    """containers.conf's [containers] values for the /etc files (rootless.containers_conf)."""
    from rootless import containers_conf

    return containers_conf.table("containers", CONF_KEYS)


def base_hosts(
    setting: str | None, image_layers: tuple[str, ...] = ()
) -> tuple[str | None, str | None]:
    """(path, text) of the base hosts file for containers.conf's base_hosts_file: "" the host's,
    "none" nothing, "image" the image's own /etc/hosts (read from its layers, top first)."""
    if not setting:
        return HOSTS_FILE, None
    if setting == "none":
        return None, None
    if setting == "image":
        for layer in reversed(image_layers):
            etc = os.path.join(layer, "etc")
            if os.path.lexists(os.path.join(etc, ".wh.hosts")) or os.path.lexists(
                os.path.join(etc, ".wh..wh..opq")
            ):
                return None, ""
            path = os.path.join(etc, "hosts")
            if os.path.isfile(path) and not os.path.islink(path):
                return None, _read(path)
        return None, ""
    return setting, None


def _read(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def hosts_file(
    own: list[tuple[str, list[str]]],
    *,
    add_hosts: list[str] = (),
    host_ip: str | None = None,
    base: str | None = HOSTS_FILE,
    base_text: str | None = None,
) -> str:
    """The container's /etc/hosts (see the module docstring). `own`: (ip, [hostname, name]) per
    address of the container; `base`: the base file's path (None: none), or `base_text` itself."""
    entries = []
    for value in add_hosts:
        name, ip = parse_add_host(value)
        entries.append((host_ip or "" if ip == "host-gateway" else ip, [name]))
    entries = [e for e in entries if e[0]]
    entries += parse_hosts(base_text if base_text is not None else _read(base))
    lines = [f"{ip}\t{' '.join(names)}" for ip, names in entries]
    taken = {n for _, names in entries for n in names}
    special = [("127.0.0.1", ["localhost"]), ("::1", ["localhost"])]
    if host_ip:
        special.append((host_ip, [HOST_ALIAS]))
    for ip, names in special + list(own):
        free = [n for n in names if n and n not in taken]
        if free:
            lines.append(f"{ip}\t{' '.join(free)}")
    return "\n".join(lines) + "\n"


def hosts(hostname: str, address: str | None = None, names: tuple[str, ...] = (),
          extra: list[tuple[str, str]] | None = None) -> str:  # fmt: skip
    """A /etc/hosts without a base file: the container's names on `address` (127.0.0.1 without
    one), host.containers.internal from `extra` (ip, name) pairs."""
    host_ip = next((ip for ip, n in extra or () if n == HOST_ALIAS), None)
    return hosts_file([(address or "127.0.0.1", [hostname, *names])], host_ip=host_ip, base=None)


def add_entries(path: str, entries: list[tuple[str, list[str]]]) -> None:
    """Append entries to a container's hosts file (``network connect``: podman's AddIfExists)."""
    text = _read(path)
    extra = "".join(f"{ip}\t{' '.join(names)}\n" for ip, names in entries)
    _rewrite(path, text + extra)


def remove_entries(path: str, entries: list[tuple[str, list[str]]]) -> None:
    """Drop the lines whose ip matches an entry and that share a name with it (podman's Remove)."""
    out = []
    for ip, names in parse_hosts(_read(path)):
        if any(ip == e_ip and set(names) & set(e_names) for e_ip, e_names in entries):
            continue
        out.append(f"{ip}\t{' '.join(names)}\n")
    _rewrite(path, "".join(out))


def _rewrite(path: str, text: str) -> None:
    """In place (same inode): the container sees its bind mount change."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# --- /etc/resolv.conf ------------------------------------------------------------------------


def _read_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """nameservers, search domains (the last line's), options (the last line's), as podman reads
    them (``domain`` lines are ignored, as podman does)."""
    servers, search, options = [], [], []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) == 2 and _is_ip(words[1].split("%")[0]):
            servers.append(words[1])
        elif words[0] == "search":
            search = words[1:]
        elif words[0] == "options":
            options = words[1:]
    return servers, search, options


def edit_nameservers(path: str, servers: list[str], add: bool) -> None:
    """Add nameservers in front of a container's resolv.conf, or remove them (podman's resolvconf
    Add and Remove, for network connect and disconnect)."""
    have, search, options = _read_resolv(_read(path))
    if add:
        have = [*servers, *have]
    else:
        have = [s for s in have if s not in servers]
    _rewrite(path, resolv_conf(have, search, options))


def host_nameservers(path: str = RESOLV_FILE) -> list[str]:
    """The host's nameservers, in order."""
    return _read_resolv(_read(path))[0]


def resolv_conf(
    nameservers: list[str], search: list[str] | None = None, options: list[str] | None = None
) -> str:
    """A resolv.conf as podman builds one: search, nameservers, options (search "." is none)."""
    lines = []
    if search and " ".join(search).strip() != ".":
        lines.append("search " + " ".join(search))
    lines.extend(f"nameserver {ns}" for ns in nameservers)
    if options and " ".join(options).strip():
        lines.append("options " + " ".join(options))
    return "".join(line + "\n" for line in lines)


def _host_resolv(netns: bool, ipv6: bool) -> tuple[list[str], list[str], list[str]]:
    """The host's servers, search and options as a container sees them (see the module docstring)."""
    text = _read(RESOLV_FILE)
    servers, search, options = _read_resolv(text)
    if not netns:
        return servers, search, options
    if len(servers) == 1 and servers[0] in STUBS:  # a local stub resolver: its real servers
        real = _read(STUBS[servers[0]])
        if real:
            servers, search, options = _read_resolv(real)
    servers = [s for s in servers if not is_loopback(s) and (ipv6 or ":" not in s)]
    if not servers:
        servers = list(DEFAULT_DNS) + (list(DEFAULT_DNS6) if ipv6 else [])
    return servers, search, options


def resolv_file(
    network_servers: list[str] = (),
    network_search: list[str] = (),
    *,
    dns: list[str] = (),
    dns_search: list[str] = (),
    dns_options: list[str] = (),
    netns: bool = True,
    ipv6: bool = False,
) -> str:
    """The container's /etc/resolv.conf (see the module docstring). `dns`, `dns_search`,
    `dns_options`: the flags, containers.conf's first; `netns`: it has a network namespace of its
    own (not --network host); `ipv6`: it has an IPv6 address."""
    servers, search, options = list(dns), [], list(dns_options)
    keep_host = not servers
    if keep_host:
        servers, search = list(network_servers), list(network_search)
    if dns_search:
        search = list(dns_search)
    h_servers, h_search, h_options = _host_resolv(netns, ipv6)
    if not servers or keep_host:
        servers += h_servers
    if search == ["."]:
        search = []
    elif not dns_search or (keep_host and search):
        search += h_search
    if not options or keep_host:
        options += h_options
    return resolv_conf(servers, search, options)


def resolv_conf_for(mode: str, dns: str | None = None) -> str:
    """A container's /etc/resolv.conf with the helper's DNS server `dns` (if any) first."""
    return resolv_file([dns] if dns else [], netns=mode != "host")


# --- the host side ---------------------------------------------------------------------------


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


# --- a container's files, from its options and its network ----------------------------------


def check_options(opts, mode: str) -> None:
    """The /etc flags' checks, before anything is created (podman's messages)."""
    from rootless.errors import ContainerError

    if opts.no_hosts and opts.add_hosts:
        raise ContainerError("--no-hosts and --add-host cannot be set together")
    for value in opts.add_hosts:
        parse_add_host(value)
    if "none" in opts.dns and len(opts.dns) > 1:
        raise ContainerError("none is not allowed to be specified with other DNS ip addresses")
    for value in opts.dns:
        if value != "none" and not _is_ip(value):
            raise ContainerError(f"{value} is not an ip address")
    if mode == "none" and opts.dns:
        raise ContainerError("conflicting options: dns and the network mode: none")


def _own(mode: str, net, hostname: str, name: str) -> list[tuple[str, list[str]]]:
    names = [hostname, name]
    if mode == "none":
        return [("127.0.0.1", names)]
    if mode == "bridge":
        return [(ip, names) for ip in (net.addresses() if net else ())]
    if mode in ("slirp4netns", "pasta"):
        addr = getattr(net, "address", None) if net else None
        if mode == "pasta" and not addr and net is not None:
            addr = host_address(host_gateway())
        return [(addr, names)] if addr else []
    return []  # host


def container_files(opts, mode: str, hostname: str, name: str, net=None,
                    layers: tuple[str, ...] = ()) -> tuple[str | None, str | None]:  # fmt: skip
    """(hosts, resolv.conf) of a container (None: the image's own file stays), from its run
    options, its network mode and running network handle `net` (None before the network starts),
    containers.conf, and the image's `layers` (for base_hosts_file = "image")."""
    conf = settings()
    hosts = None
    if not opts.no_hosts:
        base, text = base_hosts(conf.get("base_hosts_file"), layers)
        setting = conf.get("host_containers_internal_ip") or ""
        if setting == "none":
            host_ip = None
        elif setting:
            host_ip = setting
        elif mode in ("slirp4netns", "pasta") and net is not None:
            host_ip = net.host_ip
        else:
            host_ip = host_address(host_gateway())
        own = _own(mode, net, hostname, name)
        hosts = hosts_file(
            own, add_hosts=opts.add_hosts, host_ip=host_ip, base=base, base_text=text
        )
    resolv = None
    if mode != "none" and opts.dns != ["none"]:
        servers, search, ipv6 = [], [], False
        if mode == "bridge" and net is not None:
            servers, search = net.dns_servers(), net.dns_search()
            ipv6 = any(":" in a for a in net.addresses())
        elif net is not None and getattr(net, "dns", None):
            servers = [net.dns]
        resolv = resolv_file(servers, search, dns=[*conf.get("dns_servers", ()), *opts.dns],
                             dns_search=[*conf.get("dns_searches", ()), *opts.dns_search],
                             dns_options=[*conf.get("dns_options", ()), *opts.dns_options],
                             netns=mode != "host", ipv6=ipv6)  # fmt: skip
    return hosts, resolv
