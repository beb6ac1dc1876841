"""`rootless build` (also `image build`): podman's and docker's flags, handed to rootless.build."""

from __future__ import annotations

import os
import sys

import click

from rootless.commands.flags import PodmanCommand
from rootless.commands.flags import bool_option as _bool_option
from rootless.commands.flags import value as _value
from rootless.errors import RootlessError


def _pairs(values, flag: str, from_env: bool = False) -> dict[str, str]:
    out = {}
    for item in values:
        k, eq, v = item.partition("=")
        if not k:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=flag)
        if not eq:
            if not from_env:
                v = ""
            elif k in os.environ:
                v = os.environ[k]
            else:
                continue
        out[k] = v
    return out


@click.command(cls=PodmanCommand, context_settings={"ignore_unknown_options": False})
@click.argument("context", required=False, default=".")
@click.option(
    "-f",
    "--file",
    "file_",
    default=None,
    metavar="PATH",
    help="The Containerfile (default: CONTEXT/Containerfile, else Dockerfile); - reads stdin.",
)
@click.option("-t", "--tag", "tags", multiple=True, help="Name the image (repeatable).")
@click.option("--build-arg", multiple=True, metavar="ARG=VALUE", help="Set a build argument.")
@click.option("--target", default=None, help="Build this stage (and the stages it needs).")
@_bool_option("--no-cache", default=False, help="Do not use the build cache.")
@click.option(
    "--pull",
    default="missing",
    metavar="[=POLICY]",
    help="always, missing (default), never or newer; bare --pull is always.",
)
@click.option("--pull-always", is_flag=True, hidden=True)
@click.option("--pull-never", is_flag=True, hidden=True)
@_bool_option("--layers", default=True, help="Cache each step as an intermediate image (default).")
@_bool_option("--squash", default=False, help="Give the final stage's new content one layer.")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Add a label to the image.")
@click.option("--platform", default=None, help="Only this host's platform (linux/ARCH) is built.")
@_bool_option("-q", "--quiet", default=False, help="Print only the image id.")
@click.option("--iidfile", default=None, metavar="PATH", help="Write the image id to this file.")
@click.option(
    "--network",
    "--net",
    "network",
    default=None,
    help="Network for RUN steps: slirp4netns (default), pasta, none or host.",
)
@click.option("--security-opt", multiple=True, help="Security options for RUN steps.")
@click.option("--cap-add", multiple=True, help="Add a capability to RUN steps.")
@click.option("--cap-drop", multiple=True, help="Drop a capability from RUN steps.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["oci", "docker"]),
    default="oci",
    help="Image format (docker keeps HEALTHCHECK, SHELL and ONBUILD).",
)
@_bool_option("--rm", default=True, help="Remove build containers after each step (always).")
@_bool_option("--force-rm", default=False, help="Remove build containers even on failure (always).")
@click.option("--progress", default=None, hidden=True)
@click.pass_context
def build(ctx, context, file_, tags, build_arg, target, no_cache, pull, pull_always, pull_never,
          layers, squash, label, platform, quiet, iidfile, network, security_opt, cap_add,
          cap_drop, fmt, rm, force_rm, progress):  # fmt: skip
    """Build an image from a Containerfile or Dockerfile."""
    from rootless.build.builder import BuildOptions
    from rootless.build.builder import build as run_build

    if context.startswith(("http://", "https://", "git://", "git@")):
        raise RootlessError(f"{context}: only a local directory can be the build context")
    if not os.path.isdir(context):
        raise RootlessError(f"the build context {context} is not a directory")
    policy = "always" if pull_always else "never" if pull_never else pull.lower()
    policy = {"true": "always", "false": "missing", "ifmissing": "missing",
              "ifnewer": "newer"}.get(policy, policy)  # fmt: skip
    if policy not in ("always", "missing", "never", "newer"):
        raise click.BadParameter(
            f"{pull!r}: use always, missing, never or newer", param_hint="--pull"
        )
    text = None
    if file_ == "-":
        text = sys.stdin.read()
    opts = BuildOptions(
        context=context, file=file_, file_text=text, tags=list(tags),
        build_args=_pairs(build_arg, "--build-arg", from_env=True), target=target,
        no_cache=_value(ctx, "no_cache", no_cache), pull=policy,
        layers=_value(ctx, "layers", layers), squash=_value(ctx, "squash", squash),
        labels=_pairs(label, "--label"), platform=platform, quiet=_value(ctx, "quiet", quiet), iidfile=iidfile, network=network or "slirp4netns",
        security_opts=list(security_opt), cap_add=list(cap_add), cap_drop=list(cap_drop),
        fmt=fmt, storage_driver=(ctx.obj or {}).get("storage_driver"),
    )  # fmt: skip
    image_id = run_build(opts)
    click.echo(image_id)
