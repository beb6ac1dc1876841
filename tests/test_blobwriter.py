"""rootless.image.blobwriter: layer directories back into OCI layer blobs (what `build` and
`commit` use), run as the unprivileged user through the user namespace helper.

The layers come from the store after pulling the test image, so they hold what extraction makes:
0/0 whiteout devices, an opaque directory (user.overlay.opaque), hard links, files owned by
subordinate ids. The blob must encode them the OCI way with container ids, be reproducible,
describe itself correctly (digest, diff_id, sizes), and an image assembled from such blobs must
load and run with the same content.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest
from support import oci

from rootless.image.blobwriter import write_layer_blob_in_userns


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def layer_dirs(rootless, registry, busybox_ref) -> list[str]:
    rootless.trust(registry)
    rootless("pull", "-q", busybox_ref, check=True)
    [data] = json.loads(rootless("inspect", busybox_ref, check=True).stdout)
    store = os.path.join(rootless.data_dir, "rootless")
    return [
        os.path.join(store, "layers", d.split(":", 1)[1], "diff") for d in data["RootFS"]["Layers"]
    ]


def members(tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return {m.name: m for m in tf.getmembers()}


def test_layer_dir_to_blob(layer_dirs, tmp_path):
    out = str(tmp_path / "l2.tar.gz")
    res = write_layer_blob_in_userns(layer_dirs[1], out)
    blob = open(out, "rb").read()
    tar = gzip.decompress(blob)
    assert (res.digest, res.size) == (sha(blob), len(blob))
    assert (res.diff_id, res.diff_size) == (sha(tar), len(tar))
    assert res.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert blob[4:8] == b"\0\0\0\0"  # gzip mtime 0
    m = members(tar)
    # whiteouts (0/0 devices) and the opaque dir (an xattr) come back in the OCI encoding
    assert sorted(m) == [
        "etc",
        "etc/.wh.motd-layer1",
        "etc/layer2-added",
        "opt",
        "opt/.wh.gone",
        "opt/data",
        "opt/data/.wh..wh..opq",
        "opt/data/c",
        "opt/keep",
        "opt/keep/k",
    ]
    assert m["opt/.wh.gone"].isreg() and m["opt/.wh.gone"].size == 0
    assert not any("overlay" in k for ti in m.values() for k in ti.pax_headers)
    # layer 1: hard links, container ids (not the host's subordinate ids), modes
    res1 = write_layer_blob_in_userns(layer_dirs[0], str(tmp_path / "l1.tar"), compression="none")
    m1 = members(open(tmp_path / "l1.tar", "rb").read())
    assert m1["opt/hl2"].islnk() and m1["opt/hl2"].linkname == "opt/hl1"
    assert (m1["opt/owned-1000"].uid, m1["opt/owned-1000"].gid) == (1000, 1000)
    assert (m1["opt/owned-65534"].uid, m1["home/user"].uid) == (65534, 1000)
    assert m1["tmp"].mode == 0o1777 and m1["bin/busybox"].mode == 0o755
    assert m1["bin/sh"].issym() and m1["bin/sh"].linkname == "/bin/busybox"
    assert m1["bin/busybox"].mtime == oci.EPOCH
    assert res1.digest == res1.diff_id  # uncompressed: the blob is the tar
    # reproducible, and the same tar whatever the compression
    again = write_layer_blob_in_userns(layer_dirs[1], str(tmp_path / "again.tar.gz"))
    assert again.digest == res.digest
    z = write_layer_blob_in_userns(layer_dirs[1], str(tmp_path / "l2.zst"), compression="zstd")
    assert z.diff_id == res.diff_id and z.media_type.endswith("+zstd")


def test_an_image_of_written_blobs_loads_runs_and_rewrites_the_same(
    rootless, other_store, layer_dirs, tmp_path
):
    tars = []
    for i, d in enumerate(layer_dirs):
        path = str(tmp_path / f"layer{i}.tar")
        write_layer_blob_in_userns(d, path, compression="none")
        tars.append(open(path, "rb").read())
    layout = str(tmp_path / "layout")
    oci.add_image(layout, "latest", tars, config=oci.BUSYBOX_CONFIG)
    archive = str(tmp_path / "rebuilt.tar")
    oci.write_oci_archive(layout, archive)
    other_store("load", "-i", archive, check=True)
    [image_id] = other_store("images", "-q", "--no-trunc", check=True).stdout.split()
    cp = other_store(
        "run",
        "--rm",
        "--network",
        "none",
        image_id,
        "sh",
        "-c",
        "ls /opt/data; cat /opt/keep/k /opt/gone/reborn; ls /etc/motd-layer1 2>&1;"
        " stat -c %u /opt/owned-1000; stat -c %h /opt/hl1",
        check=True,
    )
    assert cp.stdout.splitlines() == [
        "c",  # the opaque dir hides a and b
        "modified in layer 2",
        "reborn in layer 3",
        "ls: /etc/motd-layer1: No such file or directory",  # whited out
        "1000",
        "2",
    ]
    # the loaded layers, written again, give the same tars: a fixed point
    [data] = json.loads(other_store("inspect", image_id, check=True).stdout)
    store = os.path.join(other_store.data_dir, "rootless")
    for tar, diff_id in zip(tars, data["RootFS"]["Layers"], strict=True):
        d = os.path.join(store, "layers", diff_id.split(":", 1)[1], "diff")
        res = write_layer_blob_in_userns(d, str(tmp_path / "again.tar"), compression="none")
        assert res.diff_id == sha(tar) == diff_id


@pytest.fixture
def other_store(tmp_path):
    from conftest import Rootless

    r = Rootless(str(tmp_path / "other"))
    yield r
    r.cleanup()
