"""`kube play` and `kube play --down` (`kube down`): a Kubernetes YAML's objects, made or removed.

Kinds: Pod; Deployment (each of its replicas a pod NAME-pod-N, as podman 4.3 names them); Job (one
pod NAME-pod whose containers run once); ConfigMap (for env, envFrom and configMap volumes, with
those given by --configmap); PersistentVolumeClaim (a named volume, kept if it exists); Service
(nothing to do without a cluster: read and left). Every document is checked first (rootless.kube.
podspec), so an unsupported kind or field is one line and nothing is created; a failure while
creating removes what this play made. `--publish` overrides or adds host ports (by container port),
`--replace` removes pods of the same names first, `--network` puts the pods on a network.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from rootless.errors import RootlessError
from rootless.kube.podspec import PodPlan, config_root, plan_pod
from rootless.kube.yamltext import KubeError

SUPPORTED = ("Pod", "Deployment", "Job", "ConfigMap", "PersistentVolumeClaim", "Service")


@dataclass
class Play:
    pods: list[PodPlan] = field(default_factory=list)
    claims: list[tuple[str, dict]] = field(default_factory=list)  # (volume name, labels)


@dataclass
class Report:
    pods: list[tuple[str, list[str]]] = field(default_factory=list)  # (pod id, container ids)
    volumes: list[str] = field(default_factory=list)


def configmaps_of(docs: list[dict], where: str) -> dict[str, dict[str, str]]:
    out = {}
    for d in docs:
        if d.get("kind") == "ConfigMap":
            name = (d.get("metadata") or {}).get("name")
            if not name:
                raise KubeError(f"{where}: a ConfigMap has no metadata.name")
            data = {str(k): str(v) for k, v in (d.get("data") or {}).items()}
            out[name] = data
    return out


def _name(d: dict, where: str) -> str:
    name = (d.get("metadata") or {}).get("name")
    if not name or not isinstance(name, str):
        raise KubeError(f"{where}: a {d.get('kind')} has no metadata.name")
    return name


def plan(docs: list[dict], *, where: str, configmaps: dict, network: str = "",
         storage_driver: str = "overlay") -> Play:  # fmt: skip
    """Check every document and decide what to make; nothing is created."""
    for d in docs:
        kind = d.get("kind")
        if kind not in SUPPORTED:
            raise KubeError(f"{where}: kind {kind!r} is not supported: rootless plays "
                            "Pod, Deployment, Job, ConfigMap, PersistentVolumeClaim and Service")  # fmt: skip
    cms = {**configmaps, **configmaps_of(docs, where)}
    out = Play()
    kw = dict(where=where, configmaps=cms, network=network, storage_driver=storage_driver)
    for d in docs:
        kind, spec = d["kind"], d.get("spec") or {}
        if kind == "Pod":
            out.pods.append(plan_pod(_name(d, where), d.get("metadata") or {}, spec, **kw))
        elif kind in ("Deployment", "Job"):
            template = spec.get("template") or {}
            name = _name(d, where)
            replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
            names = (
                [f"{name}-pod"] if kind == "Job" else [f"{name}-pod-{i}" for i in range(replicas)]
            )
            for pname in names:
                out.pods.append(plan_pod(pname, template.get("metadata") or {},
                                         template.get("spec") or {}, **kw))  # fmt: skip
        elif kind == "PersistentVolumeClaim":
            meta = d.get("metadata") or {}
            out.claims.append((_name(d, where), dict(meta.get("labels") or {})))
    seen = set()
    for p in out.pods:
        if p.name in seen:
            raise KubeError(f"{where}: two pods are named {p.name}")
        seen.add(p.name)
    return out


def _override_ports(pod: PodPlan, publish: list[str]) -> None:
    from rootless.network.ports import parse_publish_all

    if not publish:
        return
    given = {(m.container_port, m.protocol): s for s in publish for m in parse_publish_all([s])}
    kept = []
    for spec in pod.publish:
        m = parse_publish_all([spec])[0]
        if (m.container_port, m.protocol) not in given:
            kept.append(spec)
    pod.publish = kept + list(given.values())


def _pod_ids(names: list[str]) -> list:
    from rootless.pods import store

    out = []
    for n in names:
        try:
            out.append(store.lookup(n))
        except store.NoSuchPod:
            pass
    return out


def play(p: Play, *, publish: list[str], replace: bool, start: bool) -> Report:
    """Make the volumes, pods and containers (and start them unless `start` is False)."""
    from rootless.pods import manage
    from rootless.pods import store as pods
    from rootless.volumes import store as volumes

    for pod in p.pods:
        _override_ports(pod, publish)
    existing = _pod_ids([pod.name for pod in p.pods])
    if existing and not replace:
        raise KubeError(f"pod {existing[0].name} already exists: use --replace or kube down first")
    for old in existing:
        _remove_pod(old)
    report, made_volumes, made_pods = Report(), [], []
    try:
        for name, labels in p.claims:
            if volumes.find(name) is None:
                volumes.create(name, labels=labels)
                made_volumes.append(name)
            report.volumes.append(name)
        for pod in p.pods:
            for name in pod.volumes:
                if volumes.find(name) is None:
                    volumes.create(name)
                    made_volumes.append(name)
            _host_paths(pod)
            rec = manage.create(name=pod.name, labels=pod.labels, hostname=pod.hostname,
                                publish=pod.publish, network=pod.network,
                                storage_driver=pod.containers[0].storage_driver,
                                create_command=["rootless", "kube", "play"])  # fmt: skip
            made_pods.append(rec)
            report.pods.append((rec.id, _containers(pod, rec.id)))
        if start:
            for rec in made_pods:
                manage.start(pods.lookup(rec.id))
    except BaseException:
        for rec in made_pods:
            _remove_pod(rec)
        for name in made_volumes:
            vol = volumes.find(name)
            if vol is not None:
                volumes.remove(vol)
        raise
    return report


def _containers(pod: PodPlan, pod_id: str) -> list[str]:
    from dataclasses import replace

    from rootless.runtime import api

    return [api.create(replace(opts, pod=pod_id))[1].id for opts in pod.containers]


def _host_paths(pod: PodPlan) -> None:
    try:
        for d in pod.host_dirs:
            os.makedirs(d, exist_ok=True)
        for f in pod.host_files:
            os.makedirs(os.path.dirname(f), exist_ok=True)
            open(f, "a").close()
        for d, files in pod.config_dirs.items():
            os.makedirs(d, exist_ok=True)
            for name, text in files.items():
                with open(os.path.join(d, os.path.basename(name)), "w") as fh:
                    fh.write(text)
    except OSError as e:
        raise KubeError(f"pod {pod.name}: cannot create {e.filename}: {e.strerror}") from None


def _remove_pod(rec) -> None:
    from rootless.pods import manage

    manage.remove(rec, force=True, timeout=10)
    shutil.rmtree(os.path.join(config_root(), rec.name), ignore_errors=True)


def down(p: Play, *, volumes_too: bool = False) -> tuple[list[str], list[str], list[str]]:
    """Remove the pods the YAML would make (stopped first); with `volumes_too` (`--force`) its
    PersistentVolumeClaims' volumes too. (pod ids stopped, pod ids removed, volume names removed)."""
    from rootless.pods import manage
    from rootless.volumes import manage as vmanage
    from rootless.volumes import store as volumes

    stopped, removed = [], []
    for rec in _pod_ids([pod.name for pod in p.pods]):
        manage.stop(rec)  # each container's stop signal and timeout
        stopped.append(rec.id)
        _remove_pod(rec)
        removed.append(rec.id)
    gone = []
    if volumes_too:
        names = [n for n, _ in p.claims] + [n for pod in p.pods for n in pod.volumes]
        for name in dict.fromkeys(names):
            if volumes.find(name) is not None:
                try:
                    vmanage.remove(name, force=True)
                    gone.append(name)
                except RootlessError:
                    pass
    return stopped, removed, gone
