"""Finding processes from the host's view, for tests that check nothing is left behind."""

from __future__ import annotations

import os


def pids_with_cmdline(*needles: str) -> list[int]:
    """Pids whose command line contains every one of the given strings."""
    found = []
    want = [n.encode() for n in needles]
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if all(w in cmd for w in want):
            found.append(int(p))
    return found


def overlay_daemons(base: str) -> list[int]:
    """fuse-overlay daemons serving a store under `base` (a test's Rootless.base)."""
    return pids_with_cmdline("rootless.fuse_overlay", base)
