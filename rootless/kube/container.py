"""One container as a Kubernetes v1 Container (and the volumes it mounts), for `kube generate`.

From the container's record as podman 4.3 writes it: command and args (the entrypoint, then the
command), the environment that is neither podman's default nor the image's, ports, resources from
--memory and --cpus (Kubernetes quantities: 64Mi, 500m), a securityContext (privileged, or the
capabilities added and dropped against Kubernetes' default set, runAsUser/runAsGroup, a read-only
root filesystem, no-new-privileges), volumeMounts with their volumes, workingDir, tty and stdin.
"""

from __future__ import annotations

import os

from rootless.errors import ContainerError
from rootless.runtime.capabilities import DEFAULT as PODMAN_CAPS

# What a container gets on Kubernetes (CRI-O and containerd): podman's default set plus these three;
# podman writes the difference as capabilities.add and .drop, in this order.
K8S_CAPS = sorted(PODMAN_CAPS) + ["MKNOD", "NET_RAW", "AUDIT_WRITE"]


def image_name(ref: str) -> str:
    """The reference with a tag (podman writes localhost/bb:latest for localhost/bb)."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in last else f"{ref}:latest"


def ports_of(publish: list[str]) -> list[dict]:
    from rootless.network.ports import parse_publish_all

    out = []
    for m in parse_publish_all(list(publish or [])):
        p: dict = {"containerPort": m.container_port}
        if m.host_port:
            p["hostPort"] = m.host_port
        if m.host_ip and m.host_ip != "0.0.0.0":
            p["hostIP"] = m.host_ip
        if m.protocol != "tcp":
            p["protocol"] = m.protocol.upper()
        out.append(p)
    return out


def annotations(rec, pod_id: str | None = None) -> dict:
    run = rec.run
    name = rec.name

    def flag(v):
        return "TRUE" if v else "FALSE"

    out = {}
    if pod_id:
        out[f"io.kubernetes.cri-o.ContainerType/{name}"] = "container"
        out[f"io.kubernetes.cri-o.SandboxID/{name}"] = pod_id
    out[f"io.kubernetes.cri-o.TTY/{name}"] = "true" if run and run.tty else "false"
    out[f"io.podman.annotations.autoremove/{name}"] = flag(rec.rm)
    out[f"io.podman.annotations.init/{name}"] = flag(run and run.init)
    out[f"io.podman.annotations.privileged/{name}"] = flag(run and run.privileged)
    out[f"io.podman.annotations.publish-all/{name}"] = flag(run and run.publish_all)
    return out


def _image_config(rec) -> dict:
    from rootless.image.store import Store

    img = Store.open().get(rec.image_id) if rec.image_id else None
    return ((img.config if img else None) or {}).get("config") or {}


def _command(run, cfg: dict) -> dict:
    from rootless.runtime.spec import parse_entrypoint

    if run.entrypoint is not None:
        entry, cmd = parse_entrypoint(run.entrypoint), list(run.command)
    else:
        entry = list(cfg.get("Entrypoint") or [])
        cmd = list(run.command) if run.command else list(cfg.get("Cmd") or [])
    if entry:
        return {"command": entry, **({"args": cmd} if cmd else {})}
    return {"command": cmd} if cmd else {}


def _env(rec, cfg: dict) -> list[dict]:
    from rootless.runtime.spec import env_line, read_env_file

    run = rec.run
    image_env: dict[str, str] = {}
    for item in cfg.get("Env") or []:
        env_line(item, "image", image_env)
    asked: dict[str, str] = {}
    for path in run.env_files:
        try:
            asked.update(read_env_file(path))
        except ContainerError:  # a file gone since: leave its values out
            pass
    resolved = rec.process.env if rec.process else {}
    for item in run.env:
        name, eq, value = item.partition("=")
        if eq:
            asked[name] = value
        elif name in resolved:
            asked[name] = resolved[name]
    return [{"name": k, "value": v} for k, v in asked.items() if image_env.get(k) != v]


def _quantities(limits: dict) -> dict:
    from rootless.cgroups.limits import parse_bytes

    out = {}
    if limits.get("memory"):
        b = parse_bytes(limits["memory"])
        if b > 0:
            out["memory"] = _binary_si(b)
    if limits.get("cpus"):
        milli = round(float(limits["cpus"]) * 1000)
        if milli > 0:
            out["cpu"] = str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    return out


def _binary_si(n: int) -> str:
    for suffix, size in (("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30),
                         ("Mi", 1 << 20), ("Ki", 1 << 10)):  # fmt: skip
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def _caps(names: list[str]) -> set[str]:
    return {c.upper().removeprefix("CAP_") for c in names}


def security_context(run) -> dict:
    if run.privileged:
        return {"privileged": True}
    add, drop = _caps(run.cap_add), _caps(run.cap_drop)
    have = set() if "ALL" in drop else (set(PODMAN_CAPS) - drop)
    have |= add - {"ALL"}
    ctx: dict = {}
    caps = {}
    dropped = [f"CAP_{c}" for c in K8S_CAPS if c not in have]
    added = [f"CAP_{c}" for c in sorted(have) if c not in K8S_CAPS]
    if added:
        caps["add"] = added
    if dropped:
        caps["drop"] = dropped
    if caps:
        ctx["capabilities"] = caps
    user, _, group = (run.user or "").partition(":")
    if user.isdigit():
        ctx["runAsUser"] = int(user)
    if group.isdigit():
        ctx["runAsGroup"] = int(group)
    if run.read_only:
        ctx["readOnlyRootFilesystem"] = True
    if any(o.replace(":", "=") in ("no-new-privileges", "no-new-privileges=true")
           for o in run.security_opts):  # fmt: skip
        ctx["allowPrivilegeEscalation"] = False
    return ctx


def host_volume_name(path: str) -> str:
    name = path.strip("/").replace("/", "-") or "root"
    return f"{name}-host"


def _host_path_type(path: str) -> str:
    if os.path.isdir(path):
        return "Directory"
    if os.path.isfile(path):
        return "File"
    return "DirectoryOrCreate"


def _mount_specs(run) -> list[tuple[str, str, str, bool]]:
    """(kind "volume" or "bind", source, target, readonly) of each -v and --mount."""
    out = []
    for spec in run.volumes:
        parts = spec.split(":")
        if len(parts) < 2:
            continue
        opts = parts[2].split(",") if len(parts) > 2 else []
        kind = "bind" if parts[0].startswith(("/", ".")) else "volume"
        out.append((kind, parts[0], parts[1], "ro" in opts))
    for spec in run.mounts:
        kv = {}
        for item in spec.split(","):
            k, eq, v = item.partition("=")
            kv[k] = v if eq else "true"
        kind = kv.get("type", "volume")
        src = kv.get("source") or kv.get("src") or ""
        dst = kv.get("target") or kv.get("destination") or kv.get("dst") or ""
        ro = kv.get("ro", kv.get("readonly", "false")).lower() in ("true", "1")
        if kind in ("bind", "volume") and src and dst:
            out.append((kind, src, dst, ro))
    return out


def volumes(run, in_pod: bool) -> tuple[list[dict], list[dict]]:
    mounts, vols = [], []
    binds = 0
    specs = _mount_specs(run)  # podman lists bind mounts first, then named volumes
    for kind, src, dst, ro in [m for m in specs if m[0] == "bind"] + [
        m for m in specs if m[0] == "volume"
    ]:
        if kind == "volume":
            name = f"{src}-pvc"
            claim = {"claimName": src}
            if ro and in_pod:
                claim["readOnly"] = True
            vols.append({"name": name, "persistentVolumeClaim": claim})
        else:
            name = f"{host_volume_name(src)}-{binds}"
            binds += 1
            vols.append({"hostPath": {"path": src, "type": _host_path_type(src)}, "name": name})
        m = {"mountPath": dst, "name": name}
        if ro:
            m["readOnly"] = True
        mounts.append(m)
    return mounts, vols


def container(rec, ports: list[dict], in_pod: bool = False) -> tuple[dict, list[dict]]:
    """(the v1 Container, the pod volumes it mounts)."""
    from rootless.runtime.plan import options_of

    run = options_of(rec)
    cfg = _image_config(rec)
    ctr: dict = {"name": rec.name, "image": image_name(run.image or rec.image)}
    ctr.update(_command(run, cfg))
    env = _env(rec, cfg)
    if env:
        ctr["env"] = env
    if ports:
        ctr["ports"] = ports
    limits = _quantities(run.limits or {})
    if limits:
        ctr["resources"] = {"limits": limits}
    elif in_pod:
        ctr["resources"] = {}
    sec = security_context(run)
    if sec:
        ctr["securityContext"] = sec
    mounts, vols = volumes(run, in_pod)
    if mounts:
        ctr["volumeMounts"] = mounts
    if run.workdir and run.workdir != (cfg.get("WorkingDir") or "/"):
        ctr["workingDir"] = run.workdir
    if run.tty:
        ctr["tty"] = True
    if run.interactive:
        ctr["stdin"] = True
    return ctr, vols
