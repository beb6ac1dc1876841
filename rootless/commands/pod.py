"""`pod`: create, start, stop, restart, kill, rm, ps, inspect, exists, top, logs, prune, with podman's
flags, output and exit codes. The work is in rootless.pods; this module parses flags and prints."""

from __future__ import annotations

import sys

import click

from rootless.commands import gotable
from rootless.commands.flags import PodmanCommand, value
from rootless.errors import RootlessError


def _lookup(ref: str, exit_code: int | None = None):
    from rootless.pods import store

    return store.lookup(ref, exit_code=exit_code)


@click.group(name="pod")
def pod():
    """Manage pods."""


@pod.command(name="create", cls=PodmanCommand)
@click.option("-n", "--name", default=None, help="Name the pod.")
@click.option("-l", "--label", "labels", multiple=True, help="Set metadata (KEY=VALUE).")
@click.option("--label-file", multiple=True, help="Read labels from a file (KEY=VALUE lines).")
@click.option("-h", "--hostname", default="", help="The pod's hostname (default: its name).")
@click.option(
    "--infra", is_flag=True, default=True, help="Create an infra container (default true)."
)
@click.option("--infra-command", default=None, help="The infra container's command.")
@click.option(
    "--infra-image", default="", help="An image for the infra container (default: catatonit -P)."
)
@click.option("--infra-name", default="", help="The infra container's name.")
@click.option(
    "--share", default=None, help="Namespaces to share: ipc,net,uts (default), pid; +NS adds."
)
@click.option(
    "-p",
    "--publish",
    multiple=True,
    help="Publish a port of the pod [HOSTIP:][HOSTPORT:]PORT[/PROTO].",
)
@click.option(
    "--network",
    "--net",
    "network",
    default="",
    help="The pod's network: slirp4netns, pasta, none, host.",
)
@click.option("--exit-policy", default="continue", help="continue (default) or stop.")
@click.option("--pod-id-file", default=None, help="Write the pod's ID to this file.")
@click.option("--replace", is_flag=True, help="Replace a pod of the same name.")
@click.argument("pod_name", required=False)
@click.pass_context
def create(ctx, name, labels, label_file, hostname, infra, infra_command, infra_image, infra_name,
           share, publish, network, exit_policy, pod_id_file, replace, pod_name):  # fmt: skip
    """Create a new pod."""
    from rootless.config import select_driver
    from rootless.filters import parse_labels
    from rootless.pods import manage

    if name and pod_name and name != pod_name:
        raise RootlessError("give the pod's name once: --name or an argument")
    lab = {}
    for path in label_file:
        lab.update(parse_labels(_read_lines(path), f"--label-file {path}:"))
    lab.update(parse_labels(labels))
    created = manage.create(
        name=name or pod_name, labels=lab, hostname=hostname, share=share,
        infra_on=value(ctx, "infra", infra), infra_command=_command(infra_command),
        infra_image=infra_image, infra_name=infra_name, publish=list(publish), network=network,
        exit_policy=exit_policy, create_command=["rootless", *sys.argv[1:]],
        storage_driver=select_driver((ctx.find_root().obj or {}).get("storage_driver"))[0],
        replace_existing=replace,
    )  # fmt: skip
    if pod_id_file:
        with open(pod_id_file, "w") as f:
            f.write(created.id)
    click.echo(created.id)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise RootlessError(f"--label-file {path}: {e.strerror}") from None


