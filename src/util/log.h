/* Leveled logging to stderr; library code logs at debug only. */
#pragma once

#include "macro.h"

enum log_level {
    LOG_LVL_ERROR,
    LOG_LVL_WARN,
    LOG_LVL_INFO,
    LOG_LVL_DEBUG,
};

enum log_format {
    LOG_FORMAT_TEXT,
    LOG_FORMAT_JSON, /* {"time":..,"level":..,"msg":..,"instance":..,"op":..} per line */
    _LOG_FORMAT_MAX,
    _LOG_FORMAT_INVALID = -22,
};

extern enum log_level log_max_level;

void log_set_level(enum log_level l);
/* Parse "error|warn|info|debug"; returns -EINVAL on anything else. */
int log_parse_level(const char *s, enum log_level *ret);
void log_set_format(enum log_format f);
/* Parse "text|json"; returns -EINVAL on anything else. */
int log_parse_format(const char *s, enum log_format *ret);
/* One JSON log line (no newline) for a message: leading "instance=X" and "op=Y" words become
 * fields and leave msg. Pure, for tests; caller frees. */
char *log_json_line(const char *when, const char *level, const char *msg, const char *file,
                    int line);
/* Returns r (for `return log_error_errno(r, ...)`); r < 0 appends strerror(-r). */
int log_emit(enum log_level l, int r, const char *file, int line, const char *fmt, ...)
    _printf_(5, 6);

#define log_full(l, r, ...) \
    ((l) <= log_max_level ? log_emit((l), (r), __FILE__, __LINE__, __VA_ARGS__) : (r))
#define log_error(...)          log_full(LOG_LVL_ERROR, 0, __VA_ARGS__)
#define log_warn(...)           log_full(LOG_LVL_WARN, 0, __VA_ARGS__)
#define log_info(...)           log_full(LOG_LVL_INFO, 0, __VA_ARGS__)
#define log_debug(...)          log_full(LOG_LVL_DEBUG, 0, __VA_ARGS__)
#define log_error_errno(r, ...) log_full(LOG_LVL_ERROR, (r), __VA_ARGS__)
#define log_warn_errno(r, ...)  log_full(LOG_LVL_WARN, (r), __VA_ARGS__)
#define log_debug_errno(r, ...) log_full(LOG_LVL_DEBUG, (r), __VA_ARGS__)
