"""containers-registries.conf(5) v2: short-name resolution, mirrors, insecure and blocked registries.

Files are read in podman's (containers/image) order: the main file is $ROOTLESS_REGISTRIES_CONF or
$CONTAINERS_REGISTRIES_CONF if set, else ~/.config/containers/registries.conf if it exists, else
/etc/containers/registries.conf. Drop-ins from /etc/containers/registries.conf.d and
~/.config/containers/registries.conf.d (sorted by name) are then applied on top: each sets
`unqualified-search-registries` if it has it, replaces [[registry]] tables with the same prefix, and
adds/overrides [aliases]. (When the user file is used, only the user drop-in dir is read, as podman.)
With no configuration at all, docker.io is the one search registry.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field

from rootless import paths
from rootless.errors import ImageError
from rootless.image.reference import DOCKER_IO, Reference, parse

SYSTEM_CONF = "/etc/containers/registries.conf"
SYSTEM_DIR = "/etc/containers/registries.conf.d"


@dataclass
class Endpoint:
    location: str  # host[:port][/path prefix]
    insecure: bool = False


@dataclass
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: list[Endpoint] = field(default_factory=list)
    mirror_by_digest_only: bool = False


@dataclass
class PullSource:
    """One place to try: `ref` rewritten to that endpoint's location."""

    ref: Reference
    insecure: bool
    mirror: bool = False


@dataclass
class RegistriesConf:
    search: list[str] = field(default_factory=list)
    registries: list[RegistryEntry] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    search_set: bool = False

    # --- short names ---------------------------------------------------------------------------
    def resolve(self, ref: Reference) -> list[Reference]:
        """Fully-qualified candidates for a (maybe short) reference, in the order to try them."""
        if not ref.is_short:
            return [ref]
        alias = self.aliases.get(ref.path)
        if alias:
            try:
                target = parse(alias)
            except ImageError as e:
                raise ImageError(
                    f"bad alias {ref.path!r} = {alias!r} in registries.conf: {e}"
                ) from None
            if target.is_short:
                raise ImageError(
                    f"alias {ref.path!r} = {alias!r} in registries.conf is not fully qualified"
                )
            return [
                Reference(
                    target.domain, target.path, ref.tag or target.tag, ref.digest or target.digest
                )
            ]
        search = self.search if self.search_set else [DOCKER_IO]
        if not search:
            raise ImageError(
                f"short name {str(ref)!r} cannot be resolved: no unqualified-search-registries in "
                "registries.conf; use a fully qualified name such as docker.io/library/NAME"
            )
        return [ref.with_domain(d) for d in search]

    # --- [[registry]] ---------------------------------------------------------------------------
    def find(self, ref: Reference) -> RegistryEntry | None:
        """The [[registry]] table with the longest prefix matching `ref` (host or host/path)."""
        name = ref.name
        best = None
        for r in self.registries:
            p = r.prefix
            if p.startswith("*."):
                host = ref.domain or ""
                ok = host.endswith(p[1:])
            else:
                ok = (
                    name == p
                    or name.startswith(p + "/")
                    or name.startswith(p + ":")
                    or name.startswith(p + "@")
                )
            if ok and (best is None or len(p) > len(best.prefix)):
                best = r
        return best

    def sources(self, ref: Reference, tls_verify: bool | None = None) -> list[PullSource]:
        """Endpoints to pull `ref` from: mirrors first, then the primary location."""
        entry = self.find(ref)
        if entry is None:
            return [PullSource(ref, insecure=tls_verify is False)]
        if entry.blocked:
            raise ImageError(
                f"registry {entry.prefix} is blocked in registries.conf; pulling {ref} is refused"
            )
        out = []

        def rewrite(location: str) -> Reference:
            if entry.prefix.startswith("*."):
                return ref
            rest = ref.name[len(entry.prefix) :]
            new = parse(
                location
                + rest
                + (":" + ref.tag if ref.tag else "")
                + ("@" + ref.digest if ref.digest else "")
            )
            return new

        def insecure(flag: bool) -> bool:
            if tls_verify is None:
                return flag
            return not tls_verify

        if ref.digest or not entry.mirror_by_digest_only:
            for m in entry.mirrors:
                out.append(PullSource(rewrite(m.location), insecure(m.insecure), mirror=True))
        out.append(PullSource(rewrite(entry.location), insecure(entry.insecure)))
        return out

    def insecure_for(self, host: str) -> bool:
        e = self.find(Reference(host, "x"))
        return bool(e and e.insecure)


