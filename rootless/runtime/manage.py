"""Managing existing containers: find, signal, stop, wait for, tear down and remove them.

Everything here works from the record (rootless.runtime.state) and the process table, so it works
after a crash too: teardown() kills every process the container was made of (each checked by pid and
start time), removes its cgroup, its storage (inside a user namespace: files belong to subordinate
ids) and its runtime dir. With the processes gone, the mount namespaces that held the container's
mounts are gone as well, so nothing is left in /proc/mounts.
"""

import os
import signal
import time

from rootless import paths
from rootless.errors import ContainerError, RootlessError
from rootless.runtime import state

ACTIVE = ("running", "stopping")  # as rootless.runtime.api.ACTIVE


def get(name: str) -> state.ContainerRecord:
    return state.refresh(state.lookup(name))


def records() -> list[state.ContainerRecord]:
    collect_orphans()
    return [state.refresh(r) for r in state.list_records()]


def is_running(rec) -> bool:
    return rec.state in ACTIVE


def parse_signal(value: str | int) -> int:
    v = str(value).upper()
    if v.isdigit():
        n = int(v)
        if 0 < n < signal.NSIG:
            return n
    else:
        name = v if v.startswith("SIG") else "SIG" + v
        sig = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
        if sig is not None:
            return int(sig)
    raise ContainerError(f"invalid signal {value!r}: use a name (TERM, KILL, HUP) or a number")


def kill(rec, sig: int) -> None:
    from rootless.runtime import restart

    restart.mark_stopped(rec)  # as podman: a container the user signals is not restarted
    if not is_running(rec):
        raise ContainerError(f"can only kill running containers: {rec.name} is {rec.state}")
    init = rec.pid_of("init")
    if not init or not state.signal_pid(init[0], init[1], sig):
        raise ContainerError(f"container {rec.name} is not running")


def _poll(pred, timeout: float | None, step: float = 0.02, most: float = 0.1) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    step = min(step, most)
    while True:
        if pred():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(step)
        step = min(step * 1.5, most)


def wait_exit(rec, timeout: float | None = None):
    """Block until the container has exited (its exit recorded); return the fresh record."""
    box = [rec]

    def done():
        fresh = state.load(rec.id)
        if fresh is None:  # removed (--rm): its monitor left the exit code behind
            box[0].state, box[0].exit_code = "exited", state.read_exit(rec.id)
            return True
        box[0] = state.refresh(fresh)
        return box[0].state not in ACTIVE and not (
            box[0].state == "created" and box[0].alive("monitor")
        )

    _poll(done, timeout)
    return box[0]


# podman 4.3's `wait --condition` values; "stopped" and "exited" wait for the exit
CONDITIONS = (
    "created",
    "initialized",
    "running",
    "stopped",
    "paused",
    "exited",
    "removing",
    "unknown",
)


def wait_condition(rec, conditions, interval: float = 0.1) -> int:
    """Block until the container is in one of podman's `conditions` (CONDITIONS): its exit code
    once it has exited when "exited" or "stopped" is among them, -1 when another state is reached
    (as podman's wait). `interval` bounds the polling step."""
    for_exit = bool({"exited", "stopped"} & set(conditions))
    states = set(conditions) - {"exited", "stopped"}
    box = [None]

    def done():
        fresh = state.load(rec.id)
        if fresh is None:
            if not for_exit:
                raise ContainerError(
                    f'no container with name or ID "{rec.name}" found: no such container'
                )
            code = state.read_exit(rec.id)  # removed (--rm): its monitor left the exit code behind
            box[0] = -1 if code is None else code
            return True
        fresh = state.refresh(fresh)
        if fresh.state in states:
            box[0] = -1
            return True
        starting = fresh.state in ("created", "initialized") and fresh.alive("monitor")
        if for_exit and fresh.state not in ACTIVE and not starting:
            box[0] = exit_code(fresh)
            return True
        return False

    _poll(done, None, most=interval)
    return box[0]


def exit_code(rec) -> int:
    """What `wait` prints for a container that is not running: its exit code; 0 for one never
    started (podman's record starts at 0), -1 when the code was lost."""
    if rec.exit_code is not None:
        return rec.exit_code
    return 0 if rec.state in ("created", "initialized") else -1


def wait_started(rec, timeout: float = 60.0):
    """Block while the container is being started (created, its monitor alive); the fresh record."""
    box = [rec]

    def done():
        fresh = state.load(rec.id)
        if fresh is None:
            return True
        box[0] = state.refresh(fresh)
        return not (box[0].state == "created" and box[0].alive("monitor"))

    _poll(done, timeout)
    return box[0]


def wait_settled(rec, timeout: float = 15.0):
    """wait_exit, then until the monitor has finished cleaning up (storage unmounted, helpers gone)."""
    rec = wait_exit(rec, timeout)
    _poll(lambda: not rec.alive("monitor"), timeout)
    return state.load(rec.id) or rec


