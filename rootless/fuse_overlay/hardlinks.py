"""The other names of a hard-linked lower file: one index per lower layer, built lazily.

When one name of a file that has several names in a lower layer is copied up, every other visible
name must become a hard link to the same upper file (so they keep sharing one inode). Lower layers
never change while mounted, so each layer is walked at most once per mount, the first time one of
its hard-linked files is copied up; mounts that never do so pay nothing. The walk reads directories
only (getdents gives each entry's inode number): no stat per file. Only inode numbers seen under
two or more names are kept; candidates are checked with lstat (device and inode) when used.
"""

import os

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def build(root_fd: int) -> dict[int, list[tuple[bytes, bytes]]]:
    """{inode number: [(dir path relative to the layer, name), ...]} for names sharing an inode."""
    first: dict[int, tuple[bytes, bytes]] = {}
    multi: dict[int, list[tuple[bytes, bytes]]] = {}
    stack = [(b"", os.open(b".", _O_DIR, dir_fd=root_fd))]
    while stack:
        path, dfd = stack.pop()
        try:
            with os.scandir(dfd) as it:
                for e in it:
                    name = os.fsencode(e.name)
                    if e.is_dir(follow_symlinks=False):
                        try:
                            sub = os.open(name, _O_DIR, dir_fd=dfd)
                        except OSError:
                            continue  # unreadable: its files cannot be copied up either
                        stack.append((path + b"/" + name if path else name, sub))
                        continue
                    ino = e.inode()
                    seen = first.get(ino)
                    if seen is None:
                        first[ino] = (path, name)
                    elif ino in multi:
                        multi[ino].append((path, name))
                    else:
                        multi[ino] = [seen, (path, name)]
        finally:
            os.close(dfd)
    return multi


class HardlinkIndex:
    """Per lower layer: built on first use, then answered from memory."""

    def __init__(self):
        self._layers: dict[int, dict[int, list[tuple[bytes, bytes]]]] = {}

    def names(self, layer: int, root_fd: int, ino: int) -> list[tuple[bytes, bytes]]:
        """Every (dir path, name) in ``layer`` whose entry has inode number ``ino``; the caller
        resolves each through the merged tree, which also checks the device."""
        index = self._layers.get(layer)
        if index is None:
            index = self._layers[layer] = build(root_fd)
        return index.get(ino, [])
