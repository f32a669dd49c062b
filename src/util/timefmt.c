/* Wall-clock times as users write them: RFC 3339, unix seconds, docker-style durations. */
#include "util/timefmt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define NS_PER_S 1000000000LL

size_t
timefmt_rfc3339_ns(int64_t ns, char *buf)
{
    int64_t s = ns / NS_PER_S, frac = ns % NS_PER_S;
    struct tm tm;

    if (frac < 0) { /* before 1970: floor, the fraction counts up from the second */
        frac += NS_PER_S;
        s--;
    }
    time_t t = (time_t)s;
    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm));
    int n = snprintf(buf, TIMEFMT_RFC3339_NS_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%09" PRId64 "Z",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     frac);
    return n < 0 ? 0 : (size_t)n;
}

/* n decimal digits at *p (exactly n), advancing p. */
static bool
digits(const char **p, int n, int *ret)
{
    int v = 0;

    for (int k = 0; k < n; k++) {
        char c = (*p)[k];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *ret = v;
    return true;
}

/* An optional ".ddddddddd" (1..9 digits) at *p, in ns. */
static bool
fraction(const char **p, int64_t *ret_ns)
{
    int64_t v = 0, scale = NS_PER_S;
    int n = 0;

    *ret_ns = 0;
    if (**p != '.')
        return true;
    (*p)++;
    for (; **p >= '0' && **p <= '9'; (*p)++, n++) {
        if (n >= 9)
            return false;
        scale /= 10;
        v += (**p - '0') * scale;
    }
    *ret_ns = v;
    return n > 0;
}

static bool
is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
parse_rfc3339(const char *s, int64_t *ret_ns)
{
    static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    const char *p = s;
    int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
    int64_t frac;

    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
        return -EINVAL;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
        !digits(&p, 2, &se) || !fraction(&p, &frac))
        return -EINVAL;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
    } else {
        return -EINVAL; /* a time without a zone would be ambiguous */
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59 ||
        d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return -EINVAL;
    struct tm tm = { .tm_year = y - 1900,
                     .tm_mon = mo - 1,
                     .tm_mday = d,
                     .tm_hour = h,
                     .tm_min = mi,
                     .tm_sec = se };
    int64_t t = (int64_t)timegm(&tm) - sign * (oh * 3600 + om * 60);
    *ret_ns = t * NS_PER_S + frac;
    return 0;
}

/* "1700000000" or "1700000000.25": seconds since the epoch. */
static int
parse_unix(const char *s, int64_t *ret_ns)
{
    const char *p = s;
    int64_t secs = 0, frac;

    if (!(*p >= '0' && *p <= '9'))
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (secs > (INT64_MAX / NS_PER_S - 9) / 10)
            return -ERANGE;
        secs = secs * 10 + (*p - '0');
    }
    if (!fraction(&p, &frac) || *p)
        return -EINVAL;
    *ret_ns = secs * NS_PER_S + frac;
    return 0;
}

int
timefmt_parse_duration(const char *s, int64_t *ret_ns)
{
    static const struct {
        const char *name;
        int64_t ns;
    } units[] = {
        /* longest names first: "ms" before "m" */
        { "ns", 1 },       { "us", 1000 },    { "\xc2\xb5s", 1000 }, /* µs */
        { "ms", 1000000 }, { "s", NS_PER_S }, { "m", 60 * NS_PER_S }, { "h", 3600 * NS_PER_S },
    };
    const char *p = s;
    double total = 0;

    if (!*p)
        return -EINVAL;
    while (*p) {
        double v = 0, scale = 1;
        bool any = false;
        for (; *p >= '0' && *p <= '9'; p++, any = true)
            v = v * 10 + (*p - '0');
        if (*p == '.') {
            p++;
            for (; *p >= '0' && *p <= '9'; p++, any = true)
                v += (*p - '0') * (scale /= 10);
        }
        if (!any)
            return -EINVAL;
        size_t k;
        for (k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
            size_t n = strlen(units[k].name);
            if (strncmp(p, units[k].name, n) == 0) {
                total += v * (double)units[k].ns;
                p += n;
                break;
            }
        }
        if (k == sizeof(units) / sizeof(units[0]))
            return -EINVAL;
        if (total >= 9.2e18)
            return -ERANGE;
    }
    *ret_ns = (int64_t)total;
    return 0;
}

int
timefmt_parse_since(const char *s, int64_t now_ns, int64_t *ret_ns, struct tp_err *err)
{
    int64_t v;
    int r;

    /* A plain number is a unix time, as docker reads it; a unit makes it a duration. */
    r = parse_unix(s, &v);
    if (r == -EINVAL)
        r = parse_rfc3339(s, &v);
    if (r == -EINVAL) {
        int64_t d;
        r = timefmt_parse_duration(s, &d);
        if (r == 0)
            v = now_ns - d;
    }
    if (r < 0)
        return tp_err_set(err, -EINVAL,
                          "'%.64s' is not a time (RFC 3339 with a zone, unix seconds, or a "
                          "duration such as 10m or 1h30m)",
                          s);
    *ret_ns = v;
    return 0;
}
