"""podman's JSON for pods: `pod inspect` (one object per pod) and the rows of `pod ps` (its JSON
and template fields). Fields rootless has no counterpart for (cgroup parents, static IPs, DNS
options) are there with podman's empty values, so that tools that read them keep working.
"""

from __future__ import annotations

from rootless.pods import manage, store
from rootless.volumes.store import go_time


def _port_bindings(pod: store.PodRecord) -> dict:
    from rootless.network.ports import parse_publish_all

    out: dict[str, list] = {}
    for m in parse_publish_all(list(pod.publish)):
        out.setdefault(f"{m.container_port}/{m.protocol}", []).append(
            {"HostIp": m.host_ip or "", "HostPort": str(m.host_port or "")}
        )
    return out


def _infra_config(pod: store.PodRecord) -> dict:
    mode = (pod.network or "slirp4netns").partition(":")[0]
    return {
        "PortBindings": _port_bindings(pod),
        "HostNetwork": mode == "host",
        "StaticIP": "",
        "StaticMAC": "",
        "NoManageResolvConf": False,
        "DNSServer": None,
        "DNSSearch": None,
        "DNSOption": None,
        "NoManageHosts": False,
        "HostAdd": None,
        "Networks": None,
        "NetworkOptions": None,
        "pid_ns": "private",
        "userns": "host",
        "uts_ns": "private",
    }


def inspect(pod: store.PodRecord) -> dict:
    """`pod inspect` of one pod."""
    recs = manage.containers(pod)
    inf, _ = manage.split(pod, recs)
    out = {
        "Id": pod.id,
        "Name": pod.name,
        "Created": go_time(pod.created_ns),
        "CreateCommand": list(pod.create_command),
        "ExitPolicy": pod.exit_policy,
        "State": manage.status(recs),
        "Hostname": pod.hostname,
    }
    if pod.labels:
        out["Labels"] = dict(pod.labels)
    out.update({"CreateCgroup": False, "CgroupParent": "", "CgroupPath": "",
                "CreateInfra": pod.infra})  # fmt: skip
    if pod.infra:
        out["InfraContainerID"] = inf.id if inf else ""
        out["InfraConfig"] = _infra_config(pod)
        out["SharedNamespaces"] = list(pod.share)
    out["NumContainers"] = len(recs)
    if recs:
        out["Containers"] = [{"Id": r.id, "Name": r.name, "State": r.state} for r in recs]
    return out


def ps_row(pod: store.PodRecord, recs: list | None = None) -> dict:
    """One `pod ps --format json` object."""
    recs = manage.containers(pod) if recs is None else recs
    inf, _ = manage.split(pod, recs)
    return {
        "Cgroup": "",
        "Containers": [{"Id": r.id, "Names": r.name, "Status": r.state} for r in recs],
        "Created": go_time(pod.created_ns),
        "Id": pod.id,
        "InfraId": inf.id if inf else "",
        "Name": pod.name,
        "Namespace": "",
        "Networks": [],
        "Status": manage.status(recs),
        "Labels": dict(pod.labels),
    }
