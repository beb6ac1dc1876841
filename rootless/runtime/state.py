"""Container records: what a container is, where its files live, and its lifecycle state on disk.

A container is a directory rootless.paths.data_home()/containers/<id>/ holding config.json (the record)
and the per-container storage (upper/, work/, merged/ or rootfs/), plus a runtime directory
rootless.paths.runtime_dir()/<id>/ for generated files (hostname, hosts, resolv.conf) and sockets.
Names are unique; lookups accept a name, a full id or a unique id prefix.

Concurrency: every write of a record (and the name check in create()) happens under an exclusive
fcntl.flock on <data home>/containers.lock, and goes to a temporary file renamed over config.json, so readers
never see half a record and two commands never lose each other's names. A record whose directory is
gone (removed by `rm`) is never recreated.

Truth: the record says what was last known; refresh() checks it against the process table. Every pid
is kept with its start time (/proc/PID/stat field 22), so a recycled pid is never taken for a live
container: a "running" container whose init is gone is reported "exited" with an unknown code (None).
"""

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from rootless import paths
from rootless.errors import ContainerError, store_error
from rootless.runtime.spec import RunOptions

STATES = ("created", "running", "stopping", "exited")


class NoSuchContainer(ContainerError):
    """No container has that name, id or id prefix."""


def containers_root() -> str:
    return os.path.join(paths.data_home(), "containers")


def container_dir(cid: str) -> str:
    return os.path.join(containers_root(), cid)


def runtime_dir(cid: str) -> str:
    return os.path.join(paths.runtime_dir(), cid)


class ProcessConfig(NamedTuple):
    """The container's main process as resolved on the host (for exec and inspect)."""

    args: list[str] = []
    env: dict[str, str] = {}  # never mutated: the record is rewritten whole
    cwd: str = "/"
    user: str = ""


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
    run: RunOptions | None = None  # the options it was created with (host paths absolute)
    hostname: str = ""
    network: str = ""  # the --network value
    process: ProcessConfig | None = None
    pids: dict[str, list] = field(default_factory=dict)  # role -> [host pid, start time]
    net: dict | None = None  # rootless.network.handle.NetworkHandle.to_dict()
    mounts: list[dict] = field(default_factory=list)  # rootfs.Mount fields
    cgroup: dict | None = None  # rootless.cgroups.CgroupPlan.state()
    limits: dict | None = None  # the limits as inspect's HostConfig names them
    restart_count: int = 0  # restarts by the restart policy since the user's last start
    restarting: bool = False  # the monitor waits to restart it (rootless.runtime.restart)

    @property
    def dir(self) -> str:
        return container_dir(self.id)

    @property
    def run_dir(self) -> str:
        return runtime_dir(self.id)

    def save(self, *, locked: bool = False) -> None:
        """Write the record (atomically); `locked`: the caller holds lock() already."""
        if not locked:
            with lock():
                return self.save(locked=True)
        if not os.path.isdir(self.dir):
            return  # removed meanwhile: never resurrect a record
        path = os.path.join(self.dir, "config.json")
        tmp = f"{path}.{os.getpid()}.tmp"
        data = asdict(self)
        if self.process is not None:
            data["process"] = self.process._asdict()  # a dict in the file, as before
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # never leave a half-written record behind
            raise store_error(paths.data_home(), e) or e from None

    def set_state(self, state: str, **kw) -> None:
        self.state = state
        for k, v in kw.items():
            setattr(self, k, v)
        self.save()

    @property
    def log_path(self) -> str:
        """The container's log file ("" with the none or passthrough log driver)."""
        run = self.run
        if run is not None and run.log_driver in ("none", "passthrough"):
            return ""
        return (run.log_opts.get("path") if run else None) or os.path.join(self.dir, "ctr.log")

    def check_logged(self) -> None:
        """ContainerError, podman's, if the container keeps no log to read."""
        if not self.log_path:
            raise ContainerError(f"this container is using the '{self.run.log_driver}' log driver, "
                                 "cannot read logs: this container is not logging output")  # fmt: skip

    def set_pid(self, role: str, pid: int) -> None:
        """Record one of the container's processes (see ROLES) with its start time."""
        st = proc_start_time(pid) if pid else None
        self.pids[role] = [pid, st]

    def pid_of(self, role: str) -> tuple[int, int | None] | None:
        entry = self.pids.get(role)
        return (entry[0], entry[1]) if entry else None

    def alive(self, role: str) -> bool:
        entry = self.pids.get(role)
        return bool(entry) and alive(entry[0], entry[1])


