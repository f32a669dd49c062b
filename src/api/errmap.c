/* The one mapping from -errno to an HTTP status and error code slug, and the error body. */
#include "api/errmap.h"

#include <errno.h>
#include <stdlib.h>

#include "util/macro.h"
#include "util/xalloc.h"

static const struct {
    int errnum;
    struct api_status st;
} errmap_table[] = {
    { ENOENT, { 404, "not_found" } },
    { EEXIST, { 409, "conflict" } },
    { EBUSY, { 409, "conflict" } },
    { ENOTUNIQ, { 409, "ambiguous" } },
    { EINVAL, { 400, "invalid_argument" } },
    { EOPNOTSUPP, { 501, "unsupported" } },
    { EPROTONOSUPPORT, { 409, "incompatible" } }, /* a snapshot this host's VMM cannot load */
    { EPROTO, { 502, "bad_gateway" } },
    { ETIMEDOUT, { 504, "timeout" } },
    { ENOSPC, { 507, "insufficient_storage" } },
    { EDQUOT, { 507, "insufficient_storage" } },
    { EMSGSIZE, { 413, "too_large" } },
    { EFBIG, { 413, "too_large" } },
    { EUSERS, { 503, "unavailable" } },        /* every stream slot is taken */
    { ESHUTDOWN, { 503, "unavailable" } },     /* torpord is shutting down */
    { EADDRNOTAVAIL, { 503, "unavailable" } }, /* the guest subnet has no free address */
    { EADDRINUSE, { 409, "conflict" } },       /* a host port another process has bound */
};

struct api_status
api_errmap(int r)
{
    for (size_t i = 0; i < ELEMENTSOF(errmap_table); i++)
        if (r == -errmap_table[i].errnum)
            return errmap_table[i].st;
    return (struct api_status){ 500, "internal" };
}

json_t *
api_error_json(const char *code, const char *message)
{
    json_t *o = json_object();

    if (!o)
        abort();
    /* json_string() refuses invalid UTF-8; errors may quote guest or user bytes, so fall back
     * to a lossy but valid copy rather than losing the message. */
    json_t *msg = json_string(message ? message : "");
    if (!msg) {
        char *copy = xstrdup(message);
        for (char *p = copy; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        msg = json_string(copy);
        free(copy);
    }
    if (json_object_set_new(o, "code", json_string(code)) < 0 || !msg ||
        json_object_set_new(o, "message", msg) < 0)
        abort();
    return o;
}

char *
api_error_text(const char *code, const char *message)
{
    json_t *o = api_error_json(code, message);
    char *s = json_dumps(o, JSON_COMPACT);

    json_decref(o);
    if (!s)
        abort();
    char *out = xasprintf("%s\n", s);
    free(s);
    return out;
}
