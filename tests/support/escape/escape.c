/* Escape attempts run inside a container by tests/test_escape.py (built with gcc -static).
 *
 *   escape chroot           the classic chroot("x"); chdir("..") x100; chroot(".") break-out, then
 *                           print the entries of the resulting "/" (one per line)
 *   escape ptrace PID...    PTRACE_ATTACH each pid; print "PID errno-name" for each
 *   escape kill PID...      kill(PID, SIGKILL); print "PID errno-name" for each
 *   escape read PATH        print the file's bytes, or "ERR errno-name"
 * Exit status is 0 unless the program itself is misused.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ENOSYS: return "ENOSYS";
    default: return strerror(e);
    }
}

static int do_chroot(void) {
    mkdir("escape-x", 0755);
    if (chroot("escape-x") != 0) {
        printf("CHROOT-FAILED %s\n", ename(errno));
        return 0;
    }
    for (int i = 0; i < 100; i++)
        chdir("..");
    if (chroot(".") != 0) {
        printf("CHROOT2-FAILED %s\n", ename(errno));
        return 0;
    }
    DIR *d = opendir("/");
    if (!d) {
        printf("OPENDIR-FAILED %s\n", ename(errno));
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            printf("%s\n", e->d_name);
    closedir(d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "chroot")) return do_chroot();
    if (!strcmp(argv[1], "ptrace")) {
        for (int i = 2; i < argc; i++) {
            pid_t pid = atoi(argv[i]);
            errno = 0;
            long r = ptrace(PTRACE_ATTACH, pid, 0, 0);
            printf("%d %s\n", pid, r == 0 ? "OK" : ename(errno));
            if (r == 0) ptrace(PTRACE_DETACH, pid, 0, 0);
        }
        return 0;
    }
    if (!strcmp(argv[1], "kill")) {
        for (int i = 2; i < argc; i++) {
            pid_t pid = atoi(argv[i]);
            int r = kill(pid, SIGKILL);
            printf("%d %s\n", pid, r == 0 ? "OK" : ename(errno));
        }
        return 0;
    }
    if (!strcmp(argv[1], "read") && argc == 3) {
        FILE *f = fopen(argv[2], "rb");
        if (!f) {
            printf("ERR %s\n", ename(errno));
            return 0;
        }
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, n, stdout);
        if (ferror(f)) printf("ERR %s\n", ename(errno));
        fclose(f);
        return 0;
    }
    return 2;
}
