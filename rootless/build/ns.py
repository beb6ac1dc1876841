"""Calling a function as root in the user's user namespace, and getting its result back.

Layer trees belong to subordinate ids (a file owned by container uid 1000 is host uid 100999), so
reading, copying, writing and removing them happens as root in a user namespace with the user's
mapping (rootless.userns.fork_userns). `call(fn, *args)` forks that child, runs `fn(*args)` there and
returns its JSON-able result through a pipe; a RootlessError raised in the child comes back as a
RootlessError with its message and exit code, anything else as one line. Call it with no threads
running (the CLI verbs do), as fork_userns requires.
"""

from __future__ import annotations

import json
import os

from rootless.errors import EXIT_RUNTIME, RootlessError, describe


def call(fn, *args, mount_ns: bool = False):
    from rootless import syscalls as sc
    from rootless.userns import fork_userns

    r, w = os.pipe2(os.O_CLOEXEC)

    def child() -> int:
        os.close(r)
        try:
            out = {"ok": fn(*args)}
        except RootlessError as e:
            out = {"error": str(e), "code": e.exit_code}
        except Exception as e:  # noqa: BLE001 - one line for the parent (a full store says so)
            out = {"error": describe(e)}
        data = json.dumps(out).encode()
        mv = memoryview(data)
        while mv:
            mv = mv[os.write(w, mv) :]
        return 0

    try:
        proc = fork_userns(child, extra_unshare_flags=sc.CLONE_NEWNS if mount_ns else 0)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    chunks = []
    try:
        while True:
            b = os.read(r, 1 << 16)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        proc.wait()
    try:
        out = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        out = {}
    if "ok" in out:
        return out["ok"]
    msg = out.get("error") or f"the user namespace helper failed (exit {proc.returncode})"
    raise RootlessError(msg, exit_code=int(out.get("code") or EXIT_RUNTIME))
