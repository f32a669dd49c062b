/* The UFFD handshake's region-list parser: Firecracker's message as documented, and bad input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "hypervisor/firecracker/fc_uffd_msg.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

#define GIB (1ull << 30)

static void
test_documented_message(void **state)
{
    /* FIRECRACKER.md §8's example: a 4 GiB x86 guest in two regions, both page size fields. */
    static const char msg[] =
        "[{\"base_host_virt_addr\":140234567680000,\"size\":3221225472,\"offset\":0,"
        "\"page_size\":4096,\"page_size_kib\":4096},"
        "{\"base_host_virt_addr\":140237788905472,\"size\":1073741824,\"offset\":3221225472,"
        "\"page_size\":4096,\"page_size_kib\":4096}]";
    _cleanup_free_ struct fc_uffd_region *r = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    size_t n = 0;
    (void)state;

    assert_int_equal(fc_uffd_regions_parse(msg, strlen(msg), 4 * GIB, &r, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true(r[0].base == 140234567680000ull && r[0].size == 3 * GIB && r[0].offset == 0);
    assert_true(r[1].offset == 3 * GIB && r[1].page_size == 4096);
    assert_ptr_equal(fc_uffd_region_find(r, n, 140234567680000ull), &r[0]);
    assert_ptr_equal(fc_uffd_region_find(r, n, 140234567680000ull + 3 * GIB - 1), &r[0]);
    /* The regions are back to back in this example: the first byte after one is the next. */
    assert_ptr_equal(fc_uffd_region_find(r, n, 140234567680000ull + 3 * GIB), &r[1]);
    assert_null(fc_uffd_region_find(r, n, 140237788905472ull + GIB));
    assert_ptr_equal(fc_uffd_region_find(r, n, 140237788905472ull + 4096), &r[1]);
    assert_null(fc_uffd_region_find(r, n, 140234567680000ull - 1));
}

static void
test_variants(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct fc_uffd_region *r = NULL;
    size_t n = 0;
    (void)state;

    /* Before 1.12 only page_size_kib (bytes despite its name); unknown fields are ignored. */
    static const char old[] = "[{\"base_host_virt_addr\":65536,\"size\":8192,\"offset\":4096,"
                              "\"page_size_kib\":4096,\"future\":true}]";
    assert_int_equal(fc_uffd_regions_parse(old, strlen(old), 16384, &r, &n, &err), 0);
    assert_int_equal(r[0].page_size, 4096);
    free(r);
    /* 2 MiB hugetlbfs pages. */
    static const char huge[] =
        "[{\"base_host_virt_addr\":2097152,\"size\":4194304,\"offset\":0,\"page_size\":2097152}]";
    assert_int_equal(fc_uffd_regions_parse(huge, strlen(huge), 4194304, &r, &n, &err), 0);
    assert_int_equal(r[0].page_size, 2097152);
    free(r);
}

static void
bad(const char *msg, uint64_t file_size, const char *want)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct fc_uffd_region *r = (struct fc_uffd_region *)1;
    size_t n = 77;

    if (fc_uffd_regions_parse(msg, strlen(msg), file_size, &r, &n, &err) != -EPROTO)
        fail_msg("'%.80s' was not refused", msg);
    if (!strstr(tp_err_msg(&err), want))
        fail_msg("'%s': got '%s', want '%s'", msg, tp_err_msg(&err), want);
    assert_true(r == (struct fc_uffd_region *)1 && n == 77); /* untouched on failure */
}

#define REG(b, s, o, p) \
    "{\"base_host_virt_addr\":" #b ",\"size\":" #s ",\"offset\":" #o ",\"page_size\":" #p "}"

static void
test_bad_input(void **state)
{
    (void)state;
    bad("", 1 << 20, "not JSON");
    bad("[{\"size\":", 1 << 20, "not JSON");
    bad("{}", 1 << 20, "array of 1..64");
    bad("[]", 1 << 20, "array of 1..64");
    bad("[1]", 1 << 20, "not an object");
    bad("[{\"size\":4096,\"offset\":0,\"page_size\":4096}]", 1 << 20, "base_host_virt_addr");
    bad("[" REG(4096, -4096, 0, 4096) "]", 1 << 20, "non-negative");
    bad("[{\"base_host_virt_addr\":\"4096\",\"size\":4096,\"offset\":0,\"page_size\":4096}]",
        1 << 20, "non-negative integers");
    bad("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0}]", 1 << 20, "no page_size");
    bad("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":\"4k\"}]", 1 << 20,
        "not a non-negative integer");
    bad("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,"
        "\"page_size_kib\":4}]",
        1 << 20, "disagree");
    bad("[" REG(4096, 4096, 0, 1000) "]", 1 << 20, "power of two");
    bad("[" REG(4096, 4096, 0, 2048) "]", 1 << 20, "power of two");
    bad("[" REG(4096, 0, 0, 4096) "]", 1 << 20, "empty or not aligned");
    bad("[" REG(100, 4096, 0, 4096) "]", 1 << 20, "not aligned");
    bad("[" REG(4096, 4096, 512, 4096) "]", 1 << 20, "not aligned");
    bad("[" REG(4096, 8192, 1044480, 4096) "]", 1 << 20, "ends at byte 1052672");
    bad("[" REG(4096, 8192, 0, 4096) "," REG(8192, 4096, 8192, 4096) "]", 1 << 20,
        "regions 0 and 1 overlap");
    bad("[{\"base_host_virt_addr\":4096,\"base_host_virt_addr\":8192,\"size\":4096,\"offset\":0,"
        "\"page_size\":4096}]",
        1 << 20, "not JSON");
    bad("[" REG(18446744073709547520, 4096, 0, 4096) "]", 1 << 20, "not JSON"); /* > int64 */

    /* 65 regions: one too many. */
    char *many = xstrdup("[");
    for (int k = 0; k < 65; k++) {
        char *next = xasprintf("%s%s{\"base_host_virt_addr\":%d,\"size\":4096,\"offset\":0,"
                               "\"page_size\":4096}",
                               many, k ? "," : "", (k + 1) * 4096);
        free(many);
        many = next;
    }
    char *closed = xasprintf("%s]", many);
    bad(closed, 1 << 20, "array of 1..64");
    free(many);
    free(closed);

    /* Over the size limit, whatever it holds. */
    char *big = xzalloc(FC_UFFD_MSG_MAX + 2);
    memset(big, ' ', FC_UFFD_MSG_MAX + 1);
    bad(big, 1 << 20, "over");
    free(big);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documented_message),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
