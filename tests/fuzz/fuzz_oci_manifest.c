/* libFuzzer target: manifest and index blobs from a registry or an archive: kind detection,
 * the image manifest parser, the index parser and the linux/amd64 choice. */
#include <stdint.h>
#include <stdlib.h>

#include "image/oci/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct tp_err err = { 0 };
    struct oci_manifest m = { 0 };
    struct oci_index ix = { 0 };
    struct oci_desc d = { 0 };
    enum oci_kind k;
    char *mt = NULL;

    if (oci_blob_kind(buf, size, &k, &mt, &err) == 0)
        free(mt);
    tp_err_clear(&err);
    if (oci_manifest_parse(buf, size, &m, &err) == 0)
        oci_manifest_free(&m);
    tp_err_clear(&err);
    if (oci_index_parse(buf, size, &ix, &err) == 0) {
        if (oci_index_select(&ix, "linux", "amd64", &d, &err) == 0)
            oci_desc_done(&d);
        oci_index_free(&ix);
    }
    tp_err_clear(&err);
    return 0;
}
