"""The cgroup v2 filesystem: reading and writing cgroup files, where a process is, which controllers a
cgroup offers, removing a leaf, and a container cgroup's usage for `rootless stats` (``read_stats``).
"""

from __future__ import annotations

import errno
import logging
import os
import time

from rootless.cgroups.limits import CgroupError

log = logging.getLogger("rootless.cgroups")

CGROUP_ROOT = "/sys/fs/cgroup"


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def write(path: str, value: str) -> None:
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
    for line in read(f"/proc/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise CgroupError("this process is in no cgroup v2 hierarchy: resource limits need cgroup v2")


def controllers(cgdir: str) -> set[str]:
    """The controllers a cgroup offers its children (none if it cannot be read)."""
    try:
        return set(read(os.path.join(cgdir, "cgroup.controllers")).split())
    except OSError:
        return set()


def rmdir(path: str) -> None:
    """Remove a leaf cgroup, waiting (up to 5 s) for its last process to finish exiting."""
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


def _kv(path: str) -> dict[str, int]:
    out = {}
    try:
        for line in read(path).splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
    except OSError:
        pass
    return out


def _num(path: str) -> int | None:
    """An integer cgroup file; None for "max" or when the file does not exist."""
    try:
        v = read(path)
    except OSError:
        return None
    return None if v == "max" else int(v.split()[0])


def read_stats(path: str) -> dict:
    """Usage and limits of a container's cgroup (None = unlimited or not available).

    Keys: cpu_usage_usec, cpu_user_usec, cpu_system_usec, cpu_nr_periods, cpu_nr_throttled, cpu_quota_usec,
    cpu_period_usec, cpu_weight, memory_usage, memory_limit, memory_swap_usage, memory_swap_limit,
    memory_low, oom_kills, pids_current, pids_limit, io_read_bytes, io_write_bytes, cpuset_cpus.
    """
    j = lambda name: os.path.join(path, name)  # noqa: E731
    cpu = _kv(j("cpu.stat"))
    quota, period = None, None
    try:
        q, p = read(j("cpu.max")).split()
        quota, period = (None if q == "max" else int(q)), int(p)
    except (OSError, ValueError):
        pass
    io_r = io_w = 0
    try:
        for line in read(j("io.stat")).splitlines():
            for field in line.split()[1:]:
                k, _, v = field.partition("=")
                if k == "rbytes":
                    io_r += int(v)
                elif k == "wbytes":
                    io_w += int(v)
    except OSError:
        pass
    try:
        cpuset = read(j("cpuset.cpus")) or None
    except OSError:
        cpuset = None
    return {
        "cpu_usage_usec": cpu.get("usage_usec", 0),
        "cpu_user_usec": cpu.get("user_usec", 0),
        "cpu_system_usec": cpu.get("system_usec", 0),
        "cpu_nr_periods": cpu.get("nr_periods", 0),
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
