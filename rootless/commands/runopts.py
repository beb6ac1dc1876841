"""The flags `run` and `create` share (podman's podman-run(1) and podman-create(1) options).

``run_options`` is the click decorator that adds every shared option and the IMAGE and COMMAND
arguments; ``RUN_CONTEXT`` is the context both commands need (options stop at IMAGE, as podman's).
``storage_driver(ctx)`` is the driver the global flags select, and ``to_run_options(kw, driver)``
turns the parsed values into the library's ``RunOptions`` (label files are read here, a pod given
as new:NAME is created here: both fail with one line before anything else is made). Options only
`run` has (-d, --sig-proxy, --rmi) stay in rootless.commands.run.
"""

from __future__ import annotations

import dataclasses
import os

import click

from rootless.errors import RootlessError
from rootless.runtime.spec import RunOptions

RUN_CONTEXT = {"ignore_unknown_options": False, "allow_interspersed_args": False}

_OPTIONS = [
    click.option("--rm", "rm", is_flag=True, help="Remove the container when it exits."),
    click.option("-i", "--interactive", is_flag=True, help="Keep stdin open."),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal."),
    click.option("--name", default=None, help="Name the container."),
    click.option("-h", "--hostname", default=None, help="Container host name."),
    click.option(
        "-e", "--env", multiple=True, help="Set an environment variable (NAME=VALUE or NAME)."
    ),
    click.option("--env-file", multiple=True, help="Read environment variables from a file."),
    click.option("-w", "--workdir", default=None, help="Working directory inside the container."),
    click.option("-u", "--user", default=None, help="user[:group] to run as (name or id)."),
    click.option(
        "--entrypoint",
        default=None,
        help="Override the image's entrypoint (string or JSON array).",
    ),
    # labels and annotations: kept in the record, shown by inspect (.Config.Labels, .Annotations)
    click.option("-l", "--label", multiple=True, help="Set a label (KEY=VALUE or KEY)."),
    click.option("--label-file", multiple=True, help="Read KEY=VALUE labels from a file."),
    click.option("--annotation", multiple=True, help="Set an annotation (KEY=VALUE)."),
    click.option(
        "--requires",
        multiple=True,
        help="Containers (comma-separated) to start before this one.",
    ),
    click.option(
        "--restart",
        default="",
        help="Restart policy: no, on-failure[:N], always, unless-stopped.",
    ),
    click.option(
        "--stop-signal",
        default=None,
        help="Signal that stops the container (default: the image's STOPSIGNAL, else SIGTERM).",
    ),
    click.option(
        "--stop-timeout",
        default=None,
        help="Seconds stop waits for the container before SIGKILL (default 10).",
    ),
    click.option(
        "--ulimit",
        multiple=True,
        help="Resource limit NAME=SOFT[:HARD] (nofile, nproc, core, ...; -1: unlimited), or host.",
    ),
    click.option("-v", "--volume", multiple=True, help="Bind mount HOST:CONTAINER[:ro]."),
    click.option("--tmpfs", multiple=True, help="Mount a tmpfs at CONTAINER[:OPTIONS]."),
    click.option("--mount", multiple=True, help="type=bind|tmpfs,source=..,target=..[,ro]"),
    click.option("--read-only", is_flag=True, help="Make the root filesystem read-only."),
    click.option(
        "--read-only-tmpfs",
        default="true",
        is_flag=False,
        flag_value="true",
        metavar="[=BOOL]",
        help="With --read-only: tmpfs on /run, /tmp and /var/tmp (default true).",
    ),
    click.option(
        "--device", multiple=True, help="Add a host device HOST[:CONTAINER][:PERMS] (bound)."
    ),
    click.option(
        "--env-merge", multiple=True, help="Rewrite an image variable: NAME=...${NAME}..."
    ),
    click.option(
        "--health-cmd", default=None, help="Healthcheck: a shell command, or a JSON array."
    ),
    click.option("--health-interval", default="30s", help="Between checks (disable: none)."),
    click.option("--health-retries", default="3", help="Failures before unhealthy."),
    click.option("--health-start-period", default="0s", help="Failures before it do not count."),
    click.option("--health-timeout", default="30s", help="A check that runs longer fails."),
    click.option("--no-healthcheck", is_flag=True, help="Disable the image's healthcheck."),
    click.option(
        "--log-driver", default="k8s-file", help="k8s-file (default), json-file, none, passthrough."
    ),
    click.option("--log-opt", multiple=True, help="Log option: path=FILE, max-size=SIZE."),
    click.option("--uts", default="", help="UTS namespace: private (default) or host."),
    click.option("--ipc", default="", help="IPC namespace: private (default), host or none."),
    click.option("--pid", default="", help="PID namespace: private (default) or host."),
    click.option("--cgroupns", default="", help="cgroup namespace: private (default) or host."),
    click.option("--pidfile", default=None, help="Write the container's pid to this file."),
    click.option(
        "--timeout",
        default="0",
        help="Seconds the container may run before it is killed (0: no limit).",
    ),
    click.option(
        "--sysctl",
        multiple=True,
        help="Set a namespaced kernel parameter NAME=VALUE (net.*, fs.mqueue.*, kernel.shm*...).",
    ),
    click.option(
        "--init",
        is_flag=True,
        help="Run an init (tini) as PID 1 that forwards signals and reaps.",
    ),
    click.option("--cap-add", multiple=True, help="Add a capability."),
    click.option("--cap-drop", multiple=True, help="Drop a capability (ALL for all)."),
    click.option(
        "--security-opt",
        multiple=True,
        help="seccomp=unconfined|PROFILE.json, no-new-privileges",
    ),
    click.option(
        "--privileged", is_flag=True, help="Give the container all that rootless can give."
    ),
    click.option(
        "--network",
        "--net",
        "network",
        multiple=True,
        help="slirp4netns (default), pasta, none, host, container:NAME, or networks: "
        "NAME[:ip=..,alias=..].",
    ),
    click.option(
        "--network-alias", multiple=True, help="A name for the container on its networks."
    ),
    click.option("--add-host", multiple=True, help="Add a line to /etc/hosts (HOST:IP)."),
    click.option(
        "--dns", multiple=True, help="A DNS server for /etc/resolv.conf (none: the image's)."
    ),
    click.option("--dns-search", multiple=True, help="A DNS search domain for /etc/resolv.conf."),
    click.option("--dns-option", multiple=True, help="A DNS option for /etc/resolv.conf."),
    click.option("--no-hosts", is_flag=True, help="Keep the image's /etc/hosts."),
    click.option(
        "-p",
        "--publish",
        multiple=True,
        help="Publish a port [HOSTIP:][HOSTPORT:]CTRPORT[/PROTO].",
    ),
    click.option(
        "-P",
        "--publish-all",
        is_flag=True,
        help="Publish every port the image exposes on a random host port.",
    ),
    click.option("--rootfs", is_flag=True, help="IMAGE is a directory holding a root filesystem."),
    click.option(
        "-m", "--memory", default=None, help="Memory limit (e.g. 64m); cgroup v2 memory.max."
    ),
    click.option(
        "--memory-swap", default=None, help="Memory plus swap limit (-1: unlimited swap)."
    ),
    click.option("--memory-reservation", default=None, help="Memory soft limit (memory.low)."),
    click.option("--cpus", default=None, help="Number of CPUs (e.g. 0.5); cpu.max."),
    click.option(
        "-c", "--cpu-shares", default=None, help="CPU shares (relative weight, 1024 = default)."
    ),
    click.option("--cpu-weight", default=None, help="cgroup v2 cpu.weight (1-10000)."),
    click.option("--pids-limit", default=None, help="Maximum number of processes (default 2048)."),
    click.option("--cpuset-cpus", default=None, help="CPUs the container may use (e.g. 0-1)."),
    click.option("--oom-score-adj", default=None, help="OOM score adjustment for the container."),
    click.option(
        "--cgroup-manager",
        type=click.Choice(["systemd", "cgroupfs"]),
        default=None,
        help="How limits are enforced (default: systemd when a user manager is reachable).",
    ),
    click.option(
        "--cgroups",
        type=click.Choice(["enabled", "disabled"]),
        default="enabled",
        help="disabled: run without a cgroup and without limits.",
    ),
    # volumes and pods (rootless.volumes, rootless.pods)
    click.option("--volumes-from", multiple=True, help="Mount the volumes of CONTAINER[:ro|rw]."),
    click.option(
        "--image-volume",
        type=click.Choice(["bind", "tmpfs", "ignore"]),
        default="bind",
        help="The image's VOLUMEs: anonymous volumes (bind), tmpfs, or ignore.",
    ),
    click.option("--pod", default=None, help="Run in the pod NAME (new:NAME creates it)."),
    # before the container is made (rootless.commands.runopts.before_create)
    click.option(
        "--pull",
        default="missing",
        show_default=True,
        help="Pull the image: always, missing, never, newer.",
    ),
    click.option(
        "--platform",
        default=None,
        help="OS[/ARCH[/VARIANT]] of the image: another one is pulled (e.g. linux/arm64).",
    ),
    click.option("--replace", is_flag=True, help="Remove a container of the same --name first."),
    click.option(
        "--env-host", is_flag=True, help="Pass the caller's environment to the container."
    ),
    click.option("--cidfile", default=None, help="Write the container's ID to this (new) file."),
    click.option("--shm-size", default=None, help="Size of /dev/shm (e.g. 64m; 0: no limit)."),
    click.option("--group-add", multiple=True, help="Add a supplementary group (gid or name)."),
    click.option("--expose", multiple=True, help="Expose PORT[-PORT][/PROTO] (-P publishes it)."),
    click.option("--tz", default=None, help="Timezone in the container: Area/City or local."),
    # the container's id mapping (rootless.runtime.usermode, docs/userns.md)
    click.option(
        "--userns",
        default="",
        help="User namespace: host (default), keep-id[:uid=N,gid=M], auto[:size=N], nomap.",
    ),
    click.option(
        "--uidmap", multiple=True, help="Map CONTAINER_UID:HOST_UID:SIZE (host: rootless's ids)."
    ),
    click.option(
        "--gidmap", multiple=True, help="Map CONTAINER_GID:HOST_GID:SIZE (host: rootless's ids)."
    ),
    click.option("--subuidname", default=None, help="Map the /etc/subuid ranges of NAME."),
    click.option("--subgidname", default=None, help="Map the /etc/subgid ranges of NAME."),
    click.argument("image"),
    click.argument("command", nargs=-1, type=click.UNPROCESSED),
]


