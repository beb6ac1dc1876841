"""`rootless network`: create, ls, inspect, rm, prune, exists, connect, disconnect, with podman's
output (podman 4's network objects), flags and exit codes. The work is in rootless.network.netconf
(the configurations) and rootless.network.attach (containers and their networks)."""

import json

import click

from rootless.errors import NetworkError


def _netconf():
    from rootless.network import netconf

    return netconf


def _attach():
    from rootless.network import attach

    return attach


@click.group(name="network", help="Manage networks.")
def network():
    pass


def _kv(values, what: str) -> dict:
    out = {}
    for v in values:
        key, _, val = v.partition("=")
        if not key:
            raise NetworkError(f"invalid {what} {v!r}: use KEY=VALUE")
        out[key] = val
    return out


@network.command(name="create")
@click.option("-d", "--driver", default="bridge", help="The driver (bridge).")
@click.option("--subnet", multiple=True, help="Subnet in CIDR form (more than once for several).")
@click.option("--gateway", multiple=True, help="Gateway of the subnet given at the same position.")
@click.option("--ip-range", multiple=True, help="Allocate container addresses from this range.")
@click.option("--internal", is_flag=True, help="No route out of the network.")
@click.option("--ipv6", is_flag=True, help="Also give the network an IPv6 subnet.")
@click.option("--label", multiple=True, help="KEY[=VALUE] metadata.")
@click.option("-o", "--opt", multiple=True, help="Driver options (mtu=N, isolate=true).")
@click.option("--disable-dns", is_flag=True, help="No DNS server for the network.")
@click.option("--ipam-driver", default=None, help="host-local (the only IPAM driver).")
@click.option("--interface-name", default=None, help="Name of the bridge.")
@click.argument("name", required=False)
def create(driver, subnet, gateway, ip_range, internal, ipv6, label, opt, disable_dns,
           ipam_driver, interface_name, name):  # fmt: skip
    """Create a network."""
    if ipam_driver not in (None, "", "host-local"):
        raise NetworkError(f'unsupported ipam driver "{ipam_driver}"')
    labels = {k: v for k, _, v in (s.partition("=") for s in label)}
    net = _netconf().create(name, driver=driver, subnets=subnet, gateways=gateway,
                            ip_ranges=ip_range, internal=internal, ipv6=ipv6, labels=labels,
                            options=_kv(opt, "-o"), dns=not disable_dns,
                            interface=interface_name)  # fmt: skip
    click.echo(net["name"])


def _dangling(net: dict, used: dict) -> bool:
    return not used.get(net["name"])


def _matches(net: dict, filters: list[str], used: dict) -> bool:
    import re

    groups: dict[str, list[str]] = {}
    for f in filters:
        key, sep, val = f.partition("=")
        if not sep:
            raise NetworkError(
                f"invalid filter {f!r}: use KEY=VALUE (name, id, driver, label, dangling)"
            )
        groups.setdefault(key.lower(), []).append(val)
    for key, vals in groups.items():
        if key == "name":
            ok = any(re.search(v, net["name"]) for v in vals)
        elif key == "id":
            ok = any(net["id"].startswith(v) for v in vals)
        elif key == "driver":
            ok = net["driver"] in vals
        elif key == "label":
            labels = net.get("labels") or {}
            ok = all(
                (k in labels and (not s or labels[k] == v))
                for k, s, v in (x.partition("=") for x in vals)
            )
        elif key == "dangling":
            want = vals[-1].lower() in ("true", "1")
            ok = _dangling(net, used) == want
        else:
            raise NetworkError(
                f'"{key}" is an invalid filter: use name, id, driver, label or dangling'
            )
        if not ok:
            return False
    return True


