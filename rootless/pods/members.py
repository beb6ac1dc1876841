"""A container of a pod: what it joins, decided by rootless.runtime.plan.prepare (`join`,
`network`, `user_namespace`).

Namespaces are OCI-style (rootless.runtime.spec.Namespace): a member joins, by path, the infra's
(/proc/INFRA-INIT/ns/TYPE) network, ipc, uts and pid namespaces the pod shares, and always the
infra's user namespace: a namespace can only be joined with CAP_SYS_ADMIN in the user namespace that
owns it, and the member's setup process has that only as root of that very user namespace (its
monitor forks it there: rootless.userns.fork_userns(join=)). Its mount and cgroup namespaces are its own.
A member of a pod that shares the network has no network helper of its own (mode "container"): the
infra's monitor holds the pod's, and its /etc/hosts and resolv.conf are the infra's (the monitor
adds the container's names to the hosts file, as for --network container:NAME). A pod without
infra (--infra=false) only groups containers.

This module reads records and decides; it starts nothing (rootless.runtime.api starts a stopped
infra before a member starts: `infra_to_start`).
"""

from __future__ import annotations

from typing import NamedTuple

from rootless.errors import ContainerError
from rootless.pods import store

OCI_TYPES = {"net": "network", "ipc": "ipc", "uts": "uts", "pid": "pid"}
NS_NAMES = {"user": "user", "network": "net", "ipc": "ipc", "uts": "uts", "pid": "pid"}
_JOINING_NETWORKS = ("", "slirp4netns", "default", "private", "pasta")  # the pod's network instead


class InfraContainerError(ContainerError):
    """A pod's infra container goes with its pod (pod rm), not alone."""


def check_removal(rec) -> None:
    """Refuse to remove a pod's infra container on its own, as podman does."""
    pod_id = rec.run.pod if rec.run is not None else None
    pod = store.load(pod_id) if pod_id else None
    if pod is not None and pod.infra and rec.name == pod.infra_name:
        raise InfraContainerError(
            f"container {rec.id[:12]} is the infra container of pod {pod.name} and cannot be removed "
            f"without removing the pod: use rootless pod rm {pod.name}"
        )


class Join(NamedTuple):
    pod_id: str
    pod_name: str
    infra_id: str  # "" for a pod without infra
    infra_init: tuple  # (host pid, start time) of the infra's init while it runs, else (0, None)
    shared: tuple[str, ...]  # the OCI namespace types joined (network, ipc, uts, pid)
    hostname: str  # the pod's hostname when uts is shared, else ""

    def path(self, oci_type: str) -> str | None:
        """/proc/PID/ns/NAME of the infra for a namespace this member joins, else None."""
        if not self.infra_init[0] or not self.shared:
            return None
        if oci_type == "user" or oci_type in self.shared:
            return f"/proc/{self.infra_init[0]}/ns/{NS_NAMES[oci_type]}"
        return None


def pod_of(opts) -> store.PodRecord:
    pod = store.load(opts.pod)
    return pod if pod is not None else store.lookup(opts.pod)


def _infra(pod: store.PodRecord):
    from rootless.runtime import state

    if not pod.infra:
        return None
    try:
        return state.refresh(state.lookup(pod.infra_name))
    except state.NoSuchContainer:
        raise ContainerError(
            f"the infra container of pod {pod.name} is gone: remove the pod (rootless pod rm -f {pod.name})"
        ) from None


