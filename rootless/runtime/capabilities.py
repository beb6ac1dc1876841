"""Linux capabilities: names, podman's default set, --cap-add/--cap-drop, and applying them.

set_process() runs in the container's process right before exec: with the bounding set already
dropped to the container's set, it sets effective and permitted (root), or ambient-raises what
--cap-add asked for (non-root users). The inheritable set stays empty for root, as podman >= 4.0.3
leaves it (CVE-2022-27649: an inheritable set would let a program with file capabilities keep them
after dropping to another user); a non-root user's holds exactly its ambient capabilities (the
kernel's rule: ambient is a subset of inheritable), as podman's.
"""

from rootless import syscalls
from rootless.errors import ContainerError

NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip
NUMBERS = {n: i for i, n in enumerate(NAMES)}

DEFAULT = frozenset(
    {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
     "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip


_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number the kernel knows (read once per process: it cannot change)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = int(f.read())
        except OSError:
            _last_cap = len(NAMES) - 1
    return _last_cap


def _norm(name: str, flag: str) -> str:
    n = name.strip().upper()
    if n.startswith("CAP_"):
        n = n[4:]
    if n == "ALL":
        return n
    if n not in NUMBERS or NUMBERS[n] > last_cap():
        raise ContainerError(
            f"{flag} {name}: unknown capability (see capabilities(7), e.g. NET_ADMIN)"
        )
    return n


def compute(cap_add: list[str], cap_drop: list[str], privileged: bool) -> frozenset[str]:
    """The container's capability set from podman's rules (drop ALL, then add, wins over the default)."""
    top = {n for n in NAMES if NUMBERS[n] <= last_cap()}
    if privileged:
        caps = set(top)
    else:
        caps = set(DEFAULT)
    adds = [_norm(c, "--cap-add") for a in cap_add for c in a.split(",") if c]
    drops = [_norm(c, "--cap-drop") for a in cap_drop for c in a.split(",") if c]
    if "ALL" in drops:
        caps.clear()
    caps -= set(drops)
    if "ALL" in adds:
        caps |= top
    caps |= {a for a in adds if a != "ALL"}
    return frozenset(caps)


def mask(caps) -> int:
    m = 0
    for c in caps:
        m |= 1 << NUMBERS[c]
    return m


def drop_bounding(caps) -> None:
    """Drop every capability outside caps from the bounding set (needs CAP_SETPCAP: call as root)."""
    keep = mask(caps)
    for i in range(last_cap() + 1):
        if not keep & (1 << i):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, i)


def set_process(caps, uid: int, explicit_adds: list[str]) -> None:
    """After setuid: set the effective and permitted sets (root), or the --cap-add capabilities as
    effective, permitted, inheritable and ambient (non-root), as podman."""
    m = mask(caps)
    if uid == 0:
        syscalls.capset(m, m, 0)
        return
    amb = mask(
        {_norm(c, "--cap-add") for a in explicit_adds for c in a.split(",") if c} & set(caps)
    )
    syscalls.capset(amb, amb, amb)
    for i in range(last_cap() + 1):
        if amb & (1 << i):
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, i)
