"""The build cache and the intermediate images it points at.

Every build step is committed as an image (an intermediate image, with no name), as podman does
with --layers. The cache maps a step's key (sha256 of the parent image id, the instruction as it
will be recorded, the build args it sees, and for COPY/ADD the digest of the copied content) to the
image it produced: <data home>/build/cache/<key> holds that image's id. <data home>/build/parents/
<id> holds the id of the image a step started from, which makes an unnamed image that another image
was built on "intermediate": `images` hides it (podman shows it with -a), `image prune` keeps it,
and `rmi` of the child removes the chain of unnamed parents that nothing else uses, as podman does.
A cache entry whose image has been removed is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import NamedTuple

from rootless import paths


class Plan(NamedTuple):
    """A step: what keys its cache entry, and how to run it on a miss."""

    key: list
    run: object


def _dir(kind: str) -> str:
    return os.path.join(paths.data_home(), "build", kind)


def key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def lookup(store, k: str):
    """The image a step with key `k` produced, if it is still complete in the store."""
    try:
        with open(os.path.join(_dir("cache"), k)) as f:
            image_id = f.read().strip()
    except OSError:
        return None
    rec = store.get(image_id) if image_id else None
    if rec is None or not all(store.has_layer(x["diff_id"]) for x in rec.layers):
        return None
    return rec


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    paths.write_text_atomic(path, text)


def remember(k: str, image_id: str) -> None:
    _write(os.path.join(_dir("cache"), k), image_id)


def set_parent(child_id: str, parent_id: str | None) -> None:
    if parent_id and parent_id != child_id:
        _write(os.path.join(_dir("parents"), child_id), parent_id)


def parent(image_id: str) -> str | None:
    try:
        with open(os.path.join(_dir("parents"), image_id)) as f:
            return f.read().strip() or None
    except OSError:
        return None


def intermediate_ids(store) -> set[str]:
    """Unnamed images that another image in the store was built on."""
    d = _dir("parents")
    try:
        children = os.listdir(d)
    except FileNotFoundError:
        return set()
    have = {r.id: r for r in store.images()}
    out = set()
    for child in children:
        if child not in have:
            continue
        p = parent(child)
        if p in have and not have[p].names:
            out.add(p)
    return out


def remove_unused_parents(store, image_id: str) -> list[str]:
    """After `image_id` was removed: remove its unnamed parents that no other image or container
    was built on (podman's rmi of a built image). Returns the removed ids."""
    removed = []
    cur = parent(image_id)
    _forget(image_id)
    while cur:
        rec = store.get(cur)
        if rec is None or rec.names or store.image_in_use_check(cur):
            break
        if any(parent(c) == cur for c in _children_ids() if store.get(c) is not None):
            break
        nxt = parent(cur)
        store.remove_image(cur)
        _forget(cur)
        removed.append(cur)
        cur = nxt
    return removed


def _children_ids() -> list[str]:
    try:
        return os.listdir(_dir("parents"))
    except FileNotFoundError:
        return []


def _forget(image_id: str) -> None:
    try:
        os.unlink(os.path.join(_dir("parents"), image_id))
    except OSError:
        pass