def stop(rec, timeout: float | None = None, sig: int | None = None):
    """The container's stop signal (or sig), then SIGKILL after `timeout` seconds (None: its stop
    timeout); return the record once settled."""
    return stop_all([rec], timeout, sig)[0]


def stop_all(recs: list, timeout: float | None = None, sig: int | None = None) -> list:
    """stop() for several containers at once (a pod's): each gets its stop signal (or sig) now
    and SIGKILL once its own timeout (or `timeout`) has passed; their records once settled."""
    from rootless.runtime import restart, runflags

    start = time.monotonic()
    waiting = []  # (init's pid and start time, when to SIGKILL it)
    for rec in recs:
        restart.mark_stopped(rec)  # its restart policy no longer applies
        t = runflags.stop_timeout(rec.run) if timeout is None else timeout
        if not is_running(rec):
            if rec.restarting:  # its monitor waits to restart it: it sees the mark and ends
                _poll(lambda r=rec: not r.alive("monitor"), t + 5)
            continue
        init = rec.pid_of("init")
        s = runflags.stop_signal(rec.run) if sig is None else sig
        if init and state.signal_pid(init[0], init[1], s):
            waiting.append((init, start + t))
    step = 0.02
    while waiting:  # each is watched on its own deadline, not after the others
        now = time.monotonic()
        for init, deadline in list(waiting):
            if not state.alive(*init):
                waiting.remove((init, deadline))
            elif now >= deadline:
                state.signal_pid(init[0], init[1], signal.SIGKILL)
                waiting.remove((init, deadline))
        if waiting:
            time.sleep(step)
            step = min(step * 1.5, 0.1)
    return [wait_settled(rec) if is_running(rec) else rec for rec in recs]


def _kill_all(rec) -> None:
    live = [rec.pid_of(r) for r in state.ROLES if rec.pid_of(r) and state.alive(*rec.pid_of(r))]
    for pid, start in live:
        state.signal_pid(pid, start, signal.SIGKILL)
    if not _poll(lambda: not any(state.alive(p, s) for p, s in live), 10.0):
        left = [p for p, s in live if state.alive(p, s)]
        raise ContainerError(f"processes {left} of container {rec.name} did not exit: kill them")


def teardown(rec) -> None:
    """Remove a container and everything it owns, whatever state its processes are in."""
    from rootless.runtime import restart

    restart.mark_stopped(rec)
    if rec.alive("monitor") and is_running(rec):
        init = rec.pid_of("init")
        if init:
            state.signal_pid(init[0], init[1], signal.SIGKILL)
        wait_settled(rec, 10.0)  # the monitor records the exit and unmounts
    _kill_all(rec)
    cg = rec.cgroup or {}
    if cg.get("path") or cg.get("unit"):
        try:
            from rootless import cgroups

            cgroups.remove(cg.get("path"), cg.get("unit"))
        except RootlessError:
            pass
    remove_storage(rec)


def remove_storage(rec) -> None:
    import shutil

    shutil.rmtree(rec.run_dir, ignore_errors=True)
    if not os.path.isdir(rec.dir) and not os.path.lexists(state.trash_path(rec.id)):
        return  # removed meanwhile (by its monitor, for --rm)
    try:
        state.remove_files(rec)
    except OSError as e:
        from rootless.errors import store_error

        err = store_error(paths.data_home(), e)
        if err is not None:  # a read-only store: the user namespace cannot help
            raise err from None
        trash = state.trash_path(rec.id)
        _remove_in_userns([p for p in (rec.dir, trash) if os.path.lexists(p)])
        if os.path.lexists(trash):
            raise ContainerError(
                f"could not remove {trash}: remove it with `rootless unshare rm -rf`"
            ) from None
    if os.path.exists(rec.dir):
        raise ContainerError(
            f"could not remove {rec.dir}: remove it with `rootless unshare rm -rf`"
        )


def _remove_in_userns(trees: list[str]) -> None:
    """Remove directories holding files of subordinate ids (overlay's 0000 work/work included)."""
    if not trees:
        return
    from rootless.runtime.storage import remove_tree
    from rootless.userns import fork_userns

    def rm():
        for t in trees:
            if os.path.lexists(t):
                remove_tree(t)

    fork_userns(rm).wait()


def collect_orphans() -> None:
    """Remove what a crash left in the containers directory (a removal killed part-way): run by
    the listing verbs, so nothing stays unreachable. Best effort: a read-only store keeps them."""
    try:
        trees = state.orphans()
        _remove_in_userns(trees)
    except (OSError, RootlessError):
        pass


def remove(rec, force: bool = False) -> None:
    if is_running(rec) and not force:
        raise ContainerError(
            f"cannot remove container {rec.id[:12]} as it is running: stop it first or use rm -f",
            exit_code=2,  # podman's code for a container in the wrong state
        )
    teardown(rec)
