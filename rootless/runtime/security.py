"""A container's security settings, decided once on the host and taken on by every process that runs
in the container (its init, and each `exec`): capabilities, the seccomp filter (compiled to BPF),
no_new_privs, and ``become``, which applies them and drops to the container's user before exec.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import NamedTuple

from rootless import syscalls as sc
from rootless.errors import ContainerError
from rootless.runtime import capabilities

_IGNORED_OPTS = ("label", "apparmor", "mask", "unmask", "proc-opts")


class Security(NamedTuple):  # frozen
    caps: frozenset[str]  # the capability set (bounding, and effective/permitted for root)
    cap_add: tuple[str, ...]  # --cap-add as given: raised as ambient capabilities for non-root
    seccomp_bpf: bytes | None  # None: unconfined
    no_new_privs: bool


def _seccomp(security_opts, privileged: bool) -> tuple[str | None, bool, bool]:
    """(profile file or None, unconfined, no_new_privs) from --security-opt values."""
    from rootless.runtime import seccomp

    profile, unconfined, nnp = None, privileged, False
    for so in security_opts:
        key, _, val = so.partition("=")
        if key == "seccomp":
            if val == "unconfined":
                unconfined = True
            else:
                profile = val
                # podman: --privileged drops the default profile, not one named here
                unconfined = unconfined and os.path.abspath(val) in seccomp.SYSTEM_PROFILES
        elif key in ("no-new-privileges", "no_new_privileges"):
            nnp = val in ("", "true", "1")
        elif key not in _IGNORED_OPTS:
            raise ContainerError(
                f"--security-opt {so}: unknown option; use seccomp=..., no-new-privileges"
            )
    return profile, unconfined, nnp


def prepare(cap_add, cap_drop, privileged: bool, security_opts) -> Security:
    """Capabilities, seccomp (compiled to BPF, cached in the store) and no_new_privs, from the
    options of `run` (and of the container an `exec` enters)."""
    from rootless import paths
    from rootless.runtime import seccomp

    caps = capabilities.compute(cap_add, cap_drop, privileged)
    profile_file, unconfined, nnp = _seccomp(security_opts, privileged)
    profile = seccomp.load_profile_file(profile_file) if profile_file else None
    if profile is None and not unconfined:
        profile = seccomp.default_profile()  # None: containers.conf says seccomp_profile=unconfined
    bpf = None
    if profile is not None and not unconfined:
        try:
            cache = os.path.join(paths.data_home(), "cache", "seccomp")
            bpf = seccomp.bpf(profile, caps, cache)
        except OSError as e:
            raise ContainerError(f"cannot compile the seccomp profile: {e.strerror or e}") from None
    return Security(caps, tuple(cap_add), bpf, nnp)


def of_options(opts) -> Security:
    """prepare() for a RunOptions."""
    return prepare(opts.cap_add, opts.cap_drop, opts.privileged, opts.security_opts)


def close_host_fds(preserve: int, *keep: int) -> None:
    """Close every inherited fd but stdio, the first `preserve` after it (--preserve-fds, socket
    activation: made inheritable) and `keep` (the channel to the host, O_CLOEXEC): no host directory,
    file or socket may cross into the container, not even through /proc/self/fd as a working
    directory (so this runs before the chdir). The last step in the container before exec."""
    for fd in range(3, 3 + preserve):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    first = 3 + preserve
    for fd in sorted(k for k in keep if k >= first):
        sc.close_range(first, fd - 1)
        first = fd + 1
    sc.close_range(first, 0xFFFFFFFF)


def preserved_fds(preserve_fds: int, environ) -> tuple[int, list[str]]:
    """How many fds after stdio a container's process keeps, and the environment that goes with
    them: --preserve-fds N, else systemd's socket activation (LISTEN_FDS for this process: its fds
    and LISTEN_FDS/LISTEN_FDNAMES go to the container, whose process gets its own LISTEN_PID), as
    podman does. An fd that is not open is an error, as podman's."""
    env = []
    if not preserve_fds and environ.get("LISTEN_FDS"):
        pid = environ.get("LISTEN_PID")
        if pid is None or pid == str(os.getpid()):
            try:
                preserve_fds = int(environ["LISTEN_FDS"])
            except ValueError:
                preserve_fds = 0
            if preserve_fds > 0:
                env.append(f"LISTEN_FDS={preserve_fds}")
                if "LISTEN_FDNAMES" in environ:
                    env.append(f"LISTEN_FDNAMES={environ['LISTEN_FDNAMES']}")
    if preserve_fds < 0:
        raise ContainerError(f"--preserve-fds {preserve_fds}: must be 0 or more")
    for fd in range(3, 3 + preserve_fds):
        try:
            os.fstat(fd)
        except OSError:
            raise ContainerError(
                f"file descriptor {fd} is not available - the preserve-fds option requires that "
                "all file descriptors must be passed"
            ) from None
    return preserve_fds, env


def seal() -> None:
    """Non-dumpable until exec (which makes the new program dumpable again): a process in the
    container can then neither open nor readlink our /proc/PID/exe (the host's interpreter, which
    may be the user's own file: runc's CVE-2019-5736 pattern) nor read our memory or fds. For the
    processes that enter a container: the init (from its Go on) and exec's joiner (before it forks
    the process, which inherits it)."""
    sc.prctl(sc.PR_SET_DUMPABLE, 0)


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


def become(sec: Security, user) -> None:
    """Take on the container's security settings as `user` (spec.ResolvedUser), right before exec."""
    reset_signals()
    if sec.seccomp_bpf is not None:
        sc.seccomp_load_bpf(sec.seccomp_bpf)
    if sec.no_new_privs:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    capabilities.drop_bounding(sec.caps)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(user.groups)
    except OSError:  # denied (single-id namespace) or a group outside the mapping
        pass
    try:
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        raise ContainerError(
            f"user {user.uid}:{user.gid} is not mapped in the container's user namespace: "
            "add subordinate ids for your user (see docs/subuid.md) or run as root in the container"
        ) from None
    capabilities.set_process(sec.caps, user.uid, list(sec.cap_add))
