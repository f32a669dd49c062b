/* fc-double: error text, the logger and the serial console. */
#include "fcd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static FILE *log_file;
static int log_threshold = 3; /* Error 1, Warning 2, Info 3, Debug 4, Trace 5, Off 0 */
static bool log_show_level;

int
fcd_fail(struct fcd_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    if (err) {
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code < 0 ? code : -EIO;
}

int
fcd_wrap(struct fcd_err *err, int code, const char *fmt, ...)
{
    char prefix[256], inner[sizeof(err->msg)];
    va_list ap;
    if (err) {
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        memcpy(inner, err->msg, sizeof(inner));
        /* A long chain is cut, as any message is. */
        snprintf(err->msg, sizeof(err->msg), "%s: ", prefix);
        size_t n = strlen(err->msg), len = strnlen(inner, sizeof(err->msg) - 1 - n);
        memcpy(err->msg + n, inner, len);
        err->msg[n + len] = '\0';
    }
    return code < 0 ? code : -EIO;
}

static int
level_num(const char *level)
{
    static const char *const names[] = { "Off", "Error", "Warning", "Info", "Debug", "Trace" };
    for (int i = 0; i < 6; i++)
        if (strcasecmp(level, names[i]) == 0)
            return i;
    return -1;
}

int
fcd_log_open(const char *path, const char *level, bool show_level, bool show_origin)
{
    int n = level_num(level);
    if (n < 0) {
        errno = EINVAL;
        return -EINVAL;
    }
    if (path) {
        FILE *f = fopen(path, "ae");
        if (!f)
            return -errno;
        setvbuf(f, NULL, _IOLBF, 0);
        if (log_file)
            fclose(log_file);
        log_file = f;
    }
    log_threshold = n;
    log_show_level = show_level;
    (void)show_origin;
    return 0;
}

void
fcd_log(const char *level, const char *fmt, ...)
{
    FILE *out = log_file ? log_file : stderr;
    struct timespec ts;
    va_list ap;

    /* fmt is never NULL; saying so spares gcc's sanitizer builds a false -Wformat-overflow. */
    if (!fmt || level_num(level) > log_threshold || level_num(level) <= 0)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(out, "%lld.%09ld [fc-double", (long long)ts.tv_sec, ts.tv_nsec);
    if (log_show_level)
        fprintf(out, ":%s", level);
    fprintf(out, "] ");
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
}

void
fcd_console(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputs("\r\n", stdout);
    fflush(stdout);
}
