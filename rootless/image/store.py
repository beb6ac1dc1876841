"""The local image store: content-addressed blobs, shared extracted layers, image records.

Layout under rootless.paths.data_home():

    blobs/sha256/<hex>        manifests, configs and compressed layer blobs, named by their digest
    layers/<hex>/diff/        an extracted layer, keyed by its diff_id (uncompressed digest),
                              shared by every image that has it; owners are subordinate ids
    images/<id>.json          an image record (id = hex of the config digest)
    tmp/<rand>[.lock]         work in progress; a tmp entry whose .lock nobody holds is stale
    locks/                    flock(2) files: gc (shared by pulls, exclusive for rmi/prune),
                              names (record read-modify-write), image-<id>, layer-<hex>

Every write is atomic: files are written to a temporary name and renamed (records are fsynced);
layers are extracted into tmp/<rand>/diff and the whole tmp/<rand> is renamed to layers/<hex>. A
process killed at any moment leaves the old state or the new one; stale tmp entries are removed
by the next pull (`cleanup_tmp`). Trees owned by subordinate ids are removed inside the user
namespace through the layer helper (rootless.image.layer_helper).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import time
from dataclasses import dataclass, field

from rootless import paths
from rootless.errors import ImageError, ImageInUse, StoreError, store_error
from rootless.image import reference


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1] if ":" in digest else digest


def write_atomic(path: str, data: bytes, *, fsync: bool = True, mode: int = 0o644) -> None:
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        mv = memoryview(data)
        while mv:
            mv = mv[os.write(fd, mv) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if fsync:
        dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@dataclass
class ImageRecord:
    """One stored image. `config` is the whole OCI image config document (with its "config" key
    holding Env/Cmd/Entrypoint/WorkingDir/User/ExposedPorts); `layer_dirs` are the extracted layer
    directories, bottom layer first."""

    id: str  # hex of the config digest (podman's image id)
    names: list[str]
    digest: str  # manifest digest, "sha256:..."
    repo_digests: list[str]
    layers: list[dict]  # {"digest", "diff_id", "size", "media_type"} bottom first
    manifest_media_type: str
    created: str = ""
    pulled: float = 0.0
    store_root: str = ""
    _config: dict | None = field(default=None, repr=False)

    @property
    def config_digest(self) -> str:
        return "sha256:" + self.id

    @property
    def config(self) -> dict:
        if self._config is None:
            with open(os.path.join(self.store_root, "blobs", "sha256", self.id), "rb") as f:
                self._config = json.load(f)
        return self._config

    @property
    def layer_dirs(self) -> list[str]:
        return [
            os.path.join(self.store_root, "layers", _hex(layer["diff_id"]), "diff")
            for layer in self.layers
        ]

    @property
    def size(self) -> int:
        """Sum of the uncompressed layer sizes (what podman's SIZE shows)."""
        return sum(int(layer.get("diff_size") or layer.get("size") or 0) for layer in self.layers)

    @property
    def manifest(self) -> dict:
        with open(os.path.join(self.store_root, "blobs", "sha256", _hex(self.digest)), "rb") as f:
            return json.load(f)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "names": self.names,
            "digest": self.digest,
            "repo_digests": self.repo_digests,
            "layers": self.layers,
            "manifest_media_type": self.manifest_media_type,
            "created": self.created,
            "pulled": self.pulled,
        }

    @classmethod
    def from_json(cls, data: dict, root: str) -> ImageRecord:
        return cls(
            id=data["id"],
            names=list(data.get("names") or []),
            digest=data["digest"],
            repo_digests=list(data.get("repo_digests") or []),
            layers=list(data["layers"]),
            manifest_media_type=data.get("manifest_media_type", ""),
            created=data.get("created", ""),
            pulled=float(data.get("pulled", 0)),
            store_root=root,
        )


