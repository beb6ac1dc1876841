"""`load` and `save`: docker-archive (docker save) and oci-archive (a tarred OCI layout) tarballs.

save streams (stdout works): docker-archive holds manifest.json, <config>.json and one
uncompressed <diff_id>.tar per layer; oci-archive holds oci-layout, index.json and blobs/sha256
with the stored manifest, config and compressed layers (same digests as pulled).
load spools a stream to the store's tmp first (docker archives need random access), copies each
blob into the store verifying its digest, extracts layers like a pull and records the image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import time

from rootless.errors import ImageError
from rootless.image import distribution as dist
from rootless.image import reference
from rootless.image.store import ImageRecord, Store

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
CHUNK = 1 << 20


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


def save(names: list[str], out, *, fmt: str = "docker-archive") -> None:
    store = Store.open()
    recs = []
    for n in names:
        rec = store.require(n)
        if rec.id not in [r.id for r, _ in recs]:
            recs.append((rec, n))
    tmp_out = None
    if isinstance(out, str):
        tmp_out = f"{out}.tmp{os.getpid()}"
        fobj = open(tmp_out, "wb")  # noqa: SIM115
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
    finally:
        if tmp_out:
            fobj.close()
            os.unlink(tmp_out)


def _save_docker(store: Store, recs, tf: tarfile.TarFile) -> None:
    manifest = []
    done_layers = set()
    for rec, _asked in recs:
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
        tags = [n for n in rec.names]
        manifest.append({"Config": cname, "RepoTags": tags, "Layers": lnames})
    _tar_add_bytes(tf, "manifest.json", json.dumps(manifest).encode())


def _save_oci(store: Store, recs, tf: tarfile.TarFile) -> None:
    _tar_add_bytes(tf, "oci-layout", json.dumps(OCI_LAYOUT).encode())
    index = {"schemaVersion": 2, "mediaType": dist.OCI_INDEX, "manifests": []}
    added = set()
    for rec, _asked in recs:
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
        name = rec.names[0] if rec.names else None
        if name:
            desc["annotations"] = {
                "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]
                if ":" in name.rsplit("/", 1)[-1]
                else "latest",
                "io.containerd.image.name": name,
            }
        index["manifests"].append(desc)
    _tar_add_bytes(tf, "index.json", json.dumps(index).encode())


# --- load ------------------------------------------------------------------------------------------
def load(src, *, quiet: bool = False) -> list[str]:
    store = Store.open()
    with store.lock("gc", shared=True):
        return _load(store, src, quiet)


def _load(store: Store, src, quiet: bool) -> list[str]:
    base, lfd = store.new_tmp()
    try:
        if isinstance(src, str):
            path = src
            if not os.path.exists(path):
                raise ImageError(f"{path}: no such archive")
        else:
            path = os.path.join(base, "archive.tar")
            with open(path, "wb") as f:
                shutil.copyfileobj(src, f, CHUNK)
        try:
            tf = tarfile.open(path, "r:*")  # noqa: SIM115
        except tarfile.TarError as e:
            raise ImageError(f"the archive is not a tar file: {e}") from None
        with tf:
            members = {m.name.removeprefix("./"): m for m in tf.getmembers()}
            if "manifest.json" in members:
                return _load_docker(store, tf, members, base, quiet)
            if "index.json" in members:
                return _load_oci(store, tf, members, base, quiet)
            raise ImageError(
                "the archive is neither a docker-archive (manifest.json) nor an oci-archive (index.json)"
            )
    finally:
        store.release_tmp(base, lfd)


def _member_bytes(tf, members, name: str, limit: int = 64 << 20) -> bytes:
    m = members.get(name.removeprefix("./"))
    if m is None or not m.isfile():
        raise ImageError(f"the archive lacks {name}")
    if m.size > limit:
        raise ImageError(f"{name} in the archive is too large")
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

    from rootless.image.pull import extract_layer
    from rootless.image.pull import first_error as _first

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
            raise _first(eg) from None

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


def _norm_name(n: str) -> str | None:
    try:
        r = reference.parse(n)
    except ImageError:
        return None
    if r.is_short:
        r = r.with_domain(reference.DOCKER_IO)
    return str(r.defaulted()) if not r.digest else None


def _load_docker(store, tf, members, base, quiet) -> list[str]:
    try:
        manifest = json.loads(_member_bytes(tf, members, "manifest.json"))
    except ValueError:
        raise ImageError("manifest.json in the archive is not JSON") from None
    loaded = []
    for entry in manifest:
        config_bytes = _member_bytes(tf, members, entry["Config"])
        config = json.loads(config_bytes)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(entry.get("Layers") or []):
            raise ImageError("the archive's manifest.json and image config disagree on the layers")
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
        names = [x for x in (_norm_name(t) for t in entry.get("RepoTags") or []) if x]
        rec = _record(
            store,
            json.dumps(m, indent=3).encode(),
            dist.DOCKER_MANIFEST,
            config_bytes,
            layers,
            names,
        )
        loaded += rec.names or ["sha256:" + rec.id]
    return loaded


def _load_oci(store, tf, members, base, quiet) -> list[str]:
    from rootless.image.pull import choose_platform, host_platform

    try:
        index = json.loads(_member_bytes(tf, members, "index.json"))
    except ValueError:
        raise ImageError("index.json in the archive is not JSON") from None
    loaded = []

    def blob(d: str) -> bytes:
        b = _member_bytes(tf, members, "blobs/" + d.replace(":", "/"))
        if "sha256:" + hashlib.sha256(b).hexdigest() != d:
            raise ImageError(f"blob {d} in the archive is corrupt")
        return b

    for desc in index.get("manifests") or []:
        ann = desc.get("annotations") or {}
        body = blob(desc["digest"])
        doc = json.loads(body)
        mt = desc.get("mediaType") or doc.get("mediaType") or dist.OCI_MANIFEST
        if mt in dist.INDEX_TYPES or "manifests" in doc:
            chosen = choose_platform(doc, host_platform(), "the archive")
            body = blob(chosen["digest"])
            doc = json.loads(body)
            mt = chosen.get("mediaType") or doc.get("mediaType") or dist.OCI_MANIFEST
        config_bytes = blob(doc["config"]["digest"])
        config = json.loads(config_bytes)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(doc["layers"]):
            raise ImageError("the archive's manifest and image config disagree on the layers")
        layers = []
        for ld, diff_id in zip(doc["layers"], diff_ids, strict=True):
            digest, size = _copy_blob(
                store, tf, members, "blobs/" + ld["digest"].replace(":", "/"), base, ld["digest"]
            )
            layers.append(
                {
                    "digest": digest,
                    "diff_id": diff_id,
                    "size": size,
                    "media_type": ld.get("mediaType", ""),
                }
            )
        names = []
        full = ann.get("io.containerd.image.name")
        refname = ann.get("org.opencontainers.image.ref.name")
        if full and _norm_name(full):
            names.append(_norm_name(full))
        elif refname:
            n = _norm_name(refname) if "/" in refname else None
            if n:
                names.append(n)
        rec = _record(store, body, mt, config_bytes, layers, names)
        loaded += rec.names or ["sha256:" + rec.id]
    return loaded
