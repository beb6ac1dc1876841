/* syscall_probe: what a container's process observes when it makes each system call.
 *
 * Built statically at test time (gcc -static) and bind-mounted into a container, so that the same
 * binary runs under rootless and under podman and the two outputs can be compared line by line.
 *
 *   syscall_probe FIRST LAST     every syscall number in [FIRST, LAST], called with all six
 *                                arguments -1 (invalid pointers, fds, flags and sizes), then
 *                                named cases with meaningful arguments (clone3 and clone with and
 *                                without CLONE_NEW* flags, unshare, personality, socket, ...)
 *
 * Each call runs in a forked child that reports the raw result through a pipe. One line per call:
 *   LABEL RESULT     LABEL is nr:NUMBER or a case name; RESULT is ok (returned >= 0), errno:N,
 *                    exit:N or signal:N (the child ended before reporting), or blocked (asleep
 *                    after 200 ms, e.g. pause: then killed).
 * A call that creates a process (fork, vfork, clone, clone3) makes the new one exit at once without
 * touching memory (x86-64: in the same asm block), so only the caller reports; the probe is their
 * subreaper and reaps them all before the next call.
 * Some cases change the caller's namespaces (mount a tmpfs on /tmp, set the hostname): harmless in
 * a container, which is why the probe refuses to run outside a user namespace. Nothing here can
 * reboot or kill anything outside the child: kill gets signal -1 (invalid), reboot needs magic
 * numbers, and the container confines the rest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

struct result { long ret; int err; };

/* The system call, and if a new process returns from it, that process exits right there. */
static long raw_call(long nr, long a1, long a2, long a3, long a4, long a5, long a6, long me)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    register long r13 __asm__("r13") = me;
    long ret;
    __asm__ volatile(
        "syscall\n\t"
        "mov %%rax, %%r12\n\t"
        "mov $39, %%eax\n\t" /* getpid */
        "syscall\n\t"
        "cmp %%rax, %%r13\n\t"
        "je 1f\n\t"
        "mov $60, %%eax\n\t" /* exit(0): this is the new process */
        "xor %%edi, %%edi\n\t"
        "syscall\n\t"
        "1:\n\t"
        "mov %%r12, %%rax\n\t"
        : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8), "+r"(r9)
        : "0"(nr), "r"(r13)
        : "rcx", "r11", "r12", "memory");
    return ret;
#else
    if (nr == SYS_vfork)
        return -ENOSYS; /* cannot be made safe without asm: not probed here */
    long ret = syscall(nr, a1, a2, a3, a4, a5, a6);
    if (getpid() != me)
        _exit(0);
    return ret < 0 ? -errno : ret;
#endif
}

static int report_fd = -1;

static void report(long ret)
{
    struct result r = {ret, 0};
    if (ret < 0 && ret > -4096) {
        r.ret = -1;
        r.err = (int)-ret;
    }
    syscall(SYS_write, report_fd, &r, sizeof r);
}

static char state_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

typedef void (*case_fn)(long arg);

/* Fork a child that runs fn, print LABEL and what the child saw. */
static void probe(const char *label, case_fn fn, long arg)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        perror("pipe2");
        exit(2);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(p[0]);
        report_fd = p[1];
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    struct result r;
    ssize_t got = 0;
    int waited = 0, blocked = 0;
    for (;;) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        int n = poll(&pfd, 1, 200);
        if (n > 0) {
            got = read(p[0], &r, sizeof r);
            break;
        }
        waited += 200;
        if (state_of(pid) == 'S' || waited >= 30000) { /* asleep in the call, or wedged */
            blocked = 1;
            kill(pid, SIGKILL);
            break;
        }
    }
    close(p[0]);
    int st;
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR)
        ;
    /* Wait for the orphans of fork-like calls too (we are their subreaper): a process left over,
       even a zombie, would change what the next call sees (kill(-1, ...) finds a target). */
    while (waitpid(-1, NULL, __WALL) > 0)
        ;
    if (got == (ssize_t)sizeof r)
        r.err ? printf("%s errno:%d\n", label, r.err) : printf("%s ok\n", label);
    else if (blocked)
        printf("%s blocked\n", label);
    else if (WIFSIGNALED(st))
        printf("%s signal:%d\n", label, WTERMSIG(st));
    else
        printf("%s exit:%d\n", label, WEXITSTATUS(st));
}

