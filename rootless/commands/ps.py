"""Listing containers: `ps` (podman's table, --format templates and json, filters), `port` and `top`."""

import re
import time

import click

from rootless.errors import ContainerError, RootlessError


def _api():
    from rootless.runtime import api

    return api


_GO_ZERO = -62135596800  # Go's zero time.Time as a Unix time: "never" in podman's JSON


def _ago(ts: float) -> str:
    from rootless.runtime.inspect import human_duration

    return f"{human_duration(time.time() - ts)} ago"


def _state_text(rec) -> str:
    """psReporter.State: "Up 5 seconds ago", "Exited (3) 2 minutes ago", "Created", "Paused"."""
    from rootless.runtime import listing

    st = listing.state_of(rec)
    if st == "running":
        return f"Up {_ago(rec.started or rec.created)}"
    if st == "exited":
        code = "unknown" if rec.exit_code is None else rec.exit_code  # a monitor that died
        return f"Exited ({code}) {_ago(rec.finished or rec.created)}"
    return st.title()


def _status_text(rec) -> str:
    from rootless.runtime import listing

    health = listing.health_of(rec)
    return _state_text(rec) + (f" ({health})" if health else "")


def ps_json(rec) -> dict:
    """One container as podman's `ps --format json` prints it (the same keys, in its order)."""
    from rootless.runtime import inspect as ins
    from rootless.runtime import listing

    st = listing.state_of(rec)
    pod = _pod_fields(rec)
    return {
        "AutoRemove": rec.rm,
        "Command": rec.command,
        "CreatedAt": _ago(rec.created),
        "Exited": st == "exited",
        "ExitedAt": int(rec.finished) if rec.finished and st == "exited" else _GO_ZERO,
        "ExitCode": (rec.exit_code if rec.exit_code is not None else -1) if st == "exited" else 0,
        "Id": rec.id,
        "Image": rec.image,
        "ImageID": rec.image_id.removeprefix("sha256:"),
        "IsInfra": bool(rec.run is not None and getattr(rec.run, "infra", False)),
        "Labels": listing.labels(rec) or None,
        "Mounts": [m.get("destination", "") for m in rec.mounts],
        "Names": [rec.name],
        "Namespaces": {},
        "Networks": _networks(rec),
        "Pid": rec.pid if st in ("running", "stopping", "paused") else 0,
        "Pod": pod["Pod"],
        "PodName": pod["PodName"],
        "Ports": ins.ports(rec) or None,
        "Size": None,
        "StartedAt": int(rec.started) if rec.started else _GO_ZERO,
        "State": st,
        "Status": _status_text(rec),
        "Created": int(rec.created),
    }


def _networks(rec) -> list[str]:
    nets = [rec.network] + list(getattr(rec.run, "networks", None) or []) if rec.network else []
    return [n.split(":")[0] for n in nets if n.split(":")[0] not in ("slirp4netns", "pasta", "none",
            "host", "private", "container", "ns", "") and not n.startswith("container:")]  # fmt: skip


def _template_row(rec, no_trunc: bool) -> dict:
    """The fields of podman's psReporter for --format templates."""
    from rootless import gotime
    from rootless.commands.template import GoMap
    from rootless.runtime import inspect as ins
    from rootless.runtime import listing

    j = ps_json(rec)
    cmd = " ".join(rec.command)
    created = gotime.string(int(rec.created * 1e9))
    return {
        **j,
        **ins.resource_limits(rec),
        "ID": rec.id if no_trunc else rec.id[:12],
        "ImageID": j["ImageID"] if no_trunc else j["ImageID"][:12],
        "Command": cmd if no_trunc or len(cmd) <= 17 else cmd[:17] + "...",
        "CreatedHuman": _ago(rec.created),
        "RunningFor": _ago(rec.created),
        "CreatedAt": created,
        "Created": created,
        "State": _state_text(rec),
        "Labels": GoMap(listing.labels(rec)),
        "Names": rec.name,
        "Networks": ",".join(j["Networks"]),
        "Ports": _ports_str(rec),
        "Pod": j["Pod"] if no_trunc else j["Pod"][:12],
        "Restarts": str(rec.restart_count),
        "Size": "",
        **{k: "" for k in ("Cgroup", "IPC", "MNT", "NET", "PIDNS", "User", "UTS")},
    }


