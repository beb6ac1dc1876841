"""The one thin layer of unsafe syscalls: ctypes into libc, and ioctl. Nothing else in rootless calls
ctypes or ioctl.

Python 3.11 has no os.unshare/os.setns, and no wrappers at all for mount, pivot_root and friends.
Each function here is a direct, small wrapper that raises OSError with the real errno, so that
callers deal in ordinary Python exceptions. Names and flag constants follow the kernel's.
"""

import ctypes
import fcntl
import os
import struct

try:  # the soname directly: find_library() runs ldconfig/gcc and costs ~20 ms of start-up
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    from ctypes.util import find_library

    _libc = ctypes.CDLL(find_library("c"), use_errno=True)

# clone/unshare flags (linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_FORCE = 1
MNT_DETACH = 2

# prctl options (linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS_pivot_root = 155  # x86_64
_SYS_pidfd_open = 434


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def setns_path(path: str, nstype: int = 0) -> None:
    """Join the namespace at `path` (e.g. /proc/PID/ns/net)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype)
    finally:
        os.close(fd)


def mount(
    source: str | bytes | None,
    target: str | bytes,
    fstype: str | bytes | None,
    flags: int = 0,
    data: str | bytes | None = None,
) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, "mount", os.fsdecode(target))


def umount2(target: str | bytes, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), "umount2", os.fsdecode(target))


def pivot_root(new_root: str | bytes, put_old: str | bytes) -> None:
    ret = _libc.syscall(ctypes.c_long(_SYS_pivot_root), _b(new_root), _b(put_old))
    _check(ret, "pivot_root", os.fsdecode(new_root))


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    return _check(_libc.prctl(ctypes.c_int(option), *args), "prctl")


def set_cmdline(text: str) -> None:
    """Show `text` as this process's command line (/proc/PID/cmdline, ps, top) and name (comm), as
    setproctitle does: the original argv area (/proc/self/stat fields 48-49) is overwritten through
    /proc/self/mem; what does not fit is cut."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])
    data = text.encode()[: max(0, end - start - 1)]
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        mem.write(data + b"\0" * (end - start - len(data)))
    with open("/proc/self/comm", "w") as f:
        f.write(text[:15])


CLOSE_RANGE_CLOEXEC = 4


def close_range(first: int, last: int, flags: int = 0) -> None:
    """Close (or with CLOSE_RANGE_CLOEXEC mark close-on-exec) the fds first..last."""
    if first > last:
        return
    last = min(last, 0xFFFFFFFF)
    _check(_libc.close_range(ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_int(flags)),
           "close_range")  # fmt: skip


def pidfd_open(pid: int) -> int:
    return _check(_libc.syscall(ctypes.c_long(_SYS_pidfd_open), ctypes.c_int(pid), 0), "pidfd_open")


# --- capabilities (capset, _LINUX_CAPABILITY_VERSION_3) -------------------------------------
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT_RAISE = 2
_SYS_capset = 126
_CAP_V3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's effective, permitted and inheritable capability masks."""
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc.syscall(ctypes.c_long(_SYS_capset), ctypes.byref(hdr), data), "capset")


# --- libseccomp (loaded on first use) ---------------------------------------------------------------
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_FLTATR_CTL_NNP = 3
# enum scmp_compare
SCMP_CMP = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}


def SCMP_ACT_ERRNO(errno_: int) -> int:  # noqa: N802 (libseccomp's name)
    return 0x00050000 | (errno_ & 0xFFFF)


def SCMP_ACT_TRACE(msg: int) -> int:  # noqa: N802
    return 0x7FF00000 | (msg & 0xFFFF)


class _ScmpArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


_seccomp_lib = None


def _libseccomp():
    global _seccomp_lib
    if _seccomp_lib is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError:
            lib = None
        try:
            from ctypes.util import find_library

            lib = lib or ctypes.CDLL(find_library("seccomp") or "libseccomp.so.2")
        except OSError as e:
            raise OSError(2, "libseccomp is not installed (apt-get install libseccomp2)") from e
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_native.restype = ctypes.c_uint32
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ScmpArgCmp),
        ]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _seccomp_lib = lib
    return _seccomp_lib


