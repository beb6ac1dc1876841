"""Dispatching a Docker API request to its endpoint module's handler, and turning whatever it
raises into Docker's error JSON: a path with no route, or a parameter rootless does not implement,
is a 501 or 400 that names it, logged once; a RootlessError is 404/409/500 with its one line; any
other exception is logged with its traceback and answered with a one-line 500 that names no
Python type. The endpoint modules register into rootless.api.protocol and import only it.
"""

from __future__ import annotations

import logging

from rootless.api.protocol import (
    ROUTES,
    ApiError,
    Request,
    error_json,
    not_implemented,
    once,
    status_of,
)
from rootless.errors import RootlessError

log = logging.getLogger("rootless.api")


def _load() -> None:
    from rootless.api import (  # noqa: F401 - each module registers its routes
        archive,
        build,
        containers,
        ctrstreams,
        exec,
        images,
        networks,
        system,
        volumes,
    )


def dispatch(req: Request):
    """The handler's result for req, or the Docker-API error response."""
    if not ROUTES:
        _load()
    handler = None
    for method, pattern, fn in ROUTES:
        m = pattern.match(req.path)
        if m and method == req.method:
            handler, req.args = fn, m.groupdict()
            break
    try:
        if handler is None:
            raise not_implemented(f"{req.method} {req.path}")
        return handler(req)
    except ApiError as e:
        if e.status in (400, 501):
            once(f"{req.method} {req.path}: {e}")
        return error_json(e.status, str(e))
    except RootlessError as e:
        return error_json(status_of(e), str(e))
    except Exception as e:
        log.exception("%s %s", req.method, req.path)
        return error_json(500, f"internal error in {req.method} {req.path}: {e}")
