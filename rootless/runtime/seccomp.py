"""Seccomp: which profile a container gets, and compiling it exactly as podman (with runc) does.

The profile (default_profile(), podman's DefaultSeccompPath): containers.conf's `seccomp_profile`
(`unconfined` means none), else /etc/containers/seccomp.json, else /usr/share/containers/seccomp.json
(containers-common's, which podman's packages install), else the built-in default: the same rules as
containers-common's seccomp.json, written as the tables below. Unlisted syscalls fail with ENOSYS, so
a libc falls back to an older call; mount, unshare, clone3 and the like are allowed (the user
namespace confines them); a few are gated on a capability (EPERM without it). `--security-opt
seccomp=PROFILE.json` reads the same JSON format (load_profile_file); `seccomp=unconfined` loads
nothing, nor does `--privileged` unless a profile other than the system's is named (as podman).

resolve() turns a profile into the rules for a capability set as containers/common's setupSeccomp
and runc do: `architectures` or the native entry of `archMap`; rules filtered by includes/excludes
`caps` (the bounding set, spelled CAP_X), `arches` (Go's names: amd64, arm64, ...) and `minKernel`;
`errno` names over `errnoRet`; rules whose action is the default dropped; conditions on one argument
split into separate rules. compile() hands them to libseccomp (rootless.syscalls.SeccompFilter), and
bpf() caches the compiled program: for a profile file, keyed on the file's identity, so a cache hit
neither reads nor parses the JSON.
"""

import errno
import json
import os

from rootless.errors import ContainerError

SYSTEM_PROFILES = ("/etc/containers/seccomp.json", "/usr/share/containers/seccomp.json")

# --- the built-in default: containers-common's seccomp.json (0.50.1, Debian 12), as tables -------
_EPERM = """
bdflush io_pgetevents kexec_file_load kexec_load migrate_pages move_pages nfsservctl nice oldfstat
oldlstat oldolduname oldstat olduname pciconfig_iobase pciconfig_read pciconfig_write sgetmask
ssetmask swapcontext swapoff swapon sysfs uselib userfaultfd ustat vm86 vm86old vmsplice
"""
_ALLOW = """
_llseek _newselect accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 clone clone3 close close_range connect copy_file_range creat
dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64
fdatasync fgetxattr flistxattr flock fork fremovexattr fsconfig fsetxattr fsmount fsopen fspick
fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futimesat
get_mempolicy get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid
getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid
getsockname getsockopt gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents io_setup io_submit ioctl ioprio_get
ioprio_set ipc keyctl kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr lremovexattr lseek lsetxattr lstat lstat64
madvise mbind membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
mlockall mmap mmap2 mount mount_setattr move_mount mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl
msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat open
open_tree openat openat2 pause pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pivot_root
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease process_vm_readv process_vm_writev pselect6 pselect6_time64 ptrace pwrite64 pwritev
pwritev2 read readahead readdir readlink readlinkat readv reboot recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir
rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max
sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
sendfile sendfile64 sendmmsg sendmsg sendto set_mempolicy set_robust_list set_thread_area
set_tid_address setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
setitimer setns setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32
setreuid setreuid32 setrlimit setsid setsockopt setuid setuid32 setxattr shmat shmctl shmdt shmget
shutdown sigaction sigaltstack signal signalfd signalfd4 sigpending sigprocmask sigreturn sigsuspend
socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
sync_file_range syncfs syscall sysinfo syslog tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64
ugetrlimit umask umount umount2 uname unlink unlinkat unshare utime utimensat utimensat_time64 utimes
vfork wait4 waitid waitpid write writev
"""
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # linux, 32bit, unames26 and queries
_ALLOW_ON = {  # allowed on these native architectures (Go's names)
    "ppc64le": "sync_file_range2",
    "arm arm64": "arm_fadvise64_64 arm_sync_file_range breakpoint cacheflush set_tls "
    "sync_file_range2",
    "amd64 x32": "arch_prctl",
    "amd64 x32 x86": "modify_ldt",
    "s390 s390x": "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
}
_ALLOW_WITH = {  # allowed with the capability in the bounding set, EPERM without it
    "DAC_READ_SEARCH": "open_by_handle_at",
    "SYS_ADMIN": "bpf fanotify_init lookup_dcookie perf_event_open quotactl setdomainname "
    "sethostname setns",
    "SYS_CHROOT": "chroot",
    "SYS_MODULE": "delete_module finit_module init_module query_module",
    "SYS_PACCT": "acct",
    "SYS_PTRACE": "kcmp process_madvise",
    "SYS_RAWIO": "ioperm iopl",
    "SYS_TIME": "clock_settime clock_settime64 settimeofday stime",
    "SYS_TTY_CONFIG": "vhangup",
}
_ARCH_MAP = {  # native architecture -> the others its filter covers
    "X86_64": "X86 X32",
    "AARCH64": "ARM",
    "MIPS64": "MIPS MIPS64N32",
    "MIPS64N32": "MIPS MIPS64",
    "MIPSEL64": "MIPSEL MIPSEL64N32",
    "MIPSEL64N32": "MIPSEL MIPSEL64",
    "S390X": "S390",
}
_AF_NETLINK, _NETLINK_AUDIT = 16, 9


