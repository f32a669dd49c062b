/* Scope-based cleanup: _cleanup_(fn) locals and NULL-safe destructor helpers. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "macro.h"

#define _cleanup_(f) __attribute__((cleanup(f)))

/* DEFINE_CLEANUP(T, T_free) gives T_freep(T **) for _cleanup_(T_freep). */
#define DEFINE_CLEANUP(type, func)       \
    static inline void func##p(type **p) \
    {                                    \
        if (*p)                          \
            *p = func(*p);               \
    }

static inline void
freep(void *p)
{
    free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* free() that returns NULL: `p = mfree(p)`. */
static inline void *
mfree(void *p)
{
    free(p);
    return NULL;
}

/* Close an fd if valid; returns -EBADF so `fd = safe_close(fd)` resets it. */
static inline int
safe_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return -EBADF;
}

static inline void
closep(int *fd)
{
    safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void
fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Free a NULL-terminated string vector. */
static inline char **
strv_free(char **v)
{
    if (v)
        for (char **s = v; *s; s++)
            free(*s);
    free(v);
    return NULL;
}
DEFINE_CLEANUP(char *, strv_free)
#define _cleanup_strv_free_ _cleanup_(strv_freep)

#define strv_foreach(s, v) for (char **s = (v); s && *s; s++)
