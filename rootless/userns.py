"""Creating user namespaces: the one place rootless enters a new user namespace and writes its maps.

How: `fork_userns(child)` forks (rootless.process.fork). The child unshares CLONE_NEWUSER (plus any
extra namespace flags, so those namespaces are owned by the new user namespace), tells the parent
(a `Ready` message on a rootless.runtime.channel Channel, or `Failed` with the errno), and waits for
`Go`. The parent writes the maps, then releases the child, which becomes uid/gid 0 in the
namespace, runs `child()` and exits with its result (an exception: one `Error:` line on stderr and
its exit code, 125 for a bug). The maps are written by:
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
import shutil
import signal
import stat
import sys
from collections.abc import Callable

from rootless import process, syscalls
from rootless.errors import EXIT_RUNTIME, IdMapError, RootlessError
from rootless.idmap import DOCS, IdMap, for_user
from rootless.runtime.channel import Channel, Failed, Go, Ready, close_all

READY_TIMEOUT = 30.0  # seconds the parent waits for the child to unshare
_warned_single = False


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
    if isinstance(e, TimeoutError):
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
    try:
        if any(helper_supports_fd(path) for path, _ in helpers):
            procfd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        commands = []
        for path, name in helpers:
            ranges = idmap.uid_ranges if "uid" in name else idmap.gid_ranges
            args = [str(x) for r in ranges for x in (r.container, r.host, r.size)]
            use_fd = procfd >= 0 and helper_supports_fd(path)
            target = f"fd:{procfd}" if use_fd else str(pid)
            commands.append(([path, target, *args], (procfd,) if use_fd else ()))
        results = process.run_many(commands, READY_TIMEOUT)  # none is left running
    finally:
        if procfd >= 0:
            os.close(procfd)
    for (path, name), result in zip(helpers, results, strict=True):
        if isinstance(result, BaseException):
            raise _helper_error(path, result) from None
        rc, out = result
        if rc != 0:
            kind = "uid" if "uid" in name else "gid"
            file = idmap.subuid_path if kind == "uid" else idmap.subgid_path
            text = _condense(out.decode(errors="replace")) or f"exit status {rc}"
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


def _child_body(child, flags: int, mine: Channel, theirs: Channel, join: str | None = None,
                meanwhile: Callable[[], None] | None = None):  # fmt: skip
    """What the forked child runs: unshare (or join `join`'s user namespace, then unshare the other
    flags), tell the parent, run `meanwhile` while the parent writes the maps, wait to be released,
    become root."""

    def body() -> int | None:
        mine.close()
        try:
            if join:
                syscalls.setns_path(join, syscalls.CLONE_NEWUSER)
                syscalls.unshare(flags)
            else:
                syscalls.unshare(syscalls.CLONE_NEWUSER | flags)
        except OSError as e:
            theirs.send(Failed(EXIT_RUNTIME, e.strerror or str(e), errno=e.errno or 0))
            return EXIT_RUNTIME
        theirs.send(Ready())
        if meanwhile is not None:
            meanwhile()
        if not isinstance(theirs.recv(), Go):  # the parent failed (or died) and did not release us
            return EXIT_RUNTIME
        theirs.close()
        os.setresgid(0, 0, 0)
        try:
            os.setgroups([])
        except PermissionError:
            pass  # setgroups is denied in the single-id fallback
        os.setresuid(0, 0, 0)
        return child()

    return body


def _report(code: int, message: str) -> None:
    process.say(f"Error: {message}")


def _unshare_error(err: int) -> IdMapError:
    from rootless import userns_diag

    return IdMapError(userns_diag.message(err))


def fork_userns(
    child: Callable[[], int | None],
    *,
    idmap: IdMap | None = None,
    extra_unshare_flags: int = 0,
    pdeathsig: int | None = None,
    warn: bool = True,
    join: str | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> process.Child:
    """Fork a child that runs `child()` as uid/gid 0 in a new user namespace with `idmap`
    (default: idmap.for_user()) and exits with its result. See the module docstring for the threads
    rule. `pdeathsig`: the signal the child gets when this process dies (rootless.process.fork);
    `warn=False` leaves out the single-id fallback warning (for probes).

    Raises IdMapError (one line, see docs/subuid.md) if the namespace cannot be set up; in that case
    no child is left behind. `join`: a user namespace's path (/proc/PID/ns/user) to join instead
    of making one (it has its maps already; this user owns it, so may enter it). `meanwhile`: what
    the child does while the parent runs newuidmap/newgidmap (e.g. import what `child` needs).
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
    plan = (
        ("joined", "", "") if join else _plan(idmap)
    )  # raises before forking if helpers are unusable
    if plan[0] == "single" and warn:
        warn_single(idmap)
    mine, theirs = Channel.pair()
    try:
        proc = process.fork(
            _child_body(child, extra_unshare_flags, mine, theirs, join, meanwhile),
            pdeathsig=pdeathsig,
            report=_report,
            context="in the user namespace",
        )
    except BaseException:
        close_all(mine, theirs)
        raise
    theirs.close()
    if plan[0] == "helpers":
        process.preload()  # for newuidmap/newgidmap, while the child unshares
    try:
        try:
            msg = mine.recv(timeout=READY_TIMEOUT)
        except TimeoutError:
            raise IdMapError(
                f"the user namespace child did not start within {READY_TIMEOUT:.0f}s (see {DOCS})"
            ) from None
        if isinstance(msg, Failed):
            if join:
                raise IdMapError(f"cannot join the user namespace {join}: {msg.message}")
            raise _unshare_error(msg.errno)
        if not isinstance(msg, Ready):
            raise IdMapError(f"the user namespace child died before it was set up (see {DOCS})")
        if not join:
            _write_maps(proc.pid, idmap, plan)
        mine.send(Go())
    except BaseException:
        proc.kill_and_reap()
        raise
    finally:
        mine.close()
    return proc


def run_in_userns(
    fn: Callable[..., int | None], *args, idmap: IdMap | None = None, warn: bool = True
) -> int:
    """Run fn(*args) in a forked child inside a new user namespace; return its exit code."""
    return fork_userns(lambda: fn(*args), idmap=idmap, warn=warn).wait()


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
            process.say(f"Error: {argv[0]}: command not found")
            return 127
        except OSError as e:
            process.say(f"Error: {argv[0]}: {e.strerror}")
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
            proc.kill_and_reap()
