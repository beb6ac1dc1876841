"""A container's volumes, from its options to its mounts, in two steps so that bad input creates
nothing (rootless.runtime.plan.prepare calls both):

``requests(opts, image_config)`` reads every volume a container asks for and changes nothing:
`-v NAME:/path[:opts]` (a source that is not a path names a volume), `-v /path` and `--mount
type=volume` without a source (anonymous), the image's VOLUMEs (anonymous, unless
`--image-volume tmpfs|ignore`) where no other mount is, and `--volumes-from CTR[:ro|rw]` (the other
container's volumes and bind mounts). It returns the options with all of that spelled out as
`-v NAME:/path` (what the container's record keeps: a later start finds the same volumes, and
`volume rm` sees who uses what) and the requests.

``materialize(requests)`` then creates the volumes that do not exist yet (anonymous ones marked so)
and returns the rootless.runtime.rootfs mounts plus the ``VolumeUse`` list that the container's setup
process works through on first use (rootless.volumes.firstuse).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from rootless import syscalls as sc
from rootless.errors import ContainerError
from rootless.volumes.usage import names_in_volume_spec

DEFAULT_FLAGS = sc.MS_NOSUID | sc.MS_NODEV  # podman's volume mounts: nosuid, nodev, exec
_FLAG_OPTS = {"noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC), "nosuid": (sc.MS_NOSUID, 0),
              "suid": (0, sc.MS_NOSUID), "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV)}  # fmt: skip
_IGNORED = ("rw", "z", "Z", "bind", "rbind", "shared", "rshared", "slave", "rslave", "private",
            "rprivate", "unbindable", "runbindable", "copy", "")  # fmt: skip


class Request(NamedTuple):
    name: str
    target: str
    readonly: bool = False
    chown: bool = False  # :U, chown=true: the volume's files take the container user's ids
    copy: bool = True  # nocopy: no copy-up of the image's files
    flags: int = DEFAULT_FLAGS
    anonymous: bool = False


class VolumeUse(NamedTuple):
    """What setup does with a volume before the container runs (rootless.volumes.firstuse)."""

    name: str
    target: str
    source: str
    kind: str  # "dir", "bind" or "tmpfs" (rootless.volumes.store.Volume.kind)
    chown: bool
    copy: bool


def _abs(target: str, flag: str) -> str:
    if not target.startswith("/"):
        raise ContainerError(f"{flag}: container path {target!r} must be absolute")
    return os.path.normpath(target)


def _anon() -> str:
    return os.urandom(32).hex()


def _volume_opts(spec: str, opts: list[str]) -> dict:
    kw = {"readonly": False, "chown": False, "copy": True, "flags": DEFAULT_FLAGS}
    for o in opts:
        if o == "ro":
            kw["readonly"] = True
        elif o == "U":
            kw["chown"] = True
        elif o == "nocopy":
            kw["copy"] = False
        elif o in _FLAG_OPTS:
            add, drop = _FLAG_OPTS[o]
            kw["flags"] = (kw["flags"] | add) & ~drop
        elif o == "O":
            raise ContainerError(f"-v {spec}: :O (an overlay) is for host directories, not volumes")
        elif o not in _IGNORED:
            raise ContainerError(
                f"-v {spec}: unknown option {o!r} (use ro, rw, U, nocopy, [no]exec, [no]suid, [no]dev, z, Z)"
            )
    return kw  # fmt: skip


def parse_volume(spec: str) -> tuple[Request, str] | None:
    """A -v value that names a volume (or is a lone container path: anonymous): the request and the
    spec as the record keeps it; None for a host path (rootless.runtime.rootfs.parse_volume)."""
    parts = spec.split(":")
    if len(parts) == 1 and spec.startswith("/"):
        name = _anon()
        return Request(name, _abs(spec, "-v"), anonymous=True), f"{name}:{spec}"
    name = names_in_volume_spec(spec)
    if name is None:
        return None
    if len(parts) > 3 or not parts[1]:
        raise ContainerError(f"-v {spec}: expected VOLUME:CONTAINER-DIR[:OPTIONS]")
    from rootless.volumes.store import NAME_RE

    if not NAME_RE.fullmatch(name):
        raise ContainerError(
            f"-v {spec}: invalid volume name {name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )
    kw = _volume_opts(spec, parts[2].split(",") if len(parts) == 3 else [])
    return Request(name, _abs(parts[1], "-v"), **kw), spec


def parse_mount(spec: str) -> tuple[Request, str] | None:
    """A --mount value of type=volume: the request and the spec as the record keeps it (with the
    anonymous volume's name as src=); None for other types."""
    kv: dict[str, str] = {}
    for item in spec.split(","):
        k, eq, v = item.partition("=")
        kv[k.strip()] = v if eq else "true"
    if kv.pop("type", "") != "volume":
        return None
    target = kv.pop("target", None) or kv.pop("destination", None) or kv.pop("dst", None)
    if not target:
        raise ContainerError(f"--mount {spec}: target= is required")
    name = kv.pop("source", None) or kv.pop("src", None)
    anonymous = not name
    if anonymous:
        name = _anon()
        spec = f"{spec},src={name}"
    kw = {"readonly": False, "chown": False, "copy": True, "flags": DEFAULT_FLAGS}
    for key, val in kv.items():
        truth = val.lower() in ("true", "1", "")
        if key in ("ro", "readonly"):
            kw["readonly"] = truth
        elif key in ("rw", "readwrite"):
            kw["readonly"] = not truth
        elif key in ("U", "chown"):
            kw["chown"] = truth
        elif key in ("volume-nocopy", "nocopy"):
            kw["copy"] = not truth
        elif key in _FLAG_OPTS and truth:
            add, drop = _FLAG_OPTS[key]
            kw["flags"] = (kw["flags"] | add) & ~drop
        elif key not in ("relabel", "z", "Z", "bind-propagation", "consistency", "volume-opt"):
            raise ContainerError(f"--mount {spec}: unknown option {key!r} for type=volume")
    return Request(name, _abs(target, "--mount"), anonymous=anonymous, **kw), spec


def _with_mode(spec: str, mode: str | None, is_mount: bool) -> str:
    """A -v or --mount value of another container, with --volumes-from's :ro or :rw applied."""
    if mode is None:
        return spec
    if is_mount:
        items = [i for i in spec.split(",") if i.partition("=")[0] not in ("ro", "readonly", "rw")]
        return ",".join(items + (["ro"] if mode == "ro" else []))
    parts = spec.split(":")
    opts = [o for o in (parts[2].split(",") if len(parts) == 3 else []) if o not in ("ro", "rw")]
    return f"{parts[0]}:{parts[1]}:{','.join(opts + [mode])}"


def _target_of(spec: str, is_mount: bool) -> str:
    if is_mount:
        kv = dict(i.partition("=")[::2] for i in spec.split(","))
        return os.path.normpath(kv.get("target") or kv.get("destination") or kv.get("dst") or "")
    return os.path.normpath(spec.split(":")[1]) if ":" in spec else os.path.normpath(spec)


def volumes_from(values, taken: set[str]) -> tuple[list[str], list[str]]:
    """--volumes-from CTR[:ro|rw]: the other containers' -v and --mount values (volumes and bind
    mounts, not tmpfs) whose destinations are not `taken`; (volumes, mounts)."""
    from rootless.runtime import state

    vols, mnts = [], []
    for value in values:
        ref, _, mode = value.partition(":")
        mode = next((m for m in mode.split(",") if m in ("ro", "rw")), None)
        try:
            src = state.lookup(ref)
        except state.NoSuchContainer:
            raise ContainerError(
                f'--volumes-from {value}: no container with name or ID "{ref}" found'
            ) from None
        run = src.run
        for spec, is_mount, out in [(v, False, vols) for v in (run.volumes if run else [])] + \
                                   [(m, True, mnts) for m in (run.mounts if run else [])]:  # fmt: skip
            if is_mount and "type=tmpfs" in spec.split(","):
                continue
            target = _target_of(spec, is_mount)
            if target not in taken:
                taken.add(target)
                out.append(_with_mode(spec, mode, is_mount))
    return vols, mnts  # fmt: skip


def requests(opts, image_config: dict) -> tuple[object, list[Request], list[str]]:
    """(options with every volume spelled out, the volume requests, tmpfs paths for
    --image-volume tmpfs); see the module docstring. Reads records; creates nothing."""
    from dataclasses import replace

    taken = {os.path.normpath(t.partition(":")[0]) for t in opts.tmpfs}
    taken |= {_target_of(v, False) for v in opts.volumes}
    taken |= {_target_of(m, True) for m in opts.mounts}
    from_vols, from_mnts = volumes_from(opts.volumes_from, taken) if opts.volumes_from else ([], [])
    reqs: list[Request] = []
    volumes, mounts, image_tmpfs = [], [], []
    for spec in list(opts.volumes) + from_vols:
        got = parse_volume(spec)
        if got is not None:
            reqs.append(got[0])
            spec = got[1]
        volumes.append(spec)
    for spec in list(opts.mounts) + from_mnts:
        got = parse_mount(spec)
        if got is not None:
            reqs.append(got[0])
            spec = got[1]
        mounts.append(spec)
    declared = ((image_config or {}).get("config") or {}).get("Volumes") or {}
    for path in sorted(declared):
        target = os.path.normpath(path) if path.startswith("/") else None
        if target is None or target in taken or opts.image_volume == "ignore":
            continue
        taken.add(target)
        if opts.image_volume == "tmpfs":
            image_tmpfs.append(target)
            continue
        name = _anon()
        reqs.append(Request(name, target, anonymous=True))
        volumes.append(f"{name}:{target}")
    seen: set[str] = set()
    for r in reqs:
        if r.target in seen:
            raise ContainerError(f"{r.target}: duplicate mount destination")
        seen.add(r.target)
    new = replace(opts, volumes=volumes, mounts=mounts, volumes_from=[])
    return new, reqs, image_tmpfs


def materialize(reqs: list[Request]) -> tuple[list, tuple[VolumeUse, ...]]:
    """Create the requested volumes that do not exist; (rootfs mounts, first-use work)."""
    from rootless.runtime.rootfs import Mount
    from rootless.volumes import store

    mounts, uses = [], []
    for r in reqs:
        vol = store.find(r.name) or store.create(r.name, anonymous=r.anonymous, ignore=True)
        kind, readonly, flags = vol.kind, r.readonly, r.flags
        vopts = vol.mount_options()
        readonly = readonly or "ro" in vopts
        for o in vopts:
            if o in _FLAG_OPTS:
                add, drop = _FLAG_OPTS[o]
                flags = (flags | add) & ~drop
        if kind == "tmpfs":
            data = ",".join(o for o in vopts if o.partition("=")[0] in store.TMPFS_DATA)
            mounts.append(Mount("tmpfs", r.target, "tmpfs", readonly=readonly, options=data,
                                flags=flags, volume=vol.name))  # fmt: skip
            continue
        source = store.source_of(vol)
        mounts.append(
            Mount("bind", r.target, source, readonly=readonly, flags=flags, volume=vol.name)
        )
        if kind == "dir" and (vol.needs_copy_up or vol.needs_chown) or r.chown:
            uses.append(VolumeUse(vol.name, r.target, source, kind, r.chown, r.copy))
    return mounts, tuple(uses)