def _rule(names, action="SCMP_ACT_ALLOW", errno_ret=None, args=(), includes=None, excludes=None):
    r = {"names": names.split() if isinstance(names, str) else list(names), "action": action}
    if errno_ret is not None:
        r["errnoRet"] = errno_ret
    if args:
        r["args"] = [{"index": i, "value": v, "valueTwo": 0, "op": op} for i, op, v in args]
    for key, val in (("includes", includes), ("excludes", excludes)):
        if val:
            r[key] = val
    return r


def builtin_profile() -> dict:
    """The built-in default profile (for hosts without containers-common), in the JSON format."""
    eq, ne, audit = "SCMP_CMP_EQ", "SCMP_CMP_NE", {"caps": ["CAP_AUDIT_WRITE"]}
    rules = [_rule(_EPERM, "SCMP_ACT_ERRNO", errno.EPERM), _rule(_ALLOW)]
    rules += [_rule("personality", args=[(0, eq, p)]) for p in _PERSONALITIES]
    rules += [_rule(n, includes={"arches": a.split()}) for a, n in _ALLOW_ON.items()]
    for cap, names in _ALLOW_WITH.items():
        caps = {"caps": [f"CAP_{cap}"]}
        rules += [_rule(names, includes=caps)]
        rules += [_rule(names, "SCMP_ACT_ERRNO", errno.EPERM, excludes=caps)]
    # audit netlink sockets only with AUDIT_WRITE (EINVAL, as if the kernel had no audit)
    no_audit = [(0, eq, _AF_NETLINK), (2, eq, _NETLINK_AUDIT)]
    rules += [_rule("socket", "SCMP_ACT_ERRNO", errno.EINVAL, no_audit, excludes=audit)]
    for arg in ((2, ne, _NETLINK_AUDIT), (0, ne, _AF_NETLINK), (2, ne, _NETLINK_AUDIT)):
        rules += [_rule("socket", args=[arg], excludes=audit)]
    rules += [_rule("socket", includes=audit)]
    arch_map = [
        {
            "architecture": f"SCMP_ARCH_{a}",
            "subArchitectures": [f"SCMP_ARCH_{s}" for s in sub.split()],
        }
        for a, sub in _ARCH_MAP.items()
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "archMap": arch_map,
        "syscalls": rules,
    }


# --- which profile ------------------------------------------------------------------------------
class ProfileFile:
    """A profile file known by its identity (device, inode, size, mtime): bpf() parses it only when
    no compiled program is cached for that identity."""

    def __init__(self, path: str, st: os.stat_result):
        self.path = path
        self.ident = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]

    def load(self) -> dict:
        return load_profile_file(self.path)


def default_profile():
    """The profile podman would apply by default: a ProfileFile, the built-in dict, or None when
    containers.conf says `seccomp_profile = "unconfined"`."""
    path = _containers_conf_profile()
    if path == "unconfined":
        return None
    candidates = [path] if path else SYSTEM_PROFILES
    for p in candidates:
        try:
            return ProfileFile(p, os.stat(p))
        except FileNotFoundError:
            if path:
                raise ContainerError(
                    f"seccomp profile {path} (containers.conf seccomp_profile): no such file"
                ) from None
        except OSError as e:
            raise ContainerError(f"seccomp profile {p}: cannot read it ({e.strerror})") from None
    return builtin_profile()


def _containers_conf_profile() -> str | None:
    """containers.conf's [containers] seccomp_profile, if a file sets it."""
    from rootless import containers_conf

    value = containers_conf.table("containers", ("seccomp_profile",)).get("seccomp_profile")
    return value if isinstance(value, str) and value else None


