"""Mount options and the daemon's main loop.

Parses fuse-overlayfs's option syntax (``lowerdir=L1:L2,upperdir=U,workdir=W[,allow_other]``, and
``uidmapping=``/``gidmapping=`` for a nested user namespace: rootless.fuse_overlay.idshift),
mounts with pyfuse3 (directly through /dev/fuse as root, also inside a user namespace; through
fusermount3 otherwise), tells the parent that the mount is live through an inherited pipe fd, and
runs until SIGTERM/SIGINT (then unmounts) or until the mountpoint is unmounted from outside.
"""

import logging
import os
import resource
import signal
import sys
from dataclasses import dataclass, field

log = logging.getLogger("rootless.fuse_overlay")

# Options passed to the kernel/libfuse as they are; others are accepted and ignored, like
# fuse-overlayfs does with mount(8)'s generic ones.
PASSTHROUGH = {
    "allow_other",
    "allow_root",
    "default_permissions",
    "ro",
    "rw",
    "noatime",
    "nodev",
    "nosuid",
    "noexec",
    "dev",
    "suid",
    "exec",
    "atime",
    "relatime",
}


class OptionError(ValueError):
    pass


@dataclass
class MountConfig:
    lowerdirs: list[str]
    upperdir: str
    workdir: str
    mountpoint: str
    fuse_options: set[str] = field(default_factory=set)
    # tuning knobs, for measuring each one (bench/overlay): -o timeout=SECONDS,keep_cache=0
    timeout: float | None = None
    keep_cache: bool = True
    # id shifting (rootless.fuse_overlay.idshift): -o uidmapping=C:H:S[:...],gidmapping=...
    uid_map: tuple = ()
    gid_map: tuple = ()


def _split_lowers(value: str) -> list[str]:
    parts, cur, esc = [], [], False
    for ch in value:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p]


def parse_options(opts: list[str], mountpoint: str) -> MountConfig:
    lowers, upper, work = None, None, None
    extra = set()
    knobs: dict = {}
    for group in opts:
        for opt in group.split(","):
            if not opt:
                continue
            key, _, value = opt.partition("=")
            if key == "lowerdir":
                lowers = _split_lowers(value)
            elif key == "upperdir":
                upper = value
            elif key == "workdir":
                work = value
            elif key == "timeout":
                knobs["timeout"] = float(value)
            elif key in ("uidmapping", "gidmapping"):
                from rootless.fuse_overlay import idshift

                try:
                    knobs[key[:3] + "_map"] = idshift.parse(value)
                except ValueError as e:
                    raise OptionError(str(e)) from None
            elif key == "keep_cache":
                knobs["keep_cache"] = value not in ("0", "no", "false")
            elif key in PASSTHROUGH:
                if key not in ("rw", "relatime", "atime", "dev", "suid", "exec"):
                    extra.add(key)
            else:
                log.debug("ignoring mount option %s", opt)
    if not lowers:
        raise OptionError("lowerdir= is required")
    if not upper or not work:
        raise OptionError(
            "upperdir= and workdir= are required (read-only mounts are not supported)"
        )
    for what, path in [("lowerdir", p) for p in lowers] + [("upperdir", upper), ("workdir", work)]:
        if not os.path.isdir(path):
            raise OptionError(f"{what} {path} is not a directory")
    if not os.path.isdir(mountpoint):
        raise OptionError(f"mountpoint {mountpoint} is not a directory")
    return MountConfig(
        [os.path.abspath(p) for p in lowers],
        os.path.abspath(upper),
        os.path.abspath(work),
        os.path.abspath(mountpoint),
        extra,
        **knobs,
    )


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(cfg: MountConfig, ready_fd: int | None = None) -> int:
    """Mount and serve until unmounted; returns the exit status."""
    import pyfuse3
    import trio

    from rootless.fuse_overlay.ops import OverlayOps

    def report(msg: str) -> None:
        nonlocal ready_fd
        if ready_fd is not None:
            try:
                os.write(ready_fd, msg.encode() + b"\n")
            finally:
                os.close(ready_fd)
                ready_fd = None

    os.umask(0)
    _raise_nofile()
    try:
        knobs = {"keep_cache": cfg.keep_cache}
        if cfg.timeout is not None:
            knobs["timeout"] = cfg.timeout
        if cfg.uid_map or cfg.gid_map:
            from rootless.fuse_overlay.idshift import IdShift

            knobs["shift"] = IdShift(cfg.uid_map, cfg.gid_map)
        ops = OverlayOps(cfg.lowerdirs, cfg.upperdir, cfg.workdir, **knobs)
        options = set(pyfuse3.default_options) | cfg.fuse_options
        options |= {"fsname=rootless-overlay", "subtype=overlay", "default_permissions"}
        pyfuse3.init(ops, cfg.mountpoint, options)
    except Exception as e:
        msg = f"cannot mount {cfg.mountpoint}: {e}"
        report("error: " + msg)
        print(f"rootless-overlay: {msg}", file=sys.stderr)
        return 1

    stopped_by_signal = False

    async def main():
        nonlocal stopped_by_signal
        async with trio.open_nursery() as nursery:

            async def on_signal(task_status=trio.TASK_STATUS_IGNORED):
                nonlocal stopped_by_signal
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                    task_status.started()
                    async for _ in sigs:
                        stopped_by_signal = True
                        pyfuse3.terminate()
                        return

            await nursery.start(on_signal)
            report("ok")
            await pyfuse3.main(min_tasks=1, max_tasks=8)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except BaseException as e:  # noqa: BLE001 - the mount must not be left behind
        log.error("main loop failed: %s", e)
        pyfuse3.close(unmount=True)
        return 1
    pyfuse3.close(unmount=stopped_by_signal)
    return 0
