"""`rootless stats`: CPU %, memory usage/limit, network and block I/O and pids of running containers.

Figures come from the container's cgroup (rootless.cgroups.read_stats; the cgroup is the one holding the
container's init, found from /proc/PID/cgroup) and from its network namespace (/proc/PID/net/dev).
Without a cgroup (cgroup v1, or --cgroups=disabled) the cgroup columns show "--". The table has podman's
columns; --format json gives the raw numbers (limits included) per container, see docs/cgroups.md.
"""

import json
import os
import time

import click


def _human(n: float | None) -> str:
    if n is None:
        return "--"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return str(n)


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _net_io(pid: int) -> tuple[int, int] | None:
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return None
    rx = tx = 0
    for line in lines:
        name, _, data = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = data.split()
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def _cgroup_dir(pid: int) -> str | None:
    from rootless import cgroups

    if not cgroups.is_unified():
        return None
    try:
        rel = cgroups.own_cgroup(pid)
    except (OSError, cgroups.CgroupError):
        return None
    path = os.path.join(cgroups.CGROUP_ROOT, rel.lstrip("/"))
    # Only a cgroup of the container's own (a leaf that rootless made), never the caller's session.
    base = os.path.basename(path)
    if base == "container" or base.startswith("rootless-"):
        return path
    return None


def sample(rec) -> dict:
    """One reading for a container record: raw numbers plus the cgroup path (None without one)."""
    from rootless import cgroups

    path = _cgroup_dir(rec.pid) if rec.pid else None
    st = cgroups.read_stats(path) if path else {}
    net = _net_io(rec.pid) if rec.pid else None
    return {
        "id": rec.id,
        "name": rec.name,
        "time": time.monotonic(),
        "cgroup": path,
        "cpu_usage_usec": st.get("cpu_usage_usec"),
        "mem_usage": st.get("memory_usage"),
        "mem_limit": st.get("memory_limit") if st.get("memory_limit") is not None else _mem_total(),
        "pids": st.get("pids_current"),
        "pids_limit": st.get("pids_limit"),
        "cpu_quota_usec": st.get("cpu_quota_usec"),
        "cpu_period_usec": st.get("cpu_period_usec"),
        "cpus": st["cpu_quota_usec"] / st["cpu_period_usec"]
        if st.get("cpu_quota_usec") and st.get("cpu_period_usec")
        else None,
        "cpu_weight": st.get("cpu_weight"),
        "mem_reservation": st.get("memory_low") or None,
        "oom_kills": st.get("oom_kills"),
        "net_input": net[0] if net else None,
        "net_output": net[1] if net else None,
        "block_input": st.get("io_read_bytes"),
        "block_output": st.get("io_write_bytes"),
    }


def _cpu_percent(now: dict, before: dict | None, started: float | None) -> float | None:
    if now["cpu_usage_usec"] is None:
        return None
    if before and before["cpu_usage_usec"] is not None and now["time"] > before["time"]:
        used = now["cpu_usage_usec"] - before["cpu_usage_usec"]
        return 100.0 * used / ((now["time"] - before["time"]) * 1e6)
    if started:
        elapsed = max(time.time() - started, 1e-3)
        return 100.0 * now["cpu_usage_usec"] / (elapsed * 1e6)
    return None


def _go_duration(usec: int) -> str:
    """Go's time.Duration.String() for a CPU time, as podman's CPU TIME column prints it."""
    if usec < 1000:
        return f"{usec}µs"
    if usec < 1_000_000:
        return f"{usec / 1000:g}ms"
    secs = usec / 1e6
    h, rest = divmod(secs, 3600)
    m, sec = divmod(rest, 60)
    out = f"{sec:.6f}".rstrip("0").rstrip(".") + "s"
    if m or h:
        out = f"{int(m)}m" + out
    if h:
        out = f"{int(h)}h" + out
    return out


def _row(s: dict) -> dict:
    pct = s.get("cpu_percent")
    avg = s.get("avg_cpu_percent")
    usec = s.get("cpu_usage_usec")
    mem = s["mem_usage"]
    mem_pct = 100.0 * mem / s["mem_limit"] if mem is not None and s["mem_limit"] else None
    return {
        "ID": s["id"][:12],
        "NAME": s["name"],
        "CPU %": "--" if pct is None else f"{pct:.2f}%",
        "MEM USAGE / LIMIT": "--" if mem is None else f"{_human(mem)} / {_human(s['mem_limit'])}",
        "MEM %": "--" if mem_pct is None else f"{mem_pct:.2f}%",
        "NET IO": "--"
        if s["net_input"] is None
        else f"{_human(s['net_input'])} / {_human(s['net_output'])}",
        "BLOCK IO": "--"
        if s["block_input"] is None
        else f"{_human(s['block_input'])} / {_human(s['block_output'])}",
        "PIDS": "--" if s["pids"] is None else str(s["pids"]),
        "CPU TIME": "--" if usec is None else _go_duration(usec),
        "AVG CPU %": "--" if avg is None else f"{avg:.2f}%",
    }


COLUMNS = (  # podman's, in its order
    "ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET IO",
    "BLOCK IO",
    "PIDS",
    "CPU TIME",
    "AVG CPU %",
)


def _table(rows: list[dict]) -> str:
    cols = list(COLUMNS)
    width = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols).rstrip()]
    for r in rows:
        lines.append("  ".join(r[c].ljust(width[c]) for c in cols).rstrip())
    return "\n".join(lines)


def _running(names: tuple[str, ...]):
    from rootless.errors import ContainerError
    from rootless.runtime import state

    if names:
        recs = [state.lookup(n) for n in names]
        for r in recs:
            if r.state != "running" or not r.pid or not os.path.exists(f"/proc/{r.pid}"):
                raise ContainerError(f"container {r.name} is not running: start it first")
        return recs
    return [
        r
        for r in state.list_records()
        if r.state == "running" and r.pid and os.path.exists(f"/proc/{r.pid}")
    ]


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one reading and exit.")
@click.option("--format", "fmt", default=None, help="json for machine-readable output.")
@click.option("-i", "--interval", default=1.0, type=float, help="Seconds between readings.")
@click.argument("containers", nargs=-1)
def stats(no_stream, fmt, interval, containers):
    """Display a live stream of container resource usage."""
    before: dict[str, dict] = {}
    while True:
        out = []
        for rec in _running(containers):
            s = sample(rec)
            s["cpu_percent"] = _cpu_percent(s, before.get(rec.id), rec.started)
            s["avg_cpu_percent"] = _cpu_percent(s, None, rec.started)
            before[rec.id] = s
            out.append(s)
        if fmt == "json":
            click.echo(json.dumps([{**s, **{"display": _row(s)}} for s in out], indent=2))
        elif fmt:
            for s in out:
                click.echo(fmt.format(**{k.replace(" ", "_"): v for k, v in s.items()}))
        else:
            if not no_stream:
                click.echo("\033[H\033[2J", nl=False)
            click.echo(_table([_row(s) for s in out]))
        if no_stream:
            return
        time.sleep(interval)
