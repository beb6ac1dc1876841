"""Container endpoints: create, json (list), inspect, start, stop, restart, kill, wait, delete,
prune, rename, top, stats, pause/unpause (501: rootless has no freezer yet), onto
rootless.runtime.api (rootless.api.ctrconfig translates the configuration both ways; logs and
attach are rootless.api.ctrstreams').

Docker's status codes: 404 ``No such container: X``, 409 for a container in the wrong state or a
name in use, 304 for a start of a running (or a stop of a stopped) container, 400 for bad
parameters. Every wait is bounded or ends with the container (or the client).
"""

from __future__ import annotations

import re
import threading
import time

from rootless.api import ctrconfig
from rootless.api.protocol import (
    ApiError,
    Request,
    Response,
    Stream,
    check_params,
    json_lines,
    not_implemented,
    once,
    route,
)
from rootless.errors import RootlessError


def _api():
    from rootless.runtime import api

    return api


def find(name: str):
    """The container for a name (a leading / allowed), id or id prefix; 404 if none."""
    from rootless.runtime.state import NoSuchContainer

    try:
        return _api().get(name.lstrip("/"))
    except NoSuchContainer:
        raise ApiError(404, f"No such container: {name}") from None


def _bad(e: RootlessError, status: int = 400) -> ApiError:
    return ApiError(status, str(e))


# --- create, list, inspect ---------------------------------------------------------------------------


@route("POST", "/containers/create")
def create(req: Request):
    check_params(req, ("name", "platform"))
    from rootless.api.images import find as find_image

    name = (req.param("name") or "").lstrip("/") or None
    body = req.json()
    opts = ctrconfig.run_options(body, name)
    find_image(opts.image)  # Docker's 404 (the client pulls, then creates again)
    try:
        rec = _api().create_only(opts)
    except RootlessError as e:
        text = str(e)
        if "already in use" in text:
            raise ApiError(
                409, f'Conflict. The container name "/{name}" is already in use: {text}'
            ) from None
        raise _bad(e) from None
    return Response(201, _json({"Id": rec.id, "Warnings": []}))


def _json(value) -> bytes:
    import json

    return json.dumps(value).encode()


_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
_FILTERS = ("id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume",
            "network", "health")  # fmt: skip


def filters_of(req: Request, known=_FILTERS) -> dict[str, list[str]]:
    """Docker's `filters` JSON ({"key": ["v"]} or {"key": {"v": true}}) as lists of values."""
    raw = req.json_param("filters", {}) or {}
    if not isinstance(raw, dict):
        raise ApiError(400, "filters: expected a JSON object")
    out = {}
    for key, values in raw.items():
        if key not in known:
            raise ApiError(400, f"invalid filter '{key}'")
        vals = [k for k, v in values.items() if v] if isinstance(values, dict) else list(values)
        out[key] = [str(v) for v in vals]
    for v in out.get("status", []):
        if v not in _STATUSES:
            raise ApiError(400, f"invalid filter 'status={v}'")
    return out


def select(req: Request, all_: bool):
    from rootless.runtime import listing

    filters = filters_of(req)
    names = filters.pop("name", [])
    try:
        out = listing.select(_api().containers(), filters, all_=all_)
    except RootlessError as e:
        raise _bad(e) from None
    if names:  # Docker matches names with their leading slash
        out = [r for r in out if any(re.search(n, "/" + r.name) for n in names)]
    return out


@route("GET", "/containers/json")
def list_containers(req: Request):
    check_params(req, ("all", "filters", "limit", "size"))
    recs = select(req, req.flag("all"))
    recs.sort(key=lambda r: r.created, reverse=True)  # Docker: newest first
    limit = req.int_param("limit", -1)
    if limit is not None and limit > 0:
        recs = recs[:limit]
    return [ctrconfig.summary(r) for r in recs]


@route("GET", "/containers/{name}/json")
def inspect(req: Request):
    return ctrconfig.inspect(find(req.args["name"]))


