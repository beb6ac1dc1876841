"""The container's mounts, built inside its mount namespace by its first process, then pivot_root.

setup() takes a mounted root (overlay, fuse-overlay or a vfs copy) and adds, in order: /proc, /sys
(read-only), /dev (tmpfs with bind-mounted null zero full random urandom tty, the standard symlinks,
devpts with its own ptmx, /dev/shm, /dev/mqueue), the generated /etc/hostname, /etc/hosts and
/etc/resolv.conf, volumes (-v, --mount type=bind), --tmpfs and --mount type=tmpfs, the init binary,
--read-only; then pivot_root with the old root detached, then the masked and read-only paths.
Mount specs are parsed on the host (parse_*), so bad input fails before anything is created.
"""

import errno
import os
import stat
from dataclasses import dataclass, field

from rootless import syscalls as sc
from rootless.errors import ContainerError

SHM_SIZE = (
    65536000  # podman's default --shm-size (64000k), as inspect's HostConfig.ShmSize shows it
)

MASKED_PATHS = [
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/proc/interrupts", "/sys/firmware",
    "/sys/fs/selinux", "/sys/dev/block", "/sys/devices/virtual/powercap",
]  # fmt: skip
READONLY_PATHS = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]
DEVICES = ["null", "zero", "full", "random", "urandom", "tty"]
INIT_PATH = "/run/podman-init"

_ST_TO_MS = {
    os.ST_RDONLY: sc.MS_RDONLY,
    os.ST_NOSUID: sc.MS_NOSUID,
    os.ST_NODEV: sc.MS_NODEV,
    os.ST_NOEXEC: sc.MS_NOEXEC,
    os.ST_NOATIME: sc.MS_NOATIME,
    os.ST_RELATIME: sc.MS_RELATIME,
}


@dataclass
class Mount:
    """A bind or tmpfs mount into the container."""

    kind: str  # "bind" | "tmpfs"
    target: str
    source: str = ""
    readonly: bool = False
    options: str = ""  # tmpfs data (size=..,mode=..)
    flags: int = 0
    volume: str = ""  # the named volume mounted here (rootless.volumes)


@dataclass
class RootfsConfig:
    root: str  # the mounted root filesystem ("" until setup has mounted it)
    etc_files: dict[str, str] = field(default_factory=dict)  # /etc/hostname -> host file
    mounts: tuple[Mount, ...] = ()
    read_only: bool = False
    privileged: bool = False
    init: str | None = None  # host path of the init binary to bind at INIT_PATH
    workdir: str = "/"
    new_netns: bool = True
    # the container environment as podman makes it
    workdir_create: bool = True  # the image defines the workdir: make it if missing (else exit 126)
    container_id: str = ""
    user: str = ""  # the process's user[:group]: a numeric uid unknown to /etc/passwd gets an entry
    passwd: tuple[str, str] | None = None  # --userns=keep-id: that entry's (name, gecos), as podman
    # host paths are /proc/self/fd/N, opened by the holder (rootless.runtime.hostpaths): root is
    # a mount point already, and the passwd/group copies are among etc_files
    pinned: bool = False
    shm_size: int | None = None  # bytes of /dev/shm (--shm-size; 0: no limit); None: podman's 64m
    read_only_tmpfs: bool = True  # with read_only: tmpfs on /tmp, /var/tmp and /run
    sysctls: tuple[tuple[str, str], ...] = ()  # --sysctl: written once the container's /proc is up
    ipc: str = (
        "private"  # --ipc: host (the host's /dev/shm and /dev/mqueue bound), none (no /dev/shm)
    )
    host_pid: bool = (
        False  # --pid host: the host's /proc bound (a new proc needs an own pid namespace)
    )


# --- parsing (host side) --------------------------------------------------------------------------


def _abs_target(t: str, flag: str) -> str:
    if not t.startswith("/"):
        raise ContainerError(f"{flag}: container path {t!r} must be absolute")
    return os.path.normpath(t)


