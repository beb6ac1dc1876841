"""Subordinate ids and the id mapping: /etc/subuid + /etc/subgid parsing, podman's mapping, and
host <-> container id translation.

The mapping is the one podman builds: container id 0 is the user's own uid/gid, and container ids
1..N are the user's subordinate ranges, in file order. A user without subordinate ids gets a one-id
map (0 -> own id), the "single" fallback, on which some images will not work. When rootless runs as
root, the mapping is the identity over every id the process itself has (the whole 32-bit id space
in the initial namespace). Creating the namespace lives in rootless.userns; this module only reads
files and does arithmetic, so it is cheap to import and safe to call anywhere (including
`rootless info`).

Test/debug knobs (environment): ROOTLESS_SUBUID_FILE, ROOTLESS_SUBGID_FILE and
ROOTLESS_NSSWITCH_FILE replace /etc/subuid, /etc/subgid and /etc/nsswitch.conf.
"""

from __future__ import annotations

import logging
import os
import pwd
from dataclasses import dataclass, field

from rootless.errors import IdMapError

log = logging.getLogger("rootless.idmap")

ID_SPACE = (
    1 << 32
)  # uid_t is 32 bits; (uid_t)-1 is never a valid id but the kernel maps it as a size
DOCS = "docs/subuid.md"


class UnmappedIdError(IdMapError):
    """An id has no counterpart on the other side of the mapping."""

    def __init__(self, message: str, *, kind: str, id: int, side: str):
        super().__init__(message)
        self.kind = kind  # "uid" or "gid"
        self.id = id
        self.side = side  # "container" (a container id with no host id) or "host"


@dataclass(frozen=True)
class IdRange:
    """`size` consecutive ids: container ids [container, container+size) are host ids [host, host+size)."""

    container: int
    host: int
    size: int

    def map_line(self) -> str:
        """The line as /proc/PID/uid_map shows it (kernel format "%10u %10u %10u")."""
        return f"{self.container:10d} {self.host:10d} {self.size:10d}"


def _translate(ranges: list[IdRange], value: int, to_host: bool) -> int | None:
    for r in ranges:
        src, dst = (r.container, r.host) if to_host else (r.host, r.container)
        if src <= value < src + r.size:
            return dst + (value - src)
    return None


@dataclass
class IdMap:
    """A user namespace's uid and gid mappings, and translation both ways.

    `user`, `uid`, `gid`, `subuid_path`, `subgid_path` describe where the map came from (for
    messages); `fallback_reason` is set (one line) when this is the single-id fallback because of
    missing subordinate ids, so that `rootless info` and the namespace code can say why.
    """

    uid_ranges: list[IdRange]
    gid_ranges: list[IdRange]
    user: str = ""
    uid: int = -1
    gid: int = -1
    subuid_path: str = "/etc/subuid"
    subgid_path: str = "/etc/subgid"
    fallback_reason: str | None = None
    identity: bool = field(default=False)  # rootless runs as root: identity map, no helpers

    # translation -------------------------------------------------------------------------
    def _to(self, kind: str, value: int, to_host: bool) -> int:
        ranges = self.uid_ranges if kind == "uid" else self.gid_ranges
        got = _translate(ranges, value, to_host)
        if got is not None:
            return got
        if to_host:
            raise UnmappedIdError(
                range_too_small_message(kind, value, self), kind=kind, id=value, side="container"
            )
        raise UnmappedIdError(
            f"host {kind} {value} is not mapped into the user namespace (it shows as the overflow id "
            f"65534 inside); chown it to an id in the mapping, see `rootless unshare cat /proc/self/{kind}_map`",
            kind=kind,
            id=value,
            side="host",
        )

    def to_host_uid(self, container_uid: int) -> int:
        return self._to("uid", container_uid, True)

    def to_container_uid(self, host_uid: int) -> int:
        return self._to("uid", host_uid, False)

    def to_host_gid(self, container_gid: int) -> int:
        return self._to("gid", container_gid, True)

    def to_container_gid(self, host_gid: int) -> int:
        return self._to("gid", host_gid, False)

    # description -------------------------------------------------------------------------
    def uid_map_lines(self) -> list[str]:
        """The lines of /proc/PID/uid_map inside the namespace, in the kernel's format, no newlines."""
        return [r.map_line() for r in self.uid_ranges]

    def gid_map_lines(self) -> list[str]:
        return [r.map_line() for r in self.gid_ranges]

    def uid_map_text(self) -> str:
        """Exactly the text of /proc/PID/uid_map (also a valid text to write to it)."""
        return "".join(line + "\n" for line in self.uid_map_lines())

    def gid_map_text(self) -> str:
        return "".join(line + "\n" for line in self.gid_map_lines())

    @property
    def max_container_uid(self) -> int:
        return max(r.container + r.size - 1 for r in self.uid_ranges)

    @property
    def max_container_gid(self) -> int:
        return max(r.container + r.size - 1 for r in self.gid_ranges)

    @property
    def uid_count(self) -> int:
        return sum(r.size for r in self.uid_ranges)

    @property
    def gid_count(self) -> int:
        return sum(r.size for r in self.gid_ranges)

    @property
    def is_single(self) -> bool:
        """True for the one-id fallback (container 0 is the user; nothing else is mapped)."""
        return self.uid_count == 1 and self.gid_count == 1


# parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    start: int
    count: int
    lineno: int


def _parse(path: str, user: str, uid: int) -> list[_Entry]:
    """The user's ranges from a subuid/subgid file, in file order, with their line numbers.

    A missing file is no entries. A malformed line that belongs to this user (or whose owner cannot
    be told) is skipped with a warning naming file:line; other users' lines are not our business.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        log.warning("%s: cannot read (%s); treating it as empty", path, e.strerror)
        return []
    keys = {user, str(uid)} if user else {str(uid)}
    out: list[_Entry] = []
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [x.strip() for x in line.split(":")]
        owner = fields[0] if len(fields) > 1 else None
        if owner is not None and owner not in keys:
            continue  # someone else's line; not validated, not warned about
        problem = None
        if len(fields) != 3:
            problem = "expected NAME:START:COUNT"
        else:
            try:
                start, count = int(fields[1], 10), int(fields[2], 10)
            except ValueError:
                problem = "START and COUNT must be decimal numbers"
            else:
                if start < 0 or count <= 0 or start + count > ID_SPACE - 1:
                    problem = f"range {start}+{count} is outside 0..{ID_SPACE - 2}"
        if problem is not None:
            log.warning(
                "%s:%d: malformed line skipped (%s): %r; fix or remove it (see %s)",
                path,
                n,
                problem,
                raw,
                DOCS,
            )
            continue
        out.append(_Entry(start, count, n))
    return out


def parse_subid_file(path: str, user: str, uid: int) -> list[tuple[int, int]]:
    """[(start, count), ...] for `user` (matched by name or numeric uid) in file order."""
    return [(e.start, e.count) for e in _parse(path, user, uid)]


def suggest_free_range(paths: list[str], size: int = 65536) -> str:
    """A range "START-END" of `size` ids above every range in `paths` (and at least 100000)."""
    top = 100000
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.strip().split(":")
                    if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                        top = max(top, int(fields[1]) + int(fields[2]))
        except OSError:
            pass
    return f"{top}-{top + size - 1}"


def _default(path: str | None, env: str, default: str) -> str:
    return path if path is not None else (os.environ.get(env) or default)


def nsswitch_subid_sources(path: str | None = None) -> list[str]:
    """The sources of the `subid:` line in nsswitch.conf ([] when there is none)."""
    path = _default(path, "ROOTLESS_NSSWITCH_FILE", "/etc/nsswitch.conf")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line.startswith("subid:"):
                    return line[len("subid:") :].split()
    except OSError:
        pass
    return []


def nsswitch_hint(user: str, path: str | None = None) -> str | None:
    """A sentence for users whose subordinate ids come from LDAP/SSSD rather than the files."""
    sources = [s for s in nsswitch_subid_sources(path) if s != "files"]
    if not sources:
        return None
    return (
        f"/etc/nsswitch.conf has 'subid: {' '.join(nsswitch_subid_sources(path))}' but rootless reads only "
        f"/etc/subuid and /etc/subgid; check your ranges with `getsubids {user}` and `getsubids -g {user}` "
        "and ask your administrator to add them to the files"
    )


def _build(
    kind: str, path: str, user: str, uid: int, own: int
) -> tuple[list[IdRange], list[_Entry]]:
    entries = _parse(path, user, uid)
    ranges = [IdRange(0, own, 1)]
    nxt = 1
    seen: list[_Entry] = []
    for e in entries:
        if e.start <= own < e.start + e.count:
            end = e.start + e.count - 1
            raise IdMapError(
                f"{path}:{e.lineno}: the range {e.start}-{end} for {user or uid} contains {user or uid}'s own "
                f"{kind} {own}; give {user or uid} a range that does not, e.g. sudo usermod "
                f"--del-sub{kind}s {e.start}-{end} --add-sub{kind}s {suggest_free_range([path], e.count)} {user or uid}"
            )
        for p in seen:
            if e.start < p.start + p.count and p.start < e.start + e.count:
                raise IdMapError(
                    f"{path}:{e.lineno}: the range {e.start}+{e.count} for {user or uid} overlaps the one on "
                    f"line {p.lineno}; remove one of them"
                )
        seen.append(e)
        ranges.append(IdRange(nxt, e.start, e.count))
        nxt += e.count
    if nxt > ID_SPACE - 1:
        raise IdMapError(
            f"{path}: {user or uid}'s ranges add up to more than 2^32-1 ids; shorten them"
        )
    return ranges, entries


def _own_identity_ranges(kind: str) -> list[IdRange]:
    """The identity map over every id this process has (all 2^32-1 in the initial namespace)."""
    try:
        with open(f"/proc/self/{kind}_map") as f:
            rows = [line.split() for line in f if line.strip()]
        ranges = [IdRange(int(a), int(a), int(c)) for a, _b, c in rows]
        if ranges:
            return ranges
    except (OSError, ValueError):
        pass
    return [IdRange(0, 0, ID_SPACE - 1)]


def for_user(
    user: str | None = None,
    uid: int | None = None,
    subuid: str | None = None,
    subgid: str | None = None,
    *,
    gid: int | None = None,
    nsswitch: str | None = None,
) -> IdMap:
    """The mapping rootless uses for `user` (default: the calling process's user).

    subuid/subgid default to $ROOTLESS_SUBUID_FILE / $ROOTLESS_SUBGID_FILE, else /etc/subuid and
    /etc/subgid. Raises IdMapError for a range containing the user's own id. Without entries (in
    either file) it returns the single-id fallback with `fallback_reason` set; it prints nothing.
    """
    subuid = _default(subuid, "ROOTLESS_SUBUID_FILE", "/etc/subuid")
    subgid = _default(subgid, "ROOTLESS_SUBGID_FILE", "/etc/subgid")
    me = uid is None and user is None
    if uid is None:
        if user is None:
            uid = os.getuid()
        else:
            uid = pwd.getpwnam(user).pw_uid
    pw = None
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        pass
    if user is None:
        user = pw.pw_name if pw else ""
    if gid is None:
        gid = os.getgid() if me or uid == os.getuid() else (pw.pw_gid if pw else uid)

    common = dict(user=user, uid=uid, gid=gid, subuid_path=subuid, subgid_path=subgid)
    if uid == 0:
        return IdMap(
            _own_identity_ranges("uid"), _own_identity_ranges("gid"), identity=True, **common
        )

    uid_ranges, _ = _build("uid", subuid, user, uid, uid)
    gid_ranges, _ = _build("gid", subgid, user, uid, gid)
    missing = [p for p, r in ((subuid, uid_ranges), (subgid, gid_ranges)) if len(r) == 1]
    if missing:
        who = user or str(uid)
        free = suggest_free_range([subuid, subgid])
        reason = (
            f"no subordinate ids for {who} in {' and '.join(missing)}: using a single-id user namespace, "
            f"some images will not work; fix: sudo usermod --add-subuids {free} "
            f"--add-subgids {free} {who} (see {DOCS})"
        )
        hint = nsswitch_hint(who, nsswitch)
        if hint:
            reason += "; " + hint
        return IdMap([IdRange(0, uid, 1)], [IdRange(0, gid, 1)], fallback_reason=reason, **common)
    return IdMap(uid_ranges, gid_ranges, **common)


def range_too_small_message(kind: str, id: int, idmap: IdMap) -> str:
    """The one line to show when an image needs container `kind` ("uid"/"gid") `id` and the map lacks it
    (e.g. chown fails with EINVAL while extracting a layer)."""
    who = idmap.user or str(idmap.uid)
    if idmap.is_single:
        free = suggest_free_range([idmap.subuid_path, idmap.subgid_path])
        return (
            f"the image uses {kind} {id} but {who} has no subordinate ids, so only {kind} 0 exists in the user "
            f"namespace; fix: sudo usermod --add-subuids {free} --add-subgids {free} {who}, "
            f"then pull again (see {DOCS})"
        )
    top = idmap.max_container_uid if kind == "uid" else idmap.max_container_gid
    path = idmap.subuid_path if kind == "uid" else idmap.subgid_path
    need = id - top  # ids missing at the top of the container range
    size = max(65536, -(-need // 65536) * 65536)
    free = suggest_free_range([path], size)
    return (
        f"the image uses {kind} {id} but the user namespace maps only container {kind}s 0-{top} "
        f"({path} gives {who} {top} ids); give {who} at least {need} more: sudo usermod "
        f"--add-sub{kind}s {free} {who}, then pull again (see {DOCS})"
    )
