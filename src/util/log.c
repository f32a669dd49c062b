/* Logging: one line per event, timestamped, serialized by stdio's stream lock. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum log_level log_max_level = LOG_LVL_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;

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

void
log_set_format(enum log_format f)
{
    log_format = f;
}

int
log_parse_format(const char *s, enum log_format *ret)
{
    if (strcmp(s, "text") == 0)
        *ret = LOG_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0)
        *ret = LOG_FORMAT_JSON;
    else
        return -EINVAL;
    return 0;
}

/* s as a JSON string, quotes included. */
static void
json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* If msg starts with "key=" return the value's length (up to a space or ':'), else -1. */
static int
take_field(const char *msg, const char *key)
{
    size_t kl = strlen(key);
    if (strncmp(msg, key, kl) != 0 || msg[kl] != '=')
        return -1;
    return (int)strcspn(msg + kl + 1, " :");
}

char *
log_json_line(const char *when, const char *level, const char *msg, const char *file, int line)
{
    static const char *const keys[] = { "instance", "op" };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (!f)
        abort();
    fputs("{\"time\":", f);
    json_str(f, when, strlen(when));
    fputs(",\"level\":", f);
    json_str(f, level, strlen(level));
    /* The daemon's prefix is "instance=X op=Y: message" or "instance=X op=Y message". */
    for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
        int n = take_field(msg, keys[k]);
        if (n < 0)
            continue;
        fprintf(f, ",\"%s\":", keys[k]);
        json_str(f, msg + strlen(keys[k]) + 1, (size_t)n);
        msg += strlen(keys[k]) + 1 + (size_t)n;
        if (*msg == ':')
            msg++;
        while (*msg == ' ')
            msg++;
    }
    fputs(",\"msg\":", f);
    json_str(f, msg, strlen(msg));
    if (file)
        fprintf(f, ",\"file\":\"%s\",\"line\":%d", file, line);
    fputc('}', f);
    if (fclose(f) != 0)
        abort();
    return text;
}

static int log_emit_json(enum log_level l, int r, const char *file, int line, const char *fmt,
                         va_list ap) _printf_(5, 0);

static int
log_emit_json(enum log_level l, int r, const char *file, int line, const char *fmt, va_list ap)
{
    struct timespec ts;
    struct tm tm;
    char when[64], date[32];
    char *msg = NULL, *full = NULL, *out;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when, sizeof(when), "%s.%06ldZ", date, ts.tv_nsec / 1000);
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    if (r < 0) {
        if (asprintf(&full, "%s: %s", msg, strerror(-r)) < 0)
            abort();
        free(msg);
        msg = full;
    }
    out = log_json_line(when, level_names[l], msg, l == LOG_LVL_DEBUG ? file : NULL, line);
    flockfile(stderr);
    fputs(out, stderr);
    fputc('\n', stderr);
    funlockfile(stderr);
    free(out);
    free(msg);
    return r;
}

int
log_emit(enum log_level l, int r, const char *file, int line, const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[32];
    va_list ap;

    if (log_format == LOG_FORMAT_JSON) {
        va_start(ap, fmt);
        r = log_emit_json(l, r, file, line, fmt, ap);
        va_end(ap);
        return r;
    }
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
