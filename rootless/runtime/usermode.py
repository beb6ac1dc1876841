"""`--userns`, `--uidmap`, `--gidmap`, `--subuidname` and `--subgidname`: the container's own id
mapping, podman's modes (keep-id[:uid=N,gid=M], auto[:size=N], nomap, host) checked and turned into
a `UsernsMode` (see docs/userns.md).

The default (`host`, or no flag) is rootless's mapping (rootless.idmap.for_user): the container's
user namespace maps container 0 to the user and 1..N to the subordinate ids. Every other mode is, as
in podman, a second user namespace nested in that one: its maps are written in terms of the first
one's ids (0 = the user, 1..N = the subordinate ids), so /proc/self/uid_map inside shows what it
shows under podman. The image's layers keep the default mapping on disk; the fuse overlay shifts ids
at its boundary (rootless.fuse_overlay.idshift, from the same triplets): no layer is copied or
chowned. This module only parses and does arithmetic (cheap: it runs on the `run` path).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from rootless.errors import ContainerError

Triplet = tuple[int, int, int]  # (container id, id in rootless's namespace, size)


class UsernsMode(NamedTuple):
    """A container's nested id mapping (None in the plan for the default mode)."""

    mode: str  # keep-id, auto, nomap, uidmap (--uidmap/--gidmap), subidname (--subuidname)
    uid_map: tuple[Triplet, ...]
    gid_map: tuple[Triplet, ...]
    user: str | None = None  # keep-id: the process's "uid:gid" unless -u
    passwd: tuple[str, str] | None = None  # keep-id: (name, gecos) for /etc/passwd and /etc/group

    def map_strings(self, kind: str) -> list[str]:
        """podman's inspect form: "container:host:size" (host = an id of rootless's namespace)."""
        return [f"{c}:{h}:{s}" for c, h, s in (self.uid_map if kind == "uid" else self.gid_map)]

    def options(self) -> list[str]:
        """The fuse overlay's options (fuse-overlayfs's uidmapping=/gidmapping= syntax)."""
        return [
            f"{k}mapping=" + ":".join(f"{c}:{h}:{s}" for c, h, s in m)
            for k, m in (("uid", self.uid_map), ("gid", self.gid_map))
        ]


