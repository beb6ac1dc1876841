"""`logs`: a container's output from its k8s-file log (rootless.runtime.logs), with podman's flags."""

import os
import sys
import time

import click

from rootless.errors import ContainerError


def _since(value: str | None) -> float | None:
    """--since/--until: RFC 3339 time, a Unix time, or a duration before now (10m, 1h30m, 5s)."""
    import re

    if not value:
        return None
    v = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    if re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms))+", v):
        total = 0.0
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", v):
            total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return time.time() - total
    from rootless.runtime.logs import parse_timestamp

    try:
        return parse_timestamp(v)
    except ValueError:
        raise ContainerError(
            f"invalid time {value!r}: use RFC 3339 (2024-01-02T15:04:05Z), a Unix time or a duration (10m)"
        ) from None


# podman 4.3's --color: one color per container, in the order given, the whole line wrapped
COLORS = (b"\033[37m", b"\033[31m", b"\033[33m", b"\033[34m", b"\033[35m", b"\033[36m", b"\033[32m")


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow the log output.")
@click.option("--tail", default=-1, type=int, help="Show only the last N lines (-1: all).")
@click.option("--since", default=None, help="Show logs since a time or duration (10m).")
@click.option("--until", default=None, help="Show logs until a time or duration.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("-n", "--names", is_flag=True,
              help="With several containers, prefix lines with names instead of IDs.")  # fmt: skip
@click.option("--color", is_flag=True, help="Output each container in a color of its own.")
@click.option("-l", "--latest", is_flag=True, help="Show the logs of the latest container created.")
@click.argument("containers", nargs=-1)
def logs(follow, tail, since, until, timestamps, names, color, latest, containers):
    """Fetch the logs of one or more containers."""
    from rootless.runtime import logs as L
    from rootless.runtime import manage  # not api: reading a log needs no runtime

    since_t, until_t = _since(since), _since(until)
    recs = _targets(manage, containers, latest)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    colors = {rec.id: COLORS[i % len(COLORS)] for i, rec in enumerate(recs)} if color else {}

    def emit(rec, ts, stream, content):
        if since_t is not None or until_t is not None:
            t = L.parse_timestamp(ts)
            if (since_t is not None and t < since_t) or (until_t is not None and t > until_t):
                return
        prefix = b""
        if len(recs) > 1:  # as podman: -n alone changes nothing for one container
            prefix += (rec.name if names else rec.id[:12]).encode() + b" "
        if timestamps:
            prefix += ts.encode() + b" "
        line = prefix + content
        if rec.id in colors:
            body, nl = (line[:-1], b"\n") if line.endswith(b"\n") else (line, b"")
            line = colors[rec.id] + body + b"\033[0m" + nl
        (err if stream == "stderr" else out).write(line)

    for rec in recs:
        rec.check_logged()
    try:
        for rec in recs:
            offset = 0
            if tail >= 0:
                size = os.path.getsize(rec.log_path) if os.path.exists(rec.log_path) else 0
                for ts, stream, content in L.tail(rec.log_path, tail):
                    emit(rec, ts, stream, content)
                offset = size
            else:
                for ts, stream, content, off in L.entries(rec.log_path, 0, final=not follow):
                    emit(rec, ts, stream, content)
                    offset = off
                if not follow and os.path.exists(rec.log_path):
                    offset = os.path.getsize(rec.log_path)
            if not follow:
                continue
            out.flush()
            L.follow(rec, offset, lambda ts, stream, content, r=rec: emit(r, ts, stream, content))
    except BrokenPipeError:
        pass
    out.flush()


def _targets(manage, containers, latest) -> list:
    """The named containers, or the latest one created (-l)."""
    if latest:
        if containers:
            raise ContainerError("--latest and containers cannot be used together")
        from rootless.commands.ps import select_containers

        recs = select_containers((), all_=True, latest=True)
        if not recs:
            raise ContainerError("no containers to show logs of")
        return recs
    if not containers:
        raise ContainerError('"rootless logs" requires a name, id, or the "--latest" flag')
    return [manage.get(c) for c in containers]
