"""podman-like `inspect` JSON for containers (the hook rootless.commands.inspect looks for), and the
shared bits `ps` shows: status text, ports, times."""

import time

from rootless.errors import ContainerError


def iso(ts: float | None) -> str:
    if not ts:
        return "0001-01-01T00:00:00Z"
    from rootless.runtime.logs import timestamp

    return timestamp(int(ts * 1e9))


def human_duration(seconds: float) -> str:
    """go-units HumanDuration, as podman prints it."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def status_text(rec) -> str:
    now = time.time()
    if rec.state == "running":
        return f"Up {human_duration(now - (rec.started or now))}"
    if rec.state == "exited":
        code = "unknown" if rec.exit_code is None else rec.exit_code
        return f"Exited ({code}) {human_duration(now - (rec.finished or now))} ago"
    return rec.state.capitalize()  # Created, Stopping


def ports(rec) -> list[dict]:
    net = rec.options.get("net") or {}
    out = []
    for host_ip, host_port, ctr_port, proto in net.get("ports") or []:
        out.append(
            {
                "host_ip": host_ip or "",
                "container_port": ctr_port,
                "host_port": host_port,
                "range": 1,
                "protocol": proto,
            }
        )
    return out


def ports_text(rec) -> str:
    return ", ".join(
        f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p['protocol']}"
        for p in ports(rec)
    )


LIMIT_DEFAULTS = {  # podman's HostConfig names for the resource limits; 0 or "" = not set
    "Memory": 0,
    "MemorySwap": 0,
    "MemoryReservation": 0,
    "NanoCpus": 0,
    "CpuShares": 0,
    "CpuWeight": 0,
    "CpusetCpus": "",
    "PidsLimit": 0,
    "OomScoreAdj": 0,
}


def resource_limits(rec) -> dict:
    """The container's limits as inspect's HostConfig (and `ps --format`) names them."""
    return {**LIMIT_DEFAULTS, **(rec.options.get("limits") or {})}


def inspect_data(rec) -> dict:
    o = rec.options
    run = o.get("run") or {}
    proc = o.get("process") or {}
    pids = o.get("pids") or {}
    running = rec.state in ("running", "stopping")
    net = o.get("net") or {}
    port_map: dict = {}
    for p in ports(rec):
        port_map.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])}
        )
    mounts = []
    for m in o.get("mounts") or []:
        if not isinstance(m, dict):
            continue
        mounts.append(
            {
                "Type": m.get("kind", "bind"),
                "Source": m.get("source", ""),
                "Destination": m.get("target", ""),
                "Driver": "",
                "Mode": "",
                "Options": [x for x in (m.get("options") or "").split(",") if x],
                "RW": not m.get("readonly", False),
                "Propagation": "rprivate" if m.get("kind") == "bind" else "",
            }
        )
    limits = resource_limits(rec)
    env = [f"{k}={v}" for k, v in (proc.get("env") or {}).items()]
    return {
        "Id": rec.id,
        "Created": iso(rec.created),
        "Path": (rec.command or [""])[0],
        "Args": rec.command[1:],
        "State": {
            "OciVersion": "1.0.2",
            "Status": rec.state,
            "Running": running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": rec.pid if running else 0,
            "ConmonPid": (pids.get("monitor") or [0])[0] if running else 0,
            "ExitCode": -1
            if rec.exit_code is None and rec.state == "exited"
            else (rec.exit_code or 0),
            "Error": "",
            "StartedAt": iso(rec.started),
            "FinishedAt": iso(rec.finished),
        },
        "Image": rec.image_id,
        "ImageName": rec.image,
        "Rootfs": "",
        "LogPath": rec.log_path,
        "LogTag": "",
        "Name": rec.name,
        "RestartCount": 0,
        "Driver": rec.storage_driver,
        "MountLabel": "",
        "ProcessLabel": "",
        "Mounts": mounts,
        "Config": {
            "Hostname": o.get("hostname", ""),
            "User": proc.get("user", ""),
            "Env": env,
            "Cmd": rec.command,
            "Image": rec.image,
            "WorkingDir": proc.get("cwd", "/"),
            "Entrypoint": run.get("entrypoint") or "",
            "StopSignal": "SIGTERM",
            "Tty": bool(run.get("tty")),
            "OpenStdin": bool(run.get("interactive")),
            "CreateCommand": None,
        },
        "NetworkSettings": {
            "IPAddress": net.get("address") or "",
            "Gateway": net.get("gateway") or "",
            "Ports": port_map,
            "SandboxKey": f"/proc/{rec.pid}/ns/net" if running and rec.pid else "",
        },
        "HostConfig": {
            "NetworkMode": run.get("network") or o.get("network", ""),
            "AutoRemove": rec.rm,
            "Privileged": bool(run.get("privileged")),
            "ReadonlyRootfs": bool(run.get("read_only")),
            "CapAdd": run.get("cap_add") or [],
            "CapDrop": run.get("cap_drop") or [],
            "SecurityOpt": run.get("security_opts") or [],
            "Init": bool(run.get("init")),
            **limits,
        },
    }


def inspect_container(name: str) -> dict | None:
    """The inspect JSON of the container with this name, id or id prefix; None if there is none."""
    from rootless.runtime import manage

    try:
        rec = manage.get(name)
    except ContainerError:
        return None
    return inspect_data(rec)
