"""Docker image references: parse, validate, normalise and print them.

Grammar (distribution/reference): ``[domain[:port]/]path[:tag][@algo:hex]`` where the first
component is a domain only if it contains ``.`` or ``:`` or is ``localhost`` (or an IPv6 literal in
brackets). A reference without a domain is a *short name*; resolving it is registries_conf's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rootless.errors import ImageError

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_DOMAIN_COMPONENT = re.compile(r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_ID = re.compile(r"^[a-f0-9]{64}$")

DOCKER_IO = "docker.io"
NAME_TOTAL_MAX = 255


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `domain` is None for a short name; `tag` and `digest` may both be set."""

    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def is_short(self) -> bool:
        return self.domain is None

    @property
    def name(self) -> str:
        """domain/path (no tag or digest)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def with_domain(self, domain: str) -> Reference:
        path = self.path
        if domain == DOCKER_IO and "/" not in path:
            path = "library/" + path
        return Reference(domain, path, self.tag, self.digest)

    def defaulted(self) -> Reference:
        """The tag `latest` when neither tag nor digest is given."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, "latest", None)
        return self

    @property
    def api_ref(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def _is_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def _check_domain(domain: str, original: str) -> None:
    host, port = domain, None
    if domain.startswith("["):
        end = domain.find("]")
        if end < 0:
            raise ImageError(
                f"invalid reference {original!r}: unterminated IPv6 address in {domain!r}"
            )
        rest = domain[end + 1 :]
        if rest and not re.fullmatch(r":[0-9]+", rest):
            raise ImageError(f"invalid reference {original!r}: bad port in {domain!r}")
        return
    if ":" in domain:
        host, port = domain.rsplit(":", 1)
        if not port.isdigit():
            raise ImageError(
                f"invalid reference {original!r}: port {port!r} of {domain!r} is not a number"
            )
    if not all(_DOMAIN_COMPONENT.match(c) for c in host.split(".")):
        raise ImageError(
            f"invalid reference {original!r}: {host!r} is not a valid registry host name"
        )


def parse(ref: str) -> Reference:
    """Parse a reference; raises ImageError naming the part that is wrong."""
    original = ref
    if not ref:
        raise ImageError("invalid reference: the image name is empty")
    if ref != ref.strip() or any(c.isspace() for c in ref):
        raise ImageError(f"invalid reference {original!r}: it contains white space")
    if ref.startswith(("http://", "https://")):
        raise ImageError(
            f"invalid reference {original!r}: drop the URL scheme (use HOST[:PORT]/NAME[:TAG])"
        )
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.match(digest):
            raise ImageError(
                f"invalid reference {original!r}: {digest!r} is not a digest (want sha256:<64 hex>)"
            )
        if digest.startswith("sha256:") and not _SHA256.match(digest):
            raise ImageError(
                f"invalid reference {original!r}: sha256 digests are 64 lowercase hex digits"
            )
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
        if not _TAG.match(tag):
            raise ImageError(
                f"invalid reference {original!r}: tag {tag!r} must be 1-128 of [A-Za-z0-9_.-], not starting with . or -"
            )
    if not ref:
        raise ImageError(f"invalid reference {original!r}: the repository name is empty")
    parts = ref.split("/")
    domain = None
    if len(parts) > 1 and _is_domain(parts[0]):
        domain = parts[0]
        _check_domain(domain, original)
        parts = parts[1:]
    for p in parts:
        if not p:
            raise ImageError(f"invalid reference {original!r}: empty path component")
        if not _COMPONENT.match(p):
            if p.lower() != p and _COMPONENT.match(p.lower()):
                raise ImageError(
                    f"invalid reference {original!r}: repository names must be lowercase"
                )
            raise ImageError(
                f"invalid reference {original!r}: {p!r} is not a valid name component "
                "(lowercase letters, digits and separators . _ __ -)"
            )
    path = "/".join(parts)
    if len((domain + "/" if domain else "") + path) > NAME_TOTAL_MAX:
        raise ImageError(
            f"invalid reference {original!r}: the name is longer than {NAME_TOTAL_MAX} characters"
        )
    return Reference(domain, path, tag, digest)


def is_image_id(s: str) -> bool:
    """A full image id (64 hex, optionally sha256:-prefixed)."""
    return bool(_ID.match(s.removeprefix("sha256:")))


def looks_like_id_prefix(s: str) -> bool:
    return 3 <= len(s) <= 64 and all(c in "0123456789abcdef" for c in s)
