"""`load` and `save`: docker-archive (docker save) and oci-archive (a tarred OCI layout) tarballs.

save streams (stdout works): docker-archive holds manifest.json, <config>.json and one
uncompressed <diff_id>.tar per layer; oci-archive holds oci-layout, index.json and blobs/sha256
with the stored manifest, config and compressed layers (same digests as pulled).
load spools a stream to the store's tmp first (docker archives need random access), copies each
blob into the store verifying its digest, extracts layers like a pull and records the image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import lzma
import os
import shutil
import tarfile
import time
import zlib

from rootless.errors import ImageError
from rootless.image import distribution as dist
from rootless.image import manifest as mf
from rootless.image import reference
from rootless.image.store import ImageRecord, Store, store_write_error

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
CHUNK = 1 << 20
MAX_MEMBERS = 20000  # a docker-archive has about 4 entries per layer


# --- save ------------------------------------------------------------------------------------------
def _tar_add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 0
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))


def _tar_add_file(tf: tarfile.TarFile, name: str, path: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = os.path.getsize(path)
    ti.mode = 0o644
    with open(path, "rb") as f:
        tf.addfile(ti, f)


def _uncompressed_size(path: str) -> int:
    from rootless.image.decompress import open_decompressed

    n = 0
    with open(path, "rb", buffering=CHUNK) as raw:
        s = open_decompressed(raw)
        while True:
            b = s.read(CHUNK)
            if not b:
                return n
            n += len(b)


class _DecompressedFile:
    def __init__(self, path: str):
        from rootless.image.decompress import open_decompressed

        self.raw = open(path, "rb", buffering=CHUNK)  # noqa: SIM115
        self.s = open_decompressed(self.raw)

    def read(self, n: int = -1) -> bytes:
        return self.s.read(n if n and n > 0 else CHUNK)

    def close(self) -> None:
        self.raw.close()


def save(names: list[str], out, *, fmt: str = "docker-archive", multi: bool = False) -> None:
    """Write images to a docker-archive or oci-archive (a path, or a binary stream).

    As podman: with `multi` (-m) every name is an image (docker-archive only); without it the
    first name is the image and the others are extra tags for it. Each image records the names
    it was asked by (its full stored name for a short one; none when asked by id)."""
    store = Store.open()
    if not names:
        raise ImageError("save needs at least one image")
    if multi and fmt != "docker-archive":
        raise ImageError(
            f'unsupported format "{fmt}" for saving multiple images (only docker-archive)'
        )
    recs: list[tuple[ImageRecord, list[str]]] = []
    asked = names if multi else names[:1]
    for n in asked:
        rec = store.require(n)
        tags = [t for t in [asked_name(rec, n)] if t]
        for r, have in recs:
            if r.id == rec.id:
                have += [t for t in tags if t not in have]
                break
        else:
            recs.append((rec, tags))
    if not multi:
        for extra in names[1:]:
            t = _tag_name(extra)
            if t not in recs[0][1]:
                recs[0][1].append(t)
    _write_archive(store, recs, out, fmt)


def _write_archive(store: Store, recs, out, fmt: str) -> None:
    tmp_out = None
    if isinstance(out, str):
        tmp_out = f"{out}.tmp{os.getpid()}"
        try:
            fobj = open(tmp_out, "wb")  # noqa: SIM115
        except OSError as e:
            raise ImageError(f"cannot write {out}: {e.strerror}") from None
    else:
        fobj = out
    try:
        with tarfile.open(fileobj=fobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            if fmt == "oci-archive":
                _save_oci(store, recs, tf)
            else:
                _save_docker(store, recs, tf)
        fobj.flush()
        if tmp_out:
            fobj.close()
            os.rename(tmp_out, out)
            tmp_out = None
    except BrokenPipeError:
        raise ImageError("the archive's reader went away (broken pipe)") from None
    except FileNotFoundError as e:
        raise ImageError(
            f"a blob of the image is missing from the store ({e.filename}); pull it again"
        ) from None
    except OSError as e:
        where = out if isinstance(out, str) else "the output"
        raise ImageError(f"writing the archive to {where} failed: {e.strerror or e}") from None
    finally:
        if tmp_out:
            fobj.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_out)


def asked_name(rec: ImageRecord, asked: str) -> str | None:
    """The stored name that `asked` (a full or short name) means, or None (an id, a digest)."""
    bare = asked.removeprefix("sha256:")
    if reference.is_image_id(asked) or (
        reference.looks_like_id_prefix(bare) and rec.id.startswith(bare)
    ):
        return None
    try:
        ref = reference.parse(asked)
    except ImageError:
        return None
    if ref.digest:
        return None
    tag = ref.tag or "latest"
    if not ref.is_short:
        return f"{ref.name}:{tag}"
    for n in rec.names:
        if n.endswith(f"/{ref.path}:{tag}"):
            return n
    return None


def _tag_name(name: str) -> str:
    """An extra tag for `save` (short names go to localhost/, as `tag` and podman do)."""
    ref = reference.parse(name)
    if ref.digest:
        raise ImageError(f"{name}: a tag cannot contain a digest")
    if ref.is_short:
        ref = reference.Reference("localhost", ref.path, ref.tag)
    return str(ref.defaulted())


def _save_docker(store: Store, recs, tf: tarfile.TarFile) -> None:
    manifest = []
    done_layers = set()
    for rec, tags in recs:
        cname = rec.id + ".json"
        _tar_add_bytes(tf, cname, store.read_blob(rec.config_digest))
        lnames = []
        for layer in rec.layers:
            hexid = layer["diff_id"].split(":", 1)[1]
            name = hexid + ".tar"
            lnames.append(name)
            if name in done_layers:
                continue
            done_layers.add(name)
            path = store.blob_path(layer["digest"])
            size = layer.get("diff_size") or _uncompressed_size(path)
            ti = tarfile.TarInfo(name)
            ti.size = int(size)
            ti.mode = 0o644
            src = _DecompressedFile(path)
            try:
                tf.addfile(ti, src)
            finally:
                src.close()
        manifest.append({"Config": cname, "RepoTags": list(tags), "Layers": lnames})
    _tar_add_bytes(tf, "manifest.json", json.dumps(manifest).encode())


def _save_oci(store: Store, recs, tf: tarfile.TarFile) -> None:
    _tar_add_bytes(tf, "oci-layout", json.dumps(OCI_LAYOUT).encode())
    index = {"schemaVersion": 2, "mediaType": dist.OCI_INDEX, "manifests": []}
    added = set()
    for rec, tags in recs:
        blobs = [rec.digest, rec.config_digest] + [layer["digest"] for layer in rec.layers]
        for d in blobs:
            if d in added:
                continue
            added.add(d)
            _tar_add_file(tf, "blobs/sha256/" + d.split(":", 1)[1], store.blob_path(d))
        desc = {
            "mediaType": rec.manifest_media_type or dist.OCI_MANIFEST,
            "digest": rec.digest,
            "size": os.path.getsize(store.blob_path(rec.digest)),
        }
        if tags:  # podman writes the whole name as ref.name; containerd reads image.name
            desc["annotations"] = {
                "org.opencontainers.image.ref.name": tags[0],
                "io.containerd.image.name": tags[0],
            }
        index["manifests"].append(desc)
    _tar_add_bytes(tf, "index.json", json.dumps(index).encode())


# --- load ------------------------------------------------------------------------------------------
def load(src, *, quiet: bool = False) -> list[str]:
    store = Store.open()
    try:
        with store.lock("gc", shared=True):
            return _load(store, src, quiet)
    except OSError as e:
        err = store_write_error(store.root, e)
        if err is not None:
            raise err from None
        if e.errno is None or isinstance(e, EOFError):  # a decompressor's complaint
            raise ImageError(f"the archive is corrupt or truncated: {e}") from None
        raise


def _load(store: Store, src, quiet: bool) -> list[str]:
    base, lfd = store.new_tmp()
    try:
        if isinstance(src, str):
            path = src
            if not os.path.isfile(path):
                raise ImageError(f"{path}: no such archive")
        else:
            path = os.path.join(base, "archive.tar")
            with open(path, "wb") as f:
                shutil.copyfileobj(src, f, CHUNK)
        try:
            tf = tarfile.open(path, "r:*")  # noqa: SIM115
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError):
            raise ImageError(
                "the archive is not a tar file (plain, or compressed with gzip, bzip2 or xz)"
            ) from None
        with tf:
            try:
                members = _members(tf)
                if "manifest.json" in members:
                    return _load_docker(store, tf, members, base, quiet)
                if "index.json" in members:
                    return _load_oci(store, tf, members, base, quiet)
            except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
                raise ImageError(f"the archive is corrupt or truncated: {e}") from None
            raise ImageError(
                "the archive is neither a docker-archive (manifest.json) nor an oci-archive (index.json)"
            )
    finally:
        store.release_tmp(base, lfd)


def _members(tf: tarfile.TarFile) -> dict:
    out = {}
    for m in tf:
        if len(out) >= MAX_MEMBERS:
            raise ImageError(
                f"the archive has more than {MAX_MEMBERS} entries: it is not an image archive"
            )
        out[m.name.removeprefix("./")] = m
    return out


def _member_bytes(tf, members, name: str, limit: int = mf.MAX_MANIFEST_BYTES) -> bytes:
    m = members.get(name.removeprefix("./"))
    if m is None or not m.isfile():
        raise ImageError(f"the archive lacks {name}")
    if m.size > limit:
        raise ImageError(f"{name} in the archive is larger than {mf.mib(limit)}")
    return tf.extractfile(m).read()


def _copy_blob(
    store: Store, tf, members, name: str, base: str, want: str | None
) -> tuple[str, int]:
    """Copy a member into the store as a blob; returns (digest, size). Verifies `want` if given."""
    m = members.get(name.removeprefix("./"))
    if m is None or not m.isfile():
        raise ImageError(f"the archive lacks {name}")
    if want and store.has_blob(want):
        return want, os.path.getsize(store.blob_path(want))
    tmp = os.path.join(base, "blob")
    h = hashlib.sha256()
    n = 0
    src = tf.extractfile(m)
    with open(tmp, "wb") as f:
        while True:
            b = src.read(CHUNK)
            if not b:
                break
            h.update(b)
            n += len(b)
            f.write(b)
    digest = "sha256:" + h.hexdigest()
    if want and digest != want:
        os.unlink(tmp)
        raise ImageError(
            f"{name} in the archive has digest {digest}, not {want}: the archive is corrupt"
        )
    if store.has_blob(digest):
        os.unlink(tmp)
    else:
        store.commit_blob_file(tmp, digest)
    return digest, n


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _extract_all(store: Store, layers: list[dict]) -> list:
    import trio

    from rootless.image.pull import extract_layer, first_error

    sizes = [None] * len(layers)

    async def main():
        lim = trio.CapacityLimiter(max(1, os.cpu_count() or 1))

        async def one(i, layer):
            async with lim:
                sizes[i] = await extract_layer(store, layer["digest"], layer["diff_id"])

        try:
            async with trio.open_nursery() as n:
                for i, layer in enumerate(layers):
                    n.start_soon(one, i, layer)
        except BaseExceptionGroup as eg:
            raise first_error(eg) from None

    from rootless.image.pull import start_extract_server
    from rootless.image.pull import with_server as _with_server

    server = start_extract_server()
    try:
        trio.run(_with_server, server, main)
    finally:
        if server is not None:
            server.close()
    return sizes


def _record(store, manifest_bytes, mt, config_bytes, layers, names) -> ImageRecord:
    mdigest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    cdigest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    store.put_blob_bytes(cdigest, config_bytes)
    store.put_blob_bytes(mdigest, manifest_bytes)
    sizes = _extract_all(store, layers)
    for layer, s in zip(layers, sizes, strict=True):
        layer["diff_size"] = s
    config = json.loads(config_bytes)
    rec = ImageRecord(
        id=cdigest.split(":", 1)[1],
        names=names,
        digest=mdigest,
        repo_digests=[],
        layers=layers,
        manifest_media_type=mt,
        created=str(config.get("created", "")),
        pulled=time.time(),
        store_root=store.root,
    )
    return store.save_image(rec)


def _norm_name(n) -> str | None:
    if not isinstance(n, str):
        return None
    try:
        r = reference.parse(n)
    except ImageError:
        return None
    if r.is_short:
        r = r.with_domain(reference.DOCKER_IO)
    return str(r.defaulted()) if not r.digest else None


def _load_docker(store, tf, members, base, quiet) -> list[str]:
    loaded = []
    for entry in mf.docker_archive_entries(_member_bytes(tf, members, "manifest.json")):
        config_bytes = _member_bytes(tf, members, entry["Config"], mf.MAX_CONFIG_BYTES)
        what = f"the image config {entry['Config'][:80]} in the archive"
        config = mf.parse_json(config_bytes, what)
        diff_ids = mf.diff_ids(config, len(entry["Layers"]), what)
        layers = []
        for name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
            digest, size = _copy_blob(store, tf, members, name, base, None)
            gz = _is_gzip(store.blob_path(digest))
            layers.append(
                {
                    "digest": digest,
                    "diff_id": diff_id,
                    "size": size,
                    "media_type": DOCKER_LAYER_GZ if gz else DOCKER_LAYER,
                }
            )
        m = {
            "schemaVersion": 2,
            "mediaType": dist.DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": len(config_bytes),
                "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
            },
            "layers": [
                {"mediaType": x["media_type"], "size": x["size"], "digest": x["digest"]}
                for x in layers
            ],
        }
        names = _uniq_names(_norm_name(t) for t in entry.get("RepoTags") or [])
        rec = _record(
            store,
            json.dumps(m, indent=3).encode(),
            dist.DOCKER_MANIFEST,
            config_bytes,
            layers,
            names,
        )
        loaded += names or ["sha256:" + rec.id]
    return loaded


def _uniq_names(names) -> list[str]:
    out = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return out


def _load_oci(store, tf, members, base, quiet) -> list[str]:
    from rootless.image.pull import choose_platform, host_platform

    index = mf.parse_json(_member_bytes(tf, members, "index.json"), "index.json in the archive")
    entries = mf.index_manifests(index, "index.json in the archive")
    loaded = []

    def blob(d: str, limit: int = mf.MAX_MANIFEST_BYTES) -> bytes:
        b = _member_bytes(tf, members, "blobs/" + d.replace(":", "/"), limit)
        if "sha256:" + hashlib.sha256(b).hexdigest() != d:
            raise ImageError(f"blob {d} in the archive is corrupt")
        return b

    for desc in entries:
        ann = desc.get("annotations") or {}
        body = blob(desc["digest"])
        what = f"manifest {desc['digest']} in the archive"
        doc = mf.parse_json(body, what)
        mt = desc.get("mediaType") or mf.media_type(doc, what) or dist.OCI_MANIFEST
        if mt in dist.INDEX_TYPES or "manifests" in doc:
            chosen = choose_platform(
                {"manifests": mf.index_manifests(doc, what)}, host_platform(), "the archive"
            )
            body = blob(chosen["digest"])
            what = f"manifest {chosen['digest']} in the archive"
            doc = mf.parse_json(body, what)
            mt = chosen.get("mediaType") or mf.media_type(doc, what) or dist.OCI_MANIFEST
        cdesc, ldescs = mf.image_manifest(doc, what)
        config_bytes = blob(cdesc["digest"], mf.MAX_CONFIG_BYTES)
        cwhat = f"the image config {cdesc['digest']} in the archive"
        diff_ids = mf.diff_ids(mf.parse_json(config_bytes, cwhat), len(ldescs), cwhat)
        layers = []
        for ld, diff_id in zip(ldescs, diff_ids, strict=True):
            digest, size = _copy_blob(
                store, tf, members, "blobs/" + ld["digest"].replace(":", "/"), base, ld["digest"]
            )
            layers.append(
                {
                    "digest": digest,
                    "diff_id": diff_id,
                    "size": size,
                    "media_type": ld.get("mediaType") or "",
                }
            )
        full = ann.get("io.containerd.image.name")
        refname = ann.get("org.opencontainers.image.ref.name")
        names = []
        if _norm_name(full):
            names.append(_norm_name(full))
        elif isinstance(refname, str) and "/" in refname and _norm_name(refname):
            names.append(_norm_name(refname))
        rec = _record(store, body, mt, config_bytes, layers, names)
        loaded += names or ["sha256:" + rec.id]
    return loaded
