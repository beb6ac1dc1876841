"""`cp`: copying between the host and containers, and between containers, as podman 4.3 does.

An argument is `CONTAINER:PATH` or a host path (one starting with `.` or `/` is always a host
path); `-` is a tar archive on stdin or stdout. The decisions are podman's (cmd/podman/containers/
cp.go): a source `DIR/.` copies DIR's contents, a destination that exists and is a directory
receives the source under its own name, one that does not exist names the copy (its parent must
exist; with a trailing `/` it must exist itself), a directory never lands on a file. The
container's side is a copier process (rootless.runtime.copier) and the tar stream is passed between
the sides through a pipe. Ownership: with --archive (the default) the copied files belong to the
container's user (its uid and gid in the container), without it they keep the archive's ids (the
host user's files are the container's root, as in podman's user namespace); on the host every file
belongs to the user who copies.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from rootless.errors import ContainerError, RootlessError
from rootless.runtime import archive, state
from rootless.runtime.copier import Copier, CopyFailed


def parse_arg(arg: str) -> tuple[str | None, str]:
    """(container or None, path), as podman's copy.ParseSourceAndDestination splits it."""
    if not arg or arg[0] in "./":
        return None, arg
    name, sep, path = arg.partition(":")
    return (name, path) if sep else (None, arg)


def _dot(path: str) -> bool:
    """Whether path names a directory's contents (`DIR/.`, `.`; a container's `/` too)."""
    return path == "." or path.endswith("/.")


def _reason(err: int, fallback: str = "") -> str:
    return os.strerror(err).lower() if err else fallback


def _open(name: str) -> Copier:
    try:
        rec = state.lookup(name)
    except state.NoSuchContainer:
        raise ContainerError(f'container "{name}" does not exist') from None
    return Copier(rec)


def _ctr_stat(cop: Copier, name: str, path: str, shown: str) -> dict:
    try:
        return cop.call("stat", path)
    except CopyFailed as e:
        raise ContainerError(
            f'"{shown}" could not be found on container {name}: {_reason(e.errno, str(e))}'
        ) from None


def _host_missing(path: str, e: OSError) -> RootlessError:
    return RootlessError(f'"{path}" could not be found on the host: {_reason(e.errno, str(e))}')


def _host_ids():
    """Host ids -> the container's (the user is root; unmapped ids are the overflow id)."""
    from rootless import idmap

    try:
        m = idmap.for_user()
    except RootlessError:
        m = None

    def tr(kind: str, value: int) -> int:
        if value == (os.getuid() if kind == "uid" else os.getgid()):
            return 0
        try:
            if m is not None:
                return m.to_container_uid(value) if kind == "uid" else m.to_container_gid(value)
        except RootlessError:
            pass
        return 65534

    return lambda uid, gid: (tr("uid", uid), tr("gid", gid))


def _dest_in_container(cop: Copier, name: str, path: str, src_is_dir: bool, src_base: str,
                       dot: bool) -> tuple[str, str | None]:  # fmt: skip
    """(directory to extract into, the name the source gets there or None for its contents)."""
    try:
        info = cop.call("stat", path)
    except CopyFailed as e:
        if path.endswith("/") or e.errno != errno.ENOENT:
            raise ContainerError(
                f'"{path}" could not be found on container {name}: {_reason(e.errno, str(e))}'
            ) from None
        target = cop.call("resolve", path)["resolved"]  # a dangling symlink: its target
        parent = _ctr_stat(cop, name, posixpath.dirname(target) or "/", path)
        if not parent["is_dir"]:
            raise ContainerError(
                f'"{path}" could not be found on container {name}: not a directory'
            ) from None
        return parent["resolved"], posixpath.basename(target)
    if info["is_dir"]:
        return info["resolved"], None if (src_is_dir and dot) else src_base
    if path.endswith("/"):
        raise ContainerError(
            f'copying to container: "{info["resolved"]}" exists but is not a directory'
        )
    if src_is_dir:
        raise ContainerError("destination must be a directory when copying a directory")
    return posixpath.dirname(info["resolved"]), posixpath.basename(info["resolved"])


def _finish(pipe_ends: list[int], *copiers: Copier, first: BaseException | None = None) -> None:
    for fd in pipe_ends:
        try:
            os.close(fd)
        except OSError:
            pass
    err = first
    for cop in copiers:
        try:
            cop.reply()
        except CopyFailed as e:
            if err is None:
                err = ContainerError(f"copying {'to' if cop.putting else 'from'} container: {e}")
    if err is not None:
        raise err


def to_container(host: str, name: str, path: str, *, archive_ids: bool, overwrite: bool) -> None:
    stdin = host == "-"
    if not stdin:
        try:
            st_dir = stat.S_ISDIR(os.stat(host).st_mode)
        except OSError as e:
            raise _host_missing(host, e) from None
    cop = _open(name)
    try:
        if stdin:
            try:
                info = cop.call("stat", path)
            except CopyFailed as e:
                if path.endswith("/"):
                    raise ContainerError(f'"{path}" could not be found on container {name}: '
                                         f"{_reason(e.errno, str(e))}") from None  # fmt: skip
                info = {"is_dir": False}
            if not info["is_dir"]:
                raise ContainerError("destination must be a directory when copying from stdin")
            cop.putting = True
            try:
                cop.call("put", info["resolved"], 0, archive=archive_ids, overwrite=overwrite)
            except CopyFailed as e:
                if e.errno == errno.EINVAL and str(e) == "not a tar archive":
                    raise ContainerError(
                        "source must be a (compressed) tar archive when copying from stdin"
                    ) from None
                raise ContainerError(f"copying to container: {e}") from None
            return
        real = os.path.realpath(host)
        dot = st_dir and _dot(host)
        dest, top = _dest_in_container(cop, name, path, st_dir, os.path.basename(real), dot)
        cop.putting = True
        r, w = os.pipe()
        cop.send("put", dest, r, archive=archive_ids, overwrite=overwrite)
        os.close(r)
        try:
            archive.write_tar(real, w, top=top, idmap=_host_ids())
        except BrokenPipeError:
            pass  # the copier failed: its reply says why
        except OSError as e:
            _finish([], cop, first=RootlessError(f"copying from host: {e}"))
        _finish([], cop)
    finally:
        cop.close()