def _main_file() -> tuple[str, bool]:
    """(path of the main file, whether it is the per-user one)."""
    env = os.environ.get("ROOTLESS_REGISTRIES_CONF") or os.environ.get("CONTAINERS_REGISTRIES_CONF")
    if env:
        return env, False
    user = os.path.join(paths.config_home(), "containers", "registries.conf")
    if os.path.exists(user):
        return user, True
    return SYSTEM_CONF, False


def _dropins(user_main: bool) -> list[str]:
    dirs = []
    if not user_main:
        dirs.append(os.environ.get("ROOTLESS_REGISTRIES_CONF_D") or SYSTEM_DIR)
    dirs.append(os.path.join(paths.config_home(), "containers", "registries.conf.d"))
    out = []
    for d in dirs:
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".conf"))
        except OSError:
            continue
        out += [os.path.join(d, n) for n in names]
    return out


def _endpoint_location(loc: str, path: str) -> str:
    loc = loc.strip()
    if loc.startswith(("http://", "https://")):
        raise ImageError(f"{path}: location {loc!r} must not include a URL scheme")
    return loc.rstrip("/")


def _typed(value, kind, path: str, what: str):
    """`value` if it has the TOML type the file format wants, else one line naming the key."""
    if not isinstance(value, kind):
        want = {list: "a list", dict: "a table", str: "a string", bool: "true or false"}[kind]
        raise ImageError(f"{path}: {what} must be {want}; fix the file")
    return value


def _apply(conf: RegistriesConf, data: dict, path: str) -> None:
    if "registries" in data and isinstance(data["registries"], dict):
        raise ImageError(
            f"{path}: registries.conf v1 format is not supported; convert it to v2 (see containers-registries.conf(5))"
        )
    if "unqualified-search-registries" in data:
        search = _typed(
            data["unqualified-search-registries"], list, path, "unqualified-search-registries"
        )
        conf.search = [_typed(s, str, path, "each unqualified search registry") for s in search]
        conf.search_set = True
    for key, val in _typed(data.get("aliases") or {}, dict, path, "[aliases]").items():
        conf.aliases[key] = _typed(val, str, path, f"alias {key!r}")
    for r in _typed(data.get("registry") or [], list, path, "[[registry]]"):
        r = _typed(r, dict, path, "each [[registry]]")
        prefix = _typed(r.get("prefix") or r.get("location") or "", str, path, "prefix/location")
        location = _typed(r.get("location") or "", str, path, "location")
        if not prefix:
            raise ImageError(f"{path}: a [[registry]] table needs a location or a prefix")
        if not location and not prefix.startswith("*."):
            location = prefix
        mirrors = []
        for m in _typed(r.get("mirror") or [], list, path, f"the mirrors of {prefix}"):
            m = _typed(m, dict, path, f"each mirror of {prefix}")
            loc = _typed(m.get("location") or "", str, path, f"a mirror location of {prefix}")
            if loc:
                insecure = _typed(m.get("insecure", False), bool, path, "insecure")
                mirrors.append(Endpoint(_endpoint_location(loc, path), insecure))
        entry = RegistryEntry(
            prefix=_endpoint_location(prefix, path),
            location=_endpoint_location(location, path) if location else "",
            insecure=_typed(r.get("insecure", False), bool, path, f"insecure of {prefix}"),
            blocked=_typed(r.get("blocked", False), bool, path, f"blocked of {prefix}"),
            mirror_by_digest_only=_typed(
                r.get("mirror-by-digest-only", False), bool, path, "mirror-by-digest-only"
            ),
            mirrors=mirrors,
        )
        conf.registries = [e for e in conf.registries if e.prefix != entry.prefix] + [entry]


def load() -> RegistriesConf:
    conf = RegistriesConf()
    main, user_main = _main_file()
    for path in [main, *_dropins(user_main)]:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            continue
        except PermissionError:
            continue
        except tomllib.TOMLDecodeError as e:
            raise ImageError(f"{path} is not valid TOML: {e}; fix or remove it") from None
        _apply(conf, data, path)
        conf.files.append(path)
    return conf
