/* Wall-clock times as users write them: RFC 3339, unix seconds, docker-style durations. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* "2026-12-01T11:40:00.123456789Z " plus NUL */
#define TIMEFMT_RFC3339_NS_MAX 32

/* A time in ns since the epoch as RFC 3339 in UTC with nine fraction digits ("...00.000000001Z");
 * buf must hold TIMEFMT_RFC3339_NS_MAX bytes. Returns the length written (no NUL counted). */
size_t timefmt_rfc3339_ns(int64_t ns, char *buf);

/* A go-style duration ("45s", "10m", "1h30m", "1.5h", "250ms"; units ns us µs ms s m h, at least
 * one number+unit pair, no sign) in ns. -EINVAL when s is not one, -ERANGE past ~292 years. */
int timefmt_parse_duration(const char *s, int64_t *ret_ns);

/* An absolute time as `docker logs --since` takes one: RFC 3339 with a zone (Z or +hh:mm; the
 * fraction optional, up to 9 digits), unix seconds with an optional fraction ("1700000000.5"),
 * or a duration (above) meaning that long before now_ns. ret_ns gets ns since the epoch.
 * -EINVAL (err names the value) otherwise. Pure: the clock is the caller's. */
int timefmt_parse_since(const char *s, int64_t now_ns, int64_t *ret_ns, struct tp_err *err);
