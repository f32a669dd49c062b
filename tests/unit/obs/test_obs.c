/* Unit tests for obs/: the exact exposition text of a known set of metrics, label escaping,
 * the event bus's replay and bounds, and util/log's JSON line. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "obs/events.h"
#include "obs/metrics.h"
#include "util/log.h"
#include "util/macro.h"

static void
test_render_exact(void **state)
{
    static const double buckets[] = { 0.1, 1, 2.5 };
    struct obs_registry *r = obs_registry_new();
    char l[OBS_LABELS_MAX];
    (void)state;

    obs_declare(r, "t_ops_seconds", OBS_HISTOGRAM, "Operation time.", buckets, ELEMENTSOF(buckets));
    obs_declare(r, "t_requests_total", OBS_COUNTER, "Requests.", NULL, 0);
    obs_declare(r, "t_phase_seconds", OBS_SUMMARY, "Phase time.", NULL, 0);
    obs_declare(r, "t_open_fds", OBS_GAUGE, "Open fds.", NULL, 0);
    obs_declare(r, "t_empty_total", OBS_COUNTER, "Nothing yet.", NULL, 0);
    obs_declare(r, "t_requests_total", OBS_GAUGE, "ignored: declared already", NULL, 0);

    obs_labels(l, sizeof(l), "op", "standby", "result", "ok", NULL);
    obs_observe(r, "t_ops_seconds", l, 0.0625);
    obs_observe(r, "t_ops_seconds", l, 2);
    obs_observe(r, "t_ops_seconds", l, 1); /* on a bound: counted in it (le) */
    obs_labels(l, sizeof(l), "op", "restore", "result", "error", NULL);
    obs_observe(r, "t_ops_seconds", l, 7.5);
    obs_counter_add(r, "t_requests_total", obs_labels(l, sizeof(l), "route", "list", NULL), 2);
    obs_counter_add(r, "t_requests_total", obs_labels(l, sizeof(l), "route", "get", NULL), 1);
    obs_counter_add(r, "t_requests_total", obs_labels(l, sizeof(l), "route", "list", NULL), 1);
    obs_observe(r, "t_phase_seconds", obs_labels(l, sizeof(l), "phase", "snap", NULL), 0.25);
    obs_gauge_set(r, "t_open_fds", NULL, 12);
    obs_gauge_set(r, "t_open_fds", "", 9);

    char *text = obs_render(r);
    assert_string_equal(text,
                        "# HELP t_ops_seconds Operation time.\n"
                        "# TYPE t_ops_seconds histogram\n"
                        "t_ops_seconds_bucket{op=\"restore\",result=\"error\",le=\"0.1\"} 0\n"
                        "t_ops_seconds_bucket{op=\"restore\",result=\"error\",le=\"1\"} 0\n"
                        "t_ops_seconds_bucket{op=\"restore\",result=\"error\",le=\"2.5\"} 0\n"
                        "t_ops_seconds_bucket{op=\"restore\",result=\"error\",le=\"+Inf\"} 1\n"
                        "t_ops_seconds_sum{op=\"restore\",result=\"error\"} 7.5\n"
                        "t_ops_seconds_count{op=\"restore\",result=\"error\"} 1\n"
                        "t_ops_seconds_bucket{op=\"standby\",result=\"ok\",le=\"0.1\"} 1\n"
                        "t_ops_seconds_bucket{op=\"standby\",result=\"ok\",le=\"1\"} 2\n"
                        "t_ops_seconds_bucket{op=\"standby\",result=\"ok\",le=\"2.5\"} 3\n"
                        "t_ops_seconds_bucket{op=\"standby\",result=\"ok\",le=\"+Inf\"} 3\n"
                        "t_ops_seconds_sum{op=\"standby\",result=\"ok\"} 3.0625\n"
                        "t_ops_seconds_count{op=\"standby\",result=\"ok\"} 3\n"
                        "# HELP t_requests_total Requests.\n"
                        "# TYPE t_requests_total counter\n"
                        "t_requests_total{route=\"get\"} 1\n"
                        "t_requests_total{route=\"list\"} 3\n"
                        "# HELP t_phase_seconds Phase time.\n"
                        "# TYPE t_phase_seconds summary\n"
                        "t_phase_seconds_sum{phase=\"snap\"} 0.25\n"
                        "t_phase_seconds_count{phase=\"snap\"} 1\n"
                        "# HELP t_open_fds Open fds.\n"
                        "# TYPE t_open_fds gauge\n"
                        "t_open_fds 9\n"
                        "# HELP t_empty_total Nothing yet.\n"
                        "# TYPE t_empty_total counter\n");
    free(text);
    obs_registry_free(r);
}

static void
test_labels_escaped(void **state)
{
    char l[OBS_LABELS_MAX], small[16];
    (void)state;

    assert_string_equal(obs_labels(l, sizeof(l), "name", "a\"b\\c\nd", NULL),
                        "name=\"a\\\"b\\\\c\\nd\"");
    assert_string_equal(obs_labels(l, sizeof(l), NULL), "");
    /* Truncation stays inside the buffer. */
    obs_labels(small, sizeof(small), "instance", "a-very-long-name", NULL);
    assert_true(strlen(small) < sizeof(small));
}

