/* Unit tests for the CLI: verb parsing, the exec-stream decoder, the client against a fake
 * torpord on a Unix socket. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "cli/attach.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "cli/exec_stream.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/sock.h"
#include "util/xalloc.h"

#define ARGC(a) ((int)ELEMENTSOF(a) - 1)
/* Parsers take char ** like main(). They reorder argv only where an option follows an operand,
 * so such cases use writable arrays; the words themselves are never written. */
#define P(a) ARGC(a), (char **)(a)

/* ---- parsing ------------------------------------------------------------------------------ */

static void
test_run_every_option(void **state)
{
    const char *argv[] = { "run",
                           "--name",
                           "web-1",
                           "--memory",
                           "256",
                           "--vcpus",
                           "2",
                           "--hypervisor",
                           "qemu",
                           "--kernel",
                           "/nonexistent/vmlinuz",
                           "--initrd",
                           "/nonexistent/initrd",
                           "--rootfs",
                           "/nonexistent/root.img",
                           "--accel",
                           "tcg",
                           "--mem-backend",
                           "uffd",
                           "--disk-size",
                           "512",
                           "--no-agent",
                           "--trace",
                           "-d",
                           "--",
                           "true",
                           NULL };
    struct run_opts o = { 0 };
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(cli_parse_run(P(argv), &o, &err), 0);
    assert_string_equal(o.name, "web-1");
    assert_int_equal(o.memory_mib, 256);
    assert_int_equal(o.vcpus, 2);
    assert_string_equal(o.hypervisor, "qemu");
    assert_string_equal(o.kernel, "/nonexistent/vmlinuz");
    assert_string_equal(o.initrd, "/nonexistent/initrd");
    assert_string_equal(o.rootfs, "/nonexistent/root.img");
    assert_string_equal(o.accel, "tcg");
    assert_string_equal(o.mem_backend, "uffd");
    assert_int_equal(o.disk_mib, 512);
    assert_true(o.no_agent);
    assert_true(o.trace);
    assert_false(o.help);
    assert_non_null(o.cmd);
    assert_string_equal(o.cmd[0], "true");
    assert_null(o.cmd[1]);
    cli_run_opts_done(&o);
    assert_null(o.name);

    /* Nothing given: everything left to the daemon. */
    const char *bare[] = { "run", NULL };
    assert_int_equal(cli_parse_run(P(bare), &o, &err), 0);
    assert_null(o.name);
    assert_int_equal(o.memory_mib, 0);
    assert_null(o.cmd);
    assert_null(o.kernel);
    cli_run_opts_done(&o);
}

static void
test_run_keeps_command(void **state)
{
    const char *argv[] = { "run", "--name", "a", "--", "sh", "-c", "x y", NULL };
    struct run_opts o = { 0 };
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(cli_parse_run(P(argv), &o, &err), 0);
    assert_string_equal(o.name, "a");
    assert_string_equal(o.cmd[0], "sh");
    assert_string_equal(o.cmd[1], "-c");
    assert_string_equal(o.cmd[2], "x y");
    assert_null(o.cmd[3]);
    cli_run_opts_done(&o);

    /* Without "--", the first word is the IMAGE (docker run IMAGE CMD) and ends the options:
     * '-c' is the command's. */
    const char *argv2[] = { "run", "sh", "-c", "true", NULL };
    assert_int_equal(cli_parse_run(P(argv2), &o, &err), 0);
    assert_string_equal(o.image, "sh");
    assert_string_equal(o.cmd[0], "-c");
    assert_string_equal(o.cmd[1], "true");
    assert_null(o.cmd[2]);
    cli_run_opts_done(&o);

    /* The image's overrides, and "default" still the built-in guest. */
    const char *argv3[] = {
        "run",  "-e", "A=1", "-e", "B=2",       "--entrypoint", "/bin/x", "-w",
        "/srv", "-u", "app", "-d", "busybox:1", "--",           "arg",    NULL
    };
    assert_int_equal(cli_parse_run(P(argv3), &o, &err), 0);
    assert_string_equal(o.image, "busybox:1");
    assert_string_equal(o.env[0], "A=1");
    assert_string_equal(o.env[1], "B=2");
    assert_null(o.env[2]);
    assert_string_equal(o.entrypoint, "/bin/x");
    assert_string_equal(o.workdir, "/srv");
    assert_string_equal(o.user, "app");
    assert_string_equal(o.cmd[0], "arg");
    cli_run_opts_done(&o);
    /* -e K: K from our environment, dropped when we have none (docker). */
    setenv("TORPOR_TEST_E", "from-env", 1);
    unsetenv("TORPOR_TEST_UNSET");
    const char *argv5[] = { "run", "-e", "TORPOR_TEST_E", "-e", "TORPOR_TEST_UNSET", "img", NULL };
    assert_int_equal(cli_parse_run(P(argv5), &o, &err), 0);
    assert_string_equal(o.env[0], "TORPOR_TEST_E=from-env");
    assert_null(o.env[1]);
    cli_run_opts_done(&o);
    const char *argv4[] = { "run", "default", "--", "sh", NULL };
    assert_int_equal(cli_parse_run(P(argv4), &o, &err), 0);
    assert_null(o.image);
    assert_string_equal(o.cmd[0], "sh");
    cli_run_opts_done(&o);
    const char *bad1[] = { "run", "-e", "A=1", "--", "sh", NULL }; /* -e without an image */
    assert_int_equal(cli_parse_run(P(bad1), &o, &err), -EINVAL);
    tp_err_clear(&err);
    const char *bad2[] = { "run", "--rootfs", "/r", "img", NULL };
    assert_int_equal(cli_parse_run(P(bad2), &o, &err), -EINVAL);
    tp_err_clear(&err);
    const char *bad3[] = { "run", "-w", "rel", "img", NULL };
    assert_int_equal(cli_parse_run(P(bad3), &o, &err), -EINVAL);
    tp_err_clear(&err);
}

static void
test_run_bad_values(void **state)
{
    static const char *const bad[][3] = {
        { "--memory", "abc",
          "option '--memory' expects a size such as 512M or 2G (a plain number is "
          "MiB), not 'abc'" },
        { "--memory", "32", "option '--memory' expects a size from 64M to 64G, not '32'" },
        { "--memory", "65537", "from 64M to 64G" },
        { "--memory", "100K", "option '--memory' expects whole MiB, not '100K'" },
        { "--memory", "2X", "'--memory' expects a size such as 512M" },
        { "--memory", "2GG", "'--memory' expects a size such as 512M" },
        { "--memory", "99999999999999999999G", "from 64M to 64G" },
        { "--vcpus", "65", "option '--vcpus' expects an integer from 1 to 64, not '65'" },
        { "--disk-size", "2T", "option '--disk-size' expects a size from 1M to 1T, not '2T'" },
        /* torpord's name rule, in the user's terms rather than its field's. */
        { "--name", "Web", "option '--name' expects lowercase letters, digits and '-'" },
        { "--name", "-web", "'--name' expects" },
        { "--memory", "0", "'--memory'" },
        { "--memory", "-5", "'--memory'" },
        { "--memory", " 5", "'--memory'" },
        { "--vcpus", "1x", "'--vcpus'" },
        { "--disk-size", "99999999999", "'--disk-size'" },
        { "--accel", "hvf", "'kvm' or 'tcg'" },
        { "--mem-backend", "lazy", "option '--mem-backend' expects 'file' or 'uffd'" },
        /* Names the option, not its (empty) value. */
        { "--initrd", "", "option '--initrd' needs a non-empty path" },
    };
    (void)state;

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        const char *argv[] = { "run", bad[i][0], bad[i][1], NULL };
        struct run_opts o = { .memory_mib = 7 };
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };

        assert_int_equal(cli_parse_run(P(argv), &o, &err), -EINVAL);
        assert_non_null(strstr(tp_err_msg(&err), bad[i][2]));
        assert_int_equal(o.memory_mib, 7); /* ret untouched on failure */
    }

    const char *unknown[] = { "run", "--memry", "5", NULL };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct run_opts o = { 0 };
    assert_int_equal(cli_parse_run(P(unknown), &o, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "unknown flag: --memry");

    const char *novalue[] = { "run", "--kernel", NULL };
    assert_int_equal(cli_parse_run(P(novalue), &o, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "flag needs an argument: --kernel");

    const char *noshort[] = { "run", "-m", NULL };
    assert_int_equal(cli_parse_run(P(noshort), &o, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "flag needs an argument: 'm' in -m");
}

/* -p repeats, in order; --network-mode; both need a network. */
static void
test_run_publish(void **state)
{
    _cleanup_(cli_run_opts_done) struct run_opts o = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    const char *argv[] = { "run",        "-d",
                           "-p",         "8080:80",
                           "--publish",  "0.0.0.0:5353:53/udp",
                           "-p8443:443", "--network-mode",
                           "shared",     NULL };
    (void)state;

    assert_int_equal(cli_parse_run(P(argv), &o, &err), 0);
    assert_int_equal(o.n_ports, 3);
    assert_int_equal(o.ports[0].host_ip, 0x7f000001);
    assert_int_equal(o.ports[0].host_port, 8080);
    assert_int_equal(o.ports[0].guest_port, 80);
    assert_int_equal(o.ports[1].host_ip, 0);
    assert_int_equal(o.ports[1].proto, NET_PROTO_UDP);
    assert_int_equal(o.ports[2].host_port, 8443);
    assert_string_equal(o.network_mode, "shared");

    static const char *const bad[][5] = {
        { "-p", "80", NULL, NULL, "option '--publish': port '80' is not [HOSTIP:]HOSTPORT" },
        { "-p", "8080:80/sctp", NULL, NULL, "option '--publish': port '8080:80/sctp': protocol" },
        { "-p", "80:80", "-p", "0.0.0.0:80:81",
          "option '--publish': ports[1]: '0.0.0.0:80/tcp' "
          "is published twice" },
        { "-p", "80:80", "--network", "none", "options '--publish' need a network" },
        { "--network-mode", "shared", "--network", "none", "'--network-mode' need a network" },
        { "--network-mode", "open", NULL, NULL,
          "option '--network-mode' expects 'isolated' or 'shared', not 'open'" },
    };
    for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
        const char *a[] = { "run", bad[k][0], bad[k][1], bad[k][2], bad[k][3], NULL };
        struct run_opts b = { .memory_mib = 7 };
        _cleanup_(tp_err_clear) struct tp_err e = { 0 };
        int argc = bad[k][2] ? 5 : 3;
        assert_int_equal(cli_parse_run(argc, (char **)a, &b, &e), -EINVAL);
        if (!strstr(tp_err_msg(&e), bad[k][4]))
            fail_msg("case %zu: got '%s'", k, tp_err_msg(&e));
        assert_int_equal(b.memory_mib, 7);
    }
}

/* torpor port: docker's lines, or the host side of one guest port. */
static void
test_port_format(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *ports = json_loads("[{\"host_ip\": \"127.0.0.1\", \"host_port\": 8080, \"guest_port\": "
                               "80, \"proto\": \"tcp\"}, {\"host_ip\": \"0.0.0.0\", \"host_port\": "
                               "5353, \"guest_port\": 53, \"proto\": \"udp\"}]",
                               0, NULL);
    char *text = NULL;
    (void)state;

    assert_non_null(ports);
    assert_int_equal(cli_format_ports(ports, NULL, &text, &err), 0);
    assert_string_equal(text, "80/tcp -> 127.0.0.1:8080\n53/udp -> 0.0.0.0:5353\n");
    text = mfree(text);
    assert_int_equal(cli_format_ports(ports, "80", &text, &err), 0);
    assert_string_equal(text, "127.0.0.1:8080\n");
    text = mfree(text);
    assert_int_equal(cli_format_ports(ports, "53/udp", &text, &err), 0);
    assert_string_equal(text, "0.0.0.0:5353\n");
    text = mfree(text);
    assert_int_equal(cli_format_ports(ports, "53", &text, &err), -ENOENT);
    assert_string_equal(tp_err_msg(&err), "no public port '53/tcp' published");
    tp_err_clear(&err);
    assert_int_equal(cli_format_ports(ports, "80/icmp", &text, &err), -EINVAL);
    tp_err_clear(&err);
    assert_int_equal(cli_format_ports(ports, "x80", &text, &err), -EINVAL);
    tp_err_clear(&err);
    json_decref(ports);
    json_t *none = json_array();
    assert_int_equal(cli_format_ports(none, NULL, &text, &err), 0);
    assert_string_equal(text, "");
    text = mfree(text);
    json_decref(none);
}

static void
test_run_relative_paths_become_absolute(void **state)
{
    char tmpl[] = "/tmp/torpor-cli-XXXXXX";
    _cleanup_free_ char *oldcwd = getcwd(NULL, 0);
    _cleanup_free_ char *real = NULL, *want_kernel = NULL, *want_initrd = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct run_opts o = { 0 };
    (void)state;

    assert_non_null(oldcwd);
    assert_non_null(mkdtemp(tmpl));
    real = realpath(tmpl, NULL);
    assert_non_null(real);
    assert_int_equal(chdir(tmpl), 0);
    assert_int_equal(fs_write_atomic("vmlinuz", "k", 1, 0644, &err), 0);
    assert_int_equal(mkdir("root", 0755), 0);

    const char *argv[] = { "run",      "--kernel", "vmlinuz", "--initrd", "./sub/missing.img",
                           "--rootfs", "root/",    NULL };
    assert_int_equal(cli_parse_run(P(argv), &o, &err), 0);
    want_kernel = xasprintf("%s/vmlinuz", real);
    assert_string_equal(o.kernel, want_kernel);
    /* A missing file is the daemon's to report, on the absolute path. */
    want_initrd = xasprintf("%s/./sub/missing.img", real);
    assert_string_equal(o.initrd, want_initrd);
    assert_int_equal(o.rootfs[0], '/');
    assert_non_null(strstr(o.rootfs, "/root"));
    cli_run_opts_done(&o);

    assert_int_equal(chdir(oldcwd), 0);
    assert_int_equal(fs_rm_rf(tmpl, &err), 0);
}

static void
test_exec_keeps_guest_options(void **state)
{
    const char *a1[] = { "exec", "vm", "ls", "-la", NULL };
    const char *a2[] = { "exec", "vm", "--", "ls", "-la", NULL };
    const char **cases[] = { a1, a2 };
    int argcs[] = { ARGC(a1), ARGC(a2) };
    (void)state;

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct exec_opts o = { 0 };
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };

        assert_int_equal(cli_parse_exec(argcs[i], (char **)cases[i], &o, &err), 0);
        assert_string_equal(o.name, "vm");
        assert_string_equal(o.cmd[0], "ls");
        assert_string_equal(o.cmd[1], "-la");
        assert_null(o.cmd[2]);
        assert_null(o.env);
        assert_null(o.workdir);
        cli_exec_opts_done(&o);
    }
}

