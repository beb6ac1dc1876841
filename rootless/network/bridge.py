"""``--network NAME[:ip=..,ip6=..,mac=..,alias=..,interface_name=..]`` (mode "bridge"): a container on
user-defined networks, as podman parses and checks the values, and its ``BridgeHandle``.

A container on networks gets one interface per network (eth0, eth1, ... unless interface_name says
otherwise) on that network's bridge in the per-user network namespace (rootless.network.usernet).
``--network bridge`` is the default network ``podman``. The checks here happen before anything is
created (plan.prepare): the networks exist, static addresses are in a subnet and not a gateway.
"""

from __future__ import annotations

from typing import NamedTuple

from rootless.errors import NetworkError

# names that select a mode rather than a network (podman's list for extra --network values)
RESERVED = ("bridge", "slirp4netns", "pasta", "pod", "none", "default", "private", "ns", "container",
            "host")  # fmt: skip


class Endpoint(NamedTuple):
    """One network of a container, as asked for."""

    network: str
    ips: tuple[str, ...] = ()
    mac: str | None = None
    aliases: tuple[str, ...] = ()
    interface: str | None = None


def _options(text: str) -> dict:
    """podman's parseBridgeNetworkOptions."""
    import ipaddress

    out: dict = {"ips": [], "aliases": []}
    for opt in filter(None, text.split(",")):
        key, _, val = opt.partition("=")
        if key in ("ip", "ip6"):
            try:
                out["ips"].append(str(ipaddress.ip_address(val)))
            except ValueError:
                raise NetworkError(f'invalid ip address "{val}"') from None
        elif key == "mac":
            parts = val.split(":")
            if len(parts) != 6 or not all(len(p) == 2 for p in parts):
                raise NetworkError(f"address {val}: invalid MAC address")
            try:
                bytes.fromhex("".join(parts))
            except ValueError:
                raise NetworkError(f"address {val}: invalid MAC address") from None
            out["mac"] = val.lower()
        elif key == "alias":
            if not val:
                raise NetworkError("alias cannot be empty")
            out["aliases"].append(val)
        elif key == "interface_name":
            if not val:
                raise NetworkError("interface_name cannot be empty")
            out["interface"] = val
        else:
            raise NetworkError(f"unknown bridge network option: {key}")
    return out


def _endpoint(name: str, text: str) -> Endpoint:
    o = _options(text)
    return Endpoint(name, tuple(o["ips"]), o.get("mac"), tuple(o["aliases"]), o.get("interface"))


def parse_first(value: str) -> list[Endpoint]:
    """The first --network value of a container on networks."""
    mode, sep, rest = value.partition(":")
    if mode == "bridge":
        return [_endpoint("podman", rest)]
    if not sep:  # "a,b": a list of networks, for backwards compatibility
        return [Endpoint(n) for n in value.split(",") if n]
    if not mode:
        raise NetworkError("network name cannot be empty")
    try:
        return [_endpoint(mode, rest)]
    except NetworkError as e:
        raise NetworkError(f"invalid option for network {mode}: {e}") from None


def parse_more(first: list[Endpoint], values: list[str]) -> list[Endpoint]:
    """The other --network values: each a network (no mode)."""

    out = list(first)
    for value in values:
        name, _, rest = value.partition(":")
        if not name:
            raise NetworkError("network name cannot be empty: invalid argument")
        if name in RESERVED:
            raise NetworkError(
                f"can only set extra network names, selected mode {name} conflicts with bridge: invalid argument"
            )
        try:
            ep = _endpoint(name, rest)
        except NetworkError as e:
            raise NetworkError(f"invalid option for network {name}: {e}") from None
        out = [e for e in out if e.network != name] + [ep]
    return out


