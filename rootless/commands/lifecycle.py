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
@click.option("--preserve-fds", type=click.IntRange(min=0), default=0,
              help="Pass N more file descriptors (3 to 3+N-1) to the process.")  # fmt: skip
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(interactive, tty, env, user, workdir, detach, preserve_fds, container, command):
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
        preserve_fds=preserve_fds,
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
@click.option("--all", "all_", is_flag=True, help="Start all containers that are not running.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Start the containers ps --filter selects."
)
@click.option("--sig-proxy", is_flag=True, hidden=True)
@click.argument("containers", nargs=-1)
def start(attach, interactive, all_, filters, sig_proxy, containers):
    """Start one or more containers (on their preserved root filesystem)."""
    if not attach:
        targets = _select(containers, all_, filters, False)
        if all_ or filters:
            targets = [(n, r) for n, r in targets if r.state not in _api().ACTIVE]
        _each_rec(targets, _start)
        return 0
    if len(containers) != 1 or all_ or filters:
        raise ContainerError("you cannot start and attach multiple containers at once")
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


def _select(containers, all_, filters, latest, running: bool = False) -> list:
    """(name to print, record) for the named containers, or those --all, --filter or --latest
    select (printed by full id, as podman does); `running`: --all means the running ones."""
    from rootless.commands.ps import select_containers

    api = _api()
    if containers and (all_ or latest):
        raise ContainerError("--all, --latest and containers cannot be used together")
    if all_ and latest:
        raise ContainerError("--all and --latest cannot be used together")
    if containers and filters:
        raise ContainerError("--filter takes no container names: give one or the other")
    if all_ or filters or latest:
        recs = select_containers(filters, all_=True, latest=latest)
        if all_ and running and not filters:
            recs = [r for r in recs if r.state in api.ACTIVE]
        return [(r.id, r) for r in recs]
    if not containers:
        raise ContainerError(
            "give at least one container name or ID, or --all, --filter or --latest"
        )
    out, errors = [], []
    for n in containers:
        try:
            out.append((n, api.get(n)))
        except RootlessError as e:
            errors.append(e)
    _raise_all(errors)
    return out


def _raise_all(errors) -> None:
    if errors:
        for e in errors[:-1]:
            click.echo(f"Error: {e}", err=True)
        raise errors[-1]


def _each_rec(targets, fn) -> None:
    """fn on each (name, record), printing the name; one error line per failure, the last raised."""
    errors = []
    for name, rec in targets:
        try:
            fn(rec)
            click.echo(name)
        except RootlessError as e:
            errors.append(e)
    _raise_all(errors)


@click.command()
@click.option("-t", "--time", "timeout", default=None, type=int,
              help="Seconds to wait before SIGKILL (default: the container's stop timeout, 10).")  # fmt: skip
@click.option("-a", "--all", "all_", is_flag=True, help="Stop all running containers.")
@click.option("-i", "--ignore", is_flag=True, help="Ignore containers that do not exist.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Stop the containers ps --filter selects."
)
@click.option("-l", "--latest", is_flag=True, help="Stop the latest container created.")
@click.argument("containers", nargs=-1)
def stop(timeout, all_, ignore, filters, latest, containers):
    """Stop one or more containers: their stop signal (SIGTERM unless --stop-signal or the
    image's STOPSIGNAL says otherwise), then SIGKILL after --time seconds."""
    api = _api()
    if ignore:
        containers = [n for n in containers if _exists(n)]
        if not containers and not (all_ or filters or latest):
            return
    targets = _select(containers, all_, filters, latest, running=True)
    api.stop_all([r for _, r in targets], timeout)  # at once, as podman
    for name, _ in targets:
        click.echo(name)


@click.command()
@click.option("-t", "--time", "timeout", default=None, type=int,
              help="Seconds to wait before SIGKILL (default: the container's stop timeout, 10).")  # fmt: skip
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
@click.option("-l", "--latest", is_flag=True, help="Signal the latest container created.")
@click.option("-f", "--filter", "filters", multiple=True, hidden=True)
@click.argument("containers", nargs=-1)
def kill(sig, all_, latest, filters, containers):
    """Send a signal to the main process of one or more containers."""
    api = _api()
    n = api.parse_signal(sig)
    _each_rec(_select(containers, all_, filters, latest, running=True), lambda r: api.kill(r, n))


