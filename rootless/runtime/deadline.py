"""What the monitor does for --pidfile, --timeout and a healthcheck once a container's init runs:
the pid file, the timer that kills the init at its deadline (the monitor then records podman's exit
code -1), and the healthcheck's timer (rootless.runtime.health, imported only for a container
that has one).
"""

from __future__ import annotations

import os
import signal
import threading

from rootless import process
from rootless import syscalls as sc


def write_pidfile(path: str, pid: int) -> None:
    """--pidfile: the container's pid (a failure is a warning: the container runs on). The file is
    left in place when the container exits or is removed, as podman leaves it."""
    try:
        with open(path, "w") as f:
            f.write(str(pid))
    except OSError as e:
        process.say(f"WARNING: --pidfile {path}: {e.strerror}")


def health_timer(rec):
    """The healthcheck timer of `rec` (a rootless.runtime.health.Timer), None without one."""
    if not (rec.run and rec.run.healthcheck and rec.run.healthcheck.get("Interval")):
        return None
    from rootless.runtime import health

    return health.Timer.start(rec)


class Deadline:
    """--timeout: SIGKILL to the init after `seconds`, through a pidfd (never another process that
    got its pid). cancel() stops the timer and says whether it had fired."""

    def __init__(self, pidfd: int, seconds: int):
        self.pidfd = pidfd
        self.expired = False
        self.timer = threading.Timer(min(seconds, threading.TIMEOUT_MAX), self._expire)
        self.timer.daemon = True

    @classmethod
    def arm(cls, pid: int, seconds: int) -> Deadline | None:
        try:
            fd = sc.pidfd_open(pid)
        except OSError:
            return None  # already gone: nothing to kill
        d = cls(fd, seconds)
        d.timer.start()
        return d

    def _expire(self) -> None:
        self.expired = True
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except OSError:
            pass

    def cancel(self) -> bool:
        if self.pidfd >= 0:
            self.timer.cancel()
            self.timer.join()
            os.close(self.pidfd)
            self.pidfd = -1
        return self.expired
