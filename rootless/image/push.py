"""`push`: copy a stored image to a registry, as podman push does.

The store keeps every layer's compressed blob (as pulled or loaded; images built locally store
theirs through rootless.image.blobwriter.write_layer_blob), so a push sends those bytes: pushing
an image unchanged sends the stored manifest itself, and the registry's digest is the one the
image had. A blob is only rewritten when the push asks for it: `--compression-format` different
from a layer's compression, or an uncompressed layer (from a docker-archive), which is gzipped
(containers.conf `[engine] compression_format` chooses the default, as podman). `--format` writes
the manifest as OCI or Docker v2s2 (the config blob is kept, so the image id does not change);
zstd layers need OCI. Rewritten blobs go to a tmp dir of the store, removed afterwards.

Blobs upload concurrently (rootless.image.upload: HEAD first, cross-repository mount from the
image's other repositories on the same registry, monolithic or chunked), then the config, then
the manifest under the tag. Progress is podman's: "Getting image source signatures", a line (or
a bar on a terminal) per blob, "Writing manifest to image destination". Nothing in the store
changes; Ctrl-C leaves only the tmp dir, which is removed on the way out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field

from rootless.errors import ImageError
from rootless.image import blobwriter, reference, registries_conf
from rootless.image import distribution as dist
from rootless.image.progress import Progress
from rootless.image.store import ImageRecord, Store, store_write_error

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
FORMATS = {"oci": dist.OCI_MANIFEST, "v2s2": dist.DOCKER_MANIFEST}
UPLOADS = 4
_TRANSPORT = re.compile(r"^(oci-archive|docker-archive|oci|dir|containers-storage|docker-daemon):")


@dataclass
class PushOptions:
    fmt: str | None = None  # "oci" or "v2s2"; None: the stored manifest's
    compression: str | None = None  # "gzip" or "zstd"; None: keep each layer's
    digestfile: str | None = None
    quiet: bool = False
    tls_verify: bool | None = None


@dataclass
class _Blob:
    src_digest: str
    src_path: str
    diff_id: str = ""
    stored: str = "none"  # compression of the stored blob
    target: str = "none"  # compression to push
    digest: str = ""  # of what is pushed (set once written)
    size: int = 0
    path: str = ""
    mounts: list[str] = field(default_factory=list)


def check_format(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    if fmt == "v2s1":
        raise ImageError("--format v2s1 (Docker schema 1) is not supported: use oci or v2s2")
    if fmt not in FORMATS:
        raise ImageError(f'unknown --format "{fmt}": use oci or v2s2')
    return fmt


def check_compression(value: str | None, what: str = "--compression-format") -> str | None:
    if value is None:
        return None
    if value == "zstd:chunked":
        raise ImageError(f"{what} zstd:chunked is not supported: use zstd or gzip")
    if value not in ("gzip", "zstd"):
        raise ImageError(f'unknown {what} "{value}": use gzip or zstd')
    return value


def push_image(image: str, destination: str | None, opts: PushOptions, access) -> str:
    """Push `image` from the store to `destination` (default: its name); returns the manifest
    digest the registry holds."""
    import trio

    store = Store.open()
    rec = store.require(image)
    dest = destination_ref(image, destination, rec)
    conf = registries_conf.load()
    entry = conf.find(dest)
    if entry is not None and entry.blocked:
        raise ImageError(
            f"registry {entry.prefix} is blocked in registries.conf; pushing is refused"
        )
    insecure = bool(entry and entry.insecure) if opts.tls_verify is None else not opts.tls_verify
    if access.settings is None:
        access.settings = dist.load_settings()
    blobs, fmt, keep = _plan(store, rec, dest, opts)
    progress = Progress(quiet=opts.quiet)
    with store.lock("gc", shared=True):
        base, lfd = store.new_tmp()
        try:
            digest = trio.run(
                _push, store, rec, blobs, fmt, keep, dest, insecure, opts, access, progress, base
            )
        except OSError as e:
            raise store_write_error(store.root, e) or e from None
        finally:
            progress.close()
            store.release_tmp(base, lfd)
    if opts.digestfile:
        try:
            with open(opts.digestfile, "w") as f:
                f.write(digest)
        except OSError as e:
            raise ImageError(
                f"cannot write the digest file {opts.digestfile}: {e.strerror}"
            ) from None
    return digest


def destination_ref(image: str, destination: str | None, rec: ImageRecord) -> reference.Reference:
    """Where to push: DESTINATION (docker:// optional), else the name the image was asked by."""
    if destination is None:
        bare = image.removeprefix("sha256:")
        if reference.is_image_id(image) or (
            reference.looks_like_id_prefix(bare) and rec.id.startswith(bare)
        ):
            raise ImageError(
                f"{image} is an image id: give a DESTINATION such as registry.example.com/NAME:TAG"
            )
        ref = reference.parse(image)
        if ref.digest:
            raise ImageError(f"{image} is named by digest: give a DESTINATION with a tag")
        if ref.is_short:
            full = _stored_name(rec, ref)
            ref = reference.parse(full) if full else ref.with_domain(reference.DOCKER_IO)
    else:
        text = destination.removeprefix("docker://")
        m = _TRANSPORT.match(text)
        if m:
            raise ImageError(
                f"pushing to {m.group(1)}: is not supported: rootless pushes to registries "
                "(docker://); for an archive use `rootless save`"
            )
        ref = reference.parse(text)
        if ref.digest:
            raise ImageError(
                f"{destination}: a push destination cannot contain a digest; give a tag"
            )
        if ref.is_short:
            ref = ref.with_domain(reference.DOCKER_IO)
    return ref.defaulted()


def _stored_name(rec: ImageRecord, ref: reference.Reference) -> str | None:
    tag = ref.tag or "latest"
    for n in rec.names:
        if n.endswith(f"/{ref.path}:{tag}"):
            return n
    return None


def _plan(store: Store, rec: ImageRecord, dest, opts: PushOptions):
    """(layer blobs, manifest format, whether the stored manifest is pushed as it is)."""
    src_mt = rec.manifest_media_type
    src_fmt = next((k for k, v in FORMATS.items() if v == src_mt), None)
    default = _conf_compression()
    fmt = opts.fmt or src_fmt or "oci"
    if opts.fmt is None and opts.compression == "zstd":
        fmt = "oci"  # as podman: zstd layers need an OCI manifest
    if fmt == "v2s2" and opts.compression == "zstd":
        raise ImageError("zstd compression needs the OCI format: use --format oci (or gzip)")
    blobs = []
    for i, layer in enumerate(rec.layers):
        path = store.blob_path(layer["digest"])
        if not os.path.exists(path):
            raise ImageError(
                f"the blob of layer {i + 1} ({layer['digest']}) is missing from the store; "
                "pull or build the image again"
            )
        b = _Blob(layer["digest"], path, diff_id=layer["diff_id"], stored=blobwriter.sniff(path))
        want = opts.compression or (b.stored if b.stored != "none" else default or "gzip")
        if fmt == "v2s2" and want == "zstd":
            want = "gzip"
        b.target = want
        if want == b.stored:
            b.digest, b.size, b.path = b.src_digest, os.path.getsize(path), path
            b.mounts = _mount_sources(rec, dest)
        blobs.append(b)
    keep = fmt == src_fmt and all(b.target == b.stored for b in blobs)
    return blobs, fmt, keep


def _conf_compression() -> str | None:
    from rootless.image.limits import containers_conf_engine

    v = containers_conf_engine().get("compression_format")
    if not isinstance(v, str) or not v:
        return None
    if v == "zstd:chunked":  # podman's newer default; rootless writes plain zstd
        return "zstd"
    return check_compression(v, "containers.conf [engine] compression_format")


def _mount_sources(rec: ImageRecord, dest) -> list[str]:
    """Other repositories of the destination registry that hold this image's blobs."""
    out = []
    for n in [d.split("@", 1)[0] for d in rec.repo_digests] + [n for n in rec.names]:
        try:
            r = reference.parse(n)
        except ImageError:
            continue
        if r.domain == dest.domain and r.path != dest.path and r.path not in out:
            out.append(r.path)
    return out


async def _push(store, rec, blobs, fmt, keep, dest, insecure, opts, access, progress, tmp) -> str:
    import trio

    from rootless.image.upload import Uploader

    out = _Output(progress)
    async with access.client(dest.domain, insecure=insecure, tls_verify=opts.tls_verify) as client:
        up = Uploader(client, dest.path)
        await client.ping()
        out.line("Getting image source signatures")
        limit = trio.CapacityLimiter(UPLOADS)
        try:
            async with trio.open_nursery() as nursery:
                for i, b in enumerate(blobs):
                    nursery.start_soon(_layer, up, b, i, limit, tmp, out)
        except BaseExceptionGroup as eg:
            from rootless.image.pull import first_error

            raise first_error(eg) from None
        cpath = store.blob_path(rec.config_digest)
        csize = os.path.getsize(cpath)
        out.start("config", rec.config_digest, csize, config=True)
        state = await up.put_blob(
            rec.config_digest, csize, cpath, mount_from=_mount_sources(rec, dest)
        )
        out.done("config", state)
        if keep:
            body, mt = store.read_blob(rec.digest), rec.manifest_media_type
        else:
            body, mt = _manifest(store, rec, blobs, fmt, csize)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        out.line("Writing manifest to image destination")
        await up.put_manifest(dest.tag, body, mt, digest)
        return digest


async def _layer(up, b: _Blob, i: int, limit, tmp: str, out: _Output) -> None:
    import trio

    key = f"blob{i}"
    async with limit:
        out.start(key, b.src_digest, b.size or None)
        if not b.digest:  # rewrite it with the compression asked for
            b.path = os.path.join(tmp, f"layer-{i}")
            try:
                res = await trio.to_thread.run_sync(
                    lambda: blobwriter.recompress(b.src_path, b.path, b.target, diff_id=b.diff_id)
                )
            except ValueError as e:
                raise ImageError(
                    f"layer {i + 1} of the image is damaged in the store: {e}"
                ) from None
            b.digest, b.size = res.digest, res.size
            out.total(key, b.size)
        state = await up.put_blob(
            b.digest, b.size, b.path, mount_from=b.mounts, progress=lambda n: out.update(key, n)
        )
        out.done(key, state)


def _manifest(store, rec: ImageRecord, blobs: list[_Blob], fmt: str, csize: int):
    """A new manifest in `fmt` for the (maybe rewritten) blobs; the config blob is unchanged."""
    layers = [
        (blobwriter.layer_media_type(b.target, "oci" if fmt == "oci" else "v2s2"), b.digest, b.size)
        for b in blobs
    ]
    if fmt == "oci":
        m = {
            "schemaVersion": 2,
            "mediaType": dist.OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": rec.config_digest, "size": csize},
            "layers": [{"mediaType": t, "digest": d, "size": s} for t, d, s in layers],
        }
        try:
            ann = rec.manifest.get("annotations")
        except (OSError, ValueError):
            ann = None
        if isinstance(ann, dict) and ann and rec.manifest_media_type == dist.OCI_MANIFEST:
            m["annotations"] = ann
    else:
        m = {
            "schemaVersion": 2,
            "mediaType": dist.DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": csize, "digest": rec.config_digest},
            "layers": [{"mediaType": t, "size": s, "digest": d} for t, d, s in layers],
        }
    return json.dumps(m, separators=(",", ":")).encode(), m["mediaType"]


class _Output:
    """podman's push progress: plain lines when not on a terminal, bars on one."""

    def __init__(self, progress: Progress):
        self.p = progress

    def line(self, text: str) -> None:
        self.p.line(text)

    def start(self, key: str, digest: str, size: int | None, *, config: bool = False) -> None:
        what = "config" if config else "blob"
        if self.p.tty:
            short = digest.split(":", 1)[1][: 10 if config else 12]
            self.p.add(key, f"Copying {what} {short}", size)
        else:
            self.p.line(f"Copying {what} {digest}")

    def update(self, key: str, n: int) -> None:
        if self.p.tty:
            self.p.update(key, n)

    def total(self, key: str, size: int) -> None:
        if self.p.tty:
            self.p.set_total(key, size)

    def done(self, key: str, state: str) -> None:
        if self.p.tty:
            self.p.finish(key, "done" if state == "uploaded" else "skipped: already exists")
