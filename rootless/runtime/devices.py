"""--device: the host's device nodes a container gets, as rootless podman gives them (a bind of
each node: a user namespace cannot mknod), parsed as podman's parseDevice parses them."""

from __future__ import annotations

import os
import stat

from rootless.errors import ContainerError
from rootless.runtime.rootfs import Mount


def _device_mode(perms: str) -> bool:
    return 0 < len(perms) <= 3 and set(perms) <= set("rwm") and len(set(perms)) == len(perms)


def parse_device(spec: str) -> list[Mount]:
    """--device HOST[:CONTAINER][:PERMS] (podman's parseDevice): binds of the host's device node,
    or of every node under a host directory; read-only without w in PERMS."""
    parts = spec.split(":")
    if len(parts) > 3:
        raise ContainerError(f"invalid device specification: {spec}")
    src, dst, perms = parts[0], "", "rwm"
    if len(parts) == 3:
        if not _device_mode(parts[2]):
            raise ContainerError(f"invalid device mode: {parts[2]}")
        perms = parts[2]
    if len(parts) >= 2:
        if len(parts) == 2 and _device_mode(parts[1]):
            perms = parts[1]
        elif parts[1] and not parts[1].startswith("/"):
            raise ContainerError(f"invalid device mode: {parts[1]}")
        else:
            dst = parts[1]
    dst = dst or src
    try:
        st = os.stat(src)
    except OSError as e:
        raise ContainerError(f"stat {src}: {(e.strerror or '').lower()}") from None
    ro = "w" not in perms
    if stat.S_ISDIR(st.st_mode):
        found = []
        for top, _dirs, files in os.walk(src):
            for name in sorted(files):
                path = os.path.join(top, name)
                try:
                    if stat.S_ISCHR(os.stat(path).st_mode) or stat.S_ISBLK(os.stat(path).st_mode):
                        found.append(
                            Mount("bind", os.path.join(dst, os.path.relpath(path, src)), path, ro)
                        )
                except OSError:
                    continue
        return found
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ContainerError(f"{src} is not a valid device: not a device node")
    return [Mount("bind", dst, src, ro)]
