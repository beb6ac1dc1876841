"""The library API the runtime uses: Store.open, lookup_image, ImageRecord, ensure_image."""

from __future__ import annotations

import os

import pytest

from rootless.errors import ImageError
from rootless.image.pull import ensure_image
from rootless.image.store import Store


@pytest.fixture
def env(rootless, registry, monkeypatch):
    rootless.trust(registry)
    for k, v in rootless.env.items():
        if k.startswith("XDG_"):
            monkeypatch.setenv(k, v)
    return rootless


def test_ensure_image_pulls_once_and_returns_the_record(env, busybox_ref):
    rec = ensure_image(busybox_ref, quiet=True)
    assert len(rec.id) == 64 and rec.names == [busybox_ref]
    assert rec.config["config"]["Cmd"] == ["sh"] and rec.config["config"]["WorkingDir"] == "/"
    assert len(rec.layer_dirs) == 3 and all(
        os.path.isabs(d) and os.path.isdir(d) for d in rec.layer_dirs
    )
    assert os.path.exists(os.path.join(rec.layer_dirs[0], "bin", "busybox"))  # bottom layer first
    store = Store.open()
    again = ensure_image("busybox", quiet=True)  # a short name finds the local image
    assert again.id == rec.id
    assert store.lookup_image(rec.id[:10]).id == rec.id
    assert store.lookup_image("sha256:" + rec.id).id == rec.id
    assert store.lookup_image("nosuch") is None
    assert store.image_in_use_check(rec.id) == []


def test_ensure_image_errors_are_image_errors(env, registry):
    with pytest.raises(ImageError) as e:
        ensure_image(f"{registry.host}/nosuch:latest", quiet=True)
    assert "not found" in str(e.value)
