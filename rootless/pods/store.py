"""Pod records: <data home>/pods/ID/pod.json, written atomically under an exclusive flock on
<data home>/pods.lock (as container records are). Names are unique among pods and containers
(podman keeps one set of names for both); lookups take a name, an id or a unique id prefix.

A pod's containers are the container records whose options name the pod (RunOptions.pod); its infra
container is the one with the pod's `infra_name`. This module reads no container record itself (the
container store asks it for pod names), so it imports nothing of the runtime.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field

from rootless import paths
from rootless.errors import RootlessError

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
SHAREABLE = ("ipc", "net", "pid", "uts")  # cgroup is podman's too; rootless does not share it
DEFAULT_SHARE = ("ipc", "net", "uts")
EXIT_NO_SUCH = 1  # podman pod rm of a pod that does not exist


class PodError(RootlessError):
    """A pod that cannot be created, found or acted on."""


class NoSuchPod(PodError):
    pass


@dataclass
class PodRecord:
    id: str
    name: str
    created_ns: int
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""  # --hostname ("" : the pod's name is the hostname)
    share: list[str] = field(default_factory=list)  # the namespaces the infra holds for the pod
    infra: bool = True
    infra_name: str = ""
    infra_command: list[str] | None = None
    infra_image: str = ""
    publish: list[str] = field(default_factory=list)  # -p, published through the infra
    network: str = ""  # --network of the infra ("": the default)
    exit_policy: str = "continue"
    create_command: list[str] = field(default_factory=list)

    @property
    def dir(self) -> str:
        return os.path.join(root(), self.id)

    @property
    def uts_name(self) -> str:
        """The hostname of the pod's containers when they share its uts namespace."""
        return self.hostname or self.name

    def save(self) -> None:
        """Write the record atomically (the caller holds lock())."""
        paths.write_text_atomic(
            os.path.join(self.dir, "pod.json"), json.dumps(asdict(self), indent=1)
        )


def root() -> str:
    return os.path.join(paths.data_home(), "pods")


def lock():
    """The store-wide lock for pod records (exclusive, held briefly)."""
    return paths.locked(os.path.join(paths.data_home(), "pods.lock"), makedirs=root())


def _load(pid: str) -> PodRecord | None:
    try:
        with open(os.path.join(root(), pid, "pod.json")) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    known = PodRecord.__dataclass_fields__
    try:
        return PodRecord(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


def load(pod_id: str) -> PodRecord | None:
    return _load(pod_id) if pod_id and "/" not in pod_id else None


def list_pods() -> list[PodRecord]:
    try:
        ids = os.listdir(root())
    except FileNotFoundError:
        return []
    pods = [p for i in ids if not i.startswith(".") and (p := _load(i)) is not None]
    return sorted(pods, key=lambda p: p.created_ns)


def names() -> set[str]:
    """Every pod's name (container names must differ from them)."""
    return {p.name for p in list_pods()}


def lookup(ref: str, exit_code: int | None = None) -> PodRecord:
    """The pod with this name, id or unique id prefix; NoSuchPod in podman's words if none."""
    pods = list_pods()
    for p in pods:
        if ref in (p.name, p.id):
            return p
    matches = [p for p in pods if ref and p.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise PodError(f"more than one pod matches {ref!r}: give more of its ID")
    raise NoSuchPod(f"no pod with name or ID {ref} found: no such pod", exit_code=exit_code)


def parse_share(value: str | None, infra: bool) -> list[str]:
    """--share: a comma list of namespaces (+ADD adds to the default); [] for none."""
    if value is None:
        return list(DEFAULT_SHARE) if infra else []
    value = value.strip()
    if value in ("", "none"):
        return []
    base = list(DEFAULT_SHARE) if value.startswith("+") else []
    for ns in value.lstrip("+").split(","):
        ns = ns.strip()
        if ns == "cgroup":
            raise PodError(
                "--share cgroup: rootless gives each container its own cgroup namespace; share ipc, net, pid or uts"
            )
        if ns not in SHAREABLE:
            raise PodError(
                f"invalid kernel namespace to share: {ns}. Options are: ipc, net, pid, uts or none"
            )
        if ns not in base:
            base.append(ns)
    return base  # fmt: skip


def create(rec: PodRecord, container_names: set[str]) -> PodRecord:
    """Save a new pod (its id and creation time filled in) if its name is free among pods and
    `container_names`."""
    if not NAME_RE.fullmatch(rec.name):
        raise PodError(
            f"invalid pod name {rec.name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )
    with lock():
        taken = [p for p in list_pods() if p.name == rec.name]
        if taken:
            raise PodError(
                f'name "{rec.name}" is in use: pod already exists (remove it with pod rm, or pick another)'
            )
        if rec.name in container_names:
            raise PodError(
                f'name "{rec.name}" is in use: container already exists (pick another name for the pod)'
            )
        while True:
            rec.id = os.urandom(32).hex()
            if not any(p.id[:12] == rec.id[:12] for p in list_pods()):
                break
        rec.created_ns = time.time_ns()
        if not rec.infra_name and rec.infra:
            rec.infra_name = f"{rec.id[:12]}-infra"
        os.makedirs(rec.dir, mode=0o700)
        rec.save()
    return rec  # fmt: skip


def remove(rec: PodRecord) -> None:
    import shutil

    with lock():
        shutil.rmtree(rec.dir, ignore_errors=True)
