"""A read-only merged view of a stack of layer directories, read as overlayfs reads them.

Layers are the store's encoding (and an upper dir's): a whiteout is a 0/0 character device and an
opaque directory carries ``user.overlay.opaque=y``. `LayerView(dirs)` (bottom first) answers what
the container would see, without mounting anything: `lookup` (the layers holding an entry, top
first: several for a merged directory), `listdir` (the merged names), `resolve` (a path with its
symlinks followed inside the root, as docker resolves COPY destinations and --from sources), and
`read_text`. Run it where the layer files are readable: as root in the user namespace.
"""

from __future__ import annotations

import errno
import os
import stat

OPAQUE = "user.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def split(path: str) -> list[str]:
    out: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if out:
                out.pop()
            continue
        out.append(p)
    return out


class LayerView:
    def __init__(self, layer_dirs: list[str]):
        self.top_first = list(reversed(layer_dirs))

    def lookup(self, parts: list[str]) -> list[tuple[str, os.stat_result]]:
        """The real paths holding the entry `parts` (no symlink followed), top first; a directory
        may be merged from several layers, anything else comes from one; [] if absent."""
        if not parts:
            return self._roots()
        dirs = self._roots()  # the layers where the parent is a directory, top first
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            found: list[tuple[str, os.stat_result]] = []
            for base, _ in dirs:
                p = os.path.join(base, name)
                try:
                    st = os.lstat(p)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # `dirs` already ends at an opaque directory
                if is_whiteout(st):
                    break
                if stat.S_ISDIR(st.st_mode):
                    found.append((p, st))
                    if is_opaque(p):
                        break
                    continue
                if not found:
                    found.append((p, st))
                break
            if not found:
                return []
            if not last and not stat.S_ISDIR(found[0][1].st_mode):
                return []
            dirs = found
        return dirs

    def _roots(self) -> list[tuple[str, os.stat_result]]:
        out = []
        for d in self.top_first:
            out.append((d, os.lstat(d)))
            if is_opaque(d):
                break
        return out

    def stat(self, parts: list[str]) -> os.stat_result | None:
        hits = self.lookup(parts)
        return hits[0][1] if hits else None

    def real(self, parts: list[str]) -> str | None:
        hits = self.lookup(parts)
        return hits[0][0] if hits else None

    def listdir(self, parts: list[str]) -> list[str]:
        hits = self.lookup(parts)
        if not hits or not stat.S_ISDIR(hits[0][1].st_mode):
            return []
        seen: set[str] = set()
        out: list[str] = []
        for path, _ in hits:
            for e in os.scandir(path):
                if e.name in seen:
                    continue
                seen.add(e.name)
                st = e.stat(follow_symlinks=False)
                if not is_whiteout(st):
                    out.append(e.name)
        return sorted(out)

    def resolve(self, path: str, *, follow_last: bool = True) -> list[str]:
        """`path` with every symlink followed inside the root (absolute links restart at the root,
        `..` stops at it); the last component is followed only if follow_last."""
        todo = [p for p in path.split("/") if p and p != "."]
        cur: list[str] = []
        hops = 0
        while todo:
            p = todo.pop(0)
            if p == "..":
                if cur:
                    cur.pop()
                continue
            cand = cur + [p]
            st = self.stat(cand)
            if st is not None and stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                link = os.readlink(self.real(cand))
                if link.startswith("/"):
                    cur = []
                todo = [x for x in link.split("/") if x and x != "."] + todo
                continue
            cur = cand
        return cur

    def read_text(self, path: str, limit: int = 1 << 20) -> str | None:
        parts = self.resolve(path)
        st = self.stat(parts)
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        with open(self.real(parts), "rb") as f:
            return f.read(limit).decode("utf-8", "replace")

    def walk(self, parts: list[str]):
        """Yield (parts, stat, real path) for `parts` and everything below it, parents first."""
        hits = self.lookup(parts)
        if not hits:
            return
        real, st = hits[0]
        yield parts, st, real
        if stat.S_ISDIR(st.st_mode):
            for name in self.listdir(parts):
                yield from self.walk(parts + [name])


def lookup_ids(view: LayerView, user: str, group: str | None) -> tuple[int, int]:
    """`user[:group]` (names or numbers) as uid, gid from the view's /etc/passwd and /etc/group,
    as buildah resolves COPY --chown and USER: a user without a group gets its primary group."""
    from rootless.errors import RootlessError

    def rows(path: str) -> list[list[str]]:
        text = view.read_text(path) or ""
        return [ln.split(":") for ln in text.splitlines() if ln and not ln.startswith("#")]

    if user.isdigit():
        uid = int(user)
        entry = next((e for e in rows("/etc/passwd") if len(e) > 3 and e[2] == user), None)
        gid = int(entry[3]) if entry and entry[3].isdigit() else uid
    else:
        entry = next((e for e in rows("/etc/passwd") if len(e) > 3 and e[0] == user), None)
        if entry is None or not entry[2].isdigit():
            raise RootlessError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3]) if entry[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in rows("/etc/group") if len(e) > 2 and e[0] == group), None)
            if g is None or not g[2].isdigit():
                raise RootlessError(
                    f"unable to find group {group}: no matching entries in group file"
                )
            gid = int(g[2])
    return uid, gid
