"""`pod ps`: the pods as podman lists them (table, --format json or template, filters, sort)."""

from __future__ import annotations

import re
import time

import click

from rootless.commands import gotable
from rootless.errors import RootlessError

PS_HEADERS = {"ID": "POD ID", "Id": "POD ID", "Name": "NAME", "Status": "STATUS",
              "Created": "CREATED", "InfraID": "INFRA ID", "InfraId": "INFRA ID",
              "NumberOfContainers": "# OF CONTAINERS", "Labels": "LABELS",
              "ContainerIds": "IDS", "ContainerNames": "NAMES", "ContainerStatuses": "STATUS",
              "Cgroup": "CGROUP", "Networks": "NETWORKS"}  # fmt: skip
_STATUSES = ("created", "running", "degraded", "exited", "stopped", "paused", "dead")


def _ago(ns: int) -> str:
    from rootless.runtime.inspect import human_duration

    return f"{human_duration(time.time() - ns / 1e9)} ago"


def _match(pod, recs, key: str, values: list[str]) -> bool:
    from rootless.filters import label_match, parse_until
    from rootless.pods import manage

    if key == "name":
        return any(re.search(v, pod.name) for v in values)
    if key == "id":
        return any(re.match(v, pod.id) for v in values)
    if key == "label":
        return all(label_match(pod.labels, v) for v in values)
    if key == "label!":
        return not any(label_match(pod.labels, v) for v in values)
    if key == "status":
        for v in values:
            if v not in _STATUSES:
                raise RootlessError(f"invalid pod status {v!r}: use one of {', '.join(_STATUSES)}")
        return manage.status(recs).lower() in values
    if key == "ctr-names":
        return any(re.search(v, r.name) for v in values for r in recs)
    if key == "ctr-ids":
        return any(re.match(v, r.id) for v in values for r in recs)
    if key == "ctr-status":
        return any(r.state in values for r in recs)
    if key == "ctr-number":
        return any(v.isdigit() and len(recs) == int(v) for v in values)
    if key == "until":
        return all(pod.created_ns / 1e9 < parse_until(v) for v in values)
    raise RootlessError(
        f"invalid pod filter {key!r}: use name, id, label, status, ctr-names, ctr-ids, ctr-status, ctr-number or until"
    )


def _context(pod, recs, row: dict, no_trunc: bool) -> dict:
    """The fields a `pod ps --format` template sees."""
    from rootless.pods import manage

    inf, others = manage.split(pod, recs)
    ordered = others + ([inf] if inf else [])
    cut = (lambda i: i) if no_trunc else (lambda i: i[:12])  # noqa: E731
    return {
        **row,
        "ID": cut(pod.id),
        "Id": cut(pod.id),
        "Created": _ago(pod.created_ns),
        "InfraID": cut(inf.id) if inf else "",
        "InfraId": cut(inf.id) if inf else "",
        "NumberOfContainers": str(len(recs)),
        "ContainerIds": ",".join(cut(r.id) for r in ordered),
        "ContainerNames": ",".join(r.name for r in ordered),
        "ContainerStatuses": ",".join(r.state for r in ordered),
        "Labels": pod.labels,
    }


@click.command(name="ps")
@click.option("--ctr-ids", is_flag=True, help="Show the containers' IDs.")
@click.option("--ctr-names", is_flag=True, help="Show the containers' names.")
@click.option("--ctr-status", is_flag=True, help="Show the containers' statuses.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="name=, id=, label=, status=, ctr-names=..."
)
@click.option("--format", "fmt", default=None, help="json, or a Go template ({{.Name}}).")
@click.option("-l", "--latest", is_flag=True, help="Show only the latest pod.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs.")
@click.option("--noheading", is_flag=True, help="Do not print the header.")
@click.option("--ns", is_flag=True, hidden=True)
@click.option("-q", "--quiet", is_flag=True, help="Print only the pod IDs.")
@click.option(
    "--sort", default="created", type=click.Choice(["created", "id", "name", "number", "status"])
)
def ps(ctr_ids, ctr_names, ctr_status, filters, fmt, latest, no_trunc, noheading, ns, quiet, sort):
    """List pods."""
    from rootless.filters import split
    from rootless.pods import inspect as ins
    from rootless.pods import manage, store

    fl = split(filters)
    rows = [(p, manage.containers(p)) for p in store.list_pods()]
    for key, values in fl.items():
        rows = [(p, recs) for p, recs in rows if _match(p, recs, key, values)]
    keys = {"created": lambda t: -t[0].created_ns, "id": lambda t: t[0].id, "name": lambda t: t[0].name,
            "number": lambda t: len(t[1]), "status": lambda t: manage.status(t[1])}  # fmt: skip
    rows.sort(key=keys[sort])
    if latest:
        rows = sorted(rows, key=lambda t: -t[0].created_ns)[:1]
    if quiet:
        for p, _ in rows:
            click.echo(p.id if no_trunc else p.id[:12])
        return
    data = [ins.ps_row(p, recs) for p, recs in rows]
    if fmt == "json":
        gotable.echo_json(data)
        return
    items = [_context(p, recs, d, no_trunc) for (p, recs), d in zip(rows, data, strict=True)]
    if not fmt:
        cols = ["{{.ID}}", "{{.Name}}", "{{.Status}}", "{{.Created}}", "{{.InfraID}}"]
        extra = [c for c, on in (("{{.ContainerIds}}", ctr_ids), ("{{.ContainerNames}}", ctr_names),
                                 ("{{.ContainerStatuses}}", ctr_status)) if on]  # fmt: skip
        fmt = "table " + "\t".join(cols + (extra or ["{{.NumberOfContainers}}"]))
    lines = gotable.render(fmt, items, PS_HEADERS)
    if fmt.startswith("table") and noheading:
        lines = lines[1:]
    for line in lines:
        click.echo(line)
