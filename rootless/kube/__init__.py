"""Kubernetes YAML, podman's `kube generate` and `kube play` (docs/kube.md).

`yamltext` reads and writes the YAML (PyYAML, imported only by these verbs), `generate` turns
containers, pods and volumes into Pod, Deployment, Job, Service and PersistentVolumeClaim documents as
podman 4.3 writes them, `podspec` turns a Pod spec back into run options, and `play` checks a whole
file first (so that an unsupported kind or a bad field creates nothing) and then makes its volumes,
pods and containers, or removes them (`--down`).
"""