# The processes a container is made of, as its record names them (docs/DEVELOPING.md):
ROLES = ("init", "nsholder", "daemon", "setup", "net", "net_helper", "monitor")
_OLD_ROLES = {"nsmon": "nsholder"}  # records written before the namespace holder got its name


def _from_json(data: dict) -> ContainerRecord:
    """A record from its JSON, including those written before the record had typed fields (all
    but the basics were then in an `options` dict)."""
    data = dict(data)
    old = data.pop("options", None)
    if isinstance(old, dict):
        for key in (
            "run",
            "hostname",
            "network",
            "process",
            "pids",
            "net",
            "mounts",
            "cgroup",
            "limits",
        ):
            if key in old and key not in data:
                data[key] = old[key]
    known = ContainerRecord.__dataclass_fields__
    rec = ContainerRecord(**{k: v for k, v in data.items() if k in known})
    if isinstance(rec.run, dict):
        fields = RunOptions.__dataclass_fields__
        run = {k: v for k, v in rec.run.items() if k in fields}
        rec.run = RunOptions(**{"image": rec.image, **run})
    if isinstance(rec.process, dict):
        rec.process = ProcessConfig(
            **{k: v for k, v in rec.process.items() if k in ProcessConfig._fields}
        )
    rec.pids = {_OLD_ROLES.get(role, role): entry for role, entry in (rec.pids or {}).items()}
    rec.mounts = [m for m in rec.mounts or [] if isinstance(m, dict)]
    return rec


def lock():
    """The store-wide lock for container records (exclusive, held briefly)."""
    return paths.locked(
        os.path.join(paths.data_home(), "containers.lock"), makedirs=containers_root()
    )


def proc_start_time(pid: int) -> int | None:
    """The start time of a process in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[0] == b"Z":  # a zombie has finished
            return None
        return int(fields[19])
    except (ValueError, IndexError):
        return None


def alive(pid: int | None, start: int | None) -> bool:
    """Whether the process that had `pid` with start time `start` still exists (pid-reuse-safe)."""
    if not pid or start is None:  # no start time: it was gone when it was recorded
        return False
    return proc_start_time(pid) == start


def signal_pid(pid: int | None, start: int | None, sig: int) -> bool:
    """Send sig to that exact process through a pidfd (no race with pid reuse). False if it is gone."""
    import signal as _signal

    if not pid:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not alive(pid, start):  # the pidfd now pins the process: check it is still ours
            return False
        _signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def refresh(rec: "ContainerRecord") -> "ContainerRecord":
    """Correct a record's state from the process table (see the module docstring)."""
    if rec.state not in ("running", "created", "stopping"):
        return rec
    pids = rec.pids
    init = pids.get("init")
    if init and alive(*init):
        if rec.state != "running" and rec.state != "stopping":
            rec.state = "running"
        return rec
    monitor = pids.get("monitor")
    if monitor and alive(*monitor):
        if rec.state == "running":
            rec.state = "stopping"  # the init has gone; its monitor is recording the exit
        return rec
    if rec.state == "created" and not init:
        if not monitor or not os.path.isdir(rec.dir):
            return rec
    # nobody is left to record the exit: the code its monitor reserved room for, else unknown.
    # Only in memory: reading verbs never write (the store may be full or read-only); the next
    # verb that changes the container saves it.
    fresh = _load(rec.id) or rec
    if fresh.state in ("running", "created", "stopping"):
        code, finished = read_reserved_exit(fresh)
        fresh.state = "exited"
        fresh.exit_code = code
        fresh.pid = 0
        fresh.finished = fresh.finished or finished or _mtime(fresh)
    return fresh


