/* CPU time, threads and memory of a process from /proc: parsers and a reader. */
#include "util/procstat.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"

/* /proc/PID/smaps_rollup is about 1 KiB; stat one line of a few hundred bytes. */
#define PROCSTAT_FILE_MAX (64u << 10)

/* A decimal field ending in a space or the end: the value and the rest, else NULL. */
static const char *
parse_u64(const char *s, uint64_t *ret)
{
    char *end;

    if (*s < '0' || *s > '9')
        return NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || (*end != ' ' && *end != '\0' && *end != '\n'))
        return NULL;
    *ret = v;
    return end;
}

int
procstat_parse_stat(const char *line, struct procstat_stat *ret)
{
    /* Fields after the command, from field 3 (state); the ones we keep, by their number. */
    enum {
        FIRST = 3,
        UTIME = 14,
        STIME = 15,
        THREADS = 20,
        START = 22
    };
    const char *open = strchr(line, '('), *close = strrchr(line, ')'), *p;
    struct procstat_stat st = { 0 };
    uint64_t threads = 0;

    if (!open || !close || close < open || close[1] != ' ')
        return -EINVAL;
    p = close + 2;
    /* Field 3 is a letter; the rest up to 22 are numbers (some may be negative: 7, 18, 19, but
     * we only step over those). */
    if (!*p || *p == ' ')
        return -EINVAL;
    p = strchr(p, ' ');
    for (int field = FIRST + 1; field <= START; field++) {
        if (!p || *p != ' ')
            return -EINVAL;
        p++;
        uint64_t v = 0, *want = field == UTIME     ? &st.utime_ticks
                                : field == STIME   ? &st.stime_ticks
                                : field == THREADS ? &threads
                                : field == START   ? &st.start_time
                                                   : NULL;
        if (want) {
            p = parse_u64(p, want);
            continue;
        }
        if (*p == '-')
            p++;
        p = parse_u64(p, &v);
    }
    if (!p || threads == 0 || threads > UINT32_MAX)
        return -EINVAL;
    st.threads = (uint32_t)threads;
    *ret = st;
    return 0;
}

/* The kB value of the line "key:   N kB" in text, in bytes. */
static int
rollup_field(const char *text, const char *key, uint64_t *ret)
{
    size_t klen = strlen(key);

    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        uint64_t kb;
        const char *p;

        if (strncmp(l, key, klen) != 0 || l[klen] != ':')
            continue;
        p = l + klen + 1;
        while (*p == ' ' || *p == '\t')
            p++;
        p = parse_u64(p, &kb);
        if (!p || strncmp(p, " kB", 3) != 0 || kb > UINT64_MAX / 1024)
            return -EINVAL;
        *ret = kb * 1024;
        return 0;
    }
    return -EINVAL;
}

int
procstat_parse_smaps_rollup(const char *text, struct procstat_mem *ret)
{
    struct procstat_mem m;

    if (rollup_field(text, "Rss", &m.rss) < 0 || rollup_field(text, "Pss", &m.pss) < 0)
        return -EINVAL;
    *ret = m;
    return 0;
}

static int
read_proc(pid_t pid, const char *file, char **ret, struct tp_err *err)
{
    char path[64];
    int r;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    r = fs_read_file(path, PROCSTAT_FILE_MAX, ret, NULL, NULL);
    if (r == -ENOENT || r == -ESRCH)
        return tp_err_set(err, -ESRCH, "process %d is gone", (int)pid);
    if (r < 0)
        return tp_err_errno(err, r, "read '%s'", path);
    return 0;
}

int
procstat_read(pid_t pid, struct procstat *ret, struct tp_err *err)
{
    _cleanup_free_ char *stat = NULL, *rollup = NULL;
    struct procstat ps;
    long hz = sysconf(_SC_CLK_TCK);
    int r;

    r = read_proc(pid, "stat", &stat, err);
    if (r < 0)
        return r;
    if (procstat_parse_stat(stat, &ps.stat) < 0)
        return tp_err_set(err, -EPROTO, "parse /proc/%d/stat", (int)pid);
    r = read_proc(pid, "smaps_rollup", &rollup, err);
    if (r < 0)
        return r;
    /* A zombie's smaps_rollup is empty: it has no memory left to count. */
    if (!*rollup)
        return tp_err_set(err, -ESRCH, "process %d is gone", (int)pid);
    if (procstat_parse_smaps_rollup(rollup, &ps.mem) < 0)
        return tp_err_set(err, -EPROTO, "parse /proc/%d/smaps_rollup", (int)pid);
    if (hz <= 0)
        hz = 100;
    ps.cpu_ns = (ps.stat.utime_ticks + ps.stat.stime_ticks) * (1000000000ull / (uint64_t)hz);
    *ret = ps;
    return 0;
}
