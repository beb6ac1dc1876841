"""A container's resource limits (setrlimit), as rootless podman 4.3 sets them.

``--ulimit NAME=SOFT[:HARD]`` takes go-units' names and syntax (podman's parser: ``parse``, with
its error text); ``-1`` is unlimited. ``--ulimit host`` drops every --ulimit given. ``resolve`` is
what api.create records: the user's limits, then podman's rootless defaults for those not given,
``nofile`` at the caller's hard limit (podman raises its own soft limit to it at start-up, capped
at 1048576) and ``nproc`` at kernel.pid_max when the hard limit allows it (containers-common's
default_ulimits), else 1048576, else the caller's own. ``apply`` sets them in the container's init
and in every `exec`; a limit above the caller's hard limit fails there as podman's runtime does
(exit 126). ``inspect`` is .HostConfig.Ulimits. The `resource` module is imported here, at the
top: init and exec call ``apply`` after pivot_root or setns, when no module can be found.
"""

from __future__ import annotations

import re
import resource

from rootless.errors import EXIT_CANNOT_INVOKE, ContainerError

DEFAULT_MAX = 1048576  # podman's RLimitDefaultValue

# go-units' names (``as`` is not one: docker disabled it) -> the resource (Linux's numbers, as
# go-units has them: Python's resource module lacks some, RLIMIT_LOCKS among them)
NAMES = {"core": 4, "cpu": 0, "data": 2, "fsize": 1, "locks": 10, "memlock": 8, "msgqueue": 12,
         "nice": 13, "nofile": 7, "nproc": 6, "rss": 5, "rtprio": 14, "rttime": 15,
         "sigpending": 11, "stack": 3}  # fmt: skip
_INT = re.compile(r"[+-]?[0-9]+\Z")  # Go's strconv.ParseInt(s, 10, 64)


def _parse_int(text: str) -> int:
    if not _INT.match(text):
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    n = int(text)
    if not -(2**63) <= n < 2**63:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return n


def _parse(value: str) -> tuple[str, int, int]:
    name, eq, limits = value.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {value}")
    if name not in NAMES:
        raise ValueError(f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise ValueError(
            f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"
        )
    hard = _parse_int(parts[1]) if len(parts) == 2 else None
    soft = _parse_int(parts[0])
    hard = soft if hard is None else hard
    if hard != -1:
        if soft == -1:
            raise ValueError(
                "ulimit soft limit must be less than or equal to hard limit: "
                f"soft: -1 (unlimited), hard: {hard}"
            )
        if soft > hard:
            raise ValueError(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )
    return name, soft, hard


def parse(value: str) -> tuple[str, int, int]:
    """(name, soft, hard) of one --ulimit value (not "host"), or podman's one-line error."""
    try:
        return _parse(value)
    except ValueError as e:
        raise ContainerError(
            f'ulimit option "{value}" requires name=SOFT:HARD, failed to be parsed: {e}'
        ) from None


def check(values) -> None:
    for v in values:
        if v != "host":
            parse(v)


def _cap(n: int) -> int:
    return DEFAULT_MAX if n == resource.RLIM_INFINITY or n > DEFAULT_MAX else n


def _pid_max() -> int | None:
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def defaults() -> dict[str, tuple[int, int]]:
    """podman's rootless nofile and nproc for a container started by this process."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = {"nofile": (_cap(hard), _cap(hard))}
    cur, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    unlimited = hard == resource.RLIM_INFINITY
    pid_max = _pid_max()
    if pid_max is not None and (unlimited or pid_max <= hard):
        out["nproc"] = (_cap(pid_max), _cap(pid_max))
    elif unlimited or DEFAULT_MAX <= hard:
        out["nproc"] = (DEFAULT_MAX, DEFAULT_MAX)
    else:
        out["nproc"] = (_cap(cur), _cap(hard))
    return out


def _merged(values) -> dict[str, tuple[int, int]]:
    """The limits in podman's order: its OCI generator starts from a spec that lists nofile, then
    each --ulimit value replaces the one of its name in its place or comes next; nproc's default
    last when it is not given."""
    default = defaults()
    out = {"nofile": default["nofile"]}
    for v in values:
        name, soft, hard = parse(v)
        out[name] = (soft, hard)
    out.setdefault("nproc", default["nproc"])
    return out


def resolve(values) -> list[str]:
    """The limits a container's record keeps (every start applies them): ["host"] for --ulimit
    host (podman drops the other values then), else NAME=SOFT:HARD for each."""
    if "host" in values:
        return ["host"]
    return [f"{name}={soft}:{hard}" for name, (soft, hard) in _merged(values).items()]


def limits(values) -> list[tuple[str, int, int]]:
    """(name, soft, hard) to set in the container. With "host" podman sets none, so its runtime
    inherits podman's own raised nofile and nproc: the defaults."""
    if "host" in values:
        return [(name, soft, hard) for name, (soft, hard) in defaults().items()]
    return [(name, soft, hard) for name, (soft, hard) in _merged(values).items()]


def _value(n: int) -> int:
    return resource.RLIM_INFINITY if n < 0 else n  # go's uint64(-1) is RLIM_INFINITY


def apply(items: list[tuple[str, int, int]]) -> None:
    """setrlimit each (in the container's init or an exec'd process, before it execs)."""
    for name, soft, hard in items:
        try:
            resource.setrlimit(NAMES[name], (_value(soft), _value(hard)))
        except (ValueError, OSError):
            _cur, mine = resource.getrlimit(NAMES[name])
            have = "unlimited" if mine == resource.RLIM_INFINITY else str(mine)
            raise ContainerError(
                f"cannot set the ulimit {name}={soft}:{hard}: operation not permitted (the hard "
                f"limit rootless was given is {have}): lower it, or raise yours "
                "(/etc/security/limits.conf)",
                exit_code=EXIT_CANNOT_INVOKE,
            ) from None


def inspect(values) -> list[dict]:
    """.HostConfig.Ulimits: what the container's spec lists (none for --ulimit host)."""
    if "host" in values:
        return []
    return [
        {"Name": "RLIMIT_" + name.upper(), "Soft": soft, "Hard": hard}
        for name, (soft, hard) in _merged(values).items()
    ]
