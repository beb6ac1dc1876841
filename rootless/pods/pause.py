"""The pause of a pod's infra container: what podman's pause image runs (`catatonit -P`), done by
the infra's init itself instead of exec'ing a program (the infra's root filesystem is empty).

The init has set up the container (mounts, pivot_root, cgroup namespace) as for any command; here it
takes on the container's security settings (rootless.runtime.security.become: seccomp filter,
capabilities), closes every inherited descriptor (exec would have closed the close-on-exec ones: the
channel to the monitor, whose end of file tells the monitor the command runs), and then waits for
signals: SIGCHLD reaps (in a pod that shares its pid namespace the containers' orphans come here),
SIGTERM and SIGINT end it with status 0, as catatonit's pause mode does. It holds the pod's shared
namespaces for as long as it lives.
"""

from __future__ import annotations

import os
import signal

from rootless import syscalls as sc
from rootless.runtime import security

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(chan, sec, user) -> int:
    """Become the container's user, drop every inherited descriptor, pause (module docstring)."""
    os.chdir("/")
    security.become(sec, user)
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        sc.set_cmdline("rootless-pause")  # not the CLI's command line it was forked with
    except OSError:
        pass
    chan.close()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    while True:
        sig = signal.sigwait(_SIGNALS)
        if sig == signal.SIGCHLD:
            _reap()
            continue
        return 0
