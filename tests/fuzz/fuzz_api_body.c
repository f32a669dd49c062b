/* libFuzzer target for the API request body parsers: any bytes must give 0 or -EINVAL, never a
 * crash or leak, and a parsed request must be internally consistent. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "api/body.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_create_body c;
    struct api_exec_body x;
    struct tp_err err = { 0 };
    int r;

    r = api_parse_create((const char *)data, size, &c, &err);
    if (r == 0) {
        /* The request must point at the owned copies, and ranges must hold. */
        if (c.req.name != c.name || c.req.cmd != c.cmd ||
            (c.req.memory_mib &&
             (c.req.memory_mib < API_MEMORY_MIB_MIN || c.req.memory_mib > API_MEMORY_MIB_MAX)) ||
            (c.req.vcpus && (c.req.vcpus < API_VCPUS_MIN || c.req.vcpus > API_VCPUS_MAX)) ||
            (c.req.kernel && c.req.kernel[0] != '/'))
            abort();
        api_create_body_clear(&c);
    } else if (r != -EINVAL || err.code != -EINVAL || !err.msg) {
        abort();
    }
    tp_err_clear(&err);

    r = api_parse_exec((const char *)data, size, &x, &err);
    if (r == 0) {
        if (!x.req.argv || !x.req.argv[0] || x.req.argv != x.argv)
            abort();
        api_exec_body_clear(&x);
    } else if (r != -EINVAL) {
        abort();
    }
    tp_err_clear(&err);

    r = api_parse_empty((const char *)data, size, &err);
    if (r != 0 && r != -EINVAL)
        abort();
    tp_err_clear(&err);
    return 0;
}
