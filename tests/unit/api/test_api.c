/* Unit tests for api/: request parsing, instance objects, error map, router, frame headers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka.h needs the headers above (jmp_buf, va_list, size_t) included first. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "api/body.h"
#include "api/errmap.h"
#include "api/exec_input.h"
#include "api/router.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/macro.h"
#include "util/xalloc.h"

/* Parse a create body that must fail with -EINVAL and a message containing needle. */
static void
create_fails(const char *body, const char *needle)
{
    struct api_create_body b = { 0 };
    struct tp_err err = { 0 };

    assert_int_equal(api_parse_create(body, strlen(body), &b, &err), -EINVAL);
    if (!strstr(tp_err_msg(&err), needle))
        fail_msg("body %s: message '%s' lacks '%s'", body, tp_err_msg(&err), needle);
    assert_null(b.name); /* ret untouched on failure */
    assert_null(b.req.cmd);
    tp_err_clear(&err);
}

static void
exec_fails(const char *body, const char *needle)
{
    struct api_exec_body b = { 0 };
    struct tp_err err = { 0 };

    assert_int_equal(api_parse_exec(body, strlen(body), &b, &err), -EINVAL);
    if (!strstr(tp_err_msg(&err), needle))
        fail_msg("body %s: message '%s' lacks '%s'", body, tp_err_msg(&err), needle);
    assert_null(b.argv);
    tp_err_clear(&err);
}

static void
test_create_full(void **state)
{
    const char *body = "{\"name\": \"web-1\", \"memory_mib\": 512, \"vcpus\": 2,"
                       " \"hypervisor\": \"qemu\", \"kernel\": \"/k/vmlinuz\","
                       " \"initrd\": \"/k/initrd\", \"rootfs\": \"/srv/root.ext4\","
                       " \"cmd\": [\"/bin/sh\", \"-c\", \"echo hi\"], \"no_agent\": true,"
                       " \"accel\": \"tcg\", \"disk_mib\": 1024, \"network\": \"none\"}";
    struct api_create_body b = { 0 };
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(api_parse_create(body, strlen(body), &b, &err), 0);
    assert_string_equal(b.req.name, "web-1");
    assert_int_equal(b.req.memory_mib, 512);
    assert_int_equal(b.req.vcpus, 2);
    assert_string_equal(b.req.hypervisor, "qemu");
    assert_string_equal(b.req.kernel, "/k/vmlinuz");
    assert_string_equal(b.req.initrd, "/k/initrd");
    assert_string_equal(b.req.rootfs, "/srv/root.ext4");
    assert_non_null(b.req.cmd);
    assert_string_equal(b.req.cmd[0], "/bin/sh");
    assert_string_equal(b.req.cmd[1], "-c");
    assert_string_equal(b.req.cmd[2], "echo hi");
    assert_null(b.req.cmd[3]);
    assert_true(b.req.no_agent);
    assert_string_equal(b.req.accel, "tcg");
    assert_int_equal(b.req.disk_mib, 1024);
    assert_string_equal(b.req.network, "none");
    assert_int_equal(err.code, 0);
    api_create_body_clear(&b);
    assert_null(b.req.name);
}

static void
test_create_defaults(void **state)
{
    struct api_create_body b = { 0 };
    (void)state;

    assert_int_equal(api_parse_create("{}", 2, &b, NULL), 0);
    assert_null(b.req.name);
    assert_int_equal(b.req.memory_mib, 0);
    assert_int_equal(b.req.vcpus, 0);
    assert_null(b.req.hypervisor);
    assert_null(b.req.kernel);
    assert_null(b.req.initrd);
    assert_null(b.req.rootfs);
    assert_null(b.req.cmd);
    assert_false(b.req.no_agent);
    assert_null(b.req.accel);
    assert_int_equal(b.req.disk_mib, 0);
    assert_null(b.req.network);
    api_create_body_clear(&b);

    /* Explicit nulls mean the same as absent fields. */
    const char *nulls = "{\"name\": null, \"initrd\": null, \"cmd\": null, \"memory_mib\": null}";
    assert_int_equal(api_parse_create(nulls, strlen(nulls), &b, NULL), 0);
    assert_null(b.req.name);
    assert_null(b.req.cmd);
    assert_int_equal(b.req.memory_mib, 0);
    api_create_body_clear(&b);

    /* Boundaries are inclusive. */
    const char *edges = "{\"memory_mib\": 64, \"vcpus\": 64, \"no_agent\": false}";
    assert_int_equal(api_parse_create(edges, strlen(edges), &b, NULL), 0);
    assert_int_equal(b.req.memory_mib, 64);
    assert_int_equal(b.req.vcpus, 64);
    api_create_body_clear(&b);
    edges = "{\"memory_mib\": 65536, \"vcpus\": 1}";
    assert_int_equal(api_parse_create(edges, strlen(edges), &b, NULL), 0);
    assert_int_equal(b.req.memory_mib, 65536);
    api_create_body_clear(&b);
}

static void
test_create_unknown_fields(void **state)
{
    (void)state;
    create_fails("{\"nmae\": \"x\"}", "unknown field 'nmae'");
    create_fails("{\"memory\": 256}", "unknown field 'memory'");
    create_fails("{\"id\": \"abc\"}", "unknown field 'id'");
    create_fails("{\"state\": \"Running\"}", "unknown field 'state'");
    create_fails("{\"agent\": true}", "unknown field 'agent'");
    /* Unknown even when null, and even after valid fields. */
    create_fails("{\"vcpus\": 1, \"extra\": null}", "unknown field 'extra'");
}

static void
test_create_wrong_types(void **state)
{
    (void)state;
    create_fails("{\"memory_mib\": \"256\"}", "field 'memory_mib' must be an integer, got string");
    create_fails("{\"memory_mib\": 256.0}", "field 'memory_mib' must be an integer, got number");
    create_fails("{\"vcpus\": true}", "field 'vcpus' must be an integer, got boolean");
    create_fails("{\"cmd\": \"ls\"}", "field 'cmd' must be an array of strings, got string");
    create_fails("{\"cmd\": [\"ls\", 1]}", "field 'cmd' must be an array of strings, element 1");
    create_fails("{\"cmd\": []}", "field 'cmd' must not be empty");
    create_fails("{\"no_agent\": 1}", "field 'no_agent' must be a boolean, got integer");
    create_fails("{\"name\": 7}", "field 'name' must be a string, got integer");
    create_fails("{\"kernel\": [\"/k\"]}", "field 'kernel' must be a string, got array");
    create_fails("{\"accel\": \"hvf\"}", "field 'accel' must be \"kvm\" or \"tcg\"");
    create_fails("{\"mem_backend\": \"lazy\"}", "field 'mem_backend' must be \"file\" or \"uffd\"");
    create_fails("{\"hypervisor\": \"\"}", "field 'hypervisor' must not be empty");
    create_fails("{\"disk_mib\": {}}", "field 'disk_mib' must be an integer, got object");
}

static void
test_create_ranges(void **state)
{
    (void)state;
    create_fails("{\"memory_mib\": 63}", "field 'memory_mib' must be between 64 and 65536, got 63");
    create_fails("{\"memory_mib\": 65537}", "got 65537");
    create_fails("{\"memory_mib\": -1}", "got -1");
    create_fails("{\"memory_mib\": 4294967552}", "got 4294967552"); /* would wrap in a u32 */
    create_fails("{\"vcpus\": 0}", "field 'vcpus' must be between 1 and 64, got 0");
    create_fails("{\"vcpus\": 65}", "got 65");
    create_fails("{\"disk_mib\": 0}", "field 'disk_mib' must be between");
    create_fails("{\"network\": \"bridge\"}",
                 "field 'network' must be \"default\" or \"none\", got 'bridge'");
    create_fails("{\"network\": true}", "field 'network' must be a string");
}

