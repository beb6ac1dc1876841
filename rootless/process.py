"""Every process rootless starts: the one module that forks, spawns, waits, kills and reaps.

Modelled on trio's ``Process``: a started process is a ``Child`` with its pid, a pidfd (so that a
signal or a watch can never hit a recycled pid, and so that a sibling can watch it too), ``poll()``,
``wait()``, ``send_signal()``/``terminate()``/``kill()``, and ``stop()`` (wait a grace period, SIGTERM,
SIGKILL, reap). Exit codes follow one rule everywhere, the shell's and podman's: the exit status, or
128+N when signal N killed the process (``exit_code``).

Starting processes:
- ``fork(fn)`` runs ``fn()`` in a forked child and ``os._exit``s with its result; it never unwinds
  into the caller's code. An exception becomes an exit code and, through ``report(code, message)``,
  one line for the parent: a RootlessError (or anything with ``exit_code``) keeps its code and text,
  an OSError reads ``CONTEXT: error``, anything else ``BUG: Type: text`` (a bug).
- ``spawn(argv)`` execs a command (subprocess.Popen underneath) and returns a Child.
- ``run(argv)`` runs a command to completion and captures its output (version probes, fusermount3,
  helper commands); ``run_many`` runs several at once; ``run_async`` is the same from trio code.
- ``daemonize()`` detaches the calling process: a new session, and a grandchild that is no session
  leader, so it never gets a controlling terminal.

Dying with the parent: ``fork`` and ``spawn`` take ``pdeathsig`` (SIGKILL unless said otherwise for
``fork``; None for ``spawn``). The child sets PR_SET_PDEATHSIG first thing and then checks that the
parent is still there, through a pidfd of the parent opened before the fork (a parent that died
before the prctl would otherwise go unnoticed; a pidfd works even when the child is in a new pid
namespace, where getppid() says 0). This is the only place rootless sets PR_SET_PDEATHSIG.

Threads: ``fork`` runs Python code in the child; call it before trio or any thread starts (see
rootless.userns), or make ``fn`` do only small, async-signal-safe-ish work.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable

from rootless import syscalls
from rootless.errors import EXIT_RUNTIME


def exit_code(status: int) -> int:
    """A wait status as a shell (and podman) reports it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _code_of(value: object) -> int:
    """The exit code for a function's result or a SystemExit's code (sys.exit conventions)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value & 0xFF
    return 1  # sys.exit("message")


def flush_stdio() -> None:
    """Flush Python's stdout/stderr buffers (before a fork, so nothing is written twice)."""
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except (OSError, ValueError, AttributeError):
            pass


def say(line: str) -> None:
    """One line on fd 2, unbuffered (from a forked child)."""
    try:
        os.write(2, (line.replace("\n", " ") + "\n").encode(errors="replace"))
    except OSError:
        pass