def _uint(text: str) -> int:
    if not text.isdigit():
        raise ContainerError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(text)
    if value >= 1 << 32:
        raise ContainerError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def _options(spec: str, allowed: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key not in allowed:
            raise ContainerError(f'unknown option specified: "{key}"')
        out[key] = _uint(value)
    return out


def check_flags(userns: str, uidmap, gidmap, subuidname=None, subgidname=None) -> None:
    """The combinations podman refuses and the values it cannot parse, before anything is made."""
    if userns and userns != "host" and (uidmap or gidmap or subuidname or subgidname):
        raise ContainerError(
            "--userns and --uidmap/--gidmap/--subuidname/--subgidname are mutually exclusive"
        )
    if (uidmap or gidmap) and (subuidname or subgidname):
        raise ContainerError(
            "--uidmap/--gidmap and --subuidname/--subgidname are mutually exclusive"
        )
    for v in (*uidmap, *gidmap):
        parse_triplet(v)  # podman says "UID" for --gidmap too
    parse_mode(userns)


def parse_triplet(text: str, kind: str = "UID") -> Triplet:
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ContainerError(
            f"initializing ID mappings: {kind} setting is malformed expected "
            f'["uint32:uint32:uint32"]: ["{text}"]'
        )
    c, h, s = (int(p) for p in parts)
    if s == 0:
        raise ContainerError(f"container ID {c} cannot be mapped to a host ID")
    return c, h, s


def parse_mode(userns: str) -> tuple[str, dict[str, int]]:
    """(mode, options) of a --userns value: "" (the default: host), keep-id, auto or nomap."""
    if userns in ("", "host"):
        return "", {}
    name, colon, rest = userns.partition(":")
    if name == "keep-id":
        return name, _options(rest, ("uid", "gid")) if colon else {}
    if name == "auto":
        return name, _options(rest, ("size",)) if colon else {}
    if userns == "nomap":
        return "nomap", {}
    if userns == "private":
        raise ContainerError(
            "must provide at least one UID or GID mapping to configure a user namespace"
        )
    if name in ("ns", "container"):
        raise ContainerError(
            f"--userns={userns}: joining another user namespace is not supported by rootless; "
            "use keep-id, auto, nomap or host"
        )
    raise ContainerError(f"unrecognized namespace mode {userns} passed")


def _keep_id(target: int, count: int) -> tuple[Triplet, ...]:
    """podman's keep-id map: container `target` is the user (0 in rootless's namespace); the
    subordinate ids (1..count) fill the other container ids from 0 up."""
    out = [(0, 1, min(target, count)), (target, 0, 1)]
    if count > target:
        out.append((target + 1, target + 1, count - target))
    return tuple(t for t in out if t[2] > 0)


def _check_within(m: tuple[Triplet, ...], total: int, flag: str) -> None:
    for c, h, s in m:
        if h + s > total:
            raise ContainerError(
                f"{flag} {c}:{h}:{s}: rootless's user namespace has only ids 0-{total - 1} (0 is you, "
                "1 up your subordinate ids): map within them"
            )
        if c + s > 1 << 32:
            raise ContainerError(f"{flag} {c}:{h}:{s}: the container ids overflow 32 bits")


def wanted(opts) -> bool:
    """Whether `opts` ask for a nested user namespace at all."""
    return bool(
        (opts.userns or "") not in ("", "host")
        or opts.uidmap
        or opts.gidmap
        or opts.subuidname
        or opts.subgidname
    )


def resolve(opts, image_layers=(), others=()) -> UsernsMode | None:
    """The container's mapping for `opts` (None: the default). `image_layers`: for auto's size;
    `others`: the uid maps of other containers (auto takes a range none of them uses)."""
    mode, o = parse_mode(opts.userns or "")
    if not mode and not wanted(opts):
        return None
    if os.geteuid() == 0:
        raise ContainerError("keep-id and the other id maps are only supported in rootless mode")
    from rootless import idmap

    d = idmap.for_user()
    nu, ng = d.uid_count - 1, d.gid_count - 1  # the subordinate ids
    if mode == "keep-id":
        uid, gid = o.get("uid", d.uid), o.get("gid", d.gid)
        passwd = None if "uid" in o else (d.user or str(d.uid), _gecos(d.uid))
        return UsernsMode("keep-id", _keep_id(uid, nu), _keep_id(gid, ng), f"{uid}:{gid}", passwd)
    if mode == "nomap":
        return UsernsMode("nomap", ((0, 1, nu),), ((0, 1, ng),))
    if mode == "auto":
        if opts.uidmap:  # the range it was given when it was created
            um = tuple(parse_triplet(t) for t in opts.uidmap)
            return UsernsMode("auto", um, tuple(parse_triplet(t) for t in opts.gidmap) or um)
        return _auto(o.get("size"), min(nu, ng), image_layers, d, others)
    if opts.subuidname or opts.subgidname:
        um = _by_name(opts.subuidname or opts.subgidname, d, "uid")
        gm = _by_name(opts.subgidname or opts.subuidname, d, "gid")
        return UsernsMode("subidname", um, gm)
    um = tuple(parse_triplet(t) for t in opts.uidmap)
    gm = tuple(parse_triplet(t) for t in opts.gidmap)
    um, gm = um or gm, gm or um
    _check_within(um, d.uid_count, "--uidmap")
    _check_within(gm, d.gid_count, "--gidmap")
    return UsernsMode("uidmap", um, gm)


def _by_name(name: str, d, kind: str) -> tuple[Triplet, ...]:
    """--subuidname/--subgidname NAME: NAME's ranges in /etc/subuid (subgid), which must be among
    the user's own (rootless can only map those), from container id 0 up."""
    from rootless import idmap

    path = d.subuid_path if kind == "uid" else d.subgid_path
    ranges = idmap.parse_subid_file(path, name, -1)
    if not ranges:
        raise ContainerError(f'no sub{kind} ranges found for user "{name}" in {path}')
    out, nxt = [], 0
    to_ns = d.to_container_uid if kind == "uid" else d.to_container_gid
    for start, count in ranges:
        try:
            first, last = to_ns(start), to_ns(start + count - 1)
        except idmap.UnmappedIdError:
            first = last = -1
        if first < 0 or last - first != count - 1:
            raise ContainerError(
                f"--sub{kind}name {name}: its range {start}-{start + count - 1} in {path} is not "
                f"among your ids: rootless can only map your own subordinate {kind}s"
            )
        out.append((nxt, first, count))
        nxt += count
    return tuple(out)


def _auto(size, available: int, image_layers, d, others) -> UsernsMode:
    """auto[:size=N]: N ids (default: the image's highest id + 1, at least 1024, as podman), the
    lowest range of rootless's subordinate ids (1..) that no other auto container uses."""
    if size is None:
        size = max(1024, min(available, _image_max_id(image_layers, d) + 1))
    start = 1
    for lo, hi in sorted((h, h + s) for m in others for _c, h, s in m):
        if start + size <= lo:
            break
        start = max(start, hi)
    if size == 0 or start + size > available + 1:
        raise ContainerError("creating container storage: could not find enough available IDs")
    m = ((0, start, size),)
    return UsernsMode("auto", m, m)


def _image_max_id(layers, d) -> int:
    """The highest container uid or gid owning a file of the image (its layers are on disk in the
    default mapping, in host ids)."""
    from rootless.idmap import UnmappedIdError

    top = 0
    seen: set[tuple[int, int]] = set()
    for layer in layers:
        for dirpath, dirnames, filenames in os.walk(layer):
            for name in dirnames + filenames:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if (st.st_uid, st.st_gid) in seen:
                    continue
                seen.add((st.st_uid, st.st_gid))
                for back, host in (
                    (d.to_container_uid, st.st_uid),
                    (d.to_container_gid, st.st_gid),
                ):
                    try:
                        top = max(top, back(host))
                    except UnmappedIdError:  # not one of ours
                        pass
    return top


def _gecos(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_gecos.split(",")[0]
    except KeyError:
        return ""


def in_nested(m: tuple[Triplet, ...], value: int) -> int | None:
    """The id of rootless's namespace that container id `value` is, under map `m` (None: unmapped)."""
    for c, h, s in m:
        if c <= value < c + s:
            return h + value - c
    return None
