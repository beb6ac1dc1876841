"""What a container will be, decided on the host before any of its processes exists.

``prepare(opts)`` checks every option and returns a frozen ``Plan``: the image, the security
settings (rootless.runtime.security), the network mode, the mounts, the namespaces, the cgroup
decision and the init binary. Anything wrong fails here, with one line, before a record or a
process is made. ``launch(plan, rec)`` then adds what one start of one container needs: its
hostname, its process (entrypoint, command, env, user, workdir) and the root filesystem's
configuration; it is frozen too. The monitor, setup, namespace holder and init read both and
change neither.

Namespaces are modelled as the OCI runtime spec does: each ``Namespace`` is either new (no path)
or joined from a path (/proc/PID/ns/TYPE of another process), and a type that is not listed is
shared with rootless's own. A container gets new ones (no network namespace with ``--network
host``); a pod's container joins its infra container's user namespace and the ones the pod shares
(rootless.pods.members), and with the pod's network its mode is "container" (no helper of its own).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import NamedTuple

from rootless import syscalls as sc
from rootless.errors import ContainerError
from rootless.runtime import rootfs, runflags, security, spec, ulimits
from rootless.runtime.spec import Namespace

TINI = "/usr/bin/tini-static"  # static: it runs inside the container
PAUSE = "/rootless-pause"  # the command of a pod's infra container: its init pauses (rootless.pods.pause)

# OCI namespace type -> (/proc/PID/ns name, clone flag)
NAMESPACES = {
    "user": ("user", sc.CLONE_NEWUSER),
    "mount": ("mnt", sc.CLONE_NEWNS),
    "uts": ("uts", sc.CLONE_NEWUTS),
    "ipc": ("ipc", sc.CLONE_NEWIPC),
    "network": ("net", sc.CLONE_NEWNET),
    "cgroup": ("cgroup", sc.CLONE_NEWCGROUP),
    "pid": ("pid", sc.CLONE_NEWPID),
}


# Frozen values as NamedTuples (immutable and typed; cheaper to define than frozen dataclasses)


class Image(NamedTuple):
    id: str  # "" for --rootfs
    config: dict  # the image config (config.Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts)
    layer_dirs: tuple[str, ...]  # bottom layer first


class Plan(NamedTuple):
    opts: spec.RunOptions
    image: Image
    security: security.Security
    network: str  # the mode: slirp4netns, pasta, none or host
    network_options: dict
    mounts: tuple[rootfs.Mount, ...]
    namespaces: tuple[Namespace, ...]
    cgroup: object | None  # rootless.cgroups.CgroupPlan: the decision (the monitor applies a copy)
    init: str | None  # host path of the init binary for --init
    # volumes (rootless.volumes): the first-use work setup does before the container runs
    volumes: tuple = ()  # rootless.volumes.mounts.VolumeUse
    # pods (rootless.pods): what a pod's container joins (rootless.pods.members.Join), else None
    pod: object | None = None
    # a nested user namespace's maps (rootless.runtime.usermode.UsernsMode), None for the default
    userns: object | None = None

    def namespace(self, type_: str) -> Namespace | None:
        return next((ns for ns in self.namespaces if ns.type == type_), None)


class Launch(NamedTuple):
    """One start of one container (on top of its Plan)."""

    hostname: str
    process: spec.ProcessSpec
    rootfs: rootfs.RootfsConfig
    need_cgroup: bool  # the monitor places the init in a cgroup before it runs the command
    need_go: bool  # the init waits for the monitor's Go (network helper up, cgroup applied)
    rlimits: tuple = ()  # (name, soft, hard) the init sets (rootless.runtime.ulimits)


def _find_image(ref: str) -> Image:
    from rootless.image.store import Store

    img = Store.open().lookup_image(ref)
    if img is None:
        from rootless.image.pull import ensure_image  # the HTTP stack: only when pulling

        img = ensure_image(ref)
    return Image(img.id, img.config, tuple(img.layer_dirs))


def _image(opts: spec.RunOptions, image_id: str | None) -> Image:
    if opts.rootfs:
        path = os.path.abspath(opts.image)
        if not os.path.isdir(path):
            raise ContainerError(f"--rootfs {opts.image}: not a directory")
        return Image("", {}, (path,))
    return _find_image(image_id or opts.image)


def _cgroup(opts: spec.RunOptions):
    # on cgroup v2 every container gets a cgroup (podman's default --pids-limit 2048);
    # elsewhere only explicit limits need a plan, and they fail with the reason and the fix
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    if not (opts.limits or opts.cgroup_manager or opts.cgroups == "disabled" or v2):
        return None
    from rootless import cgroups

    limits = cgroups.Limits.from_cli(**opts.limits)
    manager = "disabled" if opts.cgroups == "disabled" else opts.cgroup_manager
    return cgroups.plan(limits, manager, "")


def prepare(opts: spec.RunOptions, image_id: str | None = None, image: Image | None = None) -> Plan:
    """Check `opts` and decide everything about the container (see the module docstring). The image:
    `image` as given (layer dirs and a config, e.g. a build's), else looked up by `image_id` (a
    container started again), else by opts.image, pulled if missing."""
    join = None
    if opts.pod:
        from rootless.pods import members

        join = members.join(opts)
    if join is not None and "network" in join.shared:
        mode, net_opts, net_ns = members.network(join, opts)
    else:
        mode, net_opts, net_ns = _network(opts)
        if join is not None and join.shared:
            net_ns = members.user_namespace(join, mode, net_ns)
    sec = security.of_options(opts)
    runflags.check(opts)
    image = image or _image(opts, image_id)
    userns = None
    if opts.userns or opts.uidmap or opts.gidmap or opts.subuidname or opts.subgidname:
        opts, userns = _userns(opts, image, mode, join)
    vol_reqs, image_tmpfs = [], []
    if opts.volumes or opts.mounts or opts.volumes_from or _declares_volumes(image):
        from rootless.volumes import mounts as volume_mounts

        opts, vol_reqs, image_tmpfs = volume_mounts.requests(opts, image.config)
    mounts = [rootfs.parse_volume(v) for v in opts.volumes if not _names_volume(v)]
    mounts += [rootfs.parse_tmpfs(t) for t in list(opts.tmpfs) + image_tmpfs]
    mounts += [rootfs.parse_mount(m) for m in opts.mounts if "type=volume" not in m.split(",")]
    if opts.tz:
        mounts.append(rootfs.Mount("bind", "/etc/localtime", runflags.zone_file(opts.tz), True))
    if opts.devices:
        from rootless.runtime import devices

        mounts += [m for d in opts.devices for m in devices.parse_device(d)]
    if opts.init and not os.path.exists(TINI):
        raise ContainerError(f"--init needs {TINI}: install Debian's tini package")
    cgroup = _cgroup(opts)
    host = {t for flag, t in runflags.NAMESPACE_FLAGS.items() if getattr(opts, flag) == "host"}
    types = [t for t in ("mount", "pid", "uts", "ipc", "cgroup") if t not in host]
    namespaces = [Namespace(t, join and join.path(t)) for t in types] + net_ns
    uses = ()
    if vol_reqs:  # everything is checked: now the volumes may be created
        vmounts, uses = volume_mounts.materialize(vol_reqs)
        mounts += vmounts
    return Plan(opts=opts, image=image, security=sec, network=mode,
                network_options=net_opts, mounts=tuple(mounts), namespaces=tuple(namespaces),
                cgroup=cgroup, init=TINI if opts.init else None, volumes=uses, pod=join,
                userns=userns)  # fmt: skip


def _userns(opts: spec.RunOptions, image: Image, mode: str, join):
    """The nested user namespace's maps (rootless.runtime.usermode) and the options they imply:
    keep-id's user, auto's range (kept for later starts), the fuse overlay for the id shift."""
    from rootless.runtime import usermode

    flag = f"--userns={opts.userns}" if opts.userns else "--uidmap/--gidmap/--subuidname"
    if join is not None or opts.pod:
        raise ContainerError(f"{flag} cannot be used with --pod: a pod's containers share its "
                             "user namespace")  # fmt: skip
    if mode in ("container", "bridge"):
        what = "--network container:" if mode == "container" else "--network NAME (a network)"
        raise ContainerError(f"{flag} cannot be used with {what}: that user namespace is shared")
    if opts.storage_driver == "vfs":
        raise ContainerError(f"{flag} needs the overlay or fuse-overlay storage driver: vfs would "
                             "copy every layer (use --storage-driver fuse-overlay)")  # fmt: skip
    others = ()
    if opts.userns.startswith("auto") and not opts.uidmap:  # the ranges other auto ones took
        from rootless.runtime import state

        others = [
            usermode.resolve(r.run).uid_map
            for r in state.list_records()
            if r.run is not None and r.run.userns.startswith("auto") and r.run.uidmap
        ]
    m = usermode.resolve(opts, image.layer_dirs, others)
    if m is None:
        return opts, None
    changes: dict = {}
    if m.user and opts.user is None:
        changes["user"] = m.user
    if m.mode == "auto" and not opts.uidmap:  # kept in the record: the same range on every start
        changes.update(uidmap=m.map_strings("uid"), gidmap=m.map_strings("gid"))
    if opts.storage_driver == "overlay":  # the kernel's cannot shift ids without a copy
        changes["storage_driver"] = "fuse-overlay"
    return (replace(opts, **changes) if changes else opts), m


def _declares_volumes(image: Image) -> bool:
    return bool(((image.config or {}).get("config") or {}).get("Volumes"))


def _names_volume(spec: str) -> bool:
    """-v NAME:/path (after rootless.volumes.mounts.requests, anonymous ones have a name too)."""
    src, sep, _ = spec.partition(":")
    return bool(sep and src and not src.startswith(("/", ".")))


def _network(opts: spec.RunOptions) -> tuple[str, dict, list[Namespace]]:
    """The network mode, its options and the user and network namespaces (netdns). A container on
    networks runs in the per-user network helper's user namespace (its path is known once the
    monitor has attached to it); --network container:NAME joins NAME's user and network ones."""
    from rootless.network import etc
    from rootless.network.mode import parse_networks

    mode, net_opts = parse_networks([opts.network or "", *opts.networks])
    if mode in ("none", "host", "container") and opts.publish:
        raise ContainerError(f"-p cannot be used with --network {mode}")
    if opts.network_aliases and mode != "bridge":
        raise ContainerError(
            "--network-alias can only be set when the network mode is bridge: invalid argument"
        )
    etc.check_options(opts, mode)
    if mode == "bridge":
        from rootless.network import bridge

        net_opts = {"endpoints": bridge.resolve(net_opts["endpoints"], opts.network_aliases)}
    if mode == "container":
        from rootless.runtime import manage

        other = manage.get(net_opts["container"])
        init = other.pid_of("init")
        if other.state != "running" or not init:
            raise ContainerError(f"container {other.name} is not running: start it first")
        net_opts = {"container": other.id, "run_dir": other.run_dir}
        ns = f"/proc/{init[0]}/ns"
        return mode, net_opts, [Namespace("user", f"{ns}/user"), Namespace("network", f"{ns}/net")]
    return mode, net_opts, [Namespace("user")] + [Namespace("network")] * (mode != "host")


