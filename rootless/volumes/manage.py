"""Volume operations that involve containers, for the `volume` verbs (and an API server): inspect with
the number of running users, listing with podman's filters, removal as podman refuses or forces it,
and prune. Each raises a RootlessError with podman's exit code; none prints.
"""

from __future__ import annotations

import re

from rootless.volumes import store, usage

EXIT_NO_SUCH = 1  # podman volume rm: a volume did not exist
EXIT_IN_USE = 2  # podman volume rm: a volume is used by a container


def inspect(vol: store.Volume, users: dict | None = None) -> dict:
    users = usage.users() if users is None else users
    return vol.inspect(usage.running_count(users.get(vol.name, ())))


def _match(vol: store.Volume, key: str, values: list[str], users: dict) -> bool:
    from rootless.filters import label_match, parse_until

    if key == "name":
        return any(re.search(v, vol.name) for v in values)
    if key == "label":
        return all(label_match(vol.labels, v) for v in values)
    if key == "label!":
        return not any(label_match(vol.labels, v) for v in values)
    if key == "driver":
        return vol.driver in values
    if key == "scope":
        return "local" in values
    if key == "opt":
        return any(label_match(vol.options, v) for v in values)
    if key == "dangling":
        dangling = not users.get(vol.name)
        return any(dangling == (v.lower() in ("true", "1")) for v in values)
    if key == "until":
        return all(vol.created_ns / 1e9 < parse_until(v) for v in values)
    if key == "anonymous":
        return any(vol.anonymous == (v.lower() in ("true", "1")) for v in values)
    raise store.VolumeError(
        f"invalid volume filter {key!r}: use name, label, label!, driver, scope, opt, dangling, until or anonymous"
    )


def listing(filters: dict[str, list[str]], users: dict | None = None) -> list[store.Volume]:
    """The volumes that pass every filter (values of one key: any of them; label: all)."""
    users = usage.users() if users is None else users
    vols = store.list_volumes()
    for key, values in filters.items():
        vols = [v for v in vols if _match(v, key, values, users)]
    return vols


def in_use_error(vol: store.Volume, recs) -> store.VolumeError:
    ids = ", ".join(r.id for r in recs)
    return store.VolumeError(
        f"volume {vol.name} is being used by the following container(s): {ids}: volume is being used"
        " (remove them first, or use volume rm -f)",
        exit_code=EXIT_IN_USE,
    )


def remove(name: str, *, force: bool = False, timeout: float | None = None) -> str:
    """`volume rm`: the volume's name once removed. A volume a container uses is refused (exit 2)
    unless `force`, which removes those containers first (stopping them within `timeout`)."""
    vol = store.get(name, exit_code=EXIT_NO_SUCH)
    recs = usage.users().get(vol.name, [])
    if recs and not force:
        raise in_use_error(vol, recs)
    if recs:
        from rootless.runtime import api

        for rec in recs:
            try:
                rec = api.get(rec.id)
            except api.state.NoSuchContainer:
                continue
            if timeout is not None and rec.state in api.ACTIVE:
                rec = api.stop(rec, timeout)
            api.remove(rec, force=True)
    store.remove(vol)
    return vol.name


def prune(filters: dict[str, list[str]]) -> list[str]:
    """`volume prune`: remove every volume no container uses (and that passes label/until
    filters); the names removed."""
    for key in filters:
        if key not in ("label", "label!", "until"):
            raise store.VolumeError(
                f"invalid volume prune filter {key!r}: use label, label! or until"
            )
    users = usage.users()
    removed = []
    for vol in listing(filters, users):
        if users.get(vol.name):
            continue
        store.remove(vol)
        removed.append(vol.name)
    return removed


def unused(filters) -> list[str]:
    """The names `prune` would remove now (for its question)."""
    users = usage.users()
    return [v.name for v in listing(filters, users) if not users.get(v.name)]
