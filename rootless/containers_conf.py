"""containers.conf(5), podman's engine settings, read as podman reads it: the files in its order
(later ones win key by key), `CONTAINERS_CONF` alone when set, `CONTAINERS_CONF_OVERRIDE` last.

`table(name, keys=())` merges one table ([containers], [engine], [network], ...) across the files.
With `keys` it parses a file only if a line outside a comment mentions one of them: the files a
distribution ships mention nearly every key in comments only, and parsing TOML costs a `run` time.
"""

from __future__ import annotations

import os

from rootless.errors import RootlessError

SYSTEM_FILES = ("/usr/share/containers/containers.conf", "/etc/containers/containers.conf")
SYSTEM_DIRS = ("/usr/share/containers/containers.conf.d", "/etc/containers/containers.conf.d")


def files() -> list[str]:
    """The containers.conf files in podman's order (later ones win)."""
    if os.environ.get("CONTAINERS_CONF"):
        out = [os.environ["CONTAINERS_CONF"]]
    else:
        out, dirs = list(SYSTEM_FILES), list(SYSTEM_DIRS)
        if os.geteuid() != 0:
            from rootless import paths

            user = os.path.join(paths.config_home(), "containers", "containers.conf")
            out.append(user)
            dirs.append(user + ".d")
        for d in dirs:
            try:
                out += sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".conf"))
            except OSError:
                pass
    if os.environ.get("CONTAINERS_CONF_OVERRIDE"):
        out.append(os.environ["CONTAINERS_CONF_OVERRIDE"])
    return out


def mentions(data: bytes, keys) -> bool:
    """Whether a line outside a comment mentions one of `keys` (a cheap test before parsing)."""
    for key in keys:
        k = key.encode()
        i = data.find(k)
        while i >= 0:
            start = data.rfind(b"\n", 0, i) + 1
            if not data[start:i].lstrip().startswith(b"#"):
                return True
            i = data.find(k, i + len(k))
    return False


def table(name: str, keys=()) -> dict:
    """The merged table `name`; with `keys`, only those keys, from the files that set them."""
    found: dict = {}
    for path in files():
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if keys and not mentions(data, keys):
            continue
        import tomllib

        try:
            tbl = tomllib.loads(data.decode(errors="replace")).get(name)
        except tomllib.TOMLDecodeError as e:
            raise RootlessError(f"{path} is not valid TOML ({e}): fix or remove it") from None
        if isinstance(tbl, dict):
            found.update({k: v for k, v in tbl.items() if not keys or k in keys})
    return found
