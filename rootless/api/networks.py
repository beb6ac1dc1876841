"""Network endpoints: list, inspect, create, delete, connect, disconnect and prune, onto rootless's
user-defined networks (rootless.network.netconf and attach) in Docker's JSON shapes and status
codes. Docker's "bridge" network is rootless's default network (podman's)."""

from __future__ import annotations

from rootless.api.protocol import (
    ApiError,
    Request,
    Response,
    check_params,
    json_response,
    route,
)


def _netconf():
    from rootless.network import netconf

    return netconf


def _get(name: str) -> dict:
    nc = _netconf()
    if name == "bridge":
        name = nc.DEFAULT_NAME
    try:
        return nc.get(name)
    except nc.NoSuchNetwork:
        raise ApiError(404, f"network {name} not found") from None


def _docker(net: dict, users: dict | None = None) -> dict:
    """A network as Docker shows it (Containers: the containers on it, as far as the records say)."""
    from rootless.network import attach

    users = attach.users() if users is None else users
    containers = {}
    for rec in users.get(net["name"], []):
        for e in (rec.net or {}).get("endpoints") or ():
            if e.get("network") != net["name"]:
                continue
            ips = e.get("ips") or []
            containers[rec.id] = {
                "Name": rec.name, "EndpointID": "", "MacAddress": e.get("mac") or "",
                "IPv4Address": next((a for a in ips if ":" not in a), ""),
                "IPv6Address": next((a for a in ips if ":" in a), ""),
            }  # fmt: skip
    subnets = [{"Subnet": s["subnet"], **({"Gateway": s["gateway"]} if s.get("gateway") else {})}
               for s in net.get("subnets") or ()]  # fmt: skip
    return {
        "Name": net["name"], "Id": net["id"], "Created": net.get("created", ""), "Scope": "local",
        "Driver": net.get("driver", "bridge"), "EnableIPv6": bool(net.get("ipv6_enabled")),
        "IPAM": {"Driver": "default", "Options": None, "Config": subnets},
        "Internal": bool(net.get("internal")), "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
        "Options": dict(net.get("options") or {}), "Labels": dict(net.get("labels") or {}),
    }  # fmt: skip


def _filters(req: Request) -> dict[str, list[str]]:
    raw = req.json_param("filters", {}) or {}
    return {k: ([x for x, on in v.items() if on] if isinstance(v, dict) else list(v))
            for k, v in raw.items()}  # fmt: skip


def _match(net: dict, key: str, values: list[str]) -> bool:
    labels = net.get("labels") or {}
    if key == "name":
        return net["name"] in values
    if key == "id":
        return any(net["id"].startswith(v) for v in values)
    if key == "driver":
        return net.get("driver", "bridge") in values
    if key == "label":

        def has(v):
            k, sep, val = v.partition("=")
            return k in labels and (not sep or labels[k] == val)

        return all(has(v) for v in values)
    if key in ("scope", "type"):
        return True
    raise ApiError(400, f"invalid filter {key!r}")


@route("GET", "/networks")
def list_networks(req: Request):
    from rootless.network import attach

    check_params(req, ("filters",))
    users = attach.users()
    nets = _netconf().load_all()
    for key, values in _filters(req).items():
        nets = [n for n in nets if _match(n, key, values)]
    return json_response([_docker(n, users) for n in nets])


@route("GET", "/networks/{name}")
def inspect(req: Request):
    check_params(req, ("verbose", "scope"))
    return json_response(_docker(_get(req.args["name"])))


@route("POST", "/networks/create")
def create(req: Request):
    nc = _netconf()
    body = req.json({}) or {}
    name = body.get("Name")
    if not name:
        raise ApiError(400, "a network needs a Name")
    if any(n["name"] == name for n in nc.load_all()):
        raise ApiError(409, f"network with name {name} already exists")
    ipam = body.get("IPAM") or {}
    configs = ipam.get("Config") or []
    net = nc.create(
        name,
        driver=body.get("Driver") or "bridge",
        subnets=[c["Subnet"] for c in configs if c.get("Subnet")],
        gateways=[c["Gateway"] for c in configs if c.get("Gateway")],
        ip_ranges=[c["IPRange"] for c in configs if c.get("IPRange")],
        internal=bool(body.get("Internal")),
        ipv6=bool(body.get("EnableIPv6")),
        labels=body.get("Labels") or {},
    )
    return json_response({"Id": net["id"], "Warning": ""}, 201)


@route("DELETE", "/networks/{name}")
def delete(req: Request):
    from rootless.network import attach

    net = _get(req.args["name"])
    if net["name"] == _netconf().DEFAULT_NAME:
        raise ApiError(403, f"{req.args['name']} is a pre-defined network and cannot be removed")
    if attach.users().get(net["name"]):
        raise ApiError(403, f"error while removing network: network {net['name']} id "
                            f"{net['id']} has active endpoints")  # fmt: skip
    attach.remove_network(net)
    return Response(204, b"")


@route("POST", "/networks/{name}/connect")
def connect(req: Request):
    from rootless.network import attach

    net = _get(req.args["name"])
    body = req.json({}) or {}
    ep = body.get("EndpointConfig") or {}
    ips = [v for k, v in (ep.get("IPAMConfig") or {}).items() if k.endswith("Address") and v]
    attach.connect(_container(body), net["name"], aliases=ep.get("Aliases") or (), ips=ips,
                   mac=ep.get("MacAddress") or None)  # fmt: skip
    return Response(200, b"")


@route("POST", "/networks/{name}/disconnect")
def disconnect(req: Request):
    from rootless.network import attach

    net = _get(req.args["name"])
    attach.disconnect(_container(req.json({}) or {}), net["name"])
    return Response(200, b"")


def _container(body: dict) -> str:
    from rootless.runtime import state

    name = body.get("Container") or ""
    try:
        return state.lookup(name).id
    except state.NoSuchContainer:
        raise ApiError(404, f"No such container: {name}") from None


@route("POST", "/networks/prune")
def prune(req: Request):
    from rootless.network import attach

    check_params(req, ("filters",))
    filters = [
        f"{k}={v}" for k, vs in _filters(req).items() for v in vs if k in ("label", "label!")
    ]
    return json_response({"NetworksDeleted": attach.prune(filters)})
