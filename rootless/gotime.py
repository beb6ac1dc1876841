"""Times as podman prints them, which is how Go prints a time.Time: `rfc3339nano` (encoding/json and
the CreatedAt fields: RFC 3339, nanoseconds without trailing zeros, the local offset or Z) and
`string` (time.Time.String(), what a Go template shows for a time field)."""

import time


def _split(ns: int) -> tuple[time.struct_time, str, int]:
    secs, frac = divmod(ns, 1_000_000_000)
    tm = time.localtime(secs)
    return tm, f"{frac:09d}".rstrip("0"), tm.tm_gmtoff or 0


def rfc3339nano(ns: int) -> str:
    """`ns` nanoseconds since the epoch as Go's RFC3339Nano."""
    tm, digits, off = _split(ns)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", tm) + (f".{digits}" if digits else "")
    if off == 0:
        return text + "Z"
    sign, off = ("+" if off > 0 else "-"), abs(off)
    return text + f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"


def string(ns: int) -> str:
    """`ns` nanoseconds since the epoch as Go's time.Time.String()."""
    tm, digits, off = _split(ns)
    sign, a = ("+" if off >= 0 else "-"), abs(off)
    zone = "UTC" if off == 0 else tm.tm_zone
    return (time.strftime("%Y-%m-%d %H:%M:%S", tm) + (f".{digits}" if digits else "")
            + f" {sign}{a // 3600:02d}{a % 3600 // 60:02d} {zone}")  # fmt: skip


def now_ns() -> int:
    return time.time_ns()
