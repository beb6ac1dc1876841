"""Creating user namespaces: the one place rootless enters a new user namespace and writes its maps.

How: `fork_userns(child)` forks. The child unshares CLONE_NEWUSER (plus any extra namespace flags,
so those namespaces are owned by the new user namespace), tells the parent over a pipe, and waits on
a second pipe. The parent writes the maps, then releases the child, which becomes uid/gid 0 in the
namespace, runs `child()` and `os._exit`s with its result. The maps are written by:
  * newuidmap/newgidmap (setuid helpers from the uidmap package) for a user with subordinate ids,
    with the `fd:N` form (an fd of /proc/PID) when the helper supports it, else the PID form; the
    child is ours and unreaped while they run, so its PID cannot be reused meanwhile either way;
  * a direct write (after writing "deny" to /proc/PID/setgroups, as the kernel requires) for the
    single-id fallback of a user without subordinate ids; it warns once per process on stderr that
    some images will not work;
  * a direct write of the identity map when rootless runs as root (no helper needed).
If anything fails, the child is killed and reaped before IdMapError is raised, and a child whose
parent goes away before releasing it reads EOF and exits: no half-set-up namespace survives.

Threads (read this before calling): unshare(CLONE_NEWUSER) fails with EINVAL in a multi-threaded
process, which is why the namespace is created in a freshly forked child (always single-threaded).
But a fork()ed child of a process that has other threads inherits their locks in whatever state
they were (logging, stdio, the import lock, malloc arenas...), and Python code in it can deadlock.
The rule: call fork_userns() BEFORE trio.run() and before any thread starts (the CLI verbs do: the
namespace is set up first, and trio runs inside the child or in a parent that no longer forks), or,
if threads may exist, make `child` do only small, async-signal-safe-ish work (syscalls, os.exec*).
Test/debug knobs (environment): ROOTLESS_NEWUIDMAP and ROOTLESS_NEWGIDMAP replace the helpers'
paths. See docs/subuid.md for every message printed from here.
"""

from __future__ import annotations

import logging
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable

from rootless import syscalls
from rootless.errors import IdMapError, RootlessError
from rootless.idmap import DOCS, IdMap, for_user

READY_TIMEOUT = 30.0  # seconds the parent waits for the child to unshare
_warned_single = False


