"""Listing containers: `ps` (podman's table, --format templates and json, filters), `port` and `top`."""

import json
import time

import click

from rootless.errors import ContainerError


def _api():
    from rootless.runtime import api

    return api


def _ps_row(rec) -> dict:
    from rootless.runtime import inspect as ins

    return {
        "AutoRemove": rec.rm,
        "Command": rec.command,
        "Created": int(rec.created),
        "CreatedAt": ins.iso(rec.created),
        "Exited": rec.state == "exited",
        "ExitedAt": int(rec.finished or 0),
        "ExitCode": -1 if rec.exit_code is None and rec.state == "exited" else (rec.exit_code or 0),
        "Id": rec.id,
        "Image": rec.image,
        "ImageID": rec.image_id,
        "Names": [rec.name],
        "Pid": rec.pid if rec.state in ("running", "stopping") else 0,
        "Ports": ins.ports(rec),
        "StartedAt": int(rec.started or 0),
        "State": rec.state,
        "Status": ins.status_text(rec),
        # Not in podman's ps: the limits, under inspect's HostConfig names ({{.Memory}}, {{.PidsLimit}})
        **ins.resource_limits(rec),
        **_pod_fields(rec),
    }


def _pod_fields(rec) -> dict:
    """Pod and PodName (rootless.pods): the pod's id and name, "" for a container of no pod."""
    pod_id = (rec.run.pod if rec.run is not None else None) or ""
    if not pod_id:
        return {"Pod": "", "PodName": ""}
    from rootless.pods import store

    pod = store.load(pod_id)
    return {"Pod": pod_id, "PodName": pod.name if pod else ""}


def _match(rec, filters: dict[str, list[str]]) -> bool:
    import re

    for key, values in filters.items():
        if key == "status":
            if rec.state not in values:
                return False
        elif key == "name":
            if not any(re.search(v, rec.name) for v in values):
                return False
        elif key == "id":
            if not any(rec.id.startswith(v) for v in values):
                return False
        elif key == "pod":
            f = _pod_fields(rec)
            if not f["Pod"] or not any(v == f["PodName"] or f["Pod"].startswith(v) for v in values):
                return False
        elif key == "ancestor":
            if not any(
                v in (rec.image, rec.image_id) or rec.image_id.startswith(v) for v in values
            ):
                return False
        else:
            raise ContainerError(
                f"invalid filter {key!r}: use status=, name=, id=, ancestor= or pod="
            )
    return True


def _ago(ts: float) -> str:
    from rootless.runtime.inspect import human_duration

    return f"{human_duration(time.time() - ts)} ago"


