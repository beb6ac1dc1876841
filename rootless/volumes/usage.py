"""Which containers use which volumes, read from the containers' records (the options they were
created with, where anonymous volumes and --volumes-from are already spelled out as `-v NAME:...`).

`volume rm` refuses a volume any container uses, whatever its state (as podman does); `volume
prune` and `volume ls --filter dangling=` use the same answer; `rm -v` and `run --rm` remove a
container's anonymous volumes that no other container uses.
"""

from __future__ import annotations


def names_in_volume_spec(spec: str) -> str | None:
    """The volume name in a -v value (NAME:/dst[:opts]), or None for a host path or anonymous."""
    src, sep, _ = spec.partition(":")
    if not sep or not src or src.startswith(("/", ".")):
        return None
    return src


def name_in_mount_spec(spec: str) -> str | None:
    """The volume name in a --mount value of type=volume, or None."""
    kv = dict(item.partition("=")[::2] for item in spec.split(","))
    if kv.get("type") != "volume":
        return None
    return kv.get("source") or kv.get("src") or None


def volumes_of(rec) -> list[str]:
    """The names of the volumes a container mounts, in order, without repeats."""
    run = getattr(rec, "run", None)
    if run is None:
        return []
    names = [names_in_volume_spec(v) for v in run.volumes]
    names += [name_in_mount_spec(m) for m in run.mounts]
    return list(dict.fromkeys(n for n in names if n))


def users() -> dict[str, list]:
    """volume name -> the container records that use it."""
    from rootless.runtime import state

    out: dict[str, list] = {}
    for rec in state.list_records():
        for name in volumes_of(rec):
            out.setdefault(name, []).append(rec)
    return out


def running_count(recs) -> int:
    from rootless.runtime import state

    return sum(1 for r in recs if state.refresh(r).state in ("running", "stopping"))


def remove_anonymous(rec) -> list[str]:
    """After container `rec` is gone: remove its anonymous volumes that no other container uses;
    the names removed."""
    return remove_unused_anonymous(volumes_of(rec), rec.id)


def remove_unused_anonymous(names, gone_id: str | None = None) -> list[str]:
    """Remove those of these volumes that are anonymous and used by no container but `gone_id`."""
    from rootless.volumes import store

    if not names:
        return []
    used = users()
    removed = []
    for name in names:
        vol = store.find(name)
        if vol is None or not vol.anonymous:
            continue
        if any(r.id != gone_id for r in used.get(name, ())):
            continue  # another container (--volumes-from) still mounts it
        store.remove(vol)
        removed.append(name)
    return removed
