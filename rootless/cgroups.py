"""Resource limits: cgroup v2 through systemd delegation, a delegated cgroupfs subtree, or nothing.

Owns the podman-style limit flags (`Limits`), the decision of how to enforce them (`plan`), placing the
container's init process in a leaf cgroup with the limits written (`CgroupPlan.apply`), removing it
(`CgroupPlan.cleanup`), and reading a container cgroup's usage for `rootless stats` (`read_stats`).

Managers:
- ``systemd``: ask the user's systemd manager, over the user bus (D-Bus with jeepney), for a transient
  scope ``rootless-<id>.scope`` with ``Delegate=yes`` holding the container's init. D-Bus rather than
  ``systemd-run --user --scope``: the process already exists (systemd-run can only start a new
  command), and only the manager may move it out of the caller's login-session scope (systemd asks
  PID 1 to do it on the user's behalf). Inside the delegated scope rootless owns the cgroup tree: the
  init goes into the leaf ``container`` and the limits are written there as cgroup files.
- ``cgroupfs``: the current cgroup is an already-delegated v2 subtree (inside another container, or a
  ``Delegate=yes`` unit); the container gets the leaf ``rootless-<id>`` beside an ``rootless-init``
  leaf that takes the processes that were in the subtree's root (cgroup v2 allows no processes in a
  cgroup that hands controllers down).
- ``none`` (also ``--cgroups=disabled``): no cgroup; only ``--oom-score-adj`` applies.

Only the container's init pid is moved: the caller (monitor, helpers) stays where it is and does not
count against the limits. Explicit limits that cannot be enforced fail at `plan` time with exit 125
and a one-line fix; podman's default ``pids.max`` of 2048 is applied only where it can be, and a run
without explicit limits never fails because of cgroups.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import time

from rootless.errors import RootlessError

log = logging.getLogger("rootless.cgroups")

CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PIDS_LIMIT = 2048  # podman's default --pids-limit
CPU_PERIOD = 100_000  # microseconds, as podman
MIN_MEMORY = 6 * 1024 * 1024  # podman refuses less than 6 MiB
MANAGERS = ("systemd", "cgroupfs", "disabled")
INIT_LEAF = "rootless-init"
SCOPE_LEAF = "container"
DROPIN = "/etc/systemd/system/user@.service.d/delegate.conf"
AUTH_TIMEOUT = 10.0  # seconds for the user bus's SASL handshake

# The flag each Limits field comes from, and the cgroup controller it needs.
FLAGS = {
    "memory": ("--memory", "memory"),
    "memory_swap": ("--memory-swap", "memory"),
    "memory_reservation": ("--memory-reservation", "memory"),
    "cpus": ("--cpus", "cpu"),
    "cpu_shares": ("--cpu-shares", "cpu"),
    "cpu_weight": ("--cpu-weight", "cpu"),
    "pids_limit": ("--pids-limit", "pids"),
    "cpuset_cpus": ("--cpuset-cpus", "cpuset"),
}
_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")


class CgroupError(RootlessError):
    """Resource limits were asked for but cannot be enforced on this machine (exit 125)."""


# --------------------------------------------------------------------------------------------------
# Limits


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(value: str | int, flag: str = "--memory") -> int:
    """podman's byte syntax: ``1024``, ``512k``, ``64m``, ``1g`` (also ``64MB``, ``64MiB``); -1 = unlimited."""
    if isinstance(value, int):
        return value
    s = str(value).strip().lower()
    if s == "-1":
        return -1
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?", s)
    if not m:
        raise CgroupError(
            f"invalid {flag} value {value!r}: use a number with an optional unit b, k, m or g (e.g. 64m)"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _parse_int(value, flag: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise CgroupError(f"invalid {flag} value {value!r}: expected an integer") from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise CgroupError(f"invalid {flag} value {n}: must be between {lo} and {hi}")
    return n


@dataclasses.dataclass
class Limits:
    """The resource limits of one container, in podman's terms. None = not asked for.

    memory, memory_swap, memory_reservation: bytes (memory_swap is memory + swap; -1 = unlimited swap).
    cpus: CPUs as a float (cpu.max quota/period). cpu_shares: 2..262144 (converted to cpu.weight).
    cpu_weight: 1..10000. pids_limit: None = podman's default 2048 where it can be enforced; 0 or -1 =
    unlimited. cpuset_cpus: "0-1,3". oom_score_adj: -1000..1000 (written to /proc/PID/oom_score_adj).
    """

    memory: int | None = None
    memory_swap: int | None = None
    memory_reservation: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpu_weight: int | None = None
    pids_limit: int | None = None
    cpuset_cpus: str | None = None
    oom_score_adj: int | None = None

    @classmethod
    def from_cli(
        cls,
        memory=None,
        memory_swap=None,
        memory_reservation=None,
        cpus=None,
        cpu_shares=None,
        cpu_weight=None,
        pids_limit=None,
        cpuset_cpus=None,
        oom_score_adj=None,
    ) -> Limits:
        """Parse and validate podman's flag values ("64m", "0.5", "0-1"); None means the flag was not given."""
        lim = cls()
        if memory is not None:
            lim.memory = parse_bytes(memory, "--memory")
            if lim.memory == -1 or lim.memory == 0:
                lim.memory = None
            elif lim.memory < MIN_MEMORY:
                raise CgroupError(f"invalid --memory {memory}: the minimum memory limit is 6m")
        if memory_swap is not None:
            lim.memory_swap = parse_bytes(memory_swap, "--memory-swap")
            if lim.memory_swap != -1:
                if lim.memory is None:
                    raise CgroupError(
                        "--memory-swap needs --memory: give both, e.g. --memory 64m --memory-swap 128m"
                    )
                if lim.memory_swap < lim.memory:
                    raise CgroupError(
                        "--memory-swap must be at least --memory (it is memory plus swap); use -1 for unlimited swap"
                    )
        if memory_reservation is not None:
            lim.memory_reservation = parse_bytes(memory_reservation, "--memory-reservation")
            if lim.memory is not None and lim.memory_reservation > lim.memory:
                raise CgroupError("--memory-reservation must not exceed --memory")
        if cpus is not None:
            try:
                lim.cpus = float(cpus)
            except ValueError:
                raise CgroupError(
                    f"invalid --cpus value {cpus!r}: expected a number such as 0.5"
                ) from None
            ncpu = os.cpu_count() or 1
            if lim.cpus < 0 or lim.cpus > ncpu:
                raise CgroupError(
                    f"invalid --cpus {cpus}: must be between 0 and the {ncpu} CPUs of this machine"
                )
            if lim.cpus == 0:
                lim.cpus = None
        if cpu_shares is not None:
            lim.cpu_shares = _parse_int(cpu_shares, "--cpu-shares", 2, 262144)
        if cpu_weight is not None:
            lim.cpu_weight = _parse_int(cpu_weight, "--cpu-weight", 1, 10000)
        if lim.cpu_shares is not None and lim.cpu_weight is not None:
            raise CgroupError("--cpu-shares and --cpu-weight set the same thing: give only one")
        if pids_limit is not None:
            lim.pids_limit = _parse_int(pids_limit, "--pids-limit", -1)
            if lim.pids_limit == 0:
                lim.pids_limit = -1
        if cpuset_cpus is not None:
            s = str(cpuset_cpus).strip()
            if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", s):
                raise CgroupError(
                    f"invalid --cpuset-cpus {cpuset_cpus!r}: use a list such as 0-1,3"
                )
            lim.cpuset_cpus = s
        if oom_score_adj is not None:
            lim.oom_score_adj = _parse_int(oom_score_adj, "--oom-score-adj", -1000, 1000)
        return lim

    def explicit(self) -> list[str]:
        """The cgroup limit fields the user asked for (a None pids_limit is the default, not asked)."""
        return [f for f in FLAGS if getattr(self, f) is not None]

    def cpu_weight_value(self) -> int | None:
        """cpu.weight: --cpu-weight, or --cpu-shares converted as crun does."""
        if self.cpu_weight is not None:
            return self.cpu_weight
        if self.cpu_shares is not None:
            return 1 + ((self.cpu_shares - 2) * 9999) // 262142
        return None

    def files(self, *, default_pids: bool = True) -> dict[str, str]:
        """The cgroup v2 files to write in the container's leaf, in order."""
        out: dict[str, str] = {}
        if self.memory is not None:
            out["memory.max"] = str(self.memory)
            if self.memory_swap is None:
                out["memory.swap.max"] = str(self.memory)  # podman: as much swap as memory
            elif self.memory_swap == -1:
                out["memory.swap.max"] = "max"
            else:
                out["memory.swap.max"] = str(self.memory_swap - self.memory)
        if self.memory_reservation is not None:
            out["memory.low"] = str(self.memory_reservation)
        if self.cpus is not None:
            out["cpu.max"] = f"{max(1000, round(self.cpus * CPU_PERIOD))} {CPU_PERIOD}"
        w = self.cpu_weight_value()
        if w is not None:
            out["cpu.weight"] = str(w)
        pids = (
            self.pids_limit
            if self.pids_limit is not None
            else (DEFAULT_PIDS_LIMIT if default_pids else None)
        )
        if pids is not None:
            out["pids.max"] = "max" if pids < 0 else str(pids)
        if self.cpuset_cpus is not None:
            out["cpuset.cpus"] = self.cpuset_cpus
        return out

    def to_inspect(self) -> dict:
        """The limits as podman's `inspect` HostConfig shows them (0 = unset)."""
        return {
            "Memory": self.memory or 0,
            "MemorySwap": self.memory_swap
            if self.memory_swap is not None
            else (2 * self.memory if self.memory else 0),
            "MemoryReservation": self.memory_reservation or 0,
            "NanoCpus": int((self.cpus or 0) * 1e9),
            "CpuShares": self.cpu_shares or 0,
            "CpuWeight": self.cpu_weight_value() or 0,
            "PidsLimit": self.pids_limit if self.pids_limit is not None else DEFAULT_PIDS_LIMIT,
            "CpusetCpus": self.cpuset_cpus or "",
            "OomScoreAdj": self.oom_score_adj or 0,
        }


# --------------------------------------------------------------------------------------------------
# Probing the host


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def is_unified() -> bool:
    """True when /sys/fs/cgroup is a pure cgroup v2 mount (not v1, not hybrid)."""
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def own_cgroup(pid: int | str = "self") -> str:
    """The v2 cgroup path of a process, relative to the cgroup root ("/user.slice/...")."""
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise CgroupError("this process is in no cgroup v2 hierarchy: resource limits need cgroup v2")


def user_bus_address() -> str | None:
    """The user bus, from DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus; None when there is none."""
    addr = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if addr and addr.startswith("unix:path="):
        path = addr[len("unix:path=") :].split(",")[0]
        return addr if os.path.exists(path) else None
    if addr:
        return addr
    for rt in (os.environ.get("XDG_RUNTIME_DIR"), f"/run/user/{os.getuid()}"):
        if rt and os.path.exists(os.path.join(rt, "bus")):
            return f"unix:path={os.path.join(rt, 'bus')}"
    return None


def _user_manager_cgroup() -> str:
    uid = os.getuid()
    return os.path.join(CGROUP_ROOT, f"user.slice/user-{uid}.slice/user@{uid}.service")


def _controllers(cgdir: str) -> set[str]:
    try:
        return set(_read(os.path.join(cgdir, "cgroup.controllers")).split())
    except OSError:
        return set()


def _delegated_base() -> str | None:
    """The writable cgroup v2 subtree for the cgroupfs manager, or None."""
    try:
        cur = os.path.join(CGROUP_ROOT, own_cgroup().lstrip("/"))
    except (OSError, CgroupError):
        return None
    if os.path.basename(cur) == INIT_LEAF:
        cur = os.path.dirname(cur)
    ok = all(
        os.access(os.path.join(cur, f), os.W_OK) for f in ("cgroup.procs", "cgroup.subtree_control")
    ) and os.access(cur, os.W_OK)
    return cur if ok else None


# --------------------------------------------------------------------------------------------------
# Planning


def _flags(fields) -> str:
    return ", ".join(FLAGS[f][0] for f in fields)


def plan(limits: Limits | None, manager: str | None, container_id: str) -> CgroupPlan:
    """Decide how the container's limits are enforced, before the container starts.

    manager: None (auto: systemd when a user manager is reachable, else cgroupfs when the current
    cgroup is a delegated v2 subtree, else none), "systemd", "cgroupfs", or "disabled".
    Raises CgroupError (exit 125) with the reason and the fix when explicit limits cannot be enforced.
    """
    limits = limits or Limits()
    if manager not in (None, *MANAGERS):
        raise CgroupError(f"unknown cgroup manager {manager!r}: use systemd, cgroupfs or disabled")
    asked = limits.explicit()
    if limits.oom_score_adj is not None and os.geteuid() != 0:
        cur = int(_read("/proc/self/oom_score_adj"))
        if limits.oom_score_adj < cur:
            raise CgroupError(
                f"--oom-score-adj {limits.oom_score_adj} is below this process's {cur}: "
                "an unprivileged user can only raise it; use a value of at least " + str(cur)
            )
    if manager == "disabled":
        return CgroupPlan("none", limits, container_id, required=False)

    def fail_or_none(why: str) -> CgroupPlan:
        if asked:
            raise CgroupError(why)
        log.debug("no cgroup for the container: %s", why)
        return CgroupPlan("none", limits, container_id, required=False)

    what = f"cannot enforce {_flags(asked) or 'resource limits'}"
    if not is_unified():
        return fail_or_none(
            f"{what}: this machine uses cgroup v1 (or the hybrid layout) and rootless limits need cgroup v2; "
            "boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line, "
            "or run with --cgroups=disabled to run without limits"
        )
    bus = user_bus_address()
    if manager == "systemd" or (manager is None and bus):
        if not bus:
            return fail_or_none(
                f"{what}: no systemd user manager is reachable (no user bus in $XDG_RUNTIME_DIR); "
                "run `loginctl enable-linger $USER` and log in again, "
                "or run with --cgroups=disabled to run without limits"
            )
        mgr_cg = _user_manager_cgroup()
        have = _controllers(mgr_cg) if os.path.isdir(mgr_cg) else None
        if have is not None:
            err = _missing(asked, have, f"user@{os.getuid()}.service", root=True)
            if err:
                return fail_or_none(f"{what}: {err}")
        return CgroupPlan(
            "systemd", limits, container_id, required=bool(asked), bus=bus, available=have
        )
    base = _delegated_base()
    if base is None:
        return fail_or_none(
            f"{what}: no systemd user manager is reachable and the current cgroup is not delegated to you; "
            "run `loginctl enable-linger $USER` and log in again (or run inside a Delegate=yes unit), "
            "or run with --cgroups=disabled to run without limits"
        )
    have = _controllers(base)
    err = _missing(asked, have, f"the cgroup {base}", root=False)
    if err:
        return fail_or_none(f"{what}: {err}")
    return CgroupPlan(
        "cgroupfs", limits, container_id, required=bool(asked), base=base, available=have
    )


def _missing(asked: list[str], have: set[str], where: str, *, root: bool) -> str | None:
    need: dict[str, list[str]] = {}
    for f in asked:
        need.setdefault(FLAGS[f][1], []).append(f)
    missing = [c for c in need if c not in have]
    if not missing:
        return None
    kernel = _controllers(CGROUP_ROOT)
    absent = [c for c in missing if c not in kernel]
    if absent:
        flags = _flags([f for c in absent for f in need[c]])
        return (
            f"the kernel offers no {' '.join(absent)} cgroup controller (available: {' '.join(sorted(kernel))}); "
            f"drop {flags}, or run with --cgroups=disabled to run without limits"
        )
    flags = _flags([f for c in missing for f in need[c]])
    if root:
        return (
            f"the {' '.join(missing)} controller is not delegated to {where} (delegated: "
            f"{' '.join(sorted(have)) or 'none'}); as root add {DROPIN} with "
            "'[Service] Delegate=cpu cpuset io memory pids', run `systemctl daemon-reload`, log in again; "
            f"or drop {flags}, or run with --cgroups=disabled"
        )
    return (
        f"the {' '.join(missing)} controller is not available in {where} (available: "
        f"{' '.join(sorted(have)) or 'none'}); delegate it to this subtree, drop {flags}, "
        "or run with --cgroups=disabled"
    )


# --------------------------------------------------------------------------------------------------
# Applying


@dataclasses.dataclass
class CgroupPlan:
    """How one container's limits are enforced. `apply(pid)` once, then `path`; `cleanup()` at the end."""

    manager: str  # "systemd", "cgroupfs" or "none"
    limits: Limits
    container_id: str
    required: bool = False  # explicit limits: failures are errors, not warnings
    bus: str | None = None
    base: str | None = None
    available: set[str] | None = None
    path: str | None = None  # the container's leaf cgroup directory, once applied
    unit: str | None = None  # the systemd scope, once applied

    def apply(self, pid: int) -> None:
        """Place the container's init (host pid) in its leaf cgroup with the limits, and set oom_score_adj.

        Call it before the container runs the user's command, so every child inherits the cgroup.
        """
        if self.limits.oom_score_adj is not None:
            try:
                _write(f"/proc/{pid}/oom_score_adj", str(self.limits.oom_score_adj))
            except OSError as e:
                raise CgroupError(
                    f"cannot set --oom-score-adj {self.limits.oom_score_adj}: {e.strerror}"
                ) from None
        if self.manager == "none":
            return
        try:
            if self.manager == "systemd":
                self._apply_systemd(pid)
            else:
                self._apply_cgroupfs(pid)
        except CgroupError:
            if self.required:
                raise
            log.warning(
                "running without a cgroup (only the default --pids-limit is lost)", exc_info=True
            )
            self.cleanup()
        except OSError as e:
            if self.required:
                raise CgroupError(
                    f"cannot set up the container's cgroup{' ' + self.path if self.path else ''}: {e.strerror or e}; "
                    "run with --cgroups=disabled to run without limits"
                ) from None
            log.warning("running without a cgroup: %s", e)
            self.cleanup()

    def _apply_systemd(self, pid: int) -> None:
        self.unit = f"rootless-{self.container_id}.scope"
        _start_scope(self.bus, self.unit, pid, self.container_id)
        scope = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # systemd moves the pid when the scope's start job runs
            try:
                cg = own_cgroup(pid)
            except FileNotFoundError:
                raise CgroupError(
                    "the container exited before it could be placed in its cgroup"
                ) from None
            if cg.endswith("/" + self.unit):
                scope = os.path.join(CGROUP_ROOT, cg.lstrip("/"))
                break
            time.sleep(0.005)
        if scope is None:
            raise CgroupError(f"systemd did not move the container into {self.unit} within 10 s")
        self._place(scope, SCOPE_LEAF, pid)

    def _apply_cgroupfs(self, pid: int) -> None:
        base = self.base
        want = self._controllers_to_enable(base)
        enabled = set(_read(os.path.join(base, "cgroup.subtree_control")).split())
        if not want <= enabled and _read(os.path.join(base, "cgroup.procs")):
            # No internal processes: move what lives in the subtree's root into a sibling leaf.
            init = os.path.join(base, INIT_LEAF)
            os.makedirs(init, exist_ok=True)
            for p in _read(os.path.join(base, "cgroup.procs")).split():
                try:
                    _write(os.path.join(init, "cgroup.procs"), p)
                except ProcessLookupError:
                    pass
        self._place(base, f"rootless-{self.container_id}", pid)

    def _controllers_to_enable(self, parent: str) -> set[str]:
        return _controllers(parent) & set(_CONTROLLERS)

    def _place(self, parent: str, leaf: str, pid: int) -> None:
        have = _controllers(parent)
        err = _missing(self.limits.explicit(), have, parent, root=self.manager == "systemd")
        if err:
            raise CgroupError(f"cannot enforce {_flags(self.limits.explicit())}: {err}")
        self.path = os.path.join(parent, leaf)
        os.makedirs(self.path, exist_ok=True)
        _write(os.path.join(self.path, "cgroup.procs"), str(pid))
        want = self._controllers_to_enable(parent)
        enabled = set(_read(os.path.join(parent, "cgroup.subtree_control")).split())
        if want - enabled:
            _write(
                os.path.join(parent, "cgroup.subtree_control"),
                " ".join("+" + c for c in sorted(want - enabled)),
            )
        for name, value in self.limits.files(default_pids="pids" in have).items():
            fpath = os.path.join(self.path, name)
            if (
                name == "memory.swap.max"
                and self.limits.memory_swap is None
                and not os.path.exists(fpath)
            ):
                continue  # the implied swap limit needs swap accounting; skip it quietly
            try:
                _write(fpath, value)
            except OSError as e:
                raise CgroupError(f"cannot write {value} to {fpath}: {e.strerror}") from None

    def cleanup(self) -> None:
        """Remove the leaf (and stop the scope). Safe to call more than once and after a failed apply."""
        if self.path:
            _rmdir(self.path)
        if self.unit and self.bus:
            try:
                _stop_unit(self.bus, self.unit)
            except Exception as e:  # the scope usually stopped by itself when it emptied
                log.debug("stopping %s: %s", self.unit, e)

    def state(self) -> dict:
        """What `rm`/`stats`/`inspect` need later, JSON-serialisable."""
        return {
            "manager": self.manager,
            "path": self.path,
            "unit": self.unit,
            "limits": dataclasses.asdict(self.limits),
        }


def _rmdir(path: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                log.debug("cannot remove %s: %s", path, e)
                return
            time.sleep(0.01)  # the last process is still exiting


# --------------------------------------------------------------------------------------------------
# systemd over D-Bus (jeepney, blocking I/O: a few round trips on a local socket)

_SYSTEMD = (
    "/org/freedesktop/systemd1",
    "org.freedesktop.systemd1",
    "org.freedesktop.systemd1.Manager",
)


def systemd_call(bus: str, method: str, signature: str, body: tuple):
    """One method call on the user's systemd manager over its bus; a CgroupError (one line) on failure."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import DBusErrorResponse, unwrap_msg

    addr = DBusAddress(*_SYSTEMD)
    try:
        # jeepney's default auth timeout (1 s) is too short on a loaded or slow machine (seen in CI)
        with open_dbus_connection(bus=bus, auth_timeout=AUTH_TIMEOUT) as conn:
            reply = conn.send_and_get_reply(
                new_method_call(addr, method, signature, body), timeout=15
            )
            return unwrap_msg(reply)
    except DBusErrorResponse as e:
        raise CgroupError(
            f"the systemd user manager refused {method}: {e.name}: {' '.join(map(str, e.data))}"
        ) from None
    except (OSError, TimeoutError) as e:
        raise CgroupError(
            f"cannot talk to the systemd user manager at {bus}: {e}; "
            "run `loginctl enable-linger $USER`, or run with --cgroups=disabled"
        ) from None


def _start_scope(bus: str, unit: str, pid: int, container_id: str) -> None:
    props = [
        ("Description", ("s", f"rootless container {container_id[:12]}")),
        ("PIDs", ("au", [pid])),
        ("Delegate", ("b", True)),
        ("CollectMode", ("s", "inactive-or-failed")),
        # The kernel's OOM kill takes one process, as in podman; systemd must not stop the whole scope.
        ("OOMPolicy", ("s", "continue")),
    ]
    systemd_call(bus, "StartTransientUnit", "ssa(sv)a(sa(sv))", (unit, "fail", props, []))


def _stop_unit(bus: str, unit: str) -> None:
    systemd_call(bus, "StopUnit", "ss", (unit, "fail"))


# --------------------------------------------------------------------------------------------------
# Stats


def _kv(path: str) -> dict[str, int]:
    out = {}
    try:
        for line in _read(path).splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
    except OSError:
        pass
    return out


def _num(path: str) -> int | None:
    """An integer cgroup file; None for "max" or when the file does not exist."""
    try:
        v = _read(path)
    except OSError:
        return None
    return None if v == "max" else int(v.split()[0])


def read_stats(path: str) -> dict:
    """Usage and limits of a container's cgroup (None = unlimited or not available).

    Keys: cpu_usage_usec, cpu_user_usec, cpu_system_usec, cpu_nr_throttled, cpu_quota_usec,
    cpu_period_usec, cpu_weight, memory_usage, memory_limit, memory_swap_usage, memory_swap_limit,
    memory_low, oom_kills, pids_current, pids_limit, io_read_bytes, io_write_bytes, cpuset_cpus.
    """
    j = lambda name: os.path.join(path, name)  # noqa: E731
    cpu = _kv(j("cpu.stat"))
    quota, period = None, None
    try:
        q, p = _read(j("cpu.max")).split()
        quota, period = (None if q == "max" else int(q)), int(p)
    except (OSError, ValueError):
        pass
    io_r = io_w = 0
    try:
        for line in _read(j("io.stat")).splitlines():
            for field in line.split()[1:]:
                k, _, v = field.partition("=")
                if k == "rbytes":
                    io_r += int(v)
                elif k == "wbytes":
                    io_w += int(v)
    except OSError:
        pass
    try:
        cpuset = _read(j("cpuset.cpus")) or None
    except OSError:
        cpuset = None
    return {
        "cpu_usage_usec": cpu.get("usage_usec", 0),
        "cpu_user_usec": cpu.get("user_usec", 0),
        "cpu_system_usec": cpu.get("system_usec", 0),
        "cpu_nr_throttled": cpu.get("nr_throttled", 0),
        "cpu_quota_usec": quota,
        "cpu_period_usec": period,
        "cpu_weight": _num(j("cpu.weight")),
        "memory_usage": _num(j("memory.current")) or 0,
        "memory_limit": _num(j("memory.max")),
        "memory_swap_usage": _num(j("memory.swap.current")),
        "memory_swap_limit": _num(j("memory.swap.max")),
        "memory_low": _num(j("memory.low")),
        "oom_kills": _kv(j("memory.events")).get("oom_kill", 0),
        "pids_current": _num(j("pids.current")) or 0,
        "pids_limit": _num(j("pids.max")),
        "io_read_bytes": io_r,
        "io_write_bytes": io_w,
        "cpuset_cpus": cpuset,
    }


def remove(path: str | None, unit: str | None = None) -> None:
    """Clean up a container's cgroup from its saved state() (for `rm` in another process)."""
    CgroupPlan(
        "none", Limits(), "", path=path, unit=unit, bus=user_bus_address() if unit else None
    ).cleanup()
