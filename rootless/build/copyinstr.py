"""COPY and ADD on the host side: sources, their digest for the cache, URLs, the history line.

Sources are matched in the build context (rootless.build.context: globs, the ignore file, no
escape), or taken from an earlier stage or an image with COPY --from. ADD of an http(s) URL
downloads the file first (ADD --checksum=sha256:... is verified), so its content keys the cache.
The copy itself runs as root in the user namespace (rootless.build.copy) and becomes the step's
layer. The history line is podman's: ``/bin/sh -c #(nop) COPY file:<sha256> in /dst ``.
"""

from __future__ import annotations

import hashlib
import os

from rootless.build import commit, words
from rootless.build.copy import CopyJob, Source, make_copy_layer
from rootless.errors import RootlessError


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _download(b, url: str, checksum: str | None, ins) -> Source:
    import email.utils

    import httpx

    base, fd = b.store.new_tmp()
    b.tmp_dirs.append((base, fd))
    name = os.path.basename(url.split("?", 1)[0].rstrip("/")) or "download"
    path = os.path.join(base, "download")
    h = hashlib.sha256()
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as r:
            if r.status_code != 200:
                raise ins.error(f"ADD {url}: the server answered {r.status_code}")
            with open(path, "wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            modified = r.headers.get("last-modified")
    except httpx.HTTPError as e:
        raise ins.error(f"ADD {url}: {e}") from None
    if checksum and checksum != "sha256:" + h.hexdigest():
        raise ins.error(
            f"ADD {url}: the download has digest sha256:{h.hexdigest()}, not {checksum}"
        )
    mtime = None
    if modified:
        try:
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            mtime = None
    src = Source(kind="file", rel=path, name=name, mtime=mtime)
    src.digest = h.hexdigest()  # type: ignore[attr-defined]
    return src


def _from_image(b, ref: str, ins):
    idx = b.cf.stage_index(ref)
    if idx is not None:
        if idx not in b.stage_images:
            raise ins.error(f"{ins.cmd} --from={ref}: that stage is not built before this one")
        return b.stage_images[idx]
    return b._base_image(ref, ins)


def plan(b, st, ins):
    from rootless.build.cache import Plan

    env = st.expand_env()
    try:
        if ins.exec_form is not None:
            items = [words.expand(x, env) for x in ins.exec_form]
        else:
            items = words.split(ins.rest, env)
        chown = words.unquote(ins.flag("chown"), env) if ins.flag("chown") else None
        frm = words.unquote(ins.flag("from"), env) if ins.flag("from") else None
    except words.WordError as e:
        raise ins.error(str(e)) from None
    chmod = None
    if ins.flag("chmod"):
        try:
            chmod = int(ins.flag("chmod"), 8)
        except ValueError:
            raise ins.error(f"{ins.cmd} --chmod={ins.flag('chmod')}: use an octal mode") from None
    srcs, dest = items[:-1], items[-1]
    sources: list[Source] = []
    kinds: list[str] = []
    if frm:
        rec = _from_image(b, frm, ins)
        sources = [Source(kind="image", rel=s, layers=rec.layer_dirs) for s in srcs]
        digest = hashlib.sha256(repr((rec.id, srcs)).encode()).hexdigest()
        kinds = ["file"] * len(srcs)
    else:
        rels: list[str] = []
        digests = []
        for s in srcs:
            if ins.cmd == "ADD" and _is_url(s):
                src = _download(b, s, ins.flag("checksum"), ins)
                sources.append(src)
                digests.append(src.digest)  # type: ignore[attr-defined]
                kinds.append("file")
                continue
            try:
                matched = b.ctx.match(s)
            except RootlessError as e:
                raise RootlessError(f'building at STEP "{ins.original}": {e}') from None
            for rel in matched:
                sources.append(Source(kind="context", rel=rel, root=b.ctx.root,
                                      ignore_lines=b.ctx.ignore_lines))  # fmt: skip
                full = os.path.join(b.ctx.root, rel) if rel else b.ctx.root
                kinds.append("dir" if os.path.isdir(full) else "file")
            rels += matched
        digests.append(b.ctx.digest(rels) if rels else "")
        digest = hashlib.sha256("".join(digests).encode()).hexdigest() if len(digests) > 1 \
            else digests[0]  # fmt: skip
    kind = kinds[0] if len(kinds) == 1 else "multi"
    created = f"/bin/sh -c #(nop) {ins.cmd} {kind}:{digest} in {dest} "
    key = [ins.original, created, chown, chmod, frm]

    def run(st) -> None:
        job = CopyJob(what=ins.cmd, dest=dest, workdir=st.cfg.get("WorkingDir") or "/",
                      lower=[b.store.layer_path(x["diff_id"]) + "/diff" for x in st.layers],
                      sources=sources, chown=chown, chmod=chmod,
                      extract=ins.cmd == "ADD")  # fmt: skip
        try:
            layer = commit.add_layer_dir(b.store, make_copy_layer, job)
        except RootlessError as e:
            raise RootlessError(f'building at STEP "{ins.original}": {e}',
                                exit_code=e.exit_code) from None  # fmt: skip
        b._commit(st, created, layer)

    return Plan(key=key, run=run)
