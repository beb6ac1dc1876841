/* From inside a container: watch /proc for a process whose executable is the host file with the
 * given inode and size (the user's own interpreter) and try to open it, as runc's CVE-2019-5736
 * exploit does. Prints EXPOSED (and whether it could open it for reading and writing) and exits 1
 * when it got one; SAFE and the number of processes whose exe it was refused once /tmp/stop exists.
 * usage: exewatch INODE SIZE */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    unsigned long long ino = strtoull(argv[1], NULL, 10), size = strtoull(argv[2], NULL, 10);
    long refused = 0;
    while (access("/tmp/stop", F_OK) != 0) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9')
                continue;
            char path[64];
            snprintf(path, sizeof path, "/proc/%s/exe", e->d_name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                if (errno == EACCES || errno == EPERM)
                    refused++;
                continue;
            }
            struct stat st;
            if (fstat(fd, &st) == 0 && st.st_ino == ino && (unsigned long long)st.st_size == size) {
                int w = open(path, O_WRONLY | O_CLOEXEC);
                printf("EXPOSED pid %s read=yes write=%s\n", e->d_name, w >= 0 ? "yes" : "no");
                fflush(stdout);
                return 1;
            }
            close(fd);
        }
        if (d)
            closedir(d);
    }
    printf("SAFE refused=%ld\n", refused);
    return 0;
}
