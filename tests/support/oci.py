"""Build OCI image layouts offline for the tests, from Debian's busybox-static.

Layers are written with Python's tarfile, so owners, whiteouts and hostile entries need no privilege:
a test describes each entry and gets exactly that tar. `build_layout` assembles an OCI image layout
(image-spec v1.0: oci-layout, index.json, blobs/sha256) that skopeo and our own push code read.

Run as a script to build the demo image: `python3 tests/support/oci.py OUTDIR`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"

EPOCH = 1700000000
BUSYBOX = "/bin/busybox"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Entry:
    """One tar member. kind: file, dir, symlink, hardlink, chardev, blockdev, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    target: str = ""  # symlink / hardlink target
    devmajor: int = 0
    devminor: int = 0
    mtime: int = EPOCH
    xattrs: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def make_tar(entries: list[Entry]) -> bytes:
    """An uncompressed PAX tar holding exactly these entries, in this order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = _TYPES[e.kind]
            ti.uid, ti.gid, ti.mtime = e.uid, e.gid, e.mtime
            ti.uname = ti.gname = ""
            default = 0o755 if e.kind == "dir" else 0o777 if e.kind == "symlink" else 0o644
            ti.mode = e.mode if e.mode is not None else default
            if e.kind in ("symlink", "hardlink"):
                ti.linkname = e.target
            if e.kind in ("chardev", "blockdev"):
                ti.devmajor, ti.devminor = e.devmajor, e.devminor
            if e.xattrs:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def _put_blob(layout: str, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
    return "sha256:" + digest, len(data)


def _canon(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def add_image(
    layout: str,
    ref: str,
    layers: list[bytes],
    *,
    config: dict | None = None,
    compress: str = "gzip",
    architecture: str = "amd64",
    variant: str | None = None,
    index: bool = True,
) -> dict:
    """Add an image (uncompressed layer tars) to an OCI layout; returns its manifest descriptor."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diff_ids = [], []
    for tar in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        if compress == "gzip":
            blob, mt = gzip.compress(tar, compresslevel=6, mtime=0), MT_LAYER_GZ
        else:
            blob, mt = tar, MT_LAYER
        digest, size = _put_blob(layout, blob)
        descs.append({"mediaType": mt, "digest": digest, "size": size})
    cfg = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": architecture,
        "os": "linux",
        "config": config if config is not None else {"Env": [PATH_ENV], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2023-11-14T22:13:20Z", "created_by": f"layer {i + 1}"}
            for i in range(len(layers))
        ],
    }
    if variant:
        cfg["variant"] = variant
    cdigest, csize = _put_blob(layout, _canon(cfg))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cdigest, "size": csize},
        "layers": descs,
    }
    mdigest, msize = _put_blob(layout, _canon(manifest))
    desc = {
        "mediaType": MT_MANIFEST,
        "digest": mdigest,
        "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": ref},
        "platform": {
            "architecture": architecture,
            "os": "linux",
            **({"variant": variant} if variant else {}),
        },
    }
    if index:
        _index_put(layout, desc)
    return desc


def add_index(layout: str, ref: str, manifests: list[dict]) -> dict:
    """Add an image index (multi-arch) over already-added manifests, under `ref`."""
    idx = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{k: v for k, v in m.items() if k != "annotations"} for m in manifests],
    }
    digest, size = _put_blob(layout, _canon(idx))
    desc = {
        "mediaType": MT_INDEX,
        "digest": digest,
        "size": size,
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }
    _index_put(layout, desc)
    return desc


def _index_put(layout: str, desc: dict) -> None:
    path = os.path.join(layout, "index.json")
    try:
        with open(path) as f:
            index = json.load(f)
    except FileNotFoundError:
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
    ref = desc["annotations"]["org.opencontainers.image.ref.name"]
    index["manifests"] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref
    ] + [desc]
    with open(path + ".tmp", "w") as f:
        json.dump(index, f)
    os.rename(path + ".tmp", path)


