"""`kube generate`: containers, pods and volumes as Kubernetes YAML, shaped as podman 4.3 writes it.

A container alone becomes a Pod named NAME-pod (as podman does), a pod a Pod of its containers (the
infra left out; the pod's published ports on its first container), a volume a PersistentVolumeClaim.
`kind` "deployment" wraps the pod spec in an apps/v1 Deployment (NAME-deployment, `replicas`),
"job" in a batch/v1 Job (NAME-job); `service` adds a NodePort Service for the published ports.
Named volumes become persistentVolumeClaim volumes (claimName: the volume), host paths hostPath
volumes (Directory, File or DirectoryOrCreate, as the path is on the host), and --memory/--cpus the
container's resources.limits. The container pieces are in rootless.kube.container.
"""

from __future__ import annotations

import datetime
import random

from rootless.kube import container as kc
from rootless.kube.yamltext import KubeError, dump

HEADER = """\
# Save the output of this file and use kubectl create -f to import
# it into Kubernetes.
#
# Created with rootless-{version}
"""
VOLUME_NOTE = """
# NOTE: If you generated this yaml from an unprivileged and rootless podman container on an SELinux
# enabled system, check the podman generate kube man page for steps to follow to ensure that your pod/container
# has the right permissions to access the volumes added.
---
"""
KINDS = ("pod", "deployment", "job")


def timestamp(seconds: float | int | None) -> str:
    """RFC 3339 in UTC, as Kubernetes writes creationTimestamp."""
    t = datetime.datetime.fromtimestamp(seconds or 0, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Targets:
    def __init__(self):
        self.pods: list = []
        self.containers: list = []
        self.volumes: list = []


def _resolve(names: list[str]) -> _Targets:
    from rootless.pods import store as pods
    from rootless.runtime import api
    from rootless.volumes import store as volumes

    out = _Targets()
    for name in names:
        try:
            out.pods.append(pods.lookup(name))
            continue
        except pods.NoSuchPod:
            pass
        try:
            out.containers.append(api.get(name))
            continue
        except api.state.NoSuchContainer:
            pass
        vol = volumes.find(name)
        if vol is None:
            raise KubeError(f'name or ID "{name}" not found: give a container, pod or volume')
        out.volumes.append(vol)
    return out


def generate(names: list[str], *, kind: str = "pod", service: bool = False,
             replicas: int = 1) -> str:  # fmt: skip
    """The YAML text for these containers, pods and volumes (podman's `kube generate`)."""
    from rootless import __version__

    if kind not in KINDS:
        raise KubeError(f"invalid type {kind!r}: use pod, deployment or job")
    if replicas < 1:
        raise KubeError(f"--replicas {replicas}: must be at least 1")
    if replicas != 1 and kind != "deployment":
        raise KubeError("--replicas is only for --type deployment")
    if not names:
        raise KubeError("give at least one container, pod or volume")
    t = _resolve(names)
    if t.containers and any(r.run is not None and r.run.pod for r in t.containers):
        raise KubeError(
            "a container of a pod cannot be generated on its own: give the pod's name instead"
        )
    docs: list[dict] = []
    pod_docs = [_pod_of_pod(p) for p in t.pods]
    if t.containers:
        pod_docs.append(_pod_of_containers(t.containers))
    if service:
        docs += [_service(d) for d in pod_docs if _ports(d)]
    docs += [_wrap(d, kind, replicas) for d in pod_docs]
    docs += [pvc(v) for v in t.volumes]
    text = HEADER.format(version=__version__)
    if any(d["spec"].get("volumes") for d in pod_docs):
        text += VOLUME_NOTE
    return text + dump(docs)


def _pod_doc(name: str, created: float, members: list, annotations: dict, spec_extra: dict,
             status: bool) -> dict:  # fmt: skip
    spec: dict = {"automountServiceAccountToken": False, "enableServiceLinks": False}
    spec["containers"] = [m[0] for m in members]
    volumes: dict[str, dict] = {}
    for _, vols in members:
        for v in vols:
            volumes.setdefault(v["name"], v)
    if volumes:
        spec["volumes"] = list(volumes.values())
    spec.update(spec_extra)
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": annotations,
            "creationTimestamp": timestamp(created),
            "labels": {"app": name},
            "name": name,
        },
        "spec": spec,
    }
    if status:
        doc["status"] = {}
    return doc