static void
test_events_replay_since(void **state)
{
    struct obs_bus *b = obs_bus_new(3, 8);
    char *j = NULL;
    int64_t t = 0;
    (void)state;

    obs_publish(b, 10, "{\"n\":1}");
    obs_publish(b, 20, "{\"n\":2}");
    obs_publish(b, 30, "{\"n\":3}");
    obs_publish(b, 40, "{\"n\":4}"); /* the ring keeps 3: n=1 goes */

    struct obs_sub *all = obs_subscribe(b, 0);
    struct obs_sub *late = obs_subscribe(b, 30);
    struct obs_sub *live = obs_subscribe(b, -1);
    assert_int_equal(obs_sub_next(all, &j, &t), 0);
    assert_string_equal(j, "{\"n\":2}");
    assert_int_equal(t, 20);
    free(j);
    assert_int_equal(obs_sub_next(late, &j, NULL), 0);
    assert_string_equal(j, "{\"n\":3}");
    free(j);
    assert_int_equal(obs_sub_next(live, &j, NULL), -EAGAIN);

    obs_publish(b, 50, "{\"n\":5}");
    assert_int_equal(obs_sub_next(live, &j, NULL), 0);
    assert_string_equal(j, "{\"n\":5}");
    free(j);
    assert_int_equal(obs_sub_next(live, &j, NULL), -EAGAIN);
    obs_sub_free(all);
    obs_sub_free(late);
    obs_sub_free(live);
    obs_bus_free(b);
}

static double
mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
test_events_slow_reader_dropped(void **state)
{
    struct obs_bus *b = obs_bus_new(16, 4);
    struct obs_sub *slow = obs_subscribe(b, -1);
    struct obs_sub *fast = obs_subscribe(b, -1);
    char *j = NULL, ev[32];
    (void)state;

    /* slow never reads: publishing 10000 events must not wait for it. */
    double t0 = mono_s();
    for (int k = 0; k < 10000; k++) {
        snprintf(ev, sizeof(ev), "{\"n\":%d}", k);
        obs_publish(b, k, ev);
        /* fast keeps up */
        assert_int_equal(obs_sub_next(fast, &j, NULL), 0);
        free(j);
    }
    assert_true(mono_s() - t0 < 2.0);
    /* slow still gets what it had queued, then the drop. */
    for (int k = 0; k < 4; k++) {
        assert_int_equal(obs_sub_next(slow, &j, NULL), 0);
        snprintf(ev, sizeof(ev), "{\"n\":%d}", k);
        assert_string_equal(j, ev);
        free(j);
    }
    assert_int_equal(obs_sub_next(slow, &j, NULL), -ENOBUFS);
    assert_int_equal(obs_sub_next(slow, &j, NULL), -ENOBUFS);
    assert_int_equal(obs_sub_next(fast, &j, NULL), -EAGAIN);
    obs_sub_free(slow);
    obs_sub_free(fast);
    obs_bus_free(b);
}

struct publisher {
    struct obs_bus *b;
    int n;
};

static void *
publish_many(void *arg)
{
    struct publisher *p = arg;
    for (int k = 0; k < p->n; k++)
        obs_publish(p->b, k, "{}");
    return NULL;
}

/* Publishers on two threads and a subscriber that never reads: they finish, it is dropped. */
static void
test_events_producers_never_block(void **state)
{
    struct obs_bus *b = obs_bus_new(1000, 1024);
    struct obs_sub *stalled = obs_subscribe(b, -1);
    struct publisher p = { b, 5000 };
    pthread_t t1, t2;
    char *j = NULL;
    int drained = 0;
    (void)state;

    assert_int_equal(pthread_create(&t1, NULL, publish_many, &p), 0);
    assert_int_equal(pthread_create(&t2, NULL, publish_many, &p), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    while (obs_sub_next(stalled, &j, NULL) == 0) {
        free(j);
        drained++;
    }
    assert_int_equal(drained, 1024);
    assert_int_equal(obs_sub_next(stalled, &j, NULL), -ENOBUFS);
    obs_sub_free(stalled);
    obs_bus_free(b);
}

static void
test_log_json_line(void **state)
{
    char *s;
    (void)state;

    s = log_json_line("2026-12-01T11:40:00.000001Z", "info",
                      "instance=3882edf4 op=standby standby ok 2.3 ms: pause_vm=0.1", NULL, 0);
    assert_string_equal(s, "{\"time\":\"2026-12-01T11:40:00.000001Z\",\"level\":\"info\","
                           "\"instance\":\"3882edf4\",\"op\":\"standby\","
                           "\"msg\":\"standby ok 2.3 ms: pause_vm=0.1\"}");
    free(s);
    s = log_json_line("T", "error", "instance=ab: save \"x\"\tfailed", "f.c", 7);
    assert_string_equal(s, "{\"time\":\"T\",\"level\":\"error\",\"instance\":\"ab\","
                           "\"msg\":\"save \\\"x\\\"\\u0009failed\",\"file\":\"f.c\",\"line\":7}");
    free(s);
    s = log_json_line("T", "warn", "api: GET /x -> 404", NULL, 0);
    assert_string_equal(s, "{\"time\":\"T\",\"level\":\"warn\",\"msg\":\"api: GET /x -> 404\"}");
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_exact),
        cmocka_unit_test(test_labels_escaped),
        cmocka_unit_test(test_events_replay_since),
        cmocka_unit_test(test_events_slow_reader_dropped),
        cmocka_unit_test(test_events_producers_never_block),
        cmocka_unit_test(test_log_json_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
