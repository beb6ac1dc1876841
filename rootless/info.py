"""What this host offers rootless, probed rather than guessed: the data behind `rootless info`.

`gather()` returns a podman-style nested dict (host, store, plus a list of problems). Each problem says
what breaks and the command that fixes it, and is fatal when `rootless run` cannot work at all.
"""

from __future__ import annotations

import os
import platform
import pwd
import shutil
import stat
from dataclasses import dataclass

from rootless import __version__, paths
from rootless.errors import RootlessError


@dataclass
class Problem:
    what: str  # what breaks
    fix: str  # the command or step that fixes it
    fatal: bool = False  # rootless run cannot work at all

    def line(self) -> str:
        return f"{'ERROR' if self.fatal else 'WARNING'}: {self.what}; fix: {self.fix}"


def _helper(name: str) -> dict:
    """newuidmap/newgidmap: present, and setuid root or carrying file capabilities."""
    env = os.environ.get("ROOTLESS_" + name.upper())
    path = (
        env
        or shutil.which(name)
        or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    )
    if not path or not os.path.exists(path):
        return {"path": None, "usable": False}
    st = os.stat(path)
    setuid = bool(st.st_mode & stat.S_ISUID) and st.st_uid == 0
    try:
        caps = bool(os.getxattr(path, "security.capability"))
    except OSError:
        caps = False
    return {"path": path, "setuid": setuid, "fileCaps": caps, "usable": setuid or caps}


def _dev_usable(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDWR))
        return True
    except OSError:
        return False


def _cgroups(uid: int) -> dict:
    try:
        fstype = os.statvfs("/sys/fs/cgroup")  # noqa: F841 - existence check
        is_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    except OSError:
        is_v2 = False
    hybrid = not is_v2 and os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers")
    version = "v2" if is_v2 else "v1 (hybrid)" if hybrid else "v1"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    manager = bool(runtime) and (
        os.path.exists(os.path.join(runtime, "systemd", "private"))
        or os.path.exists(os.path.join(runtime, "bus"))
    )
    delegated: list[str] = []
    if is_v2:
        svc = f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
        try:
            with open(svc) as f:
                delegated = f.read().split()
        except OSError:
            pass
    return {
        "version": version,
        "systemdUserManager": manager,
        "delegatedControllers": delegated,
        "limitsAvailable": is_v2 and manager and {"memory", "pids", "cpu"} <= set(delegated),
    }


def _userns(uid: int, problems: list[Problem]) -> bool:
    """Created for real (rootless.userns_diag.probe), since a chroot, a CI job's container or an LSM
    can refuse user namespaces while every sysctl says yes."""
    from rootless import userns_diag

    failed = userns_diag.probe()
    if failed is not None:
        what, fix = userns_diag.diagnose(failed[0], stage=failed[1])
        problems.append(Problem(f"{what}, so nothing can run", fix, fatal=True))
    return failed is None


def _idmaps(problems: list[Problem]) -> dict:
    """The subordinate id mapping containers get."""
    from rootless import idmap as idmod

    def rows(ranges):
        return [{"container_id": r.container, "host_id": r.host, "size": r.size} for r in ranges]

    try:
        m = idmod.for_user()
    except RootlessError as e:  # a broken /etc/subuid: report it, do not crash
        problems.append(Problem(f"id mapping: {e}", "see docs/subuid.md", fatal=False))
        return {"uidmap": [], "gidmap": []}
    if m.fallback_reason:
        what, _, fix = m.fallback_reason.partition("; fix: ")
        problems.append(Problem(what, fix or "see docs/subuid.md"))
    return {"uidmap": rows(m.uid_ranges), "gidmap": rows(m.gid_ranges)}


def _helpers(uid: int, problems: list[Problem]) -> dict:
    helpers = {n: _helper(n) for n in ("newuidmap", "newgidmap")}
    if uid == 0:
        return helpers
    for n, h in helpers.items():
        if h["path"] is None:
            problems.append(
                Problem(
                    f"{n} is missing: only a one-id mapping is possible",
                    "sudo apt-get install uidmap",
                )
            )
        elif not h["usable"]:
            problems.append(
                Problem(
                    f"{h['path']} is neither setuid root nor has file capabilities",
                    f"sudo chmod u+s {h['path']}",
                )
            )
    return helpers


