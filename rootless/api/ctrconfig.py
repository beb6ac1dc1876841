"""Docker's container configuration onto rootless's and back: the create body (`Config`,
`HostConfig`, `NetworkingConfig`) as the library's RunOptions, and a container record as Docker's
inspect JSON and `json` list entry.

A create field rootless has no counterpart for is a 400 naming it when it asks for something
(a zero value, as clients send for every field they do not set, is accepted), never dropped
silently; fields that only steer the client's side (Attach*, StdinOnce) or are only recorded by
Docker (LogConfig) are accepted, and the few that rootless ignores (StopSignal, StopTimeout,
MacAddress, Domainname, ShmSize, MemorySwappiness) are logged once.
"""

from __future__ import annotations

import json
import os

from rootless.api.protocol import ApiError, once

# Config fields accepted whatever their value (the client's side, or recorded only)
_CONFIG_IGNORED = {"AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce", "Domainname",
                   "ExposedPorts", "Image", "Cmd", "Entrypoint", "Env", "Labels", "WorkingDir",
                   "User", "Tty", "OpenStdin", "Hostname", "Volumes", "NetworkDisabled",
                   "StopSignal", "StopTimeout", "ArgsEscaped", "MacAddress", "OnBuild", "Shell"}  # fmt: skip
_HOST_HANDLED = {"Binds", "Mounts", "Tmpfs", "PortBindings", "PublishAllPorts", "NetworkMode",
                 "RestartPolicy", "AutoRemove", "Memory", "MemorySwap", "MemoryReservation",
                 "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "CpusetCpus", "PidsLimit",
                 "OomScoreAdj", "Privileged", "ReadonlyRootfs", "CapAdd", "CapDrop", "SecurityOpt",
                 "Init", "Dns", "DnsSearch", "DnsOptions", "ExtraHosts", "VolumesFrom", "LogConfig",
                 "ConsoleSize", "MaskedPaths", "ReadonlyPaths", "Isolation", "CgroupnsMode",
                 "IpcMode", "PidMode", "UTSMode", "UsernsMode", "ShmSize", "Cgroup", "Runtime",
                 "Links", "OomKillDisable", "MemorySwappiness", "KernelMemory", "Annotations",
                 "Sysctls"}  # fmt: skip
_NEUTRAL = (None, "", 0, False, [], {}, "default", "private", "host-default")


def _unsupported(where: str, body: dict, handled: set) -> None:
    for key, value in body.items():
        if key not in handled and value not in _NEUTRAL:
            raise ApiError(400, f"{where}.{key} is not supported by rootless (see docs/api.md)")


def _healthcheck(hc: dict) -> dict:
    """Config.Healthcheck as the --health-* flags (durations in ns; 0: the default)."""
    test = hc.get("Test") or []
    if not test:
        return {}
    if test == ["NONE"]:
        return {"no_healthcheck": True}
    out = {"health_cmd": json.dumps(test)}
    for key, field in (("Interval", "health_interval"), ("Timeout", "health_timeout"),
                       ("StartPeriod", "health_start_period")):  # fmt: skip
        if hc.get(key):
            out[field] = f"{int(hc[key])}ns"
    if hc.get("Retries"):
        out["health_retries"] = int(hc["Retries"])
    return out


