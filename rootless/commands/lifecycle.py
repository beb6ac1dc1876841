"""Container lifecycle verbs with podman's flags and output: ps, logs, exec, start, stop, restart, kill,
rm, wait, port, top and `container` (prune, plus the same verbs). The work is in rootless.runtime
(manage, exec, logs, inspect); these functions parse flags and print."""

import json
import os
import sys
import time

import click

from rootless.errors import ContainerError, RootlessError


def _manage():
    from rootless.runtime import manage

    return manage


def _each(names, fn, quiet_name=True) -> None:
    """Apply fn to each named container, printing the name as given; one error line per failure."""
    manage = _manage()
    errors = []
    for n in names:
        try:
            fn(manage.get(n))
            if quiet_name:
                click.echo(n)
        except RootlessError as e:
            errors.append(e)
    if errors:
        for e in errors[:-1]:
            click.echo(f"Error: {e}", err=True)
        raise errors[-1]


# --- ps ----------------------------------------------------------------------------------------------


def _ps_row(rec) -> dict:
    from rootless.runtime import inspect as ins

    return {
        "AutoRemove": rec.rm,
        "Command": rec.command,
        "Created": int(rec.created),
        "CreatedAt": ins.iso(rec.created),
        "Exited": rec.state == "exited",
        "ExitedAt": int(rec.finished or 0),
        "ExitCode": -1 if rec.exit_code is None and rec.state == "exited" else (rec.exit_code or 0),
        "Id": rec.id,
        "Image": rec.image,
        "ImageID": rec.image_id,
        "Names": [rec.name],
        "Pid": rec.pid if rec.state in ("running", "stopping") else 0,
        "Ports": ins.ports(rec),
        "StartedAt": int(rec.started or 0),
        "State": rec.state,
        "Status": ins.status_text(rec),
        # Not in podman's ps: the limits, under inspect's HostConfig names ({{.Memory}}, {{.PidsLimit}})
        **ins.resource_limits(rec),
    }


def _match(rec, filters: dict[str, list[str]]) -> bool:
    import re

    for key, values in filters.items():
        if key == "status":
            if rec.state not in values:
                return False
        elif key == "name":
            if not any(re.search(v, rec.name) for v in values):
                return False
        elif key == "id":
            if not any(rec.id.startswith(v) for v in values):
                return False
        elif key == "ancestor":
            if not any(
                v in (rec.image, rec.image_id) or rec.image_id.startswith(v) for v in values
            ):
                return False
        else:
            raise ContainerError(f"invalid filter {key!r}: use status=, name=, id= or ancestor=")
    return True


def _ago(ts: float) -> str:
    from rootless.runtime.inspect import human_duration

    return f"{human_duration(time.time() - ts)} ago"


@click.command(name="ps")
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Show all containers, not only running ones."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the container IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and commands.")
@click.option("--format", "fmt", default=None, help="json, or a Go template ({{.Names}} ...).")
@click.option("-f", "--filter", "filters", multiple=True, help="status=..., name=..., id=...")
@click.option("-l", "--latest", is_flag=True, help="Show only the latest container created.")
@click.option("-n", "--last", type=int, default=-1, help="Show the n last created containers.")
def ps(all_, quiet, no_trunc, fmt, filters, latest, last):
    """List containers."""
    manage = _manage()
    fl: dict[str, list[str]] = {}
    for f in filters:
        k, eq, v = f.partition("=")
        if not eq:
            raise ContainerError(f"invalid filter {f!r}: use KEY=VALUE")
        fl.setdefault(k, []).append(v)
    recs = sorted(manage.records(), key=lambda r: r.created, reverse=True)
    if not all_ and "status" not in fl and not latest and last < 0:
        recs = [r for r in recs if r.state in manage.ACTIVE]
    recs = [r for r in recs if _match(r, fl)]
    if latest:
        recs = recs[:1]
    elif last >= 0:
        recs = recs[:last]
    if quiet:
        for r in recs:
            click.echo(r.id if no_trunc else r.id[:12])
        return
    rows = [_ps_row(r) for r in recs]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=4))
        return
    if fmt:
        from rootless.commands.images import render_template

        if fmt.startswith("table"):
            click.echo(render_template(fmt, _HEADERS))
        for row, r in zip(rows, recs, strict=False):
            d = dict(row)
            d.update(
                ID=r.id if no_trunc else r.id[:12],
                Names=r.name,
                Command=" ".join(r.command),
                Ports=_ports_str(r),
                CreatedAt=_ago(r.created),
                RunningFor=_ago(r.created),
            )
            click.echo(render_template(fmt, d))
        return
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    for row, r in zip(rows, recs, strict=False):
        cmd = " ".join(r.command)
        if not no_trunc and len(cmd) > 20:
            cmd = cmd[:17] + "..."
        table.append(
            (
                r.id if no_trunc else r.id[:12],
                r.image,
                cmd,
                _ago(r.created),
                row["Status"],
                _ports_str(r),
                r.name,
            )
        )
    widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths, strict=False)).rstrip())


