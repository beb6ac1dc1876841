"""`volume`: create, ls, inspect, rm, prune, exists, with podman's flags, output and exit codes. The
work is in rootless.volumes; this module parses flags and prints."""

from __future__ import annotations

import sys

import click

from rootless.commands import gotable
from rootless.errors import RootlessError

HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE",
           "Labels": "LABELS", "Options": "OPTIONS", "CreatedAt": "CREATED AT",
           "MountCount": "MOUNT COUNT", "Anonymous": "ANONYMOUS"}  # fmt: skip


@click.group(name="volume")
def volume():
    """Manage volumes."""


def _context(data: dict, created_ns: int) -> dict:
    """A volume's fields as a template sees them (CreatedAt is a Go time)."""
    return {**data, "Anonymous": data.get("Anonymous", False),
            "CreatedAt": gotable.go_time_string(created_ns)}  # fmt: skip


@volume.command(name="create")
@click.option("--driver", default="local", help="Volume driver (local).")
@click.option("-l", "--label", "labels", multiple=True, help="Set metadata (KEY=VALUE).")
@click.option(
    "-o", "--opt", "opts", multiple=True, help="Driver options: type=, device=, o=, nocopy."
)
@click.option("--ignore", is_flag=True, help="Do nothing if the volume exists already.")
@click.argument("name", required=False)
def create(driver, labels, opts, ignore, name):
    """Create a new volume."""
    from rootless.filters import parse_labels
    from rootless.volumes import store

    options = parse_labels(opts, "--opt")
    vol = store.create(
        name, labels=parse_labels(labels), options=options, driver=driver, ignore=ignore
    )
    click.echo(vol.name)


@volume.command(name="ls")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="name=, label=, driver=, dangling=, until=..."
)
@click.option("--format", "fmt", default=None, help="json, or a Go template ({{.Name}}).")
@click.option("--noheading", is_flag=True, help="Do not print the header.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the volume names.")
def ls(filters, fmt, noheading, quiet):
    """List volumes."""
    from rootless.filters import split
    from rootless.volumes import manage, usage

    users = usage.users()
    vols = manage.listing(split(filters), users)
    if quiet:
        for v in vols:
            click.echo(v.name)
        return
    if fmt == "json":
        gotable.echo_json([manage.inspect(v, users) for v in vols])
        return
    if fmt:
        items = [_context(manage.inspect(v, users), v.created_ns) for v in vols]
        lines = gotable.render(fmt, items, HEADERS)
        for line in lines[1:] if noheading and fmt.startswith("table") else lines:
            click.echo(line)
        return
    if not vols:
        return  # podman prints no header for an empty list
    rows = ([] if noheading else [["DRIVER", "VOLUME NAME"]]) + [[v.driver, v.name] for v in vols]
    for line in gotable.tabwrite(rows):
        click.echo(line)


volume.add_command(ls, name="list")


@volume.command(name="inspect")
@click.option("-a", "--all", "all_", is_flag=True, help="Inspect all volumes.")
@click.option("-f", "--format", "fmt", default="json", help="json (default) or a Go template.")
@click.argument("names", nargs=-1)
def inspect(all_, fmt, names):
    """Display details of volumes."""
    from rootless.volumes import manage, store, usage

    if not names and not all_:
        raise RootlessError("provide one or more volume names or use --all")
    users = usage.users()
    vols, missing = [], None
    if all_:
        vols = store.list_volumes()
    for n in names:
        try:
            vols.append(store.get(n))
        except store.NoSuchVolume:
            missing = missing or n
    data = [manage.inspect(v, users) for v in vols]
    if fmt and fmt != "json":
        for line in gotable.render(
            fmt, [_context(d, v.created_ns) for d, v in zip(data, vols, strict=True)], HEADERS
        ):
            click.echo(line)
    else:
        gotable.echo_json(data, indent=5)
    if missing:
        raise RootlessError(f"inspecting object: no such volume {missing}")


@volume.command(name="rm")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all volumes.")
@click.option("-f", "--force", is_flag=True, help="Remove the containers that use them first.")
@click.option(
    "-t", "--time", "timeout", type=int, default=None, help="Seconds to wait for them to stop."
)
@click.argument("names", nargs=-1)
def rm(all_, force, timeout, names):
    """Remove one or more volumes."""
    from rootless.volumes import manage, store

    if all_:
        names = [v.name for v in store.list_volumes()]
    elif not names:
        raise RootlessError("provide one or more volume names or use --all")
    errors = []
    for n in names:
        try:
            click.echo(manage.remove(n, force=force, timeout=timeout))
        except RootlessError as e:
            errors.append(e)
    _raise_last(errors)


def _raise_last(errors) -> None:
    if errors:
        for e in errors[:-1]:
            click.echo(f"Error: {e}", err=True)
        raise errors[-1]


volume.add_command(rm, name="remove")


@volume.command(name="prune")
@click.option("--filter", "filters", multiple=True, help="label=KEY[=VALUE], label!=..., until=...")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def prune(filters, force):
    """Remove all volumes no container uses."""
    from rootless.filters import split
    from rootless.volumes import manage

    fl = split(filters)
    if not force:
        names = manage.unused(fl)
        question = ("WARNING! This will remove all volumes not used by at least one container. "
                    "The following volumes will be removed:\n" + "".join(f"{n}\n" for n in names)
                    + "Are you sure you want to continue? [y/N] ")  # fmt: skip
        if not gotable.confirm(question):
            return
    for name in manage.prune(fl):
        click.echo(name)


@volume.command(name="exists")
@click.argument("name")
def exists(name):
    """Exit 0 if the volume exists, 1 if not."""
    from rootless.volumes import store

    sys.stdout.flush()
    return 0 if store.find(name) is not None else 1
