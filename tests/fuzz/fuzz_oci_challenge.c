/* libFuzzer target: WWW-Authenticate challenges from a registry (oci_challenge_parse). */
#include <stdint.h>
#include <stdlib.h>

#include "image/oci/oci-internal.h"
#include "util/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = xstrndup((const char *)data, size);
    struct oci_challenge c = { 0 };
    struct tp_err err = { 0 };

    if (oci_challenge_parse(s, &c, &err) == 0)
        oci_challenge_done(&c);
    tp_err_clear(&err);
    free(s);
    return 0;
}
