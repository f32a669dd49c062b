/* libFuzzer target: an x-query-virtio-queue-element reply's descriptors (qemu_posted.c) must
 * never crash or leak, and only ever yield device-writable ranges with a length. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "hypervisor/qemu/qemu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *el = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    struct hv_mem_range *v = NULL;
    size_t n = 0;

    if (!el)
        return 0;
    if (qemu_posted_parse_element(el, &v, &n) == 0) {
        for (size_t k = 0; k < n; k++)
            if (v[k].len == 0)
                abort();
    }
    free(v);
    json_decref(el);
    return 0;
}