_HEADERS = {
    "ID": "CONTAINER ID",
    "Id": "CONTAINER ID",
    "Image": "IMAGE",
    "ImageID": "IMAGE ID",
    "Command": "COMMAND",
    "CreatedAt": "CREATED",
    "Created": "CREATED",
    "RunningFor": "CREATED",
    "Status": "STATUS",
    "State": "STATE",
    "Ports": "PORTS",
    "Names": "NAMES",
    "Pid": "PID",
    "ExitCode": "EXIT CODE",
    "StartedAt": "STARTED AT",
    "ExitedAt": "EXITED AT",
    "Exited": "EXITED",
    "AutoRemove": "AUTO REMOVE",
    "Memory": "MEMORY",
    "MemorySwap": "MEMORY SWAP",
    "MemoryReservation": "MEMORY RESERVATION",
    "NanoCpus": "NANO CPUS",
    "CpuShares": "CPU SHARES",
    "CpuWeight": "CPU WEIGHT",
    "CpusetCpus": "CPUSET CPUS",
    "PidsLimit": "PIDS LIMIT",
    "OomScoreAdj": "OOM SCORE ADJ",
}


def _ports_str(rec) -> str:
    from rootless.runtime.inspect import ports_text

    return ports_text(rec)


# --- logs --------------------------------------------------------------------------------------------


def _since(value: str | None) -> float | None:
    """--since/--until: RFC 3339 time, a Unix time, or a duration before now (10m, 1h30m, 5s)."""
    import re

    if not value:
        return None
    v = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    if re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms))+", v):
        total = 0.0
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", v):
            total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return time.time() - total
    from rootless.runtime.logs import parse_timestamp

    try:
        return parse_timestamp(v)
    except ValueError:
        raise ContainerError(
            f"invalid time {value!r}: use RFC 3339 (2024-01-02T15:04:05Z), a Unix time or a duration (10m)"
        ) from None


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow the log output.")
@click.option("--tail", default=-1, type=int, help="Show only the last N lines (-1: all).")
@click.option("--since", default=None, help="Show logs since a time or duration (10m).")
@click.option("--until", default=None, help="Show logs until a time or duration.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("-n", "--names", is_flag=True, help="Prefix each line with the container's name.")
@click.argument("containers", nargs=-1, required=True)
def logs(follow, tail, since, until, timestamps, names, containers):
    """Fetch the logs of one or more containers."""
    from collections import deque

    from rootless.runtime import logs as L

    manage = _manage()
    since_t, until_t = _since(since), _since(until)
    recs = [manage.get(c) for c in containers]
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def emit(rec, ts, stream, content):
        if since_t is not None or until_t is not None:
            t = L.parse_timestamp(ts)
            if (since_t is not None and t < since_t) or (until_t is not None and t > until_t):
                return
        prefix = b""
        if names or len(recs) > 1:
            prefix += rec.id[:12].encode() + b" "
        if timestamps:
            prefix += ts.encode() + b" "
        (err if stream == "stderr" else out).write(prefix + content)

    try:
        for rec in recs:
            offset = 0
            if tail >= 0:
                last = deque(L.entries(rec.log_path), maxlen=tail) if tail else ()
                for ts, stream, content, _off in last:
                    emit(rec, ts, stream, content)
                size = os.path.getsize(rec.log_path) if os.path.exists(rec.log_path) else 0
                offset = size
            else:
                for ts, stream, content, off in L.entries(rec.log_path, 0, final=not follow):
                    emit(rec, ts, stream, content)
                    offset = off
                if not follow and os.path.exists(rec.log_path):
                    offset = os.path.getsize(rec.log_path)
            if not follow:
                continue
            out.flush()
            while True:
                fresh = manage.get(rec.id)
                done = fresh.state not in manage.ACTIVE and not fresh.alive("monitor")
                got = False
                for ts, stream, content, off in L.entries(rec.log_path, offset, final=done):
                    emit(rec, ts, stream, content)
                    offset = off
                    got = True
                if done:
                    break
                out.flush()
                err.flush()
                if not got:
                    time.sleep(0.1)
    except BrokenPipeError:
        pass
    out.flush()


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

    manage = _manage()
    rec = manage.get(containers[0])
    offset = os.path.getsize(rec.log_path) if os.path.exists(rec.log_path) else 0
    _start(rec)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    while True:
        fresh = manage.get(rec.id)
        done = fresh.state not in manage.ACTIVE and not fresh.alive("monitor")
        got = False
        for _ts, stream, content, off in L.entries(rec.log_path, offset, final=done):
            (err if stream == "stderr" else out).write(content)
            offset = off
            got = True
        out.flush()
        err.flush()
        if done:
            break
        if not got:
            time.sleep(0.05)
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
    manage = _manage()
    names = _names_or_all(containers, all_, running=True)
    if ignore:
        names = [n for n in names if _exists(n)]
    _each(names, lambda r: manage.stop(r, timeout))


@click.command()
@click.option(
    "-t", "--time", "timeout", default=10, type=int, help="Seconds to wait before SIGKILL."
)
@click.option("-a", "--all", "all_", is_flag=True, help="Restart all containers.")
@click.argument("containers", nargs=-1)
def restart(timeout, all_, containers):
    """Restart one or more containers."""
    manage = _manage()

    def do(rec):
        manage.stop(rec, timeout)
        _start(manage.get(rec.id))

    _each(_names_or_all(containers, all_, running=False), do)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send (default KILL).")
@click.option("-a", "--all", "all_", is_flag=True, help="Signal all running containers.")
@click.argument("containers", nargs=-1)
def kill(sig, all_, containers):
    """Send a signal to the main process of one or more containers."""
    manage = _manage()
    n = manage.parse_signal(sig)
    _each(_names_or_all(containers, all_, running=True), lambda r: manage.kill(r, n))


@click.command()
@click.argument("containers", nargs=-1, required=True)
def wait(containers):
    """Wait for containers to exit and print their exit codes."""
    manage = _manage()
    for c in containers:
        rec = manage.wait_exit(manage.get(c))
        click.echo(-1 if rec.exit_code is None else rec.exit_code)


def _exists(name: str) -> bool:
    try:
        _manage().get(name)
        return True
    except ContainerError:
        return False


def _names_or_all(containers, all_, running: bool) -> list[str]:
    manage = _manage()
    if all_:
        return [r.id for r in manage.records() if not running or r.state in manage.ACTIVE]
    if not containers:
        raise ContainerError("give at least one container name or ID, or --all")
    return list(containers)


# --- rm / prune -------------------------------------------------------------------------------------


@click.command()
@click.option("-f", "--force", is_flag=True, help="Stop and remove running containers too.")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes (there are none).")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all containers.")
@click.option("-i", "--ignore", is_flag=True, help="Ignore containers that do not exist.")
@click.option("-t", "--time", "timeout", default=None, type=int, hidden=True)
@click.argument("containers", nargs=-1)
def rm(force, volumes, all_, ignore, timeout, containers):
    """Remove one or more containers."""
    manage = _manage()
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
        if force and timeout and rec.state in manage.ACTIVE:
            manage.stop(rec, timeout)
            rec = manage.get(rec.id)
        manage.remove(rec, force=force)

    if all_:
        _each(names, lambda r: (do(r), click.echo(r.id))[0], quiet_name=False)
    else:
        _each(names, do)


