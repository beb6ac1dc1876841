"""Checking what a registry or an archive hands us before any of it is used.

Digests, descriptors, image manifests, indexes and image configs come from the network or from a
tarball: any field may have any JSON type, and a digest ends up in a file name (blobs/sha256/HEX,
layers/HEX). Every function here returns the value it checked or raises ImageError with one line
that names the document and the field. The caps:

- MAX_MANIFEST_BYTES, MAX_CONFIG_BYTES: 4 MiB each, as containers/image (maxManifestBodySize,
  maxConfigBodySize); an honest manifest is a few kB, a config rarely 100 kB.
- MAX_LAYERS: 500, the kernel's overlayfs stacking limit (OVL_MAX_STACK): an image with more
  layers could not be mounted by the overlay driver anyway (Docker refuses builds past 125), and a
  manifest listing thousands is an attempt to exhaust the store or the process table.
"""

from __future__ import annotations

import json
import re

from rootless.errors import ImageError

MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 4 << 20
MAX_SMALL_BODY = 1 << 20  # token answers, archive manifest.json / index.json per entry
MAX_LAYERS = 500

_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")


def mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def check_digest(value, what: str) -> str:
    """A sha256 digest ("sha256:" and 64 lowercase hex digits), else ImageError."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        shown = _clip(repr(value)) if isinstance(value, str) else _json_kind(value)
        raise ImageError(f"{what} has an invalid digest {shown} (want sha256:<64 hex digits>)")
    return value


def parse_json(body: bytes, what: str) -> dict:
    """A JSON object, else ImageError."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ImageError(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object (it is {_json_kind(doc)})")
    return doc


def descriptor(value, what: str, *, need_size: bool = True, max_size: int | None = None) -> dict:
    """A content descriptor: {"digest", "size", "mediaType"?}, checked; returns it."""
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not a descriptor object (it is {_json_kind(value)})")
    check_digest(value.get("digest"), what)
    size = value.get("size")
    if size is not None or need_size:
        if not _is_int(size) or size < 0:
            raise ImageError(f"{what} has an invalid size {_clip(_json_kind(size, size))}")
        if max_size is not None and size > max_size:
            raise ImageError(f"{what} is {size} bytes, more than the {mib(max_size)} allowed")
    mt = value.get("mediaType")
    if mt is not None and not isinstance(mt, str):
        raise ImageError(f"{what} has a mediaType that is not text")
    urls = value.get("urls")
    if urls is not None and not isinstance(urls, list):
        raise ImageError(f"{what} has urls that are not a list")
    return value


def media_type(doc: dict, what: str) -> str | None:
    mt = doc.get("mediaType")
    if mt is not None and not isinstance(mt, str):
        raise ImageError(f"{what} has a mediaType that is not text")
    return mt


def image_manifest(doc: dict, what: str) -> tuple[dict, list[dict]]:
    """(config descriptor, layer descriptors) of an image manifest; at most MAX_LAYERS layers."""
    if "config" not in doc or "layers" not in doc:
        raise ImageError(
            f"{what} has no config or layers (media type {_clip(repr(doc.get('mediaType')))})"
        )
    media_type(doc, what)
    config = descriptor(doc["config"], f"{what}: the config descriptor", max_size=MAX_CONFIG_BYTES)
    layers = doc["layers"]
    if not isinstance(layers, list):
        raise ImageError(f"{what}: layers is not a list (it is {_json_kind(layers)})")
    if len(layers) > MAX_LAYERS:
        raise ImageError(
            f"{what} lists {len(layers)} layers, more than the {MAX_LAYERS} rootless accepts "
            "(the kernel's overlay stacking limit); refusing the image"
        )
    for i, layer in enumerate(layers):
        descriptor(layer, f"{what}: layer {i + 1}")
    return config, layers


def index_manifests(doc: dict, what: str) -> list[dict]:
    """The entries of an image index (manifest list), each a descriptor whose platform is a dict."""
    media_type(doc, what)
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise ImageError(f"{what}: manifests is not a list (it is {_json_kind(entries)})")
    for i, m in enumerate(entries):
        descriptor(m, f"{what}: manifest entry {i + 1}", max_size=MAX_MANIFEST_BYTES)
        p = m.get("platform")
        if p is not None and (
            not isinstance(p, dict)
            or not all(isinstance(p.get(k, ""), str) for k in ("os", "architecture", "variant"))
        ):
            raise ImageError(f"{what}: manifest entry {i + 1} has a malformed platform")
        ann = m.get("annotations")
        if ann is not None and not isinstance(ann, dict):
            raise ImageError(f"{what}: manifest entry {i + 1} has annotations that are not a map")
    return entries


def diff_ids(config: dict, n_layers: int, what: str) -> list[str]:
    """The config's rootfs.diff_ids, checked, one per manifest layer."""
    rootfs = config.get("rootfs")
    if rootfs is None:
        rootfs = {}
    if not isinstance(rootfs, dict):
        raise ImageError(f"{what}: rootfs is not an object (it is {_json_kind(rootfs)})")
    ids = rootfs.get("diff_ids")
    if ids is None:
        ids = []
    if not isinstance(ids, list):
        raise ImageError(f"{what}: rootfs.diff_ids is not a list (it is {_json_kind(ids)})")
    if len(ids) != n_layers:
        raise ImageError(f"{what} lists {len(ids)} layers but the manifest {n_layers}")
    for i, d in enumerate(ids):
        check_digest(d, f"{what}: diff_id {i + 1}")
    return ids


def docker_archive_entries(manifest: bytes) -> list[dict]:
    """manifest.json of a docker-archive, checked: a list of {Config, Layers, RepoTags}."""
    what = "manifest.json in the archive"
    try:
        entries = json.loads(manifest)
    except (ValueError, RecursionError):
        raise ImageError(f"{what} is not JSON") from None
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{what} is not a list of images")
    for i, e in enumerate(entries):
        where = f"{what}, image {i + 1}"
        if not isinstance(e, dict):
            raise ImageError(f"{where} is not an object")
        if not isinstance(e.get("Config"), str) or not e["Config"]:
            raise ImageError(f"{where}: Config is not a file name")
        layers = e.get("Layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ImageError(f"{where}: Layers is not a list of file names")
        if len(layers) > MAX_LAYERS:
            raise ImageError(
                f"{where} lists {len(layers)} layers, more than the {MAX_LAYERS} rootless accepts"
            )
        tags = e.get("RepoTags")
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(t, str) for t in tags)
        ):
            raise ImageError(f"{where}: RepoTags is not a list of names")
    return entries


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_kind(v, shown=None) -> str:
    if shown is not None and isinstance(shown, int | float | str) and not isinstance(shown, bool):
        return repr(shown)
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(v), "something else")


def _clip(s: str, n: int = 80) -> str:
    s = s.replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"
