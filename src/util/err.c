/* tp_err: error codes with a chain of context messages. */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static int
normalize(int code)
{
    if (code > 0)
        return -code;
    return code < 0 ? code : -EIO;
}

static int set_va(struct tp_err *err, int code, bool with_errno, const char *fmt, va_list ap)
    _printf_(4, 0);

static int
set_va(struct tp_err *err, int code, bool with_errno, const char *fmt, va_list ap)
{
    code = normalize(code);
    if (!err)
        return code;
    char *m = xvasprintf(fmt, ap);
    if (with_errno) {
        char *t = xasprintf("%s: %s", m, strerror(-code));
        free(m);
        m = t;
    }
    free(err->msg);
    err->msg = m;
    err->code = code;
    return code;
}

int
tp_err_set(struct tp_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = set_va(err, code, false, fmt, ap);
    va_end(ap);
    return r;
}

int
tp_err_errno(struct tp_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = set_va(err, code, true, fmt, ap);
    va_end(ap);
    return r;
}

int
tp_err_wrap(struct tp_err *err, const char *fmt, ...)
{
    if (!err)
        return -EIO;
    if (err->code == 0)
        err->code = -EIO;
    va_list ap;
    va_start(ap, fmt);
    char *frame = xvasprintf(fmt, ap);
    va_end(ap);
    char *m = err->msg ? xasprintf("%s: %s", frame, err->msg) : frame;
    if (m != frame)
        free(frame);
    free(err->msg);
    err->msg = m;
    return err->code;
}

const char *
tp_err_msg(const struct tp_err *err)
{
    return err && err->msg ? err->msg : "";
}

void
tp_err_clear(struct tp_err *err)
{
    if (!err)
        return;
    free(err->msg);
    err->msg = NULL;
    err->code = 0;
}

void
tp_err_move(struct tp_err *dst, struct tp_err *src)
{
    tp_err_clear(dst);
    dst->code = src->code;
    dst->msg = src->msg;
    src->code = 0;
    src->msg = NULL;
}