def _prune(force):
    manage = _manage()
    for r in manage.records():
        if r.state in manage.ACTIVE or r.alive("monitor"):
            continue
        manage.remove(r)
        click.echo(r.id)


# --- port / top -------------------------------------------------------------------------------------


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show ports of all running containers.")
@click.argument("container", required=False)
@click.argument("private_port", required=False)
def port(all_, container, private_port):
    """List published port mappings of a container."""
    from rootless.runtime import inspect as ins

    manage = _manage()
    if all_:
        recs = [r for r in manage.records() if r.state in manage.ACTIVE]
    elif container:
        recs = [manage.get(container)]
    else:
        raise ContainerError("give a container name or ID, or --all")
    want = None
    if private_port:
        num, _, proto = private_port.partition("/")
        want = (int(num) if num.isdigit() else -1, proto or "tcp")
    for r in recs:
        for p in ins.ports(r):
            if want and (p["container_port"], p["protocol"]) != want:
                continue
            host = f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}"
            if want:
                click.echo(host)
            elif all_:
                click.echo(f"{r.id[:12]}\t{p['container_port']}/{p['protocol']} -> {host}")
            else:
                click.echo(f"{p['container_port']}/{p['protocol']} -> {host}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("container")
@click.argument("descriptors", nargs=-1)
def top(container, descriptors):
    """Display the running processes of a container."""
    from rootless.runtime.top import top as top_rows

    rec = _manage().get(container)
    rows = top_rows(rec, list(descriptors))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())


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


def _inspect_cmd():
    from rootless.commands.inspect import inspect_cmd_impl

    @container.command(name="inspect")
    @click.argument("names", nargs=-1, required=True)
    @click.option("-f", "--format", "fmt", default=None)
    def container_inspect(names, fmt):
        """Display details of containers."""
        inspect_cmd_impl(names, fmt, "container")


_inspect_cmd()
