"""System endpoints: _ping, version (API 1.41, negotiated down to by newer clients), info, events."""

from __future__ import annotations

import os
import platform
import time

from rootless.api.protocol import (
    API_VERSION,
    MIN_API_VERSION,
    Request,
    Response,
    Stream,
    json_lines,
    route,
)

_PING_HEADERS = (
    ("Api-Version", API_VERSION),
    ("Builder-Version", "1"),
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
)


@route("GET", "/_ping")
@route("HEAD", "/_ping")
def ping(req: Request):
    body = b"OK" if req.method == "GET" else b""
    return Response(200, body, "text/plain; charset=utf-8", _PING_HEADERS[1:])


def _arch() -> str:
    from rootless.image.pull import host_platform

    return host_platform()[1]


@route("GET", "/version")
def version(req: Request):
    from rootless import __version__

    kernel = platform.release()
    return {
        "Platform": {"Name": f"rootless {__version__}"},
        "Components": [
            {
                "Name": "Engine",
                "Version": __version__,
                "Details": {
                    "APIVersion": API_VERSION,
                    "MinAPIVersion": MIN_API_VERSION,
                    "Arch": _arch(),
                    "Os": "linux",
                    "KernelVersion": kernel,
                },  # fmt: skip
            }
        ],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }


@route("GET", "/info")
def info(req: Request):
    from rootless import __version__, paths
    from rootless.config import select_driver
    from rootless.image.store import Store
    from rootless.runtime import api

    recs = api.containers()
    running = sum(1 for r in recs if r.state in api.ACTIVE)
    driver, _ = select_driver(None)
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    from rootless.info import _os_release

    return {
        "ID": f"rootless-{os.getuid()}",
        "Containers": len(recs),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": len(recs) - running,
        "Images": len(Store.open().images()),
        "Driver": driver,
        "DriverStatus": [],
        "DockerRootDir": paths.data_home(),
        "MemoryLimit": True,
        "SwapLimit": True,
        "CgroupDriver": "systemd" if os.environ.get("DBUS_SESSION_BUS_ADDRESS") else "cgroupfs",
        "CgroupVersion": "2",
        "NEventsListener": 0,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_release(),
        "OSType": "linux",
        "OSVersion": "",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": mem,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": []},
        "Name": platform.node(),
        "ServerVersion": __version__,
        "Labels": [],
        "ExperimentalBuild": False,
        "Runtimes": {"rootless": {"path": "rootless"}},
        "DefaultRuntime": "rootless",
        "SecurityOptions": ["name=seccomp,profile=default", "name=rootless"],
        "Warnings": [],
    }


@route("GET", "/events")
def events(req: Request):
    """Container events from polling the records (rootless has no daemon to emit them): create,
    start, die, destroy, as they are seen, until `until` or the client leaves."""
    since = req.param("since")
    until = req.param("until")
    filters = req.json_param("filters", {}) or {}
    stop_at = float(until) if until else None
    types = set(filters.get("type") or [])
    return Stream(json_lines(_watch(float(since) if since else None, stop_at, types, filters)))


def _watch(since, stop_at, types, filters):
    from rootless.runtime import api

    wanted = set(filters.get("event") or [])
    names = set(filters.get("container") or [])
    seen: dict[str, tuple[str, float | None]] = {}
    first = True
    while True:
        now = time.time()
        recs = {r.id: r for r in api.containers()}
        out = []
        for cid, r in recs.items():
            before = seen.get(cid)
            if before is None and not first:
                out.append(("create", r))
            if r.state in api.ACTIVE and (before is None or before[0] not in api.ACTIVE):
                if not first:
                    out.append(("start", r))
            if r.state == "exited" and before is not None and before[0] in api.ACTIVE:
                out.append(("die", r))
            seen[cid] = (r.state, r.finished)
        for cid in [c for c in seen if c not in recs]:
            out.append(("destroy", _Gone(cid)))
            del seen[cid]
        first = False
        for action, r in out:
            if types and "container" not in types:
                continue
            if wanted and action not in wanted:
                continue
            if names and not ({r.id, r.name} & names or any(r.id.startswith(n) for n in names)):
                continue
            yield _event(action, r, now)
        if stop_at is not None and time.time() >= stop_at:
            return
        if not out:
            yield b""  # nothing: the server skips empty chunks
        time.sleep(0.2)


class _Gone:
    def __init__(self, cid):
        self.id, self.name, self.image, self.exit_code = cid, "", "", None


def _event(action: str, r, now: float) -> dict:
    attrs = {"name": r.name, "image": r.image}
    if action == "die":
        attrs["exitCode"] = str(r.exit_code if r.exit_code is not None else -1)
    return {
        "status": action,
        "id": r.id,
        "from": r.image,
        "Type": "container",
        "Action": action,
        "Actor": {"ID": r.id, "Attributes": attrs},
        "scope": "local",
        "time": int(now),
        "timeNano": int(now * 1e9),
    }
