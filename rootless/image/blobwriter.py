"""Writing layer blobs: a layer directory as an OCI layer tarball, and recompression of a blob.

`write_layer_blob(layer_dir, out_path, compression="gzip")` turns an extracted layer or a
container's upper dir into an OCI layer blob and returns a `LayerBlob` (digest and size of the
compressed blob, diff_id and size of the tar, media type). The tar is reproducible: entries in
byte order of their names, a directory before its contents, whole-second mtimes (optionally
clamped, as SOURCE_DATE_EPOCH), no user or group names, PAX headers only where needed; gzip has
no name and mtime 0; zstd is single-threaded. Overlay encodings become OCI ones: a 0/0 character
device is a `.wh.NAME` whiteout, a directory with `user.overlay.opaque=y` (or trusted.) gets a
`.wh..wh..opq` entry (both markers 0600, root, mtime 0), `.wh.` files already there are kept;
overlay's own xattrs are left out, other xattrs (security.capability, user.*) go in as
SCHILY.xattr PAX records; hard links are kept; sockets are skipped. Owners are written as lstat(2) sees them, so call it inside the user
namespace (container ids), or use `write_layer_blob_in_userns` from the host side, which runs
`python -m rootless.image.blobwriter` there.

`recompress(src, dst, compression)` decompresses a stored blob and compresses it again (push
--compression-format), checking the tar's digest against the diff_id it must have.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tarfile
import zlib
from dataclasses import asdict, dataclass

CHUNK = 1 << 20
COMPRESSIONS = ("gzip", "zstd", "none")
OCI_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
DOCKER_LAYER = {
    "none": "application/vnd.docker.image.rootfs.diff.tar",
    "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
OVERLAY_XATTRS = ("user.overlay.", "trusted.overlay.")
OPAQUE = (b"y", b"Y")
WH_OPAQUE = ".wh..wh..opq"


@dataclass
class LayerBlob:
    digest: str  # of the compressed blob
    size: int
    diff_id: str  # of the uncompressed tar
    diff_size: int
    media_type: str  # the OCI layer media type for the compression
    compression: str


def layer_media_type(compression: str, fmt: str = "oci") -> str:
    """The layer media type for a compression in a manifest format ("oci" or "v2s2")."""
    table = OCI_LAYER if fmt == "oci" else DOCKER_LAYER
    if compression not in table:
        raise ValueError(f"{compression} layers cannot be described in a {fmt} manifest")
    return table[compression]


def sniff(path: str) -> str:
    """The compression of a blob file, by its magic bytes: gzip, zstd or none."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


class BlobWriter:
    """A write-only file object: hashes what it is given (the tar), compresses it, writes the
    result to `raw` and hashes that (the blob)."""

    def __init__(self, raw, compression: str = "gzip", level: int | None = None):
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}")
        self.raw, self.compression = raw, compression
        self.tar_hash, self.blob_hash = hashlib.sha256(), hashlib.sha256()
        self.tar_size = self.blob_size = 0
        if compression == "gzip":
            self._c = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
        elif compression == "zstd":
            import zstandard

            self._c = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()
        else:
            self._c = None

    def write(self, data) -> int:
        self.tar_hash.update(data)
        self.tar_size += len(data)
        self._out(self._c.compress(data) if self._c is not None else bytes(data))
        return len(data)

    def _out(self, data: bytes) -> None:
        if data:
            self.blob_hash.update(data)
            self.blob_size += len(data)
            self.raw.write(data)

    def close(self) -> None:
        if self._c is not None:
            self._out(self._c.flush())
            self._c = None

    def result(self) -> LayerBlob:
        return LayerBlob(
            digest="sha256:" + self.blob_hash.hexdigest(),
            size=self.blob_size,
            diff_id="sha256:" + self.tar_hash.hexdigest(),
            diff_size=self.tar_size,
            media_type=OCI_LAYER[self.compression],
            compression=self.compression,
        )


# --- layer dir -> tar ------------------------------------------------------------------------------
class TarFile(tarfile.TarFile):
    """A tar that ends after its two zero blocks, not padded to a 10 KiB record as Python's is
    (Go's archive/tar, which podman and buildah use, does not pad either; layer sizes then match)."""

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


def write_layer_blob(
    layer_dir: str,
    out_path: str,
    *,
    compression: str = "gzip",
    level: int | None = None,
    mtime_clamp: int | None = None,
) -> LayerBlob:
    """Write `layer_dir` as an OCI layer blob at `out_path` (created or truncated)."""
    with open(out_path, "wb", buffering=CHUNK) as raw:
        w = BlobWriter(raw, compression, level)
        with TarFile.open(
            fileobj=w,
            mode="w|",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            errors="surrogateescape",
            bufsize=CHUNK,
        ) as tf:
            _Walker(tf, mtime_clamp).tree(os.fsencode(layer_dir))
        w.close()
    return w.result()


