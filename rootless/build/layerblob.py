"""A layer directory as an OCI layer blob: `write_layer_blob(layer_dir, out_path, compression)`.

The layer directory is the store's encoding, which is also an overlay upper dir's: a whiteout is a
0/0 character device and an opaque directory carries ``user.overlay.opaque=y``. The blob is the OCI
encoding: a PAX tar in which a whiteout is an empty ``.wh.NAME`` file and an opaque directory is
followed by an empty ``DIR/.wh..wh..opq``. Entries come in sorted order, parents first; owners are
numeric (no user or group names), hard links are kept, xattrs go in SCHILY.xattr.* records except
overlay-private ones, sockets are left out. The uncompressed tar's sha256 is the diff_id; with no
compression the blob's digest is the same. It reads files of any owner, so run it as root in the
user namespace (rootless.build.ns.call).

This is the "layer dir -> OCI layer blob" function that push and save also need; keep one copy.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import asdict, dataclass

CHUNK = 1 << 20
WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
MEDIA_TYPES = {
    ("oci", None): "application/vnd.oci.image.layer.v1.tar",
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("docker", None): "application/vnd.docker.image.rootfs.diff.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


@dataclass
class LayerBlob:
    digest: str  # of the blob as written (compressed or not)
    diff_id: str  # of the uncompressed tar
    size: int  # blob bytes
    diff_size: int  # uncompressed tar bytes
    media_type: str

    def to_dict(self) -> dict:
        return asdict(self)


class _Sink:
    """Counts and hashes the tar stream, compresses it, counts and hashes what is written."""

    def __init__(self, f, compression: str | None):
        self.f = f
        self.tar_hash = hashlib.sha256()
        self.tar_size = 0
        self.blob_hash = hashlib.sha256() if compression else self.tar_hash
        self.blob_size = 0
        self.comp = None
        if compression == "gzip":
            import zlib

            self.comp = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif compression == "zstd":
            import zstandard

            self.comp = zstandard.ZstdCompressor(level=3).compressobj()
        elif compression is not None:
            raise ValueError(f"unknown compression {compression!r}: use gzip, zstd or none")

    def write(self, data) -> int:
        self.tar_hash.update(data)
        self.tar_size += len(data)
        self._out(self.comp.compress(data) if self.comp is not None else data)
        return len(data)

    def _out(self, data) -> None:
        if not data:
            return
        if self.comp is not None:
            self.blob_hash.update(data)
        self.blob_size += len(data)
        self.f.write(data)

    def close(self) -> None:
        if self.comp is not None:
            self._out(self.comp.flush())
        if self.comp is None:
            self.blob_size = self.tar_size


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in sorted(names):
        if n.startswith(("user.overlay.", "trusted.overlay.")):
            continue
        try:
            v = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + n] = v.decode("utf-8", "surrogateescape")
    return out


def _info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = int(st.st_mtime)
    return ti


def _empty(name: str, mtime: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = 0
    ti.mtime = mtime
    ti.uname = ti.gname = ""
    return ti


class TarFile(tarfile.TarFile):
    """A tar that ends after its two zero blocks, not padded to a 10 KiB record as Python's is
    (Go's archive/tar, which podman uses, does not pad either; layer sizes then match)."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.mode in ("a", "w", "x"):
                self.fileobj.write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
                self.offset += tarfile.BLOCKSIZE * 2
        finally:
            if not self._extfileobj:
                self.fileobj.close()


class _Writer:
    def __init__(self, tf: tarfile.TarFile):
        self.tf = tf
        self.links: dict[tuple[int, int], str] = {}

    def tree(self, path: str, prefix: str) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            self.entry(e.path, prefix + e.name, e.stat(follow_symlinks=False))

    def entry(self, path: str, name: str, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISCHR(mode) and st.st_rdev == 0:  # a whiteout
            head, _, base = name.rpartition("/")
            self.tf.addfile(_empty(f"{head}/{WH_PREFIX}{base}" if head else WH_PREFIX + base))
            return
        if stat.S_ISDIR(mode):
            ti = _info(name + "/", st, tarfile.DIRTYPE)
            ti.pax_headers = _xattrs(path)
            self.tf.addfile(ti)
            opaque = False
            try:
                opaque = os.getxattr(path, "user.overlay.opaque", follow_symlinks=False) == b"y"
            except OSError:
                pass
            if opaque:
                self.tf.addfile(_empty(f"{name}/{WH_OPAQUE}", int(st.st_mtime)))
            self.tree(path, name + "/")
            return
        if stat.S_ISSOCK(mode):
            return
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and not stat.S_ISDIR(mode):
            first = self.links.get(key)
            if first is not None:
                ti = _info(name, st, tarfile.LNKTYPE)
                ti.linkname = first
                self.tf.addfile(ti)
                return
            self.links[key] = name
        if stat.S_ISREG(mode):
            ti = _info(name, st, tarfile.REGTYPE)
            ti.size = st.st_size
            ti.pax_headers = _xattrs(path)
            with open(path, "rb") as f:
                self.tf.addfile(ti, f)
        elif stat.S_ISLNK(mode):
            ti = _info(name, st, tarfile.SYMTYPE)
            ti.linkname = os.readlink(path)
            self.tf.addfile(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti = _info(name, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tf.addfile(ti)
        elif stat.S_ISFIFO(mode):
            self.tf.addfile(_info(name, st, tarfile.FIFOTYPE))


def write_layer_blob(
    layer_dir: str, out_path: str, compression: str | None = None, fmt: str = "oci"
) -> LayerBlob:
    """Write `layer_dir` as a layer blob to `out_path` (created); compression None, gzip or zstd."""
    with open(out_path, "wb", buffering=CHUNK) as f:
        sink = _Sink(f, compression)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tf:
            tf.copybufsize = CHUNK
            _Writer(tf).tree(layer_dir, "")
        sink.close()
    return LayerBlob(
        digest="sha256:" + sink.blob_hash.hexdigest(),
        diff_id="sha256:" + sink.tar_hash.hexdigest(),
        size=sink.blob_size,
        diff_size=sink.tar_size,
        media_type=MEDIA_TYPES.get((fmt, compression), MEDIA_TYPES[("oci", compression)]),
    )
