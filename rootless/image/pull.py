"""Pulling: resolve a reference, fetch manifest, config and layers, extract, record the image.

`ensure_image(ref)` returns the local image or pulls it; `pull_image(ref)` always asks the registry.
Both are synchronous (they run trio themselves); call them before any trio.run of your own.
Layers download concurrently (bounded), each verified while it streams; a blob already stored is
never downloaded again and a layer already extracted is never extracted again. Each layer is
extracted by a helper process inside the user namespace (rootless.image.layer_helper) as soon as its
blob is complete, overlapping the other downloads.
"""

from __future__ import annotations

import contextvars
import os
import platform as _platform
import sys
import time
from dataclasses import dataclass

from rootless.errors import ImageError, RootlessError
from rootless.image import distribution as dist
from rootless.image import manifest as mf
from rootless.image import reference, registries_conf
from rootless.image.progress import Progress
from rootless.image.store import ImageRecord, Store, helper_error, store_write_error

DOWNLOADS = 6
_SERVER: contextvars.ContextVar = contextvars.ContextVar("rootless_extract_server")
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
LAYER_TYPES_FOREIGN = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",)


def host_platform() -> tuple[str, str, str | None]:
    m = _platform.machine()
    return {
        "x86_64": ("linux", "amd64", None),
        "aarch64": ("linux", "arm64", "v8"),
        "armv7l": ("linux", "arm", "v7"),
        "armv6l": ("linux", "arm", "v6"),
        "ppc64le": ("linux", "ppc64le", None),
        "s390x": ("linux", "s390x", None),
        "riscv64": ("linux", "riscv64", None),
        "i686": ("linux", "386", None),
    }.get(m, ("linux", m, None))


def parse_platform(s: str | None) -> tuple[str, str, str | None]:
    if not s:
        return host_platform()
    parts = s.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError(f"invalid --platform {s!r}: use OS/ARCH[/VARIANT], e.g. linux/arm64/v8")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def choose_platform(index: dict, want: tuple[str, str, str | None], name: str) -> dict:
    os_, arch, variant = want
    cands = []
    for m in index.get("manifests") or []:
        p = m.get("platform") or {}
        if p.get("os") != os_ or p.get("architecture") != arch:
            continue
        v = p.get("variant")
        if variant and v and v != variant:
            continue
        if variant and not v and not (arch == "arm64" and variant == "v8"):
            continue
        cands.append(m)
    if not cands:
        have = sorted(
            "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
            for p in (m.get("platform") or {} for m in index.get("manifests") or [])
        )
        wanted = "/".join(x for x in want if x)
        raise ImageError(
            f"{name} has no image for {wanted} (it has {', '.join(have) or 'none'}); use --platform"
        )
    # prefer an exact variant match
    for m in cands:
        if (m.get("platform") or {}).get("variant") == variant:
            return m
    return cands[0]


def ensure_image(ref: str, *, quiet: bool = False, tls_verify: bool | None = None) -> ImageRecord:
    """The local image for `ref`, pulling it first if it is not in the store."""
    store = Store.open()
    rec = store.lookup_image(ref)
    if rec is not None and all(os.path.isdir(d) for d in rec.layer_dirs):
        return rec
    return pull_image(ref, quiet=quiet, tls_verify=tls_verify, store=store)


def pull_image(
    ref: str,
    *,
    quiet: bool = False,
    tls_verify: bool | None = None,
    platform: str | None = None,
    store: Store | None = None,
    access: Access | None = None,
    progress: Progress | None = None,
) -> ImageRecord:
    import trio

    store = store or Store.open()
    want = parse_platform(platform)
    access = access or Access()
    access.settings = access.settings or dist.load_settings()
    progress = progress or Progress(quiet=quiet)
    server = start_extract_server()
    try:
        return trio.run(with_server, server, _pull, store, ref, tls_verify, want, progress, access)
    except OSError as e:
        raise store_write_error(store.root, e) or e from None
    finally:
        progress.close()
        if server is not None:
            server.close()


@dataclass
class Access:
    """How to talk to registries: limits and retries, and credentials (`--creds`, `--authfile`)."""

    settings: dist.Settings | None = None
    creds: tuple[str, str] | None = None
    authfile: str | None = None

    def client(self, domain: str, *, insecure: bool, tls_verify) -> dist.RegistryClient:
        return dist.RegistryClient(
            domain,
            insecure=insecure,
            tls_verify=tls_verify,
            settings=self.settings,
            creds=self.creds,
            authfile=self.authfile,
        )


def start_extract_server():
    """Fork the layer-extraction server now, while this process has no threads (else None: the
    slower helper-process path is used, which is safe from any process)."""
    import threading

    if threading.active_count() > 1 or os.environ.get("ROOTLESS_EXTRACT_HELPER") == "1":
        return None
    from rootless.image.layer_helper import ExtractServer

    try:
        return ExtractServer().start()
    except RootlessError:
        return None  # the helper path reports the problem if a layer really needs extracting


