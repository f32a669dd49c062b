/* Fuzz target: bzImage bytes (a user's --kernel) through the ELF extractor's header parsing
 * and the four decompressors. Whatever it returns must be a bounded ELF image. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *out = NULL;
    size_t len = 0;
    struct tp_err err = { 0 };

    if (image_vmlinux_extract(data, size, &out, &len, &err) == 0) {
        if (len < 64 || len > IMAGE_VMLINUX_MAX || memcmp(out, "\177ELF", 4) != 0)
            abort();
        free(out);
    } else if (out)
        abort();
    tp_err_clear(&err);
    return 0;
}
