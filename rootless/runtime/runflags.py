"""Checks of the run/create flags that no other module owns (restart policy, stop signal and
timeout, ulimits), done by plan.prepare before anything is created: each failure is one line
(ContainerError, exit 125); and ``resolve``, what api.create records of them: the stop signal
(--stop-signal, else the image's StopSignal, else SIGTERM) as a number, and the ulimits with
podman's defaults (rootless.runtime.ulimits).
"""

from __future__ import annotations

import os
import re
import signal

from rootless.errors import ContainerError

DEFAULT_STOP_TIMEOUT = 10  # containers.conf's stop_timeout

_SIGNALS = {n[3:]: int(s) for n, s in signal.Signals.__members__.items() if n.startswith("SIG")}
_SIGNALS.update({"RTMIN": 34, "RTMAX": 64, "CLD": 17, "IOT": 6, "POLL": 29})
_SIGNALS.update({f"RTMIN+{i}": 34 + i for i in range(1, 16)})
_SIGNALS.update({f"RTMAX-{i}": 64 - i for i in range(1, 15)})
_ATOI = re.compile(r"[+-]?[0-9]+\Z")


def parse_signal(value: str, flag: str = "--stop-signal") -> int:
    """podman's ParseSignal: a number or a name (SIG optional, any case, RTMIN+N), a leading
    dash allowed, 1 to 64."""
    base = value[1:] if value.startswith("-") else value
    if _ATOI.match(base):
        n = int(base)
        if n == 0:
            raise ContainerError(f"{flag} {value}: invalid signal: {base}")
    else:
        up = base.upper()
        n = _SIGNALS.get(up[3:] if up.startswith("SIG") else up, -1)
        if n == -1:
            raise ContainerError(
                f"{flag} {value}: invalid signal: {base} (use a name: TERM, INT, RTMIN+3, or 1-64)"
            )
    if not 1 <= n <= 64:
        raise ContainerError(f"{flag} {value}: valid signals are 1 through 64")
    return n


def parse_uint(flag: str, value: str) -> int:
    """A podman unsigned integer flag (--timeout, --health-retries): Go's ParseUint and its error."""
    why = (
        "invalid syntax"
        if not value.isdigit()
        else "value out of range"
        if int(value) >= 2**64
        else ""
    )
    if why:
        raise ContainerError(
            f'invalid argument "{value}" for "{flag}" flag: strconv.ParseUint: parsing '
            f'"{value}": {why}'
        )
    return int(value)


def parse_stop_timeout(value: str) -> int:
    """--stop-timeout: podman's unsigned integer (seconds)."""
    if not re.fullmatch(r"[0-9]+", value) or int(value) >= 2**64:
        raise ContainerError(
            f'invalid argument "{value}" for "--stop-timeout" flag: use a whole number of seconds'
        )
    return int(value)


def check(opts) -> None:
    """Refuse bad values and combinations podman refuses."""
    if opts.restart:
        from rootless.runtime import restart

        name, _ = restart.parse(opts.restart)
        if name != "no" and opts.rm:
            raise ContainerError(
                'the --rm option conflicts with --restart: use one of them (or --restart "no")'
            )
    if opts.ulimits:
        from rootless.runtime import ulimits

        ulimits.check(opts.ulimits)
    shm_size(opts.shm_size)
    exposed(opts.expose)
    namespace_modes(opts)
    for name, value in opts.sysctls.items():
        what = "Network" if name.startswith("net.") else "IPC"
        if (opts.network if what == "Network" else opts.ipc) == "host":
            raise ContainerError(
                f"sysctl {name}={value} can't be set since {what} Namespace set to host: "
                "invalid argument"
            )
    if "keep-groups" in opts.group_add and len(opts.group_add) > 1:
        raise ContainerError(
            "the '--group-add keep-groups' option is not allowed with any other --group-add options"
        )
    for g in opts.group_add:
        if g != "keep-groups" and not g.isdigit() and not re.fullmatch(r"[A-Za-z_][\w.-]*\$?", g):
            raise ContainerError(f"invalid group name {g!r} for --group-add: use a gid or a name")


