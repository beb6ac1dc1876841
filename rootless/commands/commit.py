"""`commit`, `import` and `export` (also `container commit`, `image import`, `container export`)."""

from __future__ import annotations

import os
import sys

import click

from rootless.commands.flags import PodmanCommand, bool_option, value
from rootless.errors import RootlessError


@click.command(cls=PodmanCommand)
@click.argument("container")
@click.argument("image", required=False)
@click.option("-c", "--change", multiple=True,
              help="Apply a Containerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
              "ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR).")  # fmt: skip
@click.option("-m", "--message", default=None, help="Commit message (the history comment).")
@click.option("-a", "--author", default=None, help="Author of the image.")
@bool_option(
    "-p", "--pause", default=True, help="Stop the container's processes meanwhile (default)."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
@click.option("-f", "--format", "fmt", type=click.Choice(["oci", "docker"]), default="oci",
              help="Image format.")  # fmt: skip
@click.option("--squash", is_flag=True, hidden=True)
@click.pass_context
def commit(ctx, container, image, change, message, author, pause, quiet, fmt, squash):
    """Create an image from a container's changes."""
    from rootless.build.container import commit_container

    if squash:
        raise RootlessError("commit --squash is not supported")
    if not quiet:
        click.echo("Getting image source signatures", err=True)
    image_id = commit_container(
        container, image, change=list(change), message=message, author=author,
        pause=value(ctx, "pause", pause), fmt=fmt,
    )  # fmt: skip
    if not quiet:
        click.echo(f"Copying config sha256:{image_id}", err=True)
        click.echo("Writing manifest to image destination", err=True)
    click.echo(image_id)


@click.command(name="import")
@click.argument("source")
@click.argument("reference", required=False)
@click.option("-c", "--change", multiple=True, help="Apply a Containerfile instruction.")
@click.option("-m", "--message", default=None, help="Commit message (the history comment).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
@click.option("--os", "os_", default=None, hidden=True)
@click.option("--arch", default=None, hidden=True)
def import_(source, reference, change, message, quiet, os_, arch):
    """Create an image from a tarball of a root filesystem (a file, - for stdin, or a URL)."""
    from rootless.build.commit import host_platform
    from rootless.build.imports import import_tarball

    host_os, host_arch = host_platform()
    if (os_ and os_ != host_os) or (arch and arch != host_arch):
        raise RootlessError(f"only this host's platform {host_os}/{host_arch} can be imported")
    if not quiet:
        click.echo("Getting image source signatures", err=True)
    image_id = import_tarball(source, reference, list(change), message)
    if not quiet:
        click.echo("Writing manifest to image destination", err=True)
    click.echo("sha256:" + image_id)


@click.command()
@click.argument("container")
@click.option("-o", "--output", default=None, help="Write to this file (default stdout).")
def export(container, output):
    """Export a container's filesystem as a tar archive."""
    from rootless.build.container import export as export_container

    if output is None:
        if sys.stdout.isatty():
            raise RootlessError("refusing to write a tar to a terminal: use -o FILE or redirect")
        sys.stdout.flush()
        export_container(container, sys.stdout.fileno())
        return
    tmp = f"{output}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        export_container(container, fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, output)
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
