/* Unit tests for the instance state table: every from x to pair, and state names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "instance/state.h"
#include "util/macro.h"

enum {
    C = INST_CREATED,
    R = INST_RUNNING,
    P = INST_PAUSED,
    SB = INST_STANDBY,
    ST = INST_STOPPED,
    U = INST_UNKNOWN,
};

/* Written out independently of state.c: rows are from, columns are to. */
/* clang-format off */
static const bool expected[_INST_STATE_MAX][_INST_STATE_MAX] = {
    /*          C  R  P  SB ST U */
    [C]  = {    0, 1, 0, 1, 1, 0 },
    [R]  = {    0, 0, 1, 0, 1, 1 },
    [P]  = {    0, 1, 0, 1, 1, 1 },
    [SB] = {    0, 1, 1, 0, 1, 0 },
    [ST] = {    0, 1, 0, 0, 0, 0 },
    [U]  = {    0, 1, 1, 1, 1, 0 },
};
/* clang-format on */

static void
test_every_pair(void **state)
{
    unsigned checked = 0, legal = 0;
    (void)state;

    for (int from = 0; from < _INST_STATE_MAX; from++)
        for (int to = 0; to < _INST_STATE_MAX; to++) {
            bool got = inst_state_can((enum inst_state)from, (enum inst_state)to);
            if (got != expected[from][to])
                fail_msg("%s -> %s: got %d, expected %d", inst_state_to_string(from),
                         inst_state_to_string(to), got, expected[from][to]);
            checked++;
            legal += got;
        }
    assert_int_equal(checked, 36);
    assert_int_equal(legal, 18);
}

static void
test_no_self_hop_and_no_return_to_created(void **state)
{
    (void)state;
    for (int s = 0; s < _INST_STATE_MAX; s++) {
        assert_false(inst_state_can(s, s));
        assert_false(inst_state_can(s, INST_CREATED));
    }
}

static void
test_out_of_range(void **state)
{
    (void)state;
    assert_false(inst_state_can(_INST_STATE_INVALID, INST_RUNNING));
    assert_false(inst_state_can(INST_RUNNING, _INST_STATE_INVALID));
    assert_false(inst_state_can(_INST_STATE_MAX, INST_RUNNING));
    assert_false(inst_state_can(INST_CREATED, _INST_STATE_MAX));
    assert_null(inst_state_to_string(_INST_STATE_MAX));
    assert_null(inst_state_to_string(_INST_STATE_INVALID));
}

static void
test_names(void **state)
{
    static const struct {
        enum inst_state s;
        const char *name, *lower;
    } table[] = {
        { INST_CREATED, "Created", "created" }, { INST_RUNNING, "Running", "running" },
        { INST_PAUSED, "Paused", "paused" },    { INST_STANDBY, "Standby", "standby" },
        { INST_STOPPED, "Stopped", "stopped" }, { INST_UNKNOWN, "Unknown", "unknown" },
    };
    (void)state;

    assert_int_equal(ELEMENTSOF(table), _INST_STATE_MAX);
    for (size_t i = 0; i < ELEMENTSOF(table); i++) {
        assert_string_equal(inst_state_to_string(table[i].s), table[i].name);
        assert_int_equal(inst_state_from_string(table[i].name), table[i].s);
        assert_int_equal(inst_state_from_string(table[i].lower), table[i].s);
        assert_int_equal(inst_state_from_string(inst_state_to_string(table[i].s)), table[i].s);
    }
}

static void
test_invalid_strings(void **state)
{
    static const char *const bad[] = {
        "", "RUNNING", "rUnning", "Running ", " running", "run", "Runningx", "Invalid", "stop",
    };
    (void)state;

    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        if (inst_state_from_string(bad[i]) != _INST_STATE_INVALID)
            fail_msg("'%s' parsed as a state", bad[i]);
    assert_int_equal(inst_state_from_string(NULL), _INST_STATE_INVALID);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair),
        cmocka_unit_test(test_no_self_hop_and_no_return_to_created),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_invalid_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
