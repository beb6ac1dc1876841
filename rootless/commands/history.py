"""`history` and `diff` (also `image history`, `image diff`, `container diff`), podman's output."""

from __future__ import annotations

import json

import click

from rootless.commands.flags import PodmanCommand, bool_option, value
from rootless.errors import RootlessError

HEADERS = {"ID": "ID", "Created": "CREATED", "CreatedBy": "CREATED BY", "Size": "SIZE",
           "Comment": "COMMENT", "CreatedAt": "CREATED AT", "Tags": "TAGS"}  # fmt: skip


def tabwriter(rows: list[list[str]]) -> list[str]:
    """Go's tabwriter as podman sets it up (minwidth 12, padding 2; the last column unpadded)."""
    if not rows:
        return []
    n = max(len(r) for r in rows)
    widths = [max(12, max(len(r[i]) for r in rows if i < len(r)) + 2) for i in range(n - 1)]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < n - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells).rstrip() if r[-1] == "" else "".join(cells))
    return out


def _human_size(n: int) -> str:
    from rootless.commands.images import _size

    return _size(n)


@click.command(cls=PodmanCommand)
@click.argument("image")
@click.option(
    "--format", "fmt", default=None, help="json, or a Go template ({{.ID}} {{.Size}}...)."
)
@bool_option("-H", "--human", default=True, help="Sizes and dates in human form (default true).")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@click.option("-q", "--quiet", is_flag=True, help="Print the image IDs only.")
@click.pass_context
def history(ctx, image, fmt, human, no_trunc, quiet):
    """Show the history of an image."""
    from rootless.build import history as hist
    from rootless.commands.images import render_template
    from rootless.image.store import Store

    human = value(ctx, "human", human)
    store = Store.open()
    rec = store.require(image)
    rows = hist.rows(store, rec)
    short = (lambda i: i) if no_trunc else (lambda i: i if i == "<missing>" else i[:12])
    if quiet:
        for r in rows:
            click.echo(short(r["id"]))
        return
    if fmt == "json":
        out = []
        for r in rows:
            d = {"id": r["id"], "created": r["created"], "CreatedBy": r["created_by"],
                 "size": r["size"]}  # fmt: skip
            if r["comment"]:
                d["comment"] = r["comment"]
            d["Created"] = hist.rfc3339(r["created"])
            out.append(d)
        click.echo(json.dumps(out))  # one line, as podman prints it
        return
    view = []
    for r in rows:
        by = r["created_by"]
        if not no_trunc and len(by) > 45:
            by = by[:42] + "..."
        view.append({
            "ID": short(r["id"]),
            "Created": hist.human_created(r["created"]) if human else hist.rfc3339(r["created"]),
            "CreatedBy": by,
            "Size": _human_size(r["size"]) if human else str(r["size"]),
            "Comment": r["comment"],
            "CreatedAt": hist.created_at(r["created"]),
            "Tags": "",
        })  # fmt: skip
    if fmt:
        table = fmt.startswith("table")
        lines = [render_template(fmt, v) for v in view]
        if table:
            import re

            keys = re.findall(r"\{\{\s*\.(\w+)\s*\}\}", fmt)
            head = "\t".join(HEADERS.get(k, k.upper()) for k in keys)
            cells = [ln.split("\t") for ln in [head, *lines]]
            lines = tabwriter(cells)
        for ln in lines:
            click.echo(ln)
        return
    keys = ["ID", "Created", "CreatedBy", "Size", "Comment"]
    table = [[HEADERS[k] for k in keys]] + [[v[k] for k in keys] for v in view]
    for ln in tabwriter(table):
        click.echo(ln)


def _diff_cmd(kind: str):
    @click.command(name="diff")
    @click.argument("name")
    @click.argument("other", required=False)
    @click.option("--format", "fmt", default=None, help="json, or the default A/C/D lines.")
    @click.option("-l", "--latest", is_flag=True, hidden=True)
    def diff(name, other, fmt, latest):
        """Show the changes of a container's or image's filesystem (A added, C changed, D deleted)."""
        from rootless.build import container

        if latest:
            raise RootlessError("--latest is not supported: name the container")
        if fmt not in (None, "json"):
            raise click.BadParameter("use --format json", param_hint="--format")
        changes = container.diff(name, other, kind)
        if fmt == "json":
            out = {"changed": [], "added": [], "deleted": []}
            key = {"C": "changed", "A": "added", "D": "deleted"}
            for k, p in changes:
                out[key[k]].append(p)
            click.echo(json.dumps({k: v for k, v in out.items() if v}, indent=5))
            return
        for k, p in changes:
            click.echo(f"{k} {p}")

    return diff


diff = _diff_cmd("all")
image_diff = _diff_cmd("image")
container_diff = _diff_cmd("container")
