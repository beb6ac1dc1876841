"""Image endpoints: create (pull, with Docker's progress JSON), json, inspect, tag, delete, push,
prune, get (save) and load, onto rootless.image."""

from __future__ import annotations

import queue
import threading

from rootless.api.protocol import (
    ApiError,
    Request,
    Response,
    Stream,
    check_params,
    json_lines,
    route,
)
from rootless.errors import RootlessError


def _store():
    from rootless.image.store import Store

    return Store.open()


def find(name: str):
    """The stored image for a name, id or id prefix (Docker's "sha256:" too); 404 if none."""
    from rootless.errors import ImageError

    try:
        rec = _store().lookup_image(name.removeprefix("sha256:") if _is_id(name) else name)
    except ImageError:
        rec = None
    if rec is None:
        raise ApiError(404, f"No such image: {name}")
    return rec


def _is_id(name: str) -> bool:
    h = name.removeprefix("sha256:")
    return len(h) >= 12 and all(c in "0123456789abcdef" for c in h)


def _created(rec) -> int:
    from rootless.commands.images import _created_ts

    return int(_created_ts(rec.created) or 0)


def summary(rec) -> dict:
    cfg = rec.config.get("config") or {}
    return {
        "Id": "sha256:" + rec.id,
        "ParentId": "",
        "RepoTags": rec.names or ["<none>:<none>"],
        "RepoDigests": rec.repo_digests,
        "Created": _created(rec),
        "Size": rec.size,
        "SharedSize": -1,
        "VirtualSize": rec.size,
        "Labels": cfg.get("Labels") or {},
        "Containers": -1,
    }


@route("GET", "/images/json")
def list_images(req: Request):
    check_params(req, ("all", "filters", "digests", "shared-size"))
    filters = req.json_param("filters", {}) or {}
    out = []
    for rec in _store().images():
        s = summary(rec)
        if not _matches(rec, s, filters):
            continue
        out.append(s)
    return out


def _matches(rec, s: dict, filters: dict) -> bool:
    for key, values in filters.items():
        values = (
            list(values) if not isinstance(values, dict) else [k for k, v in values.items() if v]
        )
        if key == "reference":
            import fnmatch

            names = [n for n in rec.names] + [n.rsplit("/", 1)[-1] for n in rec.names]
            pats = [v if ":" in v.rsplit("/", 1)[-1] else v + ":*" for v in values]
            if not any(fnmatch.fnmatch(n, p) for n in names for p in pats):
                return False
        elif key == "label":
            labels = s["Labels"]
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        elif key == "dangling":
            dangling = not rec.names
            if any(v.lower() in ("true", "1") for v in values) != dangling:
                return False
        else:
            raise ApiError(400, f"image filter {key!r} is not supported by rootless")
    return True


@route("GET", "/images/{name*}/json")
def inspect(req: Request):
    rec = find(req.args["name"])
    return inspect_data(rec)