def join(opts) -> Join | None:
    """What a container with RunOptions.pod joins (None for the pod's infra container itself);
    ContainerError for options a pod member cannot have."""
    pod = pod_of(opts)
    if pod.infra and opts.name == pod.infra_name:
        return None
    shared = [OCI_TYPES[s] for s in pod.share] if pod.infra else []
    if "network" in shared and opts.network not in _JOINING_NETWORKS:
        shared.remove("network")  # podman: an explicit --network gives the member its own
    if "network" in shared and (opts.publish or opts.publish_all):
        raise ContainerError(
            "published or exposed ports must be defined when the pod is created: network cannot be "
            "configured when it is shared with a pod (use pod create -p)"
        )
    if "uts" in shared and opts.hostname:
        raise ContainerError(
            "cannot set hostname when joining the pod UTS namespace: use pod create --hostname"
        )
    infra = _infra(pod)
    init = (0, None)
    if infra is not None and infra.state == "running" and infra.pid_of("init"):
        init = infra.pid_of("init")
    hostname = pod.uts_name if "uts" in shared else ""
    return Join(pod.id, pod.name, infra.id if infra else "", init, tuple(shared), hostname)  # fmt: skip


def check_running(j: Join) -> None:
    """Right before a member's processes start: the infra whose namespaces it joins still runs."""
    from rootless.runtime import state

    if j.shared and not state.alive(*j.infra_init):
        raise ContainerError(
            f"the infra container of pod {j.pod_name} is not running: start the pod (rootless pod start {j.pod_name})"
        )


def infra_to_start(opts):
    """The record of the pod's infra container if a member is about to start and it does not run."""
    pod = pod_of(opts)
    if not pod.infra or not pod.share or opts.name == pod.infra_name:
        return None
    join(opts)  # options a member cannot have fail before anything starts
    infra = _infra(pod)
    return None if infra.state in ("running", "stopping") else infra


def after_exit(j: Join, rec_id: str) -> None:
    """--exit-policy stop: when the pod's last running container exits, its infra is stopped
    (SIGTERM to its pause; the infra's monitor records the exit and stops the network helper)."""
    import signal

    from rootless.runtime import state

    pod = store.load(j.pod_id)
    if pod is None or pod.exit_policy != "stop" or not j.infra_id:
        return
    for rec in state.list_records():
        if rec.run is None or rec.run.pod != pod.id or rec.id in (rec_id, j.infra_id):
            continue
        if state.refresh(rec).state in ("running", "stopping", "created") and rec.alive("monitor"):
            return  # another container of the pod runs (or is starting)
    infra = state.load(j.infra_id)
    init = infra.pid_of("init") if infra is not None else None
    if init:
        state.signal_pid(init[0], init[1], signal.SIGTERM)


def network(j: Join, opts) -> tuple[str, dict, list]:
    """The network of a container that shares its pod's: mode "container" on the infra, as
    `--network container:INFRA` (rootless.runtime.plan._network): the infra's user and network
    namespaces, its /etc/hosts and resolv.conf, no helper of its own."""
    from rootless.network import etc
    from rootless.runtime import state
    from rootless.runtime.spec import Namespace

    etc.check_options(opts, "container")
    infra = state.load(j.infra_id)
    net_opts = {"container": j.infra_id, "run_dir": infra.run_dir if infra else ""}
    return (
        "container",
        net_opts,
        [Namespace("user", j.path("user")), Namespace("network", j.path("network"))],
    )


def user_namespace(j: Join, mode: str, net_ns: list) -> list:
    """A container that shares some of its pod's namespaces but not its network: it still runs in
    the infra's user namespace (which owns them)."""
    from rootless.runtime.spec import Namespace

    if mode == "bridge":
        raise ContainerError(
            f"a container of pod {j.pod_name} on networks of its own cannot share the pod's "
            f"{', '.join(j.shared)} namespaces: create the pod on that network (pod create --network)"
        )
    return [Namespace("user", j.path("user")) if n.type == "user" else n for n in net_ns]


def register_pod_name(pod_id: str, infra_rec) -> None:
    """The pod's infra container runs on user-defined networks: the pod's name resolves to it (to
    the pod) there, as podman's aardvark-dns answers it."""
    from rootless.network import usernet

    pod = store.load(pod_id)
    if pod is not None:
        usernet.register_names(infra_rec, [pod.name])
