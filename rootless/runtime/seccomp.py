"""Seccomp: the default profile (in the OCI profile format, like podman's) and loading a profile.

Unknown and unlisted syscalls fail with ENOSYS (so that libcs fall back, e.g. from clone3 to clone);
dangerous ones (mount, kexec, modules, keyrings, bpf, namespace creation, ...) fail with EPERM unless
the capability that would make them meaningful is granted. ``--security-opt seccomp=PROFILE.json``
takes a profile in the same OCI/podman JSON format; ``seccomp=unconfined`` and ``--privileged`` load
nothing. Profiles are compiled by libseccomp (rootless.syscalls.SeccompFilter).
"""

import errno
import json
import os

from rootless.errors import ContainerError

# Syscalls any ordinary program may use.
_ALLOW = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64
close close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl
epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat
fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr
fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64
futex_waitv futimesat get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid
getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getrusage
getsid getsockname getsockopt gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents
io_pgetevents_time64 io_setup io_submit io_uring_enter io_uring_register io_uring_setup ioctl ioprio_get
ioprio_set ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr lremovexattr lseek lsetxattr lstat lstat64 madvise
membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap
mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat open openat openat2 pause pidfd_getfd pidfd_open
pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64
preadv preadv2 prlimit64 process_mrelease process_vm_readv process_vm_writev pselect6
pselect6_time64 ptrace pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom
recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall
rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max
sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
sendfile sendfile64 sendmmsg sendmsg sendto set_robust_list set_thread_area set_tid_address setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid
setsockopt setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socket socketcall socketpair splice stat stat64 statfs statfs64 statx symlink
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64
ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork wait4 waitid
waitpid write writev arch_prctl modify_ldt chroot sethostname setdomainname
""".split()

# Allowed only with the capability (podman's includes.caps); EPERM otherwise.
_CAP_GATED = {
    "SYS_ADMIN": "mount umount umount2 pivot_root unshare setns fsopen fsconfig fsmount fsmount fspick "
    "move_mount open_tree mount_setattr quotactl quotactl_fd lookup_dcookie perf_event_open "
    "fanotify_init vhangup bpf clone3 open_by_handle_at",
    "SYS_MODULE": "init_module finit_module delete_module",
    "SYS_BOOT": "reboot kexec_load kexec_file_load",
    "SYS_TIME": "settimeofday stime clock_settime clock_settime64 clock_adjtime clock_adjtime64",
    "SYS_PACCT": "acct",
    "SYS_RAWIO": "iopl ioperm",
    "SYS_NICE": "get_mempolicy set_mempolicy mbind set_mempolicy_home_node move_pages migrate_pages",
    "SYSLOG": "syslog",
    "SYS_TTY_CONFIG": "vhangup",
    "PERFMON": "perf_event_open",
    "BPF": "bpf",
}

# Never useful in a container: EPERM, whatever the capabilities.
_DENY = (
    "add_key keyctl request_key userfaultfd swapon swapoff uselib nfsservctl create_module "
    "get_kernel_syms query_module _sysctl sysfs ustat vm86 vm86old"
).split()

_CLONE_NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def default_profile() -> dict:
    """The default profile as an OCI seccomp profile dict."""
    eperm = errno.EPERM
    syscalls = [
        {"names": _ALLOW, "action": "SCMP_ACT_ALLOW"},
        # clone without namespace flags; with CAP_SYS_ADMIN anything goes.
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {"index": 0, "value": _CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
            ],
            "excludes": {"caps": ["SYS_ADMIN"]},
        },
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["SYS_ADMIN"]}},
        {"names": _DENY, "action": "SCMP_ACT_ERRNO", "errnoRet": eperm},
    ]
    for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF):
        syscalls.append(
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": value, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            }
        )
    for cap, names in _CAP_GATED.items():
        syscalls.append(
            {"names": names.split(), "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}}
        )
        syscalls.append(
            {
                "names": names.split(),
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": eperm,
                "excludes": {"caps": [cap]},
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    }


def load_profile_file(path: str) -> dict:
    try:
        with open(path) as f:
            prof = json.load(f)
    except OSError as e:
        raise ContainerError(f"seccomp profile {path}: cannot read it ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ContainerError(
            f"seccomp profile {path}: invalid JSON ({e.msg} at line {e.lineno})"
        ) from None
    if not isinstance(prof, dict) or "defaultAction" not in prof:
        raise ContainerError(
            f"seccomp profile {path}: not an OCI seccomp profile (no defaultAction)"
        )
    _action(prof["defaultAction"], prof.get("defaultErrnoRet"), path)
    for rule in prof.get("syscalls") or []:
        _action(rule.get("action", ""), rule.get("errnoRet"), path)
        for a in rule.get("args") or []:
            if a.get("op") not in _ops():
                raise ContainerError(f"seccomp profile {path}: unknown op {a.get('op')!r}")
    return prof


def _ops():
    from rootless import syscalls

    return syscalls.SCMP_CMP


def _action(name: str, errno_ret, where: str = "profile") -> int:
    from rootless import syscalls as sc

    if name == "SCMP_ACT_ERRNO":
        return sc.SCMP_ACT_ERRNO(errno.EPERM if errno_ret is None else int(errno_ret))
    if name == "SCMP_ACT_TRACE":
        return sc.SCMP_ACT_TRACE(errno.EPERM if errno_ret is None else int(errno_ret))
    table = {
        "SCMP_ACT_ALLOW": sc.SCMP_ACT_ALLOW,
        "SCMP_ACT_KILL": sc.SCMP_ACT_KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": sc.SCMP_ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": sc.SCMP_ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP": sc.SCMP_ACT_TRAP,
        "SCMP_ACT_LOG": sc.SCMP_ACT_LOG,
    }
    if name not in table:
        raise ContainerError(f"seccomp {where}: unsupported action {name!r}")
    return table[name]


def _applies(rule: dict, caps: frozenset[str]) -> bool:
    def norm(c):
        return c.upper().removeprefix("CAP_")

    inc = (rule.get("includes") or {}).get("caps") or []
    exc = (rule.get("excludes") or {}).get("caps") or []
    if inc and not all(norm(c) in caps for c in inc):
        return False
    if exc and any(norm(c) in caps for c in exc):
        return False
    return True


def compile(profile: dict, caps: frozenset[str]):
    """Build a libseccomp filter for the capability set; the caller loads it (.load()) right before
    exec, after the root has changed (libseccomp itself must be loaded before that)."""
    from rootless import syscalls as sc

    flt = sc.SeccompFilter(_action(profile["defaultAction"], profile.get("defaultErrnoRet")))
    try:
        for arch in profile.get("architectures") or []:
            flt.add_arch(arch.removeprefix("SCMP_ARCH_").lower())
        for rule in profile.get("syscalls") or []:
            if not _applies(rule, caps):
                continue
            action = _action(rule["action"], rule.get("errnoRet"))
            args = [
                (
                    int(a["index"]),
                    sc.SCMP_CMP[a["op"]],
                    int(a.get("value", 0)),
                    int(a.get("valueTwo", 0)),
                )
                for a in rule.get("args") or []
            ]
            names = list(rule.get("names") or []) + ([rule["name"]] if rule.get("name") else [])
            for name in names:
                nr = flt.resolve(name)
                if nr == -1:  # unknown to libseccomp
                    continue
                rc = flt.add_rule(action, nr, args)
                if rc < 0 and rc not in (
                    -errno.EACCES,
                    -errno.EEXIST,
                    -errno.EDOM,
                    -errno.EOPNOTSUPP,
                ):
                    raise OSError(-rc, f"seccomp rule for {name}: {errno.errorcode.get(-rc, rc)}")
    except BaseException:
        flt.release()
        raise
    return flt


def bpf(profile: dict, caps: frozenset[str], cache_dir: str | None = None) -> bytes:
    """The profile compiled to raw BPF for the capability set, cached in cache_dir by content (the
    default profile compiles in ~10 ms; a cache hit costs a file read). A cache file holds the key
    text, a NUL (JSON has none) and the program; it is used only if its key text matches, so the
    file name can be a cheap checksum (zlib, not hashlib: loading OpenSSL costs ~2 ms per run)."""
    key = path = None
    if cache_dir:
        import zlib

        key = json.dumps([profile, sorted(caps), os.uname().release], sort_keys=True).encode()
        path = os.path.join(cache_dir, f"{zlib.crc32(key):08x}-{len(key):x}.bpf")
        try:
            with open(path, "rb") as f:
                blob = f.read()
            if blob.startswith(key + b"\0"):
                return blob[len(key) + 1 :]
        except OSError:
            pass
    flt = compile(profile, caps)
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
    return prog