def _storage(probe: bool, userns_ok: bool, problems: list[Problem]) -> dict:
    from rootless import config

    fuse_ok = _dev_usable("/dev/fuse")
    if not fuse_ok:
        problems.append(
            Problem(
                "/dev/fuse cannot be opened: the fuse-overlay storage driver will not work",
                "sudo apt-get install fuse3 && sudo chmod 0666 /dev/fuse",
            )
        )
    ovl_ok, ovl_why = (
        config.kernel_overlay_usable(use_cache=False)
        if probe and userns_ok
        else (False, "not probed")
    )
    if not fuse_ok and not ovl_ok:
        problems[-1].fatal = True
    return {
        "fuse": {"devFuseUsable": fuse_ok, "fusermount3": shutil.which("fusermount3")},
        "kernelOverlayInUserns": {
            "usable": ovl_ok,
            **({"why": ovl_why} if ovl_why and not ovl_ok else {}),
        },
    }


def _network(problems: list[Problem]) -> dict:
    from rootless.network.mode import helpers_info

    found = helpers_info()
    slirp, pasta = (
        (found[n]["version"] or "unknown") if found[n]["available"] else None
        for n in ("slirp4netns", "pasta")
    )
    tun_ok = _dev_usable("/dev/net/tun")
    if slirp is None:
        problems.append(
            Problem(
                "slirp4netns is missing: the default network mode will not work "
                "(use --network none or host)",
                "sudo apt-get install slirp4netns",
            )
        )
    if pasta is None:
        problems.append(
            Problem("pasta is missing: --network pasta will not work", "sudo apt-get install passt")
        )
    if not tun_ok:
        problems.append(
            Problem(
                "/dev/net/tun cannot be opened: slirp4netns and pasta will not work",
                "sudo chmod 0666 /dev/net/tun",
            )
        )
    return {"slirp4netns": slirp, "pasta": pasta, "devNetTunUsable": tun_ok}


def _limits_problem(cg: dict, user: str) -> Problem | None:
    if cg["limitsAvailable"]:
        return None
    if not cg["version"].startswith("v2"):
        return Problem(
            f"cgroups are {cg['version']}: --memory, --cpus and --pids-limit cannot be enforced",
            "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2); runs without limits still work",
        )
    if not cg["systemdUserManager"]:
        return Problem(
            "no systemd user manager is reachable: resource limits cannot be delegated",
            f"sudo loginctl enable-linger {user}",
        )
    return Problem(
        f"controllers delegated to {user}: {' '.join(cg['delegatedControllers']) or 'none'}; "
        "limits need cpu, memory and pids",
        "add a user@.service drop-in with Delegate=cpu cpuset io memory pids (see docs/cgroups.md)",
    )


def _driver(storage_driver: str | None, problems: list[Problem]) -> tuple[str | None, str]:
    """What `rootless run` would pick, and why (the storage probe has refreshed the cache)."""
    from rootless import config

    if storage_driver is None:  # the global --storage-driver flag, when called from the CLI
        import click

        ctx = click.get_current_context(silent=True)
        storage_driver = ((ctx.find_root().obj if ctx else None) or {}).get("storage_driver")
    try:
        return config.select_driver(storage_driver)
    except RootlessError as e:
        problems.append(Problem(str(e), "fix the setting (see docs/storage.md)", fatal=True))
        return None, str(e)


def gather(*, probe: bool = True, storage_driver: str | None = None) -> dict:
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    problems: list[Problem] = []
    uname = platform.uname()
    userns_ok = _userns(uid, problems)
    idmaps = _idmaps(problems)
    helpers = _helpers(uid, problems)
    storage = _storage(probe, userns_ok, problems)
    network = _network(problems)
    cg = _cgroups(uid)
    limits = _limits_problem(cg, user)
    if limits is not None:
        problems.append(limits)
    driver, driver_why = _driver(storage_driver, problems)
    return {
        "version": __version__,
        "host": {
            "kernel": uname.release,
            "arch": uname.machine,
            "os": _os_release(),
            "cpus": os.cpu_count(),
            "user": {"name": user, "uid": uid, "gid": gid, **idmaps},
            "rootless": uid != 0,
            "userNamespaces": userns_ok,
            "idmapHelpers": helpers,
            **storage,
            "network": network,
            "cgroups": cg,
        },
        "store": {
            "graphRoot": paths.data_home(),
            "runRoot": paths.runtime_dir(),
            "graphDriverName": driver,
            "graphDriverReason": driver_why,
        },
        "problems": [{"what": p.what, "fix": p.fix, "fatal": p.fatal} for p in problems],
    }


def _os_release() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()
