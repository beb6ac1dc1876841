"""Safe layer extraction into the store, run as root inside the user's user namespace.

`extract(blob_path, dest_dir, diff_id)` decompresses (gzip, zstd or none, by magic bytes) and
untars one layer into `dest_dir`, checking the uncompressed sha256 against `diff_id`. Every path is
resolved component by component from the layer root with O_NOFOLLOW (openat-style), so no entry can
leave the layer: `..`, absolute names, writes through a symlink an earlier entry planted, and hard
links to anything outside are refused. Modes, owners (mapped by the user namespace), times, xattrs
and hard links are kept; device nodes are skipped with one warning. Whiteouts (`.wh.NAME`) become
0/0 character devices and opaque markers (`.wh..wh..opq`) the xattr `user.overlay.opaque=y`, which
kernel overlayfs (userxattr) and rootless's FUSE overlay both read.

This module runs in a forked child with no threads and no trio: plain os calls only. The parent
starts it as `python -m rootless.image.layer extract|rm ...` (see `helper_argv`), which enters the
user namespace with rootless.userns.run_in_userns. Errors go to stderr as one line `error: ...`,
warnings as `warning: ...`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import tarfile
import zlib

CHUNK = 1 << 20
OPAQUE_XATTR = "user.overlay.opaque"
WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LayerError(Exception):
    """A layer that cannot be stored (hostile or broken); the message is one line for the user."""


class IdRangeError(Exception):
    def __init__(self, kind: str, ident: int, name: str):
        super().__init__(f"{kind} {ident} of {name} is outside the mapped range")
        self.kind, self.ident, self.name = kind, ident, name


# --- decompression ------------------------------------------------------------------------------
class _Zlib:
    """gzip (multi-member) decompression with large reads."""

    def __init__(self, f):
        self.f = f
        self.d = zlib.decompressobj(47)
        self.pending = b""
        self.buf = bytearray()
        self.eof = False

    def read(self, n: int) -> bytes:
        while len(self.buf) < n and not self.eof:
            data = self.d.unconsumed_tail or self.pending or self.f.read(CHUNK)
            self.pending = b""
            if not data:
                if not self.d.eof and self._started:
                    raise LayerError("the layer's gzip stream is truncated")
                self.eof = True
                break
            self._started = True
            self.buf += self.d.decompress(data, max(n, CHUNK))
            if self.d.eof:
                rest = self.d.unused_data
                self.d = zlib.decompressobj(47)
                self._started = False
                if rest.strip(b"\0"):
                    self.pending = rest
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    _started = False


class _Pipelined:
    """Decompress and hash in a thread (zlib, zstd and sha256 release the GIL) while the caller
    parses the tar: read() hands out the decompressed chunks; `h` and `n` are final after EOF."""

    def __init__(self, raw):
        import queue
        import threading

        self.q: queue.Queue = queue.Queue(maxsize=16)
        self.h = hashlib.sha256()
        self.n = 0
        self.cur = memoryview(b"")
        self.eof = False
        self.stop = False
        self.t = threading.Thread(target=self._run, args=(raw,), daemon=True)
        self.t.start()

    def _run(self, raw) -> None:
        try:
            src = open_decompressed(raw)
            while not self.stop:
                b = src.read(CHUNK)
                if not b:
                    break
                self.h.update(b)
                self.n += len(b)
                self.q.put(b)
            self.q.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the reading side
            self.q.put(e)

    def read(self, n: int = -1) -> bytes:
        if not self.cur:
            if self.eof:
                return b""
            item = self.q.get()
            if item is None:
                self.eof = True
                return b""
            if isinstance(item, BaseException):
                self.eof = True
                raise item
            self.cur = memoryview(item)
        if n is None or n < 0:
            n = len(self.cur)
        out, self.cur = self.cur[:n], self.cur[n:]
        return out.tobytes()

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        self.stop = True
        while self.t.is_alive():
            try:
                self.q.get(timeout=0.1)
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
        self.t.join()


def open_decompressed(f):
    head = f.peek(4)[:4] if hasattr(f, "peek") else b""
    if head[:2] == b"\x1f\x8b":
        return _Zlib(f)
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(
            f, read_size=CHUNK, read_across_frames=True
        )
    return f


# --- path resolution -----------------------------------------------------------------------------
def _split(name: str, what: str = "entry") -> list[str]:
    """Components of a tar name, refusing absolute names and `..`."""
    if name.startswith("/"):
        raise LayerError(f"layer {what} {name!r} is an absolute path; refusing the layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer {what} {name!r} contains '..'; refusing the layer")
    return parts


class _Tree:
    """Directory fds below the layer root, resolved without following any symlink."""

    def __init__(self, root_fd: int):
        self.root = root_fd
        self.cache: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def invalidate(self, parts: list[str]) -> None:
        """Forget cached fds at or below `parts` (it was just removed or replaced)."""
        key = tuple(parts)
        for k in [k for k in self.cache if k[: len(key)] == key]:
            os.close(self.cache.pop(k))

    def dir(self, parts: list[str], *, create: bool, name: str) -> int:
        key = tuple(parts)
        if not key:
            return self.root
        fd = self.cache.get(key)
        if fd is not None:
            return fd
        parent = self.dir(parts[:-1], create=create, name=name)
        comp = parts[-1]
        try:
            fd = os.open(comp, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise LayerError(
                    f"layer entry {name!r} refers to {'/'.join(parts)!r}, which is not in the layer"
                ) from None
            os.mkdir(comp, 0o755, dir_fd=parent)
            fd = os.open(comp, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(
                    f"layer entry {name!r} goes through {'/'.join(parts)!r}, which is a symlink or not a directory; refusing the layer"
                ) from None
            raise
        if len(self.cache) > 256:
            self.close()
        self.cache[key] = fd
        return fd


def _remove(parent: int, name: str) -> None:
    """Remove whatever `name` is in dir fd `parent` (a tree if it is a directory)."""
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        _rmtree_at(parent, name)
    except PermissionError:
        # EPERM from unlink on a directory on some filesystems
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise
        _rmtree_at(parent, name)


def _rmtree_at(parent: int, name: str) -> None:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                _rmtree_at(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def rmtree(path: str) -> None:
    """Remove a tree without following symlinks (run inside the user namespace for mapped owners)."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    pfd = os.open(parent, _DIR_FLAGS)
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            _rmtree_at(pfd, name)
        else:
            os.unlink(name, dir_fd=pfd)
    finally:
        os.close(pfd)


