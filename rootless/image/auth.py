"""Registry credentials: containers-auth.json(5) and ~/.docker/config.json, read and written.

Lookup order (podman's): $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
~/.config/containers/auth.json, ~/.docker/config.json. Keys may be a host ("quay.io") or a host with
a repository namespace ("quay.io/org/repo"); the most specific key wins. docker.io is also found
under Docker's "https://index.docker.io/v1/". `login`/`logout` write the first file.
"""

from __future__ import annotations

import base64
import json
import os

from rootless import paths
from rootless.errors import ImageError


def _home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")


def write_path() -> str:
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return env
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run and os.path.isdir(run):
        return os.path.join(run, "containers", "auth.json")
    return os.path.join(paths.config_home(), "containers", "auth.json")


def read_paths() -> list[str]:
    out = []
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        out.append(env)
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run:
        out.append(os.path.join(run, "containers", "auth.json"))
    out.append(os.path.join(paths.config_home(), "containers", "auth.json"))
    docker = os.environ.get("DOCKER_CONFIG") or os.path.join(_home(), ".docker")
    out.append(os.path.join(docker, "config.json"))
    return out


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot read credentials file {path}: {e}; fix or remove it") from None
    return data if isinstance(data, dict) else {}


def _keys_for(host: str, repo: str | None) -> list[str]:
    keys = []
    if repo:
        parts = repo.split("/")
        for i in range(len(parts), 0, -1):
            keys.append(f"{host}/{'/'.join(parts[:i])}")
    keys.append(host)
    if host == "docker.io":
        keys += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"]
    return keys


def _normalise_key(k: str) -> str:
    for scheme in ("https://", "http://"):
        if k.startswith(scheme):
            k = k[len(scheme) :]
    return k.rstrip("/") if not k.endswith("/v1/") else k


def _decode(entry: dict) -> tuple[str, str] | None:
    auth = entry.get("auth")
    if auth and isinstance(auth, str):
        try:
            user, _, pw = base64.b64decode(auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, pw
    user, pw = entry.get("username"), entry.get("password", "")
    if user and isinstance(user, str) and isinstance(pw, str):
        return user, pw
    return None


def credentials(
    host: str, repo: str | None = None, *, authfile: str | None = None
) -> tuple[str, str] | None:
    """(username, password) for `host` (and repository), or None for anonymous. With `authfile`
    (podman's --authfile) only that file is read."""
    wanted = _keys_for(host, repo)
    for path in [authfile] if authfile else read_paths():
        auths = _load(path).get("auths") or {}
        if not isinstance(auths, dict):
            continue
        norm = {}
        for k, v in auths.items():
            norm.setdefault(k, v)
            norm.setdefault(_normalise_key(k), v)
        for key in wanted:
            if key in norm and isinstance(norm[key], dict):
                c = _decode(norm[key])
                if c:
                    return c
    return None


def _write(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def store(key: str, username: str, password: str) -> str:
    path = write_path()
    data = _load(path)
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    data.setdefault("auths", {})[key] = {"auth": token}
    _write(path, data)
    return path


def remove(key: str | None) -> bool:
    """Remove `key` (or every entry when None) from the write file; True if something was removed."""
    path = write_path()
    data = _load(path)
    auths = data.get("auths") or {}
    if key is None:
        removed = bool(auths)
        data["auths"] = {}
    else:
        removed = auths.pop(key, None) is not None
        data["auths"] = auths
    if removed:
        _write(path, data)
    return removed