static void
test_exec_env_workdir(void **state)
{
    const char *argv[] = { "exec", "-e", "A=1", "vm", "--env",   "B=x=y", "--workdir",
                           "/srv", "--", "sh",  "-c", "echo $A", NULL };
    struct exec_opts o = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(cli_parse_exec(P(argv), &o, &err), 0);
    assert_string_equal(o.name, "vm");
    assert_string_equal(o.env[0], "A=1");
    assert_string_equal(o.env[1], "B=x=y");
    assert_null(o.env[2]);
    assert_string_equal(o.workdir, "/srv");
    assert_string_equal(o.cmd[0], "sh");
    assert_string_equal(o.cmd[1], "-c");
    assert_string_equal(o.cmd[2], "echo $A");
    assert_null(o.cmd[3]);
    cli_exec_opts_done(&o);

    /* docker's -e K: K's value from our environment, nothing when we have none. */
    setenv("TORPOR_TEST_FROM_ENV", "v=1", 1);
    unsetenv("TORPOR_TEST_UNSET");
    const char *fromenv[] = {
        "exec", "vm", "--env", "TORPOR_TEST_FROM_ENV", "-e", "TORPOR_TEST_UNSET", "ls", NULL
    };
    assert_int_equal(cli_parse_exec(P(fromenv), &o, &err), 0);
    assert_string_equal(o.env[0], "TORPOR_TEST_FROM_ENV=v=1");
    assert_null(o.env[1]);
    cli_exec_opts_done(&o);
    unsetenv("TORPOR_TEST_FROM_ENV");
    const char *bad[] = { "exec", "vm", "-d", "-it", "ls", NULL };
    assert_int_equal(cli_parse_exec(P(bad), &o, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "--detach"));
    const char *bad2[] = { "exec", "vm", "-e", "=v", "ls", NULL };
    assert_int_equal(cli_parse_exec(P(bad2), &o, &err), -EINVAL);
}

/* A string jansson refuses would silently drop out of the JSON request: "rm \xff -rf /x" ran as
 * "rm -rf /x". Such values are usage errors; UTF-8 beyond ASCII is fine. */
static void
test_non_utf8_values(void **state)
{
    const char *e1[] = { "exec", "vm", "rm", "\xff", "-rf", "/x", NULL };
    const char *e2[] = { "exec", "-e", "A=\xc3(", "vm", "ls", NULL };
    const char *e3[] = { "exec", "vm", "-w", "/\xfe", "ls", NULL };
    const char *r1[] = { "run", "--name", "\x80", NULL };
    const char *r2[] = { "run", "--", "echo", "ok", "\xe2\x82", NULL };
    const char *r3[] = { "run", "--kernel", "/boot/\xff", NULL };
    const char *f1[] = { "fork", "--prefix", "p\xff", "web", NULL };
    const char *f2[] = { "fork", "--name", "\xc0\xaf", "web", NULL };
    const char *good[] = { "exec", "vm", "echo", "caf\xc3\xa9", NULL };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct exec_opts eo = { 0 };
    struct run_opts ro = { 0 };
    struct fork_opts fo = { 0 };
    (void)state;

    assert_int_equal(cli_parse_exec(P(e1), &eo, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "argument 2 of CMD is not valid UTF-8");
    assert_null(eo.cmd); /* ret untouched on failure */
    assert_int_equal(cli_parse_exec(P(e2), &eo, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "the value of '--env' is not valid UTF-8");
    assert_int_equal(cli_parse_exec(P(e3), &eo, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "the value of '--workdir' is not valid UTF-8");

    assert_int_equal(cli_parse_run(P(r1), &ro, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "the value of '--name' is not valid UTF-8");
    assert_int_equal(cli_parse_run(P(r2), &ro, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "argument 3 of CMD is not valid UTF-8");
    assert_int_equal(cli_parse_run(P(r3), &ro, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "option '--kernel'"));
    assert_non_null(strstr(tp_err_msg(&err), "is not valid UTF-8"));
    assert_null(ro.name);

    assert_int_equal(cli_parse_fork(P(f1), &fo, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "the value of '--prefix' is not valid UTF-8");
    assert_int_equal(cli_parse_fork(P(f2), &fo, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "the value of '--name' is not valid UTF-8");
    assert_null(fo.source);

    assert_int_equal(cli_parse_exec(P(good), &eo, &err), 0);
    assert_string_equal(eo.cmd[1], "caf\xc3\xa9");
    cli_exec_opts_done(&eo);
}

static void
test_missing_names(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct exec_opts eo = { 0 };
    struct logs_opts lo = { 0 };
    struct inspect_opts io = { 0 };
    (void)state;

    const char *exec0[] = { "exec", NULL };
    assert_int_equal(cli_parse_exec(P(exec0), &eo, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "NAME"));
    const char *exec1[] = { "exec", "vm", NULL };
    assert_int_equal(cli_parse_exec(P(exec1), &eo, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "CMD"));
    const char *exec2[] = { "exec", "vm", "--", NULL };
    assert_int_equal(cli_parse_exec(P(exec2), &eo, &err), -EINVAL);
    assert_null(eo.name);

    const char *logs[] = { "logs", "-f", NULL };
    assert_int_equal(cli_parse_logs(P(logs), &lo, &err), -EINVAL);
    const char *logs2[] = { "logs", "a", "b", NULL };
    assert_int_equal(cli_parse_logs(P(logs2), &lo, &err), -EINVAL);
    const char *inspect[] = { "inspect", NULL };
    assert_int_equal(cli_parse_inspect(P(inspect), &io, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "'inspect' needs at least one NAME");

    /* The lifecycle verbs, options or not: argc, then the words. */
    static const struct {
        int argc;
        const char *argv[3];
    } lifecycle[] = {
        { 1, { "stop" } },     { 1, { "start" } },
        { 2, { "rm", "-f" } }, { 2, { "standby", "--trace" } },
        { 1, { "restore" } },
    };
    for (size_t i = 0; i < ELEMENTSOF(lifecycle); i++) {
        _cleanup_free_ char *want = xasprintf("'%s' needs at least one NAME", lifecycle[i].argv[0]);
        struct lifecycle_opts o = { .n_names = 9 };

        assert_int_equal(
            cli_parse_lifecycle(lifecycle[i].argc, (char **)lifecycle[i].argv, &o, &err), -EINVAL);
        assert_string_equal(tp_err_msg(&err), want);
        assert_int_equal(o.n_names, 9); /* ret untouched on failure */
    }

    /* --help alone is fine: nothing else is checked. */
    const char *help[] = { "exec", "--help", NULL };
    assert_int_equal(cli_parse_exec(P(help), &eo, &err), 0);
    assert_true(eo.help);
    cli_exec_opts_done(&eo);
}

static void
test_ps_flags(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct ps_opts o;
    (void)state;

    const char *a1[] = { "ps", NULL };
    assert_int_equal(cli_parse_ps(P(a1), &o, &err), 0);
    assert_false(o.all || o.json || o.quiet);
    const char *a2[] = { "ps", "-a", "--json", NULL };
    assert_int_equal(cli_parse_ps(P(a2), &o, &err), 0);
    assert_true(o.all && o.json);
    assert_false(o.quiet);
    const char *a3[] = { "ps", "-aq", NULL };
    assert_int_equal(cli_parse_ps(P(a3), &o, &err), 0);
    assert_true(o.all && o.quiet);
    const char *a4[] = { "ps", "--all", "--quiet", NULL };
    assert_int_equal(cli_parse_ps(P(a4), &o, &err), 0);
    assert_true(o.all && o.quiet);
    assert_false(o.json);

    const char *b1[] = { "ps", "extra", NULL };
    assert_int_equal(cli_parse_ps(P(b1), &o, &err), -EINVAL);
    const char *b2[] = { "ps", "--json", "-q", NULL };
    assert_int_equal(cli_parse_ps(P(b2), &o, &err), -EINVAL);
    const char *b3[] = { "ps", "-z", NULL };
    assert_int_equal(cli_parse_ps(P(b3), &o, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "unknown shorthand flag: 'z' in -z");
    tp_err_clear(&err);

    /* --format json is --json; table is the default; a template is kept; a broken one and
     * --format with -q are refused before anything is asked. */
    const char *f1[] = { "ps", "--format", "json", NULL };
    assert_int_equal(cli_parse_ps(P(f1), &o, &err), 0);
    assert_true(o.json);
    assert_null(o.format);
    const char *f2[] = { "ps", "--format", "table", "--no-trunc", NULL };
    assert_int_equal(cli_parse_ps(P(f2), &o, &err), 0);
    assert_false(o.json);
    assert_null(o.format);
    assert_true(o.no_trunc);
    const char *f3[] = { "ps", "--format", "{{.Name}}", NULL };
    assert_int_equal(cli_parse_ps(P(f3), &o, &err), 0);
    assert_string_equal(o.format, "{{.Name}}");
    const char *f4[] = { "ps", "--format", "{{.Name", NULL };
    assert_int_equal(cli_parse_ps(P(f4), &o, &err), -EINVAL);
    tp_err_clear(&err);
    const char *f5[] = { "ps", "-q", "--format", "{{.Name}}", NULL };
    assert_int_equal(cli_parse_ps(P(f5), &o, &err), -EINVAL);
    tp_err_clear(&err);
    const char *g1[] = { "ps", "--filter", "name=web", "-f", "state=Running", NULL };
    assert_int_equal(cli_parse_ps(P(g1), &o, &err), 0);
    assert_int_equal(o.n_filters, 2);
    assert_string_equal(o.filters[1], "state=Running");
    const char *g2[] = { "ps", "--filter", "label=x", NULL };
    assert_int_equal(cli_parse_ps(P(g2), &o, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "label=x"));
}

static void
test_rm_stop_start_names(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct lifecycle_opts ro;
    struct lifecycle_opts so;
    struct lifecycle_opts sto;
    (void)state;

    const char *rm[] = { "rm", "-f", "a", "b", "3f2a", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm), &ro, &err), 0);
    assert_true(ro.force);
    assert_int_equal(ro.n_names, 3);
    assert_string_equal(ro.names[0], "a");
    assert_string_equal(ro.names[2], "3f2a");
    const char *rm2[] = { "rm", "--force", "x", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm2), &ro, &err), 0);
    assert_true(ro.force);
    assert_int_equal(ro.n_names, 1);
    const char *rm3[] = { "rm", "x", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm3), &ro, &err), 0);
    assert_false(ro.force);

    const char *stop[] = { "stop", "web-1", "web-2", NULL };
    assert_int_equal(cli_parse_lifecycle(P(stop), &so, &err), 0);
    assert_int_equal(so.n_names, 2);
    assert_string_equal(so.names[0], "web-1");
    assert_string_equal(so.names[1], "web-2");
    const char *start[] = { "start", "a", "b", "c", NULL };
    assert_int_equal(cli_parse_lifecycle(P(start), &sto, &err), 0);
    assert_int_equal(sto.n_names, 3);
    assert_string_equal(sto.names[2], "c");
}

static void
test_standby_restore_names(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct lifecycle_opts so;
    struct lifecycle_opts ro;
    (void)state;

    const char *s1[] = { "standby", "web-1", "3f2a", NULL };
    assert_int_equal(cli_parse_lifecycle(P(s1), &so, &err), 0);
    assert_int_equal(so.n_names, 2);
    assert_string_equal(so.names[0], "web-1");
    assert_string_equal(so.names[1], "3f2a");
    assert_false(so.trace);
    assert_false(so.help);
    const char *s2[] = { "standby", "--trace", "a", NULL };
    assert_int_equal(cli_parse_lifecycle(P(s2), &so, &err), 0);
    assert_true(so.trace);
    assert_int_equal(so.n_names, 1);
    assert_string_equal(so.names[0], "a");
    /* Options go anywhere among the NAMEs, as in docker. */
    const char *s3[] = { "standby", "a", "--trace", "b", NULL };
    assert_int_equal(cli_parse_lifecycle(P(s3), &so, &err), 0);
    assert_true(so.trace);
    assert_int_equal(so.n_names, 2);
    assert_string_equal(so.names[0], "a");
    assert_string_equal(so.names[1], "b");
    const char *s4[] = { "standby", "-t", "a", NULL }; /* no short form */
    assert_int_equal(cli_parse_lifecycle(P(s4), &so, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "unknown shorthand flag: 't' in -t");
    const char *s5[] = { "standby", "--help", NULL };
    assert_int_equal(cli_parse_lifecycle(P(s5), &so, &err), 0);
    assert_true(so.help);

    const char *r1[] = { "restore", "--tr", "a", "b", "c", NULL }; /* unambiguous prefix */
    assert_int_equal(cli_parse_lifecycle(P(r1), &ro, &err), 0);
    assert_true(ro.trace);
    assert_int_equal(ro.n_names, 3);
    assert_string_equal(ro.names[2], "c");
    const char *r2[] = { "restore", "--force", "a", NULL };
    assert_int_equal(cli_parse_lifecycle(P(r2), &ro, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "unknown flag: --force");
    const char *r3[] = { "restore", "--trace=yes", "a", NULL };
    assert_int_equal(cli_parse_lifecycle(P(r3), &ro, &err), -EINVAL);
}

/* The shared parser on a made-up verb: flag bits, operand counts, the generated usage. */
static void
test_parse_args_syntax(void **state)
{
    static const struct cli_syntax syn = {
        .verb = "frob",
        .usage = "Usage: torpor frob [OPTIONS] NAME\n\nFrob NAME.\n",
        .operands = CLI_OPERANDS_ONE,
        .flags = { { "all", 'a', "every one", NULL },
                   { "json", 0, "as JSON", NULL },
                   { "extraordinary", 'x', "long name", NULL } },
    };
    static const struct cli_syntax none = { .verb = "nil", .usage = "Usage: torpor nil\n" };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { .n_operands = 42 };
    char *text = NULL;
    size_t text_len = 0;
    FILE *f;
    (void)state;

    const char *a1[] = { "frob", "-ax", "--json", "vm", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a1), &a, &err), 0);
    assert_int_equal(a.flags, 7u);
    assert_int_equal(a.n_operands, 1);
    assert_string_equal(a.operands[0], "vm");
    assert_false(a.help);
    const char *a2[] = { "frob", "--js", "vm", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a2), &a, &err), 0);
    assert_int_equal(a.flags, 2u);
    const char *a3[] = { "frob", "a", "b", NULL };
    a.n_operands = 42;
    assert_int_equal(cli_parse_args(&syn, P(a3), &a, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "'frob' takes one NAME, got also 'b'");
    assert_int_equal(a.n_operands, 42); /* ret untouched on failure */
    const char *a4[] = { "frob", "-a", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a4), &a, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "'frob' needs an instance NAME");
    const char *a5[] = { "frob", "-h", "a", "b", NULL }; /* help checks nothing else */
    assert_int_equal(cli_parse_args(&syn, P(a5), &a, &err), 0);
    assert_true(a.help);
    const char *a6[] = { "nil", "x", NULL };
    assert_int_equal(cli_parse_args(&none, P(a6), &a, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "'nil' takes no arguments, got 'x'");
    const char *a7[] = { "nil", "--json", NULL };
    assert_int_equal(cli_parse_args(&none, P(a7), &a, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "unknown flag: --json");

    f = open_memstream(&text, &text_len);
    assert_non_null(f);
    cli_usage_print(&syn, f);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(text, "Usage: torpor frob [OPTIONS] NAME\n"
                              "\n"
                              "Frob NAME.\n"
                              "\n"
                              "Options:\n"
                              "  -a, --all            every one\n"
                              "      --json           as JSON\n"
                              "  -x, --extraordinary  long name\n"
                              "  -h, --help           print this help\n");
    free(text);
}

/* Options with a value: long and short forms, "=" and separate words, the last one wins,
 * a missing value, and their "--name ARG" in the usage. */
static void
test_parse_args_values(void **state)
{
    static const struct cli_syntax syn = {
        .verb = "frob",
        .usage = "Usage: torpor frob [OPTIONS] NAME\n",
        .operands = CLI_OPERANDS_ONE,
        .flags = { { "level", 'l', "how much", "N" },
                   { "quiet", 'q', "say nothing", NULL },
                   { "tag", 0, "a label", "TEXT" } },
    };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a;
    char *text = NULL;
    size_t text_len = 0;
    FILE *f;
    (void)state;

    const char *a1[] = { "frob", "-l", "3", "-q", "--tag=x y", "vm", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a1), &a, &err), 0);
    assert_int_equal(a.flags, 7u);
    assert_string_equal(a.values[0], "3");
    assert_null(a.values[1]); /* a flag has no value */
    assert_string_equal(a.values[2], "x y");
    assert_int_equal(a.n_operands, 1);
    assert_string_equal(a.operands[0], "vm");

    const char *a2[] = { "frob", "-ql7", "--level", "9", "--tag", "", "vm", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a2), &a, &err), 0);
    assert_string_equal(a.values[0], "9"); /* the last one given */
    assert_string_equal(a.values[2], "");  /* the verb judges values */
    assert_int_equal(a.flags, 7u);

    const char *a3[] = { "frob", "vm", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a3), &a, &err), 0);
    assert_int_equal(a.flags, 0u);
    assert_null(a.values[0]);
    assert_null(a.values[2]);

    const char *a4[] = { "frob", "vm", "--level", NULL }; /* options may follow the NAME */
    assert_int_equal(cli_parse_args(&syn, P(a4), &a, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "flag needs an argument: --level");
    const char *a5[] = { "frob", "--level", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a5), &a, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "flag needs an argument: --level");
    const char *a6[] = { "frob", "-l", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a6), &a, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "flag needs an argument: 'l' in -l");
    const char *a7[] = { "frob", "--quiet=1", "vm", NULL };
    assert_int_equal(cli_parse_args(&syn, P(a7), &a, &err), -EINVAL);

    f = open_memstream(&text, &text_len);
    assert_non_null(f);
    cli_usage_print(&syn, f);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(text, "Usage: torpor frob [OPTIONS] NAME\n"
                              "\n"
                              "Options:\n"
                              "  -l, --level N   how much\n"
                              "  -q, --quiet     say nothing\n"
                              "      --tag TEXT  a label\n"
                              "  -h, --help      print this help\n");
    free(text);
}