def resolve(endpoints: list[Endpoint], aliases: list[str]) -> list[dict]:
    """Each endpoint with its network's configuration, checked; interfaces named. A dict per
    network: name, config, ips, mac, aliases (with --network-alias), interface."""
    import ipaddress

    from rootless.network import netconf

    nets = netconf.load_all()
    out: list[dict] = []
    for ep in endpoints:
        net = netconf.get(ep.network, nets)
        if any(o["name"] == net["name"] for o in out):
            continue
        subnets = [ipaddress.ip_network(s["subnet"]) for s in net.get("subnets") or ()]
        gateways = {s.get("gateway") for s in net.get("subnets") or ()}
        for ip in ep.ips:
            addr = ipaddress.ip_address(ip)
            if not any(addr in s for s in subnets):
                raise NetworkError(
                    f"requested static ip {ip} not in any subnet on network {net['name']}",
                    exit_code=126,
                )
            if ip in gateways or any(
                addr in (s.network_address, s.broadcast_address) for s in subnets if s.version == 4
            ):
                raise NetworkError(
                    f"requested ip address {ip} is the gateway or reserved on network {net['name']}",
                    exit_code=126,
                )
        out.append({"name": net["name"], "config": net, "ips": list(ep.ips), "mac": ep.mac,
                    "aliases": list(dict.fromkeys([*ep.aliases, *aliases])), "interface": ep.interface})  # fmt: skip
    taken = {o["interface"] for o in out if o["interface"]}
    if len(taken) != sum(1 for o in out if o["interface"]):
        raise NetworkError("two networks ask for the same interface_name: give each its own")
    i = 0
    for o in out:
        while not o["interface"]:
            if f"eth{i}" not in taken:
                o["interface"] = f"eth{i}"
                taken.add(o["interface"])
            i += 1
    return out


def names_of(endpoints: list[Endpoint] | tuple) -> list[str]:
    return [e.network for e in endpoints]


class BridgeHandle:
    """A container's attachment to the per-user network namespace (rootless.network.usernet): the
    NetworkHandle of mode "bridge". The session's connection is its exit fd: closing it (stop(),
    or the monitor dying) makes the helper remove the container's interfaces, names and ports."""

    mode = "bridge"
    pid = helper_pid = None  # the helper is shared: never one of the container's processes
    api_socket = None

    def __init__(self, session=None, endpoints=(), ports=()):
        self.session = session
        self.endpoints: list[dict] = list(endpoints)  # as the helper answered connect
        self.ports = list(ports)

    @property
    def userns_path(self) -> str:
        return f"/proc/{self.session.pid}/ns/user"

    def connect(self, pid: int, rec, wanted: list[dict], ports: list) -> None:
        """Give the container at `pid` its interfaces on the networks `wanted`, and publish ports."""
        reply = self.session.request({"op": "connect", "id": rec.id, "name": rec.name,
                                      "pid": pid, "endpoints": wanted})  # fmt: skip
        self.endpoints = reply["endpoints"]
        if ports:
            from rootless.network.ports import resolve_ports

            ports = resolve_ports(ports)
            self.session.request(
                {
                    "op": "ports",
                    "id": rec.id,
                    "ports": [
                        [p.host_ip, p.host_port, p.container_port, p.protocol] for p in ports
                    ],
                }
            )
            self.ports = ports

    def addresses(self) -> list[str]:
        """The container's addresses, in network order (no prefix length)."""
        return [a.split("/")[0] for e in self.endpoints for a in e["ips"]]

    def dns_servers(self) -> list[str]:
        return [s for e in self.endpoints for s in e.get("dns") or ()]

    def dns_search(self) -> list[str]:
        return ["dns.podman"] if self.dns_servers() else []

    def alive(self) -> bool:
        return self.session is not None

    def release(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    stop = kill = release

    def to_dict(self) -> dict:
        return {"mode": "bridge", "endpoints": self.endpoints,
                "ports": [[p.host_ip, p.host_port, p.container_port, p.protocol] for p in self.ports]}  # fmt: skip

    def list_forwards(self) -> list[dict]:
        return []