async def with_server(server, fn, *args):
    import trio

    if server is None:
        return await fn(*args)
    _SERVER.set(server)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run_reader)
            try:
                return await fn(*args)
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as eg:
        raise first_error(eg) from None


async def _pull(
    store: Store, ref_str: str, tls_verify, want, progress: Progress, access: Access
) -> ImageRecord:
    ref = reference.parse(ref_str)
    conf = registries_conf.load()
    candidates = conf.resolve(ref.defaulted())
    with store.lock("gc", shared=True):
        store.cleanup_tmp()
        errors: list[tuple[str, ImageError]] = []
        for cand in candidates:
            for src in conf.sources(cand, tls_verify):
                try:
                    return await _pull_from(store, cand, src, want, progress, tls_verify, access)
                except dist.DigestMismatch:
                    raise
                except _LayerFailure as e:
                    raise ImageError(str(e)) from None
                except ImageError as e:
                    errors.append((str(src.ref), e))
                    if len(candidates) > 1 or len(conf.sources(cand, tls_verify)) > 1:
                        progress.line(f"Trying {src.ref} failed: {e}")
        if len(errors) == 1:
            raise errors[0][1]
        tried = ", ".join(n for n, _ in errors)
        raise ImageError(
            f"{ref_str}: not found or not pullable from {tried}; last error: {errors[-1][1]}"
        )


class _LayerFailure(ImageError):
    """A stored blob that cannot become a layer: fatal, no other source is tried."""


async def _manifest_for(client, name_ref, ref, want) -> tuple[bytes, str, str, dict, list[str]]:
    """The image manifest of `ref` for the wanted platform (through an index if there is one):
    (body, media type, digest, parsed document, the repo digests to record)."""
    repo = ref.path
    body, mt, mdigest = await client.get_manifest(repo, ref.api_ref)
    what = f"the manifest of {ref}"
    doc = mf.parse_json(body, what)
    mt = mf.media_type(doc, what) or mt
    if mt in SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ImageError(
            f"{ref} has a Docker schema 1 manifest, which is not supported; re-push it as v2 or OCI"
        )
    repo_digest = f"{name_ref.name}@{mdigest}"
    if mt in dist.INDEX_TYPES or "manifests" in doc:
        entries = mf.index_manifests(doc, f"the index of {ref}")
        chosen = choose_platform({"manifests": entries}, want, str(ref))
        body, mt, mdigest = await client.get_manifest(repo, chosen["digest"])
        if len(body) != chosen["size"]:
            raise dist.DigestMismatch(
                f"manifest {chosen['digest']} from {ref.domain} has the wrong size"
            )
        doc = mf.parse_json(body, what)
        mt = mf.media_type(doc, what) or mt
        repo_digest_child = f"{name_ref.name}@{mdigest}"
    else:
        repo_digest_child = None
    return body, mt, mdigest, doc, [d for d in (repo_digest, repo_digest_child) if d]