def exit_code(status: int) -> int:
    """A wait status as a shell (and podman) reports it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def wait_exit_code(pid: int) -> int:
    """Reap pid and return its exit_code(); retried if a signal handler interrupts the wait."""
    while True:
        try:
            return exit_code(os.waitpid(pid, 0)[1])
        except InterruptedError:
            continue


class UsernsChild:
    """A forked child running inside its own user namespace. Its owner must wait() (or use `with`)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def _set(self, status: int) -> int:
        self.returncode = exit_code(status)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._set(status)
        return self.returncode

    def wait(self) -> int:
        """The exit code: the child's status, or 128+N if signal N killed it (as a shell reports it)."""
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self._set(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> UsernsChild:
        return self

    def __exit__(self, *exc) -> None:
        if self.returncode is None:
            if exc[0] is not None:
                self.kill()
            self.wait()

    def __repr__(self) -> str:
        return f"UsernsChild(pid={self.pid}, returncode={self.returncode})"


# helpers --------------------------------------------------------------------------------------


def find_helper(name: str) -> str:
    """The path of newuidmap/newgidmap, checked to be able to work (setuid root or file caps)."""
    override = os.environ.get("ROOTLESS_" + name.upper())
    if override:
        path = override if os.path.lexists(override) else None
        where = f" at {override} (ROOTLESS_{name.upper()})"
    else:
        search = os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin:/bin:/sbin"
        path = shutil.which(name, path=search)
        where = " in PATH, /usr/bin or /usr/sbin"
    if path is None:
        raise IdMapError(
            f"{name} not found{where}, and your subordinate ids need it; install the uidmap package: "
            "sudo apt-get install uidmap"
        )
    try:
        st = os.stat(path)
    except OSError as e:
        raise IdMapError(
            f"cannot use {path}: {e.strerror}; reinstall the uidmap package: sudo apt-get install --reinstall uidmap"
        ) from None
    setuid_root = bool(st.st_mode & stat.S_ISUID) and st.st_uid == 0
    try:
        has_caps = bool(os.getxattr(path, "security.capability"))
    except OSError:
        has_caps = False
    if not (setuid_root or has_caps):
        fix = (
            f"sudo chmod u+s {path}"
            if st.st_uid == 0
            else f"sudo chown root: {path} && sudo chmod u+s {path}"
        )
        raise IdMapError(
            f"{path} is not setuid root and has no file capabilities, so it cannot write id maps; fix: {fix} "
            f"(or: sudo setcap cap_set{'u' if 'uid' in name else 'g'}id+ep {path})"
        )
    if os.statvfs(path).f_flag & os.ST_NOSUID and not has_caps:
        raise IdMapError(
            f"{path} is setuid but lives on a nosuid mount, so the setuid bit has no effect; "
            "install the uidmap package on a normal filesystem: sudo apt-get install --reinstall uidmap"
        )
    return path


_fd_support: dict[tuple[str, int, float], bool] = {}


def helper_supports_fd(path: str) -> bool:
    """Whether the helper accepts `fd:N` for the target (shadow >= 4.14 prints "[<pid>|fd:<pidfd>]")."""
    try:
        st = os.stat(path)
        key = (path, st.st_ino, st.st_mtime)
        if key not in _fd_support:
            with open(path, "rb") as f:
                _fd_support[key] = b"fd:<pidfd>" in f.read()
        return _fd_support[key]
    except OSError:
        return False


def _condense(text: str, limit: int = 300) -> str:
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _helper_error(path: str, e: BaseException) -> IdMapError:
    if isinstance(e, subprocess.TimeoutExpired):
        return IdMapError(
            f"{path} did not finish in {READY_TIMEOUT:.0f}s; check the system (see {DOCS})"
        )
    return IdMapError(
        f"cannot run {path}: {e.strerror}; reinstall it: sudo apt-get install --reinstall uidmap"
    )


def _run_helpers(pid: int, idmap: IdMap, helpers: list[tuple[str, str]]) -> None:
    """Run newuidmap and newgidmap for `pid` at the same time (they write different files of the same
    process, and each is a setuid exec of a few ms); errors are reported in that order."""
    procfd = -1
    procs: list[subprocess.Popen | BaseException] = []
    try:
        if any(helper_supports_fd(path) for path, _ in helpers):
            procfd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for path, name in helpers:
            ranges = idmap.uid_ranges if "uid" in name else idmap.gid_ranges
            args = [str(x) for r in ranges for x in (r.container, r.host, r.size)]
            use_fd = procfd >= 0 and helper_supports_fd(path)
            try:
                procs.append(
                    subprocess.Popen(
                        [path, f"fd:{procfd}" if use_fd else str(pid), *args],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        pass_fds=(procfd,) if use_fd else (),
                    )
                )
            except OSError as e:
                procs.append(e)
        outs: list[bytes | BaseException] = []
        for proc in procs:
            if isinstance(proc, BaseException):
                outs.append(proc)
                continue
            try:
                outs.append(proc.communicate(timeout=READY_TIMEOUT)[0])
            except subprocess.TimeoutExpired as e:
                outs.append(e)
    finally:
        for proc in procs:  # on any error, no helper is left running
            if isinstance(proc, subprocess.Popen) and proc.returncode is None:
                proc.kill()
                proc.wait()
        if procfd >= 0:
            os.close(procfd)
    for (path, name), proc, out in zip(helpers, procs, outs, strict=True):
        if isinstance(out, BaseException):
            raise _helper_error(path, out) from None
        if proc.returncode != 0:
            kind = "uid" if "uid" in name else "gid"
            file = idmap.subuid_path if kind == "uid" else idmap.subgid_path
            text = _condense(out.decode(errors="replace")) or f"exit status {proc.returncode}"
            raise IdMapError(
                f"{name} failed: {text}; the ranges rootless read from {file} for {idmap.user or idmap.uid} must be "
                f"ones {name} allows (it reads /etc/sub{kind}; check with `getsubids "
                f"{'-g ' if kind == 'gid' else ''}{idmap.user or idmap.uid}`, see {DOCS})"
            )


def _write_proc(pid: int, name: str, text: str, hint: str) -> None:
    path = f"/proc/{pid}/{name}"
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise IdMapError(f"cannot write {path}: {e.strerror}; {hint}") from None


def _plan(idmap: IdMap) -> tuple[str, str, str]:
    """How the maps will be written: ("root"|"single"|"helpers", newuidmap, newgidmap). Checks first."""
    if os.geteuid() == 0:
        return "root", "", ""
    if idmap.is_single:
        return "single", "", ""
    return "helpers", find_helper("newuidmap"), find_helper("newgidmap")


def _write_maps(pid: int, idmap: IdMap, plan: tuple[str, str, str]) -> None:
    how, newuidmap, newgidmap = plan
    if how == "helpers":
        _run_helpers(pid, idmap, [(newuidmap, "newuidmap"), (newgidmap, "newgidmap")])
        return
    hint = f"the map must be {'within your own ids' if how == 'root' else 'your own uid and gid only'} (see {DOCS})"
    if how == "single":
        _write_proc(pid, "setgroups", "deny", hint)
    _write_proc(pid, "uid_map", idmap.uid_map_text(), hint)
    _write_proc(pid, "gid_map", idmap.gid_map_text(), hint)


def warn_single(idmap: IdMap) -> None:
    """Print the single-id fallback warning on stderr, once per process."""
    global _warned_single
    if _warned_single:
        return
    _warned_single = True
    reason = idmap.fallback_reason or (
        f"single-id user namespace (container id 0 only): some images will not work (see {DOCS})"
    )
    try:
        sys.stderr.write(f"WARNING: {reason}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except ChildProcessError:
            return


def _flush_stdio() -> None:
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value & 0xFF
    return 1  # sys.exit("message") convention


def _child_main(
    child: Callable[[], int | None], flags: int, ready_w: int, go_r: int, closing: tuple[int, ...]
) -> None:
    """The forked child. Never returns."""
    rc = 125
    try:
        for fd in closing:
            os.close(fd)
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER | flags)
        except OSError as e:
            os.write(ready_w, b"E%d" % e.errno)
            os._exit(125)
        os.write(ready_w, b"ok")
        os.close(ready_w)
        if os.read(go_r, 2) != b"go":  # the parent failed (or died) and did not release us
            os._exit(125)
        os.close(go_r)
        os.setresgid(0, 0, 0)
        try:
            os.setgroups([])
        except PermissionError:
            pass  # setgroups is denied in the single-id fallback
        os.setresuid(0, 0, 0)
        rc = _exit_code(child())
    except SystemExit as e:
        rc = _exit_code(e.code)
        if isinstance(e.code, str):
            _say(e.code)
    except KeyboardInterrupt:
        rc = 130
    except RootlessError as e:
        _say(f"Error: {e}")
        rc = e.exit_code
    except BaseException as e:  # noqa: B036 - the child must never unwind into the parent's code
        _say(f"Error: in the user namespace: {type(e).__name__}: {e}")
        rc = 125
    finally:
        _flush_stdio()
        os._exit(rc)


def _say(line: str) -> None:
    try:
        os.write(2, (line.replace("\n", " ") + "\n").encode(errors="replace"))
    except OSError:
        pass


def _unshare_error(err: int) -> IdMapError:
    from rootless import userns_diag

    return IdMapError(userns_diag.message(err))


def fork_userns(
    child: Callable[[], int | None],
    *,
    idmap: IdMap | None = None,
    extra_unshare_flags: int = 0,
) -> UsernsChild:
    """Fork a child that runs `child()` as uid/gid 0 in a new user namespace with `idmap`
    (default: idmap.for_user()). See the module docstring for the threads rule.

    Raises IdMapError (one line, see docs/subuid.md) if the namespace cannot be set up; in that case
    no child is left behind.
    """
    if idmap is None:
        idmap = for_user()
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        logging.getLogger("rootless.userns").debug(
            "fork_userns with %d threads running: the child must only do async-signal-safe work "
            "(see rootless/userns.py)",
            threading.active_count(),
        )
    plan = _plan(idmap)  # raises before forking for a missing or unusable helper
    if plan[0] == "single":
        warn_single(idmap)
    _flush_stdio()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except BaseException:
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        raise
    if pid == 0:
        _child_main(child, extra_unshare_flags, ready_w, go_r, (ready_r, go_w))
    os.close(ready_w)
    os.close(go_r)
    try:
        poller = select.poll()
        poller.register(ready_r, select.POLLIN)
        if not poller.poll(int(READY_TIMEOUT * 1000)):
            raise IdMapError(
                f"the user namespace child did not start within {READY_TIMEOUT:.0f}s (see {DOCS})"
            )
        msg = os.read(ready_r, 64)
        if msg.startswith(b"E") and msg[1:].isdigit():
            raise _unshare_error(int(msg[1:]))
        if msg != b"ok":
            raise IdMapError(f"the user namespace child died before it was set up (see {DOCS})")
        _write_maps(pid, idmap, plan)
        os.write(go_w, b"go")
    except BaseException:
        _kill_and_reap(pid)
        raise
    finally:
        os.close(ready_r)
        os.close(go_w)
    return UsernsChild(pid)


def run_in_userns(fn: Callable[..., int | None], *args, idmap: IdMap | None = None) -> int:
    """Run fn(*args) in a forked child inside a new user namespace; return its exit code."""
    return fork_userns(lambda: fn(*args), idmap=idmap).wait()


def exec_in_userns(
    argv: list[str], *, idmap: IdMap | None = None, env: dict[str, str] | None = None
) -> int:
    """Run argv (PATH lookup) as root in a new user namespace; return its exit code like a shell:
    the command's status, 128+N for signal N, 127 if not found, 126 if not executable.
    While it runs, SIGINT/SIGQUIT are left to the child (the terminal sends them to both) and
    SIGTERM/SIGHUP are forwarded to it."""
    if not argv:
        raise RootlessError("no command to run")
    environ = dict(os.environ if env is None else env)

    def _exec() -> int:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; a command must not
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvpe(argv[0], argv, environ)
        except FileNotFoundError:
            _say(f"Error: {argv[0]}: command not found")
            return 127
        except OSError as e:
            _say(f"Error: {argv[0]}: {e.strerror}")
            return 126
        return 126  # not reached

    proc = fork_userns(_exec, idmap=idmap)
    saved: dict[int, object] = {}
    try:
        for sig, handler in (
            (signal.SIGINT, signal.SIG_IGN),
            (signal.SIGQUIT, signal.SIG_IGN),
            (signal.SIGTERM, lambda s, f: proc.send_signal(s)),
            (signal.SIGHUP, lambda s, f: proc.send_signal(s)),
        ):
            try:
                saved[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: leave signals alone
                break
        return proc.wait()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if proc.returncode is None:
            proc.kill()
            proc.wait()
