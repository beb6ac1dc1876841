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
