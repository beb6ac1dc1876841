"""`kube generate|play|down`, and their older names `generate kube` and `play kube`, with podman's
flags and output. The work is in rootless.kube; this module parses flags and prints."""

from __future__ import annotations

import sys

import click

from rootless.commands.flags import PodmanCommand, value


def _read(path: str) -> str:
    from rootless.kube.yamltext import KubeError

    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise KubeError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None


def _driver(ctx) -> str:
    from rootless.config import select_driver

    return select_driver((ctx.find_root().obj or {}).get("storage_driver"))[0]


@click.command(name="generate", cls=PodmanCommand)
@click.option("-f", "--filename", default=None, help="Write the YAML to this file.")
@click.option("-s", "--service", is_flag=True, help="Add a Service for the published ports.")
@click.option(
    "-t",
    "--type",
    "kind",
    default="pod",
    type=click.Choice(["pod", "deployment", "job"]),
    help="The kind to generate: pod (default), deployment or job.",
)
@click.option("-r", "--replicas", default=1, type=int, help="A Deployment's replicas (default 1).")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def generate(ctx, filename, service, kind, replicas, names):
    """Generate Kubernetes YAML from containers, pods or volumes."""
    from rootless.kube.generate import generate as gen
    from rootless.kube.yamltext import KubeError

    text = gen(list(names), kind=kind, service=value(ctx, "service", service), replicas=replicas)
    if filename:
        import os

        if os.path.exists(filename):
            raise KubeError(f"cannot write to {filename!r}: file exists (remove it first)")
        with open(filename, "w") as f:
            f.write(text)
        return
    click.echo(text, nl=False)


def _load(ctx, files, configmaps, network):
    from rootless.kube import play as kplay
    from rootless.kube.yamltext import load

    docs = []
    for path in files:
        docs += load(_read(path), path)
    cms = {}
    for path in configmaps:
        cms.update(kplay.configmaps_of(load(_read(path), path), path))
    where = ", ".join(files)
    return kplay.plan(docs, where=where, configmaps=cms, network=network,
                      storage_driver=_driver(ctx))  # fmt: skip


def _down(p, force: bool) -> None:
    from rootless.kube import play as kplay

    stopped, removed, volumes = kplay.down(p, volumes_too=force)
    if stopped:
        click.echo("Pods stopped:")
        for i in stopped:
            click.echo(i)
    if removed:
        click.echo("Pods removed:")
        for i in removed:
            click.echo(i)
    if volumes:
        click.echo("Volumes removed:")
        for v in volumes:
            click.echo(v)


@click.command(name="play", cls=PodmanCommand)
@click.option("--down", is_flag=True, help="Stop and remove the pods the YAML describes.")
@click.option("--replace", is_flag=True, help="Remove pods of the same names first.")
@click.option("--start", is_flag=True, default=True, help="Start the pods (default true).")
@click.option("--network", "--net", "network", default="", help="The pods' network.")
@click.option(
    "--publish", multiple=True, help="Publish or override a port [HOSTIP:][HOSTPORT:]PORT."
)
@click.option("--configmap", multiple=True, help="A YAML file of ConfigMaps to use.")
@click.option("--force", is_flag=True, help="With --down: remove the claimed volumes too.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing while pulling.")
@click.argument("files", nargs=-1, required=True)
@click.pass_context
def play(ctx, down, replace, start, network, publish, configmap, force, quiet, files):
    """Play a Kubernetes YAML: create its pods, containers and volumes."""
    from rootless.kube import play as kplay

    p = _load(ctx, files, configmap, network)
    if down:
        _down(p, force)
        return
    report = kplay.play(p, publish=list(publish), replace=replace,
                        start=value(ctx, "start", start))  # fmt: skip
    for name in report.volumes:
        click.echo(f"Volume:\n{name}")
    for pod_id, ctrs in report.pods:
        click.echo(f"Pod:\n{pod_id}")
        if ctrs:
            click.echo("Container:" if len(ctrs) == 1 else "Containers:")
            for c in ctrs:
                click.echo(c)
        click.echo()


@click.command(name="down", cls=PodmanCommand)
@click.option("--force", is_flag=True, help="Remove the claimed volumes too.")
@click.argument("files", nargs=-1, required=True)
@click.pass_context
def down(ctx, force, files):
    """Stop and remove the pods a Kubernetes YAML describes."""
    _down(_load(ctx, files, (), ""), force)


@click.group(name="kube")
def kube():
    """Play containers, pods or volumes from a Kubernetes YAML, or generate one."""


kube.add_command(generate)
kube.add_command(play)
kube.add_command(down)


@click.group(name="generate")
def generate_group():
    """Generate structured data (kube: Kubernetes YAML)."""


generate_group.add_command(generate, name="kube")


@click.group(name="play")
def play_group():
    """Play containers, pods or volumes from a structured file (kube: Kubernetes YAML)."""


play_group.add_command(play, name="kube")