# --- start, stop, restart, kill, pause ----------------------------------------------------------------

_STARTS: dict[str, float] = {}  # container id -> when this server last started it (for next-exit)
_STARTS_LOCK = threading.Lock()


@route("POST", "/containers/{name}/start")
def start(req: Request):
    rec = find(req.args["name"])
    if rec.state in _api().ACTIVE:
        return Response(304, b"")
    with _STARTS_LOCK:
        _STARTS[rec.id] = time.time()
    try:
        _api().start(rec)
    except RootlessError as e:
        raise ApiError(500, str(e)) from None
    return Response(204, b"")


def _timeout(req: Request) -> float:
    t = req.int_param("t", None)
    if t is None:
        t = req.int_param("timeout", 10)
    return 10.0 if t is None else max(float(t), 0.0)


@route("POST", "/containers/{name}/stop")
def stop(req: Request):
    rec = find(req.args["name"])
    if rec.state not in _api().ACTIVE and not rec.restarting:
        return Response(304, b"")
    _api().stop(rec, _timeout(req))
    return Response(204, b"")


@route("POST", "/containers/{name}/restart")
def restart(req: Request):
    api = _api()
    rec = find(req.args["name"])
    api.stop(rec, _timeout(req))
    with _STARTS_LOCK:
        _STARTS[rec.id] = time.time()
    try:
        api.start(api.get(rec.id))
    except RootlessError as e:
        raise ApiError(500, str(e)) from None
    return Response(204, b"")


@route("POST", "/containers/{name}/kill")
def kill(req: Request):
    api = _api()
    rec = find(req.args["name"])
    try:
        sig = api.parse_signal(req.param("signal") or "KILL")
    except RootlessError as e:
        raise _bad(e) from None
    if rec.state not in api.ACTIVE:
        raise ApiError(409, f"Cannot kill container: {req.args['name']}: Container {rec.id} "
                            "is not running")  # fmt: skip
    try:
        api.kill(rec, sig)
    except RootlessError as e:
        raise ApiError(409, str(e)) from None
    return Response(204, b"")


@route("POST", "/containers/{name}/resize")
def resize(req: Request):
    """Accepted and ignored, as exec's: the detached monitor's pty keeps its size (docs/api.md)."""
    find(req.args["name"])
    once("POST /containers/{id}/resize: ignored (rootless keeps the pty's size)")
    return Response(200, b"")


@route("POST", "/containers/{name}/pause")
@route("POST", "/containers/{name}/unpause")
def pause(req: Request):
    find(req.args["name"])
    raise not_implemented(f"POST /containers/{{id}}/{req.path.rsplit('/', 1)[1]}")


# --- wait ----------------------------------------------------------------------------------------------


def _exit_file_code(cid: str) -> tuple[bool, int | None]:
    """(whether a removed --rm container left its exit code, the code)."""
    import os

    from rootless import paths
    from rootless.runtime import state

    if not re.fullmatch(r"[0-9a-f]{64}", cid):
        return False, None
    return os.path.exists(os.path.join(paths.runtime_dir(), "exits", cid)), state.read_exit(cid)


