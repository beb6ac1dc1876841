"""Resource limits in podman's terms: the flag values (``Limits.from_cli``), the cgroup v2 files they
become (``Limits.files``) and what `inspect` shows (``Limits.to_inspect``).
"""

from __future__ import annotations

import dataclasses
import os
import re

from rootless.errors import RootlessError

DEFAULT_PIDS_LIMIT = 2048  # podman's default --pids-limit
CPU_PERIOD = 100_000  # microseconds, as podman
MIN_MEMORY = 6 * 1024 * 1024  # podman refuses less than 6 MiB

# The flag each Limits field comes from, and the cgroup controller it needs.
FLAGS = {
    "memory": ("--memory", "memory"),
    "memory_swap": ("--memory-swap", "memory"),
    "memory_reservation": ("--memory-reservation", "memory"),
    "cpus": ("--cpus", "cpu"),
    "cpu_shares": ("--cpu-shares", "cpu"),
    "cpu_weight": ("--cpu-weight", "cpu"),
    "pids_limit": ("--pids-limit", "pids"),
    "cpuset_cpus": ("--cpuset-cpus", "cpuset"),
}


class CgroupError(RootlessError):
    """Resource limits were asked for but cannot be enforced on this machine (exit 125)."""


def flag_names(fields) -> str:
    """The flags that set these Limits fields, for a message."""
    return ", ".join(FLAGS[f][0] for f in fields)


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(value: str | int, flag: str = "--memory") -> int:
    """podman's byte syntax: ``1024``, ``512k``, ``64m``, ``1g`` (also ``64MB``, ``64MiB``); -1 = unlimited."""
    if isinstance(value, int):
        return value
    s = str(value).strip().lower()
    if s == "-1":
        return -1
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?", s)
    if not m:
        raise CgroupError(
            f"invalid {flag} value {value!r}: use a number with an optional unit b, k, m or g (e.g. 64m)"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _parse_int(value, flag: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise CgroupError(f"invalid {flag} value {value!r}: expected an integer") from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise CgroupError(f"invalid {flag} value {n}: must be between {lo} and {hi}")
    return n


@dataclasses.dataclass
class Limits:
    """The resource limits of one container, in podman's terms. None = not asked for.

    memory, memory_swap, memory_reservation: bytes (memory_swap is memory + swap; -1 = unlimited swap).
    cpus: CPUs as a float (cpu.max quota/period). cpu_shares: 2..262144 (converted to cpu.weight).
    cpu_weight: 1..10000. pids_limit: None = podman's default 2048 where it can be enforced; 0 or -1 =
    unlimited. cpuset_cpus: "0-1,3". oom_score_adj: -1000..1000 (written to /proc/PID/oom_score_adj).
    """

    memory: int | None = None
    memory_swap: int | None = None
    memory_reservation: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpu_weight: int | None = None
    pids_limit: int | None = None
    cpuset_cpus: str | None = None
    oom_score_adj: int | None = None

    @classmethod
    def from_cli(
        cls,
        memory=None,
        memory_swap=None,
        memory_reservation=None,
        cpus=None,
        cpu_shares=None,
        cpu_weight=None,
        pids_limit=None,
        cpuset_cpus=None,
        oom_score_adj=None,
    ) -> Limits:
        """Parse and validate podman's flag values ("64m", "0.5", "0-1"); None means the flag was not given."""
        lim = cls()
        for flag, value in (("memory", memory), ("memory-reservation", memory_reservation)):
            if value is not None and str(value).strip().startswith("-"):
                raise CgroupError(f"invalid value for {flag}: invalid size: {str(value)!r}")
        if memory is not None:
            lim.memory = parse_bytes(memory, "--memory")
            if lim.memory == -1 or lim.memory == 0:
                lim.memory = None
            elif lim.memory < MIN_MEMORY:
                raise CgroupError(f"invalid --memory {memory}: the minimum memory limit is 6m")
        if memory_swap is not None:
            lim.memory_swap = parse_bytes(memory_swap, "--memory-swap")
            if lim.memory_swap != -1:
                if lim.memory is None:
                    raise CgroupError(
                        "--memory-swap needs --memory: give both, e.g. --memory 64m --memory-swap 128m"
                    )
                if lim.memory_swap < lim.memory:
                    raise CgroupError(
                        "--memory-swap must be at least --memory (it is memory plus swap); use -1 for unlimited swap"
                    )
        if memory_reservation is not None:
            lim.memory_reservation = parse_bytes(memory_reservation, "--memory-reservation")
            if lim.memory is not None and lim.memory_reservation > lim.memory:
                raise CgroupError("--memory-reservation must not exceed --memory")
        if cpus is not None:
            try:
                lim.cpus = float(cpus)
            except ValueError:
                raise CgroupError(
                    f"invalid --cpus value {cpus!r}: expected a number such as 0.5"
                ) from None
            ncpu = os.cpu_count() or 1
            if lim.cpus < 0 or lim.cpus > ncpu:
                raise CgroupError(
                    f"invalid --cpus {cpus}: must be between 0 and the {ncpu} CPUs of this machine"
                )
            if lim.cpus == 0:
                lim.cpus = None
        if cpu_shares is not None:
            lim.cpu_shares = _parse_int(cpu_shares, "--cpu-shares", 2, 262144)
        if cpu_weight is not None:
            lim.cpu_weight = _parse_int(cpu_weight, "--cpu-weight", 1, 10000)
        if lim.cpu_shares is not None and lim.cpu_weight is not None:
            raise CgroupError("--cpu-shares and --cpu-weight set the same thing: give only one")
        if pids_limit is not None:
            lim.pids_limit = _parse_int(pids_limit, "--pids-limit", -1)
            if lim.pids_limit == 0:
                lim.pids_limit = -1
        if cpuset_cpus is not None:
            s = str(cpuset_cpus).strip()
            if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", s):
                raise CgroupError(
                    f"invalid --cpuset-cpus {cpuset_cpus!r}: use a list such as 0-1,3"
                )
            lim.cpuset_cpus = s
        if oom_score_adj is not None:
            lim.oom_score_adj = _parse_int(oom_score_adj, "--oom-score-adj", -1000, 1000)
        return lim

    def explicit(self) -> list[str]:
        """The cgroup limit fields the user asked for (a None pids_limit is the default, not asked)."""
        return [f for f in FLAGS if getattr(self, f) is not None]

    def cpu_weight_value(self) -> int | None:
        """cpu.weight: --cpu-weight, or --cpu-shares converted as crun does."""
        if self.cpu_weight is not None:
            return self.cpu_weight
        if self.cpu_shares is not None:
            return 1 + ((self.cpu_shares - 2) * 9999) // 262142
        return None

    def files(self, *, default_pids: bool = True) -> dict[str, str]:
        """The cgroup v2 files to write in the container's leaf, in order."""
        out: dict[str, str] = {}
        if self.memory is not None:
            out["memory.max"] = str(self.memory)
            if self.memory_swap is None:
                out["memory.swap.max"] = str(self.memory)  # podman: as much swap as memory
            elif self.memory_swap == -1:
                out["memory.swap.max"] = "max"
            else:
                out["memory.swap.max"] = str(self.memory_swap - self.memory)
        if self.memory_reservation is not None:
            out["memory.low"] = str(self.memory_reservation)
        if self.cpus is not None:
            out["cpu.max"] = f"{max(1000, round(self.cpus * CPU_PERIOD))} {CPU_PERIOD}"
        w = self.cpu_weight_value()
        if w is not None:
            out["cpu.weight"] = str(w)
        pids = (
            self.pids_limit
            if self.pids_limit is not None
            else (DEFAULT_PIDS_LIMIT if default_pids else None)
        )
        if pids is not None:
            out["pids.max"] = "max" if pids < 0 else str(pids)
        if self.cpuset_cpus is not None:
            out["cpuset.cpus"] = self.cpuset_cpus
        return out

    def to_inspect(self) -> dict:
        """The limits as podman's `inspect` HostConfig shows them (0 = unset)."""
        return {
            "Memory": self.memory or 0,
            "MemorySwap": self.memory_swap
            if self.memory_swap is not None
            else (2 * self.memory if self.memory else 0),
            "MemoryReservation": self.memory_reservation or 0,
            "NanoCpus": int((self.cpus or 0) * 1e9),
            "CpuShares": self.cpu_shares or 0,
            "CpuWeight": self.cpu_weight_value() or 0,
            "PidsLimit": self.pids_limit if self.pids_limit is not None else DEFAULT_PIDS_LIMIT,
            "CpusetCpus": self.cpuset_cpus or "",
            "OomScoreAdj": self.oom_score_adj or 0,
        }
