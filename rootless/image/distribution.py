"""The OCI distribution (registry v2) client: ping, Bearer/Basic auth, requests with limits.

Async (httpx.AsyncClient on trio). Every manifest request sends Accept for the OCI manifest and
index and the Docker v2s2 manifest and list (Debian's registry 404s or down-converts otherwise).
Blobs stream to a file while their sha256 and size are checked; a mismatch deletes the file.

A registry cannot hang or exhaust the client (see docs/registry.md):
- an inactivity timeout (`Settings.timeout`, 30 s, ROOTLESS_REGISTRY_TIMEOUT): no answer to a
  request within it, or less than 1 KiB of body in any such window, fails with one line naming
  the registry and the manifest or blob;
- manifests and configs are read up to 4 MiB (rootless.image.manifest), tokens up to 1 MiB, and
  redirects are followed by hand (at most 10; bodies of redirect answers are never read);
- retries (connection failures, 5xx, 429) are bounded in count (`--retry`, containers.conf
  `[engine] retry`, 3) and in time (none starts more than 2 minutes after the first attempt);
  a timeout is not retried: the timeout already is the patience the user chose.
Push-side requests (uploads, manifest PUT) are in rootless.image.upload.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable

from rootless.errors import ImageError
from rootless.image import manifest as mf
from rootless.image.limits import (  # noqa: F401 - Settings and load_settings are re-exported
    Retrier,
    Settings,
    Speed,
    TooManyRedirects,
    errtext,
    load_settings,
)
from rootless.image.regauth import AuthMixin, parse_challenge

log = logging.getLogger("rootless.image")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(MANIFEST_TYPES)

MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
UPLOADS = ("POST", "PUT", "PATCH")


class DigestMismatch(ImageError):
    pass


class TransferError(ImageError):
    """A request that failed on the connection; `retryable` if trying again may help."""

    retryable = False


def api_host(domain: str) -> str:
    return "registry-1.docker.io" if domain == "docker.io" else domain


def _transient(status: int) -> bool:
    return status == 429 or status >= 500


class RegistryClient(AuthMixin):
    """A connection to one registry endpoint (domain), for one repository at a time."""

    def __init__(
        self,
        domain: str,
        *,
        insecure: bool = False,
        tls_verify: bool | None = None,
        settings: Settings | None = None,
        creds: tuple[str, str] | None = None,
        authfile: str | None = None,
    ):
        import httpx

        self.domain = domain
        self.host = api_host(domain)
        self.insecure = insecure
        self.settings = settings or Settings()
        t = self.settings.timeout
        verify = not insecure if tls_verify is None else tls_verify
        self.scheme = "https"
        self._client = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,  # followed by hand: bounded, bodies unread (_send)
            timeout=httpx.Timeout(t, connect=t, read=t, write=t, pool=None),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            headers={"User-Agent": "rootless/0.1", "Accept-Encoding": "identity"},
            http1=True,
        )
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._pinged = False
        self._tokens: dict[str, str] = {}
        self._creds_cache: dict[str, tuple[str, str] | None] = {}
        self._override = creds
        self._authfile = authfile

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    # --- one exchange ----------------------------------------------------------------------------
    async def _send(self, method: str, url, headers: dict, *, content=None, follow: bool = True):
        """One request, following at most MAX_REDIRECTS redirects (GET/HEAD), returning the
        streamed response. A request without a body must get its answer's headers within the
        timeout. httpx errors propagate (see `error`)."""
        import httpx
        import trio

        url = httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            req = self._client.build_request(method, url, headers=headers, content=content)
            if content is None:
                with trio.move_on_after(self.settings.timeout) as cs:
                    r = await self._client.send(req, stream=True)
                if cs.cancelled_caught:
                    raise httpx.ReadTimeout("no answer", request=req)
            else:
                r = await self._client.send(req, stream=True)
            if not (follow and r.status_code in REDIRECTS and r.headers.get("location")):
                return r
            await r.aclose()
            new = url.join(r.headers["location"])
            if new.scheme not in ("http", "https"):
                raise ImageError(
                    f"{self.domain} redirected to an unsupported URL {str(new)[:80]!r}"
                )
            if new.host != url.host or new.port != url.port or new.scheme != url.scheme:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = new
        raise TooManyRedirects()

    def error(
        self, e: BaseException, what: str, attempts: int = 1, *, to: bool = False
    ) -> ImageError:
        """One line for an httpx failure while doing `what`, naming the registry. A failure of the
        connection (not a timeout) is a TransferError with `retryable` set."""
        import httpx

        t = self.settings.timeout
        where = f"{'to' if to else 'from'} {self.domain}"
        hint = "set ROOTLESS_REGISTRY_TIMEOUT to wait longer"
        if isinstance(e, ImageError):
            return e
        if isinstance(e, TooManyRedirects):
            return ImageError(
                f"{what} {where} failed: more than {MAX_REDIRECTS} redirects "
                "(the registry redirects in a loop)"
            )
        if isinstance(e, httpx.ConnectTimeout):
            return ImageError(f"registry {self.domain} did not accept a connection within {t:g} s")
        if isinstance(e, httpx.TimeoutException):
            return ImageError(f"{what} {where} stalled: no data for {t:g} s ({hint})")
        after = f" after {attempts} attempts" if attempts > 1 else ""
        err = TransferError(f"{what} {where} failed{after}: {errtext(e)}")
        err.retryable = _retryable(e)
        return err

    def _stalled(self, what: str) -> Callable[[], ImageError]:
        t = self.settings.timeout
        return lambda: ImageError(
            f"{what} from {self.domain} stalled: less than 1 KiB in {t:g} s "
            "(set ROOTLESS_REGISTRY_TIMEOUT to wait longer)"
        )

    async def read_body(self, r, cap: int, what: str, *, truncate: bool = False) -> bytes:
        """The body of a streamed response, at most `cap` bytes (else ImageError, or with
        `truncate` the first cap + 1 bytes); closes it."""
        import httpx

        try:
            clen = r.headers.get("content-length")
            if clen and clen.isdigit() and int(clen) > cap:
                raise ImageError(
                    f"{what} from {self.domain} is {int(clen)} bytes, more than the {mf.mib(cap)} allowed"
                )
            buf = bytearray()
            speed = Speed(self.settings.timeout, self._stalled(what))
            try:
                async for chunk in r.aiter_raw():
                    buf += chunk
                    if len(buf) > cap and truncate:
                        return bytes(buf[: cap + 1])
                    if len(buf) > cap:
                        raise ImageError(
                            f"{what} from {self.domain} is more than the {mf.mib(cap)} allowed"
                        )
                    speed.feed(len(chunk))
            except (httpx.HTTPError, httpx.StreamError) as e:
                raise self.error(e, what) from None
            return bytes(buf)
        finally:
            await r.aclose()

    # --- requests --------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        repo: str,
        path: str,
        *,
        what: str,
        headers: dict | None = None,
        content: bytes | None = None,
        url: str | None = None,
        actions: str = "pull",
        more: tuple[str, ...] = (),
        follow: bool = True,
        retrier: Retrier | None = None,
    ):
        """One request with auth and bounded retries; returns the streamed response (close it).
        `path` is under /v2/REPO/ unless `url` (an upload location) is given."""
        import httpx

        hdrs = dict(headers or {})
        reauthed = False
        retry = retrier or Retrier(self.settings)
        while True:
            await self.ping()  # first: it chooses the scheme of an insecure registry
            target = url or f"{self.base}/v2/{repo}/{path}"
            if self._ours(target):
                hdrs.update(await self._auth_header(repo, actions=actions, more=more))
            else:  # an upload location elsewhere: no credentials go there
                hdrs.pop("Authorization", None)
            try:
                r = await self._send(method, target, hdrs, content=content, follow=follow)
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, TooManyRedirects) as e:
                if _retryable(e) and await retry.again():
                    log.info("retrying %s after %s", what, e)
                    continue
                raise self.error(e, what, retry.attempts, to=method in UPLOADS) from None
            if r.status_code == 401 and not reauthed:
                reauthed = True
                await r.aclose()
                if "www-authenticate" in r.headers:
                    self._challenge = parse_challenge(r.headers["www-authenticate"])
                    await self._auth_header(repo, actions=actions, more=more, force=True)
                continue
            if _transient(r.status_code) and await retry.again(r.headers.get("retry-after")):
                await r.aclose()
                continue
            return r

    def _ours(self, url: str) -> bool:
        """Whether `url` is on this registry (same scheme, host and port as the ping found)."""
        import httpx

        u, base = httpx.URL(url), httpx.URL(self.base)
        return (u.scheme, u.host, u.port) == (base.scheme, base.host, base.port)

    async def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index; verifies the digest if `ref` is one."""
        what = f"manifest {repo}:{ref}" if not ref.startswith("sha256:") else f"manifest {ref}"
        r = await self.request(
            "GET", repo, f"manifests/{ref}", what=what, headers={"Accept": ACCEPT}
        )
        if r.status_code != 200:
            await r.aclose()
        if r.status_code == 404:
            raise ImageError(
                f"{self.domain}/{repo}:{ref} not found (manifest unknown)", exit_code=125
            )
        if r.status_code in (401, 403):
            raise ImageError(
                f"access to {self.domain}/{repo} denied; run `rootless login {self.domain}`"
            )
        if r.status_code != 200:
            raise ImageError(
                f"fetching manifest {self.domain}/{repo}:{ref} failed: HTTP {r.status_code}"
            )
        body = await self.read_body(r, mf.MAX_MANIFEST_BYTES, what)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.startswith("sha256:") and ref != digest:
            raise DigestMismatch(
                f"manifest {ref} from {self.domain} has digest {digest}: refusing it"
            )
        mt = r.headers.get("content-type", "").split(";")[0].strip()
        return body, mt, digest

    async def get_blob_bytes(
        self, repo: str, digest: str, size: int | None, limit: int = mf.MAX_CONFIG_BYTES
    ) -> bytes:
        """A small blob (a config) in memory, at most `limit` bytes, verified."""
        what = f"blob {digest}"
        r = await self.request("GET", repo, f"blobs/{digest}", what=what)
        if r.status_code != 200:
            await r.aclose()
            raise ImageError(
                f"fetching blob {digest} from {self.domain}/{repo} failed: HTTP {r.status_code}"
            )
        clen = r.headers.get("content-length")
        if size is not None and clen and clen.isdigit() and int(clen) != size:
            await r.aclose()
            raise DigestMismatch(
                f"blob {digest} from {self.domain} is {clen} bytes, not the {size} its manifest says; refusing it"
            )
        if size is None:
            buf = await self.read_body(r, limit, what)
        else:
            buf = await self.read_body(r, size, what, truncate=True)
            if len(buf) > size:
                raise DigestMismatch(
                    f"blob {digest} from {self.domain} is larger than the {size} bytes its manifest says; refusing it"
                )
        got = "sha256:" + hashlib.sha256(buf).hexdigest()
        _verify(digest, size, got, len(buf), self.domain)
        return buf

    async def fetch_blob(
        self,
        repo: str,
        digest: str,
        size: int | None,
        dest: str,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into `dest` (created), checking its digest and size; deletes it on failure.
        A transfer broken mid-way (connection reset, 5xx) starts again, within the retry bounds."""
        import httpx

        retry = Retrier(self.settings)
        while True:
            try:
                await self._fetch_once(repo, digest, size, dest, progress, retry)
                return
            except (httpx.HTTPError, httpx.StreamError, _Transient) as e:
                _unlink(dest)
                if _retryable(e) and await retry.again():
                    if progress:
                        progress(-1)
                    continue
                what = f"blob {digest}"
                if isinstance(e, _Transient):
                    raise ImageError(
                        f"{what} from {self.domain} failed after {retry.attempts} attempts: {e}"
                    ) from None
                raise self.error(e, what, retry.attempts) from None
            except BaseException:
                _unlink(dest)
                raise

    async def _fetch_once(self, repo, digest, size, dest, progress, retry) -> None:
        what = f"blob {digest}"
        r = await self.request("GET", repo, f"blobs/{digest}", what=what, retrier=retry)
        try:
            if r.status_code != 200:
                if _transient(r.status_code):
                    raise _Transient(f"HTTP {r.status_code}")
                raise ImageError(
                    f"fetching blob {digest} from {self.domain}/{repo} failed: HTTP {r.status_code}"
                )
            clen = r.headers.get("content-length")
            if size is not None and clen and clen.isdigit() and int(clen) != size:
                raise DigestMismatch(
                    f"blob {digest} from {self.domain} is {clen} bytes, not the {size} its manifest says; refusing it"
                )
            h = hashlib.sha256()
            n = 0
            speed = Speed(self.settings.timeout, self._stalled(what))
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                async for chunk in r.aiter_raw():  # as received: the low-speed rule sees each
                    h.update(chunk)
                    n += len(chunk)
                    if size is not None and n > size:
                        raise DigestMismatch(
                            f"blob {digest} from {self.domain} is larger than the {size} bytes its manifest says; refusing it"
                        )
                    mv = memoryview(chunk)
                    while mv:
                        w = os.write(fd, mv)
                        mv = mv[w:]
                    speed.feed(len(chunk))
                    if progress:
                        progress(n)
            finally:
                os.close(fd)
        finally:
            await r.aclose()
        _verify(digest, size, "sha256:" + h.hexdigest(), n, self.domain)


class _Transient(Exception):
    pass


def _retryable(e: BaseException) -> bool:
    """Connection failures and broken transfers are retried; timeouts and protocol misuse not."""
    import httpx

    if isinstance(e, _Transient):
        return True
    if isinstance(e, httpx.TimeoutException | httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return False
    return isinstance(e, httpx.TransportError)


def _verify(digest: str, size: int | None, got: str, n: int, domain: str) -> None:
    if size is not None and n != size:
        raise DigestMismatch(
            f"blob {digest} from {domain} is {n} bytes, not the {size} its manifest says; refusing it"
        )
    if not digest.startswith("sha256:"):
        raise ImageError(f"unsupported digest algorithm in {digest}")
    if got != digest:
        raise DigestMismatch(
            f"blob {digest} from {domain} arrived with digest {got} (corrupted in transit?); refusing it"
        )


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