static void
test_fork_options(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct fork_opts o;
    (void)state;

    const char *f1[] = { "fork", "web", NULL };
    assert_int_equal(cli_parse_fork(P(f1), &o, &err), 0);
    assert_string_equal(o.source, "web");
    assert_int_equal(o.count, 0); /* the daemon's default */
    assert_null(o.child_name);
    assert_null(o.prefix);
    assert_false(o.standby);
    assert_false(o.no_wait);
    assert_false(o.trace);
    assert_false(o.help);

    const char *f2[] = { "fork",      "--count",   "64",      "--prefix", "w",
                         "--standby", "--no-wait", "--trace", "3f2a",     NULL };
    assert_int_equal(cli_parse_fork(P(f2), &o, &err), 0);
    assert_string_equal(o.source, "3f2a");
    assert_int_equal(o.count, 64);
    assert_string_equal(o.prefix, "w");
    assert_null(o.child_name);
    assert_true(o.standby);
    assert_true(o.no_wait);
    assert_true(o.trace);

    const char *f3[] = { "fork", "--name=copy", "--count=1", "web", NULL };
    assert_int_equal(cli_parse_fork(P(f3), &o, &err), 0);
    assert_string_equal(o.child_name, "copy");
    assert_int_equal(o.count, 1);
    assert_null(o.prefix);

    const char *f4[] = { "fork", "--help", "--name", "a", "--prefix", "b", NULL };
    assert_int_equal(cli_parse_fork(P(f4), &o, &err), 0); /* help checks nothing else */
    assert_true(o.help);
}

/* Options after and between operands, as docker takes them; "--" ends the options. */
static void
test_options_anywhere(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct lifecycle_opts lo;
    struct fork_opts fo;
    struct logs_opts go;
    struct exec_opts eo = { 0 };
    struct run_opts ro = { 0 };
    struct ps_opts po;
    (void)state;

    const char *rm[] = { "rm", "web", "-f", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm), &lo, &err), 0);
    assert_true(lo.force);
    assert_int_equal(lo.n_names, 1);
    assert_string_equal(lo.names[0], "web");
    const char *rm2[] = { "rm", "a", "--force", "b", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm2), &lo, &err), 0);
    assert_true(lo.force);
    assert_int_equal(lo.n_names, 2);
    assert_string_equal(lo.names[0], "a");
    assert_string_equal(lo.names[1], "b");
    /* After "--", "-f" is a NAME. */
    const char *rm3[] = { "rm", "a", "--", "-f", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm3), &lo, &err), 0);
    assert_false(lo.force);
    assert_int_equal(lo.n_names, 2);
    assert_string_equal(lo.names[1], "-f");

    const char *fork[] = { "fork", "web", "--count", "3", NULL };
    assert_int_equal(cli_parse_fork(P(fork), &fo, &err), 0);
    assert_string_equal(fo.source, "web");
    assert_int_equal(fo.count, 3);
    const char *fork2[] = { "fork", "web", "--standby", "--prefix=w", NULL };
    assert_int_equal(cli_parse_fork(P(fork2), &fo, &err), 0);
    assert_string_equal(fo.source, "web");
    assert_true(fo.standby);
    assert_string_equal(fo.prefix, "w");

    const char *logs[] = { "logs", "web", "--follow", NULL };
    assert_int_equal(cli_parse_logs(P(logs), &go, &err), 0);
    assert_string_equal(go.name, "web");
    assert_true(go.follow);
    const char *logs2[] = { "logs", "web", "-f", NULL };
    assert_int_equal(cli_parse_logs(P(logs2), &go, &err), 0);
    assert_true(go.follow);

    const char *ps[] = { "ps", "--", "-a", NULL };
    assert_int_equal(cli_parse_ps(P(ps), &po, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "'ps' takes no arguments, got '-a'");

    /* exec: options end at CMD, whose own options stay its own. */
    const char *e1[] = { "exec", "-e", "K=V", "web", "ls", "-l", "-a", NULL };
    assert_int_equal(cli_parse_exec(P(e1), &eo, &err), 0);
    assert_string_equal(eo.name, "web");
    assert_string_equal(eo.env[0], "K=V");
    assert_null(eo.env[1]);
    assert_string_equal(eo.cmd[0], "ls");
    assert_string_equal(eo.cmd[1], "-l");
    assert_string_equal(eo.cmd[2], "-a");
    assert_null(eo.cmd[3]);
    cli_exec_opts_done(&eo);
    const char *e2[] = { "exec", "web", "-w", "/tmp", "-eA=1", "env", "-e", "B=2", "--help", NULL };
    assert_int_equal(cli_parse_exec(P(e2), &eo, &err), 0);
    assert_false(eo.help); /* the command's --help */
    assert_string_equal(eo.name, "web");
    assert_string_equal(eo.workdir, "/tmp");
    assert_string_equal(eo.env[0], "A=1");
    assert_null(eo.env[1]);
    assert_string_equal(eo.cmd[0], "env");
    assert_string_equal(eo.cmd[1], "-e");
    assert_string_equal(eo.cmd[2], "B=2");
    assert_string_equal(eo.cmd[3], "--help");
    cli_exec_opts_done(&eo);
    const char *e3[] = { "exec", "web", "--", "ls", "-l", NULL };
    assert_int_equal(cli_parse_exec(P(e3), &eo, &err), 0);
    assert_string_equal(eo.name, "web");
    assert_string_equal(eo.cmd[0], "ls");
    assert_string_equal(eo.cmd[1], "-l");
    assert_null(eo.cmd[2]);
    cli_exec_opts_done(&eo);
    const char *e4[] = { "exec", "web", "--", "--help", NULL }; /* after "--", a command */
    assert_int_equal(cli_parse_exec(P(e4), &eo, &err), 0);
    assert_false(eo.help);
    assert_string_equal(eo.cmd[0], "--help");
    cli_exec_opts_done(&eo);

    /* run: options end at the IMAGE too. */
    const char *r1[] = { "run", "--name", "a", "sh", "--name", "b", NULL };
    assert_int_equal(cli_parse_run(P(r1), &ro, &err), 0);
    assert_string_equal(ro.name, "a");
    assert_string_equal(ro.image, "sh");
    assert_string_equal(ro.cmd[0], "--name");
    assert_string_equal(ro.cmd[1], "b");
    assert_null(ro.cmd[2]);
    cli_run_opts_done(&ro);
    const char *r2[] = { "run", "--", "sh", "-c", "x", NULL };
    assert_int_equal(cli_parse_run(P(r2), &ro, &err), 0);
    assert_string_equal(ro.cmd[0], "sh");
    assert_string_equal(ro.cmd[1], "-c");
    cli_run_opts_done(&ro);
}