def _mtime(rec: "ContainerRecord") -> float:
    try:
        return os.stat(os.path.join(rec.dir, "config.json")).st_mtime
    except OSError:
        return time.time()


# The exit code survives a full store: the monitor writes it in place into room reserved at start
# (a file of EXIT_ROOM bytes), which needs no new blocks, before it tries to save the record.
EXIT_ROOM = 64


def _exit_file(rec: "ContainerRecord") -> str:
    return os.path.join(rec.dir, "exit")


def reserve_exit(rec: "ContainerRecord") -> None:
    """Reserve the room for this run's exit code (blank). Raises the store error if it is full."""
    try:
        fd = os.open(_exit_file(rec), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, b" " * EXIT_ROOM, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise store_error(paths.data_home(), e) or e from None


def record_exit(rec: "ContainerRecord", code: int | None, finished: float) -> None:
    """Write the exit code into its reserved room (best effort: the record is saved too)."""
    text = f"{'' if code is None else code} {finished:.6f}".encode().ljust(EXIT_ROOM)[:EXIT_ROOM]
    with contextlib.suppress(OSError):
        fd = os.open(_exit_file(rec), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, text, 0)
        finally:
            os.close(fd)


def read_reserved_exit(rec: "ContainerRecord") -> tuple[int | None, float | None]:
    try:
        with open(_exit_file(rec), "rb") as f:
            parts = f.read(EXIT_ROOM).split()
    except OSError:
        return None, None
    try:
        return (int(parts[0]), float(parts[1])) if len(parts) == 2 else (None, None)
    except ValueError:
        return None, None


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
        if cid.startswith("."):
            continue
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
    return _from_json(data)


def load(cid: str) -> ContainerRecord | None:
    return _load(cid)


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
        raise NoSuchContainer(
            f'no container with name or ID "{name_or_id}" found: no such container'
        )
    raise ContainerError(f"{name_or_id!r} matches more than one container: use more of the ID")


def create(image: str, image_id: str, *, name: str | None, **kw) -> ContainerRecord:
    """Allocate an id and a unique name, create the container directories and save the record."""
    if name is not None:
        if not name or not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
            raise ContainerError(f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    with lock():
        taken = {r.name for r in list_records()}
        if name is not None:
            _check_free(name, taken)
        while name is None or name in taken:
            name = _random_name()
        cid = new_id()
        while any(r.startswith(cid[:12]) or cid.startswith(r[:12]) for r in _ids()):
            cid = new_id()  # 12-character ids stay unique, as podman's short ids
        rec = ContainerRecord(
            id=cid, name=name, image=image, image_id=image_id, created=time.time(), **kw
        )
        try:
            os.mkdir(container_dir(cid), 0o700)
            os.makedirs(paths.runtime_dir(), mode=0o700, exist_ok=True)
            os.mkdir(runtime_dir(cid), 0o700)
            rec.save(locked=True)
        except BaseException as e:  # no directory without a record: nothing half-created
            import shutil

            for d in (container_dir(cid), runtime_dir(cid)):
                shutil.rmtree(d, ignore_errors=True)
            if isinstance(e, OSError):
                raise store_error(paths.data_home(), e) or e from None
            raise
    return rec


def _check_free(name: str, taken: set[str]) -> None:
    """ContainerError unless `name` is free among containers and pods (the caller holds lock())."""
    if name not in taken and os.path.isdir(_pods_dir()):
        from rootless.pods import store as pod_store  # only with pods: 1 ms of imports

        if name in pod_store.names():  # podman keeps one set of names for pods and containers
            raise ContainerError(f'the name "{name}" is in use by a pod: pick another name')
    if name in taken:
        raise ContainerError(
            f'the container name "{name}" is already in use: remove it (rootless rm {name}) or pick another'
        )


def rename(name_or_id: str, new: str) -> ContainerRecord:
    """Give a container (running or not) a new name, as podman rename does; the id, the hostname
    and the names already registered in a network's DNS stay as they were."""
    if not new or not all(c.isalnum() or c in "_.-" for c in new) or not new[0].isalnum():
        raise ContainerError("names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument")
    with lock():
        rec = lookup(name_or_id)
        if rec.name != new:
            _check_free(new, {r.name for r in list_records() if r.id != rec.id})
            rec.name = new
            rec.save(locked=True)
    return rec


def _pods_dir() -> str:
    return os.path.join(paths.data_home(), "pods")  # rootless.pods.store.root()


def _ids() -> list[str]:
    try:
        return [n for n in os.listdir(containers_root()) if not n.startswith(".")]
    except FileNotFoundError:
        return []


def _exits_dir() -> str:
    return os.path.join(paths.runtime_dir(), "exits")


def write_exit(cid: str, code: int | None) -> None:
    """Keep the exit code of a container that removes itself (--rm), for `wait`. Entries older
    than an hour are dropped."""
    d = _exits_dir()
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        now = time.time()
        for n in os.listdir(d):
            p = os.path.join(d, n)
            try:
                if now - os.stat(p).st_mtime > 3600:
                    os.unlink(p)
            except OSError:
                pass
        tmp = os.path.join(d, f".{cid}.{os.getpid()}")
        paths.write_text_atomic(os.path.join(d, cid), "" if code is None else str(code), tmp)
    except OSError:
        pass


def read_exit(cid: str) -> int | None:
    try:
        with open(os.path.join(_exits_dir(), cid)) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def trash_path(cid: str) -> str:
    """Where a container's directory goes while it is removed: hidden from list_records, named
    with the remover's pid so that a removal killed part-way is collected (orphans())."""
    return os.path.join(containers_root(), f".removing-{cid}-{os.getpid()}")


def orphans() -> list[str]:
    """Directories a crash left behind, made ready for removal: a container directory without a
    record (its removal or creation was killed part-way) is renamed to a trash name, and every
    trash directory whose remover is gone is returned. Empty when there is nothing to collect."""
    root = containers_root()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    if not any(n.startswith(".removing-") or not _has_record(n) for n in names):
        return []
    out = []
    with lock():  # create() makes a directory and its record under this lock: no race with it
        for n in os.listdir(root):
            if not n.startswith(".") and not _has_record(n):
                t = trash_path(n) + "-orphan"
                os.rename(os.path.join(root, n), t)
                out.append(t)
            elif n.startswith(".removing-"):
                pid = n.rsplit("-", 2)[-2] if n.endswith("-orphan") else n.rsplit("-", 1)[-1]
                if not pid.isdigit() or not os.path.exists(f"/proc/{pid}"):
                    out.append(os.path.join(root, n))
    return out


def _has_record(name: str) -> bool:
    if name.startswith(".") or name.endswith(".lock"):
        return True  # not a container directory
    path = os.path.join(containers_root(), name)
    return not os.path.isdir(path) or os.path.exists(os.path.join(path, "config.json"))


def remove_files(rec: ContainerRecord) -> None:
    """Remove the record and runtime dir (host-owned). Storage owned by subordinate ids must already be
    gone (the runtime removes it inside the user namespace)."""
    import shutil

    shutil.rmtree(rec.run_dir, ignore_errors=True)
    trash = trash_path(rec.id)
    with lock():  # one rename: the record and its storage vanish together; a crash after it
        if os.path.isdir(rec.dir):  # leaves a trash directory that orphans() collects
            os.rename(rec.dir, trash)
    if os.path.lexists(trash):
        shutil.rmtree(trash)
