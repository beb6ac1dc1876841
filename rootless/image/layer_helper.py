"""The layer extraction helper: extraction (rootless.image.layer) and removal of store trees, run as
root inside the user's user namespace, where layer files can have the image's owners.

Two ways in, both ending in ``job()``:
- ``ExtractServer``: a user-namespace child forked before trio starts (rootless.userns.fork_userns),
  which forks one worker per layer job; jobs and results are one JSON line each on two pipes (short
  lines: atomic pipe writes); a worker also sends {"id", "progress": bytes read} lines while it runs. This saves a Python start and a namespace setup per layer.
- the helper command ``python -m rootless.image.layer_helper extract BLOB DEST DIFF_ID | rm PATH...``
  (``helper_argv``), for a caller that already has threads (no safe fork) and for removing trees
  owned by subordinate ids. Errors go to stderr as one line ``error: ...``, warnings as
  ``warning: ...``; the extracted size is printed on stdout.
"""

from __future__ import annotations

import json
import os
import sys

from rootless.errors import LayerError, describe
from rootless.image.layer import extract
from rootless.image.safetree import IdRangeError, rmtree

_IDMAP = None  # the user's id map, read before becoming root in the namespace (for messages)


def helper_argv(*args: str) -> list[str]:
    from rootless import process

    return process.python_module("rootless.image.layer_helper", *args)


def _range_message(e: IdRangeError) -> str:
    try:
        from rootless import idmap

        return idmap.range_too_small_message(e.kind, e.ident, _IDMAP)
    except Exception:  # noqa: BLE001 - the message must still reach the user
        return f"{e.kind} {e.ident} is outside your subordinate id range: see docs/subuid.md"


def job(blob: str, dest: str, diff_id: str, progress=None) -> dict:
    """Extract one layer; the outcome as {"rc", and "size", "warn" or "err"}. `progress(n)`: the
    blob bytes read so far, now and then (rootless.image.layer.extract)."""
    out: dict = {"rc": 0}
    try:
        stats = extract(blob, dest, diff_id or None, progress)
        out["size"] = stats["size"]
        n = stats["devices_skipped"]
        if n:
            out["warn"] = (
                f"skipped {n} device node{'s' if n > 1 else ''} (they cannot be created rootless)"
            )
    except LayerError as e:
        out.update(rc=2, err=str(e))
    except IdRangeError as e:
        out.update(rc=3, err=f"{e.name}: {_range_message(e)}")
    except OSError as e:
        out.update(rc=4, err=f"extracting the layer failed: {describe(e)}")
    except Exception as e:  # noqa: BLE001 - one line for the user, whatever happened
        out.update(rc=5, err=f"extracting the layer failed: {describe(e)}")
    if "err" in out:
        out["err"] = out["err"][:1500]
    return out


def _child_extract(blob: str, dest: str, diff_id: str) -> int:
    res = job(blob, dest, diff_id)
    if res.get("err"):
        os.write(2, f"error: {res['err']}\n".encode())
    elif res.get("warn"):
        os.write(2, f"warning: {res['warn']}\n".encode())
    if res["rc"] == 0:
        os.write(1, f"{res['size']}\n".encode())
    return res["rc"]


def _child_rm(*paths: str) -> int:
    rc = 0
    for p in paths:
        try:
            rmtree(p)
        except OSError as e:
            os.write(2, f"error: cannot remove {p}: {e}\n".encode())
            rc = 1
    return rc


def main(argv: list[str]) -> int:
    from rootless import idmap, userns

    if not argv:
        return 64
    cmd, args = argv[0], argv[1:]
    fn = {"extract": _child_extract, "rm": _child_rm}.get(cmd)
    if fn is None:
        return 64
    sys.stdout.flush()
    global _IDMAP
    try:
        _IDMAP = idmap.for_user()  # the user's map, read before we are root in the namespace
        return userns.run_in_userns(fn, *args, idmap=_IDMAP)
    except Exception as e:  # noqa: BLE001 - one line for the parent to relay
        os.write(2, f"error: {e}\n".encode())
        return 5


