"""podman's listings as podman prints them, for `volume` and `pod`: Go's tabwriter with podman's
settings (a column is as wide as its widest cell plus 2, at least 12; the last is not padded),
`--format` templates (one line per item; `table ...` adds a header row and aligns the columns),
`--format json`, and Go's way of printing values in templates (true/false, time.Time).
"""

from __future__ import annotations

import json
import re

import click

from rootless import gotime

_FIELD = re.compile(r"\{\{\s*(?:json\s+)?\.?([A-Za-z0-9_.]*)\s*\}\}")


def tabwrite(rows: list[list[str]]) -> list[str]:
    """Lines of a table aligned as Go's tabwriter.NewWriter(out, 12, 2, 2, ' ', 0) aligns them."""
    if not rows:
        return []
    ncol = max(len(r) for r in rows)
    widths = [max(12, max(len(r[i]) for r in rows if i < len(r)) + 2) for i in range(ncol - 1)]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < ncol - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells))
    return out


go_time_string = gotime.string


def _go_values(obj):
    """A template context: booleans as Go prints them."""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, dict):
        return {k: _go_values(v) for k, v in obj.items()}
    return obj


def render(fmt: str, items: list[dict], headers: dict[str, str]) -> list[str]:
    """Lines for --format FMT over `items` (template contexts); `headers` names the columns of a
    `table` format (field -> HEADER; unknown fields get their name in capitals)."""
    from rootless.commands.template import render_template

    if fmt.startswith("table"):
        body = fmt[5:].strip().replace("\\t", "\t")
        cols = [c for c in re.split(r"\t+|(?<=\}\})\s+(?=\{\{)", body) if c.strip()]
        head = [_FIELD.sub(lambda m: headers.get(m.group(1), m.group(1).upper()), c) for c in cols]
        rows = [head] + [[render_template(c, _go_values(it)) for c in cols] for it in items]
        return tabwrite(rows)
    return [render_template(fmt, _go_values(it)) for it in items]


def echo_json(data, indent: int = 2) -> None:
    """JSON as podman prints it: `ls --format json` indents by 2, `inspect` by 5 (podman 4.3)."""
    click.echo(json.dumps(data, indent=indent, ensure_ascii=False))


def confirm(prompt: str) -> bool:
    """podman's [y/N] question on stdout (no answer at all is an error, as in podman)."""
    from rootless.errors import RootlessError

    click.echo(prompt, nl=False)
    try:
        answer = input()
    except EOFError:
        click.echo()
        raise RootlessError("EOF: no answer on stdin; use --force to skip the question") from None
    return answer.strip().lower() in ("y", "yes")
