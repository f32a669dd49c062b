/* Unit tests for image/oci/config.c: config blobs and docker's rules for run's overrides. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "image/oci/config.h"
#include "util/cleanup.h"

static const char full[] =
    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/bin\","
    "\"A=b\"],\"Entrypoint\":[\"/bin/sh\",\"-c\"],\"Cmd\":[\"echo hi\"],\"WorkingDir\":\"/srv\","
    "\"User\":\"1000:1000\",\"StopSignal\":\"SIGQUIT\"}}";

static void
test_parse(void **state)
{
    struct oci_image_config *c = NULL;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(oci_config_parse(full, strlen(full), &c, &err), 0);
    assert_string_equal(c->architecture, "amd64");
    assert_string_equal(c->entrypoint[1], "-c");
    assert_string_equal(c->cmd[0], "echo hi");
    assert_string_equal(c->env[1], "A=b");
    assert_string_equal(c->working_dir, "/srv");
    assert_string_equal(c->user, "1000:1000");
    assert_string_equal(c->stop_signal, "SIGQUIT");
    oci_config_free(c);

    static const char *const bad[] = { "",
                                       "[]",
                                       "{\"config\":[]}",
                                       "{\"config\":{\"Cmd\":\"x\"}}",
                                       "{\"config\":{\"Env\":[1]}}",
                                       "{\"os\":5}",
                                       "{\"config\":{\"Cmd\":[\"a\\u0000b\"]}}" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = NULL;
        assert_int_equal(oci_config_parse(bad[i], strlen(bad[i]), &c, &err), -EBADMSG);
        assert_null(c);
        tp_err_clear(&err);
    }
    /* No config at all: a valid, empty one. */
    assert_int_equal(oci_config_parse("{}", 2, &c, &err), 0);
    assert_null(c->cmd);
    oci_config_free(c);
}

static void
test_workload(void **state)
{
    struct oci_image_config *c = NULL;
    struct oci_workload w;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(oci_config_parse(full, strlen(full), &c, &err), 0);
    assert_int_equal(oci_workload_build(c, NULL, &w, &err), 0);
    assert_string_equal(w.argv[0], "/bin/sh");
    assert_string_equal(w.argv[2], "echo hi");
    assert_null(w.argv[3]);
    assert_string_equal(w.env[0], "PATH=/usr/bin"); /* the image's PATH stays */
    assert_string_equal(w.working_dir, "/srv");
    assert_string_equal(w.user, "1000:1000");
    assert_int_equal(w.stop_signal, SIGQUIT);
    oci_workload_done(&w);

    /* CMD after the image replaces Cmd only; -e replaces by key and adds; -w, -u win. */
    char *cmd[] = { (char *)"exit 3", NULL };
    char *env[] = { (char *)"A=c", (char *)"NEW=1", NULL };
    struct oci_run_overrides o = { .cmd = cmd, .env = env, .working_dir = "/tmp", .user = "2" };
    assert_int_equal(oci_workload_build(c, &o, &w, &err), 0);
    assert_string_equal(w.argv[0], "/bin/sh");
    assert_string_equal(w.argv[2], "exit 3");
    assert_string_equal(w.env[1], "A=c");
    assert_string_equal(w.env[2], "NEW=1");
    assert_string_equal(w.working_dir, "/tmp");
    assert_string_equal(w.user, "2");
    oci_workload_done(&w);

    /* --entrypoint drops the image's Cmd. */
    char *ep[] = { (char *)"/bin/true", NULL };
    struct oci_run_overrides o2 = { .entrypoint = ep };
    assert_int_equal(oci_workload_build(c, &o2, &w, &err), 0);
    assert_string_equal(w.argv[0], "/bin/true");
    assert_null(w.argv[1]);
    oci_workload_done(&w);

    /* --entrypoint "" and no CMD: nothing to run. */
    char *none[] = { (char *)"", NULL };
    struct oci_run_overrides o3 = { .entrypoint = none };
    assert_int_equal(oci_workload_build(c, &o3, &w, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "no command specified"));
    tp_err_clear(&err);

    char *badenv[] = { (char *)"=x", NULL };
    struct oci_run_overrides o4 = { .env = badenv };
    assert_int_equal(oci_workload_build(c, &o4, &w, &err), -EINVAL);
    tp_err_clear(&err);
    struct oci_run_overrides o5 = { .working_dir = "rel" };
    assert_int_equal(oci_workload_build(c, &o5, &w, &err), -EINVAL);
    tp_err_clear(&err);
    oci_config_free(c);

    /* No PATH in the image: docker's default, first. */
    const char *nopath = "{\"config\":{\"Cmd\":[\"x\"],\"Env\":[\"B=1\"]}}";
    assert_int_equal(oci_config_parse(nopath, strlen(nopath), &c, &err), 0);
    assert_int_equal(oci_workload_build(c, NULL, &w, &err), 0);
    assert_true(strncmp(w.env[0], "PATH=/usr/local/sbin:", 21) == 0);
    assert_string_equal(w.env[1], "B=1");
    assert_int_equal(w.stop_signal, SIGTERM);
    assert_null(w.working_dir);
    oci_workload_done(&w);
    oci_config_free(c);

    /* No Env at all: PATH alone. */
    const char *noenv = "{\"config\":{\"Cmd\":[\"x\"]}}";
    assert_int_equal(oci_config_parse(noenv, strlen(noenv), &c, &err), 0);
    assert_int_equal(oci_workload_build(c, NULL, &w, &err), 0);
    assert_true(strncmp(w.env[0], "PATH=", 5) == 0);
    assert_null(w.env[1]);
    oci_workload_done(&w);
    oci_config_free(c);
}

static void
test_signals(void **state)
{
    int s = 0;
    (void)state;
    assert_int_equal(oci_signal_parse("SIGTERM", &s), 0);
    assert_int_equal(s, SIGTERM);
    assert_int_equal(oci_signal_parse("KILL", &s), 0);
    assert_int_equal(s, SIGKILL);
    assert_int_equal(oci_signal_parse("3", &s), 0);
    assert_int_equal(s, 3);
    assert_int_equal(oci_signal_parse("SIGRTMIN+3", &s), 0);
    assert_int_equal(s, SIGRTMIN + 3);
    assert_int_equal(oci_signal_parse("SIGNOPE", &s), -EINVAL);
    assert_int_equal(oci_signal_parse("99", &s), -EINVAL);
    assert_int_equal(oci_signal_parse("", &s), -EINVAL);
    assert_int_equal(oci_signal_parse(NULL, &s), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_workload),
        cmocka_unit_test(test_signals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