def busybox_base_entries(busybox: str = BUSYBOX) -> list[Entry]:
    """Layer 1 of the test image: busybox, its applet links, a minimal /etc and test files."""
    with open(busybox, "rb") as f:
        bb = f.read()
    applets = subprocess.run(
        [busybox, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    dirs = [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "home",
        "var",
        "var/www",
        "opt",
        "opt/data",
        "opt/gone",
        "opt/keep",
    ]
    e = [Entry(d, "dir") for d in dirs]
    e += [Entry("tmp", "dir", mode=0o1777), Entry("root", "dir", mode=0o700)]
    e.append(Entry("bin/busybox", "file", bb, mode=0o755))
    for p in sorted(set(applets)):
        if p != "bin/busybox" and os.path.dirname(p) in dirs:
            e.append(Entry(p, "symlink", target="/bin/busybox"))
    passwd = (
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
        "www-data:x:33:33:www-data:/var/www:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    group = (
        "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nuser:x:1000:\nstaff:x:50:user\nnogroup:x:65534:\n"
    )
    e += [
        Entry("etc/passwd", data=passwd.encode()),
        Entry("etc/group", data=group.encode()),
        Entry("etc/hostname", data=b"busybox-test\n"),
        Entry("etc/resolv.conf"),
        Entry("etc/hosts"),
        Entry("etc/motd-layer1", data=b"motd from layer 1 (must be whited out by layer 2)\n"),
        Entry("var/www/index.html", data=b"<h1>hello from busybox httpd</h1>\n"),
        Entry("opt/data/a", data=b"a\n"),
        Entry("opt/data/b", data=b"b\n"),
        Entry("opt/gone/x", data=b"x\n"),
        Entry("opt/keep/k", data=b"original in layer 1\n"),
        Entry("opt/hl1", data=b"hardlinked\n"),
        Entry("opt/hl2", "hardlink", target="opt/hl1"),
        Entry("opt/link", "symlink", target="keep/k"),
        Entry("opt/owned-1000", data=b"owned by 1000\n", uid=1000, gid=1000),
        Entry("opt/owned-65534", data=b"owned by 65534\n", uid=65534, gid=65534),
        Entry("home/user", "dir", uid=1000, gid=1000),
    ]
    return e


def busybox_layers() -> list[bytes]:
    """The three layers of busybox:latest (see DEVELOPING.md for what each exercises)."""
    l1 = make_tar(busybox_base_entries())
    l2 = make_tar(
        [
            Entry("etc", "dir"),
            Entry("etc/layer2-added", data=b"added in layer 2\n"),
            Entry("etc/.wh.motd-layer1"),  # a file whiteout
            Entry("opt", "dir"),
            Entry("opt/.wh.gone"),  # a whole-directory whiteout
            Entry("opt/data", "dir"),
            Entry("opt/data/.wh..wh..opq"),  # an opaque directory: hides a and b
            Entry("opt/data/c", data=b"c\n"),
            Entry("opt/keep", "dir"),
            Entry("opt/keep/k", data=b"modified in layer 2\n"),
        ]
    )
    l3 = make_tar(
        [
            Entry("opt", "dir"),
            Entry("opt/gone", "dir"),  # re-created after the whole-dir whiteout
            Entry("opt/gone/reborn", data=b"reborn in layer 3\n"),
            Entry("usr", "dir"),
            Entry("usr/local", "dir"),
            Entry("usr/local/bin", "dir"),
            Entry(
                "usr/local/bin/hello",
                data=b'#!/bin/sh\necho "hello from layer 3: $*"\n',
                mode=0o755,
            ),
        ]
    )
    return [l1, l2, l3]


BUSYBOX_CONFIG = {
    "Env": [PATH_ENV],
    "Cmd": ["sh"],
    "WorkingDir": "/",
    "ExposedPorts": {"80/tcp": {}},
    "Labels": {"org.opencontainers.image.title": "busybox-test"},
}


def build_busybox_layout(layout: str) -> str:
    """OCI layout with refs `latest` (3 layers) and `baduid` (+ a file owned by uid 70000)."""
    layers = busybox_layers()
    add_image(layout, "latest", layers, config=BUSYBOX_CONFIG)
    l4 = make_tar(
        [
            Entry("opt", "dir"),
            Entry("opt/owned-70000", data=b"owned by 70000\n", uid=70000, gid=70000),
        ]
    )
    add_image(layout, "baduid", layers + [l4], config={"Env": [PATH_ENV], "Cmd": ["sh"]})
    return layout


def write_oci_archive(layout: str, out: str) -> None:
    """An oci-archive tarball (a tar of the layout), as `podman save --format oci-archive` writes."""
    with tarfile.open(out, "w") as tf:
        for name in ("oci-layout", "index.json", "blobs"):
            tf.add(os.path.join(layout, name), arcname=name)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "busybox-oci"
    build_busybox_layout(out)
    print(out)