/* --help or -h anywhere before "--" is help, whatever else the line holds. */
static void
test_help_anywhere(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct lifecycle_opts lo;
    struct fork_opts fo;
    struct exec_opts eo = { 0 };
    struct run_opts ro = { 0 };
    (void)state;

    const char *rm[] = { "rm", "web", "--help", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm), &lo, &err), 0);
    assert_true(lo.help);
    const char *rm2[] = { "rm", "web", "-fh", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm2), &lo, &err), 0);
    assert_true(lo.help);
    /* A mistake before the --help does not hide it: nothing is done either way. */
    const char *rm3[] = { "rm", "--bogus", "web", "--help", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm3), &lo, &err), 0);
    assert_true(lo.help);
    const char *rm4[] = { "rm", "--", "--help", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm4), &lo, &err), 0);
    assert_false(lo.help);
    assert_string_equal(lo.names[0], "--help");

    const char *fork[] = { "fork", "web", "--count", "99", "--help", NULL };
    assert_int_equal(cli_parse_fork(P(fork), &fo, &err), 0);
    assert_true(fo.help);
    const char *exec[] = { "exec", "web", "--help", "ls", NULL };
    assert_int_equal(cli_parse_exec(P(exec), &eo, &err), 0);
    assert_true(eo.help);
    cli_exec_opts_done(&eo);
    const char *exec2[] = { "exec", "-e", "bad", "web", "-h", NULL };
    assert_int_equal(cli_parse_exec(P(exec2), &eo, &err), 0);
    assert_true(eo.help);
    cli_exec_opts_done(&eo);
    const char *run[] = { "run", "-m", "1", "--help", NULL };
    assert_int_equal(cli_parse_run(P(run), &ro, &err), 0);
    assert_true(ro.help);
    cli_run_opts_done(&ro);
}

/* --memory and --disk-size take units; a plain number stays MiB. */
static void
test_run_sizes(void **state)
{
    static const struct {
        const char *opt, *value;
        uint32_t mib;
    } ok[] = {
        { "-m", "512M", 512 },
        { "--memory", "2G", 2048 },
        { "--memory", "2g", 2048 },
        { "--memory", "2GiB", 2048 },
        { "--memory", "1gb", 1024 },
        { "--memory", "256", 256 },
        { "-m", "524288K", 512 },
        { "--memory", "64G", 65536 },
        { "--disk-size", "1T", 1 << 20 },
        { "--disk-size", "3", 3 },
    };
    (void)state;

    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        const char *argv[] = { "run", ok[i].opt, ok[i].value, NULL };
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        struct run_opts o = { 0 };

        if (cli_parse_run(P(argv), &o, &err) < 0)
            fail_msg("%s %s: %s", ok[i].opt, ok[i].value, tp_err_msg(&err));
        assert_int_equal(ok[i].opt[2] == 'd' ? o.disk_mib : o.memory_mib, ok[i].mib);
        cli_run_opts_done(&o);
    }

    /* The short option's value joined to it, with or without '=' (as docker). */
    const char *joined[] = { "run", "-m1G", NULL };
    const char *joined_eq[] = { "run", "-m=1G", NULL };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct run_opts o = { 0 };
    assert_int_equal(cli_parse_run(P(joined), &o, &err), 0);
    assert_int_equal(o.memory_mib, 1024);
    assert_int_equal(cli_parse_run(P(joined_eq), &o, &err), 0);
    assert_int_equal(o.memory_mib, 1024);
}

/* Parse a fork command line that must be a usage error whose message contains needle. */
static void
fork_usage_error(const char *const *argv, int argc, const char *needle)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct fork_opts o = { .source = "untouched" };

    assert_int_equal(cli_parse_fork(argc, (char **)argv, &o, &err), -EINVAL);
    if (!strstr(tp_err_msg(&err), needle))
        fail_msg("%s: message '%s' lacks '%s'", argv[1], tp_err_msg(&err), needle);
    assert_string_equal(o.source, "untouched"); /* ret untouched on failure */
}

#define FORK_USAGE_ERROR(needle, ...)                                  \
    do {                                                               \
        const char *argv_[] = { "fork", __VA_ARGS__, NULL };           \
        fork_usage_error(argv_, (int)ELEMENTSOF(argv_) - 1, (needle)); \
    } while (0)

static void
test_fork_usage_errors(void **state)
{
    (void)state;
    FORK_USAGE_ERROR("options '--name' and '--prefix' exclude each other", "--name", "a",
                     "--prefix", "b", "web");
    FORK_USAGE_ERROR("exclude each other", "--prefix", "b", "--name", "a", "web");
    FORK_USAGE_ERROR("option '--name' names one child; it cannot go with '--count 2'", "--name",
                     "a", "--count", "2", "web");
    FORK_USAGE_ERROR("cannot go with '--count 64'", "--count", "64", "--name", "a", "web");
    FORK_USAGE_ERROR("option '--count' expects an integer from 1 to 64, not '65'", "--count", "65",
                     "web");
    FORK_USAGE_ERROR("from 1 to 64, not '0'", "--count", "0", "web");
    FORK_USAGE_ERROR("expects a positive integer, not '-1'", "--count", "-1", "web");
    FORK_USAGE_ERROR("expects a positive integer, not 'two'", "--count", "two", "web");
    FORK_USAGE_ERROR("option '--name' needs a non-empty value", "--name=", "web");
    FORK_USAGE_ERROR("option '--prefix' needs a non-empty value", "--prefix", "", "web");
    FORK_USAGE_ERROR("flag needs an argument: --count", "--count");
    FORK_USAGE_ERROR("'fork' needs an instance NAME", "--standby");
    FORK_USAGE_ERROR("'fork' takes one NAME, got also 'b'", "a", "b");
    FORK_USAGE_ERROR("unknown shorthand flag: 'n' in -n", "-n", "2", "web");
    FORK_USAGE_ERROR("unknown flag: --force", "--force", "web");
    FORK_USAGE_ERROR("unknown flag: --force", "web", "--force");
    FORK_USAGE_ERROR("option '--name' expects lowercase letters", "--name", "A", "web");
    FORK_USAGE_ERROR("at most 60 characters", "--prefix",
                     "p23456789012345678901234567890123456789012345678901234567890a", "web");
}

static void
test_global_socket_precedence(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_global_opts g;
    (void)state;

    const char *a1[] = { "torpor", "ps", "-a", NULL };
    assert_int_equal(cli_parse_global(P(a1), NULL, &g, &err), 0);
    assert_string_equal(g.socket, CLI_DEFAULT_SOCKET);
    assert_int_equal(g.verb_index, 1);
    assert_int_equal(cli_parse_global(P(a1), "", &g, &err), 0);
    assert_string_equal(g.socket, CLI_DEFAULT_SOCKET);
    assert_int_equal(cli_parse_global(P(a1), "/env.sock", &g, &err), 0);
    assert_string_equal(g.socket, "/env.sock");

    const char *a2[] = { "torpor", "--socket", "/opt.sock", "ps", "--socket", "x", NULL };
    assert_int_equal(cli_parse_global(P(a2), "/env.sock", &g, &err), 0);
    assert_string_equal(g.socket, "/opt.sock");
    assert_int_equal(g.verb_index, 3); /* the verb's own words are not parsed here */
    const char *a3[] = { "torpor", "--socket=/eq.sock", "version", NULL };
    assert_int_equal(cli_parse_global(P(a3), NULL, &g, &err), 0);
    assert_string_equal(g.socket, "/eq.sock");

    const char *a4[] = { "torpor", "--version", NULL };
    assert_int_equal(cli_parse_global(P(a4), NULL, &g, &err), 0);
    assert_true(g.version);
    assert_int_equal(g.verb_index, ARGC(a4));        /* no verb */
    const char *a5[] = { "torpor", "--sock", NULL }; /* unambiguous prefix of --socket */
    assert_int_equal(cli_parse_global(P(a5), NULL, &g, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "flag needs an argument: --socket");
    const char *a6[] = { "torpor", "--frob", "ps", NULL };
    assert_int_equal(cli_parse_global(P(a6), NULL, &g, &err), -EINVAL);
}

static void
test_format_ago(void **state)
{
    char b[64];
    (void)state;

    cli_format_ago(-3, b, sizeof(b));
    assert_string_equal(b, "Less than a second ago");
    cli_format_ago(1, b, sizeof(b));
    assert_string_equal(b, "1 second ago");
    cli_format_ago(42, b, sizeof(b));
    assert_string_equal(b, "42 seconds ago");
    cli_format_ago(90, b, sizeof(b));
    assert_string_equal(b, "About a minute ago");
    cli_format_ago(150, b, sizeof(b));
    assert_string_equal(b, "2 minutes ago");
    cli_format_ago(3 * 3600 + 5, b, sizeof(b));
    assert_string_equal(b, "3 hours ago");
    cli_format_ago(5 * 86400, b, sizeof(b));
    assert_string_equal(b, "5 days ago");
}

static void
test_instance_path(void **state)
{
    _cleanup_free_ char *p1 = client_instance_path("web-1", "/stop");
    _cleanup_free_ char *p2 = client_instance_path("../a b", "");
    (void)state;

    assert_string_equal(p1, "/v1/instances/web-1/stop");
    assert_string_equal(p2, "/v1/instances/%2E%2E%2Fa%20b");
}

/* ---- exec-stream decoder ------------------------------------------------------------------ */

struct sink {
    char out[256];
    size_t out_len;
    char errb[256];
    size_t err_len;
    int calls;
    int fail_with; /* < 0: the callback fails */
};

static int
sink_output(int kind, const void *data, size_t len, void *userdata, struct tp_err *err)
{
    struct sink *s = userdata;
    char *buf = kind == EXEC_FRAME_STDOUT ? s->out : s->errb;
    size_t *n = kind == EXEC_FRAME_STDOUT ? &s->out_len : &s->err_len;

    s->calls++;
    if (s->fail_with < 0)
        return tp_err_set(err, s->fail_with, "sink full");
    assert_true(kind == EXEC_FRAME_STDOUT || kind == EXEC_FRAME_STDERR);
    assert_true(*n + len < sizeof(s->out));
    memcpy(buf + *n, data, len);
    *n += len;
    return 0;
}

/* Append one frame to buf. */
static size_t
put_frame(uint8_t *buf, uint8_t kind, const char *payload, size_t len)
{
    buf[0] = kind;
    buf[1] = buf[2] = buf[3] = 0;
    buf[4] = (uint8_t)(len >> 24);
    buf[5] = (uint8_t)(len >> 16);
    buf[6] = (uint8_t)(len >> 8);
    buf[7] = (uint8_t)len;
    memcpy(buf + 8, payload, len);
    return 8 + len;
}

static size_t
sample_stream(uint8_t *buf)
{
    static const char exit_json[] = "{\"exit_code\": 3}";
    size_t n = 0;

    n += put_frame(buf + n, EXEC_FRAME_STDOUT, "hello ", 6);
    n += put_frame(buf + n, EXEC_FRAME_STDERR, "oops\n", 5);
    n += put_frame(buf + n, EXEC_FRAME_STDOUT, "", 0);
    n += put_frame(buf + n, EXEC_FRAME_STDOUT, "world\n", 6);
    n += put_frame(buf + n, EXEC_FRAME_EXIT, exit_json, strlen(exit_json));
    return n;
}

static void
check_sample(const struct exec_decoder *d, const struct sink *s)
{
    assert_true(d->finished);
    assert_int_equal(d->exit_code, 3);
    assert_null(d->error_message);
    assert_int_equal(s->out_len, 12);
    assert_memory_equal(s->out, "hello world\n", 12);
    assert_int_equal(s->err_len, 5);
    assert_memory_equal(s->errb, "oops\n", 5);
}

static void
test_decoder_split_everywhere(void **state)
{
    uint8_t stream[256];
    size_t n = sample_stream(stream);
    (void)state;

    /* Two pieces, cut at every offset. */
    for (size_t cut = 0; cut <= n; cut++) {
        struct exec_decoder d;
        struct sink s = { 0 };
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };

        exec_decoder_init(&d);
        assert_int_equal(exec_decoder_feed(&d, stream, cut, sink_output, &s, &err), 0);
        assert_int_equal(exec_decoder_feed(&d, stream + cut, n - cut, sink_output, &s, &err), 0);
        assert_int_equal(exec_decoder_finish(&d, &err), 0);
        check_sample(&d, &s);
        exec_decoder_done(&d);
    }

    /* One byte at a time: every boundary at once. */
    struct exec_decoder d;
    struct sink s = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    exec_decoder_init(&d);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(exec_decoder_finish(&d, &err), -EPROTO); /* not done yet */
        assert_int_equal(exec_decoder_feed(&d, stream + i, 1, sink_output, &s, &err), 0);
    }
    assert_int_equal(exec_decoder_finish(&d, &err), 0);
    check_sample(&d, &s);
    exec_decoder_done(&d);
}