def run_options(f):
    """Add the options `run` and `create` share (and IMAGE [COMMAND [ARG...]]) to a click command."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def storage_driver(ctx) -> str:
    """The storage driver the global --storage-driver (or the configuration) selects."""
    from rootless.config import select_driver

    driver, _why = select_driver((ctx.obj or {}).get("storage_driver"))
    return driver


def to_run_options(kw: dict, driver: str) -> RunOptions:
    """The library's options from run_options' parsed values (other keys in `kw` are ignored)."""
    from rootless.runtime import runflags, usermode

    ids = [kw[k] for k in ("userns", "uidmap", "gidmap", "subuidname", "subgidname")]
    usermode.check_flags(*ids)
    if kw["pod"] and (ids[0] not in ("", "host") or any(ids[1:])):
        raise RootlessError(
            "--userns/--uidmap/--gidmap/--subuidname cannot be used with --pod: a pod's "
            "containers share its user namespace"
        )
    before_create(kw)
    env = [f"{k}={v}" for k, v in os.environ.items()] if kw["env_host"] else []
    opts = RunOptions(
        **{field: kw[flag] for flag, field in _SAME},
        **{field: list(kw[flag]) for flag, field in _LISTS},
        network=(kw["network"] or ("slirp4netns",))[0],
        networks=list(kw["network"][1:]),
        storage_driver=driver,
        limits={k: kw[k] for k in _LIMIT_FLAGS if kw[k] is not None},
        labels=labels(kw["label_file"], kw["label"]),
        annotations=annotations(kw["annotation"]),
        requires=[n for v in kw["requires"] for n in v.split(",") if n],
        **stop_options(kw),
        ulimits=list(kw["ulimit"]),
        cidfile=kw["cidfile"],
        read_only_tmpfs=runflags.go_bool("--read-only-tmpfs", kw["read_only_tmpfs"]),
        sysctls=runflags.sysctls(kw["sysctl"]),
        pidfile=os.path.abspath(kw["pidfile"]) if kw["pidfile"] else None,
        timeout=runflags.parse_uint("--timeout", kw["timeout"]),
        health_retries=runflags.parse_uint("--health-retries", kw["health_retries"]),
        log_driver=kw["log_driver"],
        log_opts=runflags.log_options(kw["log_driver"], kw["log_opt"]),
    )
    if env:  # the caller's environment under the image's and -e's, as podman's --env-host
        opts = dataclasses.replace(opts, env=env + opts.env)
    if kw["pod"]:
        from rootless.pods import manage

        opts = manage.for_run(opts, kw["pod"], driver)
    return opts


PULL_POLICIES = ("always", "missing", "never", "newer")


def before_create(kw: dict) -> None:
    """What --pull, --replace and --cidfile do or check before anything is made, as podman."""
    policy = kw["pull"].lower()
    if policy not in PULL_POLICIES:
        raise RootlessError(f'unsupported pull policy "{kw["pull"]}"')
    if kw["cidfile"] and os.path.lexists(kw["cidfile"]):
        raise RootlessError(
            "container id file exists. Ensure another container is not using it or delete "
            + kw["cidfile"]
        )
    if kw["replace"]:
        if not kw["name"]:
            raise RootlessError("cannot replace container without --name being set")
        from rootless.runtime import api, state

        try:
            old = api.get(kw["name"])
        except state.NoSuchContainer:
            old = None
        if old is not None and old.name == kw["name"]:
            api.remove(old, force=True)
    if kw["rootfs"]:
        return
    if kw.get("platform"):
        _pull_platform(kw["image"], policy, kw["platform"])
        return
    if policy == "missing":
        return
    from rootless.image.store import Store

    if policy == "never":
        if Store.open().lookup_image(kw["image"]) is None:
            from rootless.errors import ImageError

            raise ImageError(f"{kw['image']}: image not known")
        return
    from rootless.image.pull import pull_image  # always, newer: ask the registry

    pull_image(kw["image"])


def _platform(config: dict) -> tuple[str, str, str]:
    return (
        config.get("os") or "linux",
        config.get("architecture") or "",
        config.get("variant") or "",
    )


def _pull_platform(image: str, policy: str, platform: str) -> None:
    """--platform OS[/ARCH[/VARIANT]] (podman's: the host's ARCH when left out): a local image of
    another platform counts as missing; what a registry has for no other platform is run with
    podman's warning."""
    from rootless.image.pull import host_platform, pull_image
    from rootless.image.store import Store

    parts = platform.split("/")
    want = (parts[0], parts[1] if len(parts) > 1 else host_platform()[1], "/".join(parts[2:]))
    img = Store.open().lookup_image(image)
    if img is not None and _platform(img.config) != want:
        img = None
    if img is not None and policy not in ("always", "newer"):
        return
    if policy == "never":
        from rootless.errors import ImageError

        raise ImageError(f"{image}: image not known")
    img = pull_image(image, platform="/".join(x for x in want if x))
    have = _platform(img.config)
    if have != want:
        a, b = (f"{{{p[1]} {p[0]}  [] {p[2]}}}" for p in (have, want))
        click.echo(
            f"WARNING: image platform ({a}) does not match the expected platform ({b})", err=True
        )


