"""A Kubernetes pod spec as what `kube play` will create, checked before anything is: the pod's
options (name, labels, hostname, ports published through its infra, network) and each container's
run options, as podman's `kube play` maps them:

command → the entrypoint, args → the command; env (value, valueFrom.configMapKeyRef) and envFrom
(configMapRef); workingDir; securityContext (runAsUser/runAsGroup, capabilities, privileged,
readOnlyRootFilesystem, allowPrivilegeEscalation: false); tty and stdin; resources.limits memory and
cpu (--memory, --cpus); volumeMounts of persistentVolumeClaim (a named volume, created if missing),
hostPath (Directory, DirectoryOrCreate, File, FileOrCreate), emptyDir (an anonymous volume) and
configMap volumes (the map's keys as files in a directory of the store, mounted read-only).
Containers are named POD-CONTAINER, as podman names them. Anything else is one KubeError.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from rootless.kube.yamltext import KubeError
from rootless.runtime.spec import RunOptions

HOST_PATH_TYPES = ("", "Directory", "DirectoryOrCreate", "File", "FileOrCreate")


@dataclass
class PodPlan:
    name: str
    labels: dict[str, str]
    hostname: str
    publish: list[str]
    network: str
    containers: list[RunOptions]
    volumes: list[str] = field(default_factory=list)  # named volumes to create if missing
    host_dirs: list[str] = field(default_factory=list)  # DirectoryOrCreate paths
    host_files: list[str] = field(default_factory=list)  # FileOrCreate paths
    config_dirs: dict[str, dict[str, str]] = field(default_factory=dict)  # dir -> files


def config_root() -> str:
    from rootless import paths

    return os.path.join(paths.data_home(), "kube", "configmaps")


def _str_map(value, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KubeError(f"{what} must be a mapping")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _env(ctr: dict, where: str, configmaps: dict[str, dict]) -> list[str]:
    out = []
    for ref in ctr.get("envFrom") or []:
        cm = ref.get("configMapRef")
        if cm is None:
            raise KubeError(f"{where}: envFrom supports configMapRef only (no secrets in rootless)")
        data = configmaps.get(cm.get("name", ""))
        if data is None:
            if cm.get("optional"):
                continue
            raise KubeError(f"{where}: configmap {cm.get('name')!r} not found: add it to the YAML "
                            "or give it with --configmap")  # fmt: skip
        out += [f"{ref.get('prefix', '')}{k}={v}" for k, v in data.items()]
    for e in ctr.get("env") or []:
        name = e.get("name")
        if not name:
            raise KubeError(f"{where}: an env entry has no name")
        if "valueFrom" not in e:
            out.append(f"{name}={'' if e.get('value') is None else e['value']}")
            continue
        ref = (e["valueFrom"] or {}).get("configMapKeyRef")
        if ref is None:
            raise KubeError(f"{where}: env {name}: valueFrom supports configMapKeyRef only")
        data = configmaps.get(ref.get("name", ""))
        if data is None or ref.get("key") not in data:
            if ref.get("optional"):
                continue
            raise KubeError(f"{where}: env {name}: key {ref.get('key')!r} of configmap "
                            f"{ref.get('name')!r} not found")  # fmt: skip
        out.append(f"{name}={data[ref['key']]}")
    return out


def _security(opts: RunOptions, ctx: dict, pod_ctx: dict) -> None:
    uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    gid = ctx.get("runAsGroup", pod_ctx.get("runAsGroup"))
    if uid is not None:
        opts.user = f"{int(uid)}:{int(gid)}" if gid is not None else str(int(uid))
    caps = ctx.get("capabilities") or {}
    opts.cap_add = [str(c).upper().removeprefix("CAP_") for c in caps.get("add") or []]
    opts.cap_drop = [str(c).upper().removeprefix("CAP_") for c in caps.get("drop") or []]
    opts.privileged = bool(ctx.get("privileged"))
    opts.read_only = bool(ctx.get("readOnlyRootFilesystem"))
    if ctx.get("allowPrivilegeEscalation") is False:
        opts.security_opts = ["no-new-privileges"]


def _limits(resources: dict, where: str) -> dict[str, str]:
    limits = (resources or {}).get("limits") or {}
    out = {}
    if "memory" in limits:
        out["memory"] = str(quantity(limits["memory"], where))
    if "cpu" in limits:
        out["cpus"] = f"{quantity(limits['cpu'], where, cpu=True):g}"
    if out and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        import logging

        logging.getLogger("rootless").warning(
            "%s: resource limits are ignored: rootless limits need cgroup v2", where
        )
        return {}
    return out


_SUFFIX = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "K": 10**3,
           "M": 10**6, "G": 10**9, "T": 10**12, "m": 1e-3, "": 1}  # fmt: skip


def quantity(value, where: str, cpu: bool = False) -> float | int:
    """A Kubernetes quantity (64Mi, 128M, 500m, 0.5, 2) as bytes, or CPUs for `cpu`."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        num = text[: len(text) - len(suffix)] if suffix else text
        if text.endswith(suffix):
            try:
                n = float(num) * _SUFFIX[suffix]
            except ValueError:
                continue
            return n if cpu else int(n)
    raise KubeError(f"{where}: invalid quantity {value!r}")


