"""`healthcheck run`: one check of a running container's healthcheck, as podman's (the monitor runs
the same check every interval: rootless.runtime.health)."""

from __future__ import annotations

import click


@click.group(name="healthcheck")
def healthcheck():
    """Manage healthchecks of containers."""


@healthcheck.command(name="run")
@click.argument("container")
def run(container):
    """Run the container's healthcheck once: exit 0 if healthy, 1 (and "unhealthy") if not."""
    from rootless.errors import ContainerError
    from rootless.runtime import health, state

    try:
        rec = state.refresh(state.lookup(container))
    except state.NoSuchContainer:
        raise ContainerError(
            f"unable to look up {container} to perform a health check: no container with name or "
            f'ID "{container}" found: no such container'
        ) from None
    if health.check(rec) != 0:
        click.echo("unhealthy")
        raise SystemExit(1)
