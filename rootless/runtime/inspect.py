"""podman-like `inspect` JSON for containers (the hook rootless.commands.inspect looks for), and the
shared bits `ps` shows: status text, ports, times."""

import time

from rootless.errors import ContainerError
from rootless.runtime import runflags, ulimits


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
        from rootless.runtime import health

        hc = health.state(rec)
        return f"Up {human_duration(now - (rec.started or now))}" + (
            f" ({hc['Status']})" if hc else ""
        )
    if rec.state == "exited":
        code = "unknown" if rec.exit_code is None else rec.exit_code
        return f"Exited ({code}) {human_duration(now - (rec.finished or now))} ago"
    return rec.state.capitalize()  # Created, Stopping


def ports(rec) -> list[dict]:
    net = rec.net or {}
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
    return {**LIMIT_DEFAULTS, **(rec.limits or {})}


def _mounts(rec) -> list[dict]:
    return [
        {
            "Type": "volume" if m.get("volume") else m.get("kind", "bind"),
            **({"Name": m["volume"]} if m.get("volume") else {}),
            "Source": m.get("source", ""),
            "Destination": m.get("target", ""),
            "Driver": "local" if m.get("volume") else "",
            "Mode": "",
            "Options": [x for x in (m.get("options") or "").split(",") if x],
            "RW": not m.get("readonly", False),
            "Propagation": "rprivate" if m.get("kind") == "bind" else "",
        }
        for m in rec.mounts
    ]


def _state(rec) -> dict:
    from rootless.runtime import health

    running = rec.state in ("running", "stopping")
    monitor = rec.pid_of("monitor")
    return {
        "OciVersion": "1.0.2",
        "Status": rec.state,
        "Running": running,
        "Paused": False,
        "Restarting": rec.restarting,
        "OOMKilled": False,
        "Dead": False,
        "Pid": rec.pid if running else 0,
        "ConmonPid": monitor[0] if running and monitor else 0,
        "ExitCode": -1 if rec.exit_code is None and rec.state == "exited" else (rec.exit_code or 0),
        "Error": "",
        "StartedAt": iso(rec.started),
        "FinishedAt": iso(rec.finished),
        **({"Healthcheck": hc, "Health": hc} if (hc := health.state(rec)) else {}),
    }


def _config(rec, run) -> dict:
    proc = rec.process
    return {
        "Hostname": rec.hostname,
        "User": proc.user if proc else "",
        "Env": [f"{k}={v}" for k, v in (proc.env if proc else {}).items()],
        "Cmd": rec.command,
        "Image": rec.image,
        "WorkingDir": proc.cwd if proc else "/",
        "Entrypoint": (run.entrypoint if run else None) or "",
        "StopSignal": runflags.stop_signal(run),  # a number, as podman's
        "StopTimeout": runflags.stop_timeout(run),
        **({"Healthcheck": run.healthcheck} if run and run.healthcheck else {}),
        "Timeout": run.timeout if run else 0,
        "Tty": bool(run and run.tty),
        "OpenStdin": bool(run and run.interactive),
        "CreateCommand": None,
        "Labels": dict(run.labels) if run and run.labels else None,
        "Annotations": annotations(rec, run),
    }


def annotations(rec, run) -> dict:
    """podman's default annotations of a container, then the --annotation ones."""

    def flag(on) -> str:
        return "TRUE" if on else "FALSE"

    out = {
        "io.kubernetes.cri-o.TTY": "true" if run and run.tty else "false",
        "io.podman.annotations.autoremove": flag(rec.rm),
        "io.podman.annotations.init": flag(run and run.init),
        "io.podman.annotations.privileged": flag(run and run.privileged),
        "io.podman.annotations.publish-all": flag(run and run.publish_all),
    }
    return {**out, **(run.annotations if run else {})}


def _log_config(rec, run) -> dict:
    opts = run.log_opts if run else {}
    size = runflags.log_size(opts["max-size"]) if opts.get("max-size") else 0
    return {"Type": run.log_driver if run else "k8s-file", "Config": None, "Path": rec.log_path,
            "Tag": "", "Size": runflags.human_size(size)}  # fmt: skip


