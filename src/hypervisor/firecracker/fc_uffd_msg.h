/* The UFFD handshake's region list: the one message Firecracker sends its page-fault handler,
 * parsed and checked as outside input (FIRECRACKER.md §8). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define FC_UFFD_MSG_MAX     65536 /* the largest region list read (hotplug adds regions) */
#define FC_UFFD_REGIONS_MAX 64

/* One guest memory region: guest pages [base, base + size) in the VMM's address space hold the
 * memory file's bytes [offset, offset + size). */
struct fc_uffd_region {
    uint64_t base;      /* base_host_virt_addr */
    uint64_t size;      /* bytes, a multiple of page_size, > 0 */
    uint64_t offset;    /* in the memory file, a multiple of page_size */
    uint64_t page_size; /* bytes: a power of two, 4 KiB .. 1 GiB */
};

/* Parse a region list (a JSON array of {base_host_virt_addr, size, offset, page_size and/or the
 * deprecated page_size_kib, which carries bytes too}; other fields are ignored) and check it
 * against a memory file of file_size bytes: every region aligned to its page size, inside the
 * file, its address range free of overflow and of overlap with another. -EPROTO (with the
 * reason) for anything else; *ret is owned by the caller (free()). */
int fc_uffd_regions_parse(const char *buf, size_t len, uint64_t file_size,
                          struct fc_uffd_region **ret, size_t *ret_n, struct tp_err *err);

/* The region holding address addr, or NULL. */
const struct fc_uffd_region *fc_uffd_region_find(const struct fc_uffd_region *r, size_t n,
                                                 uint64_t addr);