NAMESPACE_FLAGS = {
    "uts": "uts",
    "ipc": "ipc",
    "pid": "pid",
    "cgroupns": "cgroup",
}  # flag -> OCI type


def namespace_modes(opts) -> None:
    """--uts, --ipc, --pid, --cgroupns: podman's modes that rootless has (private, host; for --ipc
    also none and shareable); another container's or a path's namespace is refused with the way."""
    for flag in NAMESPACE_FLAGS:
        mode = getattr(opts, flag)
        if mode in ("", "private", "host") or (flag == "ipc" and mode in ("none", "shareable")):
            if mode == "host" and opts.pod:
                raise ContainerError(f"--{flag} host cannot be used with --pod: a pod's "
                                     "containers share its namespaces")  # fmt: skip
            continue
        kind, sep, _ = mode.partition(":")
        if sep and kind in ("container", "ns"):
            raise ContainerError(
                f"--{flag} {mode}: rootless cannot join another container's or a path's namespace; "
                "run the containers in one pod (--pod) to share namespaces"
            )
        raise ContainerError(f"unrecognized namespace mode {mode} passed")
    if opts.uts == "host" and opts.hostname:
        raise ContainerError("invalid config provided: cannot set hostname when running in the "
                             "host UTS namespace: invalid configuration")  # fmt: skip


LOG_DRIVERS = ("k8s-file", "json-file", "none", "passthrough")
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def log_options(driver: str, items) -> dict[str, str]:
    """--log-driver and --log-opt KEY=VALUE as podman checks them (other keys are ignored, as podman
    ignores them); max-size in go-units' decimal units (1k: 1000 bytes)."""
    if driver == "journald":
        raise ContainerError("the journald log driver needs the systemd journal, which rootless "
                             "does not write to: use --log-driver k8s-file")  # fmt: skip
    if driver not in LOG_DRIVERS:
        raise ContainerError(
            "running container create option: invalid log driver: invalid argument"
        )
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise ContainerError(f'invalid log option "{item}"')
        if key == "max-size":
            log_size(value)
        elif key == "tag":
            raise ContainerError(f"{driver} doesn't support --log-tag: it is journald's")
        elif key == "path":
            value = os.path.abspath(value)
        out[key] = value
    return out


def log_size(value: str) -> int:
    """go-units' FromHumanSize: decimal units, an optional B ("10k", "1.5MB", "100")."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", value.strip().lower())
    if not m:
        raise ContainerError(f"invalid size: '{value}'")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def human_size(n: int) -> str:
    """go-units' HumanSize (decimal, 4 significant digits): "1kB", "0B", "1.5MB"."""
    units, x, i = ["B", "kB", "MB", "GB", "TB", "PB"], float(n), 0
    while x >= 1000 and i < len(units) - 1:
        x, i = x / 1000, i + 1
    return f"{x:.4g}{units[i]}"


# podman's allowed sysctls (pkg/util ValidateSysctls): the IPC namespace's own and the network
# namespace's (net.*); each is written in the container's namespaces before its process starts
IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                         "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})  # fmt: skip
SYSCTL_PREFIXES = ("net.", "fs.mqueue.")


def sysctls(items) -> dict[str, str]:
    """--sysctl NAME=VALUE values, checked as podman checks them (a later one wins)."""
    out: dict[str, str] = {}
    for item in items:
        parts = item.split("=")
        if len(parts) < 2:
            raise ContainerError(
                f"{item} is invalid, sysctl values must be in the form of KEY=VALUE"
            )
        name, value = parts[0], parts[1]
        if f"{name.strip()}={value.strip()}" != item:
            raise ContainerError(f"'{item}' is invalid, extra spaces found")
        if name not in IPC_SYSCTLS and not name.startswith(SYSCTL_PREFIXES):
            raise ContainerError(f"sysctl '{name}' is not allowed")
        out[name] = value
    return out


GO_TRUE, GO_FALSE = (
    ("1", "t", "T", "TRUE", "true", "True"),
    ("0", "f", "F", "FALSE", "false", "False"),
)