static void
test_create_ports(void **state)
{
    const char *body =
        "{\"network_mode\": \"shared\", \"ports\": ["
        "{\"host_port\": 8080, \"guest_port\": 80},"
        "{\"host_ip\": \"0.0.0.0\", \"host_port\": 5353, \"guest_port\": 53,"
        " \"proto\": \"udp\"},"
        "{\"host_ip\": null, \"host_port\": 65535, \"guest_port\": 1, \"proto\": null}]}";
    struct api_create_body b = { 0 };
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(api_parse_create(body, strlen(body), &b, &err), 0);
    assert_string_equal(b.req.network_mode, "shared");
    assert_int_equal(b.req.n_ports, 3);
    assert_int_equal(b.req.ports[0].host_ip, 0x7f000001); /* the default: the host itself */
    assert_int_equal(b.req.ports[0].host_port, 8080);
    assert_int_equal(b.req.ports[0].guest_port, 80);
    assert_int_equal(b.req.ports[0].proto, NET_PROTO_TCP);
    assert_int_equal(b.req.ports[1].host_ip, 0);
    assert_int_equal(b.req.ports[1].proto, NET_PROTO_UDP);
    assert_int_equal(b.req.ports[2].host_ip, 0x7f000001);
    assert_int_equal(b.req.ports[2].host_port, 65535);
    api_create_body_clear(&b);

    create_fails("{\"network_mode\": \"bridge\"}",
                 "field 'network_mode' must be \"isolated\" or \"shared\", got 'bridge'");
    create_fails("{\"ports\": {}}", "field 'ports' must be an array, got object");
    create_fails("{\"ports\": [80]}", "field 'ports[0]' must be an object, got integer");
    create_fails("{\"ports\": [{\"guest_port\": 80}]}", "field 'ports[0]' needs 'host_port'");
    create_fails("{\"ports\": [{\"host_port\": 80}]}", "field 'ports[0]' needs 'guest_port'");
    create_fails("{\"ports\": [{\"host_port\": 0, \"guest_port\": 80}]}",
                 "field 'ports[0].host_port' must be between 1 and 65535, got 0");
    create_fails("{\"ports\": [{\"host_port\": 80, \"guest_port\": 65536}]}",
                 "field 'ports[0].guest_port' must be between 1 and 65535, got 65536");
    create_fails("{\"ports\": [{\"host_port\": \"80\", \"guest_port\": 80}]}",
                 "field 'ports[0].host_port' must be an integer, got string");
    create_fails("{\"ports\": [{\"host_port\": 80, \"guest_port\": 80, \"proto\": \"sctp\"}]}",
                 "field 'ports[0].proto' must be \"tcp\" or \"udp\", got 'sctp'");
    create_fails("{\"ports\": [{\"host_ip\": \"::1\", \"host_port\": 80, \"guest_port\": 80}]}",
                 "field 'ports[0].host_ip' must be an IPv4 address, got '::1'");
    create_fails(
        "{\"ports\": [{\"host_ip\": \"localhost\", \"host_port\": 80, \"guest_port\": 1}]}",
        "must be an IPv4 address");
    create_fails("{\"ports\": [{\"host_port\": 80, \"guest_port\": 80, \"hostport\": 1}]}",
                 "unknown field 'ports[0].hostport'");
    /* One host port twice, even through 0.0.0.0; tcp and udp are apart. */
    create_fails("{\"ports\": [{\"host_port\": 80, \"guest_port\": 80},"
                 "{\"host_port\": 80, \"guest_port\": 81}]}",
                 "ports[1]: '127.0.0.1:80/tcp' is published twice (ports[0]: '127.0.0.1:80/tcp')");
    create_fails("{\"ports\": [{\"host_port\": 80, \"guest_port\": 80},"
                 "{\"host_ip\": \"0.0.0.0\", \"host_port\": 80, \"guest_port\": 81}]}",
                 "is published twice");
    const char *both = "{\"ports\": [{\"host_port\": 80, \"guest_port\": 80},"
                       "{\"host_port\": 80, \"guest_port\": 80, \"proto\": \"udp\"}]}";
    assert_int_equal(api_parse_create(both, strlen(both), &b, NULL), 0);
    api_create_body_clear(&b);
}

static void
test_create_paths_and_names(void **state)
{
    (void)state;
    create_fails("{\"kernel\": \"boot/vmlinuz\"}",
                 "field 'kernel' must be an absolute path, got 'boot/vmlinuz'");
    create_fails("{\"initrd\": \"\"}", "field 'initrd' must be an absolute path");
    create_fails("{\"rootfs\": \"./root\"}", "field 'rootfs' must be an absolute path");
    create_fails("{\"name\": \"Web\"}", "field 'name' must match");
    create_fails("{\"name\": \"-web\"}", "field 'name' must match");
    create_fails("{\"name\": \"\"}", "field 'name' must match");
    create_fails("{\"name\": \"a_b\"}", "field 'name' must match");
    create_fails("{\"name\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
                 "field 'name' must match"); /* 64 characters */

    struct api_create_body b = { 0 };
    const char *ok = "{\"name\": \"0-a-b\"}";
    assert_int_equal(api_parse_create(ok, strlen(ok), &b, NULL), 0);
    assert_string_equal(b.req.name, "0-a-b");
    api_create_body_clear(&b);
}

static void
test_create_malformed(void **state)
{
    (void)state;
    create_fails("{\"name\": \"x\"", "parse JSON body");
    create_fails("{\"name\": \"x\"} trailing", "parse JSON body");
    create_fails("{} {}", "parse JSON body");
    create_fails("", "parse JSON body");
    create_fails("[1, 2]", "request body must be a JSON object, got array");
    create_fails("\"x\"", "request body must be a JSON object, got string");
    create_fails("null", "request body must be a JSON object, got null");
    create_fails("{\"vcpus\": 1, \"vcpus\": 2}", "parse JSON body"); /* duplicate key */
    create_fails("{\"kernel\": \"/a\\u0000b\"}", "parse JSON body"); /* NUL inside a string */

    /* Not NUL-terminated: only len bytes count. */
    struct api_create_body b = { 0 };
    const char buf[] = { '{', '}', 'x' };
    assert_int_equal(api_parse_create(buf, 2, &b, NULL), 0);
    api_create_body_clear(&b);
    assert_int_equal(api_parse_create(buf, 3, &b, NULL), -EINVAL);

    /* A 2 MiB string is valid JSON; the 64 KiB limit belongs to the server. */
    size_t n = 2u << 20;
    _cleanup_free_ char *big = xmalloc(n + 64);
    int off = snprintf(big, 64, "{\"kernel\": \"/");
    memset(big + off, 'a', n);
    strcpy(big + off + n, "\"}");
    assert_int_equal(api_parse_create(big, strlen(big), &b, NULL), 0);
    assert_int_equal(strlen(b.req.kernel), n + 1);
    api_create_body_clear(&b);
}

