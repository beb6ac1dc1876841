"""Docker API: POST /build (`docker build`, the SDK's images.build): the tar context extracted into
a private directory, rootless.build run on it in a forked child whose output becomes Docker's JSON
stream ({"stream": ...} lines, then {"aux": {"ID": ...}} and "Successfully built/tagged"), or its
last line an {"error": ...} message."""

from __future__ import annotations

import os
import shutil
import tempfile

from rootless.api.protocol import ApiError, Request, Stream, check_params, json_lines, route

_PARAMS = ("t", "dockerfile", "buildargs", "labels", "target", "nocache", "pull", "q", "rm",
           "forcerm", "platform", "networkmode", "remote", "cachefrom", "memory", "memswap",
           "cpushares", "cpusetcpus", "cpuperiod", "cpuquota", "shmsize", "squash", "extrahosts",
           "outputs", "version", "session", "ulimits", "cgroupparent", "isolation", "buildid",
           "labels", "securityopt")  # fmt: skip


def _json_map(req: Request, name: str) -> dict[str, str]:
    value = req.json_param(name, {}) or {}
    if not isinstance(value, dict):
        raise ApiError(400, f"{name}: a JSON object is expected")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _dockerfile(context: str, name: str | None) -> str | None:
    """?dockerfile= names a file inside the context (never outside it)."""
    if not name:
        return None
    path = os.path.normpath(os.path.join(context, name.lstrip("/")))
    if not path.startswith(context + os.sep):
        raise ApiError(400, f"dockerfile={name}: not inside the build context")
    return path


def _options(req: Request, context: str, iidfile: str):
    from rootless.build.builder import BuildOptions

    if req.param("remote"):
        raise ApiError(
            501, "remote build contexts are not implemented by rootless (see docs/api.md)"
        )
    network = req.param("networkmode") or "slirp4netns"
    network = "slirp4netns" if network in ("default", "bridge") else network
    return BuildOptions(
        context=context, file=_dockerfile(context, req.param("dockerfile")), file_text=None,
        tags=list(req.query.get("t", [])), build_args=_json_map(req, "buildargs"),
        target=req.param("target") or None, no_cache=req.flag("nocache"),
        pull="always" if req.flag("pull") else "missing", layers=True,
        squash=req.flag("squash"), labels=_json_map(req, "labels"),
        platform=req.param("platform") or None, quiet=False, iidfile=iidfile, network=network,
        security_opts=[], cap_add=[], cap_drop=[], fmt="docker", storage_driver=None,
    )  # fmt: skip


def _extract(body: bytes, work: str, dest: str) -> None:
    from rootless.runtime import archive

    path = os.path.join(work, "context.tar")
    with open(path, "wb") as f:
        f.write(body)
    try:
        archive.extract_tar(
            os.open(path, os.O_RDONLY | os.O_CLOEXEC), dest, chown=False, devices=False
        )
    except archive.NotATar:
        raise ApiError(400, "the build context must be a (compressed) tar archive") from None
    finally:
        os.unlink(path)


@route("POST", "/build")
def build(req: Request):
    check_params(req, _PARAMS)
    from rootless import paths

    os.makedirs(paths.runtime_dir(), mode=0o700, exist_ok=True)
    work = tempfile.mkdtemp(prefix="build-", dir=paths.runtime_dir())
    try:
        context = os.path.join(work, "context")
        os.mkdir(context)
        _extract(req.body, work, context)
        opts = _options(req, context, os.path.join(work, "iid"))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Stream(json_lines(_run(opts, work, req.flag("q"))))


def _run(opts, work: str, quiet: bool):
    """The build in a child (its stdout and stderr a pipe), streamed as Docker's JSON lines."""
    from rootless import process

    r, w = os.pipe()

    def child() -> int:
        from rootless.build.builder import build as run_build

        os.dup2(w, 1)
        os.dup2(w, 2)
        run_build(opts)
        return 0

    last = ""
    try:
        proc = process.fork(child, context="building the image",
                            report=lambda _code, message: os.write(2, f"Error: {message}\n".encode()))  # fmt: skip
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as out:
            r = -1
            for line in out:
                text = line.decode(errors="replace")
                last = text.strip() or last
                if not quiet:
                    yield {"stream": text}
        code = proc.wait()
        if code != 0:
            message = last.removeprefix("Error: ") or f"the build failed (exit {code})"
            yield {"errorDetail": {"code": code, "message": message}, "error": message}
            return
        with open(opts.iidfile) as f:
            image_id = f.read().strip()
        yield {"aux": {"ID": image_id}}
        short = image_id.removeprefix("sha256:")[:12]
        yield {"stream": f"Successfully built {short}\n"}
        for tag in opts.tags:
            yield {
                "stream": f"Successfully tagged {tag if ':' in tag.rsplit('/', 1)[-1] else tag + ':latest'}\n"
            }
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(work, ignore_errors=True)