def launch(plan: Plan, rec) -> Launch:
    """The hostname, process and rootfs configuration of one start of container `rec`; its /etc
    files are in the container's runtime dir."""
    o = plan.opts
    hostname = o.hostname or (plan.pod.hostname if plan.pod else "")
    host_uts = plan.network == "host" or o.uts == "host"
    hostname = hostname or (os.uname().nodename if host_uts else rec.id[:12])
    proc = spec.resolve(o, plan.image.config, hostname)
    if o.init:
        proc = replace(proc, args=[rootfs.INIT_PATH, "--", *proc.args])
    etc = {"/etc/hostname": os.path.join(rec.run_dir, "hostname")}
    etc_dir = plan.network_options.get("run_dir") or rec.run_dir  # container:NAME: NAME's files
    if not o.no_hosts:
        etc["/etc/hosts"] = os.path.join(etc_dir, "hosts")
    if plan.network != "none" and o.dns != ["none"]:
        etc["/etc/resolv.conf"] = os.path.join(etc_dir, "resolv.conf")
    etc["/run/.containerenv"] = os.path.join(rec.run_dir, "containerenv")
    image_wd = ((plan.image.config or {}).get("config") or {}).get("WorkingDir") or "/"
    cfg = rootfs.RootfsConfig(root="", etc_files=etc, mounts=plan.mounts, read_only=o.read_only,
                              privileged=o.privileged, init=plan.init, workdir=proc.cwd,
                              new_netns=plan.namespace("network") is not None,
                              workdir_create=o.workdir in (None, image_wd), container_id=rec.id,
                              user=proc.user,
                              passwd=plan.userns.passwd if plan.userns else None,
                              shm_size=runflags.shm_size(o.shm_size),
                              read_only_tmpfs=o.read_only_tmpfs, ipc=o.ipc or "private",
                              host_pid=o.pid == "host",
                              sysctls=tuple(o.sysctls.items()))  # fmt: skip
    cg = plan.cgroup
    need_cgroup = cg is not None and (cg.manager != "none" or cg.limits.oom_score_adj is not None)
    need_go = plan.network not in ("none", "host", "container") or need_cgroup
    return Launch(hostname, proc, cfg, need_cgroup, need_go, tuple(ulimits.limits(o.ulimits)))


def _abs_source(volume: str) -> str:
    src, sep, rest = volume.partition(":")
    if sep and src.startswith("."):
        src = os.path.abspath(src)
    return src + sep + rest


def saved_options(opts: spec.RunOptions) -> spec.RunOptions:
    """The options as a container's record keeps them: `start` parses them again, maybe from
    another directory, so host paths are made absolute."""
    return replace(
        opts,
        volumes=[_abs_source(v) for v in opts.volumes],
        env_files=[os.path.abspath(f) for f in opts.env_files],
        security_opts=[
            "seccomp=" + os.path.abspath(so[8:])
            if so.startswith("seccomp=") and so != "seccomp=unconfined"
            else so
            for so in opts.security_opts
        ],
    )


def options_of(rec) -> spec.RunOptions:
    """The RunOptions a container was created with (for start, exec and inspect)."""
    if rec.run is None:
        return spec.RunOptions(image=rec.image, name=rec.name)
    return replace(rec.run, name=rec.name, image=rec.run.image or rec.image, preserve_fds=0)
