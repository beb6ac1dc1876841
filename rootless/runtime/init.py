"""The container's init: PID 1 of the container's pid namespace, until it execs the command.

In order: the hostname, ``lo`` up (with its own network namespace), the root filesystem
(rootless.runtime.rootfs: mounts, pivot_root, masked paths), stdio or a pty from the container's
own devpts (its master goes to the monitor, a ``Pty`` message), then it waits for the monitor's
``Go`` when the monitor has work to do first (before which every inherited fd but stdio and
--preserve-fds is closed) (the network helper, the cgroup), creates its cgroup
namespace (rooted at the cgroup it was placed in), sets its resource limits (rootless.runtime.
ulimits), takes the container's user, capabilities and seccomp filter (rootless.runtime.security)
and execs the command. A failure is one ``Failed`` message with its exit code (126/127 for a
command that cannot run, or a limit that cannot be set); exec'ing closes the channel.
"""

from __future__ import annotations

import os

from rootless import syscalls as sc
from rootless.errors import EXIT_RUNTIME
from rootless.network import netlink
from rootless.pods import pause  # imported here: after pivot_root no module can be found
from rootless.runtime import command, console, rootfs, security, spec, ulimits
from rootless.runtime.channel import Go, Pty, close_all
from rootless.runtime.plan import PAUSE


def _stdio(chan, stdio, user, opts) -> None:
    if stdio is not None and not opts.tty:
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)  # dup2 clears O_CLOEXEC on the copy
    if opts.tty:
        console.take_pty(user.uid, user.gid, lambda fd: chan.send(Pty(fd)))
    elif not opts.interactive and stdio is None:
        fd = os.open("/dev/null", os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)


def main(plan, launch, rootfs_cfg, chan, stdio) -> int:
    """The init (see the module docstring); returns only on failure."""
    uts, net = plan.namespace("uts"), plan.namespace("network")
    pid_ns = plan.namespace("pid")
    if pid_ns is not None and pid_ns.path is not None and net.path is not None:
        security.seal()  # others may see us at once; the monitor needs no /proc/PID/ns of ours
    if uts is not None and uts.path is None:  # a pod's uts namespace has its hostname; host's: own
        sc.sethostname(launch.hostname)
    if rootfs_cfg.new_netns and net.path is None:
        netlink.loopback_up()
        rootfs.rewrite("/proc/sys/net/ipv4/ping_group_range", "0 0")  # podman's default sysctl
    rootfs.setup(rootfs_cfg)
    proc = launch.process
    user = spec.resolve_user(proc.user)
    if plan.userns is not None and plan.userns.mode in ("auto", "uidmap"):
        user.groups = [g for g in user.groups if g != user.gid]  # podman 4.3 adds no primary gid
    if plan.opts.group_add:
        more = spec.added_groups(plan.opts.group_add, rootfs_cfg.container_id)
        user.groups = sorted({*user.groups, *more})
    env = dict(proc.env)
    env.setdefault("HOME", user.home)
    _stdio(chan, stdio, user, plan.opts)
    close_all(*(stdio or ()))
    preserve = plan.opts.preserve_fds
    security.close_host_fds(preserve, chan.fileno())  # no host fd crosses (security.close_host_fds)
    if preserve and "LISTEN_FDS" in env:
        env["LISTEN_PID"] = str(os.getpid())
    if launch.need_go and not isinstance(chan.recv(), Go):
        return EXIT_RUNTIME  # the monitor failed, and says why
    # the channel stays open to report a failure; it is O_CLOEXEC, so exec closes it
    if plan.namespace("cgroup") is not None:  # not --cgroupns host
        sc.unshare(
            sc.CLONE_NEWCGROUP
        )  # rooted at the container's cgroup: /proc/self/cgroup is 0::/
    ulimits.apply(launch.rlimits)  # --ulimit and podman's defaults (a failure: exit 126)
    if proc.args == [PAUSE]:  # a pod's infra container: pause here (rootless.pods.pause)
        return pause.main(chan, plan.security, user)  # members join its /proc/PID/ns: dumpable
    security.seal()  # the monitor is done with our /proc/PID/ns: from now until exec, no one's
    command.exec_as(proc.args, env, proc.cwd, plan.security, user)
    return EXIT_RUNTIME  # not reached
