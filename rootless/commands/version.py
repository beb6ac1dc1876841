"""`version`: rootless's version as podman version prints its own (Client block, --format)."""

from __future__ import annotations

import json
import platform

import click

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def client() -> dict:
    """The fields of podman version's Client, with rootless's values (no Go: the Python version
    stands in for GoVersion; the API version is the Docker API that `system service` speaks)."""
    from rootless import __version__
    from rootless.api.protocol import API_VERSION

    arch = platform.machine()
    return {
        "APIVersion": API_VERSION,
        "Version": __version__,
        "GoVersion": f"python{platform.python_version()}",
        "GitCommit": "",
        "BuiltTime": "",
        "Built": 0,
        "OsArch": f"linux/{_ARCH.get(arch, arch)}",
        "Os": "linux",
    }


@click.command()
@click.option(
    "-f", "--format", "fmt", default=None, help="json or a Go template ({{.Client.Version}})."
)
def version(fmt):
    """Display the rootless version information."""
    c = client()
    if fmt == "json":
        click.echo(json.dumps({"Client": c}, separators=(",", ":")))
    elif fmt:
        from rootless.commands.template import render_template

        click.echo(render_template(fmt, {"Client": c}))
    else:
        rows = [("Client:", "rootless"), ("Version:", c["Version"]), ("API Version:", c["APIVersion"]),
                ("Python Version:", platform.python_version()), ("OS/Arch:", c["OsArch"])]  # fmt: skip
        for k, v in rows:
            click.echo(f"{k:<16}{v}")
