/* libFuzzer target: docker references (oci_ref_parse), and that a parsed reference's normalized
 * form parses again to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/oci/oci.h"
#include "util/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = xstrndup((const char *)data, size);
    struct oci_ref r = { 0 }, again = { 0 };
    struct tp_err err = { 0 };

    if (oci_ref_parse(s, &r, &err) == 0) {
        if (oci_ref_parse(r.full, &again, NULL) != 0 || strcmp(again.full, r.full) != 0)
            abort(); /* normalization must be a fixed point */
        free(oci_ref_familiar_name(&r));
        oci_ref_free(&again);
        oci_ref_free(&r);
    }
    tp_err_clear(&err);
    free(s);
    return 0;
}
