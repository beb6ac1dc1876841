"""The one adapter between building and the container runtime (rootless.runtime), as it is today.

Everything build, commit, diff and export need from the runtime goes through here, so that a
restructured runtime is re-pointed in one place:

  * run_step(): run a RUN instruction's command in a container of an image in the store, with the
    same user namespace, mounts, seccomp, capabilities and network as `rootless run`
    (rootless.runtime.api.create + monitor.run_foreground, RunOptions with volatile=True: the
    kernel overlay is mounted without syncs, as podman mounts build containers), keeping its
    upper dir (no --rm);
  * take_upper(): move that upper dir out as a new layer tree (dropping the mount points the
    runtime itself created), then remove the container (rootless.runtime.manage);
  * container_layers(): a container's record, image layers and upper dir (runtime.state records);
  * paused(): SIGSTOP/SIGCONT every process of a running container (commit --pause).

What the runtime does not offer, and how this module works around it (see docs/build.md):
running on an image that exists only as layers (each step is committed as an intermediate image
first); keeping the upper dir of a finished container without a record (the container is created
without --rm and removed after its upper dir is taken); a hidden, short-lived container (it shows in
`ps -a` while the step runs); pausing (signals).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
from dataclasses import dataclass, field

from rootless.errors import RootlessError

# mount points the runtime creates in the root when the image lacks them (rootfs.setup)
RUNTIME_MOUNTPOINTS = (
    "proc", "sys", "dev", "etc/hostname", "etc/hosts", "etc/resolv.conf", "run/.containerenv",
)  # fmt: skip


@dataclass
class StepRun:
    image_id: str
    argv: list[str]
    env: list[str] = field(default_factory=list)
    network: str = "slirp4netns"
    security_opts: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)  # HOST:CTR[:ro]
    tmpfs: list[str] = field(default_factory=list)
    driver: str | None = None
    user: str | None = None
    workdir: str | None = None


def storage_driver(flag: str | None) -> str:
    from rootless.config import select_driver

    driver = select_driver(flag)[0]
    if driver == "vfs":
        raise RootlessError(
            "building needs the overlay or fuse-overlay storage driver (vfs keeps no upper dir): "
            "use --storage-driver overlay or fuse-overlay"
        )
    return driver


def run_step(step: StepRun):
    """Run the command; returns (exit code, container record). The caller must take_upper() or
    remove() the container, whatever the exit code."""
    from rootless.runtime import api, monitor, spec

    opts = spec.RunOptions(
        image=step.image_id,
        command=list(step.argv),
        entrypoint="",  # a RUN ignores the image's ENTRYPOINT
        env=list(step.env),
        user=step.user,
        workdir=step.workdir,
        name=f"build-{os.urandom(6).hex()}",
        volumes=list(step.volumes),
        tmpfs=list(step.tmpfs),
        cap_add=list(step.cap_add),
        cap_drop=list(step.cap_drop),
        security_opts=list(step.security_opts),
        network=step.network,
        storage_driver=step.driver or storage_driver(None),
        rm=False,
        # the upper dir becomes a layer and is never mounted as an upper again, so the volatile
        # mount's incompat marker is harmless; dpkg's fsync per file otherwise makes an apt-get
        # install 1.5x slower than podman's
        volatile=True,
        image_volume="ignore",  # a RUN step mounts no anonymous volumes for the image's VOLUMEs
    )
    for s in (sys.stdout, sys.stderr):
        s.flush()
    p, rec = api.create(opts)
    try:
        rc = monitor.run_foreground(p, rec)
    except BaseException:
        remove(rec)
        raise
    return rc, rec


def upper_dir(rec) -> str:
    return os.path.join(rec.dir, "upper")


def remove(rec) -> None:
    """Remove a finished step container: its record, runtime dir and storage. Not
    manage.teardown(): that kills the container's recorded monitor, which for a foreground run
    is this very process."""
    from rootless.runtime import manage

    manage.remove_storage(rec)


def _drop_runtime_mountpoints(upper: str, lower_dirs: list[str], extra: list[str]) -> None:
    """In the user namespace: remove from `upper` the empty files and dirs the runtime made as mount
    points where the image had none, and parents copied up only for them."""
    from rootless.build.view import LayerView, split

    view = LayerView(lower_dirs)
    for target in list(RUNTIME_MOUNTPOINTS) + extra:
        parts = split(target)
        if not parts or view.stat(parts) is not None:
            continue
        p = os.path.join(upper, *parts)
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(p)
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(p)
            else:
                continue
        except OSError:
            continue
        for i in range(len(parts) - 1, 0, -1):  # parents copied up only for the mount point
            d = os.path.join(upper, *parts[:i])
            low = view.stat(parts[:i])
            if low is None or not _unchanged_empty_dir(d, low):
                break
            os.rmdir(d)


def _unchanged_empty_dir(d: str, low: os.stat_result) -> bool:
    from rootless.build.view import is_opaque

    try:
        st = os.lstat(d)
        if os.listdir(d):
            return False
    except OSError:
        return False
    same = (st.st_mode, st.st_uid, st.st_gid) == (low.st_mode, low.st_uid, low.st_gid)
    return same and not is_opaque(d)


def take_upper(rec, lower_dirs: list[str], mount_targets: list[str]):
    """A `make` function for rootless.build.commit.add_layer_dir: moves the container's upper dir
    to tmp/diff (in the user namespace). Remove the container afterwards with remove()."""
    upper = upper_dir(rec)

    def make(tmp: str) -> None:
        if not os.path.isdir(upper):
            raise RootlessError(f"the build container's upper dir {upper} is missing")
        _drop_runtime_mountpoints(upper, lower_dirs, mount_targets)
        os.rename(upper, os.path.join(tmp, "diff"))

    return make


def copy_upper(rec):
    """A `make` function that copies (not moves) a container's upper dir (commit of a container
    that goes on existing); hard links, owners, modes, times, xattrs and whiteouts are kept."""
    from rootless import process

    upper = upper_dir(rec)

    def make(tmp: str) -> None:
        # GNU cp -a keeps whiteouts (0/0 char devices), hard links and user.* xattrs
        cp = process.run(["cp", "-a", "--", upper, os.path.join(tmp, "diff")])
        if cp.returncode != 0:
            raise RootlessError(f"copying the container's upper dir: {cp.stderr.strip()}")

    return make


def container_layers(name: str):
    """(record, image record, upper dir) of an existing container."""
    from rootless.image.store import Store
    from rootless.runtime import manage

    rec = manage.get(name)
    if rec.storage_driver == "vfs":
        raise RootlessError(
            f"container {rec.name} uses the vfs storage driver, which keeps no upper dir: "
            "commit, diff and export need overlay or fuse-overlay"
        )
    img = Store.open().lookup_image(rec.image_id) if rec.image_id else None
    if img is None:
        raise RootlessError(f"the image of container {rec.name} is no longer in the store")
    return rec, img, upper_dir(rec)


def is_running(rec) -> bool:
    from rootless.runtime import manage

    return manage.is_running(rec)


def _container_pids(rec) -> list[int]:
    init = rec.pid_of("init")
    if not init:
        return []
    try:
        ns = os.stat(f"/proc/{init[0]}/ns/pid").st_ino
    except OSError:
        return []
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}/ns/pid").st_ino == ns:
                out.append(int(d))
        except OSError:
            continue
    return out


@contextlib.contextmanager
def paused(rec, enabled: bool = True):
    """Stop every process of a running container for the duration (podman's commit --pause)."""
    pids = _container_pids(rec) if enabled and is_running(rec) else []
    stopped = []
    try:
        for p in pids:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGSTOP)
                stopped.append(p)
        yield
    finally:
        for p in stopped:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGCONT)
