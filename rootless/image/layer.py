"""Layer extraction: one layer blob into a directory of the store, checked against its diff_id.

`extract(blob_path, dest_dir, diff_id)` decompresses (rootless.image.decompress: gzip, zstd or none,
by magic bytes) and untars one layer into `dest_dir`, checking the uncompressed sha256 against
`diff_id`. Each archive entry is written by rootless.image.safetree, which refuses anything that
would leave the layer. Device nodes are skipped (counted, for one warning). Whiteouts (`.wh.NAME`)
and opaque markers (`.wh..wh..opq`) become what overlayfs reads. It runs as root inside the user's
user namespace, in a helper process (rootless.image.layer_helper).
"""

from __future__ import annotations

import os
import tarfile
import time
import zlib
from collections.abc import Callable

from rootless.errors import LayerError
from rootless.image.decompress import CHUNK, Pipelined
from rootless.image.safetree import DIR_FLAGS, Meta, TreeWriter, split

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
_XATTR = "SCHILY.xattr."


def _meta(ti: tarfile.TarInfo) -> Meta:
    xattrs = {}
    for key, val in ti.pax_headers.items():
        if key.startswith(_XATTR):
            raw = val.encode("utf-8", "surrogateescape") if isinstance(val, str) else val
            xattrs[key[len(_XATTR) :]] = raw
    return Meta(ti.name, ti.mode, ti.uid, ti.gid, int(ti.mtime), xattrs)


class Extraction:
    """Tar entries written below a directory fd by the safe tree writer: ``entry(tf, ti)`` for each
    member of an open tarfile, then ``finish()`` (directory times), and ``close()`` in any case.
    Used for layers here and for `build`'s ADD of local archives."""

    def __init__(self, root_fd: int):
        self.w = TreeWriter(root_fd)
        self.devices_skipped = 0

    def finish(self) -> None:
        self.w.finish()

    def close(self) -> None:
        self.w.tree.close()

    def entry(self, tf: tarfile.TarFile, ti: tarfile.TarInfo) -> None:
        parts = split(ti.name)
        if not parts:  # the layer root itself
            if ti.isdir():
                self.w.root(_meta(ti))
            return
        base = parts[-1]
        if base.startswith(WH_PREFIX):
            if base == WH_OPAQUE:
                self.w.opaque(parts[:-1], ti.name)
            else:
                self.w.whiteout(parts[:-1], base[len(WH_PREFIX) :], ti.name)
        elif ti.isdir():
            self.w.directory(parts, _meta(ti))
        elif ti.isreg():
            self.w.regular(parts, _meta(ti), tf.extractfile(ti), ti.size)
        elif ti.issym():
            self.w.symlink(parts, ti.linkname, _meta(ti))
        elif ti.islnk():
            self.w.hardlink(parts, split(ti.linkname, "hard link target"), ti.name, ti.linkname)
        elif ti.isfifo():
            self.w.fifo(parts, _meta(ti))
        else:
            self.w.parent(parts, ti.name)
            if ti.ischr() or ti.isblk():
                self.devices_skipped += 1
            # unknown types (e.g. GNU volume headers) are ignored, as docker does


Progress = Callable[[int], None]
PROGRESS_EVERY = 0.25  # seconds between two progress reports


def extract(
    blob_path: str, dest: str, diff_id: str | None, progress: Progress | None = None
) -> dict:
    """Extract one layer blob into the existing empty directory `dest`. Returns counters:
    devices_skipped, xattrs_skipped, size (uncompressed bytes). `progress(n)` is called with the
    number of blob (compressed) bytes read so far: once at the start, then every PROGRESS_EVERY s."""
    old_umask = os.umask(0)  # modes are created exact, saving a chmod per entry
    try:
        return _extract(blob_path, dest, diff_id, progress)
    finally:
        os.umask(old_umask)


def _extract(blob_path: str, dest: str, diff_id: str | None, progress: Progress | None) -> dict:
    with open(blob_path, "rb", buffering=CHUNK) as raw:
        if progress is not None:
            progress(0)
        next_report = time.monotonic() + PROGRESS_EVERY
        stream = Pipelined(raw)
        root_fd = os.open(dest, DIR_FLAGS)
        # a layer without an entry for its root has podman's default root mode (containers/storage:
        # 0555), which is what `/` shows in a container of it; an entry for "./" sets it instead
        os.fchmod(root_fd, 0o555)
        ex = Extraction(root_fd)
        try:
            try:
                with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tf:
                    for ti in tf:
                        ex.entry(tf, ti)
                        if progress is not None and time.monotonic() >= next_report:
                            # the blob's read offset (the decompressing thread reads ahead)
                            progress(os.lseek(raw.fileno(), 0, os.SEEK_CUR))
                            next_report = time.monotonic() + PROGRESS_EVERY
            except tarfile.TarError as e:
                raise LayerError(f"the layer is not a valid tar archive: {e}") from None
            except (zlib.error, EOFError) as e:
                raise LayerError(f"the layer cannot be decompressed: {e}") from None
            stream.drain()
            ex.finish()
        finally:
            ex.close()
            os.close(root_fd)
            stream.close()
    got = "sha256:" + stream.h.hexdigest()
    if diff_id and got != diff_id:
        raise LayerError(
            f"layer content has digest {got}, but the image config says {diff_id}; refusing the layer"
        )
    return {
        "devices_skipped": ex.devices_skipped,
        "xattrs_skipped": ex.w.xattrs_skipped,
        "size": stream.n,
    }