static void
test_exec_parse(void **state)
{
    struct api_exec_body b = { 0 };
    const char *body =
        "{\"cmd\": [\"ls\", \"-la\"], \"env\": [\"A=1\", \"B=\"], \"cwd\": \"/tmp\"}";
    (void)state;

    assert_int_equal(api_parse_exec(body, strlen(body), &b, NULL), 0);
    assert_string_equal(b.req.argv[0], "ls");
    assert_string_equal(b.req.argv[1], "-la");
    assert_null(b.req.argv[2]);
    assert_string_equal(b.req.env[0], "A=1");
    assert_string_equal(b.req.env[1], "B=");
    assert_null(b.req.env[2]);
    assert_string_equal(b.req.cwd, "/tmp");
    api_exec_body_clear(&b);

    body = "{\"cmd\": [\"true\"]}";
    assert_int_equal(api_parse_exec(body, strlen(body), &b, NULL), 0);
    assert_null(b.req.env);
    assert_null(b.req.cwd);
    api_exec_body_clear(&b);

    body = "{\"cmd\": [\"true\"], \"env\": [], \"cwd\": null}";
    assert_int_equal(api_parse_exec(body, strlen(body), &b, NULL), 0);
    assert_non_null(b.req.env);
    assert_null(b.req.env[0]);
    api_exec_body_clear(&b);

    body = "{\"cmd\": [\"sh\"], \"stdin\": true, \"tty\": true, \"rows\": 30, \"cols\": 100, "
           "\"user\": \"nobody:65534\"}";
    assert_int_equal(api_parse_exec(body, strlen(body), &b, NULL), 0);
    assert_true(b.req.stdin_open);
    assert_true(b.req.tty);
    assert_int_equal(b.req.rows, 30);
    assert_int_equal(b.req.cols, 100);
    assert_string_equal(b.req.user, "nobody:65534");
    assert_false(b.detach);
    api_exec_body_clear(&b);

    body = "{\"cmd\": [\"sleep\", \"9\"], \"detach\": true}";
    assert_int_equal(api_parse_exec(body, strlen(body), &b, NULL), 0);
    assert_true(b.detach);
    assert_false(b.req.stdin_open);
    api_exec_body_clear(&b);
}

struct input_log {
    char text[256];
};

static int
log_input(const struct exec_input_event *ev, void *userdata, struct tp_err *err)
{
    struct input_log *l = userdata;
    size_t n = strlen(l->text);

    (void)err;
    if (ev->kind == EXEC_INPUT_STDIN)
        snprintf(l->text + n, sizeof(l->text) - n, "in[%.*s]", (int)ev->len,
                 (const char *)ev->data);
    else if (ev->kind == EXEC_INPUT_RESIZE)
        snprintf(l->text + n, sizeof(l->text) - n, "size[%ux%u]", ev->rows, ev->cols);
    else
        snprintf(l->text + n, sizeof(l->text) - n, "sig[%d]", ev->sig);
    return 0;
}