class ExtractServer:
    """A user-namespace child forked before trio starts, which forks one worker per layer job.

    `start()` (sync, while the process has no threads) forks the server; `await extract(...)` sends
    a job and waits for its result; `close()` ends the server and reaps it. Results are read by
    `run_reader`, which the caller runs in a nursery.
    """

    def __init__(self):
        self.child = None
        self.job_w = self.res_r = -1
        self.waiters: dict[int, list] = {}
        self.next_id = 0
        self.idmap = None

    def start(self) -> ExtractServer:
        from rootless import idmap as idmapmod
        from rootless import userns

        global _IDMAP
        self.idmap = _IDMAP = idmapmod.for_user()
        job_r, job_w = os.pipe2(os.O_CLOEXEC)
        res_r, res_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.child = userns.fork_userns(
                lambda: _serve(job_r, res_w, (job_w, res_r)), idmap=self.idmap
            )
        finally:
            os.close(job_r)
            os.close(res_w)
        self.job_w, self.res_r = job_w, res_r
        return self

    async def run_reader(self) -> None:
        import trio

        stream = trio.lowlevel.FdStream(os.dup(self.res_r))
        buf = b""
        async with stream:
            while data := await stream.receive_some(65536):
                lines, buf = _lines(buf + data)
                for msg in map(json.loads, lines):
                    if "progress" in msg:
                        slot = self.waiters.get(msg["id"])
                        if slot and slot[2]:
                            slot[2](msg["progress"])
                        continue
                    slot = self.waiters.pop(msg["id"], None)
                    if slot:
                        slot[1] = msg
                        slot[0].set()
        for slot in self.waiters.values():
            slot[1] = {"rc": 125, "err": "the layer extraction server died"}
            slot[0].set()

    async def extract(self, blob: str, dest: str, diff_id: str, on_progress=None) -> dict:
        """Extract a layer in a worker; on_progress(n) hears the blob bytes read so far."""
        import trio

        self.next_id += 1
        jid = self.next_id
        slot = [trio.Event(), None, on_progress]
        self.waiters[jid] = slot
        line = json.dumps({"id": jid, "args": [blob, dest, diff_id]}).encode() + b"\n"
        os.write(self.job_w, line)
        with trio.CancelScope(shield=True):  # a worker is writing into dest: let it finish first
            await slot[0].wait()
        return slot[1]

    def close(self) -> None:
        if self.job_w >= 0:
            os.close(self.job_w)
            self.job_w = -1
        if self.child is not None:
            self.child.wait()
            self.child = None
        if self.res_r >= 0:
            os.close(self.res_r)
            self.res_r = -1


def _serve(job_r: int, res_w: int, close: tuple[int, ...]) -> int:
    """The server (root in the user namespace): one forked worker per job line until EOF."""
    from rootless import process

    for fd in close:
        os.close(fd)
    buf = b""
    workers: list = []
    while data := os.read(job_r, 65536):
        lines, buf = _lines(buf + data)
        for req in map(json.loads, lines):
            workers.append(process.fork(lambda req=req: _worker(req, job_r, res_w)))
        workers = [w for w in workers if w.poll() is None]
    for w in workers:
        w.wait()
    return 0


def _lines(buf: bytes) -> tuple[list[bytes], bytes]:
    """The whole lines in buf, and what follows the last one."""
    *lines, rest = buf.split(b"\n")
    return lines, rest


def _worker(req: dict, job_r: int, res_w: int) -> int:
    os.close(job_r)
    jid = req["id"]

    def progress(n: int) -> None:
        os.write(res_w, b'{"id": %d, "progress": %d}\n' % (jid, n))

    os.write(res_w, json.dumps({"id": jid, **job(*req["args"], progress)}).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
