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
@click.option(
    "-d", "--detach", is_flag=True, help="Run in the background and print the container's ID."
)
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
    multiple=True,
    help="slirp4netns (default), pasta, none, host, container:NAME, or networks: NAME[:ip=..,alias=..].",
)
@click.option("--network-alias", multiple=True, help="A name for the container on its networks.")
@click.option("--add-host", multiple=True, help="Add a line to /etc/hosts (HOST:IP).")
@click.option("--dns", multiple=True, help="A DNS server for /etc/resolv.conf (none: the image's).")
@click.option("--dns-search", multiple=True, help="A DNS search domain for /etc/resolv.conf.")
@click.option("--dns-option", multiple=True, help="A DNS option for /etc/resolv.conf.")
@click.option("--no-hosts", is_flag=True, help="Keep the image's /etc/hosts.")
@click.option(
    "-p", "--publish", multiple=True, help="Publish a port [HOSTIP:][HOSTPORT:]CTRPORT[/PROTO]."
)
@click.option(
    "-P",
    "--publish-all",
    is_flag=True,
    help="Publish every port the image exposes on a random host port.",
)
@click.option("--rootfs", is_flag=True, help="IMAGE is a directory holding a root filesystem.")
@click.option("-m", "--memory", default=None, help="Memory limit (e.g. 64m); cgroup v2 memory.max.")
@click.option("--memory-swap", default=None, help="Memory plus swap limit (-1: unlimited swap).")
@click.option("--memory-reservation", default=None, help="Memory soft limit (memory.low).")
@click.option("--cpus", default=None, help="Number of CPUs (e.g. 0.5); cpu.max.")
@click.option(
    "-c", "--cpu-shares", default=None, help="CPU shares (relative weight, 1024 = default)."
)
@click.option("--cpu-weight", default=None, help="cgroup v2 cpu.weight (1-10000).")
@click.option("--pids-limit", default=None, help="Maximum number of processes (default 2048).")
@click.option("--cpuset-cpus", default=None, help="CPUs the container may use (e.g. 0-1).")
@click.option("--oom-score-adj", default=None, help="OOM score adjustment for the container.")
@click.option(
    "--cgroup-manager",
    type=click.Choice(["systemd", "cgroupfs"]),
    default=None,
    help="How limits are enforced (default: systemd when a user manager is reachable).",
)
@click.option(
    "--cgroups",
    type=click.Choice(["enabled", "disabled"]),
    default="enabled",
    help="disabled: run without a cgroup and without limits.",
)
# volumes and pods (rootless.volumes, rootless.pods)
@click.option("--volumes-from", multiple=True, help="Mount the volumes of CONTAINER[:ro|rw].")
@click.option(
    "--image-volume",
    type=click.Choice(["bind", "tmpfs", "ignore"]),
    default="bind",
    help="The image's VOLUMEs: anonymous volumes (bind), tmpfs, or ignore.",
)
@click.option("--pod", default=None, help="Run in the pod NAME (new:NAME creates it).")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, **kw):
    detach = kw.pop("detach")
    from rootless.config import select_driver

    driver, _why = select_driver((ctx.obj or {}).get("storage_driver"))
    import sys

    prestart = sys.modules.get("rootless.fuse_overlay.prestart")  # imported if started early
    if driver == "fuse-overlay" and not detach:
        # the daemon's interpreter imports pyfuse3 and trio while the runtime sets up (if the CLI's
        # first lines have not started it already: prestart.early)
        from rootless.fuse_overlay import prestart

        prestart.start()
    elif prestart is not None:
        prestart.reap()  # a wrong early guess
    opts = RunOptions(
        **{field: kw[flag] for flag, field in _SAME},
        **{field: list(kw[flag]) for flag, field in _LISTS},
        network=(kw["network"] or ("slirp4netns",))[0],
        networks=list(kw["network"][1:]),
        network_aliases=list(kw["network_alias"]),
        add_hosts=list(kw["add_host"]),
        dns=list(kw["dns"]),
        dns_search=list(kw["dns_search"]),
        dns_options=list(kw["dns_option"]),
        no_hosts=kw["no_hosts"],
        storage_driver=driver,
        limits={k: kw[k] for k in _LIMIT_FLAGS if kw[k] is not None},
        volumes_from=list(kw["volumes_from"]),
        image_volume=kw["image_volume"],
    )
    if kw["pod"]:
        from rootless.pods import manage

        opts = manage.for_run(opts, kw["pod"], driver)
    from rootless.runtime import api

    if detach:
        click.echo(api.run_detached(opts))
        return 0
    try:
        rc = api.run(opts)
    finally:
        if prestart is not None:
            prestart.reap()
    # Everything is cleaned up and reaped: skip the interpreter's teardown (~10 ms of start-to-exit).
    import os

    from rootless.process import flush_stdio

    flush_stdio()
    os._exit(rc)


# click parameter -> RunOptions field
_SAME = [(f, f) for f in ("image", "entrypoint", "workdir", "user", "hostname", "name", "read_only",
         "rm", "interactive", "tty", "init", "privileged", "publish_all", "rootfs", "cgroup_manager",
         "cgroups")]  # fmt: skip
_LISTS = [("command", "command"), ("env", "env"), ("env_file", "env_files"), ("volume", "volumes"),
          ("tmpfs", "tmpfs"), ("mount", "mounts"), ("cap_add", "cap_add"), ("cap_drop", "cap_drop"),
          ("security_opt", "security_opts"), ("publish", "publish")]  # fmt: skip
_LIMIT_FLAGS = (
    "memory",
    "memory_swap",
    "memory_reservation",
    "cpus",
    "cpu_shares",
    "cpu_weight",
    "pids_limit",
    "cpuset_cpus",
    "oom_score_adj",
)