def _pod_fields(rec) -> dict:
    """Pod and PodName (rootless.pods): the pod's id and name, "" for a container of no pod."""
    pod_id = (rec.run.pod if rec.run is not None else None) or ""
    if not pod_id:
        return {"Pod": "", "PodName": ""}
    from rootless.pods import store

    pod = store.load(pod_id)
    return {"Pod": pod_id, "PodName": pod.name if pod else ""}


def select_containers(filters, *, all_=True, last=-1, latest=False, sort=None) -> list:
    """The containers these --filter values (and --all, --last, --latest, --sort) select."""
    from rootless.runtime import listing

    return listing.select(_api().containers(), listing.parse_filters(filters), all_=all_,
                          last=last, latest=latest, sort=sort)  # fmt: skip


@click.command(name="ps")
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Show all containers, not only running ones."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the container IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and commands.")
@click.option("--format", "fmt", default=None, help="json, or a Go template ({{.Names}} ...).")
@click.option("-f", "--filter", "filters", multiple=True,
              help="id, name, label, label!, exited, status, ancestor, before, since, volume, "
              "health, pod, network or until=VALUE.")  # fmt: skip
@click.option("-l", "--latest", is_flag=True, help="Show only the latest container created.")
@click.option("-n", "--last", type=int, default=-1, help="Show the n last created containers.")
@click.option("-p", "--pod", "pod", is_flag=True, help="Show the pod of each container.")
@click.option("--noheading", is_flag=True, help="Do not print the header row.")
@click.option("--sort", default=None, metavar="FIELD",
              help="Sort by command, created, id, image, names, pod, runningfor, size or status.")  # fmt: skip
@click.option("-s", "--size", is_flag=True, hidden=True)
@click.option("--ns", is_flag=True, hidden=True)
@click.option("--sync", is_flag=True, hidden=True)
@click.option("--external", is_flag=True, hidden=True)
def ps(all_, quiet, no_trunc, fmt, filters, latest, last, pod, noheading, sort, size, ns, sync,
       external):  # fmt: skip
    """List containers."""
    from rootless.commands import gotable
    from rootless.commands.template import is_table, render_template

    recs = select_containers(filters, all_=all_, last=last, latest=latest, sort=sort)
    if fmt in ("json", "{{json .}}"):
        gotable.echo_json([ps_json(r) for r in recs])
        return
    if quiet and not fmt:
        for r in recs:
            click.echo(r.id if no_trunc else r.id[:12])
        return
    rows = [_template_row(r, no_trunc) for r in recs]
    if fmt and not is_table(fmt):
        for row in rows:
            click.echo(render_template(fmt, row))
        return
    if not fmt:
        fmt = "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.CreatedHuman}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}"
        fmt += "\\t{{.Pod}}\\t{{.PodName}}" if pod else ""
    for line in table_lines(fmt, rows, _HEADERS, noheading):
        click.echo(line)


def table_lines(fmt: str, rows: list[dict], headers: dict[str, str], noheading: bool) -> list[str]:
    """A `table ...` format over rows, aligned by Go's tabwriter as podman's report package does."""
    from rootless.commands import gotable
    from rootless.commands.template import render_template

    lines = [] if noheading else [_header(fmt, headers)]
    for row in rows:
        lines += render_template(fmt, row).split("\n")
    return gotable.tabwrite([ln.split("\t") for ln in lines])


def _header(fmt: str, headers: dict[str, str]) -> str:
    """The header row: each field's column name (podman's report.Headers: the field name split at
    its capitals and upper-cased, unless `headers` names it)."""
    from rootless.commands.template import render_template

    def name(field: str) -> str:
        return headers.get(field) or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", field).upper()

    class Heads(dict):
        def __missing__(self, key):
            return name(key)

        def __contains__(self, key):
            return True

    try:
        return render_template(fmt, Heads())
    except RootlessError:
        return render_template(
            re.sub(r"\{\{[^}]*?\.(\w+)[^}]*\}\}", lambda m: name(m.group(1)), fmt), {}
        )


_HEADERS = {
    "ID": "CONTAINER ID",
    "Id": "CONTAINER ID",
    "ImageID": "IMAGE ID",
    "CreatedHuman": "CREATED",
    "CreatedAt": "CREATED AT",
    "RunningFor": "RUNNING FOR",
    "Pod": "POD ID",
    "PodName": "PODNAME",
    "Networks": "NETWORKS",
    "Cgroup": "CGROUPNS",
    "User": "USERNS",
    "PIDNS": "PIDNS",
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
