/* QMP transport and commands against a scripted fake QEMU (transcripts in tests/data/qmp). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "fake_peer.h"
#include "hv_tests.h"
#include "hypervisor/qemu/qmp.h"
#include "util/timeutil.h"

/* Start a transcript and complete the handshake against it. */
static struct qmp_conn *
connect_peer(struct fake_peer **ret_peer, const char *transcript, int timeout_ms)
{
    struct qmp_conn *c = NULL;
    struct tp_err err = { 0 };
    int r;

    assert_int_equal(fake_peer_start(ret_peer, transcript), 0);
    r = qmp_conn_adopt(fake_peer_fd(*ret_peer), timeout_ms, -1, &c, &err);
    if (r < 0)
        fprintf(stderr, "handshake: %s\n", tp_err_msg(&err));
    assert_int_equal(r, 0);
    assert_non_null(c);
    tp_err_clear(&err);
    return c;
}

static const char *
event_name(json_t *ev)
{
    return json_string_value(json_object_get(ev, "event"));
}

static void
test_parse_kinds(void **state)
{
    struct qmp_msg m = { .json = NULL };
    struct tp_err err = { 0 };
    static const struct {
        const char *line;
        int kind;
    } cases[] = {
        { "{\"QMP\": {\"version\": {}, \"capabilities\": []}}", QMP_MSG_GREETING },
        { "{\"return\": {}, \"id\": 7}", QMP_MSG_RETURN },
        { "{\"return\": [1, 2]}\r", QMP_MSG_RETURN },
        { "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": 7}",
          QMP_MSG_ERROR },
        { "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}",
          QMP_MSG_EVENT },
        { "", -EPROTO },
        { "[1, 2]", -EPROTO },
        { "{\"return\": {}", -EPROTO },
        { "{\"error\": {\"class\": \"GenericError\"}}", -EPROTO },
        { "{\"error\": \"GenericError\"}", -EPROTO },
        { "{\"event\": 5}", -EPROTO },
        { "{\"something\": 1}", -EPROTO },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = qmp_parse_line(cases[i].line, strlen(cases[i].line), &m, &err);
        if (cases[i].kind < 0) {
            assert_int_equal(r, cases[i].kind);
            assert_int_equal(err.code, -EPROTO);
            assert_null(m.json);
            continue;
        }
        assert_int_equal(r, 0);
        assert_int_equal(m.kind, cases[i].kind);
        assert_non_null(m.json);
        qmp_msg_clear(&m);
    }

    const char *with_id = "{\"return\": {}, \"id\": 42}";
    assert_int_equal(qmp_parse_line(with_id, strlen(with_id), &m, &err), 0);
    assert_non_null(m.id);
    assert_int_equal(json_integer_value(m.id), 42);
    qmp_msg_clear(&m);
    tp_err_clear(&err);
}

static void
test_handshake(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/handshake.txt", 0);
    (void)state;

    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
}

static void
test_bad_greeting(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = NULL;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fake_peer_start(&peer, "qmp/bad-greeting.txt"), 0);
    assert_int_equal(qmp_conn_adopt(fake_peer_fd(peer), 2000, -1, &c, &err), -EPROTO);
    assert_null(c);
    assert_non_null(strstr(tp_err_msg(&err), "greeting"));
    assert_true(fake_peer_done(peer));
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

static void
test_stop_ok(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/stop-ok.txt", 0);
    struct tp_err err = { 0 };
    enum hv_run_state st = HV_RUN_RUNNING;
    char *status = NULL;
    (void)state;

    assert_int_equal(qmp_stop(c, &err), 0);
    assert_int_equal(qmp_query_status(c, &st, &status, &err), 0);
    assert_int_equal(st, HV_RUN_PAUSED);
    assert_string_equal(status, "paused");
    assert_int_equal(err.code, 0);
    assert_true(fake_peer_done(peer));
    free(status);
    qmp_conn_free(c);
    fake_peer_stop(peer);
}

