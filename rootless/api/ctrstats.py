"""GET /containers/{id}/stats: Docker's stats JSON from rootless's readings (the container's cgroup
and network namespace, rootless.commands.stats.sample), one-shot, two readings a second apart (as
Docker's stream=false), or a stream that ends when the container stops."""

from __future__ import annotations

import os
import time

_INTERVAL = 1.0


def _system_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return int(sum(int(x) for x in fields) * 1e9 / os.sysconf("SC_CLK_TCK"))


def _reading(rec) -> dict:
    from rootless.commands.stats import sample

    running = rec.state in ("running", "stopping") and rec.pid
    s = sample(rec) if running else {}
    now = time.time()
    usage = (s.get("cpu_usage_usec") or 0) * 1000
    ncpu = os.cpu_count() or 1
    net = {}
    if s.get("net_input") is not None:
        net = {"eth0": {"rx_bytes": s["net_input"], "rx_packets": 0, "rx_errors": 0,
                        "rx_dropped": 0, "tx_bytes": s["net_output"], "tx_packets": 0,
                        "tx_errors": 0, "tx_dropped": 0}}  # fmt: skip
    blk = []
    if s.get("block_input") is not None:
        blk = [{"major": 0, "minor": 0, "op": "read", "value": s["block_input"]},
               {"major": 0, "minor": 0, "op": "write", "value": s["block_output"] or 0}]  # fmt: skip
    return {
        "read": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + f".{int((now % 1) * 1e9):09d}Z",
        "pids_stats": {
            "current": s.get("pids") or 0,
            **({"limit": s["pids_limit"]} if s.get("pids_limit") else {}),
        },  # fmt: skip
        "blkio_stats": {"io_service_bytes_recursive": blk or None},
        "num_procs": 0,
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": usage,
                "usage_in_kernelmode": 0,
                "usage_in_usermode": usage,
            },  # fmt: skip
            "system_cpu_usage": _system_ns(),
            "online_cpus": ncpu,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {
            "usage": s.get("mem_usage") or 0,
            "limit": s.get("mem_limit") or 0,
            "stats": {},
        }
        if s
        else {},  # fmt: skip
        "networks": net or None,
        "name": "/" + rec.name,
        "id": rec.id,
    }


_EMPTY_CPU = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
              "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}  # fmt: skip


def one(rec, one_shot: bool = False) -> dict:
    from rootless.runtime import manage

    first = _reading(rec)
    if one_shot or rec.state not in manage.ACTIVE:
        first["preread"] = "0001-01-01T00:00:00Z"
        first["precpu_stats"] = _EMPTY_CPU
        return first
    time.sleep(_INTERVAL)
    out = _reading(manage.get(rec.id))
    out["preread"], out["precpu_stats"] = first["read"], first["cpu_stats"]
    return out


def stream(rec):
    """A reading a second until the container is no longer running (or gone)."""
    from rootless.errors import RootlessError
    from rootless.runtime import manage

    before = None
    while True:
        try:
            rec = manage.get(rec.id)
        except RootlessError:
            return
        now = _reading(rec)
        now["preread"] = before["read"] if before else "0001-01-01T00:00:00Z"
        now["precpu_stats"] = before["cpu_stats"] if before else _EMPTY_CPU
        yield now
        if rec.state not in manage.ACTIVE:
            return
        before = now
        time.sleep(_INTERVAL)