async def _pull_from(
    store: Store, name_ref, src, want, progress: Progress, tls_verify, access: Access
) -> ImageRecord:
    import trio

    ref = src.ref
    repo = ref.path
    async with access.client(ref.domain, insecure=src.insecure, tls_verify=tls_verify) as client:
        if len(progress.rows) == 0:
            progress.line(f"Trying to pull {name_ref}...")
        body, mt, mdigest, doc, repo_digests = await _manifest_for(client, name_ref, ref, want)
        what = f"the manifest of {ref}"
        cdesc, layers = mf.image_manifest(doc, what)
        cdigest = cdesc["digest"]
        if store.has_blob(cdigest):
            cbytes = store.read_blob(cdigest)
        else:
            cbytes = await client.get_blob_bytes(repo, cdigest, cdesc["size"])
        config = mf.parse_json(cbytes, f"the image config of {ref}")
        diff_ids = mf.diff_ids(config, len(layers), f"the image config of {ref}")
        for layer in layers:
            if layer.get("mediaType") in LAYER_TYPES_FOREIGN or layer.get("urls"):
                raise ImageError(f"{ref}: foreign (non-distributable) layers are not supported")
        image_id = cdigest.split(":", 1)[1]
        store.put_blob_bytes(cdigest, cbytes)

        # one pull of an image at a time; the second one finds everything in place
        async with _flock(store, f"image-{image_id}"):
            done = []
            try:
                async with trio.open_nursery() as nursery:
                    dl = trio.CapacityLimiter(DOWNLOADS)
                    ex = trio.CapacityLimiter(max(1, os.cpu_count() or 1))
                    for i, (ldesc, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
                        nursery.start_soon(
                            _layer, store, client, repo, ldesc, diff_id, dl, ex, progress, done, i
                        )
            except BaseExceptionGroup as eg:
                raise first_error(eg) from None
            progress.line("Copying config " + _short(cdigest) + " done")
            store.put_blob_bytes(mdigest, body)
            names = [str(name_ref.defaulted())] if not name_ref.digest else []
            rec = ImageRecord(
                id=image_id,
                names=names,
                digest=mdigest,
                repo_digests=repo_digests,
                layers=[
                    {
                        "digest": ld["digest"],
                        "diff_id": did,
                        "size": ld.get("size"),
                        "media_type": ld.get("mediaType", ""),
                        "diff_size": sizes,
                    }
                    for (ld, did), sizes in zip(
                        zip(layers, diff_ids, strict=True), _sizes(done, len(layers)), strict=True
                    )
                ],
                manifest_media_type=mt,
                created=str(config.get("created", "")),
                pulled=time.time(),
                store_root=store.root,
            )
            progress.line("Writing manifest to image destination")
            return store.save_image(rec)


def first_error(eg: BaseExceptionGroup) -> BaseException:
    """The exception to report from a nursery's group: a user-facing error first."""
    leaves = []

    def walk(e):
        if isinstance(e, BaseExceptionGroup):
            for x in e.exceptions:
                walk(x)
        else:
            leaves.append(e)

    walk(eg)
    for cls in (dist.DigestMismatch, _LayerFailure, RootlessError, Exception):
        for e in leaves:
            if isinstance(e, cls):
                return e
    return leaves[0] if leaves else eg


def _sizes(done: list, n: int) -> list:
    out = [None] * n
    for i, size in done:
        out[i] = size
    return out


async def _layer(
    store: Store, client, repo, ldesc, diff_id, dl, ex, progress: Progress, done, i
) -> None:

    digest = ldesc["digest"]
    key = digest
    label = "Copying blob " + _short(digest)
    if store.has_layer(diff_id):
        progress.add(key, label, ldesc.get("size"))
        progress.finish(key, "skipped: already exists")
        done.append((i, _layer_size(store, diff_id)))
        return
    if not store.has_blob(digest):
        progress.add(key, label, ldesc.get("size"))
        async with dl:
            base, lfd = store.new_tmp()
            try:
                tmpblob = os.path.join(base, "blob")
                await client.fetch_blob(
                    repo, digest, ldesc.get("size"), tmpblob, lambda n: progress.update(key, n)
                )
                store.commit_blob_file(tmpblob, digest)
            finally:
                store.release_tmp(base, lfd)
        progress.finish(key, "done")
    else:
        progress.add(key, label, ldesc.get("size"))
        progress.finish(key, "skipped: already exists")
    async with ex:
        size = await extract_layer(
            store, digest, diff_id, lambda n: progress.extracting(key, n, ldesc.get("size"))
        )
    progress.extracted(key)
    done.append((i, size))


def _layer_size(store: Store, diff_id: str) -> int | None:
    try:
        with open(os.path.join(store.layer_path(diff_id), "size")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


async def extract_layer(
    store: Store, blob_digest: str, diff_id: str, on_progress=None
) -> int | None:
    """Extract a stored blob as layer `diff_id` (once; concurrent callers wait for the first).
    on_progress(n) hears the blob bytes read so far (with the extraction server only)."""
    from rootless import process
    from rootless.image.layer_helper import helper_argv

    hexid = diff_id.split(":", 1)[1]
    async with _flock(store, f"layer-{hexid}"):
        if store.has_layer(diff_id):
            return _layer_size(store, diff_id)
        base, lfd = store.new_tmp()
        ok = False
        try:
            os.mkdir(os.path.join(base, "diff"), 0o755)
            dest = os.path.join(base, "diff")
            server = _SERVER.get(None)
            if server is not None:
                res = await server.extract(store.blob_path(blob_digest), dest, diff_id, on_progress)
                rc, err, warn, size = res["rc"], res.get("err"), res.get("warn"), res.get("size")
            else:
                cp = await process.run_async(
                    helper_argv("extract", store.blob_path(blob_digest), dest, diff_id)
                )
                text = cp.stderr
                rc, err = cp.returncode, helper_error(text)
                warn = next((x[9:] for x in text.splitlines() if x.startswith("warning: ")), None)
                try:
                    size = int(cp.stdout.split()[-1])
                except (ValueError, IndexError):
                    size = None
            if warn:
                sys.stderr.write(f"WARNING: {warn}\n")
            if rc != 0:
                raise _LayerFailure(err or f"extracting layer {diff_id} failed (exit {rc})")
            if size is not None:
                with open(os.path.join(base, "size"), "w") as f:
                    f.write(str(size))
            os.rename(base, store.layer_path(diff_id))
            ok = True
            return size
        finally:
            if ok:
                import contextlib

                with contextlib.suppress(FileNotFoundError):
                    os.unlink(base + ".lock")
                os.close(lfd)
            else:
                store.release_tmp(base, lfd)


class _flock:
    """An async context manager around Store.lock that does not block the trio loop."""

    def __init__(self, store: Store, name: str):
        self.store, self.name = store, name
        self.fd = None

    async def __aenter__(self):
        import fcntl

        import trio

        fd = os.open(self.store.lock_path(self.name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await trio.sleep(0.05)
            except BaseException:
                os.close(fd)
                raise
        self.fd = fd
        return fd

    async def __aexit__(self, *exc):
        os.close(self.fd)


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


__all__ = ["ensure_image", "pull_image", "RootlessError"]