def _pod_of_containers(recs: list) -> dict:
    name = recs[0].name.replace("_", "") + "-pod"
    members, annotations = [], {}
    for rec in recs:
        ctr, vols = kc.container(rec, kc.ports_of(rec.run.publish if rec.run else []))
        members.append((ctr, vols))
        annotations.update(kc.annotations(rec))
    extra = {}
    if recs[0].run is not None and recs[0].run.network == "host":
        extra["hostNetwork"] = True
    return _pod_doc(name, recs[0].created, members, annotations, extra, status=False)


def _pod_of_pod(pod) -> dict:
    from rootless.pods import manage

    inf, others = manage.split(pod, manage.containers(pod))
    members, annotations = [], {}
    for i, rec in enumerate(others):
        ports = kc.ports_of(pod.publish) if i == 0 else []
        ctr, vols = kc.container(rec, ports, in_pod=True)
        members.append((ctr, vols))
        annotations.update(kc.annotations(rec, pod_id=pod.id))
    if not members:
        raise KubeError(f"pod {pod.name} has no containers but its infra: add one first")
    extra: dict = {"restartPolicy": "Never"}
    if "uts" in pod.share:
        extra["hostname"] = pod.uts_name
    if pod.network == "host":
        extra["hostNetwork"] = True
    doc = _pod_doc(pod.name, pod.created_ns / 1e9, members, annotations, extra, status=True)
    if pod.labels:
        doc["metadata"]["labels"] = {**pod.labels, "app": pod.name}
    return doc


def _ports(pod_doc: dict) -> list[dict]:
    return [p for c in pod_doc["spec"]["containers"] for p in c.get("ports", [])]


def _service(pod_doc: dict) -> dict:
    meta = pod_doc["metadata"]
    ports = []
    for p in _ports(pod_doc):
        entry = {"name": str(p["containerPort"]), "port": p["containerPort"],
                 "targetPort": p["containerPort"],
                 "nodePort": p["hostPort"] if 30000 <= p.get("hostPort", 0) <= 32767
                 else random.randint(30000, 32767)}  # fmt: skip
        if p.get("protocol"):
            entry["protocol"] = p["protocol"]
        ports.append(entry)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "creationTimestamp": meta["creationTimestamp"],
            "labels": {"app": meta["name"]},
            "name": meta["name"],
        },
        "spec": {"ports": ports, "selector": {"app": meta["name"]}, "type": "NodePort"},
    }


def _wrap(pod_doc: dict, kind: str, replicas: int) -> dict:
    """A Pod as itself, or as the template of a Deployment or Job."""
    if kind == "pod":
        return pod_doc
    meta = pod_doc["metadata"]
    spec = dict(pod_doc["spec"])
    if kind == "deployment":
        spec["restartPolicy"] = "Always"  # the only policy a Deployment's pods may have
    else:
        spec["restartPolicy"] = "Never" if spec.get("restartPolicy") != "OnFailure" else "OnFailure"
    template = {"metadata": dict(meta), "spec": spec}
    outer = {
        "creationTimestamp": meta["creationTimestamp"],
        "labels": dict(meta["labels"]),
        "name": f"{meta['name']}-{kind}",
    }
    if kind == "deployment":
        body = {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": meta["labels"]["app"]}},
            "template": template,
        }
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": outer, "spec": body}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": outer,
            "spec": {"template": template}}  # fmt: skip


def pvc(vol) -> dict:
    """A named volume as a PersistentVolumeClaim (its driver and options as podman's annotations)."""
    annotations = {"volume.podman.io/driver": vol.driver or "local"}
    for key, value in (vol.options or {}).items():
        name = {"o": "mount-options"}.get(key, key)
        annotations[f"volume.podman.io/{name}"] = str(value)
    meta = {
        "annotations": annotations,
        "creationTimestamp": timestamp(vol.created_ns / 1e9),
        "name": vol.name,
    }
    if vol.labels:
        meta["labels"] = dict(vol.labels)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {},
    }
