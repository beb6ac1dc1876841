"""The push side of the distribution API: blob existence, cross-repository mounts, uploads, and
the manifest PUT, on a rootless.image.distribution.RegistryClient.

`put_blob` first asks HEAD /v2/REPO/blobs/DIGEST (a blob the registry has is not sent again),
then tries to mount it from other repositories of the same registry that hold it
(POST ...uploads/?mount=DIGEST&from=REPO: 201 means done; 202 opens an ordinary upload), else
opens an upload session (POST .../blobs/uploads/). A blob up to `chunk_size` (16 MiB,
ROOTLESS_PUSH_CHUNK_SIZE) goes in one PUT (monolithic); a larger one in PATCHes of `chunk_size`
with Content-Range, then an empty PUT with the digest (chunked). Upload requests are never resent
as they are: a PATCH broken by the connection resumes from the offset the registry reports (GET
of the session's Range); otherwise the blob is looked up (HEAD: the registry may have finished it)
and uploaded again in a new session, within the client's retry bounds. The registry must confirm
the digest (201, Docker-Content-Digest).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from rootless.errors import ImageError
from rootless.image import manifest as mf
from rootless.image.distribution import TransferError
from rootless.image.limits import Retrier

DEFAULT_CHUNK = 16 << 20
MAX_ERROR_BODY = 64 << 10


def chunk_size() -> int:
    env = os.environ.get("ROOTLESS_PUSH_CHUNK_SIZE")
    if not env:
        return DEFAULT_CHUNK
    if not env.isdigit() or int(env) < 1024:
        raise ImageError(
            f"invalid ROOTLESS_PUSH_CHUNK_SIZE {env!r}: give a number of bytes, at least 1024"
        )
    return int(env)


class Uploader:
    """Pushes blobs and manifests to one repository."""

    def __init__(self, client, repo: str):
        self.c, self.repo = client, repo
        self.actions = "pull,push"
        self.chunk = chunk_size()

    async def _req(self, method: str, path: str, what: str, **kw):
        return await self.c.request(method, self.repo, path, what=what, actions=self.actions, **kw)

    async def _fail(self, r, what: str) -> ImageError:
        """The error for an unexpected answer, with the registry's own message if it sent one."""
        status = r.status_code
        try:
            body = await self.c.read_body(r, MAX_ERROR_BODY, what)
        except ImageError:
            body = b""
        detail = _registry_message(body)
        if status in (401, 403):
            return ImageError(
                f"{what} to {self.c.domain}/{self.repo} was refused (HTTP {status}{detail}): "
                f"log in with `rootless login {self.c.domain}` or give --creds"
            )
        return ImageError(f"{what} to {self.c.domain}/{self.repo} failed: HTTP {status}{detail}")

    # --- blobs -----------------------------------------------------------------------------------
    async def exists(self, digest: str, size: int) -> bool:
        r = await self._req("HEAD", f"blobs/{digest}", f"checking blob {digest}")
        await r.aclose()
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise await self._fail(r, f"checking blob {digest}")

    async def put_blob(
        self,
        digest: str,
        size: int,
        path: str,
        *,
        mount_from: list[str] = (),
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Make the repository hold the blob at `path`; returns "exists", "mounted" or "uploaded".
        An upload broken by the connection is checked (HEAD: the registry may have it already)
        and started again in a new session, within the client's retry bounds."""
        if await self.exists(digest, size):
            return "exists"
        location = None
        for src in [m for m in mount_from if m != self.repo][:3]:
            location = await self._mount(digest, src)
            if location == "mounted":
                return "mounted"
            if location:
                break
        retry = Retrier(self.c.settings)
        while True:
            try:
                await self._upload(location or await self._start(), digest, size, path, progress)
                return "uploaded"
            except TransferError as e:
                if not e.retryable or not await retry.again():
                    raise
                if progress:
                    progress(0)
                if await self.exists(digest, size):
                    return "uploaded"
                location = None

    async def _mount(self, digest: str, src: str) -> str | None:
        what = f"mounting blob {digest} from {src}"
        r = await self._req(
            "POST",
            f"blobs/uploads/?mount={digest}&from={src}",
            what,
            more=(f"repository:{src}:pull",),
            content=b"",
            follow=False,
        )
        await r.aclose()
        if r.status_code == 201:
            return "mounted"
        if r.status_code == 202 and r.headers.get("location"):
            return self._location(r)
        return None  # a registry that does not mount, or no access to `src`: upload instead

    async def _start(self) -> str:
        what = "starting an upload"
        r = await self._req("POST", "blobs/uploads/", what, content=b"", follow=False)
        if r.status_code != 202 or not r.headers.get("location"):
            raise await self._fail(r, what)
        await r.aclose()
        return self._location(r)

    def _location(self, r) -> str:
        import httpx

        loc = r.headers["location"]
        try:
            url = r.url.join(loc)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https"):
            raise ImageError(f"{self.c.domain} answered an upload with a bad location {loc[:80]!r}")
        return str(url)

    async def _upload(self, location, digest, size, path, progress) -> None:
        """One upload session: a PUT, or PATCHes and a PUT; a broken connection is not resent
        here (put_blob decides) but a broken PATCH is resumed where the registry says it is."""
        import httpx

        what = f"uploading blob {digest}"
        with open(path, "rb") as f:
            if size <= self.chunk:
                data = f.read()
            else:
                location = await self._patches(location, f, size, what, progress)
                data = b""
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        r = await self._req(
            "PUT",
            "",
            what,
            url=str(url),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
            follow=False,
            retrier=self._once(),
        )
        if r.status_code not in (201, 204):
            raise await self._fail(r, what)
        await r.aclose()
        got = r.headers.get("docker-content-digest")
        if got and got != digest:
            raise ImageError(
                f"{self.c.domain} stored blob {digest} as {got[:80]}: the upload was corrupted"
            )
        if progress:
            progress(size)

    def _once(self) -> Retrier:
        """No retries inside the request: a resent upload request would not be idempotent."""
        return Retrier(dataclasses.replace(self.c.settings, retries=0))

    async def _patches(self, location: str, f, size: int, what: str, progress) -> str:
        """PATCH the file in chunks from offset 0; returns the final upload location."""
        retry = Retrier(self.c.settings)
        offset = 0
        while offset < size:
            f.seek(offset)
            data = f.read(min(self.chunk, size - offset))
            end = offset + len(data) - 1
            try:
                r = await self._req(
                    "PATCH",
                    "",
                    what,
                    url=location,
                    content=data,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end}",
                    },
                    follow=False,
                    retrier=self._once(),
                )
            except TransferError as e:
                resumed = await self._resume_offset(location) if e.retryable else None
                if resumed is None or not await retry.again():
                    raise
                offset = resumed
                continue
            if r.status_code != 202:
                raise await self._fail(r, what)
            await r.aclose()
            if r.headers.get("location"):
                location = self._location(r)
            offset = end + 1
            if progress:
                progress(offset)
        return location

    async def _resume_offset(self, location: str) -> int | None:
        """Where an interrupted chunked upload stands (the end of its Range + 1), if the registry
        still knows the session (a lost answer may have left it behind: then None)."""
        try:
            r = await self._req("GET", "", "checking an upload", url=location, follow=False)
        except ImageError:
            return None
        await r.aclose()
        rng = r.headers.get("range", "")
        if r.status_code != 204 or "-" not in rng:
            return None
        try:
            end = int(rng.rsplit("-", 1)[1])
        except ValueError:
            return None
        return 0 if rng == "0-0" else end + 1  # distribution answers 0-0 for an empty upload

    # --- manifests -------------------------------------------------------------------------------
    async def put_manifest(self, ref: str, body: bytes, media_type: str, digest: str) -> None:
        what = f"writing manifest {self.repo}:{ref}"
        r = await self._req(
            "PUT",
            f"manifests/{ref}",
            what,
            content=body,
            headers={"Content-Type": media_type},
            follow=False,
        )
        if r.status_code not in (200, 201, 202):
            raise await self._fail(r, what)
        await r.aclose()
        got = r.headers.get("docker-content-digest")
        if got and got != digest:
            raise ImageError(f"{self.c.domain} stored the manifest as {got[:80]}, not {digest}")


def _registry_message(body: bytes) -> str:
    """ " (CODE: message)" from a distribution error body, or ""."""
    try:
        doc = mf.parse_json(body, "the error")
    except ImageError:
        return ""
    errs = doc.get("errors")
    if not isinstance(errs, list) or not errs or not isinstance(errs[0], dict):
        return ""
    code, msg = errs[0].get("code"), errs[0].get("message")
    parts = [str(x)[:120] for x in (code, msg) if isinstance(x, str) and x]
    return f" ({': '.join(parts)})" if parts else ""