class Store:
    def __init__(self, root: str):
        self.root = root

    @classmethod
    def open(cls, root: str | None = None) -> Store:
        root = root or paths.data_home()
        try:
            for d in ("blobs/sha256", "layers", "images", "tmp", "locks"):
                os.makedirs(os.path.join(root, d), mode=0o700, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the image store at {root}: {e.strerror}; check its permissions"
            ) from None
        return cls(root)

    # --- paths ---------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", _hex(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def layer_path(self, diff_id: str) -> str:
        return os.path.join(self.root, "layers", _hex(diff_id))

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(os.path.join(self.layer_path(diff_id), "diff"))

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def put_blob_bytes(self, digest: str, data: bytes) -> None:
        if not self.has_blob(digest):
            write_atomic(self.blob_path(digest), data, fsync=False)

    def commit_blob_file(self, tmp_path: str, digest: str) -> None:
        os.rename(tmp_path, self.blob_path(digest))

    # --- locks ---------------------------------------------------------------------------------
    def lock_path(self, name: str) -> str:
        return os.path.join(self.root, "locks", name + ".lock")

    @contextlib.contextmanager
    def lock(self, name: str, *, shared: bool = False, blocking: bool = True):
        fd = os.open(self.lock_path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            if not blocking:
                op |= fcntl.LOCK_NB
            try:
                fcntl.flock(fd, op)
            except BlockingIOError:
                raise StoreError(
                    f"the store is busy ({name}); try again when the other rootless command ends"
                ) from None
            yield fd
        finally:
            os.close(fd)

    # --- tmp -------------------------------------------------------------------------------------
    def new_tmp(self) -> tuple[str, int]:
        """A fresh tmp dir and the held lock fd that marks it live (close the fd when done)."""
        name = f"{os.getpid()}-{os.urandom(6).hex()}"
        base = os.path.join(self.root, "tmp", name)
        fd = os.open(base + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.mkdir(base, 0o700)
        return base, fd

    def release_tmp(self, base: str, fd: int, *, remove: bool = True) -> None:
        if remove:
            self.remove_trees([base])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(base + ".lock")
        os.close(fd)

    def cleanup_tmp(self) -> None:
        """Remove tmp entries left by killed processes (those whose .lock nobody holds)."""
        tdir = os.path.join(self.root, "tmp")
        stale = []
        locks = []
        for name in os.listdir(tdir):
            if name.endswith(".lock"):
                continue
            path = os.path.join(tdir, name)
            lockp = path + ".lock"
            try:
                fd = os.open(lockp, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                # no lock: either stale, or being created this instant; only old ones are stale
                try:
                    if time.time() - os.lstat(path).st_mtime < 60:
                        continue
                except FileNotFoundError:
                    continue
                stale.append(path)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            stale.append(path)
            locks.append((lockp, fd))
        try:
            if stale:
                self.remove_trees(stale)
        finally:
            for lockp, fd in locks:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lockp)
                os.close(fd)
        # orphan lock files and partial blob downloads
        for lockp in glob.glob(os.path.join(tdir, "*.lock")):
            if not os.path.exists(lockp[: -len(".lock")]):
                try:
                    fd = os.open(lockp, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lockp)
                except BlockingIOError:
                    pass
                finally:
                    os.close(fd)

    def remove_trees(self, trees: list[str]) -> None:
        """Remove directory trees, entering the user namespace when subordinate ids own files."""
        rest = []
        for t in trees:
            try:
                if os.path.isdir(t) and not os.path.islink(t):
                    import shutil  # only for stale temp dirs: off the run path

                    shutil.rmtree(t)
                else:
                    os.unlink(t)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EPERM, errno.ENOTEMPTY):
                    raise
                rest.append(t)
        if not rest:
            return
        from rootless import process
        from rootless.image.layer_helper import helper_argv

        cp = process.run(helper_argv("rm", *rest))
        if cp.returncode != 0:
            msg = helper_error(cp.stderr) or f"removing {rest[0]} failed"
            raise StoreError(msg)

    # --- records ---------------------------------------------------------------------------------
    def _record_path(self, image_id: str) -> str:
        return os.path.join(self.root, "images", image_id + ".json")

    def images(self) -> list[ImageRecord]:
        out = []
        for path in glob.glob(os.path.join(self.root, "images", "*.json")):
            try:
                with open(path) as f:
                    out.append(ImageRecord.from_json(json.load(f), self.root))
            except (OSError, ValueError, KeyError):
                continue
        out.sort(key=lambda r: r.pulled, reverse=True)
        return out

    def get(self, image_id: str) -> ImageRecord | None:
        try:
            with open(self._record_path(image_id)) as f:
                return ImageRecord.from_json(json.load(f), self.root)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError):
            return None

    def write_record(self, rec: ImageRecord) -> None:
        write_atomic(self._record_path(rec.id), json.dumps(rec.to_json(), indent=1).encode())

    def save_image(self, rec: ImageRecord) -> ImageRecord:
        """Store a record; its names are taken away from any other image. Merges with an existing
        record of the same id."""
        with self.lock("names"):
            old = self.get(rec.id)
            if old:
                rec.names = _uniq(old.names + rec.names)
                rec.repo_digests = _uniq(old.repo_digests + rec.repo_digests)
            self._steal_names(rec.id, rec.names)
            self.write_record(rec)
        return rec

    def _steal_names(self, keep_id: str, names: list[str]) -> None:
        for other in self.images():
            if other.id == keep_id:
                continue
            left = [n for n in other.names if n not in names]
            if left != other.names:
                other.names = left
                self.write_record(other)

    def add_name(self, image_id: str, name: str) -> None:
        with self.lock("names"):
            rec = self.get(image_id)
            if rec is None:
                raise ImageError(f"image {image_id[:12]} disappeared; pull it again")
            self._steal_names(image_id, [name])
            if name not in rec.names:
                rec.names.append(name)
            self.write_record(rec)

    def remove_name(self, image_id: str, name: str) -> None:
        with self.lock("names"):
            rec = self.get(image_id)
            if rec and name in rec.names:
                rec.names.remove(name)
                self.write_record(rec)

    # --- lookup ----------------------------------------------------------------------------------
    def lookup_image(self, ref_or_id: str) -> ImageRecord | None:
        """An image by full or short id (3+ hex chars, unique) or by name, short names included."""
        s = ref_or_id.strip()
        images = self.images()
        if reference.is_image_id(s):
            return self.get(s.removeprefix("sha256:"))
        try:
            ref = reference.parse(s)
        except ImageError:
            ref = None
        if ref is not None:
            # a short name: its alias target first, then the short name itself (podman also finds
            # localhost/NAME, e.g. a loaded or tagged image, when an alias points elsewhere)
            alias = _alias(ref) if ref.is_short else None
            for cand in (alias, ref):
                hit = match_name(images, cand) if cand is not None else None
                if hit:
                    return hit
        if reference.looks_like_id_prefix(s.removeprefix("sha256:")):
            prefix = s.removeprefix("sha256:")
            hits = [r for r in images if r.id.startswith(prefix)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise ImageError(f"{s} matches {len(hits)} images; give more of the id")
        return None

    def require(self, ref_or_id: str) -> ImageRecord:
        rec = self.lookup_image(ref_or_id)
        if rec is None:
            raise ImageError(
                f"{ref_or_id}: image not known; pull it first or check `rootless images`"
            )
        return rec

    # --- containers and removal --------------------------------------------------------------------
    def image_users(self, image_id: str) -> list[tuple[str, str]]:
        """(id, name) of the containers (data_home()/containers/<id>/config.json) using the image."""
        users = []
        for path in sorted(glob.glob(os.path.join(self.root, "containers", "*", "config.json"))):
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and _hex(str(data.get("image_id", ""))) == image_id:
                cid = str(data.get("id") or os.path.basename(os.path.dirname(path)))
                users.append((cid, str(data.get("name") or cid)))
        return users

    def image_in_use_check(self, image_id: str) -> list[str]:
        """Names of the containers using the image."""
        return [name for _cid, name in self.image_users(image_id)]

    def remove_image(self, image_id: str) -> None:
        """Remove an image's record, then what no other image needs. Refused while a container
        uses it, whoever asks: its layers are that container's lower layers."""
        with self.lock("gc"), self.lock("names"):
            users = self.image_users(image_id)
            if users:
                raise ImageInUse(users[0][0])
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._record_path(image_id))
        self.gc()

    def gc(self) -> tuple[int, int]:
        """Remove blobs and layers no image refers to. Waits for running pulls (gc lock)."""
        with self.lock("gc"):
            keep_blobs: set[str] = set()
            keep_layers: set[str] = set()
            for rec in self.images():
                keep_blobs.add(rec.id)
                keep_blobs.add(_hex(rec.digest))
                for d in rec.repo_digests:
                    keep_blobs.add(_hex(d.split("@", 1)[1]) if "@" in d else _hex(d))
                for layer in rec.layers:
                    keep_blobs.add(_hex(layer["digest"]))
                    keep_layers.add(_hex(layer["diff_id"]))
            nb = 0
            bdir = os.path.join(self.root, "blobs", "sha256")
            for name in os.listdir(bdir):
                if name not in keep_blobs:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(bdir, name))
                        nb += 1
            ldir = os.path.join(self.root, "layers")
            dead = [os.path.join(ldir, n) for n in os.listdir(ldir) if n not in keep_layers]
            if dead:
                # rename first so a half-removed layer never looks present
                moved = []
                for d in dead:
                    t = os.path.join(self.root, "tmp", f"gc-{os.urandom(6).hex()}")
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(d, t)
                        moved.append(t)
                self.remove_trees(moved)
            return nb, len(dead)