def go_bool(flag: str, value: str) -> bool:
    """A podman boolean flag's value (Go's strconv.ParseBool), with podman's error."""
    if value in GO_TRUE or value in GO_FALSE:
        return value in GO_TRUE
    raise ContainerError(
        f'invalid argument "{value}" for "{flag}" flag: strconv.ParseBool: parsing "{value}": '
        "invalid syntax"
    )


def exposed(specs: list[str]) -> dict[str, dict]:
    """--expose values as image-config ExposedPorts keys ("80/tcp", "8000-8001/udp"), checked with
    podman's messages."""
    out: dict[str, dict] = {}
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = proto.lower() or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise ContainerError(f"validating protocols for exposed port {port}: unrecognized "
                                 f'protocol "{proto}" in port mapping')  # fmt: skip
        lo, sep, hi = port.partition("-")
        for part in (lo, hi) if sep else (lo,):
            if not part.isdigit():
                raise ContainerError(f"invalid range format for --expose: {spec}: "
                                     f'strconv.ParseUint: parsing "{part}": invalid syntax')  # fmt: skip
            if not 1 <= int(part) <= 65535:
                raise ContainerError(
                    f"port numbers must be between 1 and 65535 (inclusive), got {int(part)}"
                )
        out[f"{port}/{proto}"] = {}
    return out


ZONEINFO = "/usr/share/zoneinfo"


def zone_file(tz: str) -> str:
    """--tz: the host's file for the zone ("local": the host's /etc/localtime), bound read-only at
    the container's /etc/localtime (where that is a symlink, onto its target, as podman's)."""
    import os

    if tz == "local":
        return os.path.realpath("/etc/localtime")
    path = os.path.normpath(os.path.join(ZONEINFO, tz))
    if not path.startswith(ZONEINFO + "/") or not os.path.isfile(path):
        raise ContainerError(
            f"running container create option: stat {ZONEINFO}/{tz}: no such file or directory"
        )
    return path


def shm_size(value: str | None) -> int | None:
    """--shm-size in bytes (podman's units, 1024-based, as --memory), None when not given."""
    if value is None:
        return None
    from rootless.cgroups.limits import parse_bytes
    from rootless.errors import RootlessError

    try:
        size = parse_bytes(value, "--shm-size")
    except RootlessError:
        size = -1
    if size < 0:
        raise ContainerError(f"unable to translate --shm-size: invalid size: '{value}'")
    return size


def image_stop_signal(image_config: dict) -> int | None:
    """The image's StopSignal (a Containerfile's STOPSIGNAL) as a number; None if it has none."""
    raw = ((image_config or {}).get("config") or {}).get("StopSignal") or ""
    if not raw:
        return None
    try:
        return parse_signal(raw, "the image's StopSignal")
    except ContainerError as e:
        raise ContainerError(f"{e}: rebuild the image, or give --stop-signal") from None


def resolve(opts, image_config: dict):
    """The options as a new container's record keeps them: its stop signal as a number, its
    ulimits with podman's defaults and its healthcheck (the flags', else the image's)."""
    from dataclasses import replace

    from rootless.runtime import ulimits

    sig = opts.stop_signal or image_stop_signal(image_config) or int(signal.SIGTERM)
    hc = None
    if (
        opts.health_cmd
        or opts.no_healthcheck
        or ((image_config or {}).get("config") or {}).get("Healthcheck")
    ):
        from rootless.runtime import health

        hc = health.configure(opts.health_cmd, opts.health_interval, opts.health_retries,
                              opts.health_start_period, opts.health_timeout, opts.no_healthcheck,
                              image_config)  # fmt: skip
    return replace(opts, stop_signal=sig, ulimits=ulimits.resolve(opts.ulimits), healthcheck=hc)


def stop_signal(run) -> int:
    """The signal `stop` sends a container (`run`: its record's options, or None)."""
    return (run and run.stop_signal) or int(signal.SIGTERM)


def stop_timeout(run) -> int:
    """Seconds `stop` waits for a container before SIGKILL (`run`: its record's options)."""
    t = run.stop_timeout if run is not None else None
    return DEFAULT_STOP_TIMEOUT if t is None else t
