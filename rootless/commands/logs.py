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


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow the log output.")
@click.option("--tail", default=-1, type=int, help="Show only the last N lines (-1: all).")
@click.option("--since", default=None, help="Show logs since a time or duration (10m).")
@click.option("--until", default=None, help="Show logs until a time or duration.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("-n", "--names", is_flag=True, help="Prefix each line with the container's name.")
@click.argument("containers", nargs=-1, required=True)
def logs(follow, tail, since, until, timestamps, names, containers):
    """Fetch the logs of one or more containers."""
    from rootless.runtime import logs as L
    from rootless.runtime import manage  # not api: reading a log needs no runtime

    since_t, until_t = _since(since), _since(until)
    recs = [manage.get(c) for c in containers]
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def emit(rec, ts, stream, content):
        if since_t is not None or until_t is not None:
            t = L.parse_timestamp(ts)
            if (since_t is not None and t < since_t) or (until_t is not None and t > until_t):
                return
        prefix = b""
        if names or len(recs) > 1:
            prefix += rec.id[:12].encode() + b" "
        if timestamps:
            prefix += ts.encode() + b" "
        (err if stream == "stderr" else out).write(prefix + content)

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
