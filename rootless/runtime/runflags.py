"""Checks of the run/create flags that no other module owns (restart policy, ...), done by
plan.prepare before anything is created: each failure is one line (ContainerError, exit 125)."""

from __future__ import annotations

from rootless.errors import ContainerError


def check(opts) -> None:
    """Refuse bad values and combinations podman refuses."""
    if opts.restart:
        from rootless.runtime import restart

        name, _ = restart.parse(opts.restart)
        if name != "no" and opts.rm:
            raise ContainerError(
                'the --rm option conflicts with --restart: use one of them (or --restart "no")'
            )