static void
test_stop_error_reply(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/stop-generic-error.txt", 0);
    struct tp_err err = { 0 };
    const char *msg;
    (void)state;

    assert_int_equal(qmp_stop(c, &err), -EIO);
    msg = tp_err_msg(&err);
    assert_non_null(strstr(msg, "'stop'"));
    /* QEMU's own text is the innermost frame, so it ends the message. */
    const char *tail = "GenericError: Cannot stop: migration in progress";
    assert_true(strlen(msg) >= strlen(tail));
    assert_string_equal(msg + strlen(msg) - strlen(tail), tail);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

static void
test_events_before_reply(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/events-before-reply.txt", 0);
    struct tp_err err = { 0 };
    json_t *ev = NULL;
    (void)state;

    assert_int_equal(qmp_stop(c, &err), 0);
    assert_int_equal(qmp_event_next(c, &ev, 0, &err), 0);
    assert_string_equal(event_name(ev), "STOP");
    json_decref(ev);
    assert_int_equal(qmp_event_next(c, &ev, 0, &err), 0);
    assert_string_equal(event_name(ev), "RTC_CHANGE");
    json_decref(ev);
    ev = NULL;
    assert_int_equal(qmp_event_next(c, &ev, 0, &err), -ETIMEDOUT);
    assert_null(ev);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

static void
test_event_after_reply(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/event-after-reply.txt", 0);
    struct tp_err err = { 0 };
    json_t *ev = NULL;
    (void)state;

    assert_int_equal(qmp_quit(c, &err), 0);
    /* Waits on the socket: the event may come after the reply was consumed. */
    assert_int_equal(qmp_event_next(c, &ev, 5000, &err), 0);
    assert_string_equal(event_name(ev), "SHUTDOWN");
    json_decref(ev);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
}

struct waiter {
    struct qmp_conn *c;
    json_t *ev;
    int r;
};

static void *
wait_event(void *arg)
{
    struct waiter *w = arg;
    w->r = qmp_event_next(w->c, &w->ev, 5000, NULL);
    return NULL;
}

static void
test_event_waiter_thread(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/events-before-reply.txt", 0);
    struct waiter w = { .c = c, .r = 1 };
    struct tp_err err = { 0 };
    pthread_t t;
    (void)state;

    /* The waiter must not hold the connection against the command, and must see the event
     * whichever thread reads it. */
    assert_int_equal(pthread_create(&t, NULL, wait_event, &w), 0);
    assert_int_equal(qmp_stop(c, &err), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.r, 0);
    assert_string_equal(event_name(w.ev), "STOP");
    json_decref(w.ev);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
}

static void
test_event_overflow(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/event-overflow.txt", 0);
    struct tp_err err = { 0 };
    json_t *ev = NULL;
    int n = 0;
    (void)state;

    assert_int_equal(qmp_cont(c, &err), 0);
    while (qmp_event_next(c, &ev, 0, NULL) == 0) {
        json_int_t seq = json_integer_value(json_object_get(json_object_get(ev, "data"), "n"));
        /* The 300 - 256 oldest were dropped; the rest come in order. */
        assert_int_equal(seq, 300 - QMP_EVENT_QUEUE_MAX + n);
        json_decref(ev);
        n++;
    }
    assert_int_equal(n, QMP_EVENT_QUEUE_MAX);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
}

static void
test_mismatched_id(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/mismatched-id.txt", 0);
    struct tp_err err = { 0 };
    enum hv_run_state st = HV_RUN_OTHER;
    (void)state;

    assert_int_equal(qmp_query_status(c, &st, NULL, &err), 0);
    assert_int_equal(st, HV_RUN_PAUSED);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
}

static void
test_eof_mid_reply(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/eof-mid-reply.txt", 0);
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(qmp_stop(c, &err), -ECONNRESET);
    /* The connection stays failed: later commands do not wait for a peer that is gone. */
    assert_int_equal(qmp_cont(c, &err), -ECONNRESET);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

static void
test_garbage(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/garbage.txt", 0);
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(qmp_stop(c, &err), -EPROTO);
    assert_non_null(strstr(tp_err_msg(&err), "parse QMP message"));
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

static void
test_oversize(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/oversize.txt", 0);
    struct tp_err err = { 0 };
    enum hv_run_state st;
    (void)state;

    assert_int_equal(qmp_query_status(c, &st, NULL, &err), -EPROTO);
    assert_non_null(strstr(tp_err_msg(&err), "longer than"));
    /* Hanging up lets the peer finish writing. */
    qmp_conn_free(c);
    assert_true(fake_peer_done(peer));
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

static void
test_timeout(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/timeout.txt", 200);
    struct tp_err err = { 0 };
    uint64_t t0;
    (void)state;

    t0 = now_ms();
    assert_int_equal(qmp_stop(c, &err), -ETIMEDOUT);
    assert_true(now_ms() - t0 >= 150);
    assert_true(now_ms() - t0 < 3000);
    qmp_conn_free(c);
    assert_true(fake_peer_done(peer));
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

static void
test_event_wait_timeout(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/handshake.txt", 0);
    struct tp_err err = { 0 };
    json_t *ev = NULL;
    uint64_t t0 = now_ms();
    (void)state;

    assert_int_equal(qmp_event_next(c, &ev, 100, &err), -ETIMEDOUT);
    assert_true(now_ms() - t0 >= 90);
    assert_true(now_ms() - t0 < 3000);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
    tp_err_clear(&err);
}

static void
test_migration_commands(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/migration.txt", 0);
    struct tp_err err = { 0 };
    char *status = NULL;
    json_t *ev = NULL;
    int pipefd[2];
    (void)state;

    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(qmp_migrate_set_capability(c, "x-ignore-shared", true, &err), 0);
    assert_int_equal(qmp_migrate_set_max_bandwidth(c, 107374182400ull, &err), 0);
    assert_int_equal(qmp_query_migrate(c, &status, &err), 0);
    assert_string_equal(status, "none");
    free(status);
    assert_int_equal(qmp_getfd(c, "mig", pipefd[1], &err), 0);
    assert_int_equal(qmp_migrate(c, "fd:mig", &err), 0);
    assert_int_equal(qmp_query_migrate(c, &status, &err), 0);
    assert_string_equal(status, "completed");
    free(status);
    assert_int_equal(qmp_event_next(c, &ev, 0, &err), 0);
    assert_string_equal(event_name(ev), "MIGRATION");
    json_decref(ev);
    assert_int_equal(qmp_migrate_incoming(c, "fd:mig", &err), 0);
    assert_int_equal(qmp_cont(c, &err), 0);
    assert_int_equal(qmp_quit(c, &err), 0);
    assert_int_equal(err.code, 0);
    assert_true(fake_peer_done(peer));
    close(pipefd[0]);
    close(pipefd[1]);
    qmp_conn_free(c);
    fake_peer_stop(peer);
}

static void
test_migration_failure_reason(void **state)
{
    struct fake_peer *peer = NULL;
    struct qmp_conn *c = connect_peer(&peer, "qmp/migration-failed.txt", 0);
    struct qmp_migrate_info info = { 0 };
    struct tp_err err = { 0 };
    json_t *ev = NULL;
    (void)state;

    assert_int_equal(qmp_migrate(c, "fd:mig", &err), 0);
    assert_int_equal(qmp_event_next(c, &ev, 5000, &err), 0);
    assert_string_equal(event_name(ev), "MIGRATION");
    json_decref(ev);
    /* QEMU's own words survive, and a full disk is told apart from other failures. */
    assert_int_equal(qmp_query_migrate_info(c, &info, &err), 0);
    assert_string_equal(info.status, "failed");
    assert_string_equal(info.error_desc, "Unable to write to file: No space left on device");
    assert_int_equal(info.error_code, -ENOSPC);
    qmp_migrate_info_clear(&info);
    assert_int_equal(qmp_query_migrate_info(c, &info, &err), 0);
    assert_int_equal(info.error_code, -EDQUOT);
    qmp_migrate_info_clear(&info);
    assert_int_equal(qmp_query_migrate_info(c, &info, &err), 0);
    assert_string_equal(info.error_desc, "Channel error: Broken pipe");
    assert_int_equal(info.error_code, -EIO);
    qmp_migrate_info_clear(&info);
    assert_int_equal(qmp_query_migrate_info(c, &info, &err), 0);
    assert_string_equal(info.status, "failed");
    assert_null(info.error_desc);
    assert_int_equal(info.error_code, 0);
    qmp_migrate_info_clear(&info);
    assert_int_equal(err.code, 0);
    assert_int_equal(qmp_query_migrate_info(c, &info, &err), -EPROTO);
    assert_null(info.status);
    tp_err_clear(&err);
    assert_true(fake_peer_done(peer));
    qmp_conn_free(c);
    fake_peer_stop(peer);
}

int
hv_test_qmp(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_kinds),
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_bad_greeting),
        cmocka_unit_test(test_stop_ok),
        cmocka_unit_test(test_stop_error_reply),
        cmocka_unit_test(test_events_before_reply),
        cmocka_unit_test(test_event_after_reply),
        cmocka_unit_test(test_event_waiter_thread),
        cmocka_unit_test(test_event_overflow),
        cmocka_unit_test(test_mismatched_id),
        cmocka_unit_test(test_eof_mid_reply),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_event_wait_timeout),
        cmocka_unit_test(test_migration_commands),
        cmocka_unit_test(test_migration_failure_reason),
    };
    return cmocka_run_group_tests_name("qmp", tests, NULL, NULL);
}
