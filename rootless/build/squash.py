"""--squash and --layers=false: the final stage's new layers merged into one.

The merged layer is built by applying each new layer, bottom first, onto one directory as overlay
would stack them, keeping the whiteouts (they may hide files of the base image) and the opaque
markers; the history keeps every entry, with all but the last layer-making one marked empty.
"""

from __future__ import annotations

import os
import shutil
import stat

from rootless.build import commit
from rootless.build.view import is_opaque, is_whiteout


def _clear(p: str) -> None:
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(p)
    else:
        os.unlink(p)


def apply_layer(src: str, dst: str) -> None:
    """Stack layer dir `src` onto layer dir `dst` (both in the store's encoding)."""
    for e in sorted(os.scandir(src), key=lambda e: e.name):
        s, d = e.path, os.path.join(dst, e.name)
        st = e.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode) and not is_whiteout(st):
            try:
                dst_is_dir = stat.S_ISDIR(os.lstat(d).st_mode)
            except FileNotFoundError:
                dst_is_dir = False
            if not dst_is_dir or is_opaque(s):
                _clear(d)
                shutil.copytree(s, d, symlinks=True, copy_function=shutil.copy2)
                os.chown(d, st.st_uid, st.st_gid)
                _chown_tree(s, d)
                continue
            apply_layer(s, d)
            shutil.copystat(s, d, follow_symlinks=False)
            os.chown(d, st.st_uid, st.st_gid)
            continue
        _clear(d)
        if is_whiteout(st):
            os.mknod(d, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
            os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
        else:
            shutil.copy2(s, d, follow_symlinks=False)
            os.chown(d, st.st_uid, st.st_gid)


def _chown_tree(src: str, dst: str) -> None:
    for dirpath, dirnames, filenames in os.walk(src):
        for n in dirnames + filenames:
            s = os.path.join(dirpath, n)
            st = os.lstat(s)
            os.chown(os.path.join(dst, os.path.relpath(s, src)), st.st_uid, st.st_gid,
                     follow_symlinks=False)  # fmt: skip


def _merge(tmp: str, dirs: list[str]) -> None:
    out = os.path.join(tmp, "diff")
    os.mkdir(out, 0o755)
    for d in dirs:
        apply_layer(d, out)


def squash_stage(b, st) -> None:
    new = st.layers[st.base_count :]
    if len(new) <= 1:
        return
    dirs = [b.store.layer_path(x["diff_id"]) + "/diff" for x in new]
    layer = commit.add_layer_dir(b.store, _merge, dirs)
    hist = st.config.get("history") or []
    seen_last = False
    for entry in reversed(hist[len(hist) - _new_entries(hist, len(new)) :]):
        if not entry.get("empty_layer"):
            if seen_last:
                entry["empty_layer"] = True
            seen_last = True
    st.layers = st.layers[: st.base_count] + [layer]
    cfg = dict(st.config)
    cfg["created"] = commit.now_iso()
    st.image = commit.commit_image(b.store, cfg, st.layers, fmt=b.o.fmt)


def _new_entries(hist: list[dict], n_layers: int) -> int:
    """How many trailing history entries hold the last n_layers layer-making ones."""
    count = seen = 0
    for entry in reversed(hist):
        count += 1
        if not entry.get("empty_layer"):
            seen += 1
            if seen == n_layers:
                break
    return count
