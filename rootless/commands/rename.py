"""`rename`: a new name for a container, running or not, as podman rename gives it."""

from __future__ import annotations

import click


@click.command()
@click.argument("args", nargs=-1)
def rename(args):
    """Rename an existing container: rename CONTAINER NAME."""
    from rootless.errors import ContainerError
    from rootless.runtime import state

    if len(args) != 2:
        raise ContainerError(f"accepts 2 arg(s), received {len(args)}")
    state.rename(*args)