def load_profile_file(path: str) -> dict:
    """Read and check a profile in the JSON format (podman's --security-opt seccomp=PATH)."""
    try:
        with open(path, "rb") as f:
            prof = json.load(f)
    except OSError as e:
        raise ContainerError(f"seccomp profile {path}: cannot read it ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise ContainerError(f"seccomp profile {path}: invalid JSON ({e.args[0]}{where})") from None
    if not isinstance(prof, dict):
        raise ContainerError(f"seccomp profile {path}: not a seccomp profile (a JSON object)")
    try:
        resolve(prof, frozenset())
    except ContainerError as e:
        raise ContainerError(f"seccomp profile {path}: {e}") from None
    return prof


# --- resolving a profile for a capability set ---------------------------------------------------
ACTIONS = {
    "SCMP_ACT_KILL": "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_THREAD": "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS": "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP": "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO": "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE": "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW": "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG": "SCMP_ACT_LOG",
}
OPS = "SCMP_CMP_NE SCMP_CMP_LT SCMP_CMP_LE SCMP_CMP_EQ SCMP_CMP_GE SCMP_CMP_GT SCMP_CMP_MASKED_EQ".split()
_ARCHES = set(_ARCH_MAP) | set(" ".join(_ARCH_MAP.values()).split())
_ARCHES |= {"NATIVE", "PPC", "PPC64", "PPC64LE", "PARISC", "PARISC64", "RISCV64"}
_GOARCH = {"x86_64": "amd64", "i386": "x86", "i686": "x86", "aarch64": "arm64", "armv7l": "arm"}


def native_arch() -> str:
    """This machine's architecture as Go (and so profiles' `arches`) names it."""
    machine = os.uname().machine
    return _GOARCH.get(machine, machine)


def _kernel() -> tuple[int, int]:
    return _version(os.uname().release)


def _version(text: str) -> tuple[int, int]:
    parts = (str(text).split("-")[0].split(".") + ["0"])[:2]
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except ValueError:
        raise ContainerError(f"minKernel {text!r}: not a kernel version like 5.8") from None


def _errno(name, number, default=None) -> int | None:
    """podman's getErrno: an `errno` name (or number) wins over `errnoRet`."""
    if name:
        if str(name).isdigit():
            return int(name)
        value = getattr(errno, str(name), None)
        if not isinstance(value, int) or not str(name).startswith("E"):
            raise ContainerError(f"unknown errno {name}")
        return value
    return default if number is None else int(number)


def _action(name, errno_name=None, errno_ret=None) -> tuple[str, int | None]:
    """An action as runc compares them: (SCMP_ACT_X, errno or None); ERRNO and TRACE default to
    EPERM."""
    if name not in ACTIONS:
        raise ContainerError(f"unsupported action {name!r}")
    act = ACTIONS[name]
    if act in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return act, _errno(errno_name, errno_ret, errno.EPERM)
    return act, None


def _applies(rule: dict, bounding: set, arch: str, kernel: tuple[int, int]) -> bool:
    """containers/common's filter: excludes, then includes (caps all required), and minKernel."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if arch in (exc.get("arches") or []) or any(c in bounding for c in exc.get("caps") or []):
        return False
    if exc.get("minKernel") and kernel >= _version(exc["minKernel"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in bounding for c in inc.get("caps") or []):
        return False
    return not (inc.get("minKernel") and kernel < _version(inc["minKernel"]))


def resolve(profile: dict, caps: frozenset[str], arch: str | None = None, kernel=None):
    """The profile for these capabilities (names without CAP_) on this architecture and kernel:
    (default action, [SCMP_ARCH_X], [(syscall, action, ((index, op, value, value_two), ...))]),
    or None when the profile confines nothing (no defaultAction and no rules)."""
    try:
        return _resolve(profile, caps, arch or native_arch(), kernel or _kernel())
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ContainerError(f"malformed profile ({type(e).__name__.lower()}: {e})") from None


def _resolve(profile: dict, caps: frozenset[str], arch: str, kernel: tuple[int, int]):
    bounding = {f"CAP_{c}" for c in caps}
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None
    default = _action(
        profile.get("defaultAction"), profile.get("defaultErrno"), profile.get("defaultErrnoRet")
    )
    if profile.get("architectures") and profile.get("archMap"):
        raise ContainerError("use either 'architectures' or 'archMap', not both")
    arches = list(profile.get("architectures") or [])
    go_to_scmp = {"amd64": "X86_64", "arm64": "AARCH64", "s390x": "S390X"}
    go_to_scmp.update({a: a.upper() for a in ("mips64", "mips64n32", "mipsel64", "mipsel64n32")})
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == f"SCMP_ARCH_{go_to_scmp.get(arch)}":
            arches += [entry["architecture"], *(entry.get("subArchitectures") or [])]
            break
    for a in arches:
        if not isinstance(a, str) or a.removeprefix("SCMP_ARCH_") not in _ARCHES:
            raise ContainerError(f"unknown architecture {a!r}")
    rules = []
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict):
            raise ContainerError("a syscalls entry is not an object")
        if not _applies(rule, bounding, arch, kernel):
            continue
        if rule.get("name") and rule.get("names"):
            raise ContainerError("use either 'name' or 'names' in a rule, not both")
        action = _action(rule.get("action"), rule.get("errno"), rule.get("errnoRet"))
        conds = []
        for a in rule.get("args") or []:
            if a.get("op") not in OPS or not 0 <= int(a.get("index", -1)) < 6:
                raise ContainerError(f"bad argument condition {a!r}")
            conds.append(
                (int(a["index"]), a["op"], int(a.get("value", 0)), int(a.get("valueTwo", 0)))
            )
        if action == default:  # runc: redundant, skipped
            continue
        # runc: two conditions on one argument become one rule per condition (OR, not AND)
        split = len({c[0] for c in conds}) < len(conds)
        groups = [(c,) for c in conds] if split else [tuple(conds)]
        names = [rule["name"]] if rule.get("name") else list(rule.get("names") or [])
        rules += [(name, action, g) for name in names for g in groups]
    return default, arches, rules


# --- compiling ----------------------------------------------------------------------------------
def _scmp_action(action: tuple[str, int | None]) -> int:
    from rootless import syscalls as sc

    name, err = action
    if name == "SCMP_ACT_ERRNO":
        return sc.SCMP_ACT_ERRNO(err)
    if name == "SCMP_ACT_TRACE":
        return sc.SCMP_ACT_TRACE(err)
    return getattr(sc, name)


def compile(profile: dict, caps: frozenset[str]):
    """A libseccomp filter for the capability set (None: the profile confines nothing); the caller
    exports or loads it, then release()s it."""
    from rootless import syscalls as sc

    resolved = resolve(profile, caps)
    if resolved is None:
        return None
    default, arches, rules = resolved
    flt = sc.SeccompFilter(_scmp_action(default))
    try:
        for arch in arches:
            flt.add_arch(arch.removeprefix("SCMP_ARCH_").lower())
        ops = sc.SCMP_CMP
        for name, action, conds in rules:
            nr = flt.resolve(name)
            if nr == -1:  # unknown to libseccomp (runc ignores it too)
                continue
            args = [(i, ops[op], a, b) for i, op, a, b in conds]
            rc = flt.add_rule(_scmp_action(action), nr, args)
            if rc < 0 and -rc not in (errno.EACCES, errno.EEXIST, errno.EDOM, errno.EOPNOTSUPP):
                raise OSError(-rc, f"seccomp rule for {name}: {errno.errorcode.get(-rc, rc)}")
    except BaseException:
        flt.release()
        raise
    return flt


def bpf(profile, caps: frozenset[str], cache_dir: str | None = None) -> bytes | None:
    """The profile (a dict or a ProfileFile) compiled to raw BPF for the capability set, or None if
    it confines nothing. Cached in cache_dir: the default profile compiles in 25-45 ms, a cache hit
    costs a file read (and a profile file's stat, in default_profile()). A cache file holds the key text, a NUL (JSON has none) and the
    program, and is used only if its key text matches, so its name can be a cheap checksum (zlib,
    not hashlib: loading OpenSSL costs ~2 ms per run)."""
    key = path = None
    if cache_dir:
        import zlib

        what = (
            ["file", profile.path, profile.ident] if isinstance(profile, ProfileFile) else profile
        )
        key = json.dumps([what, sorted(caps), os.uname().release], sort_keys=True).encode()
        path = os.path.join(cache_dir, f"{zlib.crc32(key):08x}-{len(key):x}.bpf")
        try:
            with open(path, "rb") as f:
                blob = f.read()
            if blob.startswith(key + b"\0"):
                return blob[len(key) + 1 :] or None
        except OSError:
            pass
    if isinstance(profile, ProfileFile):
        profile = profile.load()
    flt = compile(profile, caps)
    prog = b""
    if flt is not None:
        try:
            prog = flt.export_bpf()
        finally:
            flt.release()
    if path:
        try:
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(key + b"\0" + prog)
            os.replace(tmp, path)
        except OSError:
            pass
    return prog or None
