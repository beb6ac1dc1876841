"""Filesystem changes (podman's `diff`) and whole-filesystem tars (`export`), from layer trees.

`layer_changes(top, lower_dirs)` lists what the layer tree `top` (an image's top layer or a
container's upper dir) changes over the layers below it, as podman prints them: ``A`` added, ``C``
changed (also a directory that holds changes), ``D`` deleted (a whiteout, or what an opaque
directory hides), sorted by path. `tree_changes(old, new)` compares two merged layer stacks (diff
of two images). `export_tar(layer_dirs, fd)` writes the merged tree as a tar to an fd (numeric
owners, hard links kept within a layer, whiteouts applied). All of them read files of any owner:
run them as root in the user namespace (rootless.build.ns.call).
"""

from __future__ import annotations

import os
import stat
import tarfile

from rootless.build.view import LayerView, is_opaque, is_whiteout
from rootless.image.blobwriter import TarFile


def layer_changes(top: str, lower_dirs: list[str]) -> list[list[str]]:
    view = LayerView(lower_dirs)
    out: list[list[str]] = []

    def walk(path: str, parts: list[str]) -> None:
        for e in sorted(os.scandir(path), key=lambda e: e.name):
            p = parts + [e.name]
            name = "/" + "/".join(p)
            st = e.stat(follow_symlinks=False)
            low = view.stat(p)
            if is_whiteout(st):
                if low is not None:
                    out.append(["D", name])
                continue
            out.append(["C" if low is not None else "A", name])
            if stat.S_ISDIR(st.st_mode):
                if low is not None and stat.S_ISDIR(low.st_mode) and is_opaque(e.path):
                    mine = set(os.listdir(e.path))
                    for child in view.listdir(p):
                        if child not in mine:
                            out.append(["D", f"{name}/{child}"])
                walk(e.path, p)

    walk(top, [])
    out.sort(key=lambda x: x[1])
    return out


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    keys = ("st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns")
    if stat.S_ISDIR(a.st_mode) and stat.S_ISDIR(b.st_mode):
        keys = ("st_mode", "st_uid", "st_gid")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def tree_changes(old_dirs: list[str], new_dirs: list[str]) -> list[list[str]]:
    old, new = LayerView(old_dirs), LayerView(new_dirs)
    out: list[list[str]] = []

    def walk(parts: list[str]) -> bool:
        """Compare below `parts` (a directory in both); True if anything below changed."""
        a, b = set(old.listdir(parts)), set(new.listdir(parts))
        changed = False
        for n in sorted(a | b):
            p = parts + [n]
            name = "/" + "/".join(p)
            if n not in b:
                out.append(["D", name])
                changed = True
                continue
            sb = new.stat(p)
            if n not in a:
                out.append(["A", name])
                changed = True
                if stat.S_ISDIR(sb.st_mode):
                    for sub, _, _ in new.walk(p):
                        if sub != p:
                            out.append(["A", "/" + "/".join(sub)])
                continue
            sa = old.stat(p)
            if stat.S_ISDIR(sa.st_mode) and stat.S_ISDIR(sb.st_mode):
                below = walk(p)
                if below or not _same(sa, sb):
                    out.append(["C", name])
                    changed = True
            elif not _same(sa, sb) or old.real(p) != new.real(p) and not _same_content(old, new, p):
                out.append(["C", name])
                changed = True
        return changed

    walk([])
    out.sort(key=lambda x: x[1])
    return out


def _same_content(old: LayerView, new: LayerView, p: list[str]) -> bool:
    a, b = old.real(p), new.real(p)
    sa = os.lstat(a)
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if not stat.S_ISREG(sa.st_mode):
        return True
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def export_tar(layer_dirs: list[str], fd: int) -> None:
    view = LayerView(layer_dirs)
    links: dict[tuple[int, int], str] = {}
    f = os.fdopen(fd, "wb", buffering=1 << 20, closefd=False)
    with TarFile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tf:
        for parts, st, real in view.walk([]):
            if not parts:
                continue
            name = "/".join(parts)
            ti = tarfile.TarInfo(name + ("/" if stat.S_ISDIR(st.st_mode) else ""))
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.uid, ti.gid, ti.uname, ti.gname = st.st_uid, st.st_gid, "", ""
            ti.mtime = int(st.st_mtime)
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in links:
                ti.type, ti.linkname = tarfile.LNKTYPE, links[key]
                tf.addfile(ti)
                continue
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif stat.S_ISREG(st.st_mode):
                ti.size = st.st_size
                if st.st_nlink > 1:
                    links[key] = name
                with open(real, "rb") as src:
                    tf.addfile(ti, src)
            elif stat.S_ISLNK(st.st_mode):
                ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(real)
                tf.addfile(ti)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tf.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
    f.flush()
