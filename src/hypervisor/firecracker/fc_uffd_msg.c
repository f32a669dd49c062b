/* The UFFD handshake's region list, parsed and checked as outside input. */
#include "hypervisor/firecracker/fc_uffd_msg.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util/cleanup.h"
#include "util/xalloc.h"

#define PAGE_MIN 4096ull
#define PAGE_MAX (1ull << 30)

/* A non-negative JSON integer; false when absent or of another type. */
static bool
get_u64(const json_t *o, const char *key, uint64_t *ret)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *ret = (uint64_t)json_integer_value(v);
    return true;
}

static int
region_parse(const json_t *o, size_t k, uint64_t file_size, struct fc_uffd_region *ret,
             struct tp_err *err)
{
    struct fc_uffd_region r = { 0 };
    uint64_t kib = 0;
    bool has_ps, has_kib;

    if (!json_is_object(o))
        return tp_err_set(err, -EPROTO, "region %zu is not an object", k);
    if (!get_u64(o, "base_host_virt_addr", &r.base) || !get_u64(o, "size", &r.size) ||
        !get_u64(o, "offset", &r.offset))
        return tp_err_set(err, -EPROTO,
                          "region %zu needs non-negative integers base_host_virt_addr, size and "
                          "offset",
                          k);
    has_ps = get_u64(o, "page_size", &r.page_size);
    has_kib = get_u64(o, "page_size_kib", &kib);
    if ((json_object_get(o, "page_size") && !has_ps) ||
        (json_object_get(o, "page_size_kib") && !has_kib))
        return tp_err_set(err, -EPROTO, "region %zu: page size is not a non-negative integer", k);
    /* page_size_kib is the deprecated name of the same value, in bytes despite its name. */
    if (!has_ps && !has_kib)
        return tp_err_set(err, -EPROTO, "region %zu has no page_size", k);
    if (has_ps && has_kib && r.page_size != kib)
        return tp_err_set(err, -EPROTO,
                          "region %zu: page_size %llu and page_size_kib %llu disagree", k,
                          (unsigned long long)r.page_size, (unsigned long long)kib);
    if (!has_ps)
        r.page_size = kib;
    if (r.page_size < PAGE_MIN || r.page_size > PAGE_MAX || (r.page_size & (r.page_size - 1)))
        return tp_err_set(err, -EPROTO,
                          "region %zu: page size %llu is not a power of two in 4 "
                          "KiB..1 GiB",
                          k, (unsigned long long)r.page_size);
    if (r.size == 0 || r.size % r.page_size || r.base % r.page_size || r.offset % r.page_size)
        return tp_err_set(err, -EPROTO, "region %zu is empty or not aligned to its page size %llu",
                          k, (unsigned long long)r.page_size);
    if (r.base + r.size < r.base || r.offset + r.size < r.offset)
        return tp_err_set(err, -EPROTO, "region %zu wraps around", k);
    if (r.offset + r.size > file_size)
        return tp_err_set(err, -EPROTO,
                          "region %zu ends at byte %llu of a memory file of %llu bytes", k,
                          (unsigned long long)(r.offset + r.size), (unsigned long long)file_size);
    *ret = r;
    return 0;
}

int
fc_uffd_regions_parse(const char *buf, size_t len, uint64_t file_size, struct fc_uffd_region **ret,
                      size_t *ret_n, struct tp_err *err)
{
    _cleanup_free_ struct fc_uffd_region *regs = NULL;
    json_error_t je;
    json_t *a;
    size_t n;
    int r = 0;

    if (len > FC_UFFD_MSG_MAX)
        return tp_err_set(err, -EPROTO, "region list of %zu bytes is over %d", len,
                          FC_UFFD_MSG_MAX);
    a = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!a)
        return tp_err_set(err, -EPROTO, "region list is not JSON: %s", je.text);
    n = json_is_array(a) ? json_array_size(a) : 0;
    if (!json_is_array(a) || n == 0 || n > FC_UFFD_REGIONS_MAX) {
        json_decref(a);
        return tp_err_set(err, -EPROTO, "region list must be an array of 1..%d regions",
                          FC_UFFD_REGIONS_MAX);
    }
    regs = xnew(struct fc_uffd_region, n);
    for (size_t k = 0; k < n && r == 0; k++)
        r = region_parse(json_array_get(a, k), k, file_size, &regs[k], err);
    json_decref(a);
    if (r < 0)
        return r;
    for (size_t k = 0; k < n; k++)
        for (size_t j = k + 1; j < n; j++)
            if (regs[k].base < regs[j].base + regs[j].size &&
                regs[j].base < regs[k].base + regs[k].size)
                return tp_err_set(err, -EPROTO, "regions %zu and %zu overlap", k, j);
    *ret = TAKE_PTR(regs);
    *ret_n = n;
    return 0;
}

const struct fc_uffd_region *
fc_uffd_region_find(const struct fc_uffd_region *r, size_t n, uint64_t addr)
{
    for (size_t k = 0; k < n; k++)
        if (addr >= r[k].base && addr - r[k].base < r[k].size)
            return &r[k];
    return NULL;
}
