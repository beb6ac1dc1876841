"""What a test store may leave behind: live processes started for it and mounts that involve it."""

from __future__ import annotations

import os


def _alive(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def processes(store) -> list[tuple[int, str]]:
    """Live processes started for this `Rootless` store: their environment names its data dir
    (monitors, setup, namespace holders, a pod's pause, fuse daemons, network helpers)."""
    token = f"XDG_DATA_HOME={store.data_dir}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")[:200].decode(errors="replace")
        except OSError:
            continue
        if token in env and _alive(d):
            out.append((int(d), cmd))
    return out


def mounts(store) -> list[str]:
    """Mount table lines, in any process's mount namespace, that involve this store."""
    seen = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/mountinfo") as f:
                seen += [ln for ln in f if store.base in ln]
        except OSError:
            continue
    return seen


def in_netns(inode: int) -> list[int]:
    """Pids (of this user) in the network namespace with this inode."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}/ns/net").st_ino == inode:
                    out.append(int(d))
            except OSError:
                continue
    return out
