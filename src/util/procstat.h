/* What the kernel says a process costs: CPU time and threads from /proc/PID/stat, resident and
 * proportional memory from /proc/PID/smaps_rollup. Pure parsers (unit-tested on captured
 * text) plus a reader. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* From /proc/PID/stat. Times count every thread of the process (the kernel sums them). */
struct procstat_stat {
    uint64_t utime_ticks; /* field 14, clock ticks */
    uint64_t stime_ticks; /* field 15 */
    uint32_t threads;     /* field 20 */
    uint64_t start_time;  /* field 22, clock ticks since boot */
};

/* From /proc/PID/smaps_rollup, in bytes. */
struct procstat_mem {
    uint64_t rss;
    uint64_t pss;
};

/* Parse one /proc/PID/stat line. The command name (field 2) may hold spaces and parentheses:
 * it ends at the last ')'. -EINVAL for a line that is not one. */
int procstat_parse_stat(const char *line, struct procstat_stat *ret);

/* Parse the text of /proc/PID/smaps_rollup (its "Rss:" and "Pss:" lines, in kB). -EINVAL when
 * either is missing or malformed. */
int procstat_parse_smaps_rollup(const char *text, struct procstat_mem *ret);

/* Both files of pid, read and parsed; cpu_ns is utime + stime in nanoseconds. -ESRCH when the
 * process is gone (or a zombie: its memory is gone too), -EPROTO for text that does not parse,
 * else -errno of the read. */
struct procstat {
    struct procstat_stat stat;
    struct procstat_mem mem;
    uint64_t cpu_ns;
};
int procstat_read(pid_t pid, struct procstat *ret, struct tp_err *err);
