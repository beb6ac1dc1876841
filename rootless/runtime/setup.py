"""The setup process: root in the container's user namespace, in a mount namespace of its own, where
it mounts the container's storage (rootless.runtime.storage) before the pid namespace exists, so
the fuse daemon is neither visible nor killable from the container.

It is forked by the monitor (rootless.userns.fork_userns, PDEATHSIG SIGTERM: if the monitor dies,
the container ends), tells the monitor the fuse daemon's pid, forks the namespace holder
(rootless.runtime.nsholder) and waits for it while watching the fuse daemon through its pidfd: if
the daemon dies first, the root filesystem is gone and the container is killed. Then it unmounts
the storage (and removes it for --rm) and exits with the container's exit code.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace

from rootless import process
from rootless import syscalls as sc
from rootless.errors import EXIT_RUNTIME
from rootless.runtime import console, nsholder, state
from rootless.runtime.channel import Pid, close_all


class _Setup:
    def __init__(self, plan, launch, storage, chan, stdio):
        self.plan, self.launch, self.storage, self.chan, self.stdio = (
            plan,
            launch,
            storage,
            chan,
            stdio,
        )
        self.holder: process.Child | None = None
        self.orphaned = False

    def on_term(self, *_) -> None:
        """The monitor died (PDEATHSIG) or someone asked us to stop: end the container."""
        self.orphaned = True
        if self.holder is not None:
            self.holder.kill()

    def run(self) -> int:
        try:
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            root = self.storage.mount()
        except Exception as e:
            self.chan.fail(
                getattr(e, "exit_code", EXIT_RUNTIME), f"mounting the container's root: {e}"
            )
            self.cleanup_storage()
            return EXIT_RUNTIME
        try:
            if self.orphaned:
                return EXIT_RUNTIME
            if self.plan.volumes and not self._volumes(root):
                return EXIT_RUNTIME
            return self._hold(replace(self.launch.rootfs, root=root))
        finally:
            self.cleanup_storage()

    def _volumes(self, root: str) -> bool:
        """The volumes' first use (rootless.volumes.firstuse); False (reported) on failure."""
        from rootless.volumes import firstuse

        try:
            firstuse.prepare(self.plan.volumes, root, self.launch.process.user, self.plan.userns)
        except Exception as e:
            self.chan.fail(getattr(e, "exit_code", EXIT_RUNTIME), f"preparing the volumes: {e}")
            return False
        return True

    def _hold(self, rootfs) -> int:
        daemon = self.storage.proc
        if daemon is not None:
            self.chan.send(Pid("daemon", daemon.pid))
        chan, stdio = self.chan, self.stdio
        nested = self.plan.userns
        pipes = (*os.pipe(), *os.pipe()) if nested is not None else ()  # ready r/w, go r/w
        theirs = (pipes[1], pipes[2]) if pipes else None
        try:
            self.holder = process.fork(
                lambda: nsholder.main(self.plan, self.launch, rootfs, chan, stdio,
                                      _only(theirs, pipes)),
                report=chan.fail,
                context="creating the container's namespaces",
            )  # fmt: skip
        finally:
            for fd in theirs or ():
                os.close(fd)
        if pipes:
            try:
                nsholder.write_maps(self.holder.pid, nested, (pipes[0], pipes[3]))
            except Exception as e:  # the holder reads EOF and fails; it is reaped below
                self.chan.fail(getattr(e, "exit_code", EXIT_RUNTIME), str(e))
        if self.orphaned:
            self.holder.kill()
        close_all(chan, *(stdio or ()))
        return _wait(self.holder, daemon)

    def cleanup_storage(self) -> None:
        try:
            self.storage.unmount()
        finally:
            if self.plan.opts.rm:
                try:
                    self.storage.remove()
                except OSError as e:
                    os.write(2, f"WARNING: removing the container's storage: {e}\n".encode())


def _only(keep, fds):
    """In the holder: close the pipe ends that are setup's; return ours."""
    if keep is None:
        return None
    for fd in fds:
        if fd not in keep:
            os.close(fd)
    return keep


def _wait(holder: process.Child, daemon) -> int:
    """Wait for the holder while watching the fuse daemon (not necessarily our child) through its
    pidfd: if the daemon dies first, the root filesystem is gone and the container is killed."""
    if daemon is not None and daemon.pidfd >= 0 and holder.pidfd >= 0:
        watched = [holder.pidfd, daemon.pidfd]
        while True:
            ready = process.wait_readable(watched)
            if daemon.pidfd in ready and daemon.pidfd in watched:  # first: it may be the cause
                watched.remove(daemon.pidfd)
                os.write(2, b"WARNING: the overlay daemon died: stopping the container\n")
                holder.kill()
            if holder.pidfd in ready:
                break
    return holder.wait()


def main(plan, launch, storage, chan, stdio, rec, monitor: int, inherited=()) -> int:
    """The setup process (see the module docstring); its exit code is the container's.
    `inherited`: the monitor's own channel ends, which this process must not hold."""
    close_all(*inherited)
    s = _Setup(plan, launch, storage, chan, stdio)
    os.setsid()
    for sig in console.FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, s.on_term)
    try:
        return s.run()
    finally:
        if os.getppid() != monitor and plan.opts.rm:  # nobody else will clean up
            try:
                state.remove_files(rec)
            except OSError:
                pass