static void
test_exec_input(void **state)
{
    static const uint8_t frames[] = {
        1, 0, 0, 0, 0, 0, 0, 2, 'h', 'i',         /* stdin "hi" */
        5, 0, 0, 0, 0, 0, 0, 4, 0,   30,  0, 100, /* resize 30x100 */
        6, 0, 0, 0, 0, 0, 0, 4, 0,   0,   0, 2,   /* SIGINT */
        1, 0, 0, 0, 0, 0, 0, 0,                   /* close stdin */
    };
    (void)state;

    /* Every split point gives the same events. */
    for (size_t cut = 0; cut <= sizeof(frames); cut++) {
        struct input_log l = { "" };
        struct exec_input d;
        exec_input_init(&d);
        assert_int_equal(exec_input_feed(&d, frames, cut, log_input, &l, NULL), 0);
        assert_int_equal(
            exec_input_feed(&d, frames + cut, sizeof(frames) - cut, log_input, &l, NULL), 0);
        assert_string_equal(l.text, "in[hi]size[30x100]sig[2]in[]");
        exec_input_done(&d);
    }

    static const struct {
        uint8_t f[12];
        size_t len;
        const char *msg;
    } bad[] = {
        { { 2, 0, 0, 0, 0, 0, 0, 0 }, 8, "unknown frame kind 2" },
        { { 1, 0, 1, 0, 0, 0, 0, 0 }, 8, "reserved header bytes" },
        { { 5, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3 }, 11, "needs 4 bytes" },
        { { 6, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 65 }, 12, "signal 65 is not 1..64" },
        { { 1, 0, 0, 0, 0, 0x10, 0, 1 }, 8, "is over" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tp_err err = { 0 };
        struct input_log l = { "" };
        struct exec_input d;
        exec_input_init(&d);
        assert_int_equal(exec_input_feed(&d, bad[i].f, bad[i].len, log_input, &l, &err), -EPROTO);
        assert_non_null(strstr(tp_err_msg(&err), bad[i].msg));
        tp_err_clear(&err);
        exec_input_done(&d);
    }
}

static void
test_exec_errors(void **state)
{
    (void)state;
    exec_fails("{}", "field 'cmd' is required");
    exec_fails("{\"env\": [\"A=1\"]}", "field 'cmd' is required");
    exec_fails("{\"cmd\": null}", "field 'cmd' must be an array of strings, got null");
    exec_fails("{\"cmd\": []}", "field 'cmd' must not be empty");
    exec_fails("{\"cmd\": [\"ls\", null]}", "element 1 is null");
    exec_fails("{\"cmd\": [\"ls\", 3]}", "element 1 is integer");
    exec_fails("{\"cmd\": \"ls\"}", "field 'cmd' must be an array of strings, got string");
    exec_fails("{\"cmd\": [\"ls\"], \"env\": [\"NOEQUALS\"]}",
               "field 'env' element 0 must be \"KEY=VALUE\", got 'NOEQUALS'");
    exec_fails("{\"cmd\": [\"ls\"], \"env\": [\"A=1\", \"=v\"]}", "field 'env' element 1");
    exec_fails("{\"cmd\": [\"ls\"], \"env\": \"A=1\"}", "field 'env' must be an array");
    exec_fails("{\"cmd\": [\"ls\"], \"cwd\": \"tmp\"}", "field 'cwd' must be an absolute path");
    exec_fails("{\"cmd\": [\"ls\"], \"tty\": 1}", "field 'tty' must be a boolean");
    exec_fails("{\"cmd\": [\"ls\"], \"tty_size\": 1}", "unknown field 'tty_size'");
    exec_fails("{\"cmd\": [\"ls\"], \"rows\": 24}", "they need 'tty'");
    exec_fails("{\"cmd\": [\"ls\"], \"tty\": true, \"cols\": 65536}", "field 'cols'");
    exec_fails("{\"cmd\": [\"ls\"], \"detach\": true, \"stdin\": true}", "'detach' excludes");
    exec_fails("{\"cmd\": [\"ls\"], \"user\": \"\"}", "field 'user' must be USER or UID");
    exec_fails("{\"cmd\": [\"ls\"], \"user\": \"a:b:c\"}", "field 'user'");
    exec_fails("{\"cmd\": [\"ls\"], \"user\": \"a b\"}", "field 'user'");
    exec_fails("{\"cmd\": [\"ls\"], \"user\": \"a:\"}", "field 'user'");
    exec_fails("[\"ls\"]", "request body must be a JSON object");
    exec_fails("{\"cmd\": [\"ls\"]", "parse JSON body");
}

static void
test_empty_body(void **state)
{
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(api_parse_empty(NULL, 0, NULL), 0);
    assert_int_equal(api_parse_empty("{}", 2, NULL), 0);
    assert_int_equal(api_parse_empty(" { } ", 5, NULL), 0);
    assert_int_equal(api_parse_empty("{\"force\": true}", 15, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "unknown field 'force'"));
    assert_int_equal(api_parse_empty("[]", 2, &err), -EINVAL);
    assert_int_equal(api_parse_empty("x", 1, &err), -EINVAL);
    tp_err_clear(&err);
}

/* Parse a fork body that must fail with -EINVAL and a message containing needle. */
static void
fork_fails(const char *body, const char *needle)
{
    struct api_fork_body b = { .req.count = 77 };
    struct tp_err err = { 0 };

    assert_int_equal(api_parse_fork(body, strlen(body), &b, &err), -EINVAL);
    if (!strstr(tp_err_msg(&err), needle))
        fail_msg("body %s: message '%s' lacks '%s'", body, tp_err_msg(&err), needle);
    assert_int_equal(b.req.count, 77); /* ret untouched on failure */
    assert_null(b.name);
    assert_null(b.prefix);
    tp_err_clear(&err);
}

static void
test_fork_body(void **state)
{
    struct api_fork_body b = { 0 };
    struct tp_err err = { 0 };
    (void)state;

    /* No body at all, or an empty object: one child, every default. */
    assert_int_equal(api_parse_fork(NULL, 0, &b, &err), 0);
    assert_int_equal(b.req.count, 1);
    assert_null(b.req.name);
    assert_null(b.req.prefix);
    assert_false(b.req.standby);
    assert_false(b.req.no_wait);
    api_fork_body_clear(&b);
    assert_int_equal(api_parse_fork(" {} ", 4, &b, &err), 0);
    assert_int_equal(b.req.count, 1);
    api_fork_body_clear(&b);

    const char *full = "{\"count\": 64, \"prefix\": \"web\", \"standby\": true, \"no_wait\": true}";
    assert_int_equal(api_parse_fork(full, strlen(full), &b, &err), 0);
    assert_int_equal(b.req.count, 64);
    assert_string_equal(b.req.prefix, "web");
    assert_ptr_equal(b.req.prefix, b.prefix); /* req points into the owned fields */
    assert_null(b.req.name);
    assert_true(b.req.standby);
    assert_true(b.req.no_wait);
    api_fork_body_clear(&b);
    assert_null(b.req.prefix);

    const char *named = "{\"name\": \"web-copy\", \"count\": 1, \"standby\": false}";
    assert_int_equal(api_parse_fork(named, strlen(named), &b, &err), 0);
    assert_string_equal(b.req.name, "web-copy");
    assert_int_equal(b.req.count, 1);
    assert_false(b.req.standby);
    api_fork_body_clear(&b);

    const char *only_no_wait = "{\"no_wait\": true}";
    assert_int_equal(api_parse_fork(only_no_wait, strlen(only_no_wait), &b, &err), 0);
    assert_true(b.req.no_wait);
    assert_false(b.req.standby);
    assert_int_equal(b.req.count, 1);
    api_fork_body_clear(&b);

    /* The longest prefix leaves room for "-NN"; the longest name is a full 63. */
    char body[128];
    snprintf(body, sizeof(body), "{\"prefix\": \"%060d\", \"count\": 2}", 0);
    assert_int_equal(api_parse_fork(body, strlen(body), &b, &err), 0);
    assert_int_equal(strlen(b.req.prefix), API_FORK_PREFIX_MAX);
    assert_int_equal(b.req.count, 2);
    api_fork_body_clear(&b);
    snprintf(body, sizeof(body), "{\"name\": \"%063d\"}", 0);
    assert_int_equal(api_parse_fork(body, strlen(body), &b, &err), 0);
    assert_int_equal(strlen(b.req.name), 63);
    api_fork_body_clear(&b);
    assert_int_equal(err.code, 0);
}

static void
test_fork_errors(void **state)
{
    char body[128];
    (void)state;

    /* Types, field by field; null is no default here. */
    fork_fails("{\"count\": \"2\"}", "field 'count' must be an integer, got string");
    fork_fails("{\"count\": 2.0}", "field 'count' must be an integer, got number");
    fork_fails("{\"count\": null}", "field 'count' must be an integer, got null");
    fork_fails("{\"name\": 1}", "field 'name' must be a string, got integer");
    fork_fails("{\"name\": null}", "field 'name' must be a string, got null");
    fork_fails("{\"prefix\": [\"web\"]}", "field 'prefix' must be a string, got array");
    fork_fails("{\"standby\": \"true\"}", "field 'standby' must be a boolean, got string");
    fork_fails("{\"standby\": 1}", "field 'standby' must be a boolean, got integer");
    fork_fails("{\"no_wait\": null}", "field 'no_wait' must be a boolean, got null");
    fork_fails("{\"no_wait\": {}}", "field 'no_wait' must be a boolean, got object");

    /* Count range. */
    fork_fails("{\"count\": 0}", "field 'count' must be between 1 and 64, got 0");
    fork_fails("{\"count\": 65}", "field 'count' must be between 1 and 64, got 65");
    fork_fails("{\"count\": -1}", "got -1");
    fork_fails("{\"count\": 4294967297}", "got 4294967297"); /* would wrap to 1 in a u32 */

    /* A name is one child, whatever the key order; and it excludes a prefix. */
    fork_fails("{\"name\": \"a\", \"count\": 2}", "field 'name' names one child");
    fork_fails("{\"count\": 64, \"name\": \"a\"}", "cannot go with count 64");
    fork_fails("{\"name\": \"a\", \"prefix\": \"b\"}", "fields 'name' and 'prefix' exclude");
    fork_fails("{\"prefix\": \"b\", \"count\": 1, \"name\": \"a\"}", "exclude each other");

    /* Names and prefixes. */
    fork_fails("{\"name\": \"Web\"}", "field 'name' must match [a-z0-9][a-z0-9-]{0,62}");
    fork_fails("{\"name\": \"-web\"}", "field 'name' must match");
    fork_fails("{\"name\": \"\"}", "field 'name' must match");
    snprintf(body, sizeof(body), "{\"name\": \"%064d\"}", 0);
    fork_fails(body, "field 'name' must match");
    fork_fails("{\"prefix\": \"a_b\"}", "field 'prefix' must match [a-z0-9][a-z0-9-]{0,59}");
    fork_fails("{\"prefix\": \"\"}", "field 'prefix' must match");
    fork_fails("{\"prefix\": \"-x\"}", "field 'prefix' must match");
    snprintf(body, sizeof(body), "{\"prefix\": \"%061d\"}", 0);
    fork_fails(body, "field 'prefix' must match");

    /* Unknown fields, even null or after valid ones, and malformed bodies. */
    fork_fails("{\"source\": \"web\"}", "unknown field 'source'");
    fork_fails("{\"count\": 2, \"memory_mib\": null}", "unknown field 'memory_mib'");
    fork_fails("{\"no-wait\": true}", "unknown field 'no-wait'");
    fork_fails("[]", "request body must be a JSON object, got array");
    fork_fails("{\"count\": 2", "parse JSON body");
    fork_fails("{\"count\": 1, \"count\": 2}", "parse JSON body"); /* duplicate key */
}

static void
wait_fails(const char *body, const char *needle)
{
    enum inst_state st = INST_RUNNING;
    int timeout = 7;
    struct tp_err err = { 0 };

    assert_int_equal(api_parse_wait(body, strlen(body), &st, &timeout, &err), -EINVAL);
    if (!strstr(tp_err_msg(&err), needle))
        fail_msg("body %s: message '%s' lacks '%s'", body, tp_err_msg(&err), needle);
    assert_int_equal(st, INST_RUNNING); /* ret untouched on failure */
    assert_int_equal(timeout, 7);
    tp_err_clear(&err);
}

static void
test_wait_body(void **state)
{
    enum inst_state st = INST_RUNNING;
    int timeout = 0;
    const char *b1 = "{\"state\": \"Standby\", \"timeout_ms\": 600000}";
    const char *b2 = "{\"state\": \"Stopped\"}";
    (void)state;

    assert_int_equal(api_parse_wait(b1, strlen(b1), &st, &timeout, NULL), 0);
    assert_int_equal(st, INST_STANDBY);
    assert_int_equal(timeout, 600000);
    assert_int_equal(api_parse_wait(b2, strlen(b2), &st, &timeout, NULL), 0);
    assert_int_equal(st, INST_STOPPED);
    assert_int_equal(timeout, 30000); /* the default */

    wait_fails("{}", "field 'state' is required");
    wait_fails("{\"timeout_ms\": 5}", "field 'state' is required");
    wait_fails("{\"state\": null}", "field 'state' must be a string, got null");
    wait_fails("{\"state\": \"Asleep\"}", "unknown state 'Asleep'");
    wait_fails("{\"state\": \"Running\", \"timeout_ms\": 0}", "between 1 and 600000");
    wait_fails("{\"state\": \"Running\", \"timeout_ms\": null}", "must be an integer");
    wait_fails("{\"state\": \"Running\", \"wait\": true}", "unknown field 'wait'");
    wait_fails("", "parse JSON body");
}

static char *
dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(s);
    json_decref(j);
    return s;
}

