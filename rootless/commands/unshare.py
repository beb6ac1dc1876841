"""`rootless unshare [CMD...]`: run CMD (default $SHELL, else /bin/sh) as root in rootless's user
namespace, like `podman unshare`: with the same id mapping containers get, so that the user can
inspect, chown and remove files in the store that container ids own. The exit code is CMD's.
"""

import os
import sys

import click


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    short_help="Run a command in a user namespace as container root",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def unshare(command: tuple[str, ...]) -> None:
    """Run COMMAND (default: your $SHELL) as root in a user namespace with rootless's id mapping.

    Inside, ROOTLESS_UNSHARE=1 is set and the rest of the environment is passed through.
    The exit code is the command's (128+N if signal N killed it).
    """
    from rootless import userns

    if command and command[0].startswith("-") and command[0] != "-":
        raise click.UsageError(f"unknown flag: {command[0]}")  # podman: its flags come first
    argv = list(command) or [os.environ.get("SHELL") or "/bin/sh"]
    env = dict(os.environ)
    env["ROOTLESS_UNSHARE"] = "1"
    sys.exit(userns.exec_in_userns(argv, env=env))