def inspect_data(rec) -> dict:
    from rootless.commands.inspect import image_inspect_data

    cfg = rec.config
    inner = dict(cfg.get("config") or {})
    base = image_inspect_data(rec)
    return {
        "Id": "sha256:" + rec.id,
        "RepoTags": rec.names,
        "RepoDigests": rec.repo_digests,
        "Parent": base["Parent"],
        "Comment": base["Comment"],
        "Created": rec.created,
        "Container": "",
        "ContainerConfig": inner,
        "DockerVersion": base["Version"],
        "Author": base["Author"],
        "Config": inner,
        "Architecture": base["Architecture"],
        "Os": base["Os"],
        "Size": rec.size,
        "VirtualSize": rec.size,
        "GraphDriver": {"Name": "overlay2", "Data": {}},
        "RootFS": base["RootFS"],
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


@route("GET", "/images/{name*}/history")
def history(req: Request):
    rec = find(req.args["name"])
    out = []
    for h in reversed(rec.config.get("history") or []):
        out.append({"Id": "<missing>", "Created": 0, "CreatedBy": h.get("created_by", ""),
                    "Tags": None, "Size": 0, "Comment": h.get("comment", "")})  # fmt: skip
    if out:
        out[0]["Id"], out[0]["Tags"] = "sha256:" + rec.id, rec.names
    return out


@route("POST", "/images/{name*}/tag")
def tag(req: Request):
    from rootless.image import reference

    rec = find(req.args["name"])
    repo, tag_ = req.param("repo"), req.param("tag") or "latest"
    if not repo:
        raise ApiError(400, "tag needs a repo parameter")
    try:
        r = reference.parse(f"{repo}:{tag_}")
    except RootlessError as e:
        raise ApiError(400, str(e)) from None
    if r.is_short:
        r = reference.Reference("localhost", r.path, r.tag)
    _store().add_name(rec.id, str(r.defaulted()))
    return Response(201, b"")


@route("DELETE", "/images/{name*}")
def delete(req: Request):
    from rootless.image.remove import full_name as _full_name

    name = req.args["name"]
    force = req.flag("force")
    store = _store()
    rec = find(name)
    out = []
    if not _is_id(name):
        full = _full_name(rec, name)
        if full and len(rec.names) > 1:
            store.remove_name(rec.id, full)
            return [{"Untagged": full}]
        if full:
            out.append({"Untagged": full})
    elif len(rec.names) > 1 and not force:
        raise ApiError(
            409,
            f"conflict: unable to delete {rec.id[:12]} (must be forced) - image is referenced in multiple repositories",
        )
    users = store.image_in_use_check(rec.id)
    if users and not force:
        raise ApiError(
            409,
            f"conflict: unable to delete {name} (must be forced) - image is being used by container {users[0]}",
        )
    if users:  # Docker's force: the names go, the image stays under its containers
        for n in list(rec.names):
            store.remove_name(rec.id, n)
        return [{"Untagged": n} for n in rec.names]
    store.remove_image(rec.id)
    out.append({"Deleted": "sha256:" + rec.id})
    from rootless.build.cache import remove_unused_parents

    out += [{"Deleted": "sha256:" + p} for p in remove_unused_parents(store, rec.id)]
    return out


@route("POST", "/images/prune")
def prune(req: Request):
    filters = req.json_param("filters", {}) or {}
    dangling_only = True
    for key, values in filters.items():
        vals = list(values) if not isinstance(values, dict) else [k for k, v in values.items() if v]
        if key == "dangling":
            dangling_only = any(v.lower() in ("true", "1") for v in vals)
        else:
            raise ApiError(400, f"image prune filter {key!r} is not supported by rootless")
    store = _store()
    deleted = []
    for rec in store.images():
        if dangling_only and rec.names:
            continue
        if store.image_in_use_check(rec.id):
            continue
        size = rec.size
        store.remove_image(rec.id)
        deleted.append(({"Deleted": "sha256:" + rec.id}, size))
    return {"ImagesDeleted": [d for d, _ in deleted] or None,
            "SpaceReclaimed": sum(s for _, s in deleted)}  # fmt: skip


# --- pull and push: the library runs in a thread, its progress becomes JSON lines ----------------


class _JsonProgress:
    """rootless.image.progress.Progress's interface, as Docker's progress messages on a queue."""

    def __init__(self, q: queue.Queue):
        self.q = q
        self.rows: list = []
        self.totals: dict[str, int | None] = {}

    def line(self, text: str) -> None:
        self.q.put({"status": text})

    def add(self, key: str, label: str, total: int | None) -> None:
        self.rows.append(key)
        self.totals[key] = total
        self.q.put({"status": "Pulling fs layer", "progressDetail": {}, "id": _short(key)})

    def update(self, key: str, done: int) -> None:
        total = self.totals.get(key)
        detail = {"current": max(done, 0), **({"total": total} if total else {})}
        self.q.put({"status": "Downloading", "progressDetail": detail, "id": _short(key)})

    def set_total(self, key: str, total: int | None) -> None:
        self.totals[key] = total

    def finish(self, key: str, state: str = "done") -> None:
        status = "Already exists" if "exists" in state else "Download complete"
        self.q.put({"status": status, "progressDetail": {}, "id": _short(key)})

    def extracting(self, key: str, done: int, total: int | None) -> None:
        detail = {"current": done, **({"total": total} if total else {})}
        self.q.put({"status": "Extracting", "progressDetail": detail, "id": _short(key)})

    def extracted(self, key: str) -> None:
        self.q.put({"status": "Pull complete", "progressDetail": {}, "id": _short(key)})

    def close(self) -> None:
        pass


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _in_thread(work, q: queue.Queue):
    """Run work() in a thread; yield what it puts on q, then its result (or its error as Docker's
    error message)."""
    done = object()
    box: list = []

    def body():
        try:
            box.append(("ok", work()))
        except RootlessError as e:
            box.append(("error", str(e)))
        except Exception as e:  # noqa: BLE001 - reported to the client as one line
            import logging

            logging.getLogger("rootless.api").exception("in %s", work)
            box.append(("error", f"internal error: {e}"))
        finally:
            q.put(done)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    while (item := q.get()) is not done:
        yield item
    t.join()
    kind, value = box[0]
    if kind == "error":
        yield {"errorDetail": {"message": value}, "error": value}
    else:
        yield ("result", value)


def _access(req: Request):
    """Registry credentials from the X-Registry-Auth header, as the library's Access."""
    import base64
    import json

    from rootless.image.pull import Access

    access = Access()
    header = req.headers.get("x-registry-auth")
    if header:
        try:
            data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        except ValueError:
            data = {}
        if isinstance(data, dict) and data.get("username"):
            access = Access(creds=(data["username"], data.get("password", "")))
    return access


@route("POST", "/images/create")
def create(req: Request):
    check_params(req, ("fromImage", "tag", "platform", "fromSrc", "repo", "message", "changes"))
    if req.param("fromSrc"):
        raise ApiError(
            501, "POST /images/create with fromSrc (import) is not implemented by rootless"
        )
    image = req.param("fromImage")
    if not image:
        raise ApiError(400, "POST /images/create needs fromImage")
    tag_ = req.param("tag")
    if tag_:
        image += ("@" if tag_.startswith("sha256:") else ":") + tag_
    elif "@" not in image and ":" not in image.rsplit("/", 1)[-1]:
        image += ":latest"
    platform = req.param("platform") or None
    access = _access(req)
    q: queue.Queue = queue.Queue()

    def pull():
        from rootless.image.pull import pull_image

        return pull_image(image, platform=platform, access=access, progress=_JsonProgress(q))

    def messages():
        for item in _in_thread(pull, q):
            if isinstance(item, tuple):
                rec = item[1]
                yield {"status": f"Digest: {rec.digest}"}
                yield {"status": f"Status: Downloaded newer image for {image}"}
            else:
                yield item

    return Stream(json_lines(messages()))


@route("POST", "/images/{name*}/push")
def push(req: Request):
    from rootless.image.push import PushOptions, push_image

    name = req.args["name"]
    tag_ = req.param("tag")
    if tag_:
        name = f"{name}:{tag_}"
    find(name)
    access = _access(req)
    q: queue.Queue = queue.Queue()

    def work():
        q.put({"status": f"The push refers to repository [{name.rsplit(':', 1)[0]}]"})
        return push_image(name, None, PushOptions(quiet=True), access)

    def messages():
        for item in _in_thread(work, q):
            if isinstance(item, tuple):
                digest = item[1]
                yield {"status": f"{tag_ or 'latest'}: digest: {digest}",
                       "aux": {"Tag": tag_ or "latest", "Digest": digest}}  # fmt: skip
            else:
                yield item

    return Stream(json_lines(messages()))


@route("GET", "/images/{name*}/get")
def get(req: Request):
    return _save([req.args["name"]])


@route("GET", "/images/get")
def get_many(req: Request):
    return _save(req.query.get("names") or [])


def _save(names: list[str]):
    import io

    from rootless.image import archive

    for n in names:
        find(n)
    out = io.BytesIO()
    archive.save(names, out, fmt="docker-archive", multi=True)
    return Response(200, out.getvalue(), "application/x-tar")


@route("POST", "/images/load")
def load(req: Request):
    import io

    from rootless.image import archive

    names = archive.load(io.BytesIO(req.body), quiet=True)
    lines = [{"stream": f"Loaded image: {n}\n"} for n in names]
    return Stream(json_lines(lines))
