"""`rootless run`: podman's run flags (the shared ones in rootless.commands.runopts, with `create`)
handed to the runtime (rootless.runtime.api)."""

import click

from rootless.commands.runopts import RUN_CONTEXT, run_options, storage_driver, to_run_options


@click.command(context_settings=RUN_CONTEXT, help="Run a command in a new container.")
@click.option(
    "-d", "--detach", is_flag=True, help="Run in the background and print the container's ID."
)
@click.option("--preserve-fds", type=click.IntRange(min=0), default=0,
              help="Pass N more file descriptors (3 to 3+N-1) to the container.")  # fmt: skip
@click.option("--rmi", is_flag=True,
              help="Remove the image once the container exits, unless another container uses it (implies --rm).")  # fmt: skip
@run_options
@click.pass_context
def run(ctx, **kw):
    detach = kw.pop("detach")
    preserve_fds = kw.pop("preserve_fds")
    rmi = kw.pop("rmi")
    kw["rm"] = kw["rm"] or rmi
    driver = storage_driver(ctx)
    import sys

    prestart = sys.modules.get("rootless.fuse_overlay.prestart")  # imported if started early
    # a nested user namespace (--userns=keep-id...) runs on the fuse overlay (runtime.usermode)
    nested = kw["userns"] not in ("", "host") or any(
        kw[k] for k in ("uidmap", "gidmap", "subuidname", "subgidname")
    )
    if (driver == "fuse-overlay" or (nested and driver == "overlay")) and not detach:
        # the daemon's interpreter imports pyfuse3 and trio while the runtime sets up (if the CLI's
        # first lines have not started it already: prestart.early)
        from rootless.fuse_overlay import prestart

        prestart.start()
    elif prestart is not None:
        prestart.reap()  # a wrong early guess
    try:
        opts = _preserve_fds(to_run_options(kw, driver), preserve_fds)
    except BaseException:
        if prestart is not None:
            prestart.reap()
        raise
    from rootless.runtime import api

    if detach:
        click.echo(api.run_detached(opts))
        return 0
    try:
        rc = api.run(opts)
    finally:
        if prestart is not None:
            prestart.reap()
    if rmi and not opts.rootfs:
        _remove_image(opts.image)
    # Everything is cleaned up and reaped: skip the interpreter's teardown (~10 ms of start-to-exit).
    import os

    from rootless.process import flush_stdio

    flush_stdio()
    os._exit(rc)


def _remove_image(name: str) -> None:
    """--rmi: remove the image by the name the container was run with (podman: untag it if it has
    other names), quietly keeping it if another container uses it."""
    from rootless.image import remove
    from rootless.image.store import Store

    try:
        remove.remove(Store.open(), [name], ignore=True)  # errors are kept in its report
    except Exception:  # noqa: BLE001 - the container's exit code is what run reports
        pass


def _preserve_fds(opts, count: int):
    """--preserve-fds, or systemd's socket activation (LISTEN_FDS), as podman."""
    import dataclasses
    import os

    from rootless.runtime import security

    count, env = security.preserved_fds(count, os.environ)
    return dataclasses.replace(opts, preserve_fds=count, env=list(opts.env) + env)