/* Records own mutable strings; the tests build them from writable arrays. */
static char s_sh[] = "/bin/sh", s_c[] = "-c", s_x[] = "x", s_qemu[] = "qemu",
            s_kernel[] = "/k/vmlinuz", s_initrd[] = "/k/initrd", s_rootfs[] = "/srv/root",
            s_tcg[] = "tcg", s_name[] = "web-1", s_lasterr[] = "boot 'x': timed out",
            s_lastop[] = "{\"op\": \"run\", \"ok\": true, \"total_ms\": 2210.5, \"bytes\": "
                         "9007199254740993, \"phases\": [{\"name\": \"prepare\", \"ms\": 12.25}]}",
            s_badop[] = "{not json", s_arrop[] = "[1]";

static void
test_record_full(void **state)
{
    char *cmd[] = { s_sh, s_c, s_x, NULL };
    struct net_port ports[] = {
        { .host_ip = 0x7f000001, .host_port = 8080, .guest_port = 80, .proto = NET_PROTO_TCP },
        { .host_ip = 0, .host_port = 5353, .guest_port = 53, .proto = NET_PROTO_UDP },
    };
    struct inst_record r = {
        .id = "3f2a9c0d1b4e5f60",
        .name = s_name,
        .cfg = { .hypervisor = s_qemu,
                 .memory_mib = 256,
                 .vcpus = 1,
                 .kernel = s_kernel,
                 .initrd = s_initrd,
                 .rootfs = s_rootfs,
                 .cmd = cmd,
                 .agent = true,
                 .accel = s_tcg },
        .state = INST_RUNNING,
        .vmm_pid = 12345,
        .vmm_start_time = UINT64_MAX,
        .created_ms = 1795306200123LL,
        .state_changed_ms = 1795306202456LL,
        .last_op = s_lastop,
        .last_error = s_lasterr,
        .net = { .ip = 0x0a580002, .prefix = 16, .mac = { 0x02, 0x74, 0x0a, 0x58, 0x00, 0x02 } },
        .ports = ports,
        .n_ports = ELEMENTSOF(ports),
    };
    (void)state;

    _cleanup_free_ char *s = dump(api_record_to_json(&r));
    assert_string_equal(
        s, "{\"accel\":\"tcg\",\"agent\":true,\"cmd\":[\"/bin/sh\",\"-c\",\"x\"],"
           "\"created_at\":\"2026-11-22T00:10:00.123Z\",\"env\":null,\"exit_code\":null,"
           "\"hypervisor\":\"qemu\","
           "\"id\":\"3f2a9c0d1b4e5f60\",\"image\":null,\"image_digest\":null,\"initrd\":\"/k/"
           "initrd\",\"kernel\":\"/k/vmlinuz\","
           "\"last_error\":\"boot 'x': timed out\","
           "\"last_operation\":{\"bytes\":9007199254740993,\"ok\":true,\"op\":\"run\","
           "\"phases\":[{\"ms\":12.25,\"name\":\"prepare\"}],\"total_ms\":2210.5},"
           "\"mem_backend\":\"file\",\"memory_mib\":256,\"name\":\"web-1\","
           "\"network\":{\"gateway\":\"10.88.0.1\",\"ip\":\"10.88.0.2\",\"mac\":"
           "\"02:74:0a:58:00:02\",\"mode\":\"isolated\",\"prefix\":16,\"tap\":\"tp0a580002\"},"
           "\"pid\":12345,\"ports\":[{\"guest_port\":80,\"host_ip\":\"127.0.0.1\",\"host_port\":"
           "8080,\"proto\":\"tcp\"},{\"guest_port\":53,\"host_ip\":\"0.0.0.0\",\"host_port\":5353,"
           "\"proto\":\"udp\"}],\"rootfs\":\"/srv/root\","
           "\"state\":\"Running\",\"state_changed_at\":\"2026-11-22T00:10:02.456Z\","
           "\"stop_signal\":null,\"user\":null,\"vcpus\":1,\"workdir\":null}");
}

static void
test_record_nulls(void **state)
{
    struct inst_record r = {
        .id = "0123456789abcdef",
        .cfg = { .hypervisor = s_qemu, .memory_mib = 65536, .vcpus = 64, .agent = false },
        .state = INST_STOPPED,
        .created_ms = 1000,
        .last_op = s_badop,
    };
    (void)state;

    _cleanup_free_ char *s = dump(api_record_to_json(&r));
    assert_string_equal(
        s,
        "{\"accel\":null,\"agent\":false,\"cmd\":null,\"created_at\":\"1970-01-01T00:00:01.000Z\","
        "\"env\":null,\"exit_code\":0,\"hypervisor\":\"qemu\",\"id\":\"0123456789abcdef\","
        "\"image\":null,\"image_digest\":null,\"initrd\":null,"
        "\"kernel\":null,"
        "\"last_error\":null,\"last_operation\":null,\"mem_backend\":\"file\","
        "\"memory_mib\":65536,\"name\":null,"
        "\"network\":null,\"pid\":null,\"ports\":[],\"rootfs\":null,\"state\":\"Stopped\",\"state_"
        "changed_at\":"
        "null,\"stop_signal\":null,\"user\":null,"
        "\"vcpus\":64,\"workdir\":null}");

    /* A last_op that parses but is not an object is as useless as garbage. */
    r.last_op = s_arrop;
    r.state = (enum inst_state)99;
    json_t *j = api_record_to_json(&r);
    assert_true(json_is_null(json_object_get(j, "last_operation")));
    assert_string_equal(json_string_value(json_object_get(j, "state")), "Unknown");
    json_decref(j);
}

