"""The CLI boundary: podman's verbs, flags and exit codes, and one-line errors.

Every verb lives in its own module under rootless.commands and is imported only when it is invoked
(or when --help lists it), so `rootless run` does not pay for `pull`'s HTTP stack and vice versa.
Errors: a RootlessError prints ``Error: <message>`` and exits with its code (125 by default); a usage
error exits 125 as in podman; any other exception prints the one line `errors.describe` makes of it
(never a Python type name: a full or read-only store says so), or its traceback with
``--log-level debug``.
"""

import importlib
import logging
import os
import sys

if "run" in sys.argv[1:]:  # fuse-overlay's daemon imports for ~90 ms: start it before click loads
    from rootless.fuse_overlay import prestart

    prestart.early(sys.argv[1:])

import click  # noqa: E402

from rootless import __version__
from rootless.errors import EXIT_RUNTIME, RootlessError

# verb -> (module, attribute, one-line help). The help is here so that `rootless --help` does not
# import every command module.
_IMG, _CTR = "rootless.commands.images", "rootless.commands.lifecycle"
COMMANDS: dict[str, tuple[str, str, str]] = {
    "info": ("rootless.commands.info", "info", "Display rootless system information"),
    "healthcheck": ("rootless.commands.healthcheck", "healthcheck", "Manage healthchecks of containers"),
    "unshare": ("rootless.commands.unshare", "unshare", "Run a command in a user namespace as container root"),
    "pull": (_IMG, "pull", "Pull an image from a registry"),
    "images": (_IMG, "images", "List images in local storage"),
    "rmi": (_IMG, "rmi", "Remove one or more images"),
    "tag": (_IMG, "tag", "Add a name to a local image"),
    "untag": (_IMG, "untag", "Remove names from a local image"),
    "load": (_IMG, "load", "Load an image from a docker-archive or oci-archive"),
    "save": (_IMG, "save", "Save an image to a docker-archive or oci-archive"),
    "image": (_IMG, "image", "Manage images"),
    "login": (_IMG, "login", "Log in to a registry"),
    "logout": (_IMG, "logout", "Log out of a registry"),
    "push": ("rootless.commands.push", "push", "Push an image to a registry"),
    "inspect": ("rootless.commands.inspect", "inspect", "Display details of an image or container"),
    "run": ("rootless.commands.run", "run", "Run a command in a new container"),
    "create": ("rootless.commands.create", "create", "Create but do not start a container"),
    "init": ("rootless.commands.create", "init", "Initialize one or more containers"),
    "exec": (_CTR, "exec_", "Run a process in a running container"),
    "cp": ("rootless.commands.cp", "cp", "Copy files/folders between a container and the local filesystem"),
    "ps": ("rootless.commands.ps", "ps", "List containers"),
    "logs": ("rootless.commands.logs", "logs", "Fetch the logs of a container"),
    "start": (_CTR, "start", "Start one or more stopped containers"),
    "stop": (_CTR, "stop", "Stop one or more containers"),
    "restart": (_CTR, "restart", "Restart one or more containers"),
    "kill": (_CTR, "kill", "Send a signal to one or more containers"),
    "rm": (_CTR, "rm", "Remove one or more containers"),
    "wait": (_CTR, "wait", "Wait for containers to exit"),
    "port": ("rootless.commands.ps", "port", "List published ports of a container"),
    "top": ("rootless.commands.ps", "top", "Display the processes of a container"),
    "rename": ("rootless.commands.rename", "rename", "Rename an existing container"),
    "attach": ("rootless.commands.attach", "attach", "Attach to a running container"),
    "version": ("rootless.commands.version", "version", "Display the rootless version information"),
    "completion": ("rootless.commands.completion", "completion", "Generate shell completion scripts"),
    "container": (_CTR, "container", "Manage containers"),
    "stats": ("rootless.commands.stats", "stats", "Display resource usage of containers"),
    "build": ("rootless.commands.build", "build", "Build an image from a Containerfile"),
    "commit": ("rootless.commands.commit", "commit", "Create an image from a container's changes"),
    "history": ("rootless.commands.history", "history", "Show the history of an image"),
    "diff": ("rootless.commands.history", "diff", "Show a container's or image's changes"),
    "import": ("rootless.commands.commit", "import_", "Create an image from a tarball"),
    "export": ("rootless.commands.commit", "export", "Export a container's filesystem as a tar"),
    "network": ("rootless.commands.network", "network", "Manage networks"),
    "volume": ("rootless.commands.volume", "volume", "Manage volumes"),
    "pod": ("rootless.commands.pod", "pod", "Manage pods"),
    "kube": ("rootless.commands.kube", "kube", "Play or generate Kubernetes YAML"),
    "generate": ("rootless.commands.kube", "generate_group", "Generate Kubernetes YAML (generate kube)"),
    "play": ("rootless.commands.kube", "play_group", "Play Kubernetes YAML (play kube)"),
    "system": ("rootless.commands.service", "system", "Manage rootless (system service: the Docker API)"),
}  # fmt: skip

