"""`pod logs`: the output of a pod's containers (not its infra), merged in time order, each line
prefixed with its container's short ID (or name, -n), as podman prints them; -f follows every
container until none runs any more."""

from __future__ import annotations

import heapq
import sys
import time

import click

from rootless.errors import RootlessError


def _read(recs, offsets: dict, final: bool) -> list[tuple]:
    """New entries of every container's log from its offset: (time, n, rec, ts, stream, content)."""
    from rootless.runtime import logs as L

    merged, n = [], 0
    for rec in recs:
        for ts, stream, content, off in L.entries(
            rec.log_path, offsets.get(rec.id, 0), final=final
        ):
            offsets[rec.id] = off
            n += 1
            merged.append((L.parse_timestamp(ts), n, rec, ts, stream, content))
    heapq.heapify(merged)
    return [heapq.heappop(merged) for _ in range(len(merged))]


@click.command(name="logs")
@click.option("-c", "--container", default=None, help="Only this container of the pod.")
@click.option("-f", "--follow", is_flag=True, help="Follow the log output.")
@click.option("-l", "--latest", is_flag=True, help="Use the latest pod.")
@click.option("-n", "--names", is_flag=True, help="Prefix lines with names instead of IDs.")
@click.option("--since", default=None, help="Show logs since a time or duration (10m).")
@click.option("--until", default=None, help="Show logs until a time or duration.")
@click.option("--tail", default=-1, type=int, help="Show only the last N lines of each container.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--color", is_flag=True, hidden=True)
@click.argument("pod_ref", required=False)
def logs(container, follow, latest, names, since, until, tail, timestamps, color, pod_ref):
    """Fetch the logs of a pod's containers."""
    from rootless.commands.logs import _since
    from rootless.pods import manage, store
    from rootless.runtime import api

    if pod_ref is None and not latest:
        raise RootlessError("give a pod name or ID, or --latest")
    target = store.lookup(pod_ref) if pod_ref else store.list_pods()[-1]
    _, recs = manage.split(target, manage.containers(target))
    if container:
        rec = api.get(container)
        if rec.id not in {r.id for r in recs}:
            raise RootlessError(f"container {container} is not in pod {target.name}")
        recs = [rec]
    since_t, until_t = _since(since), _since(until)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    offsets: dict[str, int] = {}
    prefixed = len(recs) > 1 or not container

    def emit(entry) -> None:
        t, _, rec, ts, stream, content = entry
        if (since_t and t < since_t) or (until_t and t > until_t):
            return
        prefix = (rec.name if names else rec.id[:12]) + " " if prefixed else ""
        if timestamps:
            prefix += ts + " "
        (err if stream == "stderr" else out).write(prefix.encode() + content)

    def running() -> bool:
        fresh = [api.get(r.id) for r in recs]
        return any(r.state in api.ACTIVE or r.alive("monitor") for r in fresh)

    try:
        first = _read(recs, offsets, final=not follow)
        if tail >= 0:  # the last N lines of each container
            by_rec: dict[str, list] = {}
            for e in first:
                by_rec.setdefault(e[2].id, []).append(e)
            keep = {id(x) for lst in by_rec.values() for x in (lst[-tail:] if tail else [])}
            first = [e for e in first if id(e) in keep]
        for entry in first:
            emit(entry)
        while follow:
            out.flush()
            err.flush()
            done = not running()
            for entry in _read(recs, offsets, final=done):
                emit(entry)
            if done:
                break
            time.sleep(0.1)
        out.flush()
        err.flush()
    except BrokenPipeError:
        pass