/* --- the sweep: number NR with every argument -1 ------------------------------------------------ */
static long sweep_nr;

static void sweep_one(long unused)
{
    (void)unused;
    report(raw_call(sweep_nr, -1, -1, -1, -1, -1, -1, getpid()));
}

/* --- named cases ------------------------------------------------------------------------------- */
struct clone_args_v0 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static void case_clone3(long flags)
{
    long me = getpid();
    struct clone_args_v0 ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = (uint64_t)flags;
    ca.exit_signal = SIGCHLD;
    report(raw_call(SYS_clone3, (long)&ca, sizeof ca, 0, 0, 0, 0, me));
}

static void case_clone(long flags)
{
    long me = getpid();
    /* x86-64 order: flags, stack, parent_tid, child_tid, tls; stack 0 = a copy of ours */
    report(raw_call(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0, 0, me));
}

static void case_unshare(long flags) { report(raw_call(SYS_unshare, flags, 0, 0, 0, 0, 0, getpid())); }
static void case_personality(long p) { report(raw_call(SYS_personality, p, 0, 0, 0, 0, 0, getpid())); }

static void case_socket(long which)
{
    static const int args[][3] = {
        {AF_NETLINK, SOCK_RAW, 9 /* NETLINK_AUDIT */},
        {AF_NETLINK, SOCK_RAW, 0 /* NETLINK_ROUTE */},
        {AF_INET, SOCK_STREAM, 0},
        {AF_UNIX, SOCK_DGRAM, 0},
        {AF_INET, SOCK_RAW, 9},
    };
    report(raw_call(SYS_socket, args[which][0], args[which][1], args[which][2], 0, 0, 0, getpid()));
}

static void case_setns_uts(long unused)
{
    (void)unused;
    int fd = open("/proc/self/ns/uts", O_RDONLY);
    report(raw_call(SYS_setns, fd, CLONE_NEWUTS, 0, 0, 0, 0, getpid()));
}

static void case_kcmp_self(long unused)
{
    (void)unused;
    long me = getpid();
    report(raw_call(SYS_kcmp, me, me, 0 /* KCMP_FILE */, 1, 1, 0, me));
}

static void case_chroot_root(long unused)
{
    (void)unused;
    report(raw_call(SYS_chroot, (long)"/", 0, 0, 0, 0, 0, getpid()));
}

static void case_mount_tmpfs(long unused)
{
    (void)unused;
    report(raw_call(SYS_mount, (long)"probe", (long)"/tmp", (long)"tmpfs", 0, 0, 0, getpid()));
}

static void case_sethostname(long unused)
{
    (void)unused;
    report(raw_call(SYS_sethostname, (long)"probe", 5, 0, 0, 0, 0, getpid()));
}

static volatile sig_atomic_t handled;
static void on_usr1(int sig) { (void)sig; handled = 1; }

static void case_rt_sigreturn(long unused)
{
    /* rt_sigreturn is made by the signal trampoline: a handler that returns exercises it */
    (void)unused;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    kill(getpid(), SIGUSR1);
    report(handled ? 0 : -EINTR);
}

#if defined(__x86_64__)
/* The other ABIs a filter must cover (podman adds them as sub-architectures): getpid through x32
   (nr | 0x40000000) and through the i386 int $0x80 entry (nr 20). */
static void case_x32_getpid(long unused)
{
    (void)unused;
    report(raw_call(0x40000000L | 39, 0, 0, 0, 0, 0, 0, getpid()));
}