log = logging.getLogger("rootless")


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        mod, attr, _ = entry
        cmd = getattr(importlib.import_module(mod), attr)
        if "_ROOTLESS_COMPLETE" in os.environ:  # completing: container and image names too
            from rootless.commands.completion import attach

            attach(cmd)
        return cmd

    def format_commands(self, ctx, formatter):
        rows = [(v, COMMANDS[v][2]) for v in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="rootless")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warn", "error"]),
    default="warn",
    show_default=True,
    help="Log messages at and above this level; debug also shows tracebacks.",
)
@click.option(
    "--storage-driver",
    default=None,
    metavar="overlay|fuse-overlay|vfs",
    help="Storage driver for container root filesystems (default: $ROOTLESS_STORAGE_DRIVER, "
    "storage.conf, else overlay where the kernel allows it; see docs/storage.md).",
)
@click.option("--root", default=None, help="The store's directory (images, containers, volumes).")
@click.option("--runroot", default=None, help="The directory of runtime state.")
@click.pass_context
def cli(ctx, log_level, storage_driver, root, runroot):
    """Run OCI containers as an ordinary user: no sudo, no daemon."""
    level = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}.get(
        log_level, logging.ERROR
    )
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    ctx.obj = {"log_level": log_level, "storage_driver": storage_driver}
    if log_level == "debug":
        os.environ["ROOTLESS_DEBUG"] = "1"
    # --root/--runroot (podman's): through the environment, so that every process of the run
    # (the monitor, `rootless` run by conmon-like restarts) uses the same store
    for var, path in (("ROOTLESS_ROOT", root), ("ROOTLESS_RUNROOT", runroot)):
        if path == "":
            raise RootlessError(f"--{var[9:].lower()} needs a directory")
        if path:
            os.environ[var] = os.path.abspath(path)


def _debug() -> bool:
    return (
        os.environ.get("ROOTLESS_DEBUG") == "1"
        or "--log-level=debug" in sys.argv
        or (
            "--log-level" in sys.argv
            and sys.argv.index("--log-level") + 1 < len(sys.argv)
            and sys.argv[sys.argv.index("--log-level") + 1] == "debug"
        )
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and turn every failure into an exit code."""
    try:
        rc = cli.main(args=argv, prog_name="rootless", standalone_mode=False)
    except click.exceptions.UsageError as e:
        e.show()
        sys.exit(EXIT_RUNTIME)
    except click.exceptions.Abort:  # click's form of Ctrl-C: 128 + SIGINT, as a shell reports it
        sys.exit(130)
    except click.exceptions.ClickException as e:
        e.show()
        sys.exit(EXIT_RUNTIME)
    except RootlessError as e:
        if _debug():
            import traceback

            traceback.print_exc()
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(EXIT_RUNTIME)
    except Exception as e:  # a bug: still one line unless debugging
        if _debug():
            import traceback

            traceback.print_exc()
        from rootless.errors import describe

        click.echo(f"Error: {describe(e)}", err=True)
        sys.exit(EXIT_RUNTIME)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
