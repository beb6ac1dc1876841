"""Named volumes (podman's `local` driver): directories in the store that outlive containers.

- ``store``: the volume records and their data (<data home>/volumes/NAME/{volume.json,_data}),
  create, look up, list, remove; the options rootless supports.
- ``usage``: which containers use a volume (for `volume rm`, `prune`, `rm -v`, `run --rm`).
- ``mounts``: `-v NAME:/path`, `--mount type=volume`, anonymous volumes from the image's VOLUMEs
  and `--volumes-from`, turned into the container's mounts (rootless.runtime.rootfs.Mount).
- ``firstuse``: inside the container's user namespace, a volume's first use: the image's files
  copied up into it, its root chowned as podman does, and `:U`.

``resolve(name)`` is the one call another module needs to mount a volume: the host directory of the
volume NAME, created (as podman does on first use) when there is none.
"""

from __future__ import annotations


def resolve(name: str) -> str:
    """The host directory that a container mounts for volume `name` (created if missing)."""
    from rootless.volumes import store

    return store.source_of(store.get_or_create(name))
