"""From `run` options and the image config to the container process, with podman's override rules.

resolve() runs on the host: Entrypoint/Cmd (--entrypoint drops the image's Cmd), Env (defaults, then
image, then --env-file, then -e), WorkingDir (-w wins) and User (-u wins). resolve_user() runs inside
the container's root: it turns ``user[:group]`` into uid, gid and supplementary groups using the
container's /etc/passwd and /etc/group, and gives HOME.
"""

import json
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from rootless.errors import ContainerError


class Namespace(NamedTuple):
    """One namespace of a container, as the OCI runtime spec has it."""

    type: str  # an OCI namespace type (rootless.runtime.plan.NAMESPACES)
    path: str | None = None  # None: a new one; else join the namespace at this path


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class RunOptions:
    """Everything `rootless run` was asked to do (CLI-independent)."""

    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    name: str | None = None
    volumes: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    read_only: bool = False
    rm: bool = False
    interactive: bool = False
    tty: bool = False
    init: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opts: list[str] = field(default_factory=list)
    privileged: bool = False
    network: str = "slirp4netns"
    storage_driver: str = "fuse-overlay"
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False  # -P: every ExposedPorts entry of the image, on a random host port
    rootfs: bool = False  # podman's --rootfs: `image` is a directory used as the only (lower) layer
    limits: dict[str, str] = field(default_factory=dict)  # rootless.cgroups.Limits.from_cli kwargs
    cgroup_manager: str | None = None  # None: auto (systemd, else cgroupfs, else none)
    cgroups: str = "enabled"  # "disabled": run without a cgroup, and without limits
    # mount the kernel overlay `volatile` (no syncs to the upper dir) though the upper dir is kept:
    # for a container whose upper dir becomes a layer (a build step); --rm implies it in the foreground
    volatile: bool = False
    # user-defined networks and the container's /etc files (netdns): `network` above is the first
    # --network value; these are the others (several networks), then podman's flags of the same names
    networks: list[str] = field(default_factory=list)
    network_aliases: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    no_hosts: bool = False
    # volumes and pods (rootless.volumes, rootless.pods)
    volumes_from: list[str] = field(default_factory=list)  # --volumes-from CTR[:ro|rw]
    image_volume: str = (
        "bind"  # --image-volume: the image's VOLUMEs as anonymous volumes (bind), tmpfs or ignore
    )
    pod: str | None = (
        None  # --pod: the pod's id in a record (a name, or new:NAME, on the command line)
    )
    # run/create flags (runflags): labels (the image's, then --label-file, then --label; merged by
    # api.create), annotations (--annotation), containers to start first (--requires: their ids)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    restart: str = ""  # --restart: no, on-failure[:N], always, unless-stopped (runtime.restart)
    preserve_fds: int = 0  # --preserve-fds (or LISTEN_FDS): this run only, 0 on a later start
    # how `stop` stops it (runflags): --stop-signal, else the image's StopSignal (api.create
    # records the number), else SIGTERM; --stop-timeout seconds before SIGKILL (None: podman's 10)
    stop_signal: int | None = None
    stop_timeout: int | None = None
    # --ulimit NAME=SOFT[:HARD] (or "host"); api.create adds podman's defaults for nofile and
    # nproc (rootless.runtime.ulimits), so a record keeps the limits every start applies
    ulimits: list[str] = field(default_factory=list)
    cidfile: str | None = None  # --cidfile: the id is written there when the container is made
    shm_size: str | None = None  # --shm-size: /dev/shm's size (podman's 64m when None)
    group_add: list[str] = field(default_factory=list)  # --group-add: gids or /etc/group names
    expose: list[str] = field(default_factory=list)  # --expose PORT[-PORT][/PROTO]: more for -P
    tz: str | None = None  # --tz: Area/City (the host's zoneinfo) or "local" (the host's zone)
    # --read-only-tmpfs (with --read-only: tmpfs on /run, /tmp and /var/tmp); --sysctl NAME=VALUE
    # (runflags.sysctls: the IPC and network namespaces' own, as podman allows them)
    read_only_tmpfs: bool = True
    sysctls: dict[str, str] = field(default_factory=dict)
    # --pidfile: the container's pid is written there at each start (left in place, as podman);
    # --timeout: seconds it may run before the monitor kills it (0: no limit; exit code -1)
    pidfile: str | None = None
    timeout: int = 0
    # --uts, --ipc, --pid, --cgroupns: "" or private (a new namespace), host (the caller's); --ipc
    # also none (no /dev/shm) and shareable (private)
    # --device HOST[:CONTAINER][:PERMS]: the host's node bound (rootless cannot mknod), read-only
    # without w; --env-merge NAME=WORD: an image variable rewritten, ${NAME} expanded (as podman 4.3)
    devices: list[str] = field(default_factory=list)
    env_merge: list[str] = field(default_factory=list)
    # --health-cmd and friends (podman's defaults), --no-healthcheck; api.create resolves them
    # with the image's HEALTHCHECK into `healthcheck`, inspect's Config.Healthcheck (rootless.runtime.health)
    health_cmd: str | None = None
    health_interval: str = "30s"
    health_retries: int = 3
    health_start_period: str = "0s"
    health_timeout: str = "30s"
    no_healthcheck: bool = False
    healthcheck: dict | None = None
    # --log-driver (k8s-file, json-file: the same file; none and passthrough: no log) and
    # --log-opt path=FILE, max-size=SIZE (the log is truncated when it would grow past it)
    log_driver: str = "k8s-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    uts: str = ""
    ipc: str = ""
    pid: str = ""
    cgroupns: str = ""
    # the container's id mapping (rootless.runtime.usermode): --userns (keep-id[:uid=,gid=],
    # auto[:size=], nomap, host), --uidmap/--gidmap (for auto: the range it was given at create),
    # --subuidname/--subgidname
    userns: str = ""
    uidmap: list[str] = field(default_factory=list)
    gidmap: list[str] = field(default_factory=list)
    subuidname: str | None = None
    subgidname: str | None = None


