"""Why this process cannot create a user namespace: a real probe, and the cause with its fix.

`probe()` forks a child that calls unshare(CLONE_NEWUSER) and returns the errno it met (None when it
worked): settings alone do not tell, since a chroot, a CI job's container or a seccomp filter can refuse
the call while every sysctl says yes. `diagnose(err)` names the cause a user most likely meets and the
command that fixes it, one line each, in the order the kernel checks them:

- a chroot (the kernel refuses CLONE_NEWUSER to a chrooted process: EPERM);
- a container without CLONE_NEWUSER (a nested CI job: Docker's default seccomp profile, EPERM);
- `user.max_user_namespaces=0` (ENOSPC; it is also the count being exhausted);
- `kernel.unprivileged_userns_clone=0` (Debian's and Ubuntu's older knob, EPERM);
- `kernel.apparmor_restrict_unprivileged_userns=1` (Ubuntu 24.04+, GitHub's ubuntu-24.04 runners:
  unshare works, but writing the id maps fails with EPERM/EACCES);
and the setuid bit of newuidmap, which rootless.userns.find_helper checks before it forks.

`sysctl_root` lets tests point the sysctl reads at a directory; everything else reads the live system.
"""

from __future__ import annotations

import errno
import os

DOCS = "docs/subuid.md"

_SYSCTLS = {
    "max_user_namespaces": "user/max_user_namespaces",
    "unprivileged_userns_clone": "kernel/unprivileged_userns_clone",
    "apparmor_restrict": "kernel/apparmor_restrict_unprivileged_userns",
}


def probe() -> tuple[int, str] | None:
    """Create a user namespace in a child process and map the child's own uid in it (what AppArmor's
    restriction forbids): None when both work, else (errno, stage) with stage "unshare" or "map"."""
    from rootless import process, syscalls

    uid, gid = os.getuid(), os.getgid()
    r, w = os.pipe2(os.O_CLOEXEC)

    def child() -> int:
        os.close(r)
        code = b"ok"
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        except OSError as e:
            code = b"unshare %d" % (e.errno or errno.EPERM)
        else:
            try:
                for name, text in (
                    ("uid_map", f"0 {uid} 1"),
                    ("setgroups", "deny"),
                    ("gid_map", f"0 {gid} 1"),
                ):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            except OSError as e:
                code = b"map %d" % (e.errno or errno.EPERM)
        os.write(w, code)
        return 0

    proc = process.fork(child, context="probing user namespaces")
    os.close(w)
    try:
        raw = os.read(r, 32).decode()
    finally:
        os.close(r)
        proc.wait()
    if raw == "ok":
        return None
    stage, _, num = raw.partition(" ")
    return (int(num), stage) if num.isdigit() else (errno.EPERM, "unshare")


def _sysctl(name: str, root: str) -> int | None:
    try:
        with open(os.path.join(root, _SYSCTLS[name])) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def chrooted() -> bool:
    """Whether this process runs under chroot: its root is not a mount point of its mount namespace
    (mountinfo then has no line for "/"), or /proc is not even there."""
    try:
        with open("/proc/self/mountinfo") as f:
            return not any(line.split()[4] == "/" for line in f if len(line.split()) > 4)
    except OSError:
        return True


def in_container() -> str | None:
    """The kind of container this process runs in, if the usual markers say so."""
    if os.path.exists("/.dockerenv"):
        return "docker"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    kind = os.environ.get("container")
    if kind:
        return kind
    try:
        with open("/proc/1/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    for marker in ("docker", "kubepods", "containerd", "libpod", "lxc"):
        if marker in text:
            return marker
    return None


def diagnose(
    err: int, *, sysctl_root: str = "/proc/sys", stage: str = "unshare"
) -> tuple[str, str]:
    """(what, fix) for a failed CLONE_NEWUSER (stage "unshare") or id-map write (stage "map")."""
    what = f"cannot create a user namespace ({os.strerror(err)})"
    max_ns = _sysctl("max_user_namespaces", sysctl_root)
    if max_ns == 0 or err == errno.ENOSPC:
        if max_ns == 0:
            return (
                f"{what}: user namespaces are disabled (sysctl user.max_user_namespaces = 0)",
                "sudo sysctl -w user.max_user_namespaces=28633 (and set it in /etc/sysctl.d/ to keep it)",
            )
        return (
            f"{what}: the limit user.max_user_namespaces ({max_ns}) is used up",
            "raise it: sudo sysctl -w user.max_user_namespaces=28633, or end other containers",
        )
    if _sysctl("unprivileged_userns_clone", sysctl_root) == 0:
        return (
            f"{what}: unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone = 0)",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1 (and set it in /etc/sysctl.d/ to keep it)",
        )
    if _sysctl("apparmor_restrict", sysctl_root) == 1 and err in (errno.EPERM, errno.EACCES):
        return (
            f"{what}: AppArmor restricts unprivileged user namespaces "
            "(sysctl kernel.apparmor_restrict_unprivileged_userns = 1, as on Ubuntu 24.04 and GitHub's "
            "ubuntu-24.04 runners)",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or give rootless an AppArmor "
            "profile that allows `userns,` (see docs/subuid.md)",
        )
    if stage == "unshare" and err == errno.EPERM:
        if chrooted():
            return (
                f"{what}: this process runs in a chroot, and the kernel refuses user namespaces there",
                "run rootless outside the chroot, or in a container or VM that has its own root "
                "(pivot_root), such as a CI job container started with user namespaces allowed",
            )
        kind = in_container()
        if kind:
            return (
                f"{what}: this runs inside a {kind} container that does not allow CLONE_NEWUSER "
                "(its seccomp profile or its own user namespace forbids it)",
                "start the job's container with `--security-opt seccomp=unconfined` (or `--privileged`), "
                "e.g. GitLab Runner: privileged = true; or run the job on a VM",
            )
        return (
            f"{what}: something on this host (a seccomp filter, an LSM or a sandbox) forbids it",
            f"run `rootless info` outside any sandbox and see {DOCS}",
        )
    return (what, f"see {DOCS}")


def message(err: int, **kw) -> str:
    what, fix = diagnose(err, **kw)
    return f"{what}; fix: {fix}"
