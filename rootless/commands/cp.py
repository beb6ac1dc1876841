"""`rootless cp` (and `container cp`): copy files between the host and containers, as podman does."""

from __future__ import annotations

import click

from rootless.commands.flags import PodmanCommand, value


@click.command(cls=PodmanCommand, name="cp",
               context_settings={"ignore_unknown_options": False})  # fmt: skip
@click.option("-a", "--archive", is_flag=True, default=True,
              help="Chown copied files to the primary uid/gid of the destination container.")  # fmt: skip
@click.option("--overwrite", is_flag=True, default=False,
              help="Allow to overwrite directories with non-directories and vice versa")  # fmt: skip
@click.argument("args", nargs=-1)
@click.pass_context
def cp(ctx, archive, overwrite, args):
    """Copy files/folders between a container and the local filesystem.

    Usage: cp [options] [CONTAINER:]SRC_PATH [CONTAINER:]DEST_PATH. "-" as SRC_PATH or DEST_PATH
    streams a tar archive from stdin or to stdout. The container can be running or stopped.
    """
    from rootless.errors import RootlessError
    from rootless.runtime import cp as cp_

    if len(args) != 2:
        raise RootlessError(f"accepts 2 arg(s), received {len(args)}")
    cp_.copy(args[0], args[1], archive_ids=value(ctx, "archive", archive), overwrite=overwrite)
