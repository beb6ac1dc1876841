"""Layer compressions (gzip, zstd, none) and what extraction keeps: xattrs, modes, times."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import zstandard
from support import oci
from support.oci import Entry

from rootless import idmap

MT = {
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}


def add_image_compressed(layout: str, tar: bytes, compression: str) -> None:
    """An OCI image whose single layer is zstd-compressed or plain."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    blob = zstandard.ZstdCompressor().compress(tar) if compression == "zstd" else tar
    ldigest, lsize = oci._put_blob(layout, blob)
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
    }
    cdigest, csize = oci._put_blob(layout, oci._canon(cfg))
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.MT_MANIFEST,
        "config": {"mediaType": oci.MT_CONFIG, "digest": cdigest, "size": csize},
        "layers": [{"mediaType": MT[compression], "digest": ldigest, "size": lsize}],
    }
    mdigest, msize = oci._put_blob(layout, oci._canon(manifest))
    oci._index_put(
        layout,
        {
            "mediaType": oci.MT_MANIFEST,
            "digest": mdigest,
            "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        },
    )


ENTRIES = [
    Entry("etc", "dir", mode=0o750, mtime=1600000000),
    Entry("etc/conf", data=b"hello\n", mode=0o644, uid=33, gid=33, xattrs={"user.comment": "kept"}),
    Entry("etc/suid", data=b"#!/bin/sh\n", mode=0o4755),
    Entry("etc/planted", "dir", xattrs={"user.overlay.opaque": "y"}),  # must not become opaque
]


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_layer_compressions_and_metadata(rootless, registry, tmp_path, compression):
    layout = str(tmp_path / "layout")
    add_image_compressed(layout, oci.make_tar(ENTRIES), compression)
    registry.push(layout, "latest", f"fmt/{compression}:latest")
    rootless.trust(registry)
    rootless("pull", f"{registry.host}/fmt/{compression}:latest", check=True)
    [layer] = os.listdir(os.path.join(rootless.data_dir, "rootless", "layers"))
    diff = os.path.join(rootless.data_dir, "rootless", "layers", layer, "diff")
    st = os.lstat(os.path.join(diff, "etc", "conf"))
    m = idmap.for_user()  # container uid 33 lands as the user's subordinate id for 33
    assert st.st_mode & 0o7777 == 0o644
    assert (st.st_uid, st.st_gid) == (m.to_host_uid(33), m.to_host_gid(33))
    assert os.getxattr(os.path.join(diff, "etc", "conf"), "user.comment") == b"kept"
    assert os.lstat(os.path.join(diff, "etc", "suid")).st_mode & 0o7777 == 0o4755
    st = os.lstat(os.path.join(diff, "etc"))
    assert st.st_mode & 0o777 == 0o750 and st.st_mtime == 1600000000
    assert "user.overlay.opaque" not in os.listxattr(os.path.join(diff, "etc", "planted"))
