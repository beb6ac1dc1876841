"""Drive a command on a real pseudo-terminal, as a person at a terminal would."""

from __future__ import annotations

import os
import pty
import select
import signal
import time


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 24, cols: int = 80):
        import fcntl
        import struct
        import termios

        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(99)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.out = b""

    def expect(self, token: bytes, timeout: float = 30) -> bool:
        end = time.monotonic() + timeout
        while token not in self.out and time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    self.out += os.read(self.fd, 4096)
                except OSError:
                    break
        return token in self.out

    def send(self, text: bytes) -> None:
        os.write(self.fd, text)

    def wait(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            self.expect(b"\0never", 0.1)  # keep draining the pty so the child can finish
        raise TimeoutError(f"still running after {timeout} s; screen: {self.out[-500:]!r}")

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0
        os.close(self.fd)