static void
test_format_time(void **state)
{
    char buf[32];
    (void)state;

    assert_int_equal(api_format_time(0, buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    assert_int_equal(api_format_time(1795306200123LL, buf), 0);
    assert_string_equal(buf, "2026-11-22T00:10:00.123Z");
    assert_int_equal(api_format_time(951782400999LL, buf), 0); /* leap day 2000 */
    assert_string_equal(buf, "2000-02-29T00:00:00.999Z");
    assert_int_equal(api_format_time(-1, buf), 0);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    assert_int_equal(api_format_time(INT64_MAX, buf), -EINVAL);
}

static void
test_errmap_table(void **state)
{
    static const struct {
        int r;
        unsigned status;
        const char *code;
    } rows[] = {
        { -ENOENT, 404, "not_found" },
        { -EEXIST, 409, "conflict" },
        { -EBUSY, 409, "conflict" },
        { -ENOTUNIQ, 409, "ambiguous" },
        { -EINVAL, 400, "invalid_argument" },
        { -EOPNOTSUPP, 501, "unsupported" },
        { -EPROTO, 502, "bad_gateway" },
        { -ETIMEDOUT, 504, "timeout" },
        { -ENOSPC, 507, "insufficient_storage" },
        { -EDQUOT, 507, "insufficient_storage" },
        { -EMSGSIZE, 413, "too_large" },
        { -EFBIG, 413, "too_large" },
        { -EUSERS, 503, "unavailable" },
        { -ESHUTDOWN, 503, "unavailable" },
        { -EIO, 500, "internal" },
        { -ECONNRESET, 500, "internal" },
        { -ENOMEM, 500, "internal" },
        { 0, 500, "internal" },
        { ENOENT, 500, "internal" }, /* positive errno is a caller bug, not a 404 */
    };
    (void)state;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct api_status st = api_errmap(rows[i].r);
        if (st.status != rows[i].status || strcmp(st.code, rows[i].code) != 0)
            fail_msg("errno %d: got %u %s, want %u %s", rows[i].r, st.status, st.code,
                     rows[i].status, rows[i].code);
    }
}

static void
test_error_body(void **state)
{
    (void)state;
    _cleanup_free_ char *s = api_error_text("not_found", "no instance \"x\"");
    assert_string_equal(s, "{\"code\":\"not_found\",\"message\":\"no instance \\\"x\\\"\"}\n");

    _cleanup_free_ char *n = api_error_text("internal", NULL);
    assert_string_equal(n, "{\"code\":\"internal\",\"message\":\"\"}\n");

    /* Invalid UTF-8 from a guest must not lose the whole message. */
    _cleanup_free_ char *u = api_error_text("bad_gateway", "bad \xff byte");
    assert_string_equal(u, "{\"code\":\"bad_gateway\",\"message\":\"bad ? byte\"}\n");
}

static void
route_ok(const char *method, const char *path, enum api_route want, const char *ref)
{
    struct api_match m;

    if (api_route_match(method, path, &m) != API_MATCH_OK)
        fail_msg("%s %s did not match", method, path);
    assert_int_equal(m.route, want);
    assert_string_equal(m.ref, ref);
}

static void
route_result(const char *method, const char *path, enum api_match_result want, const char *allow)
{
    struct api_match m;
    enum api_match_result got = api_route_match(method, path, &m);

    if (got != want)
        fail_msg("%s %s: got %d, want %d", method, path, got, want);
    if (allow)
        assert_string_equal(m.allow, allow);
}

static void
test_router_routes(void **state)
{
    (void)state;
    route_ok("GET", "/v1/version", API_ROUTE_VERSION, "");
    route_ok("GET", "/v1/capabilities", API_ROUTE_CAPABILITIES, "");
    route_ok("GET", "/v1/instances", API_ROUTE_LIST, "");
    route_ok("POST", "/v1/instances", API_ROUTE_CREATE, "");
    route_ok("GET", "/v1/instances/web-1", API_ROUTE_GET, "web-1");
    route_ok("DELETE", "/v1/instances/3f2a", API_ROUTE_DELETE, "3f2a");
    route_ok("POST", "/v1/instances/a/stop", API_ROUTE_STOP, "a");
    route_ok("POST", "/v1/instances/b/start", API_ROUTE_START, "b");
    route_ok("POST", "/v1/instances/web-1/exec", API_ROUTE_EXEC, "web-1");
    route_ok("GET", "/v1/instances/web-1/logs", API_ROUTE_LOGS, "web-1");
    route_ok("POST", "/v1/instances/web-1/wait", API_ROUTE_WAIT, "web-1");
    route_ok("POST", "/v1/instances/web-1/standby", API_ROUTE_STANDBY, "web-1");
    route_ok("POST", "/v1/instances/3f2a9c/restore", API_ROUTE_RESTORE, "3f2a9c");
    route_ok("POST", "/v1/instances/web-1/fork", API_ROUTE_FORK, "web-1");
    route_ok("GET", "/v1/instances/web-1/stats", API_ROUTE_STATS, "web-1");
    /* A ref that spells a keyword is still a ref. */
    route_ok("GET", "/v1/instances/exec", API_ROUTE_GET, "exec");
    route_ok("DELETE", "/v1/instances/fork", API_ROUTE_DELETE, "fork");

    assert_string_equal(api_route_name(API_ROUTE_EXEC), "exec");
    assert_string_equal(api_route_query_keys(API_ROUTE_LIST)[0], "all");
    assert_null(api_route_query_keys(API_ROUTE_LIST)[1]);
    assert_string_equal(api_route_query_keys(API_ROUTE_DELETE)[0], "force");
    assert_string_equal(api_route_query_keys(API_ROUTE_LOGS)[0], "follow");
    assert_null(api_route_query_keys(API_ROUTE_GET)[0]);
    assert_null(api_route_query_keys(API_ROUTE_STANDBY)[0]);
    assert_null(api_route_query_keys(API_ROUTE_RESTORE)[0]);
    assert_string_equal(api_route_name(API_ROUTE_STANDBY), "standby");
    assert_string_equal(api_route_name(API_ROUTE_RESTORE), "restore");
    assert_string_equal(api_route_method(API_ROUTE_RESTORE), "POST");
    assert_string_equal(api_route_name(API_ROUTE_FORK), "fork");
    assert_string_equal(api_route_method(API_ROUTE_FORK), "POST");
    assert_null(api_route_query_keys(API_ROUTE_FORK)[0]);

    char tmpl[64];
    assert_int_equal(api_route_template(API_ROUTE_STANDBY, tmpl, sizeof(tmpl)), 0);
    assert_string_equal(tmpl, "/v1/instances/{ref}/standby");
    assert_int_equal(api_route_template(API_ROUTE_RESTORE, tmpl, sizeof(tmpl)), 0);
    assert_string_equal(tmpl, "/v1/instances/{ref}/restore");
    assert_int_equal(api_route_template(API_ROUTE_FORK, tmpl, sizeof(tmpl)), 0);
    assert_string_equal(tmpl, "/v1/instances/{ref}/fork");
}

static void
test_router_not_found(void **state)
{
    (void)state;
    route_result("POST", "/v1/instances//exec", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "/v1/instances/a/b/c", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "/v1/instances/a/b/c/d/e", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "/v1/instances/", API_MATCH_NOT_FOUND, NULL); /* no trailing slash */
    route_result("GET", "/v1/version/", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "/v1/instances/a/logs/", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "//v1/version", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "v1/version", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "/", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "/v2/version", API_MATCH_NOT_FOUND, NULL);
    route_result("GET", "/v1/instances/a/reboot", API_MATCH_NOT_FOUND, NULL);
    route_result("POST", "/v1/instances/a/standby/", API_MATCH_NOT_FOUND, NULL);
    route_result("POST", "/v1/instances/a/fork/", API_MATCH_NOT_FOUND, NULL);
    route_result("POST", "/v1/instances/a/fork/2", API_MATCH_NOT_FOUND, NULL);
    route_result("POST", "/v1/instances//fork", API_MATCH_NOT_FOUND, NULL);
    route_result("POST", "/v1/instances/standby", API_MATCH_BAD_METHOD, "GET, DELETE");
    route_result("GET", "/V1/version", API_MATCH_NOT_FOUND, NULL);

    char longref[API_REF_MAX + 40];
    memset(longref, 0, sizeof(longref));
    strcpy(longref, "/v1/instances/");
    memset(longref + strlen(longref), 'a', API_REF_MAX + 1);
    route_result("GET", longref, API_MATCH_NOT_FOUND, NULL);
}

static void
test_router_bad_method(void **state)
{
    (void)state;
    route_result("PUT", "/v1/instances", API_MATCH_BAD_METHOD, "GET, POST");
    route_result("DELETE", "/v1/instances", API_MATCH_BAD_METHOD, "GET, POST");
    route_result("POST", "/v1/instances/x", API_MATCH_BAD_METHOD, "GET, DELETE");
    route_result("GET", "/v1/instances/x/exec", API_MATCH_BAD_METHOD, "POST");
    route_result("GET", "/v1/instances/x/stop", API_MATCH_BAD_METHOD, "POST");
    route_result("GET", "/v1/instances/x/standby", API_MATCH_BAD_METHOD, "POST");
    route_result("DELETE", "/v1/instances/x/restore", API_MATCH_BAD_METHOD, "POST");
    route_result("GET", "/v1/instances/x/fork", API_MATCH_BAD_METHOD, "POST");
    route_result("PUT", "/v1/instances/x/fork", API_MATCH_BAD_METHOD, "POST");
    route_result("POST", "/v1/instances/x/logs", API_MATCH_BAD_METHOD, "GET");
    route_result("POST", "/v1/version", API_MATCH_BAD_METHOD, "GET");
    route_result("HEAD", "/v1/capabilities", API_MATCH_BAD_METHOD, "GET");
    route_result("get", "/v1/version", API_MATCH_BAD_METHOD, "GET"); /* methods are exact */
}

static void
test_ref_valid(void **state)
{
    static const char *const good[] = {
        "web-1", "3f2a", "0123456789abcdef",
        "a",     "9-",   "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc"
    };
    static const char *const bad[] = {
        "",
        "-lead",
        "Web",
        "3F2A",
        "a_b",
        "a.b",
        "a b",
        "l2%00junk",
        "a%2Fstop",
        "a/b",
        "a?",
        "\xc3\xa9",
        "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd", /* 64 */
    };
    (void)state;

    for (size_t i = 0; i < ELEMENTSOF(good); i++)
        if (!api_ref_valid(good[i]))
            fail_msg("'%s' refused", good[i]);
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        if (api_ref_valid(bad[i]))
            fail_msg("'%s' accepted", bad[i]);
    assert_false(api_ref_valid(NULL));
}

static void
test_url_unescape(void **state)
{
    static const struct {
        const char *in, *out;
    } rows[] = {
        { "/v1/instances/web-1", "/v1/instances/web-1" },
        { "/v1/instances/web%2d1", "/v1/instances/web-1" },
        { "%41%62c", "Abc" },
        /* NUL and '/' stay escaped: neither may end the path or split a segment. */
        { "/v1/instances/l2%00junk", "/v1/instances/l2%00junk" },
        { "/v1/instances/a%2Fstop", "/v1/instances/a%2Fstop" },
        { "/v1/instances/a%2fstop", "/v1/instances/a%2fstop" },
        /* Malformed escapes are kept as they are. */
        { "%", "%" },
        { "%4", "%4" },
        { "%zz1", "%zz1" },
        { "100%", "100%" },
        { "%%41", "%A" },
        { "", "" },
    };
    (void)state;

    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        _cleanup_free_ char *s = xstrdup(rows[i].in);
        size_t n = api_url_unescape(s);
        if (strcmp(s, rows[i].out) != 0 || n != strlen(rows[i].out))
            fail_msg("'%s': got '%s' (%zu), want '%s'", rows[i].in, s, n, rows[i].out);
    }
}