def _host_config(rec, run) -> dict:
    return {
        "LogConfig": _log_config(rec, run),
        "NetworkMode": (run.network if run else "") or rec.network,
        "AutoRemove": rec.rm,
        "Privileged": bool(run and run.privileged),
        "ReadonlyRootfs": bool(run and run.read_only),
        "CapAdd": list(run.cap_add) if run else [],
        "CapDrop": list(run.cap_drop) if run else [],
        "SecurityOpt": list(run.security_opts) if run else [],
        "Init": bool(run and run.init),
        "RestartPolicy": _restart_policy(run),
        **_userns(run),
        **resource_limits(rec),
        "Ulimits": ulimits.inspect(run.ulimits) if run else [],
        "ShmSize": _shm_size(run),
        "GroupAdd": list(run.group_add) if run else [],
    }


def _shm_size(run) -> int:
    from rootless.runtime.rootfs import SHM_SIZE

    size = runflags.shm_size(run.shm_size) if run else None
    return SHM_SIZE if size is None else size


def _userns(run) -> dict:
    """podman's UsernsMode ("private" for a nested namespace, "" for the default) and IDMappings
    (its maps, "container:host:size" with host ids of rootless's namespace; null by default)."""
    from rootless.runtime import usermode

    if run is None or not usermode.wanted(run):
        return {"UsernsMode": "", "IDMappings": None}
    try:
        m = usermode.resolve(run)
    except Exception:  # noqa: BLE001 - the subordinate ids changed since: show what was asked
        m = None
    if m is None:
        return {"UsernsMode": "private", "IDMappings": None}
    return {"UsernsMode": "private",
            "IDMappings": {"UidMap": m.map_strings("uid"), "GidMap": m.map_strings("gid")}}  # fmt: skip


def _restart_policy(run) -> dict:
    from rootless.runtime import restart

    name, retries = restart.parse(run.restart if run else "")
    return {"Name": "" if name == "no" and not (run and run.restart) else name,
            "MaximumRetryCount": retries}  # fmt: skip


def inspect_data(rec) -> dict:
    run = rec.run
    running = rec.state in ("running", "stopping")
    net = rec.net or {}
    port_map: dict = {}
    for p in ports(rec):
        port_map.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])}
        )
    return {
        "Id": rec.id,
        "Created": iso(rec.created),
        "Path": (rec.command or [""])[0],
        "Args": rec.command[1:],
        "State": _state(rec),
        "Image": rec.image_id,
        "ImageName": rec.image,
        "Rootfs": "",
        "LogPath": rec.log_path,
        "LogTag": "",
        "PidFile": (run.pidfile if run else None) or "",
        "Name": rec.name,
        "RestartCount": rec.restart_count,
        "Driver": rec.storage_driver,
        "MountLabel": "",
        "ProcessLabel": "",
        "Mounts": _mounts(rec),
        "Dependencies": list(run.requires) if run else [],
        "Config": _config(rec, run),
        "NetworkSettings": {
            "IPAddress": net.get("address") or "",
            "Gateway": net.get("gateway") or "",
            "Ports": port_map,
            "SandboxKey": f"/proc/{rec.pid}/ns/net" if running and rec.pid else "",
            **_networks(rec),
        },
        "HostConfig": _host_config(rec, run),
    }


def _networks(rec) -> dict:
    """Networks (and the first address) of a container on user-defined networks (netdns)."""
    if not rec.net or rec.net.get("mode") != "bridge":
        return {}
    from rootless.network.attach import inspect_networks

    out = inspect_networks(rec)
    first = next(iter(out["Networks"].values()), None)
    if first:
        out.update(IPAddress=first["IPAddress"], Gateway=first["Gateway"],
                   IPPrefixLen=first["IPPrefixLen"], MacAddress=first["MacAddress"])  # fmt: skip
    return out


def inspect_container(name: str) -> dict | None:
    """The inspect JSON of the container with this name, id or id prefix; None if there is none."""
    from rootless.runtime import manage

    try:
        rec = manage.get(name)
    except ContainerError:
        return None
    return inspect_data(rec)
