"""An image's history as `podman history` shows it.

Rows come from the config's history, newest first. As podman (libimage) does, a cursor starts at
the image's top layer: a row's ID is the first image in the store (oldest first) whose top layer is
the cursor's layer and whose ID no earlier row took (else ``<missing>``; the first row is the image
itself); a row that made a layer has that layer's uncompressed size and moves the cursor down one
layer. A layer is identified by its chain (its diff_id and all those below it).
"""

from __future__ import annotations

import datetime as _dt
import os


def _ts(created: str) -> float | None:
    from rootless.commands.images import _created_ts

    return _created_ts(created)


def _layer_size(store, layer: dict) -> int:
    size = layer.get("diff_size")
    if size:
        return int(size)
    try:
        with open(os.path.join(store.layer_path(layer["diff_id"]), "size")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return int(layer.get("size") or 0)


def rows(store, rec) -> list[dict]:
    tops: dict[tuple, list] = {}
    for other in sorted(store.images(), key=lambda r: r.pulled):
        tops.setdefault(tuple(x["diff_id"] for x in other.layers), []).append(other.id)
    hist = list(rec.config.get("history") or [])
    depth = len(rec.layers)
    used: set[str] = set()
    out = []
    for i, h in enumerate(reversed(hist)):
        row = {
            "id": rec.id if i == 0 else "<missing>",
            "created": h.get("created", ""),
            "created_by": h.get("created_by", ""),
            "comment": h.get("comment", ""),
            "size": 0,
        }
        if depth > 0:
            chain = tuple(x["diff_id"] for x in rec.layers[:depth])
            if not h.get("empty_layer"):
                row["size"] = _layer_size(store, rec.layers[depth - 1])
            if i == 0:
                used.add(rec.id)  # the first row is always the image itself
            for cand in [] if i == 0 else tops.get(chain, []):
                if cand not in used:
                    row["id"] = cand
                    used.add(cand)
                    break
            if not h.get("empty_layer"):
                depth -= 1
        out.append(row)
    return out


def created_at(created: str) -> str:
    """podman's CreatedAt: 2026-12-01 04:17:59 +0000 UTC."""
    t = _ts(created)
    if t is None:
        return ""
    return _dt.datetime.fromtimestamp(int(t), _dt.UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def rfc3339(created: str) -> str:
    t = _ts(created)
    if t is None:
        return ""
    return _dt.datetime.fromtimestamp(int(t), _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_created(created: str) -> str:
    import time

    from rootless.runtime.inspect import human_duration

    t = _ts(created)
    if t is None:
        return ""
    return f"{human_duration(max(0.0, time.time() - t))} ago"