static void
test_decoder_error_frame(void **state)
{
    static const char ej[] = "{\"code\": \"not_found\", \"message\": \"nosuch: not found\"}";
    uint8_t stream[256];
    size_t n = put_frame(stream, EXEC_FRAME_ERROR, ej, strlen(ej));
    struct exec_decoder d;
    struct sink s = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    exec_decoder_init(&d);
    assert_int_equal(exec_decoder_feed(&d, stream, n, sink_output, &s, &err), 0);
    assert_int_equal(exec_decoder_finish(&d, &err), 0);
    assert_true(d.finished);
    assert_string_equal(d.error_code, "not_found");
    assert_string_equal(d.error_message, "nosuch: not found");
    assert_int_equal(s.calls, 0);

    /* Anything after the final frame is a protocol error. */
    assert_int_equal(exec_decoder_feed(&d, stream, 1, sink_output, &s, &err), -EPROTO);
    exec_decoder_done(&d);
}

static void
test_decoder_protocol_errors(void **state)
{
    uint8_t big[8] = { EXEC_FRAME_STDOUT, 0, 0, 0, 0x01, 0x00, 0x00, 0x01 }; /* 16 MiB + 1 */
    uint8_t max[8] = { EXEC_FRAME_STDOUT, 0, 0, 0, 0x01, 0x00, 0x00, 0x00 }; /* 16 MiB */
    uint8_t kind[8] = { 9, 0, 0, 0, 0, 0, 0, 1 };
    uint8_t resv[8] = { EXEC_FRAME_STDOUT, 0, 1, 0, 0, 0, 0, 1 };
    uint8_t badexit[64];
    size_t nbad = put_frame(badexit, EXEC_FRAME_EXIT, "{\"exit\": 1}", 11);
    uint8_t *cases[] = { big, kind, resv };
    (void)state;

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct exec_decoder d;
        struct sink s = { 0 };
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };

        exec_decoder_init(&d);
        assert_int_equal(exec_decoder_feed(&d, cases[i], 8, sink_output, &s, &err), -EPROTO);
        assert_non_null(strstr(tp_err_msg(&err), "exec stream"));
        exec_decoder_done(&d);
    }

    struct exec_decoder d;
    struct sink s = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    exec_decoder_init(&d);
    assert_int_equal(exec_decoder_feed(&d, max, 8, sink_output, &s, &err), 0);
    exec_decoder_done(&d);

    exec_decoder_init(&d);
    assert_int_equal(exec_decoder_feed(&d, badexit, nbad, sink_output, &s, &err), -EPROTO);
    assert_non_null(strstr(tp_err_msg(&err), "exit_code"));
    exec_decoder_done(&d);

    /* A failing output callback stops decoding with its error. */
    uint8_t out[64];
    size_t nout = put_frame(out, EXEC_FRAME_STDOUT, "x", 1);
    s.fail_with = -EPIPE;
    exec_decoder_init(&d);
    assert_int_equal(exec_decoder_feed(&d, out, nout, sink_output, &s, &err), -EPIPE);
    assert_string_equal(tp_err_msg(&err), "sink full");
    exec_decoder_done(&d);
}

/* ---- client against a fake torpord -------------------------------------------------------- */

#define FAKE_MAX_CONNS  5
#define FAKE_TIMEOUT_MS 10000

struct fake_server {
    char dir[64];
    char path[128];
    int listen_fd;
    pthread_t thread;
    /* One canned reply per connection, in order. */
    const void *replies[FAKE_MAX_CONNS];
    size_t reply_lens[FAKE_MAX_CONNS];
    size_t n_replies;
    /* What the client sent, per connection. */
    char *requests[FAKE_MAX_CONNS];
    size_t request_lens[FAKE_MAX_CONNS];
    int served;
    int failed; /* the thread hit an error or timeout */
};

/* Read one HTTP request (headers + Content-Length body) from fd, bounded in size and time. */
static char *
read_request(int fd, size_t *ret_len)
{
    size_t cap = 1 << 16, len = 0, need = SIZE_MAX;
    char *buf = xmalloc(cap + 1);

    while (len < need && len < cap) {
        if (sock_wait(fd, POLLIN, FAKE_TIMEOUT_MS) <= 0)
            break;
        ssize_t n = read(fd, buf + len, cap - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end && need == SIZE_MAX) {
            size_t body = 0;
            char *cl = strcasestr(buf, "\r\ncontent-length:");
            if (cl && cl < end)
                body = strtoul(cl + strlen("\r\ncontent-length:"), NULL, 10);
            need = (size_t)(end + 4 - buf) + body;
        }
    }
    buf[len] = '\0';
    *ret_len = len;
    if (len < need) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void *
fake_server_main(void *arg)
{
    struct fake_server *f = arg;

    for (size_t i = 0; i < f->n_replies; i++) {
        if (sock_wait(f->listen_fd, POLLIN, FAKE_TIMEOUT_MS) <= 0) {
            f->failed = 1;
            return NULL;
        }
        _cleanup_close_ int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            f->failed = 1;
            return NULL;
        }
        f->requests[i] = read_request(fd, &f->request_lens[i]);
        if (!f->requests[i] || sock_write_all(fd, f->replies[i], f->reply_lens[i]) < 0) {
            f->failed = 1;
            return NULL;
        }
        f->served++;
    }
    return NULL;
}

static struct fake_server *
fake_server_start(const char *const *replies, const size_t *lens, size_t n)
{
    struct fake_server *f = xnew(struct fake_server, 1);
    struct tp_err err = { 0 };

    strcpy(f->dir, "/tmp/torpor-cli-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/api.sock", f->dir);
    /* Listening before the thread starts: the client can connect at once, no race. */
    f->listen_fd = sock_listen_unix(f->path, 4, &err);
    assert_true(f->listen_fd >= 0);
    assert_true(n <= FAKE_MAX_CONNS);
    for (size_t i = 0; i < n; i++) {
        f->replies[i] = replies[i];
        f->reply_lens[i] = lens ? lens[i] : strlen(replies[i]);
    }
    f->n_replies = n;
    assert_int_equal(pthread_create(&f->thread, NULL, fake_server_main, f), 0);
    return f;
}

/* Join the thread and check it served every reply. */
static void
fake_server_stop(struct fake_server *f)
{
    struct tp_err err = { 0 };

    assert_int_equal(pthread_join(f->thread, NULL), 0);
    close(f->listen_fd);
    assert_int_equal(fs_rm_rf(f->dir, &err), 0);
    assert_false(f->failed);
    assert_int_equal((size_t)f->served, f->n_replies);
}

static void
fake_server_free(struct fake_server *f)
{
    for (size_t i = 0; i < FAKE_MAX_CONNS; i++)
        free(f->requests[i]);
    free(f);
}

/* The i-th request the fake server read contains needle; on failure, show the request. */
static void
expect_request(const struct fake_server *f, size_t i, const char *needle)
{
    const char *req = f->requests[i];

    if (!req || !strstr(req, needle))
        fail_msg("request %zu lacks '%s':\n%s", i, needle, req ? req : "(none)");
}

