"""The pyfuse3 overlay filesystem: a userspace overlayfs for container root filesystems.

Modules: ``layers`` (the layer stack, lookups, whiteout/opaque reading), ``whiteout`` (writing
them), ``copyup`` (atomic copy-up through the work dir), ``inodes`` (inode table), ``ops`` (the
pyfuse3 operations), ``mount`` (options and main loop), ``__main__`` (fuse-overlayfs command line).

This module is the API the runtime uses: ``spawn()`` starts the daemon in the caller's namespaces
and returns once the mount is live; ``stop()`` unmounts it and reaps the daemon. ``prestart`` is the
daemon started early for a foreground `rootless run`, mounted by the container's setup process.
Nothing here imports pyfuse3 or trio.
"""

import os
import select
import signal
import time

from rootless.errors import RootlessError


class OverlayError(RootlessError):
    """The overlay filesystem could not be mounted."""


def spawn(
    lowerdirs: list[str],
    upperdir: str,
    workdir: str,
    mountpoint: str,
    *,
    options: list[str] | tuple[str, ...] = (),
    timeout: float = 30.0,
    stderr=None,
    die_with_parent: bool = False,
    new_session: bool = True,
    pdeathsig: int | None = None,
):
    """Start the overlay daemon on ``mountpoint`` (lowerdirs top first) and wait until it is live;
    return its rootless.process.Child.

    The daemon runs in its own session, so a terminal's Ctrl-C does not unmount a running
    container's root; ``stop()`` ends it. With ``die_with_parent`` it also gets SIGTERM (and
    unmounts) when the calling *thread* exits (PR_SET_PDEATHSIG): only use it from a thread
    that lives as long as the mount. A runtime that ties the daemon to its own lifetime passes
    ``new_session=False`` and ``pdeathsig`` (e.g. SIGKILL).
    """
    from rootless import process

    opts = mount_options(lowerdirs, upperdir, workdir, options)
    r, w = os.pipe()
    cmd = process.python_module(
        "rootless.fuse_overlay", "-f", "--ready-fd", str(w), "-o", ",".join(opts), mountpoint
    )
    if die_with_parent:
        pdeathsig = signal.SIGTERM
    try:
        proc = process.spawn(cmd, pass_fds=(w,), stdin="null", stdout="null", stderr=stderr,
                             new_session=new_session, pdeathsig=pdeathsig)  # fmt: skip
    except OSError as e:
        os.close(r)
        os.close(w)
        raise OverlayError(f"cannot start the overlay daemon: {e.strerror}") from None
    os.close(w)
    try:
        status = _read_status(r, timeout)
    finally:
        os.close(r)
    if status == "ok":
        return proc
    if status is None:
        proc.kill_and_reap()
        raise OverlayError(f"the overlay daemon did not mount {mountpoint} within {timeout:.0f}s")
    proc.wait()
    msg = (
        status.removeprefix("error: ") if status else f"daemon exited with status {proc.returncode}"
    )
    raise OverlayError(f"fuse-overlay: {msg}")


def mount_options(
    lowerdirs: list[str], upperdir: str, workdir: str, options: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """fuse-overlayfs's -o options (lowerdirs top first; ':' and '\\' in paths escaped)."""
    return [
        "lowerdir=" + ":".join(p.replace("\\", "\\\\").replace(":", "\\:") for p in lowerdirs),
        f"upperdir={upperdir}",
        f"workdir={workdir}",
        *options,
    ]


def _read_status(fd: int, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf.decode(errors="replace").strip()
        buf += chunk
        if b"\n" in buf:
            return buf.decode(errors="replace").strip()


def is_mounted(mountpoint: str) -> bool:
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].encode().decode("unicode_escape")
            if mp == target:
                return True
    return False


def stop(proc, mountpoint: str, timeout: float = 10.0) -> None:
    """Unmount ``mountpoint`` (lazily if busy) and reap the daemon (a Child from spawn()). Safe to
    call twice."""
    if proc.poll() is None:
        proc.stop(timeout)
    if is_mounted(mountpoint):
        _force_unmount(mountpoint)


def _force_unmount(mountpoint: str) -> None:
    if os.geteuid() == 0:
        from rootless import syscalls

        try:
            syscalls.umount2(mountpoint, syscalls.MNT_DETACH)
            return
        except OSError:
            pass
    from rootless import process

    try:
        process.run(["fusermount3", "-u", "-z", mountpoint], capture=False)
    except OSError:
        pass
