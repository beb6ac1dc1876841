"""COPY and ADD: a new layer tree holding the copied files, written as root in the user namespace.

The destination is resolved in the image being built (rootless.build.view: symlinks followed inside
its root; relative to WORKDIR), and the layer gets the destination's parent directories with the
image's owners and modes, so that stacking it changes nothing else. As buildah does: files keep
their mode and mtime; files from the context belong to root and files from another stage or image
keep their owners, unless --chown; --chmod sets every copied entry's mode; directories the copy
creates are 0755 and belong to root or the --chown owner; a source directory's contents (not the
directory) are copied; several sources need a destination directory. ADD also unpacks a local tar
archive (plain, gzip, bzip2 or xz) into the destination, with the archive's owners, refusing any
entry that would leave it; a file downloaded from a URL is copied with mode 0600.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass, field

from rootless.build.view import LayerView, lookup_ids, split
from rootless.errors import RootlessError


@dataclass
class Source:
    kind: str  # "context" | "image" | "file"
    rel: str  # path in the context or the image (a host path for "file")
    root: str = ""  # the context directory
    layers: list[str] = field(default_factory=list)  # the --from image's layer dirs
    ignore_lines: list[str] = field(default_factory=list)
    name: str = ""  # the destination name of a downloaded file
    mtime: float | None = None


@dataclass
class CopyJob:
    what: str  # "COPY" | "ADD", for messages
    dest: str
    workdir: str
    lower: list[str]  # the layers of the image being built
    sources: list[Source]
    chown: str | None = None
    chmod: int | None = None
    extract: bool = False  # ADD: unpack local archives


class _Layer:
    def __init__(self, out: str, view: LayerView, owner, chmod):
        self.out = out
        self.view = view
        self.owner = owner  # (uid, gid) or None
        self.chmod = chmod

    def path(self, parts: list[str]) -> str:
        return os.path.join(self.out, *parts)

    def ensure_dir(self, parts: list[str], what: str) -> None:
        for i in range(1, len(parts) + 1):
            pre = parts[:i]
            p = self.path(pre)
            try:
                st = os.lstat(p)
                if stat.S_ISDIR(st.st_mode):
                    continue
                os.unlink(p)
            except FileNotFoundError:
                pass
            vst = self.view.stat(pre)
            if vst is not None and not stat.S_ISDIR(vst.st_mode):
                raise RootlessError(f"{what}: /{'/'.join(pre)} is not a directory in the image")
            if vst is not None:  # mirror the image's directory: the layer changes nothing in it
                os.mkdir(p, 0o700)
                os.chown(p, vst.st_uid, vst.st_gid)
                os.chmod(p, stat.S_IMODE(vst.st_mode))
                os.utime(p, ns=(vst.st_atime_ns, vst.st_mtime_ns))
            else:
                os.mkdir(p, 0o700)
                uid, gid = self.owner or (0, 0)
                os.chown(p, uid, gid)
                os.chmod(p, 0o755)

    def _clear(self, p: str) -> None:
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(p)
        else:
            os.unlink(p)

    def put(self, src: str, st: os.stat_result, parts: list[str], owner, mtime_ns=None) -> None:
        """One entry (not a directory's contents) at `parts`; src is a readable host path."""
        p = self.path(parts)
        times = (st.st_atime_ns, st.st_mtime_ns) if mtime_ns is None else (mtime_ns, mtime_ns)
        mode = stat.S_IMODE(st.st_mode) if self.chmod is None else self.chmod
        uid, gid = self.owner or owner
        if stat.S_ISDIR(st.st_mode):
            try:
                if not stat.S_ISDIR(os.lstat(p).st_mode):
                    self._clear(p)
                    os.mkdir(p, 0o700)
            except FileNotFoundError:
                os.mkdir(p, 0o700)
        else:
            self._clear(p)
            if stat.S_ISREG(st.st_mode):
                with open(src, "rb") as fi:
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    with open(fd, "wb") as fo:
                        shutil.copyfileobj(fi, fo, 1 << 20)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), p)
                os.chown(p, uid, gid, follow_symlinks=False)
                os.utime(p, ns=times, follow_symlinks=False)
                return
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(p, 0o600)
            else:
                return  # devices and sockets are not copied
        os.chown(p, uid, gid)
        os.chmod(p, mode)
        if not stat.S_ISDIR(st.st_mode):
            os.utime(p, ns=times)

    def finish_dirs(self, dirs: list[tuple[list[str], os.stat_result]]) -> None:
        for parts, st in reversed(dirs):  # deepest last written first: times stay as copied
            os.utime(self.path(parts), ns=(st.st_atime_ns, st.st_mtime_ns))


