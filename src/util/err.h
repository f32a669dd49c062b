/* Error values that gather context on the way up: -errno plus a message chain. */
#pragma once

#include "macro.h"

struct tp_err {
    int code;  /* negative errno; 0 = none */
    char *msg; /* owned; frames joined by ": ", outermost first */
};

/* Record a failure (replacing any earlier one); returns code, forced < 0, for
 * `return tp_err_set(...)`. err may be NULL. */
int tp_err_set(struct tp_err *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Like tp_err_set() with strerror(-code) appended as the innermost frame. */
int tp_err_errno(struct tp_err *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Prefix context to a callee's failure; returns err->code (-EIO if unset). */
int tp_err_wrap(struct tp_err *err, const char *fmt, ...) _printf_(2, 3);

/* The message, or "" when none; never NULL. */
const char *tp_err_msg(const struct tp_err *err);

/* Drop the message and code; usable as _cleanup_(tp_err_clear) on a stack struct. */
void tp_err_clear(struct tp_err *err);

/* Move src into dst (dst cleared first); src is left empty. */
void tp_err_move(struct tp_err *dst, struct tp_err *src);
