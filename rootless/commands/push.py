"""`push`, and the registry flags `pull` shares with it (--tls-verify, --creds, --authfile,
--retry, --retry-delay): parsed here so that a bad value is one `Error:` line, exit 125."""

from __future__ import annotations

import sys

import click

from rootless.errors import ImageError


class _Bool(click.ParamType):
    """true/false for flags such as --tls-verify; a bad value is one `Error:` line."""

    name = "bool"

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            return value
        v = str(value).strip().lower()
        if v in ("true", "1", "yes", "y", "t", "on"):
            return True
        if v in ("false", "0", "no", "n", "f", "off"):
            return False
        raise ImageError(f'invalid value "{value}" for {param.opts[-1]}: use true or false')


class _Count(click.ParamType):
    """A number of times, 0 or more (--retry)."""

    name = "count"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        v = str(value).strip()
        if not v.isdigit():
            raise ImageError(
                f'invalid value "{value}" for {param.opts[-1]}: give a number, 0 or more'
            )
        return int(v)


def _registry_options(fn):
    """The registry flags pull and push share, as podman: --tls-verify, --creds, --authfile,
    --retry, --retry-delay."""
    for opt in reversed(
        [
            click.option(
                "--tls-verify",
                "tls_verify",
                default=None,
                type=_Bool(),
                help="Require HTTPS and verify certificates (default true).",
            ),
            click.option("--creds", default=None, help="USERNAME[:PASSWORD] for the registry."),
            click.option("--authfile", default=None, help="Path of the authentication file."),
            click.option(
                "--retry",
                default=None,
                type=_Count(),
                help="Retries on a failed request (default 3, containers.conf [engine] retry).",
            ),
            click.option(
                "--retry-delay",
                default=None,
                help="Delay between retries, e.g. 2s (default 1s, doubling).",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def _access(creds, authfile, retry, retry_delay):
    """The rootless.image.pull.Access for the registry flags, checked."""
    import os

    from rootless.image import limits
    from rootless.image.pull import Access

    pair = None
    if creds is not None:
        user, sep, password = creds.partition(":")
        if not user:
            raise ImageError("--creds needs a user name: USERNAME[:PASSWORD]")
        if not sep:
            if not sys.stdin.isatty():
                raise ImageError("--creds has no password and there is no terminal to ask for it")
            password = click.prompt("Password", hide_input=True)
        pair = (user, password)
    if authfile is not None and not os.path.isfile(authfile):
        raise ImageError(f"--authfile {authfile}: no such file")
    settings = limits.load_settings(retry, retry_delay)
    return Access(settings=settings, creds=pair, authfile=authfile)


@click.command()
@click.argument("image")
@click.argument("destination", required=False)
@click.option("-f", "--format", "fmt", default=None, help="Manifest type: oci or v2s2.")
@click.option("--compression-format", default=None, help="Layer compression: gzip or zstd.")
@click.option("--digestfile", default=None, help="Write the pushed manifest's digest here.")
@click.option("-q", "--quiet", is_flag=True, help="Print no progress.")
@click.option("--remove-signatures", is_flag=True, help="Accepted: rootless stores no signatures.")
@click.option("--disable-content-trust", is_flag=True, help="Docker compatibility; does nothing.")
@_registry_options
def push(
    image,
    destination,
    fmt,
    compression_format,
    digestfile,
    quiet,
    remove_signatures,
    disable_content_trust,
    tls_verify,
    creds,
    authfile,
    retry,
    retry_delay,
):
    """Push an image to a registry (DESTINATION defaults to its name)."""
    from rootless.image import push as pushmod

    opts = pushmod.PushOptions(
        fmt=pushmod.check_format(fmt),
        compression=pushmod.check_compression(compression_format),
        digestfile=digestfile,
        quiet=quiet,
        tls_verify=tls_verify,
    )
    if digestfile is not None and not digestfile:
        raise ImageError("--digestfile needs a file name")
    pushmod.push_image(image, destination, opts, _access(creds, authfile, retry, retry_delay))
