"""The build context: its ignore file, COPY/ADD source matching, and content digests for the cache.

`.containerignore` (else `.dockerignore`) holds patterns as docker reads them: one per line, `#`
comments, Go filepath.Match syntax plus `**` (any number of directories), `!` to re-include; a path
is ignored if it or one of its parent directories matches, the last matching pattern winning.
Sources are matched the same way (`*`, `?`, `[...]` within one path component) and never leave the
context: `COPY ../x` is refused. `digest()` hashes what a COPY would copy (names, types, modes,
sizes, link targets and contents), which keys the build cache; file hashes are remembered by
(path, size, mtime, inode) in the store so a rebuild reads only changed files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat

from rootless.errors import RootlessError

META = re.compile(r"[*?\[]")


class ContextError(RootlessError):
    pass


def _component_regex(pat: str) -> str:
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if c == "*":
            if pat.startswith("**", i):
                j = i + 2
                if j < len(pat) and pat[j] == "/":
                    out.append("(?:.*/)?")
                    i = j + 1
                else:
                    out.append(".*")
                    i = j
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pat.find("]", i + 1)
            if end < 0:
                raise ContextError(f"bad pattern {pat!r}: unterminated [")
            body = pat[i + 1 : end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif c == "\\" and i + 1 < len(pat):
            out.append(re.escape(pat[i + 1]))
            i += 1
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def compile_pattern(pat: str) -> re.Pattern:
    return re.compile("^" + _component_regex(pat) + "$")


def clean(path: str) -> str:
    """filepath.Clean of a relative path; '' for the context root."""
    parts: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            else:
                parts.append("..")
            continue
        parts.append(p)
    return "/".join(parts)


class Ignore:
    def __init__(self, lines: list[str]):
        self.rules: list[tuple[bool, re.Pattern]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            if neg:
                line = line[1:].strip()
            line = clean(line.lstrip("/"))
            if not line:
                continue
            self.rules.append((neg, compile_pattern(line)))
        # with a `!` rule, an ignored directory may still hold files to copy: look inside it
        self.descend_ignored = any(neg for neg, _ in self.rules)

    def ignored(self, rel: str) -> bool:
        if not self.rules or not rel:
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = False
        for neg, rx in self.rules:
            if any(rx.match(p) for p in prefixes):
                hit = not neg
        return hit


class Context:
    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise ContextError(f"the build context {root} is not a directory")
        lines: list[str] = []
        for name in (".containerignore", ".dockerignore"):
            p = os.path.join(self.root, name)
            if os.path.isfile(p):
                with open(p, encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
                break
        self.ignore_lines = lines
        self.ignore = Ignore(lines)
        self._hashes: dict[str, list] | None = None
        self._dirty = False

    # --- sources ---------------------------------------------------------------------------------
    def match(self, src: str) -> list[str]:
        """Relative paths in the context that `src` names (globs expanded), refusing escapes."""
        rel = clean(src.lstrip("/"))
        if rel == ".." or rel.startswith("../"):
            raise ContextError(
                f"{src} is outside the build context {self.root}: "
                "only files in the context can be copied"
            )
        if not META.search(rel):
            full = os.path.join(self.root, rel) if rel else self.root
            if not os.path.lexists(full) or self.ignore.ignored(rel):
                raise ContextError(
                    f"{src}: no such file or directory in the build context {self.root}"
                    + (" (excluded by the ignore file)" if os.path.lexists(full) else "")
                )
            self._check_inside(rel, src)
            return [rel]
        found = self._glob(rel.split("/"), "")
        found = [f for f in found if not self.ignore.ignored(f)]
        if not found:
            raise ContextError(f"no files in the build context match {src}")
        return sorted(found)

    def _glob(self, parts: list[str], base: str) -> list[str]:
        head, rest = parts[0], parts[1:]
        d = os.path.join(self.root, base) if base else self.root
        if META.search(head):
            rx = compile_pattern(head)
            try:
                names = sorted(os.listdir(d))
            except OSError:
                return []
            cands = [n for n in names if rx.match(n)]
        else:
            cands = [head] if os.path.lexists(os.path.join(d, head)) else []
        out = []
        for n in cands:
            rel = f"{base}/{n}" if base else n
            if not rest:
                out.append(rel)
            elif os.path.isdir(os.path.join(self.root, rel)):
                out += self._glob(rest, rel)
        return out

    def _check_inside(self, rel: str, src: str) -> None:
        """A source that is a symlink is followed (as docker does), but only inside the context."""
        real = os.path.realpath(os.path.join(self.root, rel))
        if real != self.root and not real.startswith(self.root + "/"):
            raise ContextError(f"{src} points outside the build context {self.root}: refusing it")

    def walk(self, rel: str):
        """Yield relative paths under `rel` (itself first), skipping ignored ones; symlinks are
        entries, not followed."""
        full = os.path.join(self.root, rel) if rel else self.root
        yield rel
        if os.path.isdir(full) and (not rel or not os.path.islink(full)):
            for name in sorted(os.listdir(full)):
                sub = f"{rel}/{name}" if rel else name
                if not self.ignore.ignored(sub):
                    yield from self.walk(sub)
                elif self.ignore.descend_ignored and os.path.isdir(os.path.join(full, name)):
                    yield from list(self.walk(sub))[1:]

    # --- digests ---------------------------------------------------------------------------------
    def _cache_path(self) -> str:
        from rootless import paths

        return os.path.join(paths.data_home(), "build", "filehashes.json")

    def _file_hash(self, full: str, st: os.stat_result) -> str:
        if self._hashes is None:
            try:
                with open(self._cache_path()) as f:
                    self._hashes = json.load(f)
            except (OSError, ValueError):
                self._hashes = {}
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = self._hashes.get(full)
        if hit and hit[:3] == key:
            return hit[3]
        h = hashlib.sha256()
        with open(full, "rb") as f:
            while b := f.read(1 << 20):
                h.update(b)
        self._hashes[full] = key + [h.hexdigest()]
        self._dirty = True
        return h.hexdigest()

    def digest(self, rels: list[str]) -> str:
        """sha256 of what copying `rels` would copy (see the module docstring)."""
        h = hashlib.sha256()
        for top in rels:
            for rel in self.walk(top):
                full = os.path.join(self.root, rel) if rel else self.root
                follow = rel == top  # a named source that is a symlink is followed
                st = os.stat(full) if follow else os.lstat(full)
                line = [rel[len(top) :], stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)]
                if stat.S_ISREG(st.st_mode):
                    line += [st.st_size, self._file_hash(full, st)]
                elif stat.S_ISLNK(st.st_mode):
                    line.append(os.readlink(full))
                h.update(json.dumps([top] + line).encode() + b"\n")
        return h.hexdigest()

    def save_hashes(self) -> None:
        if not self._dirty or self._hashes is None:
            return
        path = self._cache_path()
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            # keep the cache bounded: the most recent entries of this context and others
            items = list(self._hashes.items())[-20000:]
            with open(tmp, "w") as f:
                json.dump(dict(items), f)
            os.replace(tmp, path)
        except OSError:
            pass