class _Walker:
    def __init__(self, tf: tarfile.TarFile, mtime_clamp: int | None):
        self.tf, self.clamp = tf, mtime_clamp
        self.links: dict[tuple[int, int], str] = {}

    def tree(self, root: bytes) -> None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._dir(fd, "")
        finally:
            os.close(fd)

    def _info(self, name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        mtime = int(st.st_mtime)
        ti.mtime = min(mtime, self.clamp) if self.clamp is not None else mtime
        ti.uname = ti.gname = ""
        return ti

    def _dir(self, dfd: int, prefix: str) -> None:
        for bname in sorted(os.listdir(dfd)):
            name = prefix + os.fsdecode(bname)
            st = os.stat(bname, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                cfd = os.open(
                    bname, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd
                )
                try:
                    ti = self._info(name, st, tarfile.DIRTYPE)
                    self._xattrs(ti, cfd)
                    self.tf.addfile(ti)
                    if _opaque(cfd):
                        self.tf.addfile(_marker(f"{name}/{WH_OPAQUE}"))
                    self._dir(cfd, name + "/")
                finally:
                    os.close(cfd)
            elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # an overlay whiteout
                head, _, base = name.rpartition("/")
                self.tf.addfile(_marker(f"{head}/.wh.{base}" if head else f".wh.{base}"))
            elif stat.S_ISREG(st.st_mode):
                self._file(dfd, bname, name, st)
            elif stat.S_ISLNK(st.st_mode):
                ti = self._info(name, st, tarfile.SYMTYPE)
                ti.linkname = os.fsdecode(os.readlink(bname, dir_fd=dfd))
                self.tf.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind = (
                    tarfile.FIFOTYPE
                    if stat.S_ISFIFO(st.st_mode)
                    else tarfile.CHRTYPE
                    if stat.S_ISCHR(st.st_mode)
                    else tarfile.BLKTYPE
                )
                ti = self._info(name, st, kind)
                if kind != tarfile.FIFOTYPE:
                    ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                self.tf.addfile(ti)
            # sockets are not part of an image

    def _file(self, dfd: int, bname: bytes, name: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            ti = self._info(name, st, tarfile.LNKTYPE)
            ti.linkname = self.links[key]
            self.tf.addfile(ti)
            return
        if st.st_nlink > 1:
            self.links[key] = name
        fd = os.open(bname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            ti = self._info(name, st, tarfile.REGTYPE)
            ti.size = st.st_size
            self._xattrs(ti, fd)
            with os.fdopen(os.dup(fd), "rb", buffering=CHUNK) as f:
                self.tf.addfile(ti, f)
        finally:
            os.close(fd)

    def _xattrs(self, ti: tarfile.TarInfo, fd: int) -> None:
        try:
            names = sorted(os.listxattr(fd))
        except OSError:
            return
        for x in names:
            if x.startswith(OVERLAY_XATTRS):
                continue
            try:
                val = os.getxattr(fd, x)
            except OSError:
                continue
            ti.pax_headers["SCHILY.xattr." + x] = val.decode("utf-8", "surrogateescape")


def _marker(name: str) -> tarfile.TarInfo:
    """A whiteout or opaque marker: an empty file whose metadata means nothing, so it is fixed
    (0600, root, mtime 0) and a layer regenerates to the same bytes wherever it was extracted."""
    ti = tarfile.TarInfo(name)
    ti.mode, ti.mtime, ti.uname, ti.gname = 0o600, 0, "", ""
    return ti


def _opaque(fd: int) -> bool:
    for x in ("user.overlay.opaque", "trusted.overlay.opaque"):
        try:
            if os.getxattr(fd, x) in OPAQUE:
                return True
        except OSError:
            continue
    return False


# --- recompression --------------------------------------------------------------------------------
def recompress(
    src_path: str,
    dst_path: str,
    compression: str,
    *,
    diff_id: str | None = None,
    level: int | None = None,
) -> LayerBlob:
    """Write the blob at `src_path` again with `compression`; the tar's digest must be `diff_id`."""
    from rootless.image.decompress import open_decompressed

    with (
        open(src_path, "rb", buffering=CHUNK) as raw_in,
        open(dst_path, "wb", buffering=CHUNK) as raw_out,
    ):
        src = open_decompressed(raw_in)
        w = BlobWriter(raw_out, compression, level)
        while True:
            b = src.read(CHUNK)
            if not b:
                break
            w.write(b)
        w.close()
    res = w.result()
    if diff_id and res.diff_id != diff_id:
        os.unlink(dst_path)
        raise ValueError(f"the stored layer has digest {res.diff_id}, not {diff_id}")
    return res


# --- the helper process ------------------------------------------------------------------------------
def write_layer_blob_in_userns(
    layer_dir: str, out_path: str, *, compression: str = "gzip", mtime_clamp: int | None = None
) -> LayerBlob:
    """`write_layer_blob` run as container root in the user's user namespace (so files owned by
    subordinate ids are readable and recorded with their container ids)."""
    from rootless import process
    from rootless.errors import ImageError

    argv = [sys.executable, "-m", "rootless.image.blobwriter", layer_dir, out_path, compression]
    if mtime_clamp is not None:
        argv.append(str(mtime_clamp))
    cp = process.run(argv)
    if cp.returncode != 0:
        lines = [x for x in cp.stderr.splitlines() if x.strip()]
        msg = next((x[7:] for x in lines if x.startswith("error: ")), lines[-1] if lines else "")
        raise ImageError(
            msg or f"writing the layer blob of {layer_dir} failed (exit {cp.returncode})"
        )
    return LayerBlob(**json.loads(cp.stdout))


def _child(layer_dir: str, out_path: str, compression: str, clamp: str | None = None) -> int:
    try:
        res = write_layer_blob(
            layer_dir, out_path, compression=compression, mtime_clamp=int(clamp) if clamp else None
        )
    except OSError as e:
        os.write(2, f"error: reading the layer {layer_dir} failed: {e}\n".encode())
        return 2
    os.write(1, json.dumps(asdict(res)).encode())
    return 0


def main(argv: list[str]) -> int:
    from rootless import idmap, userns

    if len(argv) not in (3, 4) or argv[2] not in COMPRESSIONS:
        os.write(2, b"error: usage: python -m rootless.image.blobwriter DIR OUT gzip|zstd|none\n")
        return 64
    try:
        return userns.run_in_userns(_child, *argv, idmap=idmap.for_user())
    except Exception as e:  # noqa: BLE001 - one line for the parent to relay
        os.write(2, f"error: {e}\n".encode())
        return 5


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
