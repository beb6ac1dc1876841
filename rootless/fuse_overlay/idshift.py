"""Id shifting at the overlay's boundary (fuse-overlayfs's `uidmapping=`/`gidmapping=` options).

The layers and the upper dir keep the ids they have on disk (as the daemon sees them: rootless's
default mapping). A container in a nested user namespace (`--userns=keep-id`, `auto`, `nomap`,
`--uidmap`) must see each file with the id it has in the image, so the daemon reports a file owned
by on-disk id d as the id its namespace gives to container id d (`out`), and stores what the kernel
hands it (a caller's id, a chown target) as the container id it stands for (`disk`). The mapping is
the nested namespace's own: "container:outer:size" triplets, container first. An id with no
counterpart is reported as one the kernel shows as the overflow id (65534), and stored as it is.
"""

from __future__ import annotations

UNMAPPED = 0xFFFFFFFE  # never mapped in rootless's namespace: the kernel shows it as 65534


def parse(value: str) -> tuple[tuple[int, int, int], ...]:
    """ "c:h:s[:c:h:s...]" -> triplets (ValueError for anything else)."""
    parts = value.split(":")
    if not value or len(parts) % 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"bad id mapping {value!r}: expected CONTAINER:HOST:SIZE[:...]")
    nums = [int(p) for p in parts]
    return tuple((nums[i], nums[i + 1], nums[i + 2]) for i in range(0, len(nums), 3))


class Shift:
    """One direction pair (for uids or gids)."""

    def __init__(self, triplets):
        self.triplets = tuple(triplets)

    def out(self, disk: int) -> int:
        for c, h, s in self.triplets:
            if c <= disk < c + s:
                return h + disk - c
        return UNMAPPED

    def disk(self, outer: int) -> int:
        if outer < 0:
            return outer  # chown's "leave it"
        for c, h, s in self.triplets:
            if h <= outer < h + s:
                return c + outer - h
        return outer


class IdShift:
    """uids and gids (either may be the identity)."""

    def __init__(self, uid_map=(), gid_map=()):
        self.uid = Shift(uid_map) if uid_map else None
        self.gid = Shift(gid_map) if gid_map else None

    def out(self, uid: int, gid: int) -> tuple[int, int]:
        return (self.uid.out(uid) if self.uid else uid, self.gid.out(gid) if self.gid else gid)

    def disk_uid(self, uid: int) -> int:
        return self.uid.disk(uid) if self.uid else uid

    def disk_gid(self, gid: int) -> int:
        return self.gid.disk(gid) if self.gid else gid