def run_options(body: dict, name: str | None):
    """RunOptions for a POST /containers/create body."""
    from rootless.config import select_driver
    from rootless.runtime import runflags
    from rootless.runtime.spec import RunOptions

    cfg = body
    host = body.get("HostConfig") or {}
    _unsupported("Config", {k: v for k, v in cfg.items() if k not in ("HostConfig",
                 "NetworkingConfig", "Healthcheck")}, _CONFIG_IGNORED)  # fmt: skip
    _unsupported("HostConfig", host, _HOST_HANDLED)
    for key in ("UsernsMode", "Links", "OomKillDisable"):
        if host.get(key) not in _NEUTRAL:
            raise ApiError(400, f"HostConfig.{key} is not supported by rootless (see docs/api.md)")
    image = cfg.get("Image")
    if not image:
        raise ApiError(400, "Config.Image is required")
    entry = cfg.get("Entrypoint")
    if isinstance(entry, str):
        entry = [entry]
    network, networks, aliases = _networks(host, body.get("NetworkingConfig") or {})
    if cfg.get("NetworkDisabled"):
        network, networks, aliases = "none", [], []
    for key, default in (("StopSignal", ("SIGTERM", "TERM", "15")), ("StopTimeout", ()),
                         ("MacAddress", ()), ("Domainname", ())):  # fmt: skip
        if cfg.get(key) not in (None, "", *default):
            once(f"Config.{key} is ignored by rootless (see docs/api.md)")
    return RunOptions(
        image=image,
        command=list(cfg.get("Cmd") or []),
        entrypoint=None if entry is None else json.dumps([e for e in entry if e != ""]),
        env=[e for e in cfg.get("Env") or [] if "=" in e],  # NAME alone: the client resolves it
        workdir=cfg.get("WorkingDir") or None,
        user=cfg.get("User") or None,
        hostname=cfg.get("Hostname") or None,
        name=name,
        tty=bool(cfg.get("Tty")),
        interactive=bool(cfg.get("OpenStdin")),
        labels={str(k): str(v) for k, v in (cfg.get("Labels") or {}).items()},
        volumes=list(host.get("Binds") or []) + _anonymous(cfg, host),
        mounts=[m for m in (_mount(m) for m in host.get("Mounts") or []) if m],
        tmpfs=[f"{k}:{v}" if v else k for k, v in (host.get("Tmpfs") or {}).items()]
        + [m["Target"] for m in host.get("Mounts") or [] if m.get("Type") == "tmpfs"],
        publish=_publish(host.get("PortBindings") or {}),
        publish_all=bool(host.get("PublishAllPorts")),
        network=network,
        networks=networks,
        network_aliases=aliases,
        restart=_restart(host.get("RestartPolicy") or {}),
        rm=bool(host.get("AutoRemove")),
        limits=_limits(host),
        privileged=bool(host.get("Privileged")),
        read_only=bool(host.get("ReadonlyRootfs")),
        ipc=host.get("IpcMode") or "",
        pid=host.get("PidMode") or "",
        uts=host.get("UTSMode") or "",
        cgroupns=host.get("CgroupnsMode") or "",
        **_healthcheck(cfg.get("Healthcheck") or {}),
        sysctls=runflags.sysctls(f"{k}={v}" for k, v in (host.get("Sysctls") or {}).items()),
        cap_add=list(host.get("CapAdd") or []),
        cap_drop=list(host.get("CapDrop") or []),
        security_opts=list(host.get("SecurityOpt") or []),
        init=bool(host.get("Init")),
        dns=list(host.get("Dns") or []),
        dns_search=list(host.get("DnsSearch") or []),
        dns_options=list(host.get("DnsOptions") or []),
        add_hosts=list(host.get("ExtraHosts") or []),
        volumes_from=list(host.get("VolumesFrom") or []),
        storage_driver=select_driver(None)[0],
    )


def _anonymous(cfg: dict, host: dict) -> list[str]:
    """Config.Volumes as anonymous volumes, but for the paths a bind, mount or tmpfs takes
    (docker-compose lists every volume's path there)."""
    taken = {b.split(":")[1] for b in host.get("Binds") or [] if b.count(":") >= 1}
    taken |= {m.get("Target") for m in host.get("Mounts") or []}
    taken |= set(host.get("Tmpfs") or {})
    taken = {os.path.normpath(t) for t in taken if t}
    return [v for v in cfg.get("Volumes") or {} if os.path.normpath(v) not in taken]


def _mount(m: dict) -> str | None:
    kind = m.get("Type") or "volume"
    if kind == "tmpfs":
        return None  # as --tmpfs (run_options)
    if kind not in ("bind", "volume"):
        raise ApiError(400, f"HostConfig.Mounts: type {kind!r} is not supported by rootless")
    parts = [f"type={kind}", f"target={m.get('Target', '')}"]
    if m.get("Source"):
        parts.append(f"source={m['Source']}")
    if m.get("ReadOnly"):
        parts.append("ro")
    if kind == "volume" and (m.get("VolumeOptions") or {}).get("NoCopy"):
        parts.append("nocopy")
    return ",".join(parts)


def _publish(bindings: dict) -> list[str]:
    out = []
    for port, hosts in bindings.items():
        for h in hosts or [{}]:
            ip, hport = (h or {}).get("HostIp") or "", (h or {}).get("HostPort") or ""
            out.append(f"{ip}:{hport}:{port}" if ip else (f"{hport}:{port}" if hport else port))
    return out


def _networks(host: dict, netcfg: dict) -> tuple[str, list[str], list[str]]:
    mode = host.get("NetworkMode") or "default"
    endpoints = netcfg.get("EndpointsConfig") or {}
    aliases = [a for ep in endpoints.values() for a in (ep or {}).get("Aliases") or []]
    if mode in ("default", "bridge"):
        return "slirp4netns", [], []
    if mode in ("host", "none", "slirp4netns", "pasta") or mode.startswith("container:"):
        return mode, [], []
    others = [n for n in endpoints if n != mode]
    return mode, others, aliases


def _restart(policy: dict) -> str:
    name = policy.get("Name") or ""
    if name in ("", "no"):
        return ""
    count = policy.get("MaximumRetryCount") or 0
    return f"{name}:{count}" if name == "on-failure" and count else name


def _limits(host: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    if host.get("Memory"):
        out["memory"] = str(host["Memory"])
    if host.get("MemorySwap") and host.get("Memory"):
        out["memory_swap"] = str(host["MemorySwap"])
    if host.get("MemoryReservation"):
        out["memory_reservation"] = str(host["MemoryReservation"])
    if host.get("NanoCpus"):
        out["cpus"] = str(host["NanoCpus"] / 1e9)
    elif host.get("CpuQuota") and host["CpuQuota"] > 0:
        out["cpus"] = str(host["CpuQuota"] / (host.get("CpuPeriod") or 100000))
    if host.get("CpuShares"):
        out["cpu_shares"] = str(host["CpuShares"])
    if host.get("CpusetCpus"):
        out["cpuset_cpus"] = host["CpusetCpus"]
    if host.get("PidsLimit"):
        out["pids_limit"] = str(host["PidsLimit"] if host["PidsLimit"] > 0 else -1)
    if host.get("OomScoreAdj"):
        out["oom_score_adj"] = str(host["OomScoreAdj"])
    for key in ("ShmSize", "MemorySwappiness", "KernelMemory"):
        if host.get(key) not in (None, 0, -1):
            once(f"HostConfig.{key} is ignored by rootless")
    return out


# --- a record as Docker shows it --------------------------------------------------------------------


def docker_state(rec) -> str:
    if rec.restarting:
        return "restarting"
    return {"stopping": "running", "initialized": "created"}.get(rec.state, rec.state)


def port_list(rec) -> list[dict]:
    from rootless.runtime.inspect import ports

    return [{"IP": p["host_ip"] or "0.0.0.0", "PrivatePort": int(p["container_port"]),
             "PublicPort": int(p["host_port"]), "Type": p["protocol"]} for p in ports(rec)]  # fmt: skip


def _port_map(rec) -> dict:
    from rootless.runtime.inspect import ports

    out: dict = {}
    for p in ports(rec):
        out.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p["host_ip"] or "0.0.0.0", "HostPort": str(p["host_port"])}
        )
    return out


def _docker_networks(rec) -> dict:
    """NetworkSettings.Networks: a rootless network's entries, else one named as NetworkMode
    shows it ("bridge" for slirp4netns and pasta, as Docker's default network)."""
    net = rec.net or {}
    if net.get("mode") == "bridge":
        from rootless.network.attach import inspect_networks

        nets = inspect_networks(rec).get("Networks")
        if nets:
            return nets
    configured = _configured_networks(rec)
    if configured:
        return configured
    name = _mode(rec)
    name = "bridge" if name == "default" else name
    return {name: {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": name,
                   "EndpointID": "", "Gateway": net.get("gateway") or "",
                   "IPAddress": net.get("address") or "", "IPPrefixLen": 0, "IPv6Gateway": "",
                   "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "",
                   "DriverOpts": None}}  # fmt: skip


def _configured_networks(rec) -> dict:
    """A container on rootless networks that does not run: the networks it will join (with its
    short id among the aliases, as Docker lists it: docker-compose checks that before it starts a
    container it created)."""
    if rec.run is None:
        return {}
    from rootless.errors import NetworkError
    from rootless.network import attach

    try:
        mode, eps = attach.configured(rec.run)
    except NetworkError:
        return {}
    if mode != "bridge":
        return {}
    return {e.network: {"IPAMConfig": None, "Links": None, "NetworkID": e.network,
                        "Aliases": [*e.aliases, *rec.run.network_aliases, rec.id[:12]],
                        "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                        "MacAddress": e.mac or "", "DriverOpts": None}
            for e in eps}  # fmt: skip


# The log is podman's k8s-file, but the logs endpoint serves it as Docker's json-file driver does
# (clients such as the docker SDK's containers.run read logs only from a driver they know)
_LOG_CONFIG = {"Type": "json-file", "Config": {}}


def inspect(rec) -> dict:
    """Docker's GET /containers/{id}/json for a record."""
    from rootless.runtime import inspect as ri
    from rootless.runtime.listing import labels

    base = ri.inspect_data(rec)
    run = rec.run
    running = rec.state in ("running", "stopping")
    st = base["State"]
    state = {"Status": docker_state(rec), "Running": running, "Paused": False,
             "Restarting": rec.restarting, "OOMKilled": False, "Dead": False,
             "Pid": st["Pid"], "ExitCode": st["ExitCode"], "Error": "",
             "StartedAt": _utc(rec.started), "FinishedAt": _utc(rec.finished)}  # fmt: skip
    if "Health" in st:
        state["Health"] = st["Health"]
    cfg = base["Config"]
    image_cfg = _image_config(rec.image_id)
    config = {"Hostname": cfg["Hostname"], "Domainname": "", "User": cfg["User"],
              "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
              "ExposedPorts": image_cfg.get("ExposedPorts") or None, "Tty": cfg["Tty"],
              "OpenStdin": cfg["OpenStdin"], "StdinOnce": False, "Env": cfg["Env"],
              "Cmd": run.command if run and run.command else image_cfg.get("Cmd"),
              "Image": rec.image, "Volumes": image_cfg.get("Volumes"),
              "WorkingDir": cfg["WorkingDir"],
              "Entrypoint": (json.loads(run.entrypoint) if run.entrypoint.startswith("[")
                             else [run.entrypoint]) if run and run.entrypoint is not None
              else image_cfg.get("Entrypoint"),
              "OnBuild": None, "Labels": labels(rec), "StopSignal": "SIGTERM"}  # fmt: skip
    hc = base["HostConfig"]
    limits = ri.resource_limits(rec)
    host = {"Binds": list(run.volumes) if run else [], "NetworkMode": _mode(rec),
            "PortBindings": _bindings(run), "RestartPolicy": hc["RestartPolicy"],
            "AutoRemove": rec.rm, "VolumesFrom": list(run.volumes_from) if run else [],
            "CapAdd": hc["CapAdd"], "CapDrop": hc["CapDrop"], "Dns": list(run.dns) if run else [],
            "DnsOptions": list(run.dns_options) if run else [],
            "DnsSearch": list(run.dns_search) if run else [],
            "ExtraHosts": list(run.add_hosts) if run else [], "Privileged": hc["Privileged"],
            "PublishAllPorts": bool(run and run.publish_all),
            "ReadonlyRootfs": hc["ReadonlyRootfs"], "SecurityOpt": hc["SecurityOpt"],
            "Init": hc["Init"], "LogConfig": _LOG_CONFIG,
            "Sysctls": dict(run.sysctls) if run else {},
            "Tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in (run.tmpfs if run else [])},
            "Memory": limits["Memory"], "MemorySwap": limits["MemorySwap"],
            "MemoryReservation": limits["MemoryReservation"], "NanoCpus": limits["NanoCpus"],
            "CpuShares": limits["CpuShares"], "CpusetCpus": limits["CpusetCpus"],
            "PidsLimit": limits["PidsLimit"] or None, "OomScoreAdj": limits["OomScoreAdj"],
            "Mounts": []}  # fmt: skip
    ns = base["NetworkSettings"]
    ports = {f"{p}": None for p in (image_cfg.get("ExposedPorts") or {})}
    ports.update(_port_map(rec))
    return {
        "Id": rec.id,
        "Created": _utc(rec.created),
        "Path": base["Path"],
        "Args": base["Args"],
        "State": state,
        "Image": "sha256:" + rec.image_id,
        "ResolvConfPath": os.path.join(rec.run_dir, "resolv.conf"),
        "HostnamePath": os.path.join(rec.run_dir, "hostname"),
        "HostsPath": os.path.join(rec.run_dir, "hosts"),
        "LogPath": rec.log_path,
        "Name": "/" + rec.name,
        "RestartCount": rec.restart_count,
        "Driver": rec.storage_driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": host,
        "GraphDriver": {"Name": rec.storage_driver, "Data": {}},
        "Mounts": base["Mounts"],
        "Config": config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "HairpinMode": False,
            "SandboxKey": ns["SandboxKey"],
            "Ports": ports,
            "IPAddress": ns.get("IPAddress") or "",
            "Gateway": ns.get("Gateway") or "",
            "IPPrefixLen": ns.get("IPPrefixLen") or 0,
            "MacAddress": ns.get("MacAddress") or "",
            "Networks": _docker_networks(rec),
        },
    }


def summary(rec) -> dict:
    """An entry of GET /containers/json."""
    from rootless.runtime.inspect import status_text
    from rootless.runtime.listing import labels

    return {
        "Id": rec.id,
        "Names": ["/" + rec.name],
        "Image": rec.image,
        "ImageID": "sha256:" + rec.image_id,
        "Command": " ".join(rec.command),
        "Created": int(rec.created),
        "Ports": port_list(rec),
        "Labels": labels(rec),
        "State": docker_state(rec),
        "Status": status_text(rec),
        "HostConfig": {"NetworkMode": _mode(rec)},
        "NetworkSettings": {"Networks": _docker_networks(rec)},
        "Mounts": [],
    }


def _mode(rec) -> str:
    net = rec.run.network if rec.run else rec.network
    return "default" if net in ("slirp4netns", "pasta", "") else net


def _bindings(run) -> dict:
    out: dict = {}
    for p in run.publish if run else []:
        parts = p.split(":")
        ctr = parts[-1] if "/" in parts[-1] else parts[-1] + "/tcp"
        ip = parts[0] if len(parts) == 3 else ""
        hport = parts[-2] if len(parts) >= 2 else ""
        out.setdefault(ctr, []).append({"HostIp": ip, "HostPort": hport})
    return out


def _image_config(image_id: str) -> dict:
    from rootless.image.store import Store

    img = Store.open().get(image_id) if image_id else None
    try:
        return (img.config.get("config") or {}) if img else {}
    except (OSError, ValueError):
        return {}


def _utc(ts: float | None) -> str:
    import time

    if not ts:
        return "0001-01-01T00:00:00Z"
    whole = int(ts)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts - whole) * 1e9):09d}Z"
    )