@dataclass
class ProcessSpec:
    """The container's main process, as far as it can be known on the host."""

    args: list[str]
    env: dict[str, str]
    cwd: str
    user: str  # "" (root), "uid", "name", "uid:gid", "name:group"
    terminal: bool = False


def parse_entrypoint(value: str) -> list[str]:
    """--entrypoint takes a plain command or a JSON array, as in podman."""
    v = value.strip()
    if v.startswith("["):
        try:
            parsed = json.loads(v)
        except json.JSONDecodeError as e:
            raise ContainerError(f"--entrypoint {value!r}: invalid JSON array ({e.msg})") from None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise ContainerError(f"--entrypoint {value!r}: must be a JSON array of strings")
        return parsed
    return [value] if value else []


def env_line(line: str, where: str, out: dict[str, str]) -> None:
    if "=" in line:
        k, v = line.split("=", 1)
        if not k:
            raise ContainerError(
                f"{where}: invalid environment variable {line!r}: the name is empty"
            )
        out[k] = v
    elif line:
        if line in os.environ:
            out[line] = os.environ[line]


def read_env_file(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ContainerError(
            f"--env-file {path}: cannot read it ({getattr(e, 'strerror', None) or e})"
        ) from None
    for n, raw in enumerate(lines, 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line and any(c.isspace() for c in line):
            raise ContainerError(f"--env-file {path}:{n}: expected NAME=VALUE, got {raw!r}")
        env_line(line, f"--env-file {path}:{n}", out)
    return out


def _env_merge(items: list[str], env: dict[str, str]) -> None:
    """--env-merge as podman 4.3: each NAME=WORD is expanded as a Containerfile word against the
    image's environment, and replaces NAME only where the image defines it."""
    from rootless.build.words import WordError, expand

    for item in items:
        try:
            word = expand(item, dict(env))
        except WordError as e:
            raise ContainerError(
                f"unable to process variables for --env-merge {item}: {e}"
            ) from None
        parts = word.split("=")
        if parts[0] in env and len(parts) > 1:
            env[parts[0]] = parts[1]


def resolve(opts: RunOptions, image_config: dict, hostname: str) -> ProcessSpec:
    cfg = (image_config or {}).get("config") or {}
    if opts.entrypoint is not None:
        entry = parse_entrypoint(opts.entrypoint)
        cmd = list(opts.command)  # an explicit entrypoint drops the image's Cmd
    else:
        entry = list(cfg.get("Entrypoint") or [])
        cmd = list(opts.command) if opts.command else list(cfg.get("Cmd") or [])
    args = entry + cmd
    if not args:
        raise ContainerError(
            "no command or entrypoint provided, and no CMD or ENTRYPOINT from image"
        )
    # podman's defaults, before the image's Env: TERM=xterm with or without -t
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "TERM": "xterm", "container": "podman"}
    for item in cfg.get("Env") or []:
        env_line(item, "image", env)
    if opts.env_merge:
        _env_merge(opts.env_merge, env)
    for path in opts.env_files:
        env.update(read_env_file(path))
    for item in opts.env:
        env_line(item, "-e", env)
    env.setdefault("HOSTNAME", hostname)
    for k, v in env.items():
        if "\0" in k or "\0" in v:  # podman: the runtime refuses it (126)
            raise ContainerError(
                f"environment variable value can't contain null(\\x00): {k}={v!r}", exit_code=126
            )
    cwd = opts.workdir or cfg.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise ContainerError(f"--workdir {cwd!r}: must be an absolute path")
    user = opts.user if opts.user is not None else (cfg.get("User") or "")
    if any(p.isdigit() and int(p) > 2147483647 for p in str(user).split(":", 1)):
        raise ContainerError("uids and gids must be in range 0-2147483647", exit_code=126)
    return ProcessSpec(args=args, env=env, cwd=cwd, user=user, terminal=opts.tty)


# --- inside the container -------------------------------------------------------------------------


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [ln.split(":") for ln in f.read().splitlines() if ln and not ln.startswith("#")]
    except OSError:
        return []


@dataclass
class ResolvedUser:
    uid: int
    gid: int
    groups: list[int]
    home: str


def added_groups(names: list[str], container_id: str, etc: str = "/etc") -> list[int]:
    """--group-add: gids, or names looked up in the container's etc/group ("keep-groups" keeps the
    caller's groups, which a rootless container cannot map: none, as podman with runc)."""
    groups = None
    out = []
    for name in names:
        if name == "keep-groups":
            continue
        if name.isdigit():
            out.append(int(name))
            continue
        groups = _read_db(os.path.join(etc, "group")) if groups is None else groups
        g = next((e for e in groups if len(e) >= 3 and e[0] == name and e[2].isdigit()), None)
        if g is None:
            raise ContainerError(
                f"looking up supplemental groups for container {container_id}: Unable to find "
                f"group {name}: no matching entries in group file",
                exit_code=126,
            )
        out.append(int(g[2]))
    return out


def resolve_user(user: str, etc: str = "/etc") -> ResolvedUser:
    """Resolve ``user[:group]`` against etc/passwd and etc/group (podman's rules)."""
    uname, _, gname = (user or "").partition(":")
    passwd = _read_db(os.path.join(etc, "passwd"))
    groups = _read_db(os.path.join(etc, "group"))
    entry = None
    if not uname:
        uname = "0"
    if uname.isdigit():
        uid = int(uname)
        entry = next((e for e in passwd if len(e) >= 4 and e[2] == uname), None)
        gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    else:
        entry = next((e for e in passwd if len(e) >= 4 and e[0] == uname), None)
        if entry is None or not entry[2].isdigit():
            raise ContainerError(  # podman: 126, the runtime could not start the command
                f"unable to find user {uname}: no matching entries in passwd file", exit_code=126
            )
        uid, gid = int(entry[2]), int(entry[3]) if entry[3].isdigit() else 0
    if gname:
        if gname.isdigit():
            gid = int(gname)
        else:
            g = next((e for e in groups if len(e) >= 3 and e[0] == gname), None)
            if g is None or not g[2].isdigit():
                raise ContainerError(
                    f"unable to find group {gname}: no matching entries in group file",
                    exit_code=126,
                )
            gid = int(g[2])
    home = entry[5] if entry and len(entry) >= 6 and entry[5] else "/"
    supp: list[int] = []
    if entry is not None and not gname:
        name = entry[0]
        for g in groups:
            if len(g) >= 4 and g[2].isdigit() and name in g[3].split(",") and int(g[2]) != gid:
                supp.append(int(g[2]))
    # podman lists the primary group among the supplementary ones (`id` shows it in groups=)
    return ResolvedUser(uid=uid, gid=gid, groups=sorted({*supp, gid}), home=home)