def _entries(src: Source):
    """(relative parts below the source, host path, stat) of a source, itself first ([])."""
    if src.kind == "image":
        view = LayerView(src.layers)
        top = view.resolve(src.rel)
        if view.stat(top) is None:
            raise RootlessError(f"no such file or directory in the image: {src.rel}")
        for parts, st, real in view.walk(top):
            yield parts[len(top) :], real, st
        return
    if src.kind == "file":
        yield [], src.rel, os.stat(src.rel)
        return
    from rootless.build.context import Ignore

    ign = Ignore(src.ignore_lines)
    top = os.path.join(src.root, src.rel) if src.rel else src.root
    yield [], top, os.stat(top)  # a named source that is a symlink is followed
    if not os.path.isdir(top):
        return
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, src.root)
        keep = []
        for name in dirnames + sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            is_dir = name in dirnames and stat.S_ISDIR(st.st_mode)
            if ign.ignored(rel):
                if is_dir and ign.descend_ignored:  # a `!` rule may bring back files below
                    keep.append(name)
                continue
            if is_dir:
                keep.append(name)
            yield split(os.path.relpath(full, top)), full, st
        dirnames[:] = keep


def _is_archive(path: str) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError):
        return False


def _extract(layer: _Layer, path: str, parts: list[str]) -> None:
    """Unpack an archive below `parts` with rootless.image.layer's safe extractor (no entry can
    leave the destination), then apply --chown."""
    import tarfile

    from rootless.image import layer as imglayer

    dest = layer.path(parts)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    ex = imglayer.Extraction(root_fd)
    try:
        with tarfile.open(path, "r:*") as tf:
            for ti in tf:
                ex.entry(tf, ti)
        ex.finish()
    except tarfile.TarError as e:
        raise RootlessError(f"ADD: {os.path.basename(path)} is not a valid archive: {e}") from None
    except imglayer.LayerError as e:
        raise RootlessError(f"ADD: {e}") from None
    finally:
        ex.close()
        os.close(root_fd)
    if layer.owner is not None:
        for dirpath, dirnames, filenames in os.walk(dest):
            for n in dirnames + filenames:
                os.chown(os.path.join(dirpath, n), *layer.owner, follow_symlinks=False)


def make_copy_layer(tmp: str, job: CopyJob) -> None:
    """`make` for rootless.build.commit.add_layer_dir: fill tmp/diff with the copy."""
    out = os.path.join(tmp, "diff")
    os.mkdir(out, 0o755)
    view = LayerView(job.lower)
    owner = None
    if job.chown:
        user, _, group = job.chown.partition(":")
        owner = lookup_ids(view, user, group or None)
    layer = _Layer(out, view, owner, job.chmod)
    dest = job.dest if job.dest.startswith("/") else os.path.join(job.workdir or "/", job.dest)
    try:
        dparts = view.resolve(dest)
    except OSError as e:
        raise RootlessError(f"{job.what}: resolving {job.dest}: {e.strerror}") from None
    dst = view.stat(dparts)
    into_dir = (
        job.dest.endswith(("/", "/.", "/.."))
        or job.dest in (".", "..")
        or not dparts
        or (dst is not None and stat.S_ISDIR(dst.st_mode))
    )
    if len(job.sources) > 1 and not into_dir:
        raise RootlessError(
            f"{job.what}: with more than one source file, the destination must be a directory "
            f"and end with a /: {job.dest}"
        )
    for src in job.sources:
        _copy_one(layer, src, dparts, into_dir, job)


def _copy_one(layer: _Layer, src: Source, dparts: list[str], into_dir: bool, job) -> None:
    entries = _entries(src)
    try:
        _, top_path, top_st = next(entries)
    except FileNotFoundError as e:
        raise RootlessError(f"{job.what}: {src.rel}: {e.strerror}") from None
    default_owner = (top_st.st_uid, top_st.st_gid) if src.kind == "image" else (0, 0)
    if stat.S_ISDIR(top_st.st_mode):
        layer.ensure_dir(dparts, job.what)
        dirs = []
        for rel, path, st in entries:
            own = (st.st_uid, st.st_gid) if src.kind == "image" else (0, 0)
            if len(rel) > 1 and not os.path.isdir(layer.path(dparts + rel[:-1])):
                layer.ensure_dir(dparts + rel[:-1], job.what)  # below an ignored directory
            layer.put(path, st, dparts + rel, own)
            if stat.S_ISDIR(st.st_mode):
                dirs.append((dparts + rel, st))
        layer.finish_dirs(dirs)
        return
    if job.extract and src.kind == "context" and _is_archive(top_path):
        layer.ensure_dir(dparts, job.what)
        _extract(layer, top_path, dparts)
        return
    name = src.name or os.path.basename(src.rel.rstrip("/"))
    target = dparts + [name] if into_dir else dparts
    if not target:
        raise RootlessError(f"{job.what}: cannot copy a file onto /")
    layer.ensure_dir(target[:-1], job.what)
    mtime_ns = None
    if src.kind == "file":  # downloaded: 0600 and the server's time
        layer.chmod = layer.chmod if layer.chmod is not None else 0o600
        mtime_ns = int(src.mtime * 1e9) if src.mtime else None
    try:
        layer.put(top_path, top_st, target, default_owner, mtime_ns)
    except OSError as e:
        if e.errno == errno.EACCES:
            raise RootlessError(f"{job.what}: cannot read {src.rel}: permission denied") from None
        raise
