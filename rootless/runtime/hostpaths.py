"""Host paths pinned as file descriptors, for a container in a nested user namespace.

With `--userns=nomap`, `auto` or a `--uidmap` without the user's own id, the container's root is
not the user on the host, so it cannot walk the user's private (0700) directories where the
container's root filesystem, its /etc files and the sources of its bind mounts live. The namespace
holder (rootless.runtime.nsholder) has unshared the user and mount namespaces but not yet become
root: it still is the user (the owner of those directories) with every capability in the new
namespaces. Here it opens each host path the init will need (O_PATH, in the new mount namespace)
and writes the /etc/passwd and /etc/group copies, and the init reaches them as /proc/self/fd/N,
which needs no search permission on their parents. security.close_host_fds closes them before the
command runs.
"""

from __future__ import annotations

import os
from dataclasses import replace


def _pin(path: str) -> str:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)  # the init is forked: it has it too
    return f"/proc/self/fd/{fd}"


def pin(cfg):
    """A rootless.runtime.rootfs.RootfsConfig whose host paths are pinned (see the docstring).
    The root is bound onto itself first, as rootfs.setup does (pivot_root refuses the mount copied
    from setup's namespace: it is locked), so that its fd is of the new mount."""
    from rootless import syscalls as sc
    from rootless.runtime import rootfs

    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    sc.mount(cfg.root, cfg.root, None, sc.MS_BIND | sc.MS_REC)

    etc = dict(cfg.etc_files)
    for cpath, copy in rootfs.passwd_copies(cfg):  # written now, while the run dir is reachable
        etc[cpath] = copy
    mounts = tuple(
        replace(m, source=_pin(m.source)) if m.kind == "bind" and m.source else m
        for m in cfg.mounts
    )
    return replace(
        cfg,
        root=_pin(cfg.root),
        etc_files={cpath: _pin(host) for cpath, host in etc.items()},
        mounts=mounts,
        init=_pin(cfg.init) if cfg.init else None,
        pinned=True,
    )