# --- extraction ----------------------------------------------------------------------------------
class _Extractor:
    def __init__(self, root_fd: int):
        self.tree = _Tree(root_fd)
        self.dir_times: list[tuple[list[str], int]] = []
        self.devices_skipped = 0
        self.sgid_dirs: set[tuple[str, ...]] = set()
        self.xattrs_skipped = 0

    def _chown(
        self,
        name: str,
        uid: int,
        gid: int,
        *,
        fd: int | None = None,
        parent: int | None = None,
        path: str,
    ) -> None:
        try:
            if fd is not None:
                os.fchown(fd, uid, gid)
            else:
                os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.EINVAL:
                kind, ident = ("uid", uid) if not _id_ok(uid) else ("gid", gid)
                raise IdRangeError(kind, ident, path) from None
            raise

    def _xattrs(self, fd: int, ti: tarfile.TarInfo) -> None:
        for key, val in ti.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            xname = key[len("SCHILY.xattr.") :]
            if xname.startswith(("user.overlay.", "trusted.")):
                self.xattrs_skipped += 1
                continue
            raw = val.encode("utf-8", "surrogateescape") if isinstance(val, str) else val
            try:
                os.setxattr(fd, xname, raw)
            except OSError:
                self.xattrs_skipped += 1

    def entry(self, tf: tarfile.TarFile, ti: tarfile.TarInfo) -> None:
        parts = _split(ti.name)
        mtime = int(ti.mtime)
        times = (mtime * 10**9, mtime * 10**9)
        if not parts:  # the layer root itself
            if ti.isdir():
                self._chown("", ti.uid, ti.gid, fd=self.tree.root, path="/")
                os.fchmod(self.tree.root, stat.S_IMODE(ti.mode))
                self._xattrs(self.tree.root, ti)
                self.dir_times.append(([], mtime))
            return
        base = parts[-1]
        dirparts = parts[:-1]
        if base.startswith(WH_PREFIX):
            parent = self.tree.dir(dirparts, create=True, name=ti.name)
            if base == WH_OPAQUE:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
                return
            target = base[len(WH_PREFIX) :]
            if not target or target in (".", ".."):
                raise LayerError(
                    f"layer entry {ti.name!r} is a malformed whiteout; refusing the layer"
                )
            _remove(parent, target)
            self.tree.invalidate([*dirparts, target])
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
            return
        parent = self.tree.dir(dirparts, create=True, name=ti.name)
        if ti.isdir():
            mode = stat.S_IMODE(ti.mode)
            fresh = True
            try:
                os.mkdir(base, mode & 0o777, dir_fd=parent)
            except FileExistsError:
                fresh = False
                st = os.stat(base, dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    _remove(parent, base)
                    self.tree.invalidate(parts)
                    os.mkdir(base, 0o700, dir_fd=parent)
            fd = self.tree.dir(parts, create=False, name=ti.name)  # cached for the children
            if not fresh or ti.uid or ti.gid or tuple(dirparts) in self.sgid_dirs:
                self._chown(base, ti.uid, ti.gid, fd=fd, path=ti.name)
            if not fresh or mode & 0o7000:
                os.fchmod(fd, mode)
            if mode & stat.S_ISGID:
                self.sgid_dirs.add(tuple(parts))
            else:
                self.sgid_dirs.discard(tuple(parts))
            self._xattrs(fd, ti)
            self.dir_times.append((parts, mtime))
            return
        if ti.ischr() or ti.isblk():
            self.devices_skipped += 1
            return
        if ti.isreg():
            fd = self._create(
                parent,
                base,
                lambda: os.open(
                    base,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    stat.S_IMODE(ti.mode) & 0o777,
                    dir_fd=parent,
                ),
                parts,
            )
            try:
                src = tf.extractfile(ti)
                left = ti.size
                while left > 0:
                    b = src.read(min(CHUNK, left))
                    if not b:
                        raise LayerError(f"layer entry {ti.name!r} is truncated")
                    left -= len(b)
                    mv = memoryview(b)
                    while mv:
                        mv = mv[os.write(fd, mv) :]
                if ti.uid or ti.gid or tuple(dirparts) in self.sgid_dirs:
                    self._chown(base, ti.uid, ti.gid, fd=fd, path=ti.name)
                if ti.mode & 0o7000:
                    os.fchmod(fd, stat.S_IMODE(ti.mode))  # after chown, which clears set-id bits
                self._xattrs(fd, ti)
                os.utime(fd, ns=times)
            finally:
                os.close(fd)
            return
        if ti.issym():
            self._create(parent, base, lambda: os.symlink(ti.linkname, base, dir_fd=parent), parts)
            if ti.uid or ti.gid or tuple(dirparts) in self.sgid_dirs:
                self._chown(base, ti.uid, ti.gid, parent=parent, path=ti.name)
            os.utime(base, ns=times, dir_fd=parent, follow_symlinks=False)
            return
        if ti.islnk():
            tparts = _split(ti.linkname, "hard link target")
            if not tparts:
                raise LayerError(
                    f"layer hard link {ti.name!r} points at the layer root; refusing the layer"
                )
            tparent = self.tree.dir(tparts[:-1], create=False, name=ti.name)
            try:
                os.stat(tparts[-1], dir_fd=tparent, follow_symlinks=False)
            except FileNotFoundError:
                raise LayerError(
                    f"layer hard link {ti.name!r} -> {ti.linkname!r} points outside the layer or at nothing; refusing the layer"
                ) from None
            if tparts == parts:
                return
            self._create(
                parent,
                base,
                lambda: os.link(
                    tparts[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False
                ),
                parts,
            )
            return
        if ti.isfifo():
            self._create(parent, base, lambda: os.mkfifo(base, 0o600, dir_fd=parent), parts)
            fd = os.open(
                base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
            )
            try:
                self._chown(base, ti.uid, ti.gid, fd=fd, path=ti.name)
                os.fchmod(fd, stat.S_IMODE(ti.mode))
                os.utime(fd, ns=times)
            finally:
                os.close(fd)
            return
        # unknown types (e.g. GNU volume headers) are ignored, as docker does

    def _create(self, parent: int, base: str, make, parts: list[str]):
        try:
            return make()
        except FileExistsError:
            _remove(parent, base)
            self.tree.invalidate(parts)
            return make()

    def finish(self) -> None:
        # directory times last (creating children changes them), deepest first
        for parts, mtime in sorted(self.dir_times, key=lambda x: -len(x[0])):
            ns = (mtime * 10**9, mtime * 10**9)
            try:
                if not parts:
                    os.utime(self.tree.root, ns=ns)
                    continue
                parent = self.tree.dir(parts[:-1], create=False, name="/".join(parts))
                os.utime(parts[-1], ns=ns, dir_fd=parent, follow_symlinks=False)
            except (OSError, LayerError):
                pass
        self.tree.close()


def _id_ok(ident: int) -> bool:
    """Whether `ident` is mapped in this user namespace (read from /proc/self/uid_map)."""
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, _, count = (int(x) for x in line.split())
                if inside <= ident < inside + count:
                    return True
    except OSError:
        return True
    return False


def extract(blob_path: str, dest: str, diff_id: str | None) -> dict:
    """Extract one layer blob into the existing empty directory `dest`. Returns counters."""
    old_umask = os.umask(0)  # modes are created exact, saving a chmod per entry
    try:
        return _extract(blob_path, dest, diff_id)
    finally:
        os.umask(old_umask)


def _extract(blob_path: str, dest: str, diff_id: str | None) -> dict:
    with open(blob_path, "rb", buffering=CHUNK) as raw:
        stream = _Pipelined(raw)
        root_fd = os.open(dest, _DIR_FLAGS)
        ex = _Extractor(root_fd)
        try:
            try:
                with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tf:
                    for ti in tf:
                        ex.entry(tf, ti)
            except tarfile.TarError as e:
                raise LayerError(f"the layer is not a valid tar archive: {e}") from None
            except (zlib.error, EOFError) as e:
                raise LayerError(f"the layer cannot be decompressed: {e}") from None
            stream.drain()
            ex.finish()
        finally:
            ex.tree.close()
            os.close(root_fd)
            stream.close()
    got = "sha256:" + stream.h.hexdigest()
    if diff_id and got != diff_id:
        raise LayerError(
            f"layer content has digest {got}, but the image config says {diff_id}; refusing the layer"
        )
    return {
        "devices_skipped": ex.devices_skipped,
        "xattrs_skipped": ex.xattrs_skipped,
        "size": stream.n,
    }


# --- the helper process --------------------------------------------------------------------------
def helper_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "rootless.image.layer", *args]


def _child_extract(blob: str, dest: str, diff_id: str) -> int:
    try:
        stats = extract(blob, dest, diff_id or None)
    except LayerError as e:
        os.write(2, f"error: {e}\n".encode())
        return 2
    except IdRangeError as e:
        try:
            from rootless import idmap

            msg = idmap.range_too_small_message(e.kind, e.ident, _IDMAP)
        except Exception:  # noqa: BLE001 - the message must still reach the user
            msg = f"{e.kind} {e.ident} is outside your subordinate id range: see docs/subuid.md"
        os.write(2, f"error: {e.name}: {msg}\n".encode())
        return 3
    except OSError as e:
        os.write(2, f"error: extracting the layer failed: {e}\n".encode())
        return 4
    if stats["devices_skipped"]:
        n = stats["devices_skipped"]
        os.write(
            2,
            f"warning: skipped {n} device node{'s' if n > 1 else ''} (they cannot be created rootless)\n".encode(),
        )
    os.write(1, f"{stats['size']}\n".encode())
    return 0


def _child_rm(*paths: str) -> int:
    rc = 0
    for p in paths:
        try:
            rmtree(p)
        except OSError as e:
            os.write(2, f"error: cannot remove {p}: {e}\n".encode())
            rc = 1
    return rc


_IDMAP = None


def main(argv: list[str]) -> int:
    from rootless import userns

    if not argv:
        return 64
    cmd, args = argv[0], argv[1:]
    fn = {"extract": _child_extract, "rm": _child_rm}.get(cmd)
    if fn is None:
        return 64
    sys.stdout.flush()
    global _IDMAP
    try:
        from rootless import idmap

        _IDMAP = idmap.for_user()  # the user's map, read before we are root in the namespace
        return userns.run_in_userns(fn, *args, idmap=_IDMAP)
    except Exception as e:  # noqa: BLE001 - one line for the parent to relay
        os.write(2, f"error: {e}\n".encode())
        return 5


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# --- the in-process extraction server ----------------------------------------------------------
class ExtractServer:
    """A user-namespace child forked before trio starts, which forks one worker per layer job.

    `start()` (sync, while the process has no threads) forks the server through
    rootless.userns.fork_userns; `await extract(...)` sends a job and waits for its result;
    `close()` ends the server and reaps it. Results come back as one JSON line per job on a pipe
    (short lines: atomic pipe writes), read by `run_reader`, which the caller runs in a nursery.
    This saves a Python start and a namespace setup per layer over the helper-process path.
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
        import json as _json

        import trio

        stream = trio.lowlevel.FdStream(os.dup(self.res_r))
        buf = b""
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = _json.loads(line)
                    slot = self.waiters.pop(msg["id"], None)
                    if slot:
                        slot[1] = msg
                        slot[0].set()
        for slot in self.waiters.values():
            slot[1] = {"rc": 125, "err": "the layer extraction server died"}
            slot[0].set()

    async def extract(self, blob: str, dest: str, diff_id: str) -> dict:
        import json as _json

        import trio

        self.next_id += 1
        jid = self.next_id
        slot = [trio.Event(), None]
        self.waiters[jid] = slot
        line = _json.dumps({"id": jid, "args": [blob, dest, diff_id]}).encode() + b"\n"
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
    import json as _json

    for fd in close:
        os.close(fd)
    buf = b""
    live = 0
    while True:
        data = os.read(job_r, 65536)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            job = _json.loads(line)
            pid = os.fork()
            if pid == 0:
                os.close(job_r)
                rc = 125
                try:
                    rc = _worker(job, res_w)
                finally:
                    os._exit(rc)
            live += 1
        while live:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                live = 0
                break
            if pid == 0:
                break
            live -= 1
    while live:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
        live -= 1
    return 0


def _worker(job: dict, res_w: int) -> int:
    import json as _json

    blob, dest, diff_id = job["args"]
    msg: dict = {"id": job["id"], "rc": 0}
    try:
        stats = extract(blob, dest, diff_id or None)
        msg["size"] = stats["size"]
        n = stats["devices_skipped"]
        if n:
            msg["warn"] = (
                f"skipped {n} device node{'s' if n > 1 else ''} (they cannot be created rootless)"
            )
    except LayerError as e:
        msg.update(rc=2, err=str(e))
    except IdRangeError as e:
        try:
            from rootless import idmap

            text = idmap.range_too_small_message(e.kind, e.ident, _IDMAP)
        except Exception:  # noqa: BLE001
            text = f"{e.kind} {e.ident} is outside your subordinate id range: see docs/subuid.md"
        msg.update(rc=3, err=f"{e.name}: {text}")
    except OSError as e:
        msg.update(rc=4, err=f"extracting the layer failed: {e}")
    except BaseException as e:  # noqa: BLE001
        msg.update(rc=5, err=f"extracting the layer failed: {type(e).__name__}: {e}")
    if "err" in msg:
        msg["err"] = msg["err"][:1500]
    os.write(res_w, _json.dumps(msg).encode() + b"\n")
    return 0