def stop_options(kw: dict) -> dict:
    """--stop-signal (a number; empty: not given, as podman) and --stop-timeout, checked."""
    from rootless.runtime import runflags

    sig, timeout = kw["stop_signal"], kw["stop_timeout"]
    return {
        "stop_signal": runflags.parse_signal(sig) if sig else None,
        "stop_timeout": None if timeout is None else runflags.parse_stop_timeout(timeout),
    }


def labels(files, items) -> dict[str, str]:
    """--label-file files, then --label KEY[=VALUE] (podman's GetAllLabels: a later one wins)."""
    out: dict[str, str] = {}
    for path in files:
        _label_file(path, out)
    for item in items:
        key, _, val = item.partition("=")
        if not key:
            raise RootlessError(f"--label {item!r}: invalid label format: use KEY=VALUE")
        out[key] = val
    return out


def _label_file(path: str, out: dict[str, str]) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or "not UTF-8 text"
        raise RootlessError(f"--label-file {path}: cannot read it ({why})") from None
    for n, raw in enumerate(lines, 1):
        line = raw.lstrip(" \t\n")
        if not line or line.startswith("#"):
            continue
        key, eq, val = line.partition("=")
        if not key:
            raise RootlessError(f"--label-file {path}:{n}: invalid label {raw!r}: use KEY=VALUE")
        if any(c in " \t" for c in key):
            raise RootlessError(f"--label-file {path}:{n}: the label name {key!r} has white space")
        if eq:  # a line without "=" sets nothing, as in podman
            out[key] = val


