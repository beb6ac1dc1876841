"""The volume store: each volume is <data home>/volumes/NAME/ with volume.json (its record) and _data/
(its Mountpoint, what a container mounts), as podman keeps <graphroot>/volumes/NAME/_data.

Records are written to a temporary file renamed over volume.json, under an exclusive flock on
<data home>/volumes.lock (as container records are), so readers never see half a record and two
`volume create`s never both get a name. A directory without volume.json is an unfinished create and
is not a volume. Removal renames the directory away under the lock (the name is free at once), then
deletes it; files a container wrote belong to subordinate ids, so that is done inside a user
namespace when the host user cannot.

Driver options (podman's `local` driver: type, device, o, [no]copy). Rootless cannot run mount(8) on
the host, so it supports what it can mount inside the container's own mount namespace:
- no type: a plain directory; `o=uid=N,gid=N` set its owner (container ids) on first use;
- `type=tmpfs`: a tmpfs at each start of each container (o: size, mode, uid, gid, nr_inodes,
  [no]exec, [no]suid, [no]dev, ro); it is not shared between containers;
- `type=none` (or `bind`) with `o=bind` (or rbind) and `device=/host/dir`: that directory is
  bind-mounted (o may add ro, nosuid, nodev, noexec);
and refuses every other type with one line (podman's rootless mode accepts them and then mounts
the plain directory instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field

from rootless import gotime, paths
from rootless.errors import RootlessError

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
RECORD = "volume.json"
DATA = "_data"
OPTION_KEYS = ("type", "device", "o", "copy", "nocopy")
TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes")
MOUNT_FLAGS = ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev")


class VolumeError(RootlessError):
    """A volume that cannot be created, found, used or removed."""


class NoSuchVolume(VolumeError):
    """No volume has that name (or unique name prefix)."""


def root() -> str:
    return os.path.join(paths.data_home(), "volumes")


def lock():
    """The store-wide lock for volume records (exclusive, held briefly)."""
    return paths.locked(os.path.join(paths.data_home(), "volumes.lock"), makedirs=root())


go_time = gotime.rfc3339nano  # podman's CreatedAt


@dataclass
class Volume:
    name: str
    created_ns: int
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    needs_copy_up: bool = True  # the image's files at the mount point are copied in on first use
    needs_chown: bool = True  # the root takes the container user (or o=uid,gid) on first use

    @property
    def dir(self) -> str:
        return os.path.join(root(), self.name)

    @property
    def mountpoint(self) -> str:
        return os.path.join(self.dir, DATA)

    @property
    def kind(self) -> str:
        """What a container mounts: "dir" (the Mountpoint), "tmpfs" or "bind" (o=bind device)."""
        t = self.options.get("type", "")
        if t == "tmpfs":
            return "tmpfs"
        return "bind" if self.options.get("device") else "dir"

    def mount_options(self) -> list[str]:
        return [o for o in self.options.get("o", "").split(",") if o]

    def owner(self) -> tuple[int | None, int | None]:
        """o=uid=N,gid=N of a plain volume (container ids), else (None, None)."""
        kv = dict(o.partition("=")[::2] for o in self.mount_options())
        return (int(kv["uid"]) if "uid" in kv else None, int(kv["gid"]) if "gid" in kv else None)

    def save(self) -> None:
        """Write the record atomically (the caller holds lock())."""
        paths.write_text_atomic(os.path.join(self.dir, RECORD), json.dumps(asdict(self), indent=1))

    def inspect(self, mount_count: int = 0) -> dict:
        """podman's `volume inspect` object."""
        out = {"Name": self.name, "Driver": self.driver, "Mountpoint": self.mountpoint,
               "CreatedAt": go_time(self.created_ns), "Labels": dict(self.labels),
               "Scope": "local", "Options": dict(sorted(self.options.items()))}  # fmt: skip
        if self.anonymous:
            out["Anonymous"] = True
        out["MountCount"] = mount_count
        if self.needs_copy_up:
            out["NeedsCopyUp"] = True
        if self.needs_chown:
            out["NeedsChown"] = True
        return out


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise VolumeError(
            f"invalid volume name {name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )


def _bad(what: str) -> VolumeError:
    return VolumeError(
        f"{what}: rootless cannot run mount(8); it supports a plain volume (o=uid=N,gid=N), "
        "type=tmpfs, and type=none with o=bind and device=/host/dir"
    )


def check_options(options: dict[str, str]) -> dict[str, str]:
    """The local driver's options, checked (see the module docstring); returns them."""
    for key in options:
        if key not in OPTION_KEYS:
            raise VolumeError(
                f"invalid volume option {key!r} for driver local: use type, device, o or nocopy"
            )
    kind, device = options.get("type", ""), options.get("device", "")
    opts = [o for o in options.get("o", "").split(",") if o]
    keys = [o.partition("=")[0] for o in opts]
    if kind == "tmpfs":
        for o, k in zip(opts, keys, strict=True):
            if not (o in MOUNT_FLAGS or ("=" in o and k in TMPFS_DATA)):
                raise VolumeError(
                    f"invalid tmpfs volume option {o!r}: use size=, mode=, uid=, gid=, nr_inodes=, [no]exec, [no]suid, [no]dev, ro"
                )
        return options
    if kind in ("", "none", "bind") and ("bind" in keys or "rbind" in keys):
        if not device.startswith("/") or not os.path.isdir(device):
            raise VolumeError(
                f"volume device {device or '(none)'!r}: a bind volume needs device=/an/existing/host/dir"
            )
        for o in opts:
            if o not in ("bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec"):
                raise VolumeError(
                    f"invalid bind volume option {o!r}: use bind, ro, nosuid, nodev, noexec"
                )
        return options
    if kind:
        raise _bad(f"volume type {kind}")
    if device:
        raise _bad(f"volume device {device} without o=bind")
    for o, k in zip(opts, keys, strict=True):
        if "=" not in o or k not in ("uid", "gid") or not o.partition("=")[2].isdigit():
            raise _bad(f"volume option o={o}")
    return options  # fmt: skip


def _load(name: str) -> Volume | None:
    try:
        with open(os.path.join(root(), name, RECORD)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    known = Volume.__dataclass_fields__
    try:
        return Volume(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


def list_volumes() -> list[Volume]:
    try:
        names = sorted(os.listdir(root()))
    except FileNotFoundError:
        return []
    return [v for n in names if not n.startswith(".") and (v := _load(n)) is not None]


def find(name: str) -> Volume | None:
    """The volume with this exact name, or None."""
    return _load(name) if NAME_RE.fullmatch(name) else None


def get(name: str, exit_code: int | None = None) -> Volume:
    """The volume with this name or unique name prefix; NoSuchVolume (podman's words) if none."""
    vol = find(name)
    if vol is not None:
        return vol
    matches = [v for v in list_volumes() if v.name.startswith(name)] if name else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise VolumeError(f"more than one volume matches {name!r}: give more of its name")
    raise NoSuchVolume(f'no volume with name "{name}" found: no such volume', exit_code=exit_code)


def create(name: str | None = None, *, labels: dict | None = None, options: dict | None = None,
           driver: str = "local", anonymous: bool = False, ignore: bool = False) -> Volume:  # fmt: skip
    """Make a volume (a random 64-hex name if none); VolumeError if the name is taken (or, with
    `ignore`, return the existing one)."""
    if driver not in ("local", ""):
        raise VolumeError(
            f'volume driver "{driver}" is not available: rootless has only the local driver'
        )
    options = check_options(dict(options or {}))
    if name is None:
        name = os.urandom(32).hex()
    check_name(name)
    with lock():
        existing = _load(name)
        if existing is not None:
            if ignore:
                return existing
            raise VolumeError(f"volume with name {name} already exists: volume already exists")
        vol = Volume(
            name, time.time_ns(), labels=dict(labels or {}), options=options, anonymous=anonymous
        )
        if os.path.lexists(vol.dir):  # an unfinished create: no record, so nothing used it
            _remove_dir(vol.dir)
        try:
            os.mkdir(vol.dir, 0o700)
            os.mkdir(vol.mountpoint, 0o755)
            os.chmod(vol.mountpoint, 0o755)  # whatever the umask: container root owns a 0755 dir
            vol.save()
        except OSError:  # a full store: no directory without its record
            with contextlib.suppress(OSError):
                _remove_dir(vol.dir)
            raise
    return vol  # fmt: skip


def get_or_create(name: str) -> Volume:
    """The volume `name`, created if there is none (podman's `-v NAME:/path`)."""
    return find(name) or create(name, ignore=True)


def update(name: str, **changes) -> Volume | None:
    """Change fields of a volume's record under the lock; the new record (None if it is gone)."""
    with lock():
        vol = _load(name)
        if vol is None:
            return None
        for k, v in changes.items():
            setattr(vol, k, v)
        vol.save()
        return vol


def source_of(vol: Volume) -> str:
    """The host directory a container bind-mounts for this volume ("" for tmpfs)."""
    if vol.kind == "tmpfs":
        return ""
    return vol.options["device"] if vol.kind == "bind" else vol.mountpoint


def remove(vol: Volume) -> None:
    """Delete a volume and its data (the caller checked that no container uses it)."""
    with lock():
        if not os.path.isdir(vol.dir):
            return
        gone = os.path.join(root(), f".removing-{vol.name}-{os.urandom(4).hex()}")
        os.replace(vol.dir, gone)
    _remove_dir(gone)


def _remove_dir(path: str) -> None:
    import shutil

    try:
        shutil.rmtree(path)
        return
    except OSError:
        pass
    from rootless.runtime.storage import remove_tree  # files of subordinate ids: in the userns
    from rootless.userns import fork_userns

    fork_userns(lambda: remove_tree(path) if os.path.lexists(path) else None).wait()
    if os.path.lexists(path):
        raise VolumeError(
            f"could not remove {path}: remove it with `rootless unshare rm -rf {path}`"
        )
