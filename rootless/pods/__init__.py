"""Pods: groups of containers that share namespaces through an infra container, as podman's.

- ``store``: the pod records (<data home>/pods/ID/pod.json) and their names.
- ``infra``: the infra container: a real container whose only process is a pause (``pause``: the
  init itself, doing what podman's pause image's `catatonit -P` does), on an empty root of its own;
  it holds the namespaces the pod shares (net, ipc and uts by default), and its monitor holds the
  pod's network helper (and thus the ports published with `pod create -p`).
- ``members``: what a container of the pod joins (rootless.runtime.plan.prepare): the infra's user
  namespace, and the namespaces the pod shares (OCI-style, /proc/INFRA/ns/TYPE), its hostname,
  /etc/hosts and resolv.conf.
- ``manage``: create, start, stop, restart, kill, rm, prune, top, logs and the status of pods.
- ``inspect``: podman's `pod inspect` and `pod ps` data.
"""
