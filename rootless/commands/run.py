"""`rootless run`: parse podman's run flags and hand them to the runtime (rootless.runtime)."""

import click

from rootless.runtime.spec import RunOptions


@click.command(
    context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False},
    help="Run a command in a new container.",
)
@click.option("--rm", "rm", is_flag=True, help="Remove the container when it exits.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-d", "--detach", is_flag=True, hidden=True)
@click.option("--name", default=None, help="Name the container.")
@click.option("-h", "--hostname", default=None, help="Container host name.")
@click.option(
    "-e", "--env", multiple=True, help="Set an environment variable (NAME=VALUE or NAME)."
)
@click.option("--env-file", multiple=True, help="Read environment variables from a file.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-u", "--user", default=None, help="user[:group] to run as (name or id).")
@click.option(
    "--entrypoint", default=None, help="Override the image's entrypoint (string or JSON array)."
)
@click.option("-v", "--volume", multiple=True, help="Bind mount HOST:CONTAINER[:ro].")
@click.option("--tmpfs", multiple=True, help="Mount a tmpfs at CONTAINER[:OPTIONS].")
@click.option("--mount", multiple=True, help="type=bind|tmpfs,source=..,target=..[,ro]")
@click.option("--read-only", is_flag=True, help="Make the root filesystem read-only.")
@click.option(
    "--init", is_flag=True, help="Run an init (tini) as PID 1 that forwards signals and reaps."
)
@click.option("--cap-add", multiple=True, help="Add a capability.")
@click.option("--cap-drop", multiple=True, help="Drop a capability (ALL for all).")
@click.option(
    "--security-opt", multiple=True, help="seccomp=unconfined|PROFILE.json, no-new-privileges"
)
@click.option("--privileged", is_flag=True, help="Give the container all that rootless can give.")
@click.option(
    "--network",
    "--net",
    "network",
    default=None,
    help="slirp4netns (default), pasta, none or host.",
)
@click.option(
    "-p", "--publish", multiple=True, help="Publish a port [HOSTIP:][HOSTPORT:]CTRPORT[/PROTO]."
)
@click.option("--rootfs", is_flag=True, help="IMAGE is a directory holding a root filesystem.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, **kw):
    from rootless.errors import ContainerError

    if kw.pop("detach"):
        raise ContainerError("run -d is not supported yet: run in the foreground")
    driver = (ctx.obj or {}).get("storage_driver") or "fuse-overlay"
    if driver == "fuse-overlay" and not _fuse_overlay_ready():
        driver = "overlay"
    opts = RunOptions(
        image=kw["image"],
        command=list(kw["command"]),
        entrypoint=kw["entrypoint"],
        env=list(kw["env"]),
        env_files=list(kw["env_file"]),
        workdir=kw["workdir"],
        user=kw["user"],
        hostname=kw["hostname"],
        name=kw["name"],
        volumes=list(kw["volume"]),
        tmpfs=list(kw["tmpfs"]),
        mounts=list(kw["mount"]),
        read_only=kw["read_only"],
        rm=kw["rm"],
        interactive=kw["interactive"],
        tty=kw["tty"],
        init=kw["init"],
        cap_add=list(kw["cap_add"]),
        cap_drop=list(kw["cap_drop"]),
        security_opts=list(kw["security_opt"]),
        privileged=kw["privileged"],
        network=kw["network"] or "slirp4netns",
        storage_driver=driver,
        publish=list(kw["publish"]),
        rootfs=kw["rootfs"],
    )
    from rootless.runtime.container import run as run_container

    rc = run_container(opts)
    # Everything is cleaned up and reaped: skip the interpreter's teardown (~10 ms of start-to-exit).
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


def _fuse_overlay_ready() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("rootless.fuse_overlay.mount") is not None
    except ImportError:
        return False