def annotations(items) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq:
            raise RootlessError(f"--annotation {item!r}: annotations must be formatted KEY=VALUE")
        out[key] = val
    return out


# click parameter -> RunOptions field
_SAME = [(f, f) for f in ("image", "entrypoint", "workdir", "user", "hostname", "name", "read_only",
         "rm", "interactive", "tty", "init", "privileged", "publish_all", "rootfs", "cgroup_manager",
         "cgroups", "no_hosts", "image_volume", "restart", "userns", "subuidname", "shm_size", "tz",
         "subgidname", "uts", "ipc", "pid", "cgroupns", "health_cmd", "health_interval",
         "health_start_period", "health_timeout", "no_healthcheck")]  # fmt: skip
_LISTS = [("command", "command"), ("env", "env"), ("env_file", "env_files"), ("volume", "volumes"),
          ("tmpfs", "tmpfs"), ("mount", "mounts"), ("cap_add", "cap_add"), ("cap_drop", "cap_drop"),
          ("security_opt", "security_opts"), ("publish", "publish"),
          ("network_alias", "network_aliases"), ("add_host", "add_hosts"), ("dns", "dns"),
          ("dns_search", "dns_search"), ("dns_option", "dns_options"),
          ("volumes_from", "volumes_from"), ("uidmap", "uidmap"), ("gidmap", "gidmap"),
          ("group_add", "group_add"), ("expose", "expose"), ("device", "devices"),
          ("env_merge", "env_merge")]  # fmt: skip
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
