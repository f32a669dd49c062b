/* Unit tests for util/procstat: /proc/PID/stat and smaps_rollup text captured from a QEMU VMM,
 * command names that look like field separators, malformed text, and the live reader. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "util/cleanup.h"
#include "util/fs.h"
#include "util/procstat.h"
#include "util/xalloc.h"

static char *
read_data(const char *name)
{
    const char *dir = getenv("TORPOR_TEST_DATA");
    _cleanup_free_ char *path = xasprintf("%s/proc/%s", dir ? dir : "tests/data", name);
    char *text = NULL;

    assert_int_equal(fs_read_file(path, 1u << 20, &text, NULL, NULL), 0);
    return text;
}

static void
test_stat_captured(void **state)
{
    _cleanup_free_ char *line = read_data("qemu-stat");
    struct procstat_stat st;
    (void)state;

    assert_int_equal(procstat_parse_stat(line, &st), 0);
    assert_int_equal(st.utime_ticks, 121);
    assert_int_equal(st.stime_ticks, 58);
    assert_int_equal(st.threads, 6);
    assert_int_equal(st.start_time, 940677);
}

/* The command name is whatever the process called itself: only the last ')' ends it. */
static void
test_stat_comm_with_parens_and_spaces(void **state)
{
    static const char *const comms[] = { "(qemu (x) y)", "() ) (", "a b c d e f g h", ")" };
    _cleanup_free_ char *line = read_data("qemu-stat");
    const char *rest = strchr(line, ')') + 1;
    (void)state;

    for (size_t i = 0; i < sizeof(comms) / sizeof(comms[0]); i++) {
        _cleanup_free_ char *l = xasprintf("22085 (%s)%s", comms[i], rest);
        struct procstat_stat st = { 0 };

        assert_int_equal(procstat_parse_stat(l, &st), 0);
        assert_int_equal(st.utime_ticks, 121);
        assert_int_equal(st.stime_ticks, 58);
        assert_int_equal(st.threads, 6);
        assert_int_equal(st.start_time, 940677);
    }
}

static void
test_stat_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "22085 qemu S 1 2 3",
        "22085 (qemu) S 1 2 3 4 5 6 7 8 9 10 11",               /* cut before utime */
        "22085 (qemu) S 22073 22085 22085 0 -1 1 2 0 3 0 x 58", /* utime not a number */
        "22085 (qemu)S 22073 22085 22085 0 -1 1 2 0 3 0 121 58 0 0 20 0 6 0 940677",
        "22085 (qemu) S 22073 22085 22085 0 -1 1 2 0 3 0 121 58 0 0 20 0 0 0 940677", /* threads */
        "22085 (qemu) S 22073 22085 22085 0 -1 1 2 0 3 0 121 58 0 0 20 0 6 0",        /* no start */
    };
    struct procstat_stat st = { .threads = 42 };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (procstat_parse_stat(bad[i], &st) != -EINVAL)
            fail_msg("accepted '%s'", bad[i]);
    assert_int_equal(st.threads, 42); /* ret untouched on failure */
}

static void
test_smaps_rollup_captured(void **state)
{
    _cleanup_free_ char *text = read_data("qemu-smaps_rollup");
    struct procstat_mem m;
    (void)state;

    assert_int_equal(procstat_parse_smaps_rollup(text, &m), 0);
    assert_int_equal(m.rss, 209640ull * 1024);
    assert_int_equal(m.pss, 196671ull * 1024);
}

static void
test_smaps_rollup_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "Rss:  10 kB\n",                  /* no Pss */
        "Pss:  10 kB\n",                  /* no Rss */
        "Rss:  10 kB\nPss_Anon:  3 kB\n", /* Pss_Anon is not Pss */
        "Rss:  10 MB\nPss:  3 kB\n",      /* unit */
        "Rss:  ten kB\nPss:  3 kB\n",     /* number */
        "XRss:  10 kB\nPss:  3 kB\n",     /* a key that ends in Rss */
    };
    struct procstat_mem m;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (procstat_parse_smaps_rollup(bad[i], &m) != -EINVAL)
            fail_msg("accepted '%s'", bad[i]);
}

/* The reader against this very process, and one that does not exist. */
static void
test_read_self_and_gone(void **state)
{
    struct procstat ps;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(procstat_read(getpid(), &ps, &err), 0);
    assert_true(ps.mem.rss > 0);
    assert_true(ps.mem.pss > 0 && ps.mem.pss <= ps.mem.rss);
    assert_true(ps.stat.threads >= 1);
    assert_int_equal(ps.cpu_ns % 1000, 0);

    /* pid_max is at most 2^22: this one never exists. */
    assert_int_equal(procstat_read(1 << 23, &ps, &err), -ESRCH);
    assert_non_null(strstr(tp_err_msg(&err), "is gone"));
    tp_err_clear(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stat_captured),
        cmocka_unit_test(test_stat_comm_with_parens_and_spaces),
        cmocka_unit_test(test_stat_malformed),
        cmocka_unit_test(test_smaps_rollup_captured),
        cmocka_unit_test(test_smaps_rollup_malformed),
        cmocka_unit_test(test_read_self_and_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
