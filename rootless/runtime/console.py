"""The terminal and signals between the user and a container's process.

In the container: a pty from the container's own devpts, made the controlling terminal of the
process (``open_pty_in_container``, ``make_controlling``); its master goes to the monitor. On the
host: ``relay_pty`` (raw mode and window-size changes for -t) and ``SignalForwarder``, which passes
every catchable signal rootless gets to the container's main process.
"""

import errno
import os
import signal
import termios

from rootless import syscalls

FORWARDED = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM,
    signal.SIGALRM, signal.SIGCONT, signal.SIGPWR if hasattr(signal, "SIGPWR") else signal.SIGTERM,
)  # fmt: skip


# --- ptys -----------------------------------------------------------------------------------------


def open_pty_in_container() -> tuple[int, int]:
    """(master, slave) from the container's own devpts (/dev/ptmx -> pts/ptmx)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, syscalls.open_pty_peer(master)


def take_pty(uid: int, gid: int, hand_over) -> None:
    """In the container: a pty from its own devpts, its slave owned by uid:gid and made this
    process's controlling terminal on stdio; its master handed over (to the host) by hand_over(fd)."""
    master, slave = open_pty_in_container()
    os.fchown(slave, uid, gid)
    hand_over(master)
    os.close(master)
    make_controlling(slave)


def make_controlling(slave: int) -> None:
    os.setsid()
    syscalls.set_controlling_tty(slave)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


copy_winsize = syscalls.copy_winsize


class SignalForwarder:
    """While installed, signals rootless receives go to the container's main process (host pid).
    Installed before that process exists (pid 0), it keeps what arrives and delivers it once
    target() names the process, so no signal meant for the container ever ends rootless."""

    def __init__(self, pid: int = 0, on_winch=None):
        self.pid = pid
        self.on_winch = on_winch
        self.old: dict[int, object] = {}
        self.pending: list[int] = []

    def target(self, pid: int) -> None:
        self.pid = pid
        while self.pending:
            self._handler(self.pending.pop(0), None)

    def _handler(self, signum, _frame):
        if not self.pid:
            self.pending.append(signum)
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def install(self):
        for s in set(FORWARDED):
            self.old[s] = signal.signal(s, self._handler)
        if self.on_winch is not None:
            self.old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda *_: self.on_winch())
        return self

    def uninstall(self):
        for s, h in self.old.items():
            signal.signal(s, h)
        self.old.clear()


def relay_pty(master: int, stdin_open: bool) -> None:
    """Copy the host's stdin to the pty master and the master to stdout until the container closes
    its side. Puts a terminal stdin in raw mode for the duration."""
    import select
    import tty

    saved = None
    if stdin_open and os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    if os.isatty(0):
        copy_winsize(0, master)
    fds = [master] + ([0] if stdin_open else [])
    try:
        while True:
            try:
                r, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:
                        break
                    raise
                if not data:
                    break
                write_all(1, data)
            if 0 in r:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                    try:
                        os.write(master, b"\x04")  # EOF to the line discipline
                    except OSError:
                        pass
                    continue
                write_all(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)


def write_all(fd: int, data: bytes) -> None:
    """Write all of data (a reader that went away ends it quietly)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BrokenPipeError:
            return
        view = view[n:]
