"""The namespace holder: the process that creates (or joins) the container's mount, pid, uts, ipc
and network namespaces and forks the container's init into them.

It is forked by setup (PDEATHSIG SIGKILL), so it is root in the container's user namespace and sees
the mounted storage. unshare(CLONE_NEWPID) puts only its children in the new pid namespace, so it
stays outside as the init's parent: it tells the monitor its own pid and the init's (host pids),
waits for the init and exits with its exit code (128+N for signal N). A namespace the plan gives
a path for is joined (setns) instead of created: that is how pods will share an infra
container's namespaces. The user namespace is setup's, and the cgroup namespace is created by the
init itself once the monitor has placed it in its cgroup.
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


def main(plan, launch, rootfs, chan, stdio) -> int:
    """The holder (see the module docstring); the init's exit code."""
    chan.send(Pid("nsholder", os.getpid()))
    try:
        _enter(plan)
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
