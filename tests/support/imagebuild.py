"""Build the real-image test corpus: Debian bookworm minbase and images layered on it.

Run as root by scripts/build-test-images.sh, inside a private mount and pid namespace (so every mount
and every process a package script starts dies with the build). Standard library only, on the
system's python3.

- The base is `debootstrap --variant=minbase`, trimmed as Debian's official images are (apt caches,
  lists and logs removed, apt told to keep none, no docs/man pages/translations, `policy-rc.d` so
  no package starts a service). Its tree is the first layer.
- Each other image is one more layer over the base: kernel overlayfs mounts the base read-only under
  an empty upper dir, `apt-get install` runs in a chroot of the merged tree, and the upper dir
  becomes the layer. Overlay's whiteouts (0/0 character devices) become `.wh.NAME` files and its
  opaque directories (`trusted.overlay.opaque=y`) `.wh..wh..opq` entries, as OCI layers encode them.
- Everything goes into one OCI layout (one ref per image, the base layer's blob shared), cached
  under a directory named by `recipe_key()`: a hash of the recipes (tests/support/imagerecipes.py),
  this builder and the build script. tests/support/images.py finds the layout by the same key.

`python3 tests/support/imagebuild.py key` prints the key; `build CACHE_DIR` builds and publishes.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time

try:
    from support import imagerecipes as recipes  # imported by the tests
except ImportError:
    import imagerecipes as recipes  # run as a script

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD_SCRIPT = os.path.join(REPO, "scripts", "build-test-images.sh")
DEFAULT_CACHE = "/var/cache/rootless/test-images"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


def recipe_key() -> str:
    """What the cache is keyed by: the text of the recipes (every package list, layer script and
    image config), of this builder and of the build script."""
    h = hashlib.sha256()
    for path in (recipes.__file__, os.path.abspath(__file__), BUILD_SCRIPT):
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


# --- layers: a directory tree (or an overlay upper dir) as an OCI layer tar ---------------------------


class LayerWriter:
    """Streams a tree into an uncompressed tar (for the diff_id) and its gzip (the blob) at once."""

    def __init__(self, blobs: str):
        self.blobs = blobs
        self.tmp = os.path.join(blobs, ".layer.tmp")
        self.raw = open(self.tmp, "wb")
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=6, mtime=0)
        self.diff = hashlib.sha256()
        self.offset = 0
        self.tar = tarfile.open(fileobj=self, mode="w", format=tarfile.PAX_FORMAT)
        self.stats = {"entries": 0, "whiteouts": 0, "opaque": 0}

    def write(self, data: bytes) -> int:  # the tarfile's file object
        self.diff.update(data)
        self.gz.write(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def add_tree(self, root: str, *, overlay: bool) -> None:
        """Every entry under root (not root itself), sorted; in an overlay upper dir, whiteouts and
        opaque dirs become OCI's markers."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            names = sorted(dirnames + filenames)
            if overlay and rel_dir != "." and _is_opaque(dirpath):
                self._add_marker(os.path.join(rel_dir, ".wh..wh..opq"))
                self.stats["opaque"] += 1
            for name in names:
                path = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(path)
                if overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    self._add_marker(os.path.join(rel_dir, ".wh." + name))
                    self.stats["whiteouts"] += 1
                    continue
                if stat.S_ISSOCK(st.st_mode):
                    continue
                self._add(path, rel)

    def _add(self, path: str, rel: str) -> None:
        ti = self.tar.gettarinfo(path, arcname=rel)
        ti.uname = ti.gname = ""
        caps = _xattr(path, "security.capability")
        if caps is not None:
            ti.pax_headers = {
                "SCHILY.xattr.security.capability": caps.decode("utf-8", "surrogateescape")
            }
        if ti.isreg():
            with open(path, "rb") as f:
                self.tar.addfile(ti, f)
        else:
            self.tar.addfile(ti)
        self.stats["entries"] += 1

    def _add_marker(self, rel: str) -> None:
        ti = tarfile.TarInfo(os.path.normpath(rel))
        ti.mode, ti.mtime = 0o644, int(time.time())
        self.tar.addfile(ti)
        self.stats["entries"] += 1

    def finish(self) -> tuple[dict, str]:
        """Close the tar; move the blob into place. Returns its descriptor and diff_id."""
        self.tar.close()
        self.gz.close()
        self.raw.close()
        digest = _file_sha256(self.tmp)
        os.chmod(self.tmp, 0o644)
        os.rename(self.tmp, os.path.join(self.blobs, digest))
        size = os.path.getsize(os.path.join(self.blobs, digest))
        desc = {"mediaType": MT_LAYER_GZ, "digest": "sha256:" + digest, "size": size}
        return desc, "sha256:" + self.diff.hexdigest()


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _is_opaque(path: str) -> bool:
    return _xattr(path, "trusted.overlay.opaque") == b"y"


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --- the build ---------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"build-test-images: {msg}", flush=True)