def _interval(value: str) -> float:
    """podman's --interval: a Go duration (250ms, 1s), a bare number being milliseconds."""
    import re

    v = value.strip()
    if re.fullmatch(r"[-+]?\d+", v):
        return max(int(v), 0) / 1000
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.fullmatch(r"[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+", v)
    if not parts:
        raise RootlessError(f'time: invalid duration "{value}"')
    total = sum(
        float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", v)
    )
    return 0.0 if v.startswith("-") else total


@click.command()
@click.option("--condition", "conditions", multiple=True,
              help="Wait for a state: created, running, stopped, exited, ... (default stopped).")  # fmt: skip
@click.option("-i", "--interval", default=None, help="Time between polls (a duration: 250ms, 1s).")
@click.option("-l", "--latest", is_flag=True, help="Wait for the latest container created.")
@click.argument("containers", nargs=-1)
def wait(conditions, interval, latest, containers):
    """Block until containers stop (or reach a --condition) and print their exit codes."""
    from rootless.runtime.manage import CONDITIONS

    api = _api()
    wanted = [c for v in conditions for c in v.split(",")] or ["stopped"]
    for c in wanted:
        if c not in CONDITIONS:
            raise RootlessError(f"unknown container state: {c}: invalid argument")
    step = 0.1 if interval is None else max(_interval(interval), 0.01)
    if not containers and not latest:
        raise RootlessError('"rootless wait" requires a name, id, or the "--latest" flag')
    targets = [rec for _name, rec in _select(containers, False, (), latest)]
    for rec in targets:
        click.echo(api.wait_condition(rec, wanted, step))


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
@click.option(
    "--filter", "filters", multiple=True, help="Remove the containers ps --filter selects."
)
@click.option("-l", "--latest", is_flag=True, help="Remove the latest container created.")
@click.option("-t", "--time", "timeout", default=None, type=int,
              help="With -f: seconds to wait for a running container to stop before SIGKILL "
              "(default: its stop timeout).")  # fmt: skip
@click.argument("containers", nargs=-1)
def rm(force, volumes, all_, ignore, filters, latest, timeout, containers):
    """Remove one or more containers."""
    api = _api()
    if timeout is not None and not force:
        raise ContainerError("--force option must be specified to use the --time option")
    if ignore or force:  # podman: rm -f of a container that does not exist succeeds
        had = bool(containers)
        containers = [n for n in containers if _exists(n)]
        if (had or ignore) and not containers and not (all_ or filters or latest):
            return
    try:
        targets = _select(containers, all_, filters, latest)
    except ContainerError as e:
        from rootless.runtime.state import NoSuchContainer

        if isinstance(e, NoSuchContainer):
            e.exit_code = 1  # podman's rm: 1 for a container that does not exist
        raise

    def do(rec):
        if force:
            try:
                rec = api.get(rec.id)
            except api.state.NoSuchContainer:
                return  # stopped, it removed itself (--rm)
        api.remove(rec, force=force, volumes=volumes)

    if all_ or filters:
        targets = [t for t in targets if not _is_infra(t[1])]  # rm -a leaves pods to pod rm
    if force:  # as podman: each running one gets its stop signal and timeout, all at once
        api.stop_all([r for _, r in targets if r.state in api.ACTIVE and not _is_infra(r)], timeout)
    _each_rec(targets, do)


def _is_infra(rec) -> bool:
    from rootless.pods.members import InfraContainerError

    if rec.run is None or not rec.run.pod:
        return False
    from rootless.pods import members

    try:
        members.check_removal(rec)
    except InfraContainerError:
        return True
    return False


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
for _name, _mod, _attr in (("create", "create", "create"), ("init", "create", "init"),
                           ("commit", "commit", "commit"), ("diff", "history", "container_diff"),
                           ("export", "commit", "export"), ("rename", "rename", "rename"),
                           ("cp", "cp", "cp"), ("attach", "attach", "attach")):  # fmt: skip
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
