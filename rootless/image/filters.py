"""Selecting images as podman's `images --filter` does (containers/common's libimage filters):
id, reference (shell patterns on the name in its several forms), label and label!, dangling,
intermediate, containers, before, since/after, until, readonly, manifest; values of one key are
alternatives, different keys must all match. And `--sort` (created, id, repository, size, tag)."""

from __future__ import annotations

import fnmatch

from rootless.errors import ImageError

KEYS = ("after", "since", "before", "containers", "dangling", "id", "intermediate", "label",
        "readonly", "manifest", "reference", "until")  # fmt: skip
SORTS = ("created", "id", "repository", "size", "tag")


def parse(values) -> list[tuple[str, bool, str]]:
    """--filter values as (key, negated, value); a bad key or value is an ImageError."""
    out = []
    for item in values:
        negate = "!=" in item
        key, sep, val = item.partition("!=" if negate else "=")
        if not sep:
            raise ImageError(f'invalid image filter "{item}": use filter=value or filter!=value')
        if key not in KEYS:
            raise ImageError(f'unsupported image filter "{key}": use one of {", ".join(KEYS)}')
        if key in ("dangling", "intermediate", "readonly", "manifest") and val not in (
            "true",
            "false",
        ):
            raise ImageError(f'invalid value "{val}" for filter {key}: use true or false')
        out.append((key, negate, val))
    return out


def created_ts(rec) -> float:
    """The image's creation time (its config's RFC 3339 `created`) as seconds, 0 if unknown."""
    import datetime as dt
    import re

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", rec.created or "")
    if not m:
        return 0.0
    frac = float(m.group(2) or 0)
    zone = (m.group(3) or "Z").replace("Z", "+00:00")
    return dt.datetime.fromisoformat(m.group(1) + zone).timestamp() + frac


def labels(rec) -> dict[str, str]:
    return dict((rec.config.get("config") or {}).get("Labels") or {})


def _candidates(name: str) -> list[str]:
    """A stored name in the forms podman's reference filter tries: the full name, the path without
    the registry, the last component, each with and without its tag."""
    out = [name]
    first, slash, path = name.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        path = name
    base = name.rsplit("/", 1)[-1]
    out += [path, base]
    for n in list(out):
        tail = n.rsplit("/", 1)[-1]
        for sep in ("@", ":"):
            if sep in tail:
                out.append(n[: len(n) - len(tail) + tail.index(sep)])
                break
    return out


class Selector:
    """Evaluates parsed filters against the records of one store."""

    def __init__(self, store, recs):
        self.store, self.recs = store, recs
        self._children = None

    def _has_children(self, rec) -> bool:
        if self._children is None:
            from rootless.build.cache import parent

            self._children = {parent(r.id) for r in self.recs} - {None}
        return rec.id in self._children

    def _ref_time(self, value: str) -> float:
        hit = self.store.lookup_image(value)
        if hit is None:
            raise ImageError(f"{value}: image not known; use an image in `rootless images`")
        return created_ts(hit)

    def one(self, rec, key: str, val: str) -> bool:
        if key == "id":
            return rec.id == val.removeprefix("sha256:") or (
                len(val) >= 3 and rec.id.startswith(val)
            )
        if key == "reference":
            return any(fnmatch.fnmatchcase(c, val) for n in rec.names for c in _candidates(n))
        if key == "label":
            from rootless.filters import label_match

            return label_match(labels(rec), val)
        if key == "dangling":
            return (not rec.names and not self._has_children(rec)) == (val == "true")
        if key == "intermediate":
            return (not rec.names and self._has_children(rec)) == (val == "true")
        if key == "containers":
            return bool(self.store.image_in_use_check(rec.id)) == (val == "true")
        if key in ("after", "since"):
            return created_ts(rec) > self._ref_time(val)
        if key == "before":
            return created_ts(rec) < self._ref_time(val)
        if key == "until":
            from rootless.filters import parse_until

            return created_ts(rec) <= parse_until(val)
        if key == "readonly":
            return val == "false"
        return val == "false"  # manifest: rootless stores no manifest lists as images

    def select(self, filters: list[tuple[str, bool, str]]) -> list:
        by_key: dict[str, list[tuple[bool, str]]] = {}
        for key, neg, val in filters:
            by_key.setdefault("since" if key == "after" else key, []).append((neg, val))
        return [r for r in self.recs
                if all(any(self.one(r, k, v) != neg for neg, v in vals) for k, vals in by_key.items())]  # fmt: skip


def select(store, recs, values) -> list:
    return Selector(store, recs).select(parse(values))