static void case_i386_getpid(long unused)
{
    (void)unused;
    long ret = 20;
    __asm__ volatile("int $0x80" : "+a"(ret) : : "memory");
    report(ret);
}
#endif

static void case_exit(long code) { raw_call(SYS_exit, code, 0, 0, 0, 0, 0, getpid()); }

/* The initial user namespace maps every id to itself: refuse to run there (e.g. as root on a host). */
static int in_initial_userns(void)
{
    char buf[256];
    int fd = open("/proc/self/uid_map", O_RDONLY);
    if (fd < 0)
        return 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    unsigned long inside, outside, count;
    return sscanf(buf, "%lu %lu %lu", &inside, &outside, &count) != 3 ||
           (inside == 0 && outside == 0 && count == 4294967295UL);
}

int main(int argc, char **argv)
{
    if (in_initial_userns()) {
        fprintf(stderr, "%s: refusing to run outside a user namespace (run it in a container)\n",
                argv[0]);
        return 2;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s FIRST LAST\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    long first = strtol(argv[1], NULL, 0), last = strtol(argv[2], NULL, 0);
    char label[64];
    for (long nr = first; nr <= last; nr++) {
        sweep_nr = nr;
        snprintf(label, sizeof label, "nr:%ld", nr);
        probe(label, sweep_one, 0);
    }
    static const struct { const char *name; long flags; } ns[] = {
        {"plain", 0},
        {"NEWUSER", CLONE_NEWUSER},
        {"NEWNS", CLONE_NEWNS},
        {"NEWUSER|NEWNS", CLONE_NEWUSER | CLONE_NEWNS},
        {"NEWPID", CLONE_NEWPID},
        {"NEWNET", CLONE_NEWNET},
        {"NEWUTS", CLONE_NEWUTS},
        {"NEWIPC", CLONE_NEWIPC},
        {"NEWCGROUP", CLONE_NEWCGROUP},
        {"NEWTIME", CLONE_NEWTIME},
    };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        snprintf(label, sizeof label, "clone3(%s)", ns[i].name);
        probe(label, case_clone3, ns[i].flags);
        if (ns[i].flags != CLONE_NEWTIME) { /* 0x80 is part of clone's exit-signal byte */
            snprintf(label, sizeof label, "clone(%s)", ns[i].name);
            probe(label, case_clone, ns[i].flags);
        }
        snprintf(label, sizeof label, "unshare(%s)", ns[i].name);
        probe(label, case_unshare, ns[i].flags);
    }
    static const long personas[] = {0, 8, 0x20000, 0x20008, 0xffffffff, 0x40000, 0x400000};
    for (size_t i = 0; i < sizeof personas / sizeof personas[0]; i++) {
        snprintf(label, sizeof label, "personality(%#lx)", personas[i]);
        probe(label, case_personality, personas[i]);
    }
    static const char *sockets[] = {"NETLINK,RAW,AUDIT", "NETLINK,RAW,ROUTE", "INET,STREAM,0",
                                    "UNIX,DGRAM,0", "INET,RAW,9"};
    for (long i = 0; i < (long)(sizeof sockets / sizeof sockets[0]); i++) {
        snprintf(label, sizeof label, "socket(%s)", sockets[i]);
        probe(label, case_socket, i);
    }
    probe("setns(self,NEWUTS)", case_setns_uts, 0);
    probe("kcmp(self)", case_kcmp_self, 0);
    probe("chroot(/)", case_chroot_root, 0);
    probe("mount(tmpfs,/tmp)", case_mount_tmpfs, 0);
    probe("sethostname(probe)", case_sethostname, 0);
    probe("rt_sigreturn(handler)", case_rt_sigreturn, 0);
    probe("exit(7)", case_exit, 7);
#if defined(__x86_64__)
    probe("x32:getpid", case_x32_getpid, 0);
    probe("i386:getpid", case_i386_getpid, 0);
#endif
    fflush(stdout);
    return 0;
}
