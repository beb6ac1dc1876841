"""Selecting containers as podman's `ps` does, for `ps` and the verbs that take `--all`, `--filter`
and `--latest` (start, stop, kill, rm, pause, ...): the filters (id, name, label, label!, exited,
status, ancestor, before, since, volume, health, pod, network, until), `--last`, `--latest` and
`--sort`, with podman's default order (oldest first).
"""

from __future__ import annotations

import re

from rootless.errors import RootlessError

FILTERS = ("id", "name", "label", "label!", "exited", "status", "ancestor", "before", "since",
           "volume", "health", "pod", "network", "until")  # fmt: skip
STATUSES = ("created", "running", "paused", "stopped", "exited", "unknown", "configured",
            "removing", "stopping")  # fmt: skip
SORTS = ("command", "created", "id", "image", "names", "pod", "runningfor", "size", "status")
ACTIVE = ("running", "stopping", "paused")


_IMAGE_LABELS: dict[str, dict] = {}


def labels(rec) -> dict[str, str]:
    """The container's labels: its image's, then its own (--label, --label-file), as podman
    merges them at create; {} if none."""
    run = rec.run
    own = getattr(run, "labels", None) if run is not None else None
    return {**image_labels(rec.image_id), **(own or {})}


def image_labels(image_id: str) -> dict[str, str]:
    image_id = (image_id or "").removeprefix("sha256:")
    if image_id not in _IMAGE_LABELS:
        from rootless.image.store import Store

        img = Store.open().get(image_id) if image_id else None
        try:
            found = (img.config.get("config") or {}).get("Labels") if img else None
        except (OSError, ValueError):
            found = None
        _IMAGE_LABELS[image_id] = dict(found or {})
    return _IMAGE_LABELS[image_id]


def state_of(rec) -> str:
    """The state podman shows: `paused` for a frozen container (rootless.runtime.pause)."""
    if rec.state == "running" and getattr(rec, "paused", False):
        return "paused"
    return rec.state


def parse_filters(values) -> dict[str, list[str]]:
    """--filter values (each may hold several, comma-separated, as podman's string slices do)."""
    out: dict[str, list[str]] = {}
    for value in values:
        for item in value.split(","):
            key, eq, val = item.partition("=")
            if not eq:
                raise RootlessError(f'invalid filter "{item}": use KEY=VALUE')
            if key not in FILTERS:
                raise RootlessError(f"{key} is an invalid filter: use one of {', '.join(FILTERS)}")
            if key == "status" and val not in STATUSES:
                raise RootlessError(
                    f"unknown container state: {val}: use one of {', '.join(STATUSES)}"
                )
            if key == "exited" and not val.lstrip("-").isdigit():
                raise RootlessError(f"exited code {val!r} is not a number")
            out.setdefault(key, []).append(val)
    return out


def _ancestor(rec, value: str) -> bool:
    """podman's ancestor filter: the image's id (or a prefix), its name, or its name without a
    `:latest` tag; here also without the registry (`bb` for localhost/bb:latest)."""
    image_id, v = rec.image_id.removeprefix("sha256:"), value.removeprefix("sha256:")
    if len(v) >= 3 and re.fullmatch(r"[0-9a-f]+", v) and image_id.startswith(v):
        return True
    names = {rec.image}
    first, slash, rest = rec.image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        names.add(rest)
    names |= {n.removesuffix(":latest") for n in names}
    return value in names


def _relative(ref: str, all_recs) -> float:
    from rootless.runtime import state

    for r in all_recs:
        if r.name == ref or r.id == ref:
            return r.created
    hits = [r for r in all_recs if r.id.startswith(ref)]
    if len(hits) == 1:
        return hits[0].created
    raise state.NoSuchContainer(f'no container with name or ID "{ref}" found: no such container')


def _match_one(rec, key: str, values: list[str], all_recs) -> bool:
    if key == "id":
        return any(re.search(v, rec.id) for v in values)
    if key == "name":
        return any(re.search(v, rec.name) for v in values)
    if key in ("label", "label!"):
        from rootless.filters import label_match

        have = labels(rec)
        hits = [label_match(have, v) for v in values]
        return all(hits) if key == "label" else not any(hits)
    if key == "exited":
        return (
            rec.state == "exited"
            and rec.exit_code is not None
            and rec.exit_code in {int(v) for v in values}
        )
    if key == "status":
        st = state_of(rec)
        return st in values or (st == "stopping" and "running" in values)
    if key == "ancestor":
        return any(_ancestor(rec, v) for v in values)
    if key == "before":
        return any(rec.created < _relative(v, all_recs) for v in values)
    if key == "since":
        return any(rec.created > _relative(v, all_recs) for v in values)
    if key == "until":
        from rootless.filters import parse_until

        return any(rec.created <= parse_until(v) for v in values)
    if key == "pod":
        pod = (rec.run.pod if rec.run is not None else None) or ""
        if not pod:
            return False
        from rootless.pods import store

        p = store.load(pod)
        return any(v == (p.name if p else "") or pod.startswith(v) for v in values)
    if key == "volume":
        return any(v == m.get("volume") or v == m.get("destination") or v == m.get("source")
                   for m in rec.mounts for v in values)  # fmt: skip
    if key == "network":
        run = rec.run
        nets = [rec.network] + list(getattr(run, "networks", []) or [])
        return any(v in nets or any(n.split(":")[0] == v for n in nets) for v in values)
    if key == "health":
        return health_of(rec) in values
    raise RootlessError(f"{key} is an invalid filter")


def health_of(rec) -> str:
    """The running container's health status as podman names it ("" without a healthcheck)."""
    if not (rec.run and rec.run.healthcheck) or state_of(rec) != "running":
        return ""
    from rootless.runtime import health

    return (health.state(rec) or {}).get("Status", "")


def select(recs, filters: dict[str, list[str]], *, all_: bool = True, last: int = -1,
           latest: bool = False, sort: str | None = None) -> list:  # fmt: skip
    """The containers podman's `ps` shows: filtered (different keys must all match, values of one
    key any, labels all), running ones only unless `all_` (or a status filter, or --last), the
    `last` newest, or the `latest` one; oldest first unless sorted otherwise."""
    if sort is not None and sort not in SORTS:
        raise RootlessError(
            f'"{sort}" is not a valid value for --sort: use one of {", ".join(SORTS)}'
        )
    if last >= 0 and latest:
        raise RootlessError("last and latest are mutually exclusive")
    all_recs = list(recs)
    show_all = all_ or bool(filters.get("status")) or last > 0 or latest
    out = [r for r in all_recs if show_all or state_of(r) in ("running", "stopping", "paused")]
    out = [r for r in out if all(_match_one(r, k, v, all_recs) for k, v in filters.items())]
    out.sort(key=lambda r: r.created, reverse=True)
    if latest:
        out = out[:1]
    elif last > 0:
        out = out[:last]
    out.reverse()
    if sort and sort != "created":
        out.sort(key=_SORT_KEYS[sort])
    return out


_SORT_KEYS = {
    "command": lambda r: " ".join(r.command),
    "id": lambda r: r.id,
    "image": lambda r: r.image,
    "names": lambda r: r.name,
    "pod": lambda r: (r.run.pod if r.run is not None else None) or "",
    "runningfor": lambda r: r.started or 0,
    "size": lambda r: 0,
    "status": lambda r: state_of(r),
}
