"""The OCI distribution (registry v2) client: ping, Bearer/Basic auth, manifests and streamed blobs.

Async (httpx.AsyncClient on trio). Every manifest request sends Accept for the OCI manifest and
index and the Docker v2s2 manifest and list (Debian's registry 404s or down-converts otherwise).
Blobs stream to a file while their sha256 and size are checked; a mismatch deletes the file.
Transient failures (connection errors, 5xx, 429) are retried a bounded number of times.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from collections.abc import Callable

from rootless.errors import ImageError
from rootless.image import auth as authmod

log = logging.getLogger("rootless.image")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(MANIFEST_TYPES)

RETRIES = 3
CHUNK = 1 << 20


class DigestMismatch(ImageError):
    pass


def api_host(domain: str) -> str:
    return "registry-1.docker.io" if domain == "docker.io" else domain


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    for k, v in re.findall(r'(\w+)=([^",\s]+)', rest):
        params.setdefault(k, v)
    return scheme.lower(), params


def _transient(status: int) -> bool:
    return status == 429 or status >= 500


class RegistryClient:
    """A connection to one registry endpoint (domain), for one repository at a time."""

    def __init__(self, domain: str, *, insecure: bool = False, tls_verify: bool | None = None):
        import httpx

        self.domain = domain
        self.host = api_host(domain)
        self.insecure = insecure
        verify = not insecure if tls_verify is None else tls_verify
        self.scheme = "https"
        self._client = httpx.AsyncClient(
            verify=verify,
            follow_redirects=True,
            timeout=httpx.Timeout(30.0, read=60.0),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            headers={"User-Agent": "rootless/0.1"},
            http1=True,
        )
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._pinged = False
        self._tokens: dict[str, str] = {}
        self._creds_cache: dict[str, tuple[str, str] | None] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    # --- ping and auth -------------------------------------------------------------------------
    async def ping(self) -> None:
        import httpx

        if self._pinged:
            return
        schemes = ["https", "http"] if self.insecure else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            self.scheme = scheme
            try:
                r = await self._client.get(f"{self.base}/v2/")
            except httpx.HTTPError as e:
                last = e
                continue
            if r.status_code == 401 and "www-authenticate" in r.headers:
                self._challenge = _parse_challenge(r.headers["www-authenticate"])
            elif r.status_code == 404 or r.status_code >= 500:
                last = ImageError(
                    f"{self.domain} does not look like a registry: GET /v2/ answered {r.status_code}"
                )
                continue
            self._pinged = True
            return
        if isinstance(last, ImageError):
            raise last
        import ssl

        text = _errtext(last)
        chain, e = [], last
        while e is not None and len(chain) < 8:
            chain.append(e)
            e = e.__cause__ or e.__context__
        hint = ""
        if any(
            "name or service not known" in str(x).lower() or "name resolution" in str(x).lower()
            for x in chain
        ):
            hint = " (the host name does not resolve: check the name and the network)"
        elif not self.insecure and (
            any(isinstance(x, ssl.SSLError) for x in chain) or "SSL" in text
        ):
            hint = " (for a plain-HTTP registry use --tls-verify=false or insecure=true in registries.conf)"
        elif (
            any(isinstance(x, ConnectionRefusedError) for x in chain)
            or "refused" in text.lower()
            or "all attempts to connect" in text
        ):
            hint = " (connection refused: is the registry running on that port?)"
        raise ImageError(f"cannot reach registry {self.domain}: {text}{hint}")

    def _creds(self, repo: str) -> tuple[str, str] | None:
        if repo not in self._creds_cache:
            self._creds_cache[repo] = authmod.credentials(self.domain, repo)
        return self._creds_cache[repo]

    async def _auth_header(self, repo: str, *, force: bool = False) -> dict[str, str]:
        await self.ping()
        if not self._challenge:
            return {}
        scheme, params = self._challenge
        creds = self._creds(repo)
        if scheme == "basic":
            if not creds:
                raise ImageError(
                    f"{self.domain} requires a login: run `rootless login {self.domain}`"
                )
            token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        if scheme != "bearer":
            raise ImageError(f"{self.domain} asks for unsupported authentication {scheme!r}")
        scope = f"repository:{repo}:pull"
        if force or scope not in self._tokens:
            self._tokens[scope] = await self._fetch_token(params, scope, creds)
        return {"Authorization": f"Bearer {self._tokens[scope]}"}

    async def _fetch_token(self, params: dict[str, str], scope: str, creds) -> str:
        import httpx

        realm = params.get("realm")
        if not realm:
            raise ImageError(f"{self.domain} sent a Bearer challenge without a realm")
        q = {}
        if params.get("service"):
            q["service"] = params["service"]
        q["scope"] = scope
        headers = {}
        if creds:
            headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            )
        try:
            r = await self._client.get(realm, params=q, headers=headers)
        except httpx.HTTPError as e:
            raise ImageError(f"cannot get a token from {realm}: {_errtext(e)}") from None
        if r.status_code in (401, 403):
            what = (
                "the stored credentials were rejected" if creds else "anonymous access was refused"
            )
            raise ImageError(f"{self.domain}: {what}; run `rootless login {self.domain}`")
        if r.status_code != 200:
            raise ImageError(f"token server {realm} answered {r.status_code}")
        try:
            data = r.json()
        except ValueError:
            raise ImageError(f"token server {realm} sent no JSON") from None
        tok = data.get("token") or data.get("access_token")
        if not tok:
            raise ImageError(f"token server {realm} sent no token")
        return tok

    async def check_login(self) -> None:
        """Verify the stored credentials for this registry (used by `login`)."""
        import httpx

        await self.ping()
        if not self._challenge:
            return
        scheme, params = self._challenge
        creds = self._creds("")
        if scheme == "basic":
            hdr = await self._auth_header("")
            r = await self._client.get(f"{self.base}/v2/", headers=hdr)
            if r.status_code == 401:
                raise ImageError(f"{self.domain}: the username or password is wrong")
            return
        try:
            realm = params.get("realm")
            q = {"service": params["service"]} if params.get("service") else {}
            headers = {}
            if creds:
                headers["Authorization"] = (
                    "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
                )
            r = await self._client.get(realm, params=q, headers=headers)
        except httpx.HTTPError as e:
            raise ImageError(f"cannot reach token server: {_errtext(e)}") from None
        if r.status_code != 200:
            raise ImageError(f"{self.domain}: the username or password is wrong")

    # --- requests --------------------------------------------------------------------------------
    async def _request(self, method: str, repo: str, path: str, *, headers=None, stream=False):
        """One request with auth and bounded retries; returns the response (open if stream)."""
        import httpx
        import trio

        hdrs = dict(headers or {})
        reauthed = False
        attempt = 0
        while True:
            hdrs.update(await self._auth_header(repo))
            url = f"{self.base}/v2/{repo}/{path}"
            try:
                req = self._client.build_request(method, url, headers=hdrs)
                r = await self._client.send(req, stream=stream)
            except httpx.TransportError as e:
                attempt += 1
                if attempt > RETRIES:
                    raise ImageError(f"{method} {url} failed: {_errtext(e)}") from None
                log.info("retrying %s after %s", url, e)
                await trio.sleep(0.25 * 2**attempt)
                continue
            if r.status_code == 401 and not reauthed:
                reauthed = True
                if stream:
                    await r.aclose()
                if "www-authenticate" in r.headers:
                    self._challenge = _parse_challenge(r.headers["www-authenticate"])
                    await self._auth_header(repo, force=True)
                continue
            if _transient(r.status_code) and attempt < RETRIES:
                attempt += 1
                if stream:
                    await r.aclose()
                await trio.sleep(0.25 * 2**attempt)
                continue
            return r

    async def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index; verifies the digest if `ref` is one."""
        r = await self._request("GET", repo, f"manifests/{ref}", headers={"Accept": ACCEPT})
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
        body = r.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.startswith("sha256:") and ref != digest:
            raise DigestMismatch(
                f"manifest {ref} from {self.domain} has digest {digest}: refusing it"
            )
        mt = r.headers.get("content-type", "").split(";")[0].strip()
        return body, mt, digest

    async def get_blob_bytes(
        self, repo: str, digest: str, size: int | None, limit: int = 64 << 20
    ) -> bytes:
        r = await self._request("GET", repo, f"blobs/{digest}", stream=True)
        try:
            if r.status_code != 200:
                raise ImageError(
                    f"fetching blob {digest} from {self.domain}/{repo} failed: HTTP {r.status_code}"
                )
            h = hashlib.sha256()
            buf = bytearray()
            async for chunk in r.aiter_raw():
                buf += chunk
                h.update(chunk)
                if len(buf) > limit:
                    raise ImageError(f"blob {digest} is larger than {limit} bytes")
        finally:
            await r.aclose()
        _verify(digest, size, "sha256:" + h.hexdigest(), len(buf), self.domain)
        return bytes(buf)

    async def fetch_blob(
        self,
        repo: str,
        digest: str,
        size: int | None,
        dest: str,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into `dest` (created), checking its digest and size; deletes it on failure."""
        import httpx
        import trio

        attempt = 0
        while True:
            try:
                await self._fetch_once(repo, digest, size, dest, progress)
                return
            except (httpx.TransportError, _Transient) as e:
                _unlink(dest)
                attempt += 1
                if attempt > RETRIES:
                    raise ImageError(
                        f"downloading {digest} from {self.domain} failed: {_errtext(e)}"
                    ) from None
                if progress:
                    progress(-1)
                await trio.sleep(0.25 * 2**attempt)
            except BaseException:
                _unlink(dest)
                raise

    async def _fetch_once(self, repo, digest, size, dest, progress) -> None:
        r = await self._request("GET", repo, f"blobs/{digest}", stream=True)
        try:
            if r.status_code != 200:
                if _transient(r.status_code):
                    raise _Transient(f"HTTP {r.status_code}")
                raise ImageError(
                    f"fetching blob {digest} from {self.domain}/{repo} failed: HTTP {r.status_code}"
                )
            h = hashlib.sha256()
            n = 0
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                async for chunk in r.aiter_raw(CHUNK):
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
                    if progress:
                        progress(n)
            finally:
                os.close(fd)
        finally:
            await r.aclose()
        _verify(digest, size, "sha256:" + h.hexdigest(), n, self.domain)


class _Transient(Exception):
    pass


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


def _errtext(e: BaseException | None) -> str:
    if e is None:
        return "unknown error"
    x, n = e, 0
    while x is not None and not str(x) and n < 8:  # httpx wraps e.g. ssl errors without text
        x, n = x.__cause__ or x.__context__, n + 1
    s = str(x) if x is not None and str(x) else type(e).__name__
    return s.splitlines()[0]