class Child:
    """A process this process started (fork or spawn). Its owner must wait() (or use `with`).

    ``pidfd`` is opened at once, while the pid cannot have been recycled; it is O_CLOEXEC and
    inherited by later forks, so a sibling can watch (``exited``, ``wait_exited``) and signal the
    process, though only the parent can reap it.
    """

    def __init__(self, pid: int, popen=None):
        self.pid = pid
        self.returncode: int | None = None
        self._popen = popen
        try:
            self.pidfd = os.pidfd_open(pid)
        except OSError:  # already reaped by someone else: nothing to watch
            self.pidfd = -1

    def __repr__(self) -> str:
        return f"Child(pid={self.pid}, returncode={self.returncode})"

    def _done(self, code: int) -> int:
        self.returncode = code
        self.close()
        return code

    def poll(self) -> int | None:
        """The exit code if the process has ended (it is reaped), else None."""
        if self.returncode is not None:
            return self.returncode
        if self._popen is not None:
            rc = self._popen.poll()
            return None if rc is None else self._done(128 - rc if rc < 0 else rc)
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return self._done(EXIT_RUNTIME)
        return self._done(exit_code(status)) if pid else None

    def wait(self, timeout: float | None = None) -> int:
        """Reap the process and return its exit code; TimeoutError if it runs on past `timeout`."""
        if self.returncode is not None:
            return self.returncode
        if timeout is not None and not self.wait_exited(timeout):
            raise TimeoutError(f"process {self.pid} did not exit within {timeout:g}s")
        if self._popen is not None:
            rc = self._popen.wait()
            return self._done(128 - rc if rc < 0 else rc)
        while True:
            try:
                return self._done(exit_code(os.waitpid(self.pid, 0)[1]))
            except InterruptedError:
                continue
            except ChildProcessError:
                return self._done(EXIT_RUNTIME)

    def exited(self) -> bool:
        """Whether the process has ended (without reaping it: any holder of the pidfd may ask)."""
        return self.wait_exited(0)

    def wait_exited(self, timeout: float | None) -> bool:
        """Wait until the process has ended (not reaping it); False if `timeout` passed first."""
        if self.returncode is not None or self.pidfd < 0:
            return True
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        try:
            return bool(poller.poll(None if timeout is None else int(timeout * 1000)))
        except InterruptedError:
            return self.exited()

    def send_signal(self, sig: int) -> None:
        """Signal the process (through its pidfd); nothing happens once it has ended."""
        if self.returncode is not None:
            return
        try:
            if self.pidfd >= 0:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def kill_and_reap(self) -> int:
        """SIGKILL, then reap: for a child that must not outlive a failure."""
        self.kill()
        return self.wait()

    def stop(self, timeout: float = 5.0, grace: float = 0.0) -> int:
        """Give it `grace` seconds to exit by itself, then SIGTERM, then SIGKILL after `timeout`."""
        for sig, wait in ((None, grace), (signal.SIGTERM, timeout)):
            if sig is not None:
                self.send_signal(sig)
            try:
                return self.wait(wait)
            except TimeoutError:
                pass
        return self.kill_and_reap()

    def communicate(self, timeout: float | None = None) -> bytes:
        """For a spawned child with stdout="pipe": its output until EOF, then reap it. TimeoutError
        if that takes longer than `timeout` (it is then left running: kill_and_reap it). Waits on the
        pipe and the pidfd, never in the sleep-and-poll loop of Popen.wait(timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        left = lambda: None if deadline is None else max(0.0, deadline - time.monotonic())  # noqa: E731
        fd, chunks = self._popen.stdout.fileno(), []
        while True:
            if not wait_readable([fd], left()):
                raise TimeoutError(f"process {self.pid} did not finish within {timeout:g}s")
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
        self._popen.stdout.close()
        self.wait(left())
        return b"".join(chunks)

    def close(self) -> None:
        """Close the pidfd (reaping does it too)."""
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        if self.returncode is None:
            if exc[0] is not None:
                self.kill()
            self.wait()


# --- dying with the parent ------------------------------------------------------------------------


def _parent_fd(pdeathsig: int | None) -> int:
    return os.pidfd_open(os.getpid()) if pdeathsig else -1


def _die_with_parent(sig: int, parent_fd: int) -> None:
    """In a new child: get `sig` when the parent dies, and exit now if it already has."""
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, sig)
    if select.select([parent_fd], [], [], 0)[0]:
        os._exit(EXIT_RUNTIME)  # the parent died before the prctl took effect


# --- forking --------------------------------------------------------------------------------------

Report = Callable[[int, str], None]


def failure(e: BaseException, context: str, bug: str | None = None) -> tuple[int, str]:
    """(exit code, one line) for an exception that ended a child's work (see the module docstring)."""
    code = getattr(e, "exit_code", None)
    if isinstance(code, int):
        return code, str(e)
    from rootless.errors import describe

    if isinstance(e, OSError):
        return EXIT_RUNTIME, f"{context}: {describe(e)}"
    return EXIT_RUNTIME, f"{bug or context}: {describe(e)}"


def fork(
    fn: Callable[[], int | None],
    *,
    pdeathsig: int | None = signal.SIGKILL,
    report: Report | None = None,
    context: str = "in a child process",
    bug: str | None = None,
) -> Child:
    """Run fn() in a forked child that exits with its result (see the module docstring)."""
    flush_stdio()
    parent_fd = _parent_fd(pdeathsig)
    try:
        pid = os.fork()
    except BaseException:
        if parent_fd >= 0:
            os.close(parent_fd)
        raise
    if pid == 0:
        _child_main(fn, pdeathsig, parent_fd, report, context, bug)
    if parent_fd >= 0:
        os.close(parent_fd)
    return Child(pid)


def _child_main(fn, pdeathsig, parent_fd, report, context, bug) -> None:
    """The forked child: never returns."""
    code = EXIT_RUNTIME
    try:
        if pdeathsig:
            _die_with_parent(pdeathsig, parent_fd)
            os.close(parent_fd)
        code = _code_of(fn())
    except SystemExit as e:
        code = _code_of(e.code)
        if isinstance(e.code, str):
            say(e.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException as e:  # noqa: B036 - a child never unwinds into its parent's code
        code, message = failure(e, context, bug)
        if report is not None:
            try:
                report(code, message)
            except BaseException:  # noqa: B036
                pass
    finally:
        flush_stdio()
        os._exit(code)


def daemonize() -> None:
    """Detach the calling (forked) process: a new session, then continue in a grandchild that is no
    session leader, so it can never acquire a controlling terminal. The middle process exits 0."""
    os.setsid()
    if os.fork():
        os._exit(0)


# --- spawning commands ----------------------------------------------------------------------------

PKG_ROOT = os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))
)  # holds this rootless package