static void
test_query_bool(void **state)
{
    struct tp_err err = { 0 };
    bool b = true;
    (void)state;

    assert_int_equal(api_query_bool("all", NULL, &b, NULL), 0);
    assert_false(b);
    assert_int_equal(api_query_bool("all", "true", &b, NULL), 0);
    assert_true(b);
    assert_int_equal(api_query_bool("all", "0", &b, NULL), 0);
    assert_false(b);
    assert_int_equal(api_query_bool("all", "1", &b, NULL), 0);
    assert_true(b);
    assert_int_equal(api_query_bool("all", "false", &b, NULL), 0);
    assert_false(b);
    b = true;
    assert_int_equal(api_query_bool("force", "yes", &b, &err), -EINVAL);
    assert_true(b); /* untouched */
    assert_non_null(strstr(tp_err_msg(&err), "'force'"));
    assert_non_null(strstr(tp_err_msg(&err), "'yes'"));
    assert_int_equal(api_query_bool("force", "", &b, &err), -EINVAL);
    assert_int_equal(api_query_bool("force", "TRUE", &b, &err), -EINVAL);
    tp_err_clear(&err);
}

static void
test_frame_header(void **state)
{
    uint8_t h[8];
    (void)state;

    assert_int_equal(api_frame_header(h, API_FRAME_STDOUT, 0x01020304u), 8);
    static const uint8_t want1[8] = { 1, 0, 0, 0, 0x01, 0x02, 0x03, 0x04 };
    assert_memory_equal(h, want1, 8);

    memset(h, 0xaa, sizeof(h));
    api_frame_header(h, API_FRAME_ERROR, 0xfffffffeu);
    static const uint8_t want2[8] = { 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe };
    assert_memory_equal(h, want2, 8);

    api_frame_header(h, API_FRAME_EXIT, 17);
    static const uint8_t want3[8] = { 3, 0, 0, 0, 0, 0, 0, 17 };
    assert_memory_equal(h, want3, 8);
}

static const struct hv_driver fake_a = {
    .name = "alpha",
    .caps = { [HV_CAP_PAUSE] = true, [HV_CAP_EXEC_AGENT] = true },
};
static const struct hv_driver fake_b = {
    .name = "beta",
    .caps = { [HV_CAP_SNAPSHOT] = true },
};

