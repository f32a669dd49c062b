/* The agent's built-in commands (AGENT_EXEC_F_BUILTIN): tar-out and tar-in, for copying files
 * in and out of guests whose images have no tar of their own. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "util/tar.h"

static int
argc_of(char *const *argv)
{
    int n = 0;
    while (argv[n])
        n++;
    return n;
}

static int
builtin_tar_out(char *const *argv)
{
    if (argc_of(argv) != 2) {
        dprintf(STDERR_FILENO, "usage: tar-out PATH\n");
        return TAR_EXIT_FAIL;
    }
    return tar_create(STDOUT_FILENO, argv[1], STDERR_FILENO);
}

static int
builtin_tar_in(char *const *argv)
{
    if (argc_of(argv) != 2) {
        dprintf(STDERR_FILENO, "usage: tar-in DIR\n");
        return TAR_EXIT_FAIL;
    }
    return tar_extract(STDIN_FILENO, argv[1], STDERR_FILENO);
}

/* "TYPE MODE SIZE" of PATH itself (not following a final symlink), for torpor cp to decide
 * between copying into a directory and copying as a new name. */
static int
builtin_stat(char *const *argv)
{
    struct stat st;

    if (argc_of(argv) != 2) {
        dprintf(STDERR_FILENO, "usage: stat PATH\n");
        return TAR_EXIT_FAIL;
    }
    if (lstat(argv[1], &st) < 0) {
        int e = errno;
        dprintf(STDERR_FILENO, "'%s': %s\n", argv[1], strerror(e));
        return e == ENOENT || e == ENOTDIR ? TAR_EXIT_NOTFOUND : TAR_EXIT_FAIL;
    }
    const char *type = S_ISREG(st.st_mode)   ? "file"
                       : S_ISDIR(st.st_mode) ? "dir"
                       : S_ISLNK(st.st_mode) ? "symlink"
                                             : "other";
    /* A symlink also says what it leads to: cp copies into a directory reached through one. */
    struct stat target;
    const char *to = !S_ISLNK(st.st_mode)         ? ""
                     : stat(argv[1], &target) < 0 ? " missing"
                     : S_ISDIR(target.st_mode)    ? " dir"
                     : S_ISREG(target.st_mode)    ? " file"
                                                  : " other";
    dprintf(STDOUT_FILENO, "%s %o %llu%s\n", type, (unsigned)(st.st_mode & 07777),
            (unsigned long long)st.st_size, to);
    return TAR_EXIT_OK;
}

/* "TOTAL AVAILABLE" in bytes from /proc/meminfo, for torpor stats' guest memory. */
static int
builtin_meminfo(char *const *argv)
{
    char line[256];
    unsigned long long total = 0, avail = 0, v;
    FILE *f = fopen("/proc/meminfo", "re");

    if (!f) {
        dprintf(STDERR_FILENO, "/proc/meminfo: %s\n", strerror(errno));
        return TAR_EXIT_FAIL;
    }
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "MemTotal: %llu kB", &v) == 1)
            total = v * 1024;
        else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1)
            avail = v * 1024;
    }
    fclose(f);
    dprintf(STDOUT_FILENO, "%llu %llu\n", total, avail);
    return total ? TAR_EXIT_OK : TAR_EXIT_FAIL;
}

static const struct {
    const char *name;
    builtin_fn fn;
} builtins[] = {
    { "meminfo", builtin_meminfo },
    { "tar-out", builtin_tar_out },
    { "tar-in", builtin_tar_in },
    { "stat", builtin_stat },
    { "stop-workload", workload_builtin_stop },
};

builtin_fn
builtin_find(const char *name)
{
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        if (strcmp(builtins[i].name, name) == 0)
            return builtins[i].fn;
    return NULL;
}
