"""A volume's first use, done by the container's setup process (rootless.runtime.setup): root in the
container's user namespace, with the container's root filesystem mounted at `root`, before the
namespace holder forks. There a chown can give files to any container id (they land on the host as
the user's subordinate ids), which the host user cannot do.

As podman does, for a plain volume (rootless.volumes.store, kind "dir"), holding a flock on the
volume's directory so that two containers starting at once do it once:

- copy-up (unless `nocopy`): if the image has a non-empty directory where the volume is mounted and
  the volume is still empty, the directory's contents are copied in (`cp -a`: owners, modes, times,
  links, xattrs); the volume then needs no copy-up any more;
- chown: the volume's root takes the owner of o=uid=N,gid=N, else the container's user, and then,
  where the image has that directory, its owner, mode and times (podman's rule, so that a
  postgres image's 0700 data dir stays postgres's); done once;
- `:U` (every start, any volume but tmpfs): everything in the volume is chowned to the container
  user's uid and gid.
"""

from __future__ import annotations

import fcntl
import os
import stat

from rootless.errors import ContainerError
from rootless.volumes import store


def _user_ids(root: str, user: str) -> tuple[int, int]:
    from rootless.runtime import rootfs, spec

    try:
        u = spec.resolve_user(user, etc=rootfs.secure_join(root, "/etc"))
    except ContainerError:
        return 0, 0  # the init reports an unknown user itself
    return u.uid, u.gid


def _outer(userns, uid, gid):
    """Container ids as setup's namespace has them (a nested user namespace's maps)."""
    if userns is None:
        return uid, gid
    from rootless.runtime.usermode import in_nested

    u = None if uid is None else in_nested(userns.uid_map, uid)
    g = None if gid is None else in_nested(userns.gid_map, gid)
    return (uid if u is None else u), (gid if g is None else g)


def _copy_up(src: str, dst: str) -> None:
    from rootless import process

    try:
        done = process.run(["cp", "-a", "--", os.path.join(src, "."), dst], timeout=3600)
    except (OSError, TimeoutError) as e:
        raise ContainerError(f"copying the image's files into the volume: {e}") from None
    if done.returncode != 0:
        why = (
            done.stderr.strip().splitlines()[-1]
            if done.stderr.strip()
            else f"exit {done.returncode}"
        )
        raise ContainerError(f"copying the image's files into the volume: {why}")


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), uid, gid)


def _first(vol, use, target: str, ids) -> dict:
    """Copy-up and chown of a plain volume; the record fields that changed."""
    data, changes = vol.mountpoint, {}
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    is_dir = st is not None and stat.S_ISDIR(st.st_mode)
    if vol.needs_copy_up and use.copy and is_dir and os.listdir(target):
        if not os.listdir(data):
            _copy_up(target, data)
        changes["needs_copy_up"] = False
    if vol.needs_chown:
        uid, gid = vol.owner()
        if uid is not None or gid is not None:
            uid, gid = ids.outer(uid, gid)
        else:
            uid, gid = ids()
            if is_dir:  # podman: the image's directory gives its owner, mode and times
                uid, gid = st.st_uid, st.st_gid
                os.chmod(data, stat.S_IMODE(st.st_mode))
                os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.lchown(data, -1 if uid is None else uid, -1 if gid is None else gid)
        changes["needs_chown"] = False
    return changes


def prepare(uses, root: str, user: str, userns=None) -> None:
    """Do each volume's first-use work (see the module docstring); ContainerError on failure.
    `userns`: the container's nested maps (rootless.runtime.usermode.UsernsMode): its container
    ids are then written as the ids of setup's namespace they stand for."""
    from rootless.runtime.rootfs import secure_join

    cache: list[tuple[int, int]] = []

    def ids() -> tuple[int, int]:
        if not cache:
            cache.append(_outer(userns, *_user_ids(root, user)))
        return cache[0]

    ids.outer = lambda u, g: _outer(userns, u, g)
    for use in uses:
        vol = store.find(use.name)
        if vol is None:
            continue
        try:
            fd = os.open(vol.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue  # removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            vol = store.find(use.name)  # fresh, under the volume's lock
            if vol is None:
                continue
            try:
                if use.kind == "dir" and (vol.needs_copy_up or vol.needs_chown):
                    changes = _first(vol, use, secure_join(root, use.target), ids)
                    if changes:
                        store.update(vol.name, **changes)
                if use.chown:
                    _chown_tree(use.source, *ids())
            except OSError as e:
                raise ContainerError(f"volume {vol.name}: {e.strerror or e}") from None
        finally:
            os.close(fd)