def _volume_source(vol: dict, pod: PodPlan, where: str, configmaps: dict) -> tuple[str, str]:
    """(kind, source) of a pod volume: ("volume", NAME), ("bind", PATH) or ("anon", "")."""
    name = vol.get("name", "")
    if "persistentVolumeClaim" in vol:
        claim = (vol["persistentVolumeClaim"] or {}).get("claimName")
        if not claim:
            raise KubeError(f"{where}: volume {name}: persistentVolumeClaim needs claimName")
        pod.volumes.append(claim)
        return "volume", claim
    if "hostPath" in vol:
        hp = vol["hostPath"] or {}
        path, kind = hp.get("path", ""), hp.get("type", "") or ""
        if not path.startswith("/") or kind not in HOST_PATH_TYPES:
            raise KubeError(f"{where}: volume {name}: hostPath needs an absolute path and a type "
                            "of Directory, DirectoryOrCreate, File or FileOrCreate")  # fmt: skip
        if kind == "DirectoryOrCreate":
            pod.host_dirs.append(path)
        elif kind == "FileOrCreate":
            pod.host_files.append(path)
        elif kind and not (os.path.isdir(path) if kind == "Directory" else os.path.isfile(path)):
            raise KubeError(f"{where}: volume {name}: hostPath {path} is not a {kind.lower()}")
        return "bind", path
    if "emptyDir" in vol:
        return "anon", ""
    if "configMap" in vol:
        cm = (vol["configMap"] or {}).get("name", "")
        data = configmaps.get(cm)
        if data is None:
            raise KubeError(f"{where}: volume {name}: configmap {cm!r} not found")
        items = (vol["configMap"] or {}).get("items")
        files = (
            {i["path"]: data[i["key"]] for i in items if i.get("key") in data} if items else data
        )
        path = os.path.join(config_root(), pod.name, name)
        pod.config_dirs[path] = files
        return "bind", path
    raise KubeError(f"{where}: volume {name}: use persistentVolumeClaim, hostPath, emptyDir "
                    "or configMap")  # fmt: skip


def _mounts(ctr: dict, sources: dict, where: str) -> list[str]:
    out = []
    for m in ctr.get("volumeMounts") or []:
        name, path = m.get("name"), m.get("mountPath", "")
        if name not in sources:
            raise KubeError(f"{where}: volumeMount {name!r} names no volume of the pod")
        if m.get("subPath"):
            raise KubeError(f"{where}: volumeMount {name}: subPath is not supported")
        if not path.startswith("/"):
            raise KubeError(f"{where}: volumeMount {name}: mountPath must be absolute")
        kind, src = sources[name]
        ro = ":ro" if m.get("readOnly") else ""
        out.append(path if kind == "anon" else f"{src}:{path}{ro}")
    return out


def _ports(ctr: dict, where: str) -> list[str]:
    out = []
    for p in ctr.get("ports") or []:
        if not p.get("hostPort"):
            continue
        ip = f"{p['hostIP']}:" if p.get("hostIP") else ""
        proto = str(p.get("protocol", "TCP")).lower()
        out.append(f"{ip}{int(p['hostPort'])}:{int(p['containerPort'])}/{proto}")
    return out


def plan_pod(name: str, meta: dict, spec: dict, *, where: str, configmaps: dict, network: str,
             storage_driver: str) -> PodPlan:  # fmt: skip
    """The pod NAME as a PodPlan; KubeError for what rootless does not support."""
    if not isinstance(spec, dict) or not spec.get("containers"):
        raise KubeError(f"{where}: pod {name} has no containers")
    if spec.get("initContainers"):
        raise KubeError(f"{where}: initContainers are not supported")
    pod = PodPlan(name=name, labels=_str_map(meta.get("labels"), f"{where}: labels"),
                  hostname=spec.get("hostname") or "", publish=[], containers=[],
                  network="host" if spec.get("hostNetwork") else network)  # fmt: skip
    sources = {}
    for vol in spec.get("volumes") or []:
        sources[vol.get("name")] = _volume_source(vol, pod, where, configmaps)
    pod_ctx = spec.get("securityContext") or {}
    for ctr in spec["containers"]:
        cname = ctr.get("name")
        if not cname or not ctr.get("image"):
            raise KubeError(f"{where}: every container needs a name and an image")
        at = f"{where}: container {cname}"
        opts = RunOptions(image=ctr["image"], name=f"{name}-{cname}",
                          storage_driver=storage_driver)  # fmt: skip
        if ctr.get("command"):
            opts.entrypoint = json.dumps([str(a) for a in ctr["command"]])
        opts.command = [str(a) for a in ctr.get("args") or []]
        opts.env = _env(ctr, at, configmaps)
        opts.workdir = ctr.get("workingDir") or None
        _security(opts, ctr.get("securityContext") or {}, pod_ctx)
        opts.tty, opts.interactive = bool(ctr.get("tty")), bool(ctr.get("stdin"))
        opts.limits = _limits(ctr.get("resources") or {}, at)
        opts.volumes = _mounts(ctr, sources, at)
        pod.publish += _ports(ctr, at)
        pod.containers.append(opts)
    return pod
