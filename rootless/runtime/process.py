"""The container's process: exec with podman's exit codes, the pty, stdio and signal forwarding.

In the container (exec_container): resolve the user, drop to it with the capability set, load seccomp,
then execve with a PATH lookup in the container's environment; a failure is reported to the host as
one line over a pipe with 127 (not found) or 126 (cannot execute). On the host (Console,
SignalForwarder): raw mode and window-size changes for -t, and every catchable signal rootless gets
is passed to the container's main process.
"""

import errno
import os
import signal
import stat
import termios

from rootless import syscalls
from rootless.errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND

FORWARDED = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM,
    signal.SIGALRM, signal.SIGCONT, signal.SIGPWR if hasattr(signal, "SIGPWR") else signal.SIGTERM,
)  # fmt: skip


class ExecError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def reset_signals() -> None:
    """Default dispositions and an empty mask, as a fresh process expects (Python ignores SIGPIPE)."""
    for s in range(1, signal.NSIG):
        if s in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def find_executable(cmd: str, env: dict[str, str]) -> str:
    """PATH lookup the way crun does it, in the current (container) root."""
    if "/" in cmd:
        try:
            st = os.stat(cmd)
        except FileNotFoundError:
            raise ExecError(
                EXIT_NOT_FOUND, f"executable file `{cmd}` not found: No such file or directory"
            ) from None
        except OSError as e:
            raise ExecError(EXIT_CANNOT_INVOKE, f"{cmd}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise ExecError(
                EXIT_CANNOT_INVOKE, f"open executable: `{cmd}` is a directory: permission denied"
            )
        return cmd
    denied = None
    for d in env.get("PATH", "").split(":"):
        p = os.path.join(d or ".", cmd)
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            if os.access(p, os.X_OK):
                return p
            denied = p
    if denied:
        raise ExecError(EXIT_CANNOT_INVOKE, f"open executable `{denied}`: Permission denied")
    raise ExecError(
        EXIT_NOT_FOUND, f"executable file `{cmd}` not found in $PATH: No such file or directory"
    )


def execve(args: list[str], env: dict[str, str]) -> None:
    path = find_executable(args[0], env)
    try:
        os.execve(path, args, env)
    except FileNotFoundError:  # e.g. a script whose interpreter is missing
        raise ExecError(EXIT_NOT_FOUND, f"{path}: No such file or directory") from None
    except OSError as e:
        raise ExecError(EXIT_CANNOT_INVOKE, f"{path}: {e.strerror}") from None


# --- ptys -----------------------------------------------------------------------------------------


def open_pty_in_container() -> tuple[int, int]:
    """(master, slave) from the container's own devpts (/dev/ptmx -> pts/ptmx)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, syscalls.open_pty_peer(master)


def make_controlling(slave: int) -> None:
    os.setsid()
    syscalls.set_controlling_tty(slave)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


copy_winsize = syscalls.copy_winsize


class SignalForwarder:
    """While installed, signals rootless receives go to the container's main process (host pid)."""

    def __init__(self, pid: int, on_winch=None):
        self.pid = pid
        self.on_winch = on_winch
        self.old: dict[int, object] = {}

    def _handler(self, signum, _frame):
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
                _write_all(1, data)
            if 0 in r:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                    try:
                        os.write(master, b"\x04")  # EOF to the line discipline
                    except OSError:
                        pass
                    continue
                _write_all(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BrokenPipeError:
            return
        view = view[n:]