def _uniq(xs: list[str]) -> list[str]:
    out = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out


def _split_name(name: str) -> tuple[str, str | None]:
    """'host/repo:tag' -> ('host/repo', 'tag')."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def match_name(images: list[ImageRecord], ref: reference.Reference) -> ImageRecord | None:
    if ref.digest:
        for rec in images:
            if rec.digest == ref.digest or any(
                d.endswith("@" + ref.digest) for d in rec.repo_digests
            ):
                if ref.is_short or any(d.startswith(ref.name + "@") for d in rec.repo_digests):
                    return rec
        return None
    tag = ref.tag or "latest"
    if not ref.is_short:
        want = f"{ref.name}:{tag}"
        for rec in images:
            if want in rec.names:
                return rec
        return None
    # a short name: docker.io/library first, then any registry whose path ends with it
    for cand in (
        f"docker.io/library/{ref.path}:{tag}",
        f"docker.io/{ref.path}:{tag}",
        f"localhost/{ref.path}:{tag}",
    ):
        for rec in images:
            if cand in rec.names:
                return rec
    for rec in images:
        for n in rec.names:
            repo, t = _split_name(n)
            if t == tag and (repo == ref.path or repo.endswith("/" + ref.path)):
                return rec
    return None


def _alias(ref: reference.Reference) -> reference.Reference | None:
    """A short name's [aliases] target from registries.conf, if it has one."""
    from rootless.image import registries_conf

    try:
        conf = registries_conf.load()
    except ImageError:
        return None
    if ref.path not in conf.aliases:
        return None
    try:
        [r] = conf.resolve(ref)
    except (ImageError, ValueError):
        return None
    return r


def store_write_error(root: str, e: OSError) -> StoreError | None:
    """The one-line error for a write that failed because the store's filesystem is full or
    read-only (None for any other OSError)."""
    return store_error(root, e)


def helper_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("error: "):
            return line[len("error: ") :]
    lines = [x for x in stderr.splitlines() if x.strip()]
    return lines[-1] if lines else ""
