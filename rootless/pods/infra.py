"""A pod's infra container: what holds the namespaces the pod's containers share.

It is an ordinary container (record, monitor, setup, namespace holder, init), so it is owned and
reaped like every other, and its monitor holds the pod's network helper (slirp4netns or pasta, with
the pod's published ports) for as long as it runs. By default its only process is a pause, as in
podman's pause image (`catatonit -P`): here the init itself pauses (rootless.pods.pause) rather
than exec'ing a binary, so the root filesystem is an empty directory of the store, mounted with the
vfs driver (no overlay and no fuse daemon for an empty tree), and nothing has to be installed.
`pod create --infra-image IMAGE [--infra-command CMD]` runs an image's command instead.

(podman's own pause process becomes `catatonit -P` where catatonit is installed, and a test
fixture that looks for "podman" in that process's command line must know it: see
tests/support/podman.py.)
"""

from __future__ import annotations

import os

from rootless import paths
from rootless.pods.store import PodRecord
from rootless.runtime.plan import PAUSE
from rootless.runtime.spec import RunOptions


def root_dir() -> str:
    """The infra's root filesystem: an empty directory (its only layer)."""
    path = os.path.join(paths.data_home(), "pods", ".infra-root")
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def options(pod: PodRecord, storage_driver: str) -> RunOptions:
    """The infra container's run options."""
    uts = pod.uts_name if "uts" in pod.share else None
    network = pod.network or ("slirp4netns" if "net" in pod.share or pod.publish else "none")
    common = dict(name=pod.infra_name, hostname=uts, network=network, publish=list(pod.publish),
                  pod=pod.id, image_volume="ignore")  # fmt: skip
    if pod.infra_image:
        command = list(pod.infra_command or [])
        return RunOptions(image=pod.infra_image, command=command, storage_driver=storage_driver,
                          **common)  # fmt: skip
    return RunOptions(image=root_dir(), rootfs=True, storage_driver="vfs",
                      command=list(pod.infra_command or [PAUSE]), **common)  # fmt: skip