static void
test_caps(void **state)
{
    const struct hv_driver *const drivers[] = { &fake_a, &fake_b, NULL };
    (void)state;

    json_t *j = api_caps_to_json(drivers);
    json_t *a = json_object_get(json_object_get(j, "hypervisors"), "alpha");
    json_t *b = json_object_get(json_object_get(j, "hypervisors"), "beta");
    assert_non_null(a);
    assert_non_null(b);
    /* every capability, named, and whether the VMM is there (no probe: taken as there) */
    assert_int_equal(json_object_size(a), _HV_CAP_MAX + 1);
    assert_true(json_is_true(json_object_get(a, "available")));
    assert_null(json_object_get(a, "vmm_version"));
    assert_true(json_is_true(json_object_get(a, hv_cap_to_string(HV_CAP_PAUSE))));
    assert_true(json_is_true(json_object_get(a, hv_cap_to_string(HV_CAP_EXEC_AGENT))));
    assert_true(json_is_false(json_object_get(a, hv_cap_to_string(HV_CAP_SNAPSHOT))));
    assert_true(json_is_true(json_object_get(b, hv_cap_to_string(HV_CAP_SNAPSHOT))));
    assert_true(json_is_false(json_object_get(b, hv_cap_to_string(HV_CAP_PAUSE))));
    json_decref(j);

    const struct hv_driver *const none[] = { NULL };
    _cleanup_free_ char *s = dump(api_caps_to_json(none));
    assert_string_equal(s, "{\"hypervisors\":{}}");
}

/* docs/api.yaml is the contract: every route, every instance field and every error code the
 * server can produce must be in it (and nothing more for paths and instance fields). The YAML is
 * scanned by indentation, which the file's layout keeps simple. */
static const char *yaml_path;

static char **
yaml_lines(size_t *ret_n)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0, n = 0;
    char **v = NULL;
    FILE *f = fopen(yaml_path, "re");

    if (!f)
        fail_msg("open %s", yaml_path);
    assert_int_equal(getdelim(&text, &len, '\0', f) > 0, 1);
    fclose(f);
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        v = xrealloc(v, sizeof(char *) * (n + 2));
        v[n++] = xstrdup(l);
        v[n] = NULL;
    }
    *ret_n = n;
    return v;
}

static size_t
indent_of(const char *l)
{
    return strspn(l, " ");
}

/* Index of the line equal to want, or n. */
static size_t
find_line(char **v, size_t n, size_t from, const char *want)
{
    for (size_t i = from; i < n; i++)
        if (strcmp(v[i], want) == 0)
            return i;
    return n;
}

/* Keys directly under the block that starts at line start (the block ends at the first line
 * indented no deeper than start); collects keys of exactly indent spaces. */
static size_t
block_keys(char **v, size_t n, size_t start, size_t indent, const char **keys, size_t max)
{
    size_t found = 0, base = indent_of(v[start]);

    for (size_t i = start + 1; i < n && indent_of(v[i]) > base; i++) {
        if (indent_of(v[i]) != indent || !strchr(v[i], ':') || v[i][indent] == '-')
            continue;
        if (found < max)
            keys[found] = v[i] + indent;
        found++;
    }
    return found;
}

static bool
has_key(const char **keys, size_t n, const char *key)
{
    size_t kl = strlen(key);

    for (size_t i = 0; i < n; i++)
        if (strncmp(keys[i], key, kl) == 0 && keys[i][kl] == ':')
            return true;
    return false;
}

static void
test_openapi_contract(void **state)
{
    size_t n;
    _cleanup_strv_free_ char **v = yaml_lines(&n);
    const char *keys[64];
    size_t nk;
    (void)state;

    /* Paths: each route's method under its template; the YAML lists no other path. */
    size_t paths = find_line(v, n, 0, "paths:");
    assert_true(paths < n);
    size_t n_templates = 0;
    for (int r = 0; r < _API_ROUTE_MAX; r++) {
        char tmpl[128], want[140], method[16];
        assert_int_equal(api_route_template((enum api_route)r, tmpl, sizeof(tmpl)), 0);
        snprintf(want, sizeof(want), "  %s:", tmpl);
        size_t at = find_line(v, n, paths, want);
        if (at == n)
            fail_msg("api.yaml lacks path %s", tmpl);
        const char *m = api_route_method((enum api_route)r);
        for (size_t i = 0; i <= strlen(m); i++)
            method[i] = (char)(m[i] >= 'A' && m[i] <= 'Z' ? m[i] - 'A' + 'a' : m[i]);
        nk = block_keys(v, n, at, 4, keys, 64);
        if (!has_key(keys, MIN(nk, (size_t)64), method))
            fail_msg("api.yaml lacks %s %s", m, tmpl);
        bool first = true; /* count each template once */
        for (int q = 0; q < r; q++) {
            char other[128];
            api_route_template((enum api_route)q, other, sizeof(other));
            first = first && strcmp(other, tmpl) != 0;
        }
        n_templates += first;
    }
    nk = block_keys(v, n, paths, 2, keys, 64);
    assert_int_equal(nk, n_templates);

    /* Instance schema: exactly the fields api_record_to_json() writes. */
    size_t inst = find_line(v, n, 0, "    Instance:");
    assert_true(inst < n);
    size_t props = inst + 1;
    while (props < n && strcmp(v[props], "      properties:") != 0)
        props++;
    assert_true(props < n);
    nk = block_keys(v, n, props, 8, keys, 64);
    struct inst_record r = { .id = "0123456789abcdef", .state = INST_RUNNING };
    json_t *j = api_record_to_json(&r);
    assert_int_equal(nk, json_object_size(j));
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        if (!has_key(keys, nk, key))
            fail_msg("api.yaml Instance lacks '%s'", key);
    }
    json_decref(j);

    /* Error codes: everything errmap can produce, plus 405's. */
    static const int errs[] = { -ENOENT,    -EEXIST, -ENOTUNIQ, -EINVAL, -EOPNOTSUPP, -EPROTO,
                                -ETIMEDOUT, -ENOSPC, -EMSGSIZE, -EUSERS, -EIO };
    size_t err_schema = find_line(v, n, 0, "    Error:");
    assert_true(err_schema < n);
    for (size_t i = 0; i <= ELEMENTSOF(errs); i++) {
        const char *code =
            i < ELEMENTSOF(errs) ? api_errmap(errs[i]).code : API_CODE_METHOD_NOT_ALLOWED;
        char want[64];
        snprintf(want, sizeof(want), "            - %s", code);
        if (find_line(v, n, err_schema, want) == n)
            fail_msg("api.yaml Error lacks code %s", code);
    }
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_full),
        cmocka_unit_test(test_create_defaults),
        cmocka_unit_test(test_create_unknown_fields),
        cmocka_unit_test(test_create_wrong_types),
        cmocka_unit_test(test_create_ranges),
        cmocka_unit_test(test_create_ports),
        cmocka_unit_test(test_create_paths_and_names),
        cmocka_unit_test(test_create_malformed),
        cmocka_unit_test(test_exec_parse),
        cmocka_unit_test(test_exec_errors),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_fork_body),
        cmocka_unit_test(test_fork_errors),
        cmocka_unit_test(test_wait_body),
        cmocka_unit_test(test_record_full),
        cmocka_unit_test(test_record_nulls),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_errmap_table),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_router_routes),
        cmocka_unit_test(test_router_not_found),
        cmocka_unit_test(test_router_bad_method),
        cmocka_unit_test(test_ref_valid),
        cmocka_unit_test(test_url_unescape),
        cmocka_unit_test(test_query_bool),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_exec_input),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_openapi_contract),
    };

    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH/docs/api.yaml\n", argv[0]);
        return 2;
    }
    yaml_path = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
