"""Volume endpoints: list (filters), create, inspect, delete (force) and prune, onto rootless.volumes
with Docker's JSON shapes and status codes (404 no such volume, 409 in use)."""

from __future__ import annotations

from rootless.api.protocol import (
    ApiError,
    Request,
    Response,
    check_params,
    json_response,
    route,
)


def _docker(vol) -> dict:
    """A volume as Docker shows it."""
    data = vol.inspect()
    return {"Name": data["Name"], "Driver": data["Driver"], "Mountpoint": data["Mountpoint"],
            "CreatedAt": data["CreatedAt"], "Labels": data["Labels"] or None, "Scope": "local",
            "Options": data["Options"] or None}  # fmt: skip


def _filters(req: Request) -> dict[str, list[str]]:
    raw = req.json_param("filters", {}) or {}
    out = {}
    for key, values in raw.items():
        # Docker sends {"label": {"a=b": true}} (old clients) or {"label": ["a=b"]}
        out[key] = (
            [v for v, on in values.items() if on] if isinstance(values, dict) else list(values)
        )
    return out


def _get(name: str):
    from rootless.volumes import store

    try:
        return store.get(name)
    except store.NoSuchVolume:
        raise ApiError(404, f"get {name}: no such volume") from None


@route("GET", "/volumes")
def list_volumes(req: Request):
    from rootless.volumes import manage

    check_params(req, ("filters",))
    return json_response({"Volumes": [_docker(v) for v in manage.listing(_filters(req))],
                          "Warnings": []})  # fmt: skip


@route("POST", "/volumes/create")
def create(req: Request):
    from rootless.volumes import store

    body = req.json({}) or {}
    name = body.get("Name") or None
    if name is not None:
        existing = store.find(name)
        if existing is not None and existing.name == name:
            return json_response(_docker(existing), 201)  # Docker: create is idempotent
    vol = store.create(name, labels=body.get("Labels") or {}, options=body.get("DriverOpts") or {},
                       driver=body.get("Driver") or "local")  # fmt: skip
    return json_response(_docker(vol), 201)


@route("GET", "/volumes/{name}")
def inspect(req: Request):
    return json_response(_docker(_get(req.args["name"])))


@route("DELETE", "/volumes/{name}")
def delete(req: Request):
    from rootless.volumes import manage

    check_params(req, ("force",))
    vol = _get(req.args["name"])
    try:
        manage.remove(vol.name, force=req.flag("force"), timeout=10)
    except manage.store.VolumeError as e:
        if e.exit_code == manage.EXIT_IN_USE:
            raise ApiError(409, f"remove {vol.name}: volume is in use") from None
        raise
    return Response(204, b"")


@route("POST", "/volumes/prune")
def prune(req: Request):
    from rootless.volumes import manage

    check_params(req, ("filters",))
    filters = {k: v for k, v in _filters(req).items() if k != "all"}  # API >= 1.42: all=true
    return json_response({"VolumesDeleted": manage.prune(filters), "SpaceReclaimed": 0})