def sh(*argv: str, **kw) -> None:
    subprocess.run(argv, check=True, **kw)


def chroot_run(root: str, script: str) -> None:
    """Run a shell script in a chroot of root with /proc, /dev and the host's DNS, then unmount them.
    The mounts are over files the tree already has, so none of them reaches an overlay's upper dir."""
    mounts = [
        (os.path.join(root, "proc"), ["-t", "proc", "proc"]),
        (os.path.join(root, "dev"), ["--rbind", "/dev"]),
        (os.path.join(root, "etc/resolv.conf"), ["--bind", "/etc/resolv.conf"]),
    ]
    done = []
    try:
        for target, args in mounts:
            sh("mount", *args, target)
            done.append(target)
        env = {"PATH": recipes.PATH_ENV[5:], "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        sh("chroot", root, "/bin/sh", "-c", script, env=env)
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-R", target], check=False)


def build_base(work: str) -> str:
    """debootstrap minbase, the official images' apt/dpkg settings and trim; returns the tree."""
    root = os.path.join(work, "rootfs")
    t0 = time.monotonic()
    sh(
        "debootstrap",
        "--variant=minbase",
        recipes.SUITE,
        root,
        recipes.MIRROR,
        stdout=subprocess.DEVNULL,
    )
    log(f"debootstrap {recipes.SUITE}: {time.monotonic() - t0:.0f} s")
    for rel, text in recipes.BASE_FILES.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    chroot_run(root, recipes.BASE_RUN + recipes.CLEAN)
    # the runtime provides these; the image holds neutral ones (none of the build host's)
    for rel, text in (
        ("etc/resolv.conf", ""),
        ("etc/hostname", "localhost\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"),
    ):
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    for rel in ("dev", "proc", "sys", "tmp", "var/tmp"):
        d = os.path.join(root, rel)
        for name in os.listdir(d):
            p = os.path.join(d, name)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    for p in ("etc/machine-id", "var/lib/dbus/machine-id"):
        if os.path.exists(os.path.join(root, p)):
            open(os.path.join(root, p), "w").close()
    return root


def build_layer(base: str, work: str, recipe: recipes.Recipe) -> str:
    """Run the recipe over the base in kernel overlayfs; returns the upper dir (the layer)."""
    top = os.path.join(work, recipe.ref)
    upper, wdir, merged = (os.path.join(top, d) for d in ("upper", "work", "merged"))
    for d in (upper, wdir, merged):
        os.makedirs(d)
    opts = (
        f"lowerdir={base},upperdir={upper},workdir={wdir},redirect_dir=off,metacopy=off,index=off"
    )
    sh("mount", "-t", "overlay", "overlay", "-o", opts, merged)
    try:
        chroot_run(merged, recipe.run + recipes.CLEAN)
    finally:
        sh("umount", merged)
    shutil.rmtree(wdir)
    return upper


def write_image(layout: str, ref: str, layers: list[tuple[dict, str, str]], config: dict) -> dict:
    """The config and manifest of one image (layers: descriptor, diff_id, created_by)."""
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cfg = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]},
        "history": [{"created": created, "created_by": by} for _, _, by in layers],
    }
    cdesc = _put_json(layout, cfg, MT_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": cdesc,
        "layers": [desc for desc, _, _ in layers],
    }
    mdesc = _put_json(layout, manifest, MT_MANIFEST)
    mdesc["platform"] = {"architecture": arch, "os": "linux"}
    mdesc["annotations"] = {REF_ANNOTATION: ref}
    return mdesc


