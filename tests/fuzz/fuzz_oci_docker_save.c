/* libFuzzer target: a `docker save` tarball's manifest.json (oci_docker_save_parse). */
#include <stdint.h>
#include <stdlib.h>

#include "image/oci/oci-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct oci_save_image *v = NULL;
    struct tp_err err = { 0 };
    size_t n = 0;

    if (oci_docker_save_parse((const char *)data, size, &v, &n, &err) == 0)
        oci_save_images_free(v, n);
    tp_err_clear(&err);
    return 0;
}
