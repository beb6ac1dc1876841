"""User-defined networks: their configurations on disk, as podman 4 (netavark) writes and shows them.

A network is a JSON file ``<data home>/networks/NAME.json`` holding podman's network object (the
shape `podman network inspect` prints and podman-compose and the Docker API read): ``name``, ``id``
(64 hex digits), ``driver`` ("bridge"), ``network_interface`` (the bridge, ``podmanN``),
``created``, ``subnets`` (``subnet``, ``gateway``, ``lease_range``), ``ipv6_enabled``,
``internal``, ``dns_enabled``, ``labels``, ``options``, ``ipam_options``. The default network
``podman`` (10.88.0.0/16 on ``podman0``, no DNS) always exists and is never written.

Every change happens under an exclusive flock of ``<data home>/networks.lock``, and a file is
written to a temporary name and renamed, so a half-written network is never seen. Subnets are
checked (and picked, from podman's default pools) against the other networks, the host's own
subnets and the per-user network namespace's link to the host (10.0.2.0/24).
Light imports only: ``run --network NAME`` reads networks on its start path.
"""

from __future__ import annotations

import json
import os
import re
import time

from rootless import gotime, paths
from rootless.errors import NetworkError

DEFAULT_NAME = "podman"
DEFAULT_ID = "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9"  # sha256("podman")
DEFAULT_SUBNET, DEFAULT_GATEWAY, DEFAULT_BRIDGE = "10.88.0.0/16", "10.88.0.1", "podman0"
SLIRP_SUBNET = "10.0.2.0/24"  # the per-user network namespace's tap0 (rootless.network.usernet)
# podman's default_subnet_pools: (base, prefix length of each network)
POOLS = (("10.89.0.0/16", 24), ("10.90.0.0/15", 24), ("10.92.0.0/14", 24), ("10.96.0.0/11", 24),
         ("10.128.0.0/9", 24))  # fmt: skip
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
DRIVERS = ("bridge",)


class NoSuchNetwork(NetworkError):
    """No network has that name or ID (podman: "network not found")."""


def networks_dir() -> str:
    return os.path.join(paths.data_home(), "networks")


def lock():
    """The store-wide lock for network configurations (exclusive, held briefly)."""
    return paths.locked(os.path.join(paths.data_home(), "networks.lock"), makedirs=networks_dir())


def go_time(t: float) -> str:
    """A time as Go's encoding/json writes a time.Time (the networks' "created")."""
    return gotime.rfc3339nano(int(t * 1e9))


def default_network() -> dict:
    """The default network ``podman`` (podman shows it with the time of the call as created)."""
    return {"name": DEFAULT_NAME, "id": DEFAULT_ID, "driver": "bridge",
            "network_interface": DEFAULT_BRIDGE, "created": go_time(time.time()),
            "subnets": [{"subnet": DEFAULT_SUBNET, "gateway": DEFAULT_GATEWAY}],
            "ipv6_enabled": False, "internal": False, "dns_enabled": False,
            "ipam_options": {"driver": "host-local"}}  # fmt: skip


def _read(path: str) -> dict | None:
    try:
        with open(path) as f:
            net = json.load(f)
    except (OSError, ValueError):
        return None
    return net if isinstance(net, dict) and isinstance(net.get("name"), str) else None


def load_all() -> list[dict]:
    """Every network, the default one included, sorted by name."""
    out = {DEFAULT_NAME: default_network()}
    try:
        names = os.listdir(networks_dir())
    except FileNotFoundError:
        names = []
    for n in names:
        if n.endswith(".json") and not n.startswith("."):
            net = _read(os.path.join(networks_dir(), n))
            if net is not None and net["name"] != DEFAULT_NAME:
                out[net["name"]] = net
    return [out[k] for k in sorted(out)]


