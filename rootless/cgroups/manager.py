"""Deciding how a container's limits are enforced (``plan``), and enforcing them (``CgroupPlan``):
placing the container's init in a leaf cgroup with the limits written, and removing it afterwards.
See rootless.cgroups for the managers (systemd, cgroupfs, none).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import rootless.cgroups.fs as fs
import rootless.cgroups.systemd as systemd
from rootless.cgroups.limits import FLAGS, CgroupError, Limits, flag_names

log = logging.getLogger("rootless.cgroups")

MANAGERS = ("systemd", "cgroupfs", "disabled")
INIT_LEAF = "rootless-init"
SCOPE_LEAF = "container"
DROPIN = "/etc/systemd/system/user@.service.d/delegate.conf"
CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")


def delegated_base() -> str | None:
    """The writable cgroup v2 subtree for the cgroupfs manager, or None."""
    try:
        cur = os.path.join(fs.CGROUP_ROOT, fs.own_cgroup().lstrip("/"))
    except (OSError, CgroupError):
        return None
    if os.path.basename(cur) == INIT_LEAF:
        cur = os.path.dirname(cur)
    ok = all(
        os.access(os.path.join(cur, f), os.W_OK) for f in ("cgroup.procs", "cgroup.subtree_control")
    ) and os.access(cur, os.W_OK)
    return cur if ok else None


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
        cur = int(fs.read("/proc/self/oom_score_adj"))
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

    what = f"cannot enforce {flag_names(asked) or 'resource limits'}"
    if not fs.is_unified():
        return fail_or_none(
            f"{what}: this machine uses cgroup v1 (or the hybrid layout) and rootless limits need cgroup v2; "
            "boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line, "
            "or run with --cgroups=disabled to run without limits"
        )
    bus = systemd.user_bus_address()
    if manager == "systemd" or (manager is None and bus):
        if not bus:
            return fail_or_none(
                f"{what}: no systemd user manager is reachable (no user bus in $XDG_RUNTIME_DIR); "
                "run `loginctl enable-linger $USER` and log in again, "
                "or run with --cgroups=disabled to run without limits"
            )
        mgr_cg = systemd.user_manager_cgroup()
        have = fs.controllers(mgr_cg) if os.path.isdir(mgr_cg) else None
        if have is not None:
            err = _missing(asked, have, f"user@{os.getuid()}.service", root=True)
            if err:
                return fail_or_none(f"{what}: {err}")
        return CgroupPlan(
            "systemd", limits, container_id, required=bool(asked), bus=bus, available=have
        )
    base = delegated_base()
    if base is None:
        return fail_or_none(
            f"{what}: no systemd user manager is reachable and the current cgroup is not delegated to you; "
            "run `loginctl enable-linger $USER` and log in again (or run inside a Delegate=yes unit), "
            "or run with --cgroups=disabled to run without limits"
        )
    have = fs.controllers(base)
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
    kernel = fs.controllers(fs.CGROUP_ROOT)
    absent = [c for c in missing if c not in kernel]
    if absent:
        flags = flag_names([f for c in absent for f in need[c]])
        return (
            f"the kernel offers no {' '.join(absent)} cgroup controller (available: {' '.join(sorted(kernel))}); "
            f"drop {flags}, or run with --cgroups=disabled to run without limits"
        )
    flags = flag_names([f for c in missing for f in need[c]])
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
                fs.write(f"/proc/{pid}/oom_score_adj", str(self.limits.oom_score_adj))
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
        systemd.start_scope(self.bus, self.unit, pid, self.container_id)
        scope = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # systemd moves the pid when the scope's start job runs
            try:
                cg = fs.own_cgroup(pid)
            except FileNotFoundError:
                raise CgroupError(
                    "the container exited before it could be placed in its cgroup"
                ) from None
            if cg.endswith("/" + self.unit):
                scope = os.path.join(fs.CGROUP_ROOT, cg.lstrip("/"))
                break
            time.sleep(0.005)
        if scope is None:
            raise CgroupError(f"systemd did not move the container into {self.unit} within 10 s")
        self._place(scope, SCOPE_LEAF, pid)

    def _apply_cgroupfs(self, pid: int) -> None:
        base = self.base
        want = self._controllers_to_enable(base)
        enabled = set(fs.read(os.path.join(base, "cgroup.subtree_control")).split())
        if not want <= enabled and fs.read(os.path.join(base, "cgroup.procs")):
            # No internal processes: move what lives in the subtree's root into a sibling leaf.
            init = os.path.join(base, INIT_LEAF)
            os.makedirs(init, exist_ok=True)
            for p in fs.read(os.path.join(base, "cgroup.procs")).split():
                try:
                    fs.write(os.path.join(init, "cgroup.procs"), p)
                except ProcessLookupError:
                    pass
        self._place(base, f"rootless-{self.container_id}", pid)

    def _controllers_to_enable(self, parent: str) -> set[str]:
        return fs.controllers(parent) & set(CONTROLLERS)

    def _place(self, parent: str, leaf: str, pid: int) -> None:
        have = fs.controllers(parent)
        err = _missing(self.limits.explicit(), have, parent, root=self.manager == "systemd")
        if err:
            raise CgroupError(f"cannot enforce {flag_names(self.limits.explicit())}: {err}")
        self.path = os.path.join(parent, leaf)
        os.makedirs(self.path, exist_ok=True)
        fs.write(os.path.join(self.path, "cgroup.procs"), str(pid))
        want = self._controllers_to_enable(parent)
        enabled = set(fs.read(os.path.join(parent, "cgroup.subtree_control")).split())
        if want - enabled:
            fs.write(
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
                fs.write(fpath, value)
            except OSError as e:
                raise CgroupError(f"cannot write {value} to {fpath}: {e.strerror}") from None

    def cleanup(self) -> None:
        """Remove the leaf (and stop the scope). Safe to call more than once and after a failed apply."""
        if self.path:
            fs.rmdir(self.path)
        if self.unit and self.bus:
            try:
                systemd.stop_unit(self.bus, self.unit)
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


def remove(path: str | None, unit: str | None = None) -> None:
    """Clean up a container's cgroup from its saved state() (for `rm` in another process)."""
    CgroupPlan(
        "none", Limits(), "", path=path, unit=unit, bus=systemd.user_bus_address() if unit else None
    ).cleanup()