@click.command(name="ps")
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Show all containers, not only running ones."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the container IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and commands.")
@click.option("--format", "fmt", default=None, help="json, or a Go template ({{.Names}} ...).")
@click.option("-f", "--filter", "filters", multiple=True, help="status=..., name=..., id=...")
@click.option("-l", "--latest", is_flag=True, help="Show only the latest container created.")
@click.option("-n", "--last", type=int, default=-1, help="Show the n last created containers.")
@click.option("-p", "--pod", "pod", is_flag=True, help="Show the pod of each container.")
def ps(all_, quiet, no_trunc, fmt, filters, latest, last, pod):
    """List containers."""
    api = _api()
    fl: dict[str, list[str]] = {}
    for f in filters:
        k, eq, v = f.partition("=")
        if not eq:
            raise ContainerError(f"invalid filter {f!r}: use KEY=VALUE")
        fl.setdefault(k, []).append(v)
    recs = sorted(api.containers(), key=lambda r: r.created, reverse=True)
    if not all_ and "status" not in fl and not latest and last < 0:
        recs = [r for r in recs if r.state in api.ACTIVE]
    recs = [r for r in recs if _match(r, fl)]
    if latest:
        recs = recs[:1]
    elif last >= 0:
        recs = recs[:last]
    if quiet:
        for r in recs:
            click.echo(r.id if no_trunc else r.id[:12])
        return
    rows = [_ps_row(r) for r in recs]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=4))
        return
    if fmt:
        from rootless.commands.template import render_template

        if fmt.startswith("table"):
            click.echo(render_template(fmt, _HEADERS))
        for row, r in zip(rows, recs, strict=False):
            d = dict(row)
            d.update(
                ID=r.id if no_trunc else r.id[:12],
                Names=r.name,
                Command=" ".join(r.command),
                Ports=_ports_str(r),
                Pod=row["Pod"][:12],
                PodName=row["PodName"] if pod else "",
                CreatedAt=_ago(r.created),
                RunningFor=_ago(r.created),
            )
            click.echo(render_template(fmt, d))
        return
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
             + (("POD ID", "PODNAME") if pod else ())]  # fmt: skip
    for row, r in zip(rows, recs, strict=False):
        cmd = " ".join(r.command)
        if not no_trunc and len(cmd) > 20:
            cmd = cmd[:17] + "..."
        table.append(
            (
                r.id if no_trunc else r.id[:12],
                r.image,
                cmd,
                _ago(r.created),
                row["Status"],
                _ports_str(r),
                r.name,
            )
            + ((row["Pod"][:12], row["PodName"]) if pod else ())
        )
    widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths, strict=False)).rstrip())


_HEADERS = {
    "ID": "CONTAINER ID",
    "Id": "CONTAINER ID",
    "Image": "IMAGE",
    "ImageID": "IMAGE ID",
    "Command": "COMMAND",
    "CreatedAt": "CREATED",
    "Created": "CREATED",
    "RunningFor": "CREATED",
    "Status": "STATUS",
    "State": "STATE",
    "Ports": "PORTS",
    "Names": "NAMES",
    "Pid": "PID",
    "ExitCode": "EXIT CODE",
    "StartedAt": "STARTED AT",
    "ExitedAt": "EXITED AT",
    "Exited": "EXITED",
    "AutoRemove": "AUTO REMOVE",
    "Memory": "MEMORY",
    "MemorySwap": "MEMORY SWAP",
    "MemoryReservation": "MEMORY RESERVATION",
    "NanoCpus": "NANO CPUS",
    "CpuShares": "CPU SHARES",
    "CpuWeight": "CPU WEIGHT",
    "CpusetCpus": "CPUSET CPUS",
    "PidsLimit": "PIDS LIMIT",
    "OomScoreAdj": "OOM SCORE ADJ",
    "Pod": "POD ID",
    "PodName": "PODNAME",
}


def _ports_str(rec) -> str:
    from rootless.runtime.inspect import ports_text

    return ports_text(rec)


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show ports of all running containers.")
@click.argument("container", required=False)
@click.argument("private_port", required=False)
def port(all_, container, private_port):
    """List published port mappings of a container."""
    from rootless.runtime import inspect as ins

    api = _api()
    if all_:
        recs = [r for r in api.containers() if r.state in api.ACTIVE]
    elif container:
        recs = [api.get(container)]
    else:
        raise ContainerError("give a container name or ID, or --all")
    want = None
    if private_port:
        num, _, proto = private_port.partition("/")
        want = (int(num) if num.isdigit() else -1, proto or "tcp")
    for r in recs:
        for p in ins.ports(r):
            if want and (p["container_port"], p["protocol"]) != want:
                continue
            host = f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}"
            if want:
                click.echo(host)
            elif all_:
                click.echo(f"{r.id[:12]}\t{p['container_port']}/{p['protocol']} -> {host}")
            else:
                click.echo(f"{p['container_port']}/{p['protocol']} -> {host}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("container")
@click.argument("descriptors", nargs=-1)
def top(container, descriptors):
    """Display the running processes of a container."""
    from rootless.runtime.top import top as top_rows

    rec = _api().get(container)
    rows = top_rows(rec, list(descriptors))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
