"""`import`: a tarball of a root filesystem (a file, stdin or an http(s) URL) as a one-layer image.

The tarball may be plain, gzip, zstd, bzip2 or xz. gzip and zstd blobs are stored as they came
(their digest is the blob's, the diff_id the uncompressed tar's); bzip2 and xz are stored
uncompressed. The layer is extracted by rootless.image.layer's safe extractor (no entry can leave
the layer) as root in the user namespace. --change instructions and --message (the history comment)
are applied as podman does; the history line is ``/bin/sh -c #(nop) ADD file:<diff_id> in /``.
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import lzma
import os
import shutil
import sys
import zlib

from rootless.build import commit, instructions, ns
from rootless.errors import RootlessError

CHUNK = 1 << 20


def _kind(path: str) -> str | None:
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:3] == b"BZh":
        return "bzip2"
    if head == b"\xfd7zXZ\x00":
        return "xz"
    return None


def _chunks(path: str, kind: str | None):
    with open(path, "rb") as f:
        if kind == "zstd":
            import zstandard

            r = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            while b := r.read(CHUNK):
                yield b
            return
        d = {
            "gzip": lambda: zlib.decompressobj(47),
            "bzip2": bz2.BZ2Decompressor,
            "xz": lzma.LZMADecompressor,
        }.get(kind or "")
        dec = d() if d else None
        while raw := f.read(CHUNK):
            if dec is None:
                yield raw
                continue
            yield dec.decompress(raw)
            if kind == "gzip":
                while dec.eof and dec.unused_data:  # concatenated members
                    rest = dec.unused_data
                    dec = zlib.decompressobj(47)
                    yield dec.decompress(rest)


def _fetch(source: str, dest: str) -> None:
    if source == "-":
        if sys.stdin.isatty():
            raise RootlessError("import -: no tarball on stdin: pipe one in or give a file")
        with open(dest, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, CHUNK)
        return
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            with httpx.stream("GET", source, follow_redirects=True, timeout=60) as r:
                if r.status_code != 200:
                    raise RootlessError(f"import {source}: the server answered {r.status_code}")
                with open(dest, "wb") as f:
                    for b in r.iter_bytes(CHUNK):
                        f.write(b)
        except httpx.HTTPError as e:
            raise RootlessError(f"import {source}: {e}") from None
        return
    if not os.path.isfile(source):
        raise RootlessError(f"import {source}: no such file")
    shutil.copyfile(source, dest)


def _extract(tmp: str, blob: str, diff_id: str) -> None:
    from rootless.image import layer

    dest = os.path.join(tmp, "diff")
    os.mkdir(dest, 0o755)
    try:
        layer.extract(blob, dest, diff_id)
    except layer.LayerError as e:
        raise RootlessError(f"import: {e}") from None
    except layer.IdRangeError as e:
        raise RootlessError(
            f"import: {e}: see docs/subuid.md for a larger subordinate id range"
        ) from None


def import_tarball(source: str, reference: str | None, change: list[str],
                   message: str | None, fmt: str = "oci") -> str:  # fmt: skip
    from rootless.image.store import Store

    ins_list = instructions.parse_changes(change)
    names = [commit.image_name(reference)] if reference else []
    store = Store.open()
    base, fd = store.new_tmp()
    try:
        raw = os.path.join(base, "raw")
        _fetch(source, raw)
        kind = _kind(raw)
        h = hashlib.sha256()
        size = 0
        if kind in ("bzip2", "xz"):  # stored uncompressed
            with open(os.path.join(base, "tar"), "wb") as out:
                for b in _chunks(raw, kind):
                    h.update(b)
                    size += len(b)
                    out.write(b)
            os.replace(os.path.join(base, "tar"), raw)
            kind = None
        else:
            for b in _chunks(raw, kind):
                h.update(b)
                size += len(b)
        diff_id = "sha256:" + h.hexdigest()
        bh = hashlib.sha256()
        with open(raw, "rb") as f:
            while b := f.read(CHUNK):
                bh.update(b)
        digest = "sha256:" + bh.hexdigest() if kind else diff_id
        return _store(store, base, raw, digest, diff_id, size, kind, ins_list, names, message, fmt)
    finally:
        store.release_tmp(base, fd)


def _store(store, base, raw, digest, diff_id, size, kind, ins_list, names, message, fmt) -> str:
    from rootless.image import blobwriter

    with store.lock("gc", shared=True):
        hexid = diff_id.split(":", 1)[1]
        with store.lock(f"layer-{hexid}"):
            blob_size = os.path.getsize(raw)
            if not store.has_blob(digest):
                os.rename(raw, store.blob_path(digest))
            if not store.has_layer(diff_id):
                lbase, lfd = store.new_tmp()
                try:
                    ns.call(_extract, lbase, store.blob_path(digest), diff_id)
                    with open(os.path.join(lbase, "size"), "w") as f:
                        f.write(str(size))
                    os.rename(lbase, store.layer_path(diff_id))
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        store.release_tmp(lbase, lfd)
        layer = {
            "digest": digest,
            "diff_id": diff_id,
            "size": blob_size,
            "diff_size": size,
            "media_type": blobwriter.OCI_LAYER[kind or "none"],
        }
        cfg = commit.base_config(None)
        inner = cfg["config"]
        env = {}
        for ins in ins_list:
            instructions.apply(ins, inner, env, cfg, {})
        entry = {
            "created": commit.now_iso(),
            "created_by": f"/bin/sh -c #(nop) ADD file:{hexid} in /",
        }
        if message:
            entry["comment"] = message
        cfg["history"] = [entry]
        cfg["created"] = entry["created"]
        rec = commit.commit_image(store, cfg, [layer], names=names, fmt=fmt)
    return rec.id
