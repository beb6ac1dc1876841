"""Links, addresses and routes of the *current* network namespace.

``loopback_up()`` is on every container's start path and is one ioctl (rootless.syscalls.link_up):
importing pyroute2 costs ~0.12 s (measured, see docs/DEVELOPING.md), more than half of a whole
`run`. Everything else here reads a namespace's state over netlink with pyroute2, imported when
called, never on the start path: ``netns_state()``, ``verify_netns()`` and ``has_default_route()``.
pyroute2 0.9 runs its own asyncio loop internally, so call these only where no trio/asyncio loop is
running. Netlink work that user-defined networks will need (bridges, veths, addresses, routes) belongs
here too, run by a long-lived helper that pays for the import once, not by a container's start.
"""

import os
import socket

from rootless import syscalls
from rootless.errors import NetworkError


def loopback_up() -> None:
    """Bring ``lo`` up in the current network namespace (needs CAP_NET_ADMIN over it, i.e. call after
    joining the container's user namespace). Raises NetworkError on failure."""
    try:
        syscalls.link_up("lo")
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


# --- the per-user network namespace's links (rootless.network.usernetd; pyroute2, never on the
# start path) --------------------------------------------------------------------------------


def iproute_in(netns_path: str | None = None):
    """A pyroute2 IPRoute whose netlink socket lives in the network namespace at `netns_path` (the
    current one if None): this thread enters it for the socket's creation and comes back, so no
    process is forked for it. Needs CAP_SYS_ADMIN over that namespace."""
    from pyroute2 import IPRoute

    if netns_path is None:
        return IPRoute()
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns_path(netns_path, syscalls.CLONE_NEWNET)
        try:
            return IPRoute()
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
    finally:
        os.close(own)


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def bridge_up(ipr, name: str, addresses: list[str], mtu: int | None = None) -> None:
    """Create bridge `name` (if missing) with `addresses` ("10.89.0.1/24") and bring it up."""
    if _index(ipr, name) is None:
        kw = {"mtu": mtu} if mtu else {}
        ipr.link("add", ifname=name, kind="bridge", **kw)
    idx = _index(ipr, name)
    have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx)}
    for cidr in addresses:
        if cidr not in have:
            addr, plen = cidr.split("/")
            ipr.addr("add", index=idx, address=addr, prefixlen=int(plen))
    ipr.link("set", index=idx, state="up")


def delete_link(ipr, name: str) -> None:
    """Delete a link if it exists (a veth's peer goes with it)."""
    idx = _index(ipr, name)
    if idx is not None:
        try:
            ipr.link("del", index=idx)
        except Exception:  # noqa: BLE001 - gone meanwhile (its peer's namespace ended)
            pass


def add_veth(
    ipr,
    bridge: str,
    host_name: str,
    peer_name: str,
    netns_fd: int,
    mac: str | None,
    mtu: int | None,
) -> None:
    """A veth pair: `host_name` here, enslaved to `bridge` and up; `peer_name` created directly in
    the namespace of `netns_fd` (with `mac`, if given)."""
    peer: dict = {"ifname": peer_name, "net_ns_fd": netns_fd}
    if mac:
        peer["address"] = mac
    kw = {"mtu": mtu} if mtu else {}
    if mtu:
        peer["mtu"] = mtu
    ipr.link("add", ifname=host_name, kind="veth", peer=peer, **kw)
    idx = _index(ipr, host_name)
    ipr.link("set", index=idx, master=_index(ipr, bridge))
    ipr.link("set", index=idx, state="up")


def configure_peer(ipr, name: str, addresses: list[str], gateways: list[str]) -> str:
    """In the container's namespace (`ipr` opened there): `name`'s addresses, up, and a default
    route via each gateway of a family that has none yet. Returns its MAC address."""
    idx = _index(ipr, name)
    for cidr in addresses:
        addr, plen = cidr.split("/")
        ipr.addr("add", index=idx, address=addr, prefixlen=int(plen))
    ipr.link("set", index=idx, state="up")
    for gw in gateways:
        family = socket.AF_INET6 if ":" in gw else socket.AF_INET
        if not any(r.get_attr("RTA_DST") is None for r in ipr.get_routes(family=family, table=254)):
            ipr.route(
                "add", dst="::/0" if family == socket.AF_INET6 else "0.0.0.0/0", gateway=gw, oif=idx
            )
    link = ipr.get_links(idx)[0]
    return link.get_attr("IFLA_ADDRESS")