def parse_volume(spec: str) -> Mount:
    """-v HOST:CTR[:ro|rw|z|Z|...]: a bind mount of an existing host path (podman refuses a missing one)."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise ContainerError(f"-v {spec}: expected HOST-DIR:CONTAINER-DIR[:OPTIONS]")
    src, dst = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    if not src.startswith("/") and not src.startswith("."):
        raise ContainerError(
            f"-v {spec}: named volumes are not supported; give an absolute host path"
        )
    src = os.path.abspath(src)
    ro = False
    for o in opts:
        if o == "ro":
            ro = True
        elif o in (
            "rw",
            "z",
            "Z",
            "rbind",
            "bind",
            "private",
            "rprivate",
            "U",
            "O",
            "shared",
            "slave",
            "",
        ):
            continue
        else:
            raise ContainerError(f"-v {spec}: unknown option {o!r} (use ro or rw)")
    try:
        os.stat(src)
    except OSError as e:  # podman 4.3 refuses a missing (or unreachable) bind source
        why = (e.strerror or "cannot be reached").lower()
        raise ContainerError(f"statfs {src}: {why}") from None
    return Mount("bind", _abs_target(dst, "-v"), src, readonly=ro)


def parse_tmpfs(spec: str) -> Mount:
    dst, _, opts = spec.partition(":")
    flags = sc.MS_NOSUID | sc.MS_NODEV
    data = []
    ro = False
    for o in [o for o in opts.split(",") if o] or ["rw", "noexec", "nosuid", "nodev"]:
        if o == "ro":
            ro = True
        elif o == "rw":
            pass
        elif o in ("noexec", "nosuid", "nodev"):
            flags |= {"noexec": sc.MS_NOEXEC, "nosuid": sc.MS_NOSUID, "nodev": sc.MS_NODEV}[o]
        elif o in ("exec", "suid", "dev"):
            flags &= ~{"exec": sc.MS_NOEXEC, "suid": sc.MS_NOSUID, "dev": 0}[o]
        elif o.startswith(("size=", "mode=", "nr_inodes=", "uid=", "gid=")):
            data.append(o)
        elif o in ("notmpcopyup", "tmpcopyup"):
            pass
        else:
            raise ContainerError(f"--tmpfs {spec}: unknown option {o!r}")
    return Mount(
        "tmpfs",
        _abs_target(dst, "--tmpfs"),
        "tmpfs",
        readonly=ro,
        options=",".join(data),
        flags=flags,
    )


def parse_mount(spec: str) -> Mount:
    """--mount type=bind|tmpfs,source=..,target=..[,ro][,tmpfs-size=..][,tmpfs-mode=..]"""
    kv: dict[str, str] = {}
    for item in spec.split(","):
        k, eq, v = item.partition("=")
        kv[k.strip()] = v if eq else "true"
    kind = kv.pop("type", "")
    target = kv.pop("target", None) or kv.pop("destination", None) or kv.pop("dst", None)
    if target is None:
        raise ContainerError(f"--mount {spec}: target= is required")
    target = _abs_target(target, "--mount")
    ro = False
    for key in ("ro", "readonly"):
        if key in kv:
            ro = kv.pop(key) in ("true", "1", "")
    if kind == "bind":
        src = kv.pop("source", None) or kv.pop("src", None)
        if not src:
            raise ContainerError(f"--mount {spec}: source= is required for type=bind")
        src = os.path.abspath(src)
        if not os.path.exists(src):
            raise ContainerError(f"--mount {spec}: bind source {src} does not exist")
        kv.pop("bind-propagation", None)
        kv.pop("relabel", None)
        if kv:
            raise ContainerError(f"--mount {spec}: unknown option {next(iter(kv))!r}")
        return Mount("bind", target, src, readonly=ro)
    if kind == "tmpfs":
        data = []
        if "tmpfs-size" in kv:
            data.append(f"size={kv.pop('tmpfs-size')}")
        if "tmpfs-mode" in kv:
            data.append(f"mode={kv.pop('tmpfs-mode')}")
        if kv:
            raise ContainerError(f"--mount {spec}: unknown option {next(iter(kv))!r}")
        return Mount(
            "tmpfs",
            target,
            "tmpfs",
            readonly=ro,
            options=",".join(data),
            flags=sc.MS_NOSUID | sc.MS_NODEV,
        )
    raise ContainerError(f"--mount {spec}: type must be bind or tmpfs")


# --- inside the container's mount namespace -------------------------------------------------------


def secure_join(root: str, path: str) -> str:
    """root + path with every symlink resolved inside root (a container symlink cannot leave it)."""
    parts = [p for p in path.split("/") if p and p != "."]
    cur: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if cur:
                cur.pop()
            continue
        full = os.path.join(root, *cur, p)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            cur.append(p)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, "too many symlinks", path)
            link = os.readlink(full)
            if link.startswith("/"):
                cur = []
            parts = [x for x in link.split("/") if x and x != "."] + parts
            continue
        cur.append(p)
    return os.path.join(root, *cur)


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _ensure_target(target: str, is_dir: bool) -> None:
    if is_dir:
        if not os.path.isdir(target):
            _mkdirs(target)
    elif not os.path.lexists(target):
        _mkdirs(os.path.dirname(target))
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _current_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS.items() if f & st)


def bind(
    src: str, dst: str, readonly: bool = False, recursive: bool = True, extra: int = 0
) -> None:
    sc.mount(src, dst, None, sc.MS_BIND | (sc.MS_REC if recursive else 0))
    if readonly or extra:
        remount(dst, (sc.MS_RDONLY if readonly else 0) | extra)


def remount(path: str, add_flags: int) -> None:
    """Remount a bind mount with extra flags, keeping the flags the kernel locked (nosuid, nodev...)."""
    flags = _current_flags(path) | add_flags
    sc.mount(None, path, None, sc.MS_REMOUNT | sc.MS_BIND | flags)


def _mount_proc(root: str, host_pid: bool = False) -> None:
    p = os.path.join(root, "proc")
    _mkdirs(p)
    if host_pid:  # the host's pid namespace is not ours to mount a proc of: bind the host's
        sc.mount("/proc", p, None, sc.MS_BIND | sc.MS_REC)
        return
    sc.mount("proc", p, "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def _mount_sys(root: str, new_netns: bool) -> None:
    p = os.path.join(root, "sys")
    _mkdirs(p)
    flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY
    try:
        if not new_netns:
            raise PermissionError(errno.EPERM, "host network: sysfs must be bound")
        sc.mount("sysfs", p, "sysfs", flags)
    except PermissionError:
        sc.mount("/sys", p, None, sc.MS_BIND | sc.MS_REC)
        remount(p, sc.MS_RDONLY)


def _mount_dev(root: str, shm_size: int | None = None, ipc: str = "private") -> None:
    d = os.path.join(root, "dev")
    _mkdirs(d)
    sc.mount("tmpfs", d, "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    for name in DEVICES:
        target = os.path.join(d, name)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        sc.mount(f"/dev/{name}", target, None, sc.MS_BIND)
    for name, to in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        os.symlink(to, os.path.join(d, name))
    pts = os.path.join(d, "pts")
    os.mkdir(pts, 0o755)
    try:
        sc.mount(
            "devpts",
            pts,
            "devpts",
            sc.MS_NOSUID | sc.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        )
    except OSError:  # gid 5 unmapped (single-id fallback)
        sc.mount(
            "devpts",
            pts,
            "devpts",
            sc.MS_NOSUID | sc.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )
    os.mkdir(os.path.join(d, "mqueue"), 0o755)
    if ipc != "none":  # podman's --ipc none: no /dev/shm
        os.mkdir(os.path.join(d, "shm"), 0o755)
    if ipc == "host":  # the host's, as podman binds them (an unmounted /dev/mqueue stays empty)
        sc.mount("/dev/shm", os.path.join(d, "shm"), None, sc.MS_BIND | sc.MS_REC)
        if os.path.ismount("/dev/mqueue"):
            sc.mount("/dev/mqueue", os.path.join(d, "mqueue"), None, sc.MS_BIND)
        return
    if ipc != "none":
        sc.mount(
            "shm",
            os.path.join(d, "shm"),
            "tmpfs",
            sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
            f"mode=1777,size={SHM_SIZE if shm_size is None else shm_size}",
        )
    try:
        sc.mount(
            "mqueue", os.path.join(d, "mqueue"), "mqueue", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
        )
    except PermissionError:
        pass  # IPC namespace not ours (should not happen); /dev/mqueue stays an empty dir


def setup(cfg: RootfsConfig) -> None:
    """Build the container's mount tree under cfg.root and pivot into it. Runs as the container's
    first process, root in the user namespace, in a fresh mount namespace."""
    root = cfg.root
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    # pivot_root needs the new root to be a mount point; a bind of it onto itself makes sure
    # (a pinned root is one: a bind over it would not be seen through its fd)
    if not cfg.pinned:
        sc.mount(root, root, None, sc.MS_BIND | sc.MS_REC)
    _mount_proc(root, cfg.host_pid)
    _mount_sys(root, cfg.new_netns)
    _mount_dev(root, cfg.shm_size, cfg.ipc)
    for cpath, hostfile in cfg.etc_files.items():
        t = secure_join(root, cpath)
        if os.path.islink(t) or os.path.isdir(t):
            continue  # e.g. resolv.conf -> ../run/systemd/...: podman leaves such images alone too
        _ensure_target(t, False)
        sc.mount(hostfile, t, None, sc.MS_BIND)
    mounts = list(cfg.mounts)
    if cfg.read_only and cfg.read_only_tmpfs:
        for p in ("/tmp", "/var/tmp", "/run"):
            if not any(m.target == p for m in mounts):
                mounts.append(Mount("tmpfs", p, "tmpfs", options="mode=1777" if "tmp" in p else "mode=755",
                                    flags=sc.MS_NOSUID | sc.MS_NODEV))  # fmt: skip
    if cfg.init:
        mounts.append(Mount("bind", INIT_PATH, cfg.init, readonly=True))
    for m in sorted(mounts, key=lambda m: m.target.count("/")):
        t = secure_join(root, m.target)
        if m.kind == "bind":
            _ensure_target(t, os.path.isdir(m.source))
            bind(m.source, t, readonly=m.readonly, extra=m.flags)
        else:
            _ensure_target(t, True)
            sc.mount(
                "tmpfs",
                t,
                "tmpfs",
                m.flags | (sc.MS_RDONLY if m.readonly else 0),
                m.options or None,
            )
    _passwd_entries(cfg)
    wd = secure_join(root, cfg.workdir)
    if not os.path.isdir(wd):
        if not cfg.workdir_create:  # podman makes only a workdir the image defines
            raise ContainerError(
                f'workdir "{cfg.workdir}" does not exist on container {cfg.container_id}',
                exit_code=126,
            )
        try:
            _mkdirs(wd)
        except OSError:
            pass  # read-only or a file: the exec step reports it
    if cfg.read_only:
        remount(root, sc.MS_RDONLY)
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    write_sysctls(cfg.sysctls)
    if not cfg.privileged:
        mask_paths()


def write_sysctls(sysctls) -> None:
    """--sysctl: write each under the container's /proc/sys (its IPC and network namespaces'),
    before /proc/sys is made read-only; a failure is the error runc gives, with podman's code."""
    for name, value in sysctls:
        path = "/proc/sys/" + name.replace(".", "/")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ContainerError(f"open {path}: {_strerror(e)}",
                                 exit_code=127 if e.errno == errno.ENOENT else 126) from None  # fmt: skip
        try:
            os.write(fd, value.encode())
        except OSError as e:
            raise ContainerError(f"write {path}: {_strerror(e)}", exit_code=126) from None
        finally:
            os.close(fd)


