"""Resource limits: cgroup v2 through systemd delegation, a delegated cgroupfs subtree, or nothing.

Owns the podman-style limit flags (`Limits`, rootless.cgroups.limits), the decision of how to enforce
them (`plan`) and placing the container's init process in a leaf cgroup with the limits written
(`CgroupPlan.apply`), removing it (`CgroupPlan.cleanup`) (rootless.cgroups.manager), the cgroup
filesystem and a container cgroup's usage for `rootless stats` (`read_stats`, rootless.cgroups.fs),
and the user's systemd over D-Bus (rootless.cgroups.systemd). This package re-exports their API.

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

from rootless.cgroups.fs import CGROUP_ROOT, is_unified, own_cgroup, read_stats
from rootless.cgroups.limits import DEFAULT_PIDS_LIMIT, FLAGS, CgroupError, Limits, parse_bytes
from rootless.cgroups.manager import MANAGERS, CgroupPlan, plan, remove
from rootless.cgroups.systemd import systemd_call, user_bus_address

__all__ = [
    "CGROUP_ROOT",
    "DEFAULT_PIDS_LIMIT",
    "FLAGS",
    "MANAGERS",
    "CgroupError",
    "CgroupPlan",
    "Limits",
    "is_unified",
    "own_cgroup",
    "parse_bytes",
    "plan",
    "read_stats",
    "remove",
    "systemd_call",
    "user_bus_address",
]
