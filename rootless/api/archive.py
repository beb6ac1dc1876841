"""Docker API: the archive endpoints (`docker cp`, the SDK's get_archive/put_archive): a path of a
container, running or stopped, as a tar with its X-Docker-Container-Path-Stat, and a tar extracted
into a directory of it; thin over rootless.runtime.cp."""

from __future__ import annotations

import base64
import json
import stat
import time

from rootless.api.containers import find
from rootless.api.protocol import ApiError, Request, Response, route
from rootless.errors import ContainerError

# Go's os.FileMode bits for the types Docker's path stat reports
_GO_TYPES = ((stat.S_ISDIR, 1 << 31), (stat.S_ISLNK, 1 << 27), (stat.S_ISFIFO, 1 << 25),
             (stat.S_ISSOCK, 1 << 24), (stat.S_ISCHR, (1 << 26) | (1 << 21)), (stat.S_ISBLK, 1 << 26))  # fmt: skip


def _go_mode(mode: int) -> int:
    out = mode & 0o777
    out |= (1 << 23 if mode & stat.S_ISUID else 0) | (1 << 22 if mode & stat.S_ISGID else 0)
    out |= 1 << 20 if mode & stat.S_ISVTX else 0
    return out | next((bit for test, bit in _GO_TYPES if test(mode)), 0)


def _stat_header(path: str, info: dict) -> tuple[str, str]:
    mtime = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(info["mtime"]))
    name = path.rstrip("/").rsplit("/", 1)[-1] or "/"
    value = {"name": name, "size": info["size"], "mode": _go_mode(info["mode"]),
             "mtime": f"{mtime}Z", "linkTarget": info["link"]}  # fmt: skip
    return ("X-Docker-Container-Path-Stat", base64.b64encode(json.dumps(value).encode()).decode())


def _path(req: Request) -> str:
    path = req.param("path")
    if not path:
        raise ApiError(400, "bad parameter: path cannot be empty")
    return path


@route("HEAD", "/containers/{name}/archive")
@route("GET", "/containers/{name}/archive")
def get_archive(req: Request):
    from rootless.runtime import cp

    rec, path = find(req.args["name"]), _path(req)
    try:
        if req.method == "HEAD":
            return Response(
                200, b"", "application/x-tar", (_stat_header(path, cp.stat_in(rec.name, path)),)
            )
        info, data = cp.get_tar(rec.name, path)
    except ContainerError as e:
        raise ApiError(404, str(e)) from None
    return Response(200, data, "application/x-tar", (_stat_header(path, info),))


@route("PUT", "/containers/{name}/archive")
def put_archive(req: Request):
    from rootless.runtime import cp

    rec, path = find(req.args["name"]), _path(req)
    try:
        cp.put_tar(rec.name, path, req.body, archive_ids=req.flag("copyUIDGID"),
                   overwrite=not req.flag("noOverwriteDirNonDir"))  # fmt: skip
    except ContainerError as e:
        status = 400 if "not a directory" in str(e) or "tar archive" in str(e) else 404
        raise ApiError(status, str(e)) from None
    return Response(200, b"", "text/plain")