def _strerror(e: OSError) -> str:
    """The error as Go (runc) words it: "no such file or directory"."""
    return (e.strerror or os.strerror(e.errno or 0)).lower()


def _passwd_entries(cfg: RootfsConfig) -> None:
    """As podman: a numeric uid that the image's /etc/passwd lacks gets an entry (name = the uid,
    home = the workdir), and its group one in /etc/group, in copies in the container's runtime dir
    bind-mounted over the image's files (the container's upper dir is left alone). With `pinned`
    paths the namespace holder made the copies already (they are among cfg.etc_files)."""
    if cfg.pinned:
        return
    for cpath, copy in passwd_copies(cfg):
        sc.mount(copy, secure_join(cfg.root, cpath), None, sc.MS_BIND)


def passwd_copies(cfg: RootfsConfig) -> list[tuple[str, str]]:
    """Write the copies _passwd_entries mounts; [(container path, copy)]."""
    uname, _, gname = (cfg.user or "").partition(":")
    if not uname.isdigit() or uname == "0":
        return []
    root = cfg.root
    run_dir = os.path.dirname(cfg.etc_files.get("/etc/hostname", ""))
    if not run_dir:
        return []
    uid = int(uname)
    gid = int(gname) if gname.isdigit() else 0
    entries = (
        ("passwd", lambda f: f[2:3] == [uname], f"{uid}:*:{uid}:{gid}:container user:{cfg.workdir}:/bin/sh"),
        ("group", lambda f: f[2:3] == [str(gid if gname else uid)],
         f"{gid}:x:{gid}:{uid}" if gname.isdigit() else f"{uid}:x:{uid}:"),
    )  # fmt: skip
    if cfg.passwd is not None:  # keep-id: the user's name (podman's keep-id entries)
        who, gecos = cfg.passwd
        entries = (
            ("passwd", entries[0][1], f"{who}:*:{uid}:{gid}:{gecos}:{cfg.workdir}:/bin/sh"),
            ("group", lambda f: f[2:3] == [str(gid)], f"{who}:x:{gid}:{who}"),
        )
    out = []
    for name, exists, line in entries:
        if name == "group" and gname and not gname.isdigit():
            continue
        target = secure_join(root, f"/etc/{name}")
        try:
            with open(target, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:
            continue  # no such file (or a link out of the root): podman leaves it alone too
        if os.path.islink(target) or any(exists(ln.split(":")) for ln in text.splitlines()):
            continue
        copy = os.path.join(run_dir, name)
        with open(copy, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
        out.append((f"/etc/{name}", copy))
    return out


def mask_paths() -> None:
    for p in MASKED_PATHS:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            sc.mount("tmpfs", p, "tmpfs", sc.MS_RDONLY, "size=0")
        else:
            sc.mount("/dev/null", p, None, sc.MS_BIND)
    for p in READONLY_PATHS:
        if not os.path.exists(p):
            continue
        sc.mount(p, p, None, sc.MS_BIND | sc.MS_REC)
        remount(p, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def rewrite(path: str, text: str) -> None:
    """Rewrite a file in place (same inode), so that a bind mount of it shows the new text."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