def _put_json(layout: str, doc: dict, media_type: str) -> dict:
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def tar_layer(layout: str, tree: str, *, overlay: bool) -> tuple[dict, str, dict]:
    w = LayerWriter(os.path.join(layout, "blobs", "sha256"))
    w.add_tree(tree, overlay=overlay)
    desc, diff_id = w.finish()
    return desc, diff_id, w.stats


def build_images(work: str, layout: str, report: dict) -> list[dict]:
    """The base, then each recipe's layer over it; returns the index's manifest descriptors."""
    t0 = time.monotonic()
    base = build_base(work)
    base_desc, base_diff, stats = tar_layer(layout, base, overlay=False)
    base_by = f"debootstrap --variant=minbase {recipes.SUITE} {recipes.MIRROR}; "
    base_layer = (base_desc, base_diff, base_by + recipes.BASE_RUN + recipes.CLEAN)
    index = [write_image(layout, recipes.BASE_REF, [base_layer], recipes.BASE_CONFIG)]
    _record(report, recipes.BASE_REF, t0, [base_desc], stats)
    for recipe in recipes.RECIPES:
        t0 = time.monotonic()
        upper = build_layer(base, work, recipe)
        desc, diff_id, stats = tar_layer(layout, upper, overlay=True)
        shutil.rmtree(os.path.join(work, recipe.ref))
        layers = [base_layer, (desc, diff_id, recipe.run + recipes.CLEAN)]
        index.append(write_image(layout, recipe.ref, layers, recipe.config))
        _record(report, recipe.ref, t0, [base_desc, desc], stats)
    return index


def _record(report: dict, ref: str, t0: float, layers: list[dict], stats: dict) -> None:
    secs = report["seconds"][ref] = round(time.monotonic() - t0, 1)
    report["images"][ref] = {"layers": [d["size"] for d in layers], **stats}
    log(
        f"{ref}: {secs} s, top layer {layers[-1]['size'] >> 20} MiB gzip, {stats['entries']} entries,"
        f" {stats['whiteouts']} whiteouts, {stats['opaque']} opaque dirs"
    )


def build(cache: str) -> int:
    """Build the corpus into CACHE/KEY unless it is there; keep the three newest corpora."""
    key = recipe_key()
    final = os.path.join(cache, key)
    if os.path.exists(os.path.join(final, "index.json")):
        log(f"cached: {final}")
        return 0
    t_start = time.monotonic()
    work = os.path.join(cache, f".build-{key}")
    shutil.rmtree(work, ignore_errors=True)
    layout = os.path.join(work, "layout")
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    report: dict = {"key": key, "images": {}, "seconds": {}}
    index = build_images(work, layout, report)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": index}, f, indent=1)
    report["seconds"]["total"] = round(time.monotonic() - t_start, 1)
    report["built"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with open(os.path.join(layout, "build.json"), "w") as f:
        json.dump(report, f, indent=1)
    sh("chmod", "-R", "a+rX,go-w", layout)
    os.rename(layout, final)  # published whole, or not at all
    shutil.rmtree(work)
    prune(cache)
    log(f"built {final} in {report['seconds']['total']} s")
    return 0


def prune(cache: str, keep: int = 3) -> None:
    """Remove builds that did not finish (the caller holds the lock: no other build runs) and all
    but the `keep` newest corpora (other branches' recipes stay cached for a while)."""
    corpora = []
    for name in os.listdir(cache):
        path = os.path.join(cache, name)
        if name.startswith(".build-"):
            shutil.rmtree(path, ignore_errors=True)
        elif re.fullmatch(r"[0-9a-f]{16}", name) and os.path.isdir(path):  # others' files stay
            corpora.append((os.stat(path).st_mtime, path))
    for _, path in sorted(corpora, reverse=True)[keep:]:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["key"]:
        print(recipe_key())
        return 0
    if argv[:1] == ["build"] and len(argv) == 2:
        return build(argv[1])
    print("usage: imagebuild.py key | build CACHE_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
