"""podman's `--filter` values, shared by the listings of volumes and pods: KEY=VALUE pairs (repeated,
or comma-separated as podman's string slices are), labels (KEY or KEY=VALUE, and `label!=`), and
`until` times (a Unix time, RFC 3339, or a Go duration before now)."""

from __future__ import annotations

import re
import time

from rootless.errors import RootlessError


def split(values) -> dict[str, list[str]]:
    """--filter values as {key: [values]}; `key!=value` is kept under the key `key!`."""
    out: dict[str, list[str]] = {}
    for value in values:
        for item in value.split(","):
            if not item:
                continue
            key, eq, val = item.partition("=")
            if not eq:
                raise RootlessError(f"invalid filter {item!r}: use KEY=VALUE")
            out.setdefault(key, []).append(val)
    return out


def parse_until(value: str) -> float:
    """Seconds since the epoch for an `until` value."""
    v = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    if re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms|us|ns))+", v):
        units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
        found = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", v)
        return time.time() - sum(float(n) * units[u] for n, u in found)
    from rootless.runtime.logs import parse_timestamp

    try:
        return parse_timestamp(v)
    except ValueError:
        raise RootlessError(
            f"invalid time {value!r}: use a Unix time, RFC 3339 or a duration (10m)"
        ) from None


def label_match(labels: dict[str, str], wanted: str) -> bool:
    """A label filter value: KEY or KEY=VALUE."""
    key, eq, val = wanted.partition("=")
    return key in labels and (not eq or labels[key] == val)


def parse_labels(values, what: str = "--label") -> dict[str, str]:
    """--label KEY=VALUE (or KEY, an empty value) as a dict."""
    out = {}
    for v in values:
        key, _, val = v.partition("=")
        if not key:
            raise RootlessError(f"{what} {v!r}: the key is empty; use KEY=VALUE")
        out[key] = val
    return out
