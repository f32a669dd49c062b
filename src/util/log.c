/* Logging: one line per event, timestamped, serialized by stdio's stream lock. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_max_level = LOG_LVL_INFO;

static const char *const level_names[] = {
    [LOG_LVL_ERROR] = "error",
    [LOG_LVL_WARN] = "warn",
    [LOG_LVL_INFO] = "info",
    [LOG_LVL_DEBUG] = "debug",
};

void
log_set_level(enum log_level l)
{
    log_max_level = l;
}

int
log_parse_level(const char *s, enum log_level *ret)
{
    for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
        if (strcmp(s, level_names[i]) == 0) {
            *ret = (enum log_level)i;
            return 0;
        }
    return -EINVAL;
}

int
log_emit(enum log_level l, int r, const char *file, int line, const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[32];
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%H:%M:%S", &tm);

    flockfile(stderr);
    fprintf(stderr, "%s.%03ld %s ", when, ts.tv_nsec / 1000000, level_names[l]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (r < 0)
        fprintf(stderr, ": %s", strerror(-r));
    if (l == LOG_LVL_DEBUG)
        fprintf(stderr, " (%s:%d)", file, line);
    fputc('\n', stderr);
    funlockfile(stderr);
    return r;
}