@route("POST", "/containers/{name}/wait")
def wait(req: Request):
    check_params(req, ("condition",))
    condition = req.param("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(400, f"invalid condition: {condition!r}")
    name = req.args["name"]
    try:
        rec = find(name)
    except ApiError:
        gone, code = _exit_file_code(name)
        if not gone:  # an --rm container that exited before this request: its code is kept
            raise
        return {"StatusCode": -1 if code is None else code, "Error": None}
    with _STARTS_LOCK:
        started_here = _STARTS.pop(rec.id, None) if condition == "next-exit" else None
    if started_here is not None and time.time() - started_here > 30:
        started_here = None  # not the start this wait was sent along with
    return Stream(json_lines(_wait(rec, condition, started_here)))


def _wait(rec, condition: str, started_here: float | None):
    """Yield the wait's answer once the condition holds (the headers went out at once, as
    Docker's: the client starts the container after sending this request)."""
    from rootless.runtime import manage, state

    initial = (rec.started, rec.state)
    while True:
        fresh = state.load(rec.id)
        if fresh is None:  # removed
            code = state.read_exit(rec.id)
            break
        fresh = state.refresh(fresh)
        settled = fresh.state not in manage.ACTIVE and not fresh.restarting and not (
            fresh.state == "created" and fresh.alive("monitor"))  # fmt: skip
        if condition == "not-running" and settled:
            code = fresh.exit_code
            break
        if condition == "next-exit" and settled:
            ran_since = (fresh.started, fresh.state) != initial and fresh.state == "exited"
            was_running = initial[1] in manage.ACTIVE
            just_ran = started_here is not None and (fresh.started or 0) >= started_here - 1
            if ran_since or was_running or (just_ran and fresh.state == "exited"):
                code = fresh.exit_code
                break
        yield b""  # nothing yet: the server checks that the client is still there
        time.sleep(0.1)
    yield {"StatusCode": -1 if code is None else code, "Error": None}


# --- delete, prune, rename --------------------------------------------------------------------------


@route("DELETE", "/containers/{name}")
def delete(req: Request):
    check_params(req, ("force", "v", "link"))
    api = _api()
    rec = find(req.args["name"])
    force = req.flag("force")
    if rec.state in api.ACTIVE and not force:
        raise ApiError(409, f"You cannot remove a running container {rec.id}. Stop the container "
                            "before attempting removal or force remove")  # fmt: skip
    try:
        api.remove(rec, force=force, volumes=req.flag("v"))
    except RootlessError as e:
        raise ApiError(409, str(e)) from None
    return Response(204, b"")


@route("POST", "/containers/prune")
def prune(req: Request):
    filters = filters_of(req, ("label", "label!", "until"))
    from rootless.runtime import listing

    api = _api()
    deleted = []
    for r in listing.select(api.containers(), filters, all_=True):
        if r.state in api.ACTIVE or r.alive("monitor") or r.restarting:
            continue
        try:
            api.remove(r)
        except RootlessError:
            continue  # a pod's infra container goes with its pod
        deleted.append(r.id)
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": 0}


@route("POST", "/containers/{name}/rename")
def rename(req: Request):
    """The record's name (a running container keeps the names it registered on its networks
    until it starts again)."""
    from rootless.runtime import state

    rec = find(req.args["name"])
    new = (req.param("name") or "").lstrip("/")
    if not new or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", new):
        raise ApiError(400, f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                            "are allowed")  # fmt: skip
    with state.lock():
        if any(r.name == new and r.id != rec.id for r in state.list_records()):
            raise ApiError(409, f'Conflict. The container name "/{new}" is already in use')
        fresh = state.load(rec.id)
        if fresh is None:
            raise ApiError(404, f"No such container: {req.args['name']}")
        fresh.name = new
        fresh.save(locked=True)
    return Response(204, b"")


# --- top, stats ----------------------------------------------------------------------------------------


@route("GET", "/containers/{name}/top")
def top(req: Request):
    from rootless.runtime import top as T

    rec = find(req.args["name"])
    if rec.state not in _api().ACTIVE:
        raise ApiError(409, f"Container {rec.id} is not running")
    args = (req.param("ps_args") or "").strip()
    descriptors = [] if args in ("", "-ef", "-e", "aux", "-aux", "ef") else args.split()
    try:
        rows = T.top(rec, descriptors)
    except RootlessError as e:
        raise _bad(e, 409 if "not running" in str(e) else 400) from None
    return {"Titles": rows[0], "Processes": rows[1:]}


@route("GET", "/containers/{name}/stats")
def stats(req: Request):
    from rootless.api import ctrstats

    check_params(req, ("stream", "one-shot"))
    rec = find(req.args["name"])
    if not req.flag("stream", True):
        return ctrstats.one(rec, one_shot=req.flag("one-shot"))
    return Stream(json_lines(ctrstats.stream(rec)))
