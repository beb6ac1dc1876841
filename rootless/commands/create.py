"""`rootless create` and `rootless init`: make a container from podman's run flags without starting
it (the options are rootless.commands.runopts', shared with `run`), and initialise a created one.

create prints the full id and leaves the container in state "created" (ps -a, inspect); `start`
runs it. The work is rootless.runtime.api.create (plan everything, write the record)."""

import click

from rootless.commands.runopts import RUN_CONTEXT, run_options, storage_driver, to_run_options


@click.command(context_settings=RUN_CONTEXT, help="Create but do not start a container.")
@run_options
@click.pass_context
def create(ctx, **kw):
    from rootless.runtime import api

    opts = to_run_options(kw, storage_driver(ctx))
    rec = api.create_only(opts)
    click.echo(rec.id)
    return 0


@click.command(name="init")
@click.option("-a", "--all", "all_", is_flag=True, help="Initialize all containers.")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container created.")
@click.argument("containers", nargs=-1)
def init(all_, latest, containers):
    """Initialize one or more containers (created -> initialized: checked and described)."""
    from rootless.commands.lifecycle import _each_rec, _select
    from rootless.runtime import api

    targets = _select(containers, all_, (), latest)
    if all_:
        targets = [(n, r) for n, r in targets if r.state in ("created", "exited")]
    _each_rec(targets, api.init)
    return 0
