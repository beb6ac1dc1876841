"""The corpus builder's layer capture (tests/support/imagebuild.py), as root: changes made through a
real kernel overlay become an OCI layer whose whiteouts and opaque directories are encoded as OCI
encodes them, with nothing of overlay's own (0/0 devices, trusted.overlay.* xattrs) left in it."""

import gzip
import hashlib
import os
import subprocess
import tarfile

import pytest
from support import imagebuild

pytestmark = pytest.mark.root


def test_overlay_upper_dir_becomes_an_oci_layer(tmp_path):
    lower, upper, work, merged = (tmp_path / d for d in ("lower", "upper", "work", "merged"))
    for d in (lower / "etc", lower / "gone", lower / "data", upper, work, merged):
        d.mkdir(parents=True)
    for path, text in {
        "etc/motd": "old\n",
        "etc/keep": "keep\n",
        "gone/x": "x\n",
        "data/a": "a\n",
        "data/b": "b\n",
    }.items():
        (lower / path).write_text(text)
    script = (
        f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work},"
        f"redirect_dir=off,metacopy=off,index=off {merged} && cd {merged} &&"
        " rm etc/motd && rm -r gone && rm -r data && mkdir data && echo c > data/c &&"
        " echo new > etc/new && chown 1000:1000 etc/new && cd / && umount " + str(merged)
    )
    subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script], check=True
    )

    blobs = tmp_path / "blobs"
    blobs.mkdir()
    w = imagebuild.LayerWriter(str(blobs))
    w.add_tree(str(upper), overlay=True)
    desc, diff_id = w.finish()
    assert w.stats == {"entries": 7, "whiteouts": 2, "opaque": 1}

    blob = (blobs / desc["digest"].split(":")[1]).read_bytes()
    assert desc["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert desc["size"] == len(blob)
    raw = gzip.decompress(blob)
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()

    tar_path = tmp_path / "layer.tar"
    tar_path.write_bytes(raw)
    with tarfile.open(tar_path) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == [
        "data",
        "etc",
        ".wh.gone",
        "data/.wh..wh..opq",  # before the directory's own entries
        "data/c",
        "etc/.wh.motd",
        "etc/new",
    ]
    by_name = {m.name: m for m in members}
    for wh in (".wh.gone", "etc/.wh.motd", "data/.wh..wh..opq"):
        assert by_name[wh].isreg() and by_name[wh].size == 0
    assert (by_name["etc/new"].uid, by_name["etc/new"].gid) == (1000, 1000)
    assert not any(m.ischr() for m in members)
    assert not any(k.startswith("SCHILY.xattr.trusted.") for m in members for k in m.pax_headers)
    assert os.path.exists(upper / "gone")  # overlay's own whiteout, untouched in the upper dir
