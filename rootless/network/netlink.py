"""Links, addresses and routes of the *current* network namespace.

``loopback_up()`` is on every container's start path and is one ioctl (rootless.syscalls.link_up):
importing pyroute2 costs ~0.12 s (measured, see docs/DEVELOPING.md), more than half of a whole
`run`. Everything else here reads a namespace's state over netlink with pyroute2, imported when
called, never on the start path: ``netns_state()``, ``verify_netns()`` and ``has_default_route()``.
pyroute2 0.9 runs its own asyncio loop internally, so call these only where no trio/asyncio loop is
running. Netlink work that user-defined networks will need (bridges, veths, addresses, routes) belongs
here too, run by a long-lived helper that pays for the import once, not by a container's start.
"""

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
