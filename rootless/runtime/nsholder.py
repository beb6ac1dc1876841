"""The namespace holder: the process that creates (or joins) the container's mount, pid, uts, ipc
and network namespaces and forks the container's init into them.

It is forked by setup (PDEATHSIG SIGKILL), so it is root in the container's user namespace and sees
the mounted storage. unshare(CLONE_NEWPID) puts only its children in the new pid namespace, so it
stays outside as the init's parent: it tells the monitor its own pid and the init's (host pids),
waits for the init and exits with its exit code (128+N for signal N). A namespace the plan gives
a path for is joined (setns) instead of created: that is how pods will share an infra
container's namespaces. The user namespace is setup's, and the cgroup namespace is created by the
init itself once the monitor has placed it in its cgroup. With `--userns=keep-id` and the other id
maps (rootless.runtime.usermode) the holder first makes a user namespace nested in setup's, as
podman does: it unshares, setup (root of the outer one, so free to map any of its ids) writes the
maps (`write_maps`), and the holder becomes root of the inner one; every namespace after it is
owned by it.
"""

from __future__ import annotations

import os

from rootless import process
from rootless import syscalls as sc
from rootless.errors import ContainerError
from rootless.runtime import init
from rootless.runtime.channel import Pid, close_all
from rootless.runtime.plan import NAMESPACES

HELD = ("mount", "pid", "uts", "ipc", "network")  # the namespace types this process sets up


def _enter(plan) -> None:
    new = 0
    for ns in plan.namespaces:
        if ns.type not in HELD:
            continue
        flag = NAMESPACES[ns.type][1]
        if ns.path is None:
            new |= flag
            continue
        sc.setns_path(ns.path, flag)
    sc.unshare(new)


def _nested(sync: tuple[int, int]) -> None:
    """Unshare the nested user namespace and let setup write its maps. The holder stays the host
    user (with every capability in the new namespace) until _become_root: it still has to open
    the user's private paths (rootless.runtime.hostpaths)."""
    ready, go = sync
    sc.unshare(sc.CLONE_NEWUSER)
    os.write(ready, b"u")
    os.close(ready)
    got = os.read(go, 1)
    os.close(go)
    if got != b"g":
        raise ContainerError("creating the container's user namespace: setup could not map it")


def _become_root() -> None:
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)
    # a change of ids makes a process non-dumpable, and then the host user (the network helper
    # joining the init's namespaces, `exec`) may not open its /proc/PID/ns: as before, dumpable
    sc.prctl(sc.PR_SET_DUMPABLE, 1)


def write_maps(pid: int, mode, sync: tuple[int, int]) -> None:
    """In setup: wait for holder `pid` to unshare, write the nested maps of `mode` (a
    rootless.runtime.usermode.UsernsMode), release it. ContainerError (the holder is told) on failure."""
    ready, go = sync
    try:
        if os.read(ready, 1) != b"u":
            raise ContainerError("creating the container's user namespace: the holder died")
        for kind, m in (("uid", mode.uid_map), ("gid", mode.gid_map)):
            text = "".join(f"{c} {h} {n}\n" for c, h, n in m)
            try:
                with open(f"/proc/{pid}/{kind}_map", "w") as f:
                    f.write(text)
            except OSError as e:
                raise ContainerError(
                    f"writing the container's {kind} map ({' '.join(mode.map_strings(kind))}): "
                    f"{e.strerror}"
                ) from None
        os.write(go, b"g")
    finally:
        os.close(ready)
        os.close(go)


def main(plan, launch, rootfs, chan, stdio, sync=None) -> int:
    """The holder (see the module docstring); the init's exit code. `sync`: the pipe ends to
    setup for a nested user namespace (read end of "go", write end of "ready")."""
    chan.send(Pid("nsholder", os.getpid()))
    try:
        if sync is not None:
            _nested(sync)
        _enter(plan)
        if sync is not None:
            from rootless.runtime import hostpaths

            rootfs = hostpaths.pin(rootfs)
            _become_root()
    except OSError as e:
        raise ContainerError(f"creating the container's namespaces: {e.strerror}") from None
    child = process.fork(
        lambda: init.main(plan, launch, rootfs, chan, stdio),
        report=chan.fail,
        context="setting up the container",
        bug="internal error in the container setup",
    )
    chan.send(Pid("init", child.pid))
    close_all(chan, *(stdio or ()))
    return child.wait()