def get(name_or_id: str, networks: list[dict] | None = None) -> dict:
    """The network with this name, full ID or unique ID prefix (NoSuchNetwork if none)."""
    nets = load_all() if networks is None else networks
    for n in nets:
        if n["name"] == name_or_id or n["id"] == name_or_id:
            return n
    matches = [n for n in nets if name_or_id and n["id"].startswith(name_or_id)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise NetworkError(f"more than one result for network ID {name_or_id}")
    raise NoSuchNetwork(f"unable to find network with name or ID {name_or_id}: network not found")


def exists(name_or_id: str) -> bool:
    try:
        get(name_or_id)
    except NetworkError:
        return False
    return True


# --- subnets ---------------------------------------------------------------------------------


def _ipaddress():
    import ipaddress  # ~1 ms: only where subnets are checked

    return ipaddress


def host_subnets() -> list:
    """The subnets of the host's own interfaces (connected routes, and IPv6 addresses), and
    loopback, as podman's "used on the host" check sees them."""
    ip = _ipaddress()
    out = [ip.ip_network("127.0.0.0/8"), ip.ip_network("::1/128")]
    try:
        with open("/proc/net/route") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        rows = []
    for row in rows:
        c = row.split()
        if len(c) >= 8 and not int(c[3], 16) & 0x2 and c[1] != "00000000":
            dst = int(c[1], 16).to_bytes(4, "little")
            mask = bin(int(c[7], 16)).count("1")
            out.append(ip.ip_network((dst, mask), strict=False))
    try:
        with open("/proc/net/if_inet6") as f:
            rows = f.read().splitlines()
    except OSError:
        rows = []
    for row in rows:
        c = row.split()
        if len(c) >= 6 and not c[0].startswith("fe80"):
            out.append(ip.ip_network((bytes.fromhex(c[0]), int(c[2], 16)), strict=False))
    return out


def used_subnets(networks: list[dict]) -> list:
    ip = _ipaddress()
    out = [ip.ip_network(s["subnet"]) for n in networks for s in n.get("subnets") or ()]
    return out + host_subnets() + [ip.ip_network(SLIRP_SUBNET)]


def _free_ipv4(used: list):
    ip = _ipaddress()
    for base, size in POOLS:
        for cand in ip.ip_network(base).subnets(new_prefix=size):
            if not any(cand.overlaps(u) for u in used if u.version == 4):
                return cand
    raise NetworkError("could not find free subnet from subnet pools")


def _free_ipv6(used: list):
    ip = _ipaddress()
    for _ in range(10000):
        cand = ip.ip_network((b"\xfd" + os.urandom(7) + bytes(8), 64))
        if not any(cand.overlaps(u) for u in used if u.version == 6):
            return cand
    raise NetworkError("failed to get random ipv6 subnet")


def _subnets(subnets, gateways, ip_ranges, ipv6: bool, add_gateway: bool, used: list) -> list[dict]:
    """podman's CreateBridge + ValidateSubnets: parse, pick free subnets, check, add gateways."""
    ip = _ipaddress()
    if (gateways or ip_ranges) and not subnets:
        raise NetworkError("cannot set gateway or range without subnet")
    nets = []
    for s in subnets:
        try:
            nets.append(ip.ip_network(s, strict=False))
        except ValueError:
            raise NetworkError(f"invalid CIDR address: {s}") from None
    if not nets:
        nets.append(_free_ipv4(used))
    if ipv6:
        if not any(n.version == 4 for n in nets):
            nets.append(_free_ipv4(used))
        if not any(n.version == 6 for n in nets):
            nets.append(_free_ipv6(used))
    out = []
    for i, n in enumerate(nets):
        if any(n.overlaps(u) for u in used if u.version == n.version):
            raise NetworkError(f"subnet {n} is already used on the host or by another config")
        entry: dict = {"subnet": str(n)}
        gw = gateways[i] if i < len(gateways) else None
        if gw is not None:
            try:
                g = ip.ip_address(gw)
            except ValueError:
                raise NetworkError(f"invalid gateway {gw!r}: use an IP address") from None
            if g not in n:
                raise NetworkError(f"gateway {gw} not in subnet {n}")
            entry["gateway"] = str(g)
        elif add_gateway:
            entry["gateway"] = str(n.network_address + 1)
        if i < len(ip_ranges):
            entry["lease_range"] = _lease_range(ip_ranges[i], n)
        used.append(n)
        out.append(entry)
    return out


def _lease_range(text: str, net) -> dict:
    ip = _ipaddress()
    try:
        r = ip.ip_network(text, strict=False)
    except ValueError:
        raise NetworkError(f"invalid CIDR address: {text}") from None
    if r.version != net.version or not r.subnet_of(net):
        raise NetworkError(f"lease range start ip {r.network_address} not in subnet {net}")
    first = r.network_address + (1 if r.prefixlen < r.max_prefixlen - 1 else 0)
    last = r.broadcast_address - (1 if r.prefixlen < r.max_prefixlen - 1 else 0)
    return {"start_ip": str(first), "end_ip": str(last)}


def _interface(networks: list[dict]) -> str:
    taken = {n.get("network_interface") for n in networks}
    try:
        taken.update(os.listdir("/sys/class/net"))
    except OSError:
        pass
    i = 1
    while f"podman{i}" in taken:
        i += 1
    return f"podman{i}"


def create(name: str | None = None, *, driver: str = "bridge", subnets=(), gateways=(), ip_ranges=(),
           internal: bool = False, ipv6: bool = False, labels: dict | None = None,
           options: dict | None = None, dns: bool = True, interface: str | None = None) -> dict:  # fmt: skip
    """Create a network as `podman network create` does (see the module docstring); the network."""
    if driver not in DRIVERS:
        raise NetworkError(f"unsupported driver {driver}: invalid argument")
    for key in options or {}:
        if key not in ("mtu", "isolate"):
            raise NetworkError(f"unsupported bridge network option {key}")
    if options and "mtu" in options and not str(options["mtu"]).isdigit():
        raise NetworkError(f"invalid mtu {options['mtu']!r}: use a number")
    with lock():
        nets = load_all()
        if name is not None:
            if not NAME_RE.match(name):
                raise NetworkError(
                    f"network name {name} invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument"
                )
            if any(n["name"] == name for n in nets):
                raise NetworkError(f"network name {name} already used: network already exists")
        bridge = interface or _interface(nets)
        if interface and any(n.get("network_interface") == interface for n in nets):
            raise NetworkError(f"bridge name {interface} already in use")
        if name is None:
            name = bridge
        subs = _subnets(list(subnets), list(gateways), list(ip_ranges), ipv6,
                        not internal or dns, used_subnets(nets))  # fmt: skip
        net = {"name": name, "id": _new_id(nets), "driver": driver, "network_interface": bridge,
               "created": go_time(time.time()), "subnets": subs,
               "ipv6_enabled": any(":" in s["subnet"] for s in subs),
               "internal": internal, "dns_enabled": dns}  # fmt: skip
        if labels:
            net["labels"] = dict(labels)
        if options:
            net["options"] = {k: str(v) for k, v in options.items()}
        net["ipam_options"] = {"driver": "host-local"}
        _write(net)
    return net


def _new_id(nets: list[dict]) -> str:
    while True:
        nid = os.urandom(32).hex()
        if not any(n["id"].startswith(nid[:12]) for n in nets):
            return nid


def _write(net: dict) -> None:
    path = os.path.join(networks_dir(), net["name"] + ".json")
    tmp = os.path.join(networks_dir(), f".{net['name']}.{os.getpid()}.tmp")
    paths.write_text_atomic(path, json.dumps(net, indent=5) + "\n", tmp)


def remove(name: str) -> None:
    """Remove a network's configuration (the caller checked that no container uses it)."""
    if name == DEFAULT_NAME:
        raise NetworkError(f"default network {DEFAULT_NAME} cannot be removed")
    with lock():
        try:
            os.unlink(os.path.join(networks_dir(), name + ".json"))
        except FileNotFoundError:
            raise NoSuchNetwork(
                f"unable to find network with name or ID {name}: network not found"
            ) from None
