"""Registry authentication for the distribution client: the ping (GET /v2/ and its challenge),
Basic credentials, and Bearer tokens from the challenge's realm, one per set of scopes (pull, or
pull,push plus the source repository of a cross-repository mount).

Credentials come from `--creds`, else `--authfile`, else the auth files rootless.image.auth reads.
`AuthMixin` is part of rootless.image.distribution.RegistryClient.
"""

from __future__ import annotations

import base64
import re

from rootless.errors import ImageError
from rootless.image import auth as authmod
from rootless.image import manifest as mf
from rootless.image.limits import TooManyRedirects, errtext


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    for k, v in re.findall(r'(\w+)=([^",\s]+)', rest):
        params.setdefault(k, v)
    return scheme.lower(), params


class AuthMixin:
    """Ping and credentials; expects the client's `_send`, `error`, `read_body`, `settings`."""

    async def ping(self) -> None:
        import httpx

        if self._pinged:
            return
        schemes = ["https", "http"] if self.insecure else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            self.scheme = scheme
            try:
                r = await self._send("GET", f"{self.base}/v2/", {})
                await r.aclose()
            except httpx.TimeoutException as e:
                raise self.error(e, "GET /v2/") from None
            except (httpx.HTTPError, httpx.InvalidURL, TooManyRedirects) as e:
                last = e
                continue
            if r.status_code == 401 and "www-authenticate" in r.headers:
                self._challenge = parse_challenge(r.headers["www-authenticate"])
            elif r.status_code == 404 or r.status_code >= 500:
                last = ImageError(
                    f"{self.domain} does not look like a registry: GET /v2/ answered {r.status_code}"
                )
                continue
            self._pinged = True
            return
        if isinstance(last, ImageError):
            raise last
        if isinstance(last, TooManyRedirects):
            raise self.error(last, "GET /v2/")
        raise ImageError(f"cannot reach registry {self.domain}: {errtext(last)}{self._hint(last)}")

    def _hint(self, last: BaseException | None) -> str:
        import ssl

        text = errtext(last)
        chain, e = [], last
        while e is not None and len(chain) < 8:
            chain.append(e)
            e = e.__cause__ or e.__context__
        if any(
            "name or service not known" in str(x).lower() or "name resolution" in str(x).lower()
            for x in chain
        ):
            return " (the host name does not resolve: check the name and the network)"
        if not self.insecure and (any(isinstance(x, ssl.SSLError) for x in chain) or "SSL" in text):
            return " (for a plain-HTTP registry use --tls-verify=false or insecure=true in registries.conf)"
        if (
            any(isinstance(x, ConnectionRefusedError) for x in chain)
            or "refused" in text.lower()
            or "all attempts to connect" in text
        ):
            return " (connection refused: is the registry running on that port?)"
        return ""

    def _creds(self, repo: str) -> tuple[str, str] | None:
        if self._override is not None:
            return self._override
        if repo not in self._creds_cache:
            self._creds_cache[repo] = authmod.credentials(
                self.domain, repo, authfile=self._authfile
            )
        return self._creds_cache[repo]

    async def _auth_header(
        self, repo: str, *, actions: str = "pull", more: tuple[str, ...] = (), force: bool = False
    ) -> dict[str, str]:
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
            raise ImageError(f"{self.domain} asks for unsupported authentication {scheme[:40]!r}")
        scopes = (f"repository:{repo}:{actions}", *more)
        key = " ".join(scopes)
        if force or key not in self._tokens:
            self._tokens[key] = await self._fetch_token(params, scopes, creds)
        return {"Authorization": f"Bearer {self._tokens[key]}"}

    async def _fetch_token(self, params: dict[str, str], scopes, creds) -> str:
        import httpx

        realm = params.get("realm")
        if not realm:
            raise ImageError(f"{self.domain} sent a Bearer challenge without a realm")
        q = [("service", params["service"])] if params.get("service") else []
        q += [("scope", s) for s in scopes]
        headers = {}
        if creds:
            headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            )
        what = f"a token from {realm[:80]}"
        try:
            url = httpx.URL(realm).copy_merge_params(q)
            r = await self._send("GET", url, headers)
        except (httpx.HTTPError, httpx.InvalidURL, TooManyRedirects) as e:
            raise ImageError(f"cannot get {what}: {self.error(e, 'the token')}") from None
        if r.status_code in (401, 403):
            await r.aclose()
            what = (
                "the stored credentials were rejected" if creds else "anonymous access was refused"
            )
            raise ImageError(f"{self.domain}: {what}; run `rootless login {self.domain}`")
        if r.status_code != 200:
            await r.aclose()
            raise ImageError(f"token server {realm[:80]} answered {r.status_code}")
        body = await self.read_body(r, mf.MAX_SMALL_BODY, "the token")
        try:
            data = mf.parse_json(body, f"the answer of token server {realm[:80]}")
        except ImageError:
            raise ImageError(f"token server {realm[:80]} sent no JSON token") from None
        tok = data.get("token") or data.get("access_token")
        if not isinstance(tok, str) or not tok or not tok.isascii() or not tok.isprintable():
            raise ImageError(f"token server {realm[:80]} sent no usable token")
        return tok

    async def check_login(self) -> None:
        """Verify the stored credentials for this registry (used by `login`)."""
        import httpx

        await self.ping()
        if not self._challenge:
            return
        scheme, params = self._challenge
        creds = self._creds("")
        try:
            if scheme == "basic":
                hdr = await self._auth_header("")
                r = await self._send("GET", f"{self.base}/v2/", hdr)
                await r.aclose()
                if r.status_code == 401:
                    raise ImageError(f"{self.domain}: the username or password is wrong")
                return
            realm = params.get("realm")
            if not realm:
                raise ImageError(f"{self.domain} sent a Bearer challenge without a realm")
            q = {"service": params["service"]} if params.get("service") else {}
            headers = {}
            if creds:
                headers["Authorization"] = (
                    "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
                )
            r = await self._send("GET", httpx.URL(realm).copy_merge_params(q), headers)
            await r.aclose()
        except (httpx.HTTPError, httpx.InvalidURL, TooManyRedirects) as e:
            raise ImageError(f"cannot reach token server: {self.error(e, 'a token')}") from None
        if r.status_code != 200:
            raise ImageError(f"{self.domain}: the username or password is wrong")