static char *
http_reply(const char *status, const char *body)
{
    return xasprintf("HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     status, strlen(body), body);
}

static void
test_client_error_reply(void **state)
{
    _cleanup_free_ char *r404 = http_reply(
        "404 Not Found", "{\"code\": \"not_found\", \"message\": \"no instance 'ghost'\"}");
    const char *replies[] = { r404, r404 };
    struct fake_server *f = fake_server_start(replies, NULL, 2);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *reply = NULL;
    long status = 0;
    (void)state;

    assert_int_equal(
        client_request(f->path, "GET", "/v1/instances/ghost", NULL, &status, &reply, &err), 0);
    assert_int_equal(status, 404);
    assert_non_null(reply);
    assert_string_equal(json_string_value(json_object_get(reply, "code")), "not_found");
    json_decref(reply);
    reply = NULL;

    /* client_call turns it into the daemon's message, and ENOENT for 404. */
    assert_int_equal(client_call(f->path, "GET", "/v1/instances/ghost", NULL, &reply, &err),
                     -ENOENT);
    assert_string_equal(tp_err_msg(&err), "no instance 'ghost'");
    assert_null(reply);

    fake_server_stop(f);
    expect_request(f, 0, "GET /v1/instances/ghost HTTP/1.1\r\n");
    fake_server_free(f);
}

static void
test_client_post_large_body(void **state)
{
    _cleanup_free_ char *r201 =
        http_reply("201 Created", "{\"id\": \"3f2a9c0d1b4e5f60\", \"state\": \"Running\"}");
    const char *replies[] = { r201 };
    struct fake_server *f = fake_server_start(replies, NULL, 1);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    char longarg[3000];
    json_t *body = json_object(), *reply = NULL, *sent;
    json_error_t jerr;
    long status = 0;
    (void)state;

    /* Over 1 KiB: libcurl would send "Expect: 100-continue" and stall without our header. */
    memset(longarg, 'x', sizeof(longarg) - 1);
    longarg[sizeof(longarg) - 1] = '\0';
    json_object_set_new(body, "name", json_string("web-1"));
    json_object_set_new(body, "cmd", json_pack("[ss]", "echo", longarg));
    assert_int_equal(client_request(f->path, "POST", "/v1/instances", body, &status, &reply, &err),
                     0);
    assert_int_equal(status, 201);
    assert_string_equal(json_string_value(json_object_get(reply, "id")), "3f2a9c0d1b4e5f60");
    json_decref(reply);

    fake_server_stop(f);
    const char *req = f->requests[0];
    assert_non_null(strstr(req, "POST /v1/instances HTTP/1.1\r\n"));
    assert_null(strcasestr(req, "100-continue"));
    assert_non_null(strcasestr(req, "\r\nContent-Type: application/json\r\n"));
    sent = json_loads(strstr(req, "\r\n\r\n") + 4, 0, &jerr);
    assert_non_null(sent);
    assert_true(json_equal(sent, body));
    json_decref(sent);
    json_decref(body);
    fake_server_free(f);
}

static void
test_client_unreachable(void **state)
{
    char dir[] = "/tmp/torpor-cli-XXXXXX";
    _cleanup_free_ char *missing = NULL, *dead = NULL, *want = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct tp_err ignore = { 0 };
    json_t *reply = NULL;
    long status = 0;
    int fd;
    (void)state;

    assert_non_null(mkdtemp(dir));
    missing = xasprintf("%s/none.sock", dir);
    assert_int_equal(client_request(missing, "GET", "/v1/version", NULL, &status, &reply, &err),
                     -ENOENT);
    want = xasprintf("cannot reach torpord at '%s': No such file or directory (is torpord "
                     "running?)",
                     missing);
    assert_string_equal(tp_err_msg(&err), want);
    assert_int_equal(status, 0);

    /* A socket file nobody listens on any more: refused. */
    dead = xasprintf("%s/dead.sock", dir);
    fd = sock_listen_unix(dead, 1, &ignore);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(client_call(dead, "GET", "/v1/version", NULL, &reply, &err), -ECONNREFUSED);
    assert_non_null(strstr(tp_err_msg(&err), "Connection refused (is torpord running?)"));
    assert_null(reply);
    assert_int_equal(fs_rm_rf(dir, &ignore), 0);
}

struct collect {
    struct exec_decoder dec;
    struct sink sink;
};

static int
collect_data(const void *data, size_t len, void *userdata, struct tp_err *err)
{
    struct collect *c = userdata;
    return exec_decoder_feed(&c->dec, data, len, sink_output, &c->sink, err);
}

static void
test_client_stream(void **state)
{
    uint8_t frames[256];
    size_t nf = sample_stream(frames);
    _cleanup_free_ char *head =
        xasprintf("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.torpor.exec-stream\r\n"
                  "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                  nf);
    size_t nh = strlen(head);
    _cleanup_free_ char *ok = xmalloc(nh + nf);
    _cleanup_free_ char *r409 = http_reply(
        "409 Conflict", "{\"code\": \"conflict\", \"message\": \"instance 'vm' is Stopped\"}");
    const char *replies[] = { ok, r409 };
    size_t lens[] = { nh + nf, strlen(r409) };
    struct fake_server *f;
    struct collect c = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *body = json_pack("{s[ss]}", "cmd", "ls", "-la");
    (void)state;

    memcpy(ok, head, nh);
    memcpy(ok + nh, frames, nf);
    f = fake_server_start(replies, lens, 2);

    exec_decoder_init(&c.dec);
    assert_int_equal(
        client_stream(f->path, "POST", "/v1/instances/vm/exec", body, collect_data, &c, &err), 0);
    assert_int_equal(exec_decoder_finish(&c.dec, &err), 0);
    check_sample(&c.dec, &c.sink);
    exec_decoder_done(&c.dec);

    /* An error status is read whole and reported; nothing reaches the callback. */
    memset(&c, 0, sizeof(c));
    exec_decoder_init(&c.dec);
    assert_int_equal(
        client_stream(f->path, "POST", "/v1/instances/vm/exec", body, collect_data, &c, &err),
        -EBUSY);
    assert_string_equal(tp_err_msg(&err), "instance 'vm' is Stopped");
    assert_int_equal(c.sink.calls, 0);
    exec_decoder_done(&c.dec);

    json_decref(body);
    fake_server_stop(f);
    fake_server_free(f);
}

static char *
capture_end(int fd, int saved, char *path)
{
    char *data = NULL;
    size_t len;
    struct tp_err err = { 0 };

    assert_true(dup2(saved, fd) >= 0);
    close(saved);
    assert_int_equal(fs_read_file(path, 1 << 20, &data, &len, &err), 0);
    unlink(path);
    return data;
}

static int
capture_begin(int fd, char *path)
{
    int tmp = mkstemp(path), saved;

    assert_true(tmp >= 0);
    saved = dup(fd);
    assert_true(saved >= 0);
    assert_true(dup2(tmp, fd) >= 0);
    close(tmp);
    return saved;
}

/* Run fn with stdout and stderr redirected to files; returns what went to stdout, and what
 * went to stderr in *ret_err. */
static char *
capture(int (*fn)(const struct cli_ctx *, const void *), const struct cli_ctx *ctx,
        const void *opts, int *ret_rc, char **ret_err)
{
    char out_path[] = "/tmp/torpor-cli-out-XXXXXX", err_path[] = "/tmp/torpor-cli-err-XXXXXX";
    int saved_out, saved_err;
    char *out;

    fflush(stdout);
    fflush(stderr);
    saved_out = capture_begin(STDOUT_FILENO, out_path);
    saved_err = capture_begin(STDERR_FILENO, err_path);
    *ret_rc = fn(ctx, opts);
    fflush(stdout);
    fflush(stderr);
    *ret_err = capture_end(STDERR_FILENO, saved_err, err_path);
    out = capture_end(STDOUT_FILENO, saved_out, out_path);
    return out;
}

/* capture() fn; check its exit code and, where want_out or want_err is not NULL, all that
 * went to stdout or stderr. */
static void
expect_output(int (*fn)(const struct cli_ctx *, const void *), const struct cli_ctx *ctx,
              const void *opts, int want_rc, const char *want_out, const char *want_err)
{
    char *out, *errout;
    int rc;

    out = capture(fn, ctx, opts, &rc, &errout);
    assert_int_equal(rc, want_rc);
    if (want_out)
        assert_string_equal(out, want_out);
    if (want_err)
        assert_string_equal(errout, want_err);
    free(out);
    free(errout);
}

/* capture()'s callers, one per runner: call_<verb>(ctx, opts) is cli_cmd_<verb>(ctx, opts). */
#define DEFINE_CALL(verb)                                            \
    static int call_##verb(const struct cli_ctx *ctx, const void *o) \
    {                                                                \
        return cli_cmd_##verb(ctx, o);                               \
    }
DEFINE_CALL(exec)
DEFINE_CALL(lifecycle)
DEFINE_CALL(ps)
DEFINE_CALL(run)
DEFINE_CALL(inspect)
DEFINE_CALL(fork)

static const char two_instances[] =
    "{\"instances\": [{\"id\": \"3f2a9c0d1b4e5f60\", \"name\": \"web-1\", \"state\": "
    "\"Running\", \"memory_mib\": 256, \"vcpus\": 1, \"pid\": 4242, \"created_at\": "
    "\"2020-01-01T00:00:00.000Z\"}, {\"id\": \"0011223344556677\", \"name\": \"b\", "
    "\"state\": \"Stopped\", \"memory_mib\": 1024, \"vcpus\": 2, \"pid\": null}]}";

static void
test_cmd_ps_outputs(void **state)
{
    _cleanup_free_ char *r200 = http_reply("200 OK", two_instances);
    const char *replies[] = { r200, r200 };
    struct fake_server *f = fake_server_start(replies, NULL, 2);
    struct cli_ctx ctx = { .socket = f->path };
    struct ps_opts table = { .all = true }, quiet = { .quiet = true };
    char *out, *errout, *line2;
    int rc;
    (void)state;

    out = capture(call_ps, &ctx, &table, &rc, &errout);
    assert_int_equal(rc, 0);
    assert_string_equal(errout, "");
    /* Columns line up: every field starts where its header does. */
    line2 = strchr(out, '\n') + 1;
    assert_int_equal(strncmp(out, "ID ", 3), 0);
    assert_int_equal(strncmp(line2, "3f2a9c0d1b4e ", 13), 0); /* 12-char id */
    assert_int_equal(strstr(out, "NAME") - out, strstr(line2, "web-1") - line2);
    assert_int_equal(strstr(out, "MEMORY") - out, strstr(line2, "256MiB") - line2);
    assert_int_equal(strstr(out, "PID") - out, strstr(line2, "4242") - line2);
    assert_non_null(strstr(line2, "years ago\n"));
    assert_non_null(strstr(out, "1024MiB"));
    free(out);
    free(errout);

    /* ps -q: the table's short ids, as docker; --no-trunc: whole ones. */
    expect_output(call_ps, &ctx, &quiet, 0, "3f2a9c0d1b4e\n001122334455\n", NULL);
    fake_server_stop(f);
    expect_request(f, 0, "GET /v1/instances?all=true HTTP/1.1\r\n");
    expect_request(f, 1, "GET /v1/instances HTTP/1.1\r\n");
    fake_server_free(f);

    const char *more[] = { r200, r200, r200 };
    f = fake_server_start(more, NULL, 3);
    ctx.socket = f->path;
    struct ps_opts full = { .quiet = true, .no_trunc = true };
    expect_output(call_ps, &ctx, &full, 0, "3f2a9c0d1b4e5f60\n0011223344556677\n", NULL);
    struct ps_opts tmpl = { .format = "{{.Name}} {{.ID}} {{.MemoryMib}}MiB" };
    expect_output(call_ps, &ctx, &tmpl, 0,
                  "web-1 3f2a9c0d1b4e5f60 256MiB\nb 0011223344556677 1024MiB\n", NULL);
    struct ps_opts bad = { .format = "{{.Nope}}" };
    expect_output(call_ps, &ctx, &bad, 1, "", "torpor: --format: no field '.Nope'\n");
    fake_server_stop(f);
    fake_server_free(f);

    const char *two[] = { r200, r200 };
    f = fake_server_start(two, NULL, 2);
    ctx.socket = f->path;
    /* Filters: a state asks for every instance (Stopped too); one key's values are
     * alternatives, different keys must all match. */
    struct ps_opts stopped = { .quiet = true, .n_filters = 1, .filters = { "status=stopped" } };
    expect_output(call_ps, &ctx, &stopped, 0, "001122334455\n", NULL);
    struct ps_opts both = { .quiet = true,
                            .n_filters = 3,
                            .filters = { "name=web", "state=Running", "state=Standby" } };
    expect_output(call_ps, &ctx, &both, 0, "3f2a9c0d1b4e\n", NULL);
    fake_server_stop(f);
    expect_request(f, 1, "GET /v1/instances?all=true HTTP/1.1\r\n");
    fake_server_free(f);
}

static void
test_cmd_run_trace(void **state)
{
    _cleanup_free_ char *r201 = http_reply(
        "201 Created", "{\"id\": \"3f2a9c0d1b4e5f60\", \"state\": \"Running\", "
                       "\"last_operation\": {\"op\": \"run\", \"ok\": true, \"total_ms\": 2210.4, "
                       "\"phases\": [{\"name\": \"prepare\", \"ms\": 12.1}, "
                       "{\"name\": \"start_process\", \"ms\": 48}]}}");
    const char *replies[] = { r201 };
    struct fake_server *f = fake_server_start(replies, NULL, 1);
    struct cli_ctx ctx = { .socket = f->path };
    const char *argv[] = { "run", "--name", "web-1", "--no-agent", "--trace", NULL };
    struct run_opts o = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(cli_parse_run(P(argv), &o, &err), 0);
    expect_output(call_run, &ctx, &o, 0, "3f2a9c0d1b4e5f60\n", /* the id alone on stdout */
                  "prepare             12.1 ms\n"
                  "start_process       48.0 ms\n"
                  "total             2210.4 ms\n");
    fake_server_stop(f);
    expect_request(f, 0, "{\"name\":\"web-1\",\"no_agent\":true}");
    fake_server_free(f);
    cli_run_opts_done(&o);
}

static void
test_cmd_inspect_several(void **state)
{
    _cleanup_free_ char *ra = http_reply("200 OK", "{\"id\": \"aa\", \"name\": \"a\"}");
    _cleanup_free_ char *rb = http_reply(
        "409 Conflict", "{\"code\": \"ambiguous\", \"message\": \"'b' matches b1, b2\"}");
    const char *replies[] = { ra, rb };
    struct fake_server *f = fake_server_start(replies, NULL, 2);
    struct cli_ctx ctx = { .socket = f->path };
    const char *names[] = { "a", "b" };
    struct inspect_opts o = { .names = (char **)names, .n_names = 2 };
    json_error_t jerr;
    json_t *printed;
    char *out, *errout;
    int rc;
    (void)state;

    out = capture(call_inspect, &ctx, &o, &rc, &errout);
    assert_int_equal(rc, 1);
    assert_string_equal(errout, "torpor: 'b' matches b1, b2\n");
    printed = json_loads(out, 0, &jerr);
    assert_true(json_is_array(printed)); /* several names: an array, like docker */
    assert_int_equal(json_array_size(printed), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(printed, 0), "id")), "aa");
    json_decref(printed);
    free(out);
    free(errout);
    fake_server_stop(f);
    fake_server_free(f);
}

static void
test_cmd_exec_exit_codes(void **state)
{
    static const char notfound[] = "{\"code\": \"not_found\", \"message\": \"nope: not found\"}";
    static const char denied[] =
        "{\"code\": \"internal\", \"message\": \"permission denied\", \"exit_code\": 126}";
    static const char cut[] = "{\"code\": \"unavailable\", \"message\": \"shutting down\"}";
    uint8_t f1[256], f2[128], f3[128], f4[128];
    size_t n1 = sample_stream(f1);
    size_t n2 = put_frame(f2, EXEC_FRAME_ERROR, notfound, strlen(notfound));
    size_t n3 = put_frame(f3, EXEC_FRAME_ERROR, denied, strlen(denied));
    size_t n4 = put_frame(f4, EXEC_FRAME_ERROR, cut, strlen(cut));
    const uint8_t *frames[] = { f1, f2, f3, f4 };
    size_t nframes[] = { n1, n2, n3, n4 };
    char *replies[5];
    size_t lens[5];
    for (size_t i = 0; i < 4; i++) {
        static const char head[] =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
        size_t nh = strlen(head);
        replies[i] = xmalloc(nh + nframes[i]);
        memcpy(replies[i], head, nh);
        memcpy(replies[i] + nh, frames[i], nframes[i]);
        lens[i] = nh + nframes[i];
    }
    /* Refused before the session: an ordinary JSON error. */
    replies[4] = http_reply("409 Conflict",
                            "{\"code\": \"conflict\", \"message\": \"instance 'vm' is Stopped\"}");
    lens[4] = strlen(replies[4]);
    struct fake_server *f = fake_server_start((const char *const *)replies, lens, 5);
    struct cli_ctx ctx = { .socket = f->path };
    const char *argv[] = { "exec", "vm", "sh", "-c", "exit 3", NULL };
    struct exec_opts o = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    char *out, *errout;
    int rc;
    (void)state;

    assert_int_equal(cli_parse_exec(P(argv), &o, &err), 0);
    expect_output(call_exec, &ctx, &o, 3, "hello world\n", "oops\n");
    expect_output(call_exec, &ctx, &o, 127, "", "torpor: nope: not found\n");
    expect_output(call_exec, &ctx, &o, 126, NULL, "torpor: permission denied\n");
    /* Cut without a verdict from torpord: torpor's failure, never 126. */
    expect_output(call_exec, &ctx, &o, 125, NULL, "torpor: shutting down\n");
    expect_output(call_exec, &ctx, &o, 125, "", "torpor: instance 'vm' is Stopped\n");
    fake_server_stop(f);
    expect_request(f, 0, "POST /v1/instances/vm/exec HTTP/1.1\r\n");
    expect_request(f, 0, "Upgrade: tcp\r\n");
    expect_request(f, 0, "\"cmd\":[\"sh\",\"-c\",\"exit 3\"]");
    fake_server_free(f);

    /* Nobody listening: torpor's own failure, 125. */
    ctx.socket = "/tmp/torpor-cli-no-such-dir/api.sock";
    out = capture(call_exec, &ctx, &o, &rc, &errout);
    assert_int_equal(rc, 125);
    assert_non_null(strstr(errout, "torpor: cannot reach torpord at '/tmp/torpor-cli-no-such-dir"));
    free(out);
    free(errout);
    cli_exec_opts_done(&o);
    for (size_t i = 0; i < 5; i++)
        free(replies[i]);
}

static void
test_cmd_stop_continues_past_failure(void **state)
{
    _cleanup_free_ char *r404 =
        http_reply("404 Not Found", "{\"code\": \"not_found\", \"message\": \"no instance 'a'\"}");
    _cleanup_free_ char *r200 = http_reply("200 OK", "{\"id\": \"b0\", \"state\": \"Stopped\"}");
    const char *replies[] = { r404, r200 };
    struct fake_server *f = fake_server_start(replies, NULL, 2);
    struct cli_ctx ctx = { .socket = f->path };
    const char *argv[] = { "stop", "a", "b", NULL };
    struct lifecycle_opts o;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(cli_parse_lifecycle(P(argv), &o, &err), 0);
    expect_output(call_lifecycle, &ctx, &o, 1, "b\n", "torpor: no instance 'a'\n");
    fake_server_stop(f);
    expect_request(f, 0, "POST /v1/instances/a/stop HTTP/1.1\r\n");
    expect_request(f, 1, "POST /v1/instances/b/stop HTTP/1.1\r\n");
    fake_server_free(f);
}