@network.command(name="ls")
@click.option("--format", "fmt", default=None, help="json, or a Go template ({{.Name}} ...).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the names.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the network IDs.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="name=, id=, driver=, label=, dangling="
)
@click.option("--noheading", is_flag=True, help="Do not print the header.")
def ls(fmt, quiet, no_trunc, filters, noheading):
    """List networks."""
    nets = _netconf().load_all()
    used = _attach().users() if any(f.startswith("dangling") for f in filters) else {}
    nets = [n for n in nets if _matches(n, list(filters), used)]
    if quiet:
        for n in nets:
            click.echo(n["name"])
        return
    if fmt and fmt.strip().lower() == "json":
        click.echo(json.dumps(nets, indent=2))
        return
    rows = [{**n, "ID": n["id"] if no_trunc else n["id"][:12], "Name": n["name"],
             "Driver": n["driver"], "Labels": ",".join(f"{k}={v}" for k, v in (n.get("labels") or {}).items())}
            for n in nets]  # fmt: skip
    if fmt and not fmt.startswith("table"):
        from rootless.commands.template import render_template

        for r in rows:
            click.echo(render_template(fmt, r))
        return
    from rootless.commands.history import tabwriter

    cols = [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver")]
    if fmt:  # "table {{.Name}} ...": the named fields, with their headers
        import re

        fields = re.findall(r"\{\{\s*\.(\w+)\s*\}\}", fmt)
        heads = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Labels": "LABELS"}
        cols = [(heads.get(f, f.upper()), f) for f in fields]
    table = ([] if noheading else [[h for h, _ in cols]]) + [
        [str(r.get(k, "")) for _, k in cols] for r in rows
    ]
    for line in tabwriter(table):
        click.echo(line)


@network.command(name="inspect")
@click.option("-f", "--format", "fmt", default=None, help="A Go template ({{.Name}} ...), or json.")
@click.argument("names", nargs=-1, required=True)
def inspect(fmt, names):
    """Show networks in detail."""
    nc = _netconf()
    nets, missing = [], []
    all_nets = nc.load_all()
    for name in names:
        try:
            nets.append(nc.get(name, all_nets))
        except nc.NoSuchNetwork:
            missing.append(name)
    if fmt and fmt.strip().lower() != "json":
        from rootless.commands.template import render_template

        for n in nets:
            click.echo(render_template(fmt, n))
    else:
        click.echo(json.dumps(nets, indent=5))
    if missing:
        name = missing[0]
        raise NetworkError(
            f"inspecting object: network {name}: unable to find network with name or ID {name}: network not found"
        )


@network.command(name="exists")
@click.argument("name")
def exists(name):
    """Exit 0 if the network exists, 1 if not."""
    return 0 if _netconf().exists(name) else 1


@network.command(name="rm")
@click.option("-f", "--force", is_flag=True, help="Remove the containers that use it too.")
@click.option(
    "-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing them."
)
@click.argument("names", nargs=-1, required=True)
def rm(force, timeout, names):
    """Remove networks."""
    nc = _netconf()
    errors: list[NetworkError] = []
    for name in names:
        try:
            net = nc.get(name)
            _attach().remove_network(net, force=force, timeout=10 if timeout is None else timeout)
            click.echo(net["name"])
        except NetworkError as e:
            if isinstance(e, nc.NoSuchNetwork):
                e.exit_code = 1
            errors.append(e)
    _report(errors)


def _report(errors: list) -> None:
    """podman prints every failure but the last as an Error line and exits with the last's code."""
    for e in errors[:-1]:
        click.echo(f"Error: {e}", err=True)
    if errors:
        raise errors[-1]


@network.command(name="prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--filter", "filters", multiple=True, help="label=, until=")
def prune(force, filters):
    """Remove every network no container uses."""
    if not force:
        click.echo("WARNING! This will remove all networks not used by at least one container.")
        click.echo("Are you sure you want to continue? [y/N] ", nl=False)
        answer = click.get_text_stream("stdin").readline().strip().lower()
        if answer not in ("y", "yes"):
            return
    for name in _attach().prune(list(filters)):
        click.echo(name)


@network.command(name="connect")
@click.option("--alias", multiple=True, help="A name for the container on this network.")
@click.option("--ip", default=None, help="Its IPv4 address on the network.")
@click.option("--ip6", default=None, help="Its IPv6 address on the network.")
@click.option("--mac-address", default=None, help="Its MAC address on the network.")
@click.argument("net")
@click.argument("container")
def connect(alias, ip, ip6, mac_address, net, container):
    """Connect a container to a network."""
    ips = [a for a in (ip, ip6) if a]
    _attach().connect(container, net, aliases=list(alias), ips=ips, mac=mac_address)


@network.command(name="disconnect")
@click.option("-f", "--force", is_flag=True, help="(accepted for compatibility)")
@click.argument("net")
@click.argument("container")
def disconnect(force, net, container):
    """Disconnect a container from a network."""
    _attach().disconnect(container, net)