def from_container(name: str, path: str, host: str, *, overwrite: bool) -> None:
    cop = _open(name)
    cop.putting = False
    try:
        cpath = "/." if path == "/" else path
        info = _ctr_stat(cop, name, cpath, path)
        dot = info["is_dir"] and _dot(cpath)
        src_base = posixpath.basename(info["resolved"]) or "/"
        if host == "-":
            cop.call("get", info["resolved"], 1, top=None if dot else src_base)
            return
        try:
            if stat.S_ISDIR(os.stat(host).st_mode):
                dest, top = host, (None if dot else src_base)
            elif info["is_dir"]:
                raise RootlessError("destination must be a directory when copying a directory")
            else:
                real = os.path.realpath(host)
                dest, top = os.path.dirname(real), os.path.basename(real)
        except OSError as e:
            if host.endswith("/"):
                raise _host_missing(host, e) from None
            parent = os.path.dirname(host.rstrip("/")) or "."
            if not os.path.isdir(parent):
                raise _host_missing(host, e) from None
            dest, top = parent, os.path.basename(host.rstrip("/"))
        r, w = os.pipe()
        cop.send("get", info["resolved"], w, top=top)
        os.close(w)
        try:
            archive.extract_tar(r, dest, chown=False, overwrite=overwrite, devices=False)
        except (OSError, archive.NotATar) as e:
            text = getattr(e, "strerror", None) or str(e) or "no archive"
            _finish([], cop, first=RootlessError(f"copying to host: {text}"))
        _finish([], cop)
    finally:
        cop.close()


def between(src: str, spath: str, dst: str, dpath: str, *, archive_ids: bool,
            overwrite: bool) -> None:  # fmt: skip
    a = _open(src)
    try:
        b = _open(dst)
    except BaseException:
        a.close()
        raise
    a.putting, b.putting = False, True
    try:
        cpath = "/." if spath == "/" else spath
        info = _ctr_stat(a, src, cpath, spath)
        dot = info["is_dir"] and _dot(cpath)
        src_base = posixpath.basename(info["resolved"]) or "/"
        dest, top = _dest_in_container(b, dst, dpath, info["is_dir"], src_base, dot)
        r, w = os.pipe()
        a.send("get", info["resolved"], w, top=top)
        b.send("put", dest, r, archive=archive_ids, overwrite=overwrite)
        _finish([r, w], a, b)
    finally:
        a.close()
        b.close()


def copy(src: str, dst: str, *, archive_ids: bool = True, overwrite: bool = False) -> None:
    """podman's `cp SRC DST` (see the module docstring)."""
    sname, spath = parse_arg(src)
    dname, dpath = parse_arg(dst)
    if not spath or not dpath:
        raise RootlessError(f'invalid arguments "{src}", "{dst}": you must specify paths')
    if sname is not None and dname is not None:
        between(sname, spath, dname, dpath, archive_ids=archive_ids, overwrite=overwrite)
    elif sname is not None:
        from_container(sname, spath, dpath, overwrite=overwrite)
    elif dname is not None:
        to_container(spath, dname, dpath, archive_ids=archive_ids, overwrite=overwrite)
    else:
        raise RootlessError("name or ID cannot be empty")


# ---- the Docker API's archive endpoints (rootless.api.archive) ----------------------------------


def stat_in(name: str, path: str) -> dict:
    """What `path` is in container `name` (archive.stat_path's keys); ContainerError if missing."""
    cop = _open(name)
    try:
        return _ctr_stat(cop, name, "/." if path == "/" else path, path)
    finally:
        cop.close()


def get_tar(name: str, path: str) -> tuple[dict, bytes]:
    """`path` of container `name` as a tar (a directory under its own name; `DIR/.`: its contents)."""
    import tempfile

    cop = _open(name)
    try:
        cpath = "/." if path == "/" else path
        info = _ctr_stat(cop, name, cpath, path)
        top = (
            None if info["is_dir"] and _dot(cpath) else posixpath.basename(info["resolved"]) or "/"
        )
        with tempfile.TemporaryFile() as f:
            try:
                cop.call("get", info["resolved"], f.fileno(), top=top)
            except CopyFailed as e:
                raise ContainerError(f"copying from container: {e}") from None
            f.seek(0)
            return info, f.read()
    finally:
        cop.close()


def put_tar(name: str, path: str, data: bytes, *, archive_ids: bool, overwrite: bool) -> None:
    """Extract the tar `data` into the existing directory `path` of container `name`."""
    import tempfile

    cop = _open(name)
    cop.putting = True
    try:
        info = _ctr_stat(cop, name, path, path)
        if not info["is_dir"]:
            raise ContainerError(f"extraction point is not a directory: {path}")
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.flush()
            f.seek(0)
            try:
                cop.call(
                    "put", info["resolved"], f.fileno(), archive=archive_ids, overwrite=overwrite
                )
            except CopyFailed as e:
                raise ContainerError(f"copying to container: {e}") from None
    finally:
        cop.close()
