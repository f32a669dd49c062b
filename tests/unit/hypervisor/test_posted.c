/* The guest's posted receive buffers (src/hypervisor/qemu/qemu_posted.c): which descriptors
 * count, where a queue's posted buffers end, and the QMP conversation against a scripted QEMU. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "fake_peer.h"
#include "hv_tests.h"
#include "hypervisor/qemu/qemu.h"
#include "hypervisor/qemu/qmp.h"

static void
test_element_descriptors(void **state)
{
    struct hv_mem_range *v = NULL;
    size_t n = 0;
    (void)state;

    /* Only device-writable descriptors with a length; the driver-readable header is not. */
    json_t *el = json_loads("{\"descs\": [{\"flags\": [\"next\"], \"len\": 16, \"addr\": 64},"
                            " {\"flags\": [\"write\"], \"len\": 0, \"addr\": 128},"
                            " {\"flags\": [\"next\", \"write\"], \"len\": 4096, \"addr\": 8192}]}",
                            0, NULL);
    assert_int_equal(qemu_posted_parse_element(el, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].off, 8192);
    assert_int_equal(v[0].len, 4096);
    json_decref(el);

    /* Another shape is refused, and what was gathered stays as it was. */
    const char *bad[] = {
        "{}",
        "{\"descs\": {}}",
        "{\"descs\": [{\"flags\": [\"write\"], \"len\": 4096}]}",
        "{\"descs\": [{\"flags\": [\"write\"], \"len\": -1, \"addr\": 0}]}",
        "{\"descs\": [{\"flags\": [\"write\"], \"len\": \"1\", \"addr\": 0}]}",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        el = json_loads(bad[k], 0, NULL);
        assert_non_null(el);
        assert_int_equal(qemu_posted_parse_element(el, &v, &n), -EPROTO);
        assert_int_equal(n, 1);
        json_decref(el);
    }
    free(v);
}

static void
test_posted_over_qmp(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = NULL;
    struct hv_mem_range *v = NULL;
    size_t n = 0;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fake_peer_start(&peer, "qmp/posted-buffers.txt"), 0);
    assert_int_equal(qmp_conn_adopt(fake_peer_fd(peer), 2000, -1, &c, &err), 0);
    int r = qemu_posted_buffers(c, QEMU_POSTED_PER_QUEUE, &v, &n, &err);
    if (r < 0)
        fprintf(stderr, "posted: %s (peer: %s)\n", tp_err_msg(&err), fake_peer_error(peer));
    assert_int_equal(r, 0);
    /* Two posted buffers (the ring index wraps past 65535); none past the avail index. */
    assert_int_equal(n, 2);
    assert_int_equal(v[0].off, 1048576);
    assert_int_equal(v[0].len, 4096);
    assert_int_equal(v[1].off, 1052672);
    assert_int_equal(v[1].len, 4096);
    assert_true(fake_peer_done(peer));
    free(v);
    qmp_conn_free(c);
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

int
hv_test_posted(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_element_descriptors),
        cmocka_unit_test(test_posted_over_qmp),
    };
    return cmocka_run_group_tests_name("posted", tests, NULL, NULL);
}