def _command(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from rootless.runtime.spec import parse_entrypoint

    return parse_entrypoint(text)


def _targets(refs, all_: bool, latest: bool = False, exit_code: int | None = None) -> list:
    from rootless.pods import store

    if all_:
        return store.list_pods()
    if latest:
        pods = store.list_pods()
        if not pods:
            raise RootlessError("no pods to act on")
        return pods[-1:]
    if not refs:
        raise RootlessError("give at least one pod name or ID, or --all")
    return [_lookup(r, exit_code) for r in refs]


def _each(pods, fn) -> None:
    """fn on each pod, printing its id; one error line per failure, the last one raised."""
    errors = []
    for p in pods:
        try:
            fn(p)
            click.echo(p.id)
        except RootlessError as e:
            errors.append(e)
    if errors:
        for e in errors[:-1]:
            click.echo(f"Error: {e}", err=True)
        raise errors[-1]


@pod.command(name="start")
@click.option("-a", "--all", "all_", is_flag=True, help="Start all pods.")
@click.option("-l", "--latest", is_flag=True, help="Start the latest pod.")
@click.argument("pods", nargs=-1)
def start(all_, latest, pods):
    """Start one or more pods."""
    from rootless.pods import manage

    _each(_targets(pods, all_, latest), manage.start)


@pod.command(name="stop")
@click.option("-a", "--all", "all_", is_flag=True, help="Stop all pods.")
@click.option("-l", "--latest", is_flag=True, help="Stop the latest pod.")
@click.option("-i", "--ignore", is_flag=True, help="Ignore pods that do not exist.")
@click.option(
    "-t",
    "--time",
    "timeout",
    default=None,
    type=int,
    help="Seconds to wait before SIGKILL (default: each container's stop timeout).",
)
@click.argument("pods", nargs=-1)
def stop(all_, latest, ignore, timeout, pods):
    """Stop one or more pods."""
    from rootless.pods import manage

    if ignore:
        pods = [p for p in pods if _exists(p)]
        if not pods and not all_:
            return
    _each(_targets(pods, all_, latest), lambda p: manage.stop(p, timeout))


@pod.command(name="restart")
@click.option("-a", "--all", "all_", is_flag=True, help="Restart all pods.")
@click.option("-l", "--latest", is_flag=True, help="Restart the latest pod.")
@click.argument("pods", nargs=-1)
def restart(all_, latest, pods):
    """Restart one or more pods."""
    from rootless.pods import manage

    def do(p):
        manage.stop(p)  # each container's stop signal and timeout, as podman
        manage.start(p)

    _each(_targets(pods, all_, latest), do)


@pod.command(name="kill")
@click.option("-a", "--all", "all_", is_flag=True, help="Kill all pods.")
@click.option("-l", "--latest", is_flag=True, help="Kill the latest pod.")
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send (default KILL).")
@click.argument("pods", nargs=-1)
def kill(all_, latest, sig, pods):
    """Send a signal to the containers of one or more pods."""
    from rootless.pods import manage
    from rootless.runtime import api

    n = api.parse_signal(sig)
    _each(_targets(pods, all_, latest), lambda p: manage.kill(p, n))


@pod.command(name="rm")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all pods.")
@click.option("-f", "--force", is_flag=True, help="Stop and remove running containers too.")
@click.option("-i", "--ignore", is_flag=True, help="Ignore pods that do not exist.")
@click.option("-l", "--latest", is_flag=True, help="Remove the latest pod.")
@click.option(
    "-t", "--time", "timeout", default=None, type=int, help="Seconds to wait for it to stop."
)
@click.option("--pod-id-file", multiple=True, help="Read the pod's ID from this file.")
@click.argument("pods", nargs=-1)
def rm(all_, force, ignore, latest, timeout, pod_id_file, pods):
    """Remove one or more pods."""
    from rootless.pods import manage, store

    pods = list(pods) + [_read_lines(f)[0] for f in pod_id_file if _read_lines(f)]
    if ignore:
        pods = [p for p in pods if _exists(p)]
        if not pods and not all_:
            return
    targets = _targets(pods, all_, latest, exit_code=store.EXIT_NO_SUCH)
    _each(targets, lambda p: manage.remove(p, force=force, timeout=timeout))


pod.add_command(rm, name="remove")


@pod.command(name="prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def prune(force):
    """Remove all stopped pods and their containers."""
    from rootless.pods import manage

    if not force and not gotable.confirm(
        "WARNING! This will remove all stopped/exited pods..\nAre you sure you want to continue? [y/N] "
    ):
        return
    for pid in manage.prune():
        click.echo(pid)


@pod.command(name="exists")
@click.argument("name")
def exists(name):
    """Exit 0 if the pod exists, 1 if not."""
    return 0 if _exists(name) else 1


def _exists(ref: str) -> bool:
    from rootless.pods import store

    try:
        store.lookup(ref)
        return True
    except store.NoSuchPod:
        return False


@pod.command(name="inspect")
@click.option("-f", "--format", "fmt", default="json", help="json (default) or a Go template.")
@click.option("-l", "--latest", is_flag=True, help="Inspect the latest pod.")
@click.argument("pods", nargs=-1)
def inspect(fmt, latest, pods):
    """Display details of pods."""
    from rootless.pods import inspect as ins
    from rootless.pods import store

    if not pods and not latest:
        raise RootlessError("give a pod name or ID, or --latest")
    found = []
    for ref in pods or [None]:
        try:
            found.append(_targets([ref] if ref else [], False, latest)[0])
        except store.NoSuchPod:
            if fmt == "json" and not found and len(pods) == 1:
                click.echo("[]")
            raise RootlessError(f"inspecting object: no such pod {ref}") from None
    data = [ins.inspect(p) for p in found]
    if fmt and fmt != "json":
        for line in gotable.render(fmt, data, {}):
            click.echo(line)
        return
    gotable.echo_json(data[0] if len(data) == 1 else data, indent=5)


@pod.command(name="top", context_settings={"ignore_unknown_options": True})
@click.option("-l", "--latest", is_flag=True, help="Use the latest pod.")
@click.argument("pod_ref", required=False)
@click.argument("descriptors", nargs=-1)
def top(latest, pod_ref, descriptors):
    """Display the running processes of a pod's containers."""
    from rootless.pods import manage

    target = _targets([pod_ref] if pod_ref else [], False, latest)[0]
    rows = manage.top(target, list(descriptors))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())


from rootless.commands.podlogs import logs  # noqa: E402
from rootless.commands.podps import ps  # noqa: E402 - the listing lives in its own module

pod.add_command(ps, name="ps")
pod.add_command(ps, name="ls")
pod.add_command(ps, name="list")
pod.add_command(logs, name="logs")
