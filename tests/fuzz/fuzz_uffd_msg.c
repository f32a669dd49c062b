/* libFuzzer target: the UFFD handshake's region list (from the VMM) must never crash, leak or
 * accept a region the handler could not serve from its memory file. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/firecracker/fc_uffd_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the memory file's size: 0..255 pages of 4 KiB, or 4 GiB. */
    const uint64_t file = size && data[0] == 255 ? (4ull << 30) : (size ? data[0] : 16) * 4096ull;
    struct fc_uffd_region *r = NULL;
    struct tp_err err = { 0 };
    size_t n = 0;

    if (size)
        data++, size--;
    if (fc_uffd_regions_parse((const char *)data, size, file, &r, &n, &err) == 0) {
        if (!r || n == 0 || n > FC_UFFD_REGIONS_MAX)
            abort();
        for (size_t k = 0; k < n; k++) {
            const struct fc_uffd_region *g = &r[k];
            if (g->size == 0 || g->page_size < 4096 || (g->page_size & (g->page_size - 1)) ||
                g->size % g->page_size || g->base % g->page_size || g->offset % g->page_size ||
                g->offset + g->size > file || g->offset + g->size < g->offset)
                abort();
            /* Every page of a region is found in it, and in no other (no overlap). */
            if (fc_uffd_region_find(r, n, g->base) != g ||
                fc_uffd_region_find(r, n, g->base + g->size - 1) != g)
                abort();
        }
        free(r);
    } else if (err.code >= 0 || r)
        abort();
    tp_err_clear(&err);
    return 0;
}
