"""Containers and their networks: which containers use a network, ``network connect`` and
``disconnect`` (of a running container too), and removing networks (``network rm``, ``prune``),
as podman does them. The library entry points the CLI (and later the Docker API) call.

A container's networks are its run options' ``--network`` values (rootless.runtime.spec: the first
in ``network``, the others in ``networks``), so connect and disconnect edit those, under the
container store's lock; for a running container they also ask the per-user network helper
(rootless.network.usernet) and update its /etc/hosts and resolv.conf as podman does.
"""

from __future__ import annotations

from dataclasses import replace

from rootless.errors import NetworkError


def _values(run) -> list[str]:
    return [v for v in [run.network or "", *run.networks] if v]


def _mode_and_endpoints(run):
    from rootless.network.mode import parse_networks

    mode, opts = parse_networks(_values(run))
    return mode, opts.get("endpoints") or []


def configured(run):
    """The network mode and the endpoints (rootless.network.bridge.Endpoint) a container's options
    ask for (NetworkError if they cannot be parsed)."""
    return _mode_and_endpoints(run)


def networks_of(rec) -> list[str]:
    """The names of the user-defined networks a container is on ("podman" for --network bridge)."""
    if rec.run is None:
        return []
    try:
        mode, eps = _mode_and_endpoints(rec.run)
    except NetworkError:
        return []
    return [e.network for e in eps] if mode == "bridge" else []


def users() -> dict[str, list]:
    """network name -> the containers (records) on it, whatever their state."""
    from rootless.runtime import state

    out: dict[str, list] = {}
    for rec in state.list_records():
        for name in networks_of(rec):
            out.setdefault(name, []).append(rec)
    return out


def remove_network(net: dict, force: bool = False, timeout: float = 10) -> None:
    """`network rm`: refused (exit 2) while containers use it, unless `force` removes them."""
    from rootless.network import netconf

    if net["name"] == netconf.DEFAULT_NAME:
        raise NetworkError(f"default network {netconf.DEFAULT_NAME} cannot be removed")
    recs = users().get(net["name"], [])
    if recs and not force:
        raise NetworkError(
            f'"{net["name"]}" has associated containers with it. Use -f to forcibly delete containers '
            "and pods: network is being used",
            exit_code=2,
        )
    if recs:
        from rootless.runtime import api

        for rec in recs:
            rec = api.get(rec.id)
            if rec.state in api.ACTIVE:
                api.stop(rec, timeout)
            api.remove(api.get(rec.id), force=True)
    netconf.remove(net["name"])


def prune(filters: list[str]) -> list[str]:
    """`network prune`: remove every network no container uses (not the default); their names."""
    from rootless.network import netconf

    used = users()
    removed = []
    for net in netconf.load_all():
        if net["name"] == netconf.DEFAULT_NAME or used.get(net["name"]):
            continue
        if not _prune_match(net, filters):
            continue
        netconf.remove(net["name"])
        removed.append(net["name"])
    return removed


def _prune_match(net: dict, filters: list[str]) -> bool:
    labels = net.get("labels") or {}
    for f in filters:
        key, _, val = f.partition("=")
        if key == "label":
            k, sep, v = val.partition("=")
            if k not in labels or (sep and labels[k] != v):
                return False
        elif key == "label!":
            k, sep, v = val.partition("=")
            if k in labels and (not sep or labels[k] == v):
                return False
        else:
            raise NetworkError(f'"{key}" is an invalid filter: use label or label!')
    return True


def _check_bridge(rec) -> None:
    from rootless.network.mode import parse_networks

    mode, _ = parse_networks(_values(rec.run) or [""])
    if mode != "bridge":
        raise NetworkError(f'"{mode}" is not supported: invalid network mode')


def _spec(name: str, ips: list[str], aliases: list[str], mac: str | None) -> str:
    opts = [f"ip{'6' if ':' in ip else ''}={ip}" for ip in ips] + [f"alias={a}" for a in aliases]
    if mac:
        opts.append(f"mac={mac}")
    return name + (":" + ",".join(opts) if opts else "")


