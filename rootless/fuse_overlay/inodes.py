"""The inode table: one Node per overlay object, stable inode numbers, hardlink identity, forget.

A Node is what the kernel knows by inode number. Directories hold O_PATH fds of their upper dir (if
any) and of the lower dirs they merge; non-directories live as (containing layer dir fd, name).
Inode numbers are keyed by the (st_dev, st_ino) of the object (packed in one int) in its layer, remembered for the life
of the mount, so a name looked up again after forget, and a file after copy-up, keep their number.
All names of one hardlinked file map to one Node.
"""

import os

ROOT_INODE = 1


def key_of(st: os.stat_result) -> int:
    """The identity of an object in its layer, (st_dev, st_ino) packed into one int."""
    return (st.st_dev << 64) | st.st_ino


class Node:
    __slots__ = (
        "ino",
        "is_dir",
        "aliases",
        "fd",
        "layer",
        "upper",
        "lowers",
        "lookups",
        "children",
        "listing",
        "frozen",
        "open_fds",
        "cached_entry",
        "unlinked",
        "freed",
    )

    def __init__(self, ino: int, is_dir: bool):
        self.ino = ino
        self.is_dir = is_dir
        self.aliases: list[tuple[Node, bytes]] = []  # (parent dir node, name); first is primary
        self.fd = -1  # non-dir: the layer dir fd that holds it
        self.layer = 0  # non-dir: 0 = upper, k = k-th lower
        self.upper: int | None = None  # dir: upper dir fd
        self.lowers: list[tuple[int, int]] = []  # dir: [(layer, fd)] merged below upper
        self.lookups = 0
        self.children: dict[bytes, Node] | None = {} if is_dir else None
        self.listing: list[bytes] | None = None
        self.frozen = False  # a lower-only object: its attributes cannot change
        self.open_fds: set[int] | tuple = ()  # open file fds (dir handles negative), made lazily
        self.cached_entry = None  # EntryAttributes of a frozen object
        self.unlinked = False
        self.freed = False

    def hold(self, fd: int) -> None:
        if not self.open_fds:
            self.open_fds = set()
        self.open_fds.add(fd)

    def unhold(self, fd: int) -> None:
        if self.open_fds:
            self.open_fds.discard(fd)

    def thaw(self) -> None:
        """The object moved to the upper dir: its attributes may change from now on."""
        self.frozen = False
        self.cached_entry = None

    @property
    def parent(self) -> "Node | None":
        return self.aliases[0][0] if self.aliases else None

    @property
    def name(self) -> bytes:
        return self.aliases[0][1]

    def layers(self) -> list[tuple[int, int]]:
        """Directory: [(layer, fd)] top first, upper included."""
        if self.upper is not None:
            return [(0, self.upper), *self.lowers]
        return list(self.lowers)

    def top_fd(self) -> int:
        return self.upper if self.upper is not None else self.lowers[0][1]

    def loc(self) -> tuple[int, bytes]:
        """(dir fd, name) for *at() calls that act on this object itself."""
        if self.is_dir:
            return self.top_fd(), b"."
        return self.fd, self.name

    def remove_alias(self, parent: "Node", name: bytes) -> None:
        self.aliases = [(p, n) for (p, n) in self.aliases if not (p is parent and n == name)]
        if parent.children.get(name) is self:
            del parent.children[name]

    def close_fds(self) -> None:
        if self.upper is not None:
            os.close(self.upper)
            self.upper = None
        for _layer, fd in self.lowers:
            os.close(fd)
        self.lowers = []


class InodeTable:
    """Inode number allocation and the live nodes."""

    def __init__(self):
        self.nodes: dict[int, Node] = {}
        self.by_key: dict[int, int] = {}
        self._next = ROOT_INODE + 1

    def get(self, ino: int) -> Node | None:
        return self.nodes.get(ino)

    def existing(self, key: int, is_dir: bool) -> Node | None:
        ino = self.by_key.get(key)
        if ino is None:
            return None
        node = self.nodes.get(ino)
        if node is None or node.is_dir != is_dir or node.unlinked or node.freed:
            return None
        return node

    def new(self, key: int | None, is_dir: bool, ino: int | None = None) -> Node:
        if ino is None:
            ino = self.by_key.get(key) if key is not None else None
            if ino is None or ino in self.nodes:
                ino = self._next
                self._next += 1
        node = Node(ino, is_dir)
        self.nodes[ino] = node
        if key is not None:
            self.by_key[key] = ino
        return node

    def register(self, key: int, node: Node) -> None:
        self.by_key[key] = node.ino

    def maybe_free(self, node: Node) -> None:
        """Drop nodes the kernel has forgotten that nothing else holds, walking up to parents."""
        while (
            node.ino != ROOT_INODE
            and not node.freed
            and node.lookups <= 0
            and not node.open_fds
            and not node.children
        ):
            node.freed = True
            self.nodes.pop(node.ino, None)
            parents = [p for p, _n in node.aliases]
            for p, n in node.aliases:
                if p.children.get(n) is node:
                    del p.children[n]
            if node.is_dir:
                node.close_fds()
            if not parents:
                return
            node = parents[0]
