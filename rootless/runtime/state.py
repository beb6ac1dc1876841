"""Container records: what a container is, where its files live, and its lifecycle state on disk.

A container is a directory rootless.paths.data_home()/containers/<id>/ holding config.json (the record)
and the per-container storage (upper/, work/, merged/ or rootfs/), plus a runtime directory
rootless.paths.runtime_dir()/<id>/ for generated files (hostname, hosts, resolv.conf) and sockets.
Names are unique; lookups accept a name, a full id or a unique id prefix.
"""

import json
import os
import time
from dataclasses import asdict, dataclass, field

from rootless import paths
from rootless.errors import ContainerError

STATES = ("created", "running", "stopped", "exited")


def containers_root() -> str:
    return os.path.join(paths.data_home(), "containers")


def container_dir(cid: str) -> str:
    return os.path.join(containers_root(), cid)


def runtime_dir(cid: str) -> str:
    return os.path.join(paths.runtime_dir(), cid)


@dataclass
class ContainerRecord:
    id: str
    name: str
    image: str  # the reference the user gave
    image_id: str
    created: float
    state: str = "created"
    command: list[str] = field(default_factory=list)
    pid: int = 0  # host pid of the container's main process while running
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    storage_driver: str = "overlay"
    rm: bool = False
    options: dict = field(default_factory=dict)  # resolved run options, for start/inspect

    @property
    def dir(self) -> str:
        return container_dir(self.id)

    @property
    def run_dir(self) -> str:
        return runtime_dir(self.id)

    def save(self) -> None:
        path = os.path.join(self.dir, "config.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=1)
        os.replace(tmp, path)

    def set_state(self, state: str, **kw) -> None:
        self.state = state
        for k, v in kw.items():
            setattr(self, k, v)
        self.save()


def new_id() -> str:
    return os.urandom(32).hex()


_ADJ = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry")
_NOUN = ("turing", "hopper", "lovelace", "ritchie", "thompson", "knuth", "dijkstra", "liskov")


def _random_name() -> str:
    r = os.urandom(4)
    return f"{_ADJ[r[0] % len(_ADJ)]}_{_NOUN[r[1] % len(_NOUN)]}_{r[2:].hex()}"


def list_records() -> list[ContainerRecord]:
    root = containers_root()
    out = []
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return out
    for cid in names:
        rec = _load(cid)
        if rec is not None:
            out.append(rec)
    return out


def _load(cid: str) -> ContainerRecord | None:
    try:
        with open(os.path.join(container_dir(cid), "config.json")) as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    known = ContainerRecord.__dataclass_fields__
    return ContainerRecord(**{k: v for k, v in data.items() if k in known})


def lookup(name_or_id: str) -> ContainerRecord:
    """Find a container by name, id or unique id prefix; ContainerError if none or ambiguous."""
    recs = list_records()
    for r in recs:
        if r.name == name_or_id or r.id == name_or_id:
            return r
    matches = [r for r in recs if r.id.startswith(name_or_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ContainerError(f"no container with name or ID {name_or_id!r} found")
    raise ContainerError(f"{name_or_id!r} matches more than one container: use more of the ID")


def create(image: str, image_id: str, *, name: str | None, **kw) -> ContainerRecord:
    """Allocate an id and a unique name, create the container directories and save the record."""
    if name is not None:
        if not name or not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
            raise ContainerError(f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    root = containers_root()
    os.makedirs(root, mode=0o700, exist_ok=True)
    taken = {r.name for r in list_records()}
    if name is not None and name in taken:
        raise ContainerError(
            f'the container name "{name}" is already in use: remove it (rootless rm {name}) or pick another'
        )
    while name is None or name in taken:
        name = _random_name()
    cid = new_id()
    os.mkdir(container_dir(cid), 0o700)
    os.makedirs(paths.runtime_dir(), mode=0o700, exist_ok=True)
    os.mkdir(runtime_dir(cid), 0o700)
    rec = ContainerRecord(
        id=cid, name=name, image=image, image_id=image_id, created=time.time(), **kw
    )
    rec.save()
    return rec


def remove_files(rec: ContainerRecord) -> None:
    """Remove the record and runtime dir (host-owned). Storage owned by subordinate ids must already be
    gone (the runtime removes it inside the user namespace)."""
    import shutil

    shutil.rmtree(rec.run_dir, ignore_errors=True)
    shutil.rmtree(rec.dir)
