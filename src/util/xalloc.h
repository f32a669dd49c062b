/* Allocation that aborts on OOM: the one place OOM is handled. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

void *xmalloc(size_t n);
void *xzalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* A deep copy of a NULL-terminated string vector; NULL for NULL. */
char **xstrv_dup(char *const *v);
char *xasprintf(const char *fmt, ...) _printf_(1, 2);
char *xvasprintf(const char *fmt, va_list ap) _printf_(1, 0);
#define xnew(type, n) ((type *)xzalloc(sizeof(type) * (n)))
