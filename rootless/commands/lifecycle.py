"""Container lifecycle verbs with podman's flags and output: exec, start, stop, restart, kill, rm,
wait and `container` (prune, inspect, plus the container verbs of rootless.commands.ps and .logs).
The work is in rootless.runtime.api; these functions parse flags and print."""

import importlib
import os
import sys

import click

from rootless.commands.logs import logs
from rootless.commands.ps import port, ps, top
from rootless.errors import ContainerError, RootlessError


def _api():
    from rootless.runtime import api

    return api


def _each(names, fn, quiet_name=True) -> None:
    """Apply fn to each named container, printing the name as given; one error line per failure."""
    api = _api()
    errors = []
    for n in names:
        try:
            fn(api.get(n))
            if quiet_name:
                click.echo(n)
        except RootlessError as e:
            errors.append(e)
    if errors:
        for e in errors[:-1]:
            click.echo(f"Error: {e}", err=True)
        raise errors[-1]


# --- exec --------------------------------------------------------------------------------------------


@click.command(
    name="exec",
    context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False},
)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-e", "--env", multiple=True, help="Set an environment variable.")
@click.option("-u", "--user", default=None, help="user[:group] to run as.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(interactive, tty, env, user, workdir, detach, container, command):
    """Run a process in a running container."""
    from rootless.runtime import api

    rec = api.get(container)
    rc = api.exec(
        rec,
        list(command),
        interactive=interactive,
        tty=tty,
        env=list(env),
        user=user,
        workdir=workdir,
        detach=detach,
    )
    sys.stdout.flush()
    return rc


# --- start / stop / restart / kill / wait ----------------------------------------------------------


def _start(rec) -> None:
    from rootless.runtime import api

    api.start(rec)


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach to the container's output and wait.")
@click.option("-i", "--interactive", is_flag=True, hidden=True)
@click.argument("containers", nargs=-1, required=True)
def start(attach, interactive, containers):
    """Start one or more containers (on their preserved root filesystem)."""
    if not attach:
        _each(containers, _start)
        return 0
    if len(containers) != 1:
        raise ContainerError("start -a takes exactly one container")
    from rootless.runtime import logs as L

    rec = _api().get(containers[0])
    offset = os.path.getsize(rec.log_path) if os.path.exists(rec.log_path) else 0
    _start(rec)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    fresh = L.follow(
        rec,
        offset,
        lambda _ts, stream, content: (err if stream == "stderr" else out).write(content),
        pause=0.05,
    )
    return 0 if fresh.exit_code is None else fresh.exit_code


@click.command()
@click.option(
    "-t", "--time", "timeout", default=10, type=int, help="Seconds to wait before SIGKILL."
)
@click.option("-a", "--all", "all_", is_flag=True, help="Stop all running containers.")
@click.option("-i", "--ignore", is_flag=True, help="Ignore containers that do not exist.")
@click.argument("containers", nargs=-1)
def stop(timeout, all_, ignore, containers):
    """Stop one or more containers: SIGTERM, then SIGKILL after --time seconds."""
    api = _api()
    names = _names_or_all(containers, all_, running=True)
    if ignore:
        names = [n for n in names if _exists(n)]
    _each(names, lambda r: api.stop(r, timeout))


@click.command()
@click.option(
    "-t", "--time", "timeout", default=10, type=int, help="Seconds to wait before SIGKILL."
)
@click.option("-a", "--all", "all_", is_flag=True, help="Restart all containers.")
@click.argument("containers", nargs=-1)
def restart(timeout, all_, containers):
    """Restart one or more containers."""
    api = _api()

    def do(rec):
        api.stop(rec, timeout)
        _start(api.get(rec.id))

    _each(_names_or_all(containers, all_, running=False), do)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send (default KILL).")
@click.option("-a", "--all", "all_", is_flag=True, help="Signal all running containers.")
@click.argument("containers", nargs=-1)
def kill(sig, all_, containers):
    """Send a signal to the main process of one or more containers."""
    api = _api()
    n = api.parse_signal(sig)
    _each(_names_or_all(containers, all_, running=True), lambda r: api.kill(r, n))


@click.command()
@click.argument("containers", nargs=-1, required=True)
def wait(containers):
    """Wait for containers to exit and print their exit codes."""
    api = _api()
    for c in containers:
        rec = api.wait(api.get(c))
        click.echo(-1 if rec.exit_code is None else rec.exit_code)


def _exists(name: str) -> bool:
    try:
        _api().get(name)
        return True
    except ContainerError:
        return False


def _names_or_all(containers, all_, running: bool) -> list[str]:
    api = _api()
    if all_:
        return [r.id for r in api.containers() if not running or r.state in api.ACTIVE]
    if not containers:
        raise ContainerError("give at least one container name or ID, or --all")
    return list(containers)


# --- rm / prune -------------------------------------------------------------------------------------


@click.command()
@click.option("-f", "--force", is_flag=True, help="Stop and remove running containers too.")
@click.option("-v", "--volumes", is_flag=True, help="Remove the containers' anonymous volumes.")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all containers.")
@click.option("-i", "--ignore", is_flag=True, help="Ignore containers that do not exist.")
@click.option("-t", "--time", "timeout", default=None, type=int, hidden=True)
@click.argument("containers", nargs=-1)
def rm(force, volumes, all_, ignore, timeout, containers):
    """Remove one or more containers."""
    api = _api()
    names = _names_or_all(containers, all_, running=False)
    if ignore:
        names = [n for n in names if _exists(n)]
    from rootless.runtime.state import NoSuchContainer

    for n in names:
        if not _exists(n):
            raise NoSuchContainer(
                f'no container with name or ID "{n}" found: no such container', exit_code=1
            )

    def do(rec):
        if force and timeout and rec.state in api.ACTIVE:
            api.stop(rec, timeout)
            rec = api.get(rec.id)
        api.remove(rec, force=force, volumes=volumes)

    if all_:
        from rootless.pods.members import InfraContainerError

        def do_all(rec):
            try:
                do(rec)
                click.echo(rec.id)
            except InfraContainerError:
                pass  # rm -a leaves pods to pod rm

        _each(names, do_all, quiet_name=False)
    else:
        _each(names, do)


def _prune(force):
    api = _api()
    for r in api.containers():
        if r.state in api.ACTIVE or r.alive("monitor"):
            continue
        from rootless.pods.members import InfraContainerError

        try:
            api.remove(r)
        except InfraContainerError:
            continue  # a pod's infra container goes with its pod
        click.echo(r.id)


# --- container group ---------------------------------------------------------------------------------


@click.group(name="container")
def container():
    """Manage containers."""


@container.command(name="prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def container_prune(force):
    """Remove all stopped containers."""
    _prune(force)


for _name, _cmd in (
    ("ps", ps),
    ("ls", ps),
    ("list", ps),
    ("logs", logs),
    ("exec", exec_),
    ("start", start),
    ("stop", stop),
    ("restart", restart),
    ("kill", kill),
    ("rm", rm),
    ("wait", wait),
    ("port", port),
    ("top", top),
):
    container.add_command(_cmd, name=_name)
for _name, _mod, _attr in (("commit", "commit", "commit"), ("diff", "history", "container_diff"),
                           ("export", "commit", "export")):  # fmt: skip
    container.add_command(
        getattr(importlib.import_module(f"rootless.commands.{_mod}"), _attr), _name
    )


def _inspect_cmd():
    from rootless.commands.inspect import inspect_cmd_impl

    @container.command(name="inspect")
    @click.argument("names", nargs=-1, required=True)
    @click.option("-f", "--format", "fmt", default=None)
    def container_inspect(names, fmt):
        """Display details of containers."""
        inspect_cmd_impl(names, fmt, "container")


_inspect_cmd()