/* restart: stop, then start, per name; a name whose stop failed is not started. */
static void
test_cmd_restart(void **state)
{
    _cleanup_free_ char *r200 = http_reply("200 OK", "{\"id\": \"b0\", \"state\": \"Running\"}");
    _cleanup_free_ char *r409 = http_reply(
        "409 Conflict", "{\"code\": \"conflict\", \"message\": \"instance 'z' is in Standby\"}");
    const char *replies[] = { r200, r200, r409 };
    struct fake_server *f = fake_server_start(replies, NULL, 3);
    struct cli_ctx ctx = { .socket = f->path };
    const char *argv[] = { "restart", "web", "z", NULL };
    struct lifecycle_opts o;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(cli_parse_lifecycle(P(argv), &o, &err), 0);
    expect_output(call_lifecycle, &ctx, &o, 1, "web\n", "torpor: instance 'z' is in Standby\n");
    fake_server_stop(f);
    expect_request(f, 0, "POST /v1/instances/web/stop HTTP/1.1\r\n");
    expect_request(f, 1, "POST /v1/instances/web/start HTTP/1.1\r\n");
    expect_request(f, 2, "POST /v1/instances/z/stop HTTP/1.1\r\n");
    fake_server_free(f);
}

static void
test_cmd_standby_restore_trace(void **state)
{
    static const char inst[] =
        "{\"id\": \"3f2a9c0d1b4e5f60\", \"name\": \"web-1\", \"state\": \"%s\", "
        "\"last_operation\": {\"op\": \"%s\", \"ok\": true, \"total_ms\": 1530.26, "
        "\"phases\": [{\"name\": \"pause\", \"ms\": 3.04}, "
        "{\"name\": \"save_snapshot\", \"ms\": 1500}, {\"name\": \"stop_vmm\", \"ms\": 27.2}]}}";
    _cleanup_free_ char *b_standby = xasprintf(inst, "Standby", "standby");
    _cleanup_free_ char *b_restore = xasprintf(inst, "Running", "restore");
    _cleanup_free_ char *r_standby = http_reply("200 OK", b_standby);
    _cleanup_free_ char *r_restore = http_reply("200 OK", b_restore);
    _cleanup_free_ char *r409 = http_reply(
        "409 Conflict", "{\"code\": \"conflict\", \"message\": \"instance 'b' is Stopped\"}");
    const char *replies[] = { r_standby, r409, r_restore, r_restore };
    struct fake_server *f = fake_server_start(replies, NULL, 4);
    struct cli_ctx ctx = { .socket = f->path };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct lifecycle_opts so;
    struct lifecycle_opts ro;
    char *out, *errout;
    int rc;
    (void)state;

    /* One name fails: the other is still done and traced; the exit code says a failure. */
    const char *sargv[] = { "standby", "--trace", "web-1", "b", NULL };
    assert_int_equal(cli_parse_lifecycle(P(sargv), &so, &err), 0);
    expect_output(call_lifecycle, &ctx, &so, 1, "web-1\n",
                  "pause                3.0 ms\n"
                  "save_snapshot     1500.0 ms\n"
                  "stop_vmm            27.2 ms\n"
                  "total             1530.3 ms\n"
                  "torpor: instance 'b' is Stopped\n");

    /* Without --trace, names only: nothing on stderr. */
    const char *rargv[] = { "restore", "web-1", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rargv), &ro, &err), 0);
    expect_output(call_lifecycle, &ctx, &ro, 0, "web-1\n", "");
    ro.trace = true;
    out = capture(call_lifecycle, &ctx, &ro, &rc, &errout);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "web-1\n");
    assert_non_null(strstr(errout, "save_snapshot     1500.0 ms\n"));
    free(out);
    free(errout);

    fake_server_stop(f);
    expect_request(f, 0, "POST /v1/instances/web-1/standby HTTP/1.1\r\n");
    expect_request(f, 0, "\r\n\r\n{}");
    expect_request(f, 1, "POST /v1/instances/b/standby HTTP/1.1\r\n");
    expect_request(f, 2, "POST /v1/instances/web-1/restore HTTP/1.1\r\n");
    expect_request(f, 3, "POST /v1/instances/web-1/restore HTTP/1.1\r\n");
    fake_server_free(f);
}

/* The rows without a test above: start's path, and rm's DELETE with and without --force. */
static void
test_cmd_start_rm_requests(void **state)
{
    _cleanup_free_ char *r200 = http_reply("200 OK", "{\"id\": \"aa\", \"state\": \"Running\"}");
    _cleanup_free_ char *r204 = xstrdup("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    const char *replies[] = { r200, r204, r204 };
    struct fake_server *f = fake_server_start(replies, NULL, 3);
    struct cli_ctx ctx = { .socket = f->path };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct lifecycle_opts o;
    (void)state;

    const char *start[] = { "start", "a", NULL };
    assert_int_equal(cli_parse_lifecycle(P(start), &o, &err), 0);
    assert_false(o.trace || o.force);
    expect_output(call_lifecycle, &ctx, &o, 0, "a\n", "");
    const char *rm[] = { "rm", "-f", "b", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm), &o, &err), 0);
    expect_output(call_lifecycle, &ctx, &o, 0, "b\n", "");
    const char *rm2[] = { "rm", "c", NULL };
    assert_int_equal(cli_parse_lifecycle(P(rm2), &o, &err), 0);
    expect_output(call_lifecycle, &ctx, &o, 0, "c\n", "");

    fake_server_stop(f);
    expect_request(f, 0, "POST /v1/instances/a/start HTTP/1.1\r\n");
    expect_request(f, 0, "\r\n\r\n{}");
    expect_request(f, 1, "DELETE /v1/instances/b?force=true HTTP/1.1\r\n");
    /* DELETE sends no body: the request ends with its headers. */
    expect_request(f, 1, "\r\n\r\n");
    assert_int_equal(f->request_lens[1], strstr(f->requests[1], "\r\n\r\n") + 4 - f->requests[1]);
    expect_request(f, 2, "DELETE /v1/instances/c HTTP/1.1\r\n");
    fake_server_free(f);
}

static int
call_verb_lifecycle(const struct cli_ctx *ctx, const void *argv)
{
    char **words = (char **)argv;
    int argc = 0;

    while (words[argc])
        argc++;
    return cli_verb_lifecycle(ctx, argc, words);
}