def connect(container: str, network: str, *, aliases=(), ips=(), mac=None) -> None:
    """`network connect`: add a network to a container (running or not)."""
    from rootless.network import bridge, netconf
    from rootless.runtime import api, state

    rec = api.get(container)
    net = netconf.get(network)
    _check_bridge(rec)
    if net["name"] in networks_of(rec):
        raise NetworkError(f'container {rec.id} is already connected to network "{net["name"]}": '
                           "network is already connected")  # fmt: skip
    value = _spec(net["name"], list(ips), list(aliases), mac)
    mode, eps = _mode_and_endpoints(rec.run)
    wanted = bridge.resolve([*eps, *bridge.parse_more([], [value])], rec.run.network_aliases)
    new = [w for w in wanted if w["name"] == net["name"]]
    running = rec.state in api.ACTIVE and rec.pid_of("init")
    endpoints = []
    if running:
        from rootless.network import usernet

        reply = usernet.request({"op": "connect", "id": rec.id, "name": rec.name,
                                 "pid": rec.pid_of("init")[0], "endpoints": new})  # fmt: skip
        endpoints = (reply or {}).get("endpoints") or []
    with state.lock():
        fresh = state.load(rec.id)
        if fresh is None:
            raise NetworkError(
                f'no container with name or ID "{container}" found: no such container'
            )
        fresh.run = replace(fresh.run, networks=[*fresh.run.networks, value])
        if running and fresh.net:
            fresh.net = {**fresh.net, "endpoints": [*fresh.net.get("endpoints", []), *endpoints]}
        fresh.save(locked=True)
    if running and endpoints:
        _update_files(fresh, endpoints, add=True)


def disconnect(container: str, network: str) -> None:
    """`network disconnect`: remove a network from a container (running or not)."""
    from rootless.network import netconf
    from rootless.runtime import api, state

    rec = api.get(container)
    net = netconf.get(network)
    _check_bridge(rec)
    if net["name"] not in networks_of(rec):
        raise NetworkError(f"container {container} is not connected to network {network}")
    running = rec.state in api.ACTIVE and rec.pid_of("init")
    if running:
        from rootless.network import usernet

        usernet.request({"op": "disconnect", "id": rec.id, "network": net["name"]})
    with state.lock():
        fresh = state.load(rec.id)
        if fresh is None:
            return
        values = [v for v in _values(fresh.run) if _name_of(v) != net["name"]]
        fresh.run = replace(fresh.run, network=values[0] if values else "", networks=values[1:])
        gone = []
        if fresh.net:
            eps = fresh.net.get("endpoints", [])
            gone = [e for e in eps if e["network"] == net["name"]]
            fresh.net = {**fresh.net, "endpoints": [e for e in eps if e["network"] != net["name"]]}
        fresh.save(locked=True)
    if running and gone:
        _update_files(fresh, gone, add=False)


def _name_of(value: str) -> str:
    name = value.partition(":")[0]
    return "podman" if name == "bridge" else name


def _update_files(rec, endpoints: list[dict], add: bool) -> None:
    """A running container's hosts and resolv.conf after connect/disconnect (podman's way: entries
    and nameservers added in front, or removed)."""
    import os

    from rootless.network import etc

    names = [rec.hostname, rec.name]
    entries = [(ip.split("/")[0], names) for e in endpoints for ip in e.get("ips") or ()]
    hosts = os.path.join(rec.run_dir, "hosts")
    resolv = os.path.join(rec.run_dir, "resolv.conf")
    servers = [s for e in endpoints for s in e.get("dns") or ()]
    if os.path.exists(hosts) and entries:
        (etc.add_entries if add else etc.remove_entries)(hosts, entries)
    if os.path.exists(resolv) and servers:
        etc.edit_nameservers(resolv, servers, add)


def inspect_networks(rec) -> dict:
    """NetworkSettings for `inspect` of a container on networks: its first address and gateway, and
    Networks (podman's per-network entries, keyed by network name)."""
    net = rec.net or {}
    if net.get("mode") != "bridge":
        return {}
    nets = {}
    for e in net.get("endpoints") or ():
        v4 = [a for a in e.get("ips") or () if ":" not in a]
        v6 = [a for a in e.get("ips") or () if ":" in a]
        gw4 = next((g for g in e.get("gateways") or () if ":" not in g), "")
        gw6 = next((g for g in e.get("gateways") or () if ":" in g), "")
        nets[e["network"]] = {
            "EndpointID": "", "Gateway": gw4,
            "IPAddress": v4[0].split("/")[0] if v4 else "",
            "IPPrefixLen": int(v4[0].split("/")[1]) if v4 else 0,
            "IPv6Gateway": gw6,
            "GlobalIPv6Address": v6[0].split("/")[0] if v6 else "",
            "GlobalIPv6PrefixLen": int(v6[0].split("/")[1]) if v6 else 0,
            "MacAddress": e.get("mac") or "", "NetworkID": e["network"], "DriverOpts": None,
            "IPAMConfig": None, "Links": None, "Aliases": [*e.get("aliases", ()), rec.id[:12]],
        }  # fmt: skip
    return {"Networks": nets}
