/* Small compiler helpers shared by every module. */
#pragma once

#include <stddef.h>

#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_       __attribute__((unused))
#define _noreturn_     __attribute__((noreturn))
#define _pure_         __attribute__((pure))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b)     ((a) < (b) ? (a) : (b))
#define MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Ownership hand-off: read a variable and leave NULL (or -EBADF) behind. */
#define TAKE_PTR(p)               \
    ({                            \
        __typeof__(p) _tp_ = (p); \
        (p) = NULL;               \
        _tp_;                     \
    })
#define TAKE_FD(fd)      \
    ({                   \
        int _tf_ = (fd); \
        (fd) = -EBADF;   \
        _tf_;            \
    })