/* The whole verb: usage text with its option list, and usage errors (exit 2). */
static void
test_verb_lifecycle_usage(void **state)
{
    struct cli_ctx ctx = { .socket = "/tmp/torpor-cli-no-such-dir/api.sock" };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct lifecycle_opts o = { .n_names = 9 };
    (void)state;

    const char *rm[] = { "rm", "--help", NULL };
    expect_output(call_verb_lifecycle, &ctx, rm, 0,
                  "Usage: torpor rm [OPTIONS] NAME...\n"
                  "       torpor rm --all [--force]\n"
                  "\n"
                  "Remove instances; prints each NAME removed. NAME is an instance\n"
                  "name, id, or unique id prefix. --all removes every instance: on a\n"
                  "terminal it asks first; otherwise it needs --force.\n"
                  "\n"
                  "Options:\n"
                  "  -f, --force    remove even if its VMM runs (it is killed); with --all, do not "
                  "ask\n"
                  "  -a, --all      remove every instance\n"
                  "  -h, --help     print this help\n",
                  "");
    const char *stop[] = { "stop", "-h", NULL };
    expect_output(call_verb_lifecycle, &ctx, stop, 0,
                  "Usage: torpor stop [OPTIONS] NAME...\n"
                  "\n"
                  "Stop instances; prints each NAME stopped (a stopped one is no error). NAME\n"
                  "is an instance name, id, or unique id prefix.\n"
                  "\n"
                  "Options:\n"
                  "  -f, --force    also stop one on standby (its snapshot goes)\n"
                  "  -h, --help     print this help\n",
                  "");
    const char *standby[] = { "standby", "--help", NULL };
    expect_output(call_verb_lifecycle, &ctx, standby, 0, NULL, "");
    const char *start[] = { "start", "--trace", "a", NULL };
    expect_output(call_verb_lifecycle, &ctx, start, 2, "",
                  "torpor: unknown flag: --trace\nSee 'torpor start --help'.\n");
    const char *restore[] = { "restore", NULL };
    expect_output(call_verb_lifecycle, &ctx, restore, 2, "",
                  "torpor: 'restore' needs at least one NAME\nSee 'torpor restore --help'.\n");

    /* The parser knows its five verbs only. */
    const char *other[] = { "ps", "a", NULL };
    assert_int_equal(cli_parse_lifecycle(P(other), &o, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "unknown command 'ps'");
    assert_int_equal(o.n_names, 9);
}

static int
call_verb(const struct cli_ctx *ctx, const void *argv)
{
    char **words = (char **)argv;
    int argc = 0;

    while (words[argc])
        argc++;
    return cli_verb_find(words[0])->fn(ctx, argc, words);
}

/* Every verb of the table: "VERB NAME --help" and "VERB -h NAME" print its usage to stdout and
 * exit 0 without a request (the socket does not exist: any request would fail, loudly). */
static void
test_verb_help_everywhere(void **state)
{
    struct cli_ctx ctx = { .socket = "/tmp/torpor-cli-no-such-dir/api.sock" };
    (void)state;

    for (size_t i = 0; i < cli_n_verbs; i++) {
        _cleanup_free_ char *want = xasprintf("Usage: torpor %s", cli_verbs[i].name);
        /* run's first word is its CMD, which a --help after it belongs to. */
        bool run = strcmp(cli_verbs[i].name, "run") == 0;
        const char *forms[][4] = {
            { cli_verbs[i].name, run ? "--no-agent" : "web", "--help", NULL },
            { cli_verbs[i].name, "-h", "web", NULL },
        };

        for (size_t k = 0; k < ELEMENTSOF(forms); k++) {
            char *out, *errout;
            int rc;

            out = capture(call_verb, &ctx, forms[k], &rc, &errout);
            if (rc != 0 || strncmp(out, want, strlen(want)) != 0 || *errout)
                fail_msg("%s form %zu: rc %d, stdout '%s', stderr '%s'", cli_verbs[i].name, k, rc,
                         out, errout);
            assert_non_null(strstr(out, "  -h, --help"));
            free(out);
            free(errout);
        }
    }
}

/* "rm web --help" used to remove web: the fake torpord sees only the next command's request. */
static void
test_verb_rm_help_removes_nothing(void **state)
{
    _cleanup_free_ char *r204 = xstrdup("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    const char *replies[] = { r204 };
    struct fake_server *f = fake_server_start(replies, NULL, 1);
    struct cli_ctx ctx = { .socket = f->path };
    (void)state;

    const char *help[] = { "rm", "web", "--help", NULL };
    expect_output(call_verb, &ctx, help, 0, NULL, "");
    const char *help2[] = { "rm", "-f", "web", "-h", NULL };
    expect_output(call_verb, &ctx, help2, 0, NULL, "");
    const char *rm[] = { "rm", "other", "-f", NULL };
    expect_output(call_verb, &ctx, rm, 0, "other\n", "");

    fake_server_stop(f);
    expect_request(f, 0, "DELETE /v1/instances/other?force=true HTTP/1.1\r\n");
    fake_server_free(f);
}

/* Usage errors: docker's words, the hint, and the exit code (exec's cannot be a CMD's). */
static void
test_verb_usage_errors(void **state)
{
    struct cli_ctx ctx = { .socket = "/tmp/torpor-cli-no-such-dir/api.sock" };
    (void)state;

    const char *rm[] = { "rm", "web", "--foo", NULL };
    expect_output(call_verb, &ctx, rm, CLI_EXIT_USAGE, "",
                  "torpor: unknown flag: --foo\nSee 'torpor rm --help'.\n");
    const char *ps[] = { "ps", "-ax", NULL };
    expect_output(call_verb, &ctx, ps, CLI_EXIT_USAGE, "",
                  "torpor: unknown shorthand flag: 'x' in -ax\nSee 'torpor ps --help'.\n");
    const char *exec[] = { "exec", "--foo", "web", "ls", NULL };
    expect_output(call_verb, &ctx, exec, CLI_EXIT_EXEC_DAEMON, "",
                  "torpor: unknown flag: --foo\nSee 'torpor exec --help'.\n");
    const char *exec2[] = { "exec", "web", NULL };
    expect_output(call_verb, &ctx, exec2, CLI_EXIT_EXEC_DAEMON, "",
                  "torpor: 'exec' needs a CMD to run in 'web'\nSee 'torpor exec --help'.\n");
    const char *run[] = { "run", "-m", "1", NULL };
    expect_output(call_verb, &ctx, run, CLI_EXIT_EXEC_DAEMON, "",
                  "torpor: option '--memory' expects a size from 64M to 64G, not '1'\n"
                  "See 'torpor run --help'.\n");
    const char *fork[] = { "fork", "--name", "a", "web", "--count", "2", NULL };
    expect_output(call_verb, &ctx, fork, CLI_EXIT_USAGE, "", NULL);

    /* run's option list comes from its table. */
    const char *run_help[] = { "run", "--help", NULL };
    char *out, *errout;
    int rc;
    out = capture(call_verb, &ctx, run_help, &rc, &errout);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\n  -m, --memory SIZE "));
    assert_non_null(strstr(out, "\n      --disk-size SIZE "));
    free(out);
    free(errout);
}

/* fork prints each child's id; --trace reads the source back for the fork's phases. */
static void
test_cmd_fork(void **state)
{
    _cleanup_free_ char *r201 = http_reply(
        "201 Created", "{\"instances\": [{\"id\": \"aaaaaaaaaaaaaaa1\", \"name\": \"w-1\"}, "
                       "{\"id\": \"aaaaaaaaaaaaaaa2\", \"name\": \"w-2\"}]}");
    _cleanup_free_ char *rsrc = http_reply(
        "200 OK", "{\"id\": \"3f2a9c0d1b4e5f60\", \"name\": \"web\", \"state\": \"Running\", "
                  "\"last_operation\": {\"op\": \"fork\", \"ok\": true, \"total_ms\": 812.5, "
                  "\"phases\": [{\"name\": \"freeze\", \"ms\": 40}, "
                  "{\"name\": \"start_children\", \"ms\": 770.5}]}}");
    _cleanup_free_ char *r501 = http_reply(
        "501 Not Implemented", "{\"code\": \"unsupported\", \"message\": \"fc cannot fork\"}");
    _cleanup_free_ char *rbad = http_reply("201 Created", "{\"instances\": [{\"name\": \"x\"}]}");
    const char *replies[] = { r201, rsrc, r501, rbad };
    struct fake_server *f = fake_server_start(replies, NULL, 4);
    struct cli_ctx ctx = { .socket = f->path };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct fork_opts o;
    (void)state;

    const char *argv[] = { "fork",      "--count", "2",   "--prefix", "w",
                           "--no-wait", "--trace", "web", NULL };
    assert_int_equal(cli_parse_fork(P(argv), &o, &err), 0);
    expect_output(call_fork, &ctx, &o, 0,
                  "aaaaaaaaaaaaaaa1\naaaaaaaaaaaaaaa2\n", /* ids alone on stdout */
                  "freeze               40.0 ms\n"
                  "start_children      770.5 ms\n"
                  "total               812.5 ms\n");

    /* The daemon's refusal: its message, exit 1, nothing on stdout, no second request. */
    const char *argv2[] = { "fork", "--trace", "web", NULL };
    assert_int_equal(cli_parse_fork(P(argv2), &o, &err), 0);
    expect_output(call_fork, &ctx, &o, 1, "", "torpor: fc cannot fork\n");

    /* A 2xx reply without ids is a failure too. */
    const char *argv3[] = { "fork", "--name", "copy", "--standby", "web", NULL };
    assert_int_equal(cli_parse_fork(P(argv3), &o, &err), 0);
    expect_output(call_fork, &ctx, &o, 1, "", "torpor: torpord's reply has no instance ids\n");

    fake_server_stop(f);
    expect_request(f, 0, "POST /v1/instances/web/fork HTTP/1.1\r\n");
    expect_request(f, 0, "\r\n\r\n{\"count\":2,\"prefix\":\"w\",\"no_wait\":true}");
    expect_request(f, 1, "GET /v1/instances/web HTTP/1.1\r\n");
    expect_request(f, 2, "POST /v1/instances/web/fork HTTP/1.1\r\n");
    expect_request(f, 2, "\r\n\r\n{}");
    expect_request(f, 3, "\r\n\r\n{\"name\":\"copy\",\"standby\":true}");
    fake_server_free(f);
}

/* inspect prints the daemon's instance object whole, fields it does not know included. */
static void
test_cmd_inspect_prints_everything(void **state)
{
    static const char body[] =
        "{\"id\": \"aa\", \"name\": \"a\", \"state\": \"Standby\", \"pid\": null, "
        "\"last_operation\": {\"op\": \"standby\", \"ok\": true, \"total_ms\": 9.5, "
        "\"phases\": [{\"name\": \"pause\", \"ms\": 1.5}]}, \"snapshot\": {\"bytes\": 123}}";
    _cleanup_free_ char *r200 = http_reply("200 OK", body);
    const char *replies[] = { r200 };
    struct fake_server *f = fake_server_start(replies, NULL, 1);
    struct cli_ctx ctx = { .socket = f->path };
    const char *names[] = { "a" };
    struct inspect_opts o = { .names = (char **)names, .n_names = 1 };
    json_t *printed, *want;
    char *out, *errout;
    int rc;
    (void)state;

    out = capture(call_inspect, &ctx, &o, &rc, &errout);
    assert_int_equal(rc, 0);
    assert_string_equal(errout, "");
    printed = json_loads(out, 0, NULL);
    want = json_loads(body, 0, NULL);
    assert_non_null(printed);
    assert_non_null(want);
    /* Always an array, as docker's, even for one name; nothing dropped. */
    assert_true(json_is_array(printed));
    assert_int_equal(json_array_size(printed), 1);
    assert_true(json_equal(json_array_get(printed, 0), want));
    json_decref(printed);
    json_decref(want);
    free(out);
    free(errout);
    fake_server_stop(f);
    fake_server_free(f);
}

static void
test_attach_parse_head(void **state)
{
    int status;
    long long cl;
    size_t head;
    (void)state;

    const char *up = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp\r\n\r\n\x01rest";
    assert_int_equal(attach_parse_head(up, strlen(up), &status, &cl, &head), 0);
    assert_int_equal(status, 101);
    assert_int_equal(cl, -1);
    assert_string_equal(up + head, "\x01rest");

    const char *e = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                    "content-length:  17\r\n\r\n{\"message\":\"x\"}";
    assert_int_equal(attach_parse_head(e, strlen(e), &status, &cl, &head), 0);
    assert_int_equal(status, 404);
    assert_int_equal(cl, 17);

    assert_int_equal(attach_parse_head(up, 20, &status, &cl, &head), -EAGAIN);
    assert_int_equal(attach_parse_head("SSH-2.0", 7, &status, &cl, &head), -EPROTO);
    const char *bad = "HTTP/1.1 1x1 Oops\r\n\r\n";
    assert_int_equal(attach_parse_head(bad, strlen(bad), &status, &cl, &head), -EPROTO);
    const char *badcl = "HTTP/1.1 500 E\r\nContent-Length: -1\r\n\r\n";
    assert_int_equal(attach_parse_head(badcl, strlen(badcl), &status, &cl, &head), -EPROTO);
}

/* kill -s: names with or without SIG in any case, and numbers; nothing else. */
static void
test_parse_signal(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    int sig = 0;
    (void)state;

    const struct {
        const char *s;
        int sig;
    } ok[] = { { "KILL", SIGKILL },    { "SIGKILL", SIGKILL }, { "kill", SIGKILL },
               { "sigterm", SIGTERM }, { "9", SIGKILL },       { "15", SIGTERM },
               { "HUP", SIGHUP },      { "SIGUSR1", SIGUSR1 }, { "64", 64 } };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        assert_int_equal(cli_parse_signal(ok[i].s, &sig, &err), 0);
        assert_int_equal(sig, ok[i].sig);
    }
    const char *bad[] = { "", "FOO", "SIG", "0", "65", "-9", "9x", "SIGSIGKILL", " 9" };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        sig = 77;
        assert_int_equal(cli_parse_signal(bad[i], &sig, &err), -EINVAL);
        assert_int_equal(sig, 77);
        tp_err_clear(&err);
    }
    assert_int_equal(cli_parse_signal("FOO", &sig, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "invalid signal: 'FOO'");

    /* The parser takes HUP (a valid signal); the runner refuses it, without a request. */
    struct kill_opts o;
    const char *argv[] = { "kill", "web", "-s", "HUP", NULL };
    assert_int_equal(cli_parse_kill(4, (char **)argv, &o, &err), 0);
    assert_int_equal(o.signal, SIGHUP);
    assert_int_equal(o.n_names, 1);
    const char *dflt[] = { "kill", "web", NULL };
    assert_int_equal(cli_parse_kill(2, (char **)dflt, &o, &err), 0);
    assert_int_equal(o.signal, SIGKILL);
}

/* logs --tail: a number of lines (0 too) or "all". */
static void
test_parse_tail(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    int64_t n = 5;
    (void)state;

    assert_int_equal(cli_parse_tail("all", &n, &err), 0);
    assert_int_equal(n, -1);
    assert_int_equal(cli_parse_tail("0", &n, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(cli_parse_tail("120", &n, &err), 0);
    assert_int_equal(n, 120);
    const char *bad[] = { "", "-1", "+3", "1k", "ALL", "99999999999999999999" };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        assert_int_equal(cli_parse_tail(bad[i], &n, &err), -EINVAL);
        tp_err_clear(&err);
    }
}

/* rm --all's prompt: y or yes (any case) and nothing else. */
static void
test_rm_all_confirmed(void **state)
{
    (void)state;
    assert_true(cli_rm_all_confirmed("y\n"));
    assert_true(cli_rm_all_confirmed("Y"));
    assert_true(cli_rm_all_confirmed("yes\n"));
    assert_true(cli_rm_all_confirmed("YeS\r\n"));
    assert_false(cli_rm_all_confirmed("\n"));
    assert_false(cli_rm_all_confirmed("n\n"));
    assert_false(cli_rm_all_confirmed("yess\n"));
    assert_false(cli_rm_all_confirmed(" y\n"));
}

/* rm: --all excludes NAMEs; without it a NAME is needed. */
static void
test_parse_rm_all(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct lifecycle_opts o;
    (void)state;

    const char *all[] = { "rm", "-f", "--all", NULL };
    assert_int_equal(cli_parse_lifecycle(3, (char **)all, &o, &err), 0);
    assert_true(o.all && o.force);
    assert_int_equal(o.n_names, 0);
    const char *both[] = { "rm", "-a", "web", NULL };
    assert_int_equal(cli_parse_lifecycle(3, (char **)both, &o, &err), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "'rm --all' takes no NAME, got 'web'");
    tp_err_clear(&err);
    const char *stop_all[] = { "stop", "--all", NULL };
    assert_int_equal(cli_parse_lifecycle(2, (char **)stop_all, &o, &err), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_every_option),
        cmocka_unit_test(test_run_keeps_command),
        cmocka_unit_test(test_run_bad_values),
        cmocka_unit_test(test_run_publish),
        cmocka_unit_test(test_port_format),
        cmocka_unit_test(test_run_relative_paths_become_absolute),
        cmocka_unit_test(test_exec_keeps_guest_options),
        cmocka_unit_test(test_exec_env_workdir),
        cmocka_unit_test(test_non_utf8_values),
        cmocka_unit_test(test_missing_names),
        cmocka_unit_test(test_ps_flags),
        cmocka_unit_test(test_rm_stop_start_names),
        cmocka_unit_test(test_standby_restore_names),
        cmocka_unit_test(test_parse_args_syntax),
        cmocka_unit_test(test_parse_args_values),
        cmocka_unit_test(test_fork_options),
        cmocka_unit_test(test_fork_usage_errors),
        cmocka_unit_test(test_options_anywhere),
        cmocka_unit_test(test_help_anywhere),
        cmocka_unit_test(test_run_sizes),
        cmocka_unit_test(test_global_socket_precedence),
        cmocka_unit_test(test_format_ago),
        cmocka_unit_test(test_instance_path),
        cmocka_unit_test(test_decoder_split_everywhere),
        cmocka_unit_test(test_decoder_error_frame),
        cmocka_unit_test(test_decoder_protocol_errors),
        cmocka_unit_test(test_client_error_reply),
        cmocka_unit_test(test_client_post_large_body),
        cmocka_unit_test(test_client_unreachable),
        cmocka_unit_test(test_client_stream),
        cmocka_unit_test(test_cmd_ps_outputs),
        cmocka_unit_test(test_cmd_run_trace),
        cmocka_unit_test(test_cmd_inspect_several),
        cmocka_unit_test(test_cmd_exec_exit_codes),
        cmocka_unit_test(test_cmd_stop_continues_past_failure),
        cmocka_unit_test(test_cmd_standby_restore_trace),
        cmocka_unit_test(test_cmd_restart),
        cmocka_unit_test(test_cmd_start_rm_requests),
        cmocka_unit_test(test_verb_lifecycle_usage),
        cmocka_unit_test(test_verb_help_everywhere),
        cmocka_unit_test(test_parse_signal),
        cmocka_unit_test(test_parse_tail),
        cmocka_unit_test(test_rm_all_confirmed),
        cmocka_unit_test(test_parse_rm_all),
        cmocka_unit_test(test_verb_rm_help_removes_nothing),
        cmocka_unit_test(test_verb_usage_errors),
        cmocka_unit_test(test_cmd_inspect_prints_everything),
        cmocka_unit_test(test_cmd_fork),
        cmocka_unit_test(test_attach_parse_head),
    };
    int r;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    r = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return r;
}
