"""Removing images (`rmi`, `image rm`): podman 4.3's rules, messages and exit codes.

- A name of an image that has other names only untags it (`Untagged: NAME`), even with -f and even
  while a container uses the image; a name that is not one of the image's names (e.g. a digest
  reference of an image with several tags) is `NAME: tag not known` (125) and nothing changes.
- An id (or `sha256:` digest) of an image with several names is refused without -f.
- Removing the image itself: refused while a container uses it (`image used by ID: image is in use by a
  container: ...`, exit 2); with -f the containers are removed first (`remove_container`, as `rm -f`)
  and only then the record, blobs and layers, so layers never vanish under a live container. The
  store refuses to delete an image a container still uses whatever its caller says.
- Unknown images: `NAME: image not known` (exit 1), ignored with -i or -f; `-a` on an empty store
  does nothing and succeeds.
- Exit code of a run with several errors: 125 if any error is neither of those, else 2 if an image
  was in use, else 1. Output as podman prints it: every `Untagged:` line, then every `Deleted:` line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rootless.errors import EXIT_RUNTIME, ImageError, ImageInUse, ImageUnknown, RootlessError
from rootless.image import reference


@dataclass
class Report:
    """What a removal did, in podman's order, and the errors it met (one per image)."""

    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)  # removed because -f removed their image
    errors: list[RootlessError] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = {getattr(e, "exit_code", EXIT_RUNTIME) for e in self.errors}
        if not codes:
            return 0
        if codes - {1, 2}:
            return EXIT_RUNTIME
        return 2 if 2 in codes else 1


def remove(
    store,
    names: list[str],
    *,
    force: bool = False,
    all_: bool = False,
    ignore: bool = False,
    remove_container: Callable[[str], None] | None = None,
) -> Report:
    """Remove the named images (or all with `all_`); `remove_container(id)` removes a container
    that uses an image -f removes. Errors are collected in the report, not raised, except for
    usage errors that stop before anything is done."""
    if all_ and names:
        raise ImageError("when using the --all switch, you may not pass any images names or IDs")
    if not all_ and not names:
        raise ImageError("image name or ID must be specified")
    report = Report()
    targets: list[tuple[str, str | None]] = []
    if all_:
        targets = [(r.id, None) for r in store.images()]
    for name in names:
        try:
            rec = _lookup(store, name)
        except RootlessError as e:
            report.errors.append(e)
            continue
        if rec is None:
            if not (ignore or force):
                report.errors.append(ImageUnknown(f"{name}: image not known"))
            continue
        targets.append((rec.id, name))
    done: set[str] = set()
    for image_id, name in targets:
        if image_id in done:
            continue
        try:
            if _remove_one(store, image_id, name, force, remove_container, report):
                done.add(image_id)
        except RootlessError as e:
            report.errors.append(e)
    return report


def _lookup(store, name: str):
    rec = store.lookup_image(name)
    if rec is None and not reference.looks_like_id_prefix(name.removeprefix("sha256:")):
        reference.parse(name)  # a malformed reference says why (podman: 125)
    return rec


def _remove_one(store, image_id, name, force, remove_container, report) -> bool:
    """Untag or remove one image; True once the image is gone."""
    rec = store.get(image_id)
    if rec is None:
        return True  # removed earlier in this run (named twice)
    if name is not None and len(rec.names) != 1:
        bare = name.removeprefix("sha256:")
        by_id = reference.looks_like_id_prefix(bare) and rec.id.startswith(bare)
        if by_id or name.startswith("sha256:"):
            if len(rec.names) > 1 and not force:
                how = "ID" if not name.startswith("sha256:") else "digest"
                raise ImageError(
                    f'unable to delete image "{rec.id}" by {how} with more than one tag '
                    f"([{' '.join(rec.names)}]): please force removal"
                )
        else:
            full = full_name(rec, name)
            if full is None:
                raise ImageError(f"{name}: tag not known")
            store.remove_name(rec.id, full)
            report.untagged.append(full)
            rec = store.get(rec.id)
            if rec is None or rec.names:
                return False
    users = store.image_users(rec.id)
    if users and not force:
        raise ImageInUse(users[0][0])
    for cid, _name in users:
        if remove_container is None:
            raise ImageInUse(cid)
        remove_container(cid)
        report.containers.append(cid)
    store.remove_image(rec.id)
    report.untagged += rec.names
    report.deleted.append(rec.id)
    from rootless.build.cache import remove_unused_parents

    report.deleted += remove_unused_parents(store, rec.id)  # a built image's unnamed steps
    return True


def full_name(rec, name: str) -> str | None:
    """The name in `rec.names` that `name` (short or full, tag defaulted) stands for."""
    from rootless.image.store import match_name

    try:
        ref = reference.parse(name)
    except ImageError:
        return None
    if ref.digest:
        return None  # a digest reference is not a name (podman: tag not known)
    tag = ref.tag or "latest"
    if not ref.is_short:
        full = f"{ref.name}:{tag}"
        return full if full in rec.names else None
    for n in rec.names:
        if match_name([rec], reference.parse(n)) and (
            n.endswith(f"/{ref.path}:{tag}") or n == f"{ref.path}:{tag}"
        ):
            return n
    return None