def python_module(module: str, *args: str, site: bool = True) -> list[str]:
    """argv that runs `module` as __main__ in a new interpreter with this very rootless: the package
    root leads sys.path and -P keeps the working directory out of it, so a rootless checkout (or
    anything named rootless) in the caller's directory is never imported instead. site=False (-S)
    saves ~5 ms of start-up; the site-packages directories are then put on sys.path explicitly."""
    paths = [PKG_ROOT] + ([] if site else [p for p in sys.path if p.endswith("-packages")])
    boot = f"import runpy, sys; sys.path[:0] = {paths!r}; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return [sys.executable, "-P", *([] if site else ["-S"]), "-c", boot, *args]


def spawn(
    argv: list[str],
    *,
    pdeathsig: int | None = None,
    new_session: bool = False,
    stdin=None,
    stdout=None,
    stderr=None,
    pass_fds: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Child:
    """Start a command (argv[0] looked up in PATH); OSError if it cannot be started.

    stdin/stdout/stderr: None (inherit), an fd or file, or "null" for /dev/null, or "pipe" for
    stdout (read it with Child.communicate()); stderr may also be "stdout".
    """
    import subprocess

    streams = {"null": subprocess.DEVNULL, "pipe": subprocess.PIPE, "stdout": subprocess.STDOUT}
    preexec = None
    if pdeathsig:
        parent_fd = _parent_fd(pdeathsig)

        def preexec():
            _die_with_parent(pdeathsig, parent_fd)

    try:
        popen = subprocess.Popen(
            argv,
            stdin=streams.get(stdin, stdin),
            stdout=streams.get(stdout, stdout),
            stderr=streams.get(stderr, stderr),
            pass_fds=pass_fds,
            env=env,
            cwd=cwd,
            start_new_session=new_session,
            preexec_fn=preexec,
        )
    finally:
        if pdeathsig:
            os.close(parent_fd)
    return Child(popen.pid, popen)


def preload() -> None:
    """Import what spawn() and run() need now (a caller with time to spare: a child is busy)."""
    import subprocess  # noqa: F401


class Completed:
    """What run() returns: the exit code and the captured output (text)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run(argv: list[str], *, timeout: float | None = None, capture: bool = True) -> Completed:
    """Run a command to completion; OSError if it cannot start, TimeoutError if it runs too long
    (then it is killed and reaped). With capture=False its output goes to /dev/null."""
    import subprocess

    out = subprocess.PIPE if capture else subprocess.DEVNULL
    try:
        cp = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=timeout, text=True
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{argv[0]} did not finish within {timeout:g}s") from None
    rc = cp.returncode
    return Completed(128 - rc if rc < 0 else rc, cp.stdout or "", cp.stderr or "")


def run_many(
    commands: list[tuple[list[str], tuple[int, ...]]], timeout: float
) -> list[tuple[int, bytes] | BaseException]:
    """Run commands at the same time, each (argv, pass_fds) with stdout and stderr captured together;
    for each: (exit code, output), or the exception (OSError, TimeoutError) that stopped it. None is
    left running when this returns."""
    children: list[Child | BaseException] = []
    out: list[tuple[int, bytes] | BaseException] = []
    try:
        for argv, fds in commands:
            try:
                children.append(
                    spawn(argv, stdin="null", stdout="pipe", stderr="stdout", pass_fds=fds)
                )
            except OSError as e:
                children.append(e)
        for child in children:
            if isinstance(child, BaseException):
                out.append(child)
                continue
            try:
                data = child.communicate(timeout)
                out.append((child.returncode, data))
            except TimeoutError as e:
                out.append(e)
    finally:
        for child in children:
            if isinstance(child, Child) and child.returncode is None:
                child.kill_and_reap()
    return out


async def run_async(argv: list[str]) -> Completed:
    """run() from trio code: the command's output, without blocking the event loop."""
    import trio

    cp = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    rc = cp.returncode
    return Completed(
        128 - rc if rc < 0 else rc,
        cp.stdout.decode(errors="replace"),
        cp.stderr.decode(errors="replace"),
    )


def wait_readable(fds: list[int], timeout: float | None = None) -> set[int]:
    """The fds (pidfds, pipes) that are readable, waiting up to `timeout` for one (None: forever)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        try:
            return {fd for fd, _ in poller.poll(None if timeout is None else int(timeout * 1000))}
        except InterruptedError:
            continue


def wait_gone(pid: int, timeout: float) -> None:
    """Wait until a process that is not ours (its parent reaps it) has ended; SIGKILL it if it is
    still there after `timeout`."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        if not select.select([fd], [], [], timeout)[0]:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)
