"""New images in the store: a layer made from a directory, and an image from layers and a config.

`add_layer_dir(store, make)` gives `make` a fresh store tmp dir to fill (as root in the user
namespace: `make(tmp)` must leave the layer tree at tmp/diff and may return nothing), writes the
layer's blob from it (rootless.image.blobwriter, uncompressed as podman keeps built layers locally;
push compresses), and moves both into the store (blobs/sha256/<digest>, layers/<diff_id>/diff),
atomically, once per diff_id. `commit_image` writes the config and manifest blobs and the image
record (rootless.image.store.ImageRecord) for a list of layers. A killed build leaves only tmp
entries that the next pull or build removes.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import os
import platform as _platform
import time
from dataclasses import asdict

from rootless.build import ns
from rootless.image import blobwriter
from rootless.image.store import ImageRecord, Store

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def host_platform() -> tuple[str, str]:
    m = _platform.machine()
    return "linux", _ARCH.get(m, m)


def now_iso() -> str:
    t = time.time_ns()
    s = _dt.datetime.fromtimestamp(t // 10**9, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{s}.{t % 10**9:09d}Z"


def image_name(name: str) -> str:
    """A name as `tag` and `build -t` store it: short names go to localhost/, :latest by default."""
    from rootless.errors import ImageError
    from rootless.image import reference

    r = reference.parse(name)
    if r.digest:
        raise ImageError(f"{name}: an image name cannot contain a digest")
    if r.is_short:
        r = reference.Reference("localhost", r.path, r.tag)
    return str(r.defaulted())


def repo_digest(name: str, digest: str) -> str:
    """podman's RepoDigests entry for a name: localhost/app@sha256:..."""
    slash, colon = name.rfind("/"), name.rfind(":")
    return f"{name[:colon] if colon > slash else name}@{digest}"


def tag_image(store: Store, rec: ImageRecord, name: str) -> None:
    """Add a name to a stored image, with its RepoDigests entry as podman lists it."""
    store.add_name(rec.id, name)
    fresh = store.get(rec.id)
    entry = repo_digest(name, rec.digest)
    if fresh is not None and entry not in fresh.repo_digests:
        fresh.repo_digests.append(entry)
        store.save_image(fresh)


def base_config(parent: ImageRecord | None) -> dict:
    """A deep copy of the parent's config document, or an empty one for scratch."""
    if parent is None:
        os_, arch = host_platform()
        return {
            "architecture": arch,
            "os": os_,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }
    cfg = copy.deepcopy(parent.config)
    cfg.setdefault("config", {})
    cfg.setdefault("history", [])
    return cfg


def _make_and_write(make, tmp: str) -> dict:
    """In the user namespace: build the layer tree at tmp/diff, then its blob at tmp/blob."""
    make(tmp)
    blob = blobwriter.write_layer_blob(
        os.path.join(tmp, "diff"), os.path.join(tmp, "blob"), compression="none"
    )
    return asdict(blob)


def add_layer_dir(store: Store, make, *args) -> dict:
    """Make a layer with `make(tmp, *args)` in the user namespace and store it; its layer entry."""
    base, lfd = store.new_tmp()
    moved = False
    try:
        info = ns.call(lambda: _make_and_write(lambda t: make(t, *args), base))
        diff_id = info["diff_id"]
        hexid = diff_id.split(":", 1)[1]
        with store.lock(f"layer-{hexid}"):
            blob = os.path.join(base, "blob")
            if not store.has_blob(info["digest"]):
                os.rename(blob, store.blob_path(info["digest"]))
            else:
                os.unlink(blob)
            if not store.has_layer(diff_id):
                with open(os.path.join(base, "size"), "w") as f:
                    f.write(str(info["diff_size"]))
                os.rename(base, store.layer_path(diff_id))
                moved = True
        return {
            "digest": info["digest"],
            "diff_id": diff_id,
            "size": info["size"],
            "diff_size": info["diff_size"],
            "media_type": info["media_type"],
        }
    finally:
        if moved:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(base + ".lock")
            os.close(lfd)
        else:
            store.release_tmp(base, lfd)


def _manifest(config_bytes: bytes, layers: list[dict], fmt: str, annotations: dict | None):
    docker = fmt == "docker"
    m = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
            "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": _layer_type(x["media_type"], docker),
                "digest": x["digest"],
                "size": int(x["size"]),
            }
            for x in layers
        ],  # fmt: skip
    }
    if annotations and not docker:
        m["annotations"] = annotations
    return json.dumps(m, indent=3).encode()


def _layer_type(mt: str, docker: bool) -> str:
    table = {
        "application/vnd.oci.image.layer.v1.tar": "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip": (
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ),
    }
    if docker:
        return table.get(mt, mt)
    back = {v: k for k, v in table.items()}
    return back.get(mt, mt)


def commit_image(
    store: Store,
    config: dict,
    layers: list[dict],
    *,
    names: list[str] | None = None,
    fmt: str = "oci",
    annotations: dict | None = None,
) -> ImageRecord:
    """Write config and manifest blobs and the image record. `config` is the whole config
    document; its rootfs.diff_ids are set from `layers` here."""
    config = dict(config)
    config["rootfs"] = {"type": "layers", "diff_ids": [x["diff_id"] for x in layers]}
    config.setdefault("created", now_iso())
    if fmt == "oci":  # OCI image configs have no place for these (podman drops them too)
        inner = dict(config.get("config") or {})
        for k in ("Healthcheck", "OnBuild", "Shell"):
            inner.pop(k, None)
        config["config"] = inner
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    cdigest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    manifest = _manifest(config_bytes, layers, fmt, annotations)
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    store.put_blob_bytes(cdigest, config_bytes)
    store.put_blob_bytes(mdigest, manifest)
    rec = ImageRecord(
        id=cdigest.split(":", 1)[1],
        names=list(names or []),
        digest=mdigest,
        repo_digests=[repo_digest(n, mdigest) for n in names or []],
        layers=[dict(x) for x in layers],
        manifest_media_type=DOCKER_MANIFEST if fmt == "docker" else OCI_MANIFEST,
        created=config["created"],
        pulled=time.time(),
        store_root=store.root,
    )
    return store.save_image(rec)