class SeccompFilter:
    """A libseccomp filter context: add rules, then load() it into this thread (and its children)."""

    def __init__(self, default_action: int):
        self._lib = _libseccomp()
        self._ctx = self._lib.seccomp_init(default_action)
        if not self._ctx:
            raise OSError(22, "seccomp_init failed")
        # We load while holding CAP_SYS_ADMIN in our user namespace: don't force no_new_privs.
        self._lib.seccomp_attr_set(self._ctx, SCMP_FLTATR_CTL_NNP, 0)

    def resolve(self, name: str) -> int:
        """The syscall number for name, or -1 when this architecture has no such syscall."""
        return self._lib.seccomp_syscall_resolve_name(name.encode())

    def add_arch(self, name: str) -> bool:
        token = self._lib.seccomp_arch_resolve_name(name.encode())
        if not token or token == self._lib.seccomp_arch_native():
            return False
        rc = self._lib.seccomp_arch_add(self._ctx, token)
        return rc == 0

    def add_rule(
        self, action: int, syscall: int, args: list[tuple[int, int, int, int]] = ()
    ) -> int:
        """Add a rule; args are (index, op, value, value_two). Returns libseccomp's rc (0 or -errno)."""
        arr = (_ScmpArgCmp * max(1, len(args)))()
        for i, (idx, op, a, b) in enumerate(args):
            arr[i].arg, arr[i].op, arr[i].datum_a, arr[i].datum_b = idx, op, a, b
        return self._lib.seccomp_rule_add_array(self._ctx, action, syscall, len(args), arr)

    def export_bpf(self) -> bytes:
        """The compiled filter as raw BPF (an array of struct sock_filter), for seccomp_load_bpf()."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = self._lib.seccomp_export_bpf(ctypes.c_void_p(self._ctx), ctypes.c_int(fd))
            if rc < 0:
                raise OSError(-rc, f"seccomp_export_bpf: {os.strerror(-rc)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def load(self) -> None:
        rc = self._lib.seccomp_load(self._ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_load_bpf(prog: bytes) -> None:
    """Install a raw BPF seccomp filter (from SeccompFilter.export_bpf) on this thread; needs
    no_new_privs or CAP_SYS_ADMIN in the current user namespace. No libseccomp needed."""
    if len(prog) % 8:
        raise ValueError("seccomp BPF program size is not a multiple of 8")
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    ret = _libc.prctl(
        ctypes.c_int(PR_SET_SECCOMP),
        ctypes.c_ulong(SECCOMP_MODE_FILTER),
        ctypes.byref(fprog),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    _check(ret, "prctl(PR_SET_SECCOMP)")


# --- renameat2 (linux/fs.h RENAME_*), for the overlay filesystem -----------------------------------
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
RENAME_WHITEOUT = 1 << 2
_SYS_renameat2 = 316  # x86_64


def renameat2(
    olddirfd: int, oldname: str | bytes, newdirfd: int, newname: str | bytes, flags: int = 0
) -> None:
    """renameat2(2); glibc 2.28+ has a wrapper, the raw syscall keeps older ones working too."""
    ret = _libc.syscall(
        ctypes.c_long(_SYS_renameat2),
        ctypes.c_int(olddirfd),
        _b(oldname),
        ctypes.c_int(newdirfd),
        _b(newname),
        ctypes.c_uint(flags),
    )
    _check(ret, "renameat2", os.fsdecode(oldname))


# --- ioctls: network interfaces, terminals ---------------------------------------------------------
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_RUNNING = 0x40
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
_IFREQ_FLAGS = "16sH14x"  # struct ifreq: the name, then ifr_flags


def link_up(name: str) -> None:
    """Set a network interface of the current network namespace up (SIOCSIFFLAGS); needs
    CAP_NET_ADMIN over that namespace. Microseconds, against ~0.1 s for importing a netlink library
    on the container's start path."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack(_IFREQ_FLAGS, name.encode(), 0)
        flags = struct.unpack(_IFREQ_FLAGS, fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(
            s, SIOCSIFFLAGS, struct.pack(_IFREQ_FLAGS, name.encode(), flags | IFF_UP | IFF_RUNNING)
        )


def open_pty_peer(master: int) -> int:
    """Unlock the pty master (TIOCSPTLCK 0) and open its slave through it (TIOCGPTPEER), so the slave
    comes from the very devpts instance of the master, whatever is mounted at /dev/pts."""
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    return fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)


def set_controlling_tty(fd: int) -> None:
    """Make the terminal at fd the controlling terminal of this (session leader) process."""
    fcntl.ioctl(fd, TIOCSCTTY, 0)


def copy_winsize(src: int, dst: int) -> None:
    """Copy the window size of the terminal at src to the one at dst; nothing if either is none."""
    try:
        fcntl.ioctl(dst, TIOCSWINSZ, fcntl.ioctl(src, TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass
