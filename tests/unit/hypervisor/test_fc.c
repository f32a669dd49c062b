/* Firecracker lower layers: the HTTP client against a scripted peer, bodies against golden files
 * and the OpenAPI spec, reply parsers, the vsock CONNECT handshake. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "hypervisor/firecracker/fc_body.h"
#include "hypervisor/firecracker/fc_http.h"
#include "hypervisor/firecracker/fc_vsock.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/sock.h"
#include "util/xalloc.h"

#ifdef HAVE_YAML
#include <yaml.h>
#endif

#define PEER_READ_MS 5000

/* ---- a scripted HTTP peer on one end of a socketpair ---- */

enum step_op {
    STEP_EXPECT,     /* read one HTTP request: a = "METHOD /path", b = JSON body or NULL */
    STEP_EXPECT_RAW, /* read exactly strlen(a) bytes equal to a */
    STEP_SEND,       /* send a as is */
    STEP_PAUSE,      /* sleep 30 ms, so the next send lands in a separate read */
    STEP_CLOSE,      /* shut the connection down */
    STEP_WAIT_EOF,   /* wait until the client closes its end */
    STEP_ACCEPT,     /* (listening peer) accept the next connection, closing the previous one */
    STEP_END,
};

struct step {
    enum step_op op;
    const char *a, *b;
};

struct peer {
    pthread_t thread;
    int fd;        /* the peer's end (or the accepted connection) */
    int listen_fd; /* -1 unless the peer accepts */
    int client_fd; /* the client's end of the socketpair */
    const struct step *steps;
    const char *bind_path; /* when set: bind and listen there after 50 ms, then play */
    char buf[1 << 16];
    size_t len;
    bool ok;
    char error[512];
};

static void peer_fail(struct peer *p, const char *fmt, ...) _printf_(2, 3);

static void
peer_fail(struct peer *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
}

/* 1 bytes added, 0 EOF, < 0 error (timeout included). */
static int
peer_fill(struct peer *p)
{
    int r = sock_wait(p->fd, POLLIN, PEER_READ_MS);
    if (r <= 0)
        return r == 0 ? -ETIMEDOUT : r;
    if (p->len == sizeof(p->buf))
        return -ENOBUFS;
    ssize_t n = read(p->fd, p->buf + p->len, sizeof(p->buf) - p->len);
    if (n < 0)
        return -errno;
    p->len += (size_t)n;
    return n > 0;
}

static void
peer_consume(struct peer *p, size_t n)
{
    memmove(p->buf, p->buf + n, p->len - n);
    p->len -= n;
}

static bool
peer_expect_request(struct peer *p, const char *line, const char *body)
{
    char *end;
    size_t want_len = 0;
    bool have_host = false, have_type = false;

    while (!(end = memmem(p->buf, p->len, "\r\n\r\n", 4))) {
        int r = peer_fill(p);
        if (r <= 0) {
            peer_fail(p, "reading a request: %s", r == 0 ? "EOF" : strerror(-r));
            return false;
        }
    }
    size_t head_len = (size_t)(end - p->buf) + 4;
    _cleanup_free_ char *head = xstrndup(p->buf, head_len);
    _cleanup_free_ char *want_line = xasprintf("%s HTTP/1.1\r\n", line);
    if (strncmp(head, want_line, strlen(want_line)) != 0) {
        peer_fail(p, "expected '%s', got '%.60s'", line, head);
        return false;
    }
    for (char *save = NULL, *h = strtok_r(head + strlen(want_line), "\r\n", &save); h;
         h = strtok_r(NULL, "\r\n", &save)) {
        if (strcasecmp(h, "Host: localhost") == 0)
            have_host = true;
        else if (strcasecmp(h, "Content-Type: application/json") == 0)
            have_type = true;
        else if (strncasecmp(h, "Content-Length: ", 16) == 0)
            want_len = strtoul(h + 16, NULL, 10);
    }
    peer_consume(p, head_len);
    if (!have_host || (body && !have_type) || (!body && want_len)) {
        peer_fail(p, "%s: bad headers (host %d, type %d, length %zu)", line, have_host, have_type,
                  want_len);
        return false;
    }
    while (p->len < want_len) {
        int r = peer_fill(p);
        if (r <= 0) {
            peer_fail(p, "reading a body: %s", r == 0 ? "EOF" : strerror(-r));
            return false;
        }
    }
    if (body) {
        json_t *got = json_loadb(p->buf, want_len, 0, NULL);
        json_t *want = json_loads(body, 0, NULL);
        bool same = got && want && json_equal(got, want);
        if (!same)
            peer_fail(p, "%s: expected body %s, got '%.*s'", line, body, (int)want_len, p->buf);
        json_decref(got);
        json_decref(want);
        if (!same)
            return false;
    }
    peer_consume(p, want_len);
    return true;
}

static bool
peer_expect_raw(struct peer *p, const char *want)
{
    size_t n = strlen(want);

    while (p->len < n) {
        int r = peer_fill(p);
        if (r <= 0) {
            peer_fail(p, "reading '%s': %s", want, r == 0 ? "EOF" : strerror(-r));
            return false;
        }
    }
    if (memcmp(p->buf, want, n) != 0) {
        peer_fail(p, "expected '%s', got '%.*s'", want, (int)n, p->buf);
        return false;
    }
    peer_consume(p, n);
    return true;
}

static bool
peer_step(struct peer *p, const struct step *s)
{
    switch (s->op) {
    case STEP_EXPECT:
        return peer_expect_request(p, s->a, s->b);
    case STEP_EXPECT_RAW:
        return peer_expect_raw(p, s->a);
    case STEP_SEND: {
        int r = sock_write_all(p->fd, s->a, strlen(s->a));
        if (r < 0)
            peer_fail(p, "send: %s", strerror(-r));
        return r == 0;
    }
    case STEP_PAUSE:
        nanosleep(&(struct timespec){ .tv_nsec = 30 * 1000 * 1000 }, NULL);
        return true;
    case STEP_CLOSE:
        shutdown(p->fd, SHUT_RDWR);
        return true;
    case STEP_WAIT_EOF:
        for (;;) {
            int r = peer_fill(p);
            if (r == 0)
                return true;
            if (r < 0 && r != -ENOBUFS) {
                peer_fail(p, "waiting for EOF: %s", strerror(-r));
                return false;
            }
            p->len = 0;
        }
    case STEP_ACCEPT: {
        int r = sock_wait(p->listen_fd, POLLIN, PEER_READ_MS);
        if (r <= 0) {
            peer_fail(p, "accept: %s", r == 0 ? "timeout" : strerror(-r));
            return false;
        }
        safe_close(p->fd);
        p->fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        p->len = 0;
        return p->fd >= 0;
    }
    case STEP_END:
        break;
    }
    return false;
}

static void *
peer_main(void *arg)
{
    struct peer *p = arg;
    bool ok = true;

    if (p->bind_path) {
        nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
        p->listen_fd = sock_listen_unix(p->bind_path, 4, NULL);
        ok = p->listen_fd >= 0;
        if (!ok)
            peer_fail(p, "listen on '%s': %s", p->bind_path, strerror(-p->listen_fd));
    }
    for (const struct step *s = p->steps; ok && s->op != STEP_END; s++)
        ok = peer_step(p, s);
    p->ok = ok;
    return NULL;
}

static struct peer *
peer_start_at(const struct step *steps, int fd, int listen_fd, const char *bind_path)
{
    struct peer *p = xnew(struct peer, 1);

    p->steps = steps;
    p->bind_path = bind_path;
    p->fd = fd;
    p->listen_fd = listen_fd;
    p->client_fd = -1;
    assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
    return p;
}

/* A peer on a socketpair; the client's end is p->client_fd. */
static struct peer *
peer_start_fd(const struct step *steps, int fd, int listen_fd)
{
    return peer_start_at(steps, fd, listen_fd, NULL);
}

static struct peer *
peer_start(const struct step *steps)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct peer *p = peer_start_fd(steps, sv[0], -1);
    p->client_fd = sv[1];
    return p;
}

/* Join (the script must have ended) and free; true when every step played. */
static bool
peer_finish(struct peer *p)
{
    bool ok;

    pthread_join(p->thread, NULL);
    ok = p->ok;
    if (!ok)
        fprintf(stderr, "peer: %s\n", p->error);
    safe_close(p->fd);
    safe_close(p->listen_fd);
    safe_close(p->client_fd);
    free(p);
    return ok;
}

static struct fc_http *
adopt(struct peer *p, int timeout_ms)
{
    struct fc_http *c = NULL;

    assert_int_equal(fc_http_adopt(TAKE_FD(p->client_fd), timeout_ms, -1, &c, NULL), 0);
    return c;
}

#define REPLY_204 "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"
#define INFO_BODY                                                                    \
    "{\"id\":\"vm1\",\"state\":\"Running\",\"vmm_version\":\"1.16.1\",\"app_name\":" \
    "\"Firecracker\"}"
#define REPLY_200_INFO                                                       \
    "HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n" \
    "Content-Type: application/json\r\nContent-Length: 78\r\n\r\n" INFO_BODY

/* ---- the pure reply parser ---- */

static int
parse(const char *text, struct fc_reply *ret, size_t *ret_used)
{
    struct tp_err err = { 0 };
    int r = fc_http_parse_reply(text, strlen(text), ret, ret_used, &err);
    if (r < 0)
        assert_int_equal(err.code, r);
    tp_err_clear(&err);
    return r;
}

static void
test_parse_reply(void **state)
{
    _cleanup_(fc_reply_clear) struct fc_reply rep = { .body = NULL };
    size_t used = 0;
    (void)state;

    assert_int_equal(strlen(INFO_BODY), 78);
    assert_int_equal(parse(REPLY_200_INFO "HTTP/1.1", &rep, &used), FC_PARSE_DONE);
    assert_int_equal(rep.status, 200);
    assert_true(rep.keep_alive);
    assert_false(rep.deprecation);
    assert_int_equal(rep.body_len, 78);
    assert_string_equal(rep.body, INFO_BODY);
    assert_int_equal(used, strlen(REPLY_200_INFO));
    fc_reply_clear(&rep);

    /* Every proper prefix is "need more", never an error. */
    for (size_t n = 0; n < strlen(REPLY_200_INFO); n++) {
        struct tp_err err = { 0 };
        assert_int_equal(fc_http_parse_reply(REPLY_200_INFO, n, &rep, &used, &err), FC_PARSE_MORE);
        assert_null(rep.body);
    }

    /* Bare LF, HTTP/1.0 without keep-alive, Connection: close, Deprecation, no reason. */
    assert_int_equal(parse("HTTP/1.0 204\n\n", &rep, &used), FC_PARSE_DONE);
    assert_false(rep.keep_alive);
    assert_string_equal(rep.body, "");
    assert_int_equal(used, 14);
    fc_reply_clear(&rep);
    assert_int_equal(
        parse("HTTP/1.0 204 No Content\r\nConnection: Keep-Alive\r\n\r\n", &rep, &used),
        FC_PARSE_DONE);
    assert_true(rep.keep_alive);
    fc_reply_clear(&rep);
    assert_int_equal(
        parse("HTTP/1.1 204 No Content\r\nconnection: foo, close\r\nDeprecation: true\r\n\r\n",
              &rep, &used),
        FC_PARSE_DONE);
    assert_false(rep.keep_alive);
    assert_true(rep.deprecation);
    fc_reply_clear(&rep);
    /* A 204 has no body even if it claims one; the bytes are the next reply's. */
    assert_int_equal(parse("HTTP/1.1 204 \r\nContent-Length: 3\r\n\r\nabc", &rep, &used),
                     FC_PARSE_DONE);
    assert_int_equal(used, 36);
    assert_int_equal(rep.body_len, 0);
    fc_reply_clear(&rep);
    /* A body with a NUL in it, repeated equal Content-Length. */
    static const char nul_body[] =
        "HTTP/1.1 400 \r\nContent-Length: 3\r\ncontent-length:3\r\n\r\na\0b";
    assert_int_equal(fc_http_parse_reply(nul_body, sizeof(nul_body) - 1, &rep, &used, NULL),
                     FC_PARSE_DONE);
    assert_int_equal(used, sizeof(nul_body) - 1);
    assert_int_equal(rep.body_len, 3);
    assert_int_equal(rep.body[1], '\0');
    fc_reply_clear(&rep);

    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 Odd\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "\r\n",
        "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\x01z\r\n\r\n",
        "HTTP/1.1 200 O\x02K\r\n\r\n",
        "HTML",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        if (parse(bad[i], &rep, &used) != -EPROTO)
            fail_msg("accepted '%s'", bad[i]);
        assert_null(rep.body);
    }
    /* A NUL inside the headers. */
    static const char nul_head[] = "HTTP/1.1 200 OK\r\nX: \0\r\n\r\n";
    assert_int_equal(fc_http_parse_reply(nul_head, sizeof(nul_head) - 1, &rep, &used, NULL),
                     -EPROTO);

    /* Header limit: exactly FC_HTTP_HEADER_MAX passes, one more byte fails without a blank line
     * in sight. */
    const char *start = "HTTP/1.1 204 \r\nX-Pad: ";
    size_t pad = FC_HTTP_HEADER_MAX - strlen(start) - 4;
    _cleanup_free_ char *big = xmalloc(FC_HTTP_HEADER_MAX + 2);
    strcpy(big, start);
    memset(big + strlen(start), 'a', pad);
    strcpy(big + strlen(start) + pad, "\r\n\r\n");
    assert_int_equal(parse(big, &rep, &used), FC_PARSE_DONE);
    assert_int_equal(used, FC_HTTP_HEADER_MAX);
    fc_reply_clear(&rep);
    memset(big + strlen(start), 'a', pad + 1);
    strcpy(big + strlen(start) + pad + 1, "\r\n\r");
    assert_int_equal(parse(big, &rep, &used), -EPROTO);

    /* Body limit: exactly FC_HTTP_BODY_MAX is accepted. */
    _cleanup_free_ char *head =
        xasprintf("HTTP/1.1 200 \r\nContent-Length: %u\r\n\r\n", FC_HTTP_BODY_MAX);
    _cleanup_free_ char *full = xzalloc(strlen(head) + FC_HTTP_BODY_MAX + 1);
    strcpy(full, head);
    memset(full + strlen(head), 'b', FC_HTTP_BODY_MAX);
    assert_int_equal(parse(full, &rep, &used), FC_PARSE_DONE);
    assert_int_equal(rep.body_len, FC_HTTP_BODY_MAX);
}

/* ---- the connection against the scripted peer ---- */

static void
test_keep_alive_two_requests(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "PUT /actions", "{\"action_type\":\"InstanceStart\"}" },
        { STEP_SEND, REPLY_204, NULL },
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, REPLY_200_INFO, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_auto_t *body = NULL, *got = NULL;
    (void)state;

    assert_int_equal(fc_body_action(FC_ACTION_INSTANCE_START, &body, &err), 0);
    assert_int_equal(fc_http_call(c, "PUT", "/actions", body, 0, &got, &err), 0);
    assert_null(got);
    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, &got, &err), 0);
    struct fc_instance_info info;
    assert_int_equal(fc_parse_instance_info_json(got, &info, &err), 0);
    assert_int_equal(info.state, FC_INSTANCE_RUNNING);
    assert_string_equal(info.id, "vm1");
    fc_instance_info_clear(&info);
    assert_true(peer_finish(p));
}

static void
test_split_reply(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, "HT", NULL },
        { STEP_PAUSE, NULL, NULL },
        { STEP_SEND, "TP/1.1 200 \r\nContent-Len", NULL },
        { STEP_PAUSE, NULL, NULL },
        { STEP_SEND, "gth: 77\r", NULL },
        { STEP_PAUSE, NULL, NULL },
        { STEP_SEND, "\n\r\n{\"id\":\"vm1\",\"state\":\"Paused\",", NULL },
        { STEP_PAUSE, NULL, NULL },
        { STEP_SEND, "\"vmm_version\":\"1.16.1\",\"app_name\":\"Firecracker\"}", NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(fc_reply_clear) struct fc_reply rep = { .body = NULL };
    struct fc_instance_info info;
    (void)state;

    assert_int_equal(fc_http_request(c, "GET", "/", NULL, 0, 0, &rep, NULL), 0);
    assert_int_equal(rep.status, 200);
    assert_int_equal(fc_parse_instance_info(rep.body, rep.body_len, &info, NULL), 0);
    assert_int_equal(info.state, FC_INSTANCE_PAUSED);
    fc_instance_info_clear(&info);
    assert_true(peer_finish(p));
}

static void
test_fault_message(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "PUT /snapshot/create",
          "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"/s/state\",\"mem_file_path\":\"/s/"
          "mem\"}" },
        { STEP_SEND,
          "HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
          "Content-Type: application/json\r\nContent-Length: 82\r\n\r\n"
          "{\"fault_message\":\"Cannot create snapshot: save/restore unavailable while running\"}",
          NULL },
        /* The connection stays usable after an error reply. */
        { STEP_EXPECT, "PATCH /vm", "{\"state\":\"Paused\"}" },
        { STEP_SEND, REPLY_204, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_auto_t *create = NULL, *pause = NULL;
    (void)state;

    assert_int_equal(
        fc_body_snapshot_create(&(struct fc_snapshot_create){ .type = FC_SNAPSHOT_FULL,
                                                              .snapshot_path = "/s/state",
                                                              .mem_file_path = "/s/mem" },
                                &create, &err),
        0);
    assert_int_equal(fc_http_call(c, "PUT", "/snapshot/create", create, 0, NULL, &err), -EIO);
    assert_string_equal(err.msg, "PUT /snapshot/create: HTTP 400: Cannot create snapshot: "
                                 "save/restore unavailable while running");
    tp_err_clear(&err);
    assert_int_equal(fc_body_vm_state(FC_VM_PAUSED, &pause, &err), 0);
    assert_int_equal(fc_http_call(c, "PATCH", "/vm", pause, 0, NULL, &err), 0);
    assert_true(peer_finish(p));
}

/* The HTTP layer's error: raw newline inside the string, then the server closes. */
static void
test_http_layer_error(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND,
          "HTTP/1.1 400 \r\nConnection: close\r\nContent-Length: 76\r\n\r\n"
          "{ \"error\": \"Bad header.\nAll previous unanswered requests will be dropped.\" }",
          NULL },
        { STEP_CLOSE, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), -EIO);
    assert_string_equal(err.msg, "GET /: HTTP 400: Bad header. All previous unanswered requests "
                                 "will be dropped.");
    tp_err_clear(&err);
    /* Connection: close on an adopted fd: nothing to reconnect to. */
    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), -ECONNRESET);
    assert_true(peer_finish(p));
}

static void
test_truncated_body(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "GET /version", NULL },
        { STEP_SEND, "HTTP/1.1 200 \r\nContent-Length: 40\r\n\r\n{\"firecracker_version\":", NULL },
        { STEP_CLOSE, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fc_http_call(c, "GET", "/version", NULL, 0, NULL, &err), -ECONNRESET);
    assert_non_null(strstr(err.msg, "mid-reply"));
    assert_true(peer_finish(p));
}

/* A body longer than its Content-Length: the extra bytes are caught before the next request. */
static void
test_overlong_body(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "GET /version", NULL },
        { STEP_SEND,
          "HTTP/1.1 200 \r\nContent-Length: 32\r\n\r\n{\"firecracker_version\":\"1.16.1\"}junk",
          NULL },
        { STEP_WAIT_EOF, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_auto_t *got = NULL;
    _cleanup_free_ char *version = NULL;
    (void)state;

    assert_int_equal(fc_http_call(c, "GET", "/version", NULL, 0, &got, &err), 0);
    assert_int_equal(fc_parse_version_json(got, &version, &err), 0);
    assert_string_equal(version, "1.16.1");
    assert_int_equal(fc_http_call(c, "GET", "/version", NULL, 0, NULL, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "unexpected bytes"));
    assert_true(peer_finish(p));
}

static void
test_closed_mid_reply(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "PUT /actions", "{\"action_type\":\"SendCtrlAltDel\"}" },
        { STEP_SEND, "HTTP/1.1 204 No Con", NULL },
        { STEP_CLOSE, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_auto_t *body = NULL;
    (void)state;

    assert_int_equal(fc_body_action(FC_ACTION_SEND_CTRL_ALT_DEL, &body, &err), 0);
    assert_int_equal(fc_http_call(c, "PUT", "/actions", body, 0, NULL, &err), -ECONNRESET);
    assert_non_null(strstr(err.msg, "PUT /actions: connection closed by Firecracker mid-reply"));
    tp_err_clear(&err);
    assert_int_equal(fc_http_call(c, "PUT", "/actions", body, 0, NULL, &err), -ECONNRESET);
    assert_true(peer_finish(p));
}

static void
test_closed_before_reply(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "GET /", NULL },
        { STEP_CLOSE, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), -ECONNRESET);
    assert_non_null(strstr(err.msg, "before a reply"));
    assert_true(peer_finish(p));
}

static void
test_oversized_headers(void **state)
{
    _cleanup_free_ char *reply = xmalloc(FC_HTTP_HEADER_MAX + 64);
    struct step steps[] = {
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, reply, NULL },
        { STEP_WAIT_EOF, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    strcpy(reply, "HTTP/1.1 200 OK\r\nX-Pad: ");
    size_t n = strlen(reply);
    memset(reply + n, 'x', FC_HTTP_HEADER_MAX);
    reply[n + FC_HTTP_HEADER_MAX] = '\0';
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "headers longer than 8192 bytes"));
    /* The stream was given up, which the peer sees as EOF. */
    c = fc_http_free(c);
    assert_true(peer_finish(p));
}

static void
test_oversized_body(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n{", NULL },
        { STEP_WAIT_EOF, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "body longer than"));
    assert_true(peer_finish(p));
}

static void
test_timeout(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "PUT /snapshot/load", NULL },
        { STEP_SEND, "HTTP/1.1 204 \r\n", NULL },
        { STEP_WAIT_EOF, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 5000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct fc_reply rep = { .body = NULL };
    struct timespec t0, t1;
    (void)state;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* The per-request bound wins over the connection's. */
    assert_int_equal(fc_http_request(c, "PUT", "/snapshot/load", NULL, 0, 150, &rep, &err),
                     -ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 140 && ms < 2000);
    assert_non_null(strstr(err.msg, "(15 bytes received)"));
    assert_null(rep.body);
    assert_true(peer_finish(p));
}

/* watch_fd readable (the VMM is gone) ends a wait at once. */
static void
test_watch_fd(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "GET /", NULL },
        { STEP_WAIT_EOF, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    int pipefd[2];
    (void)state;

    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    assert_int_equal(write(pipefd[1], "x", 1), 1);
    assert_int_equal(fc_http_adopt(TAKE_FD(p->client_fd), 5000, pipefd[0], &c, NULL), 0);
    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), -ECONNRESET);
    assert_non_null(strstr(err.msg, "Firecracker exited"));
    c = fc_http_free(c);
    close(pipefd[0]);
    close(pipefd[1]);
    assert_true(peer_finish(p));
}

static void
test_bad_request_line(void **state)
{
    static const struct step steps[] = {
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, REPLY_200_INFO, NULL },
        { STEP_END, NULL, NULL },
    };
    struct peer *p = peer_start(steps);
    _cleanup_(fc_http_freep) struct fc_http *c = adopt(p, 2000);
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fc_http_call(c, "PUT", "/drives/a b", NULL, 0, NULL, &err), -EINVAL);
    assert_int_equal(fc_http_call(c, "PUT", "drives", NULL, 0, NULL, &err), -EINVAL);
    assert_int_equal(fc_http_call(c, "put", "/", NULL, 0, NULL, &err), -EINVAL);
    assert_int_equal(fc_http_call(c, "PUT", "/x\r\nHost: evil", NULL, 0, NULL, &err), -EINVAL);
    /* Nothing went out: the connection is still in step with the peer. */
    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), 0);
    assert_true(peer_finish(p));
}

/* A path-opened connection reconnects after the server closed it. */
static void
test_reconnect(void **state)
{
    static const struct step steps[] = {
        { STEP_ACCEPT, NULL, NULL },
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, "HTTP/1.1 204 \r\nConnection: close\r\n\r\n", NULL },
        { STEP_ACCEPT, NULL, NULL },
        { STEP_EXPECT, "GET /version", NULL },
        { STEP_SEND,
          "HTTP/1.1 200 \r\nContent-Length: 32\r\n\r\n{\"firecracker_version\":\"1.16.1\"}", NULL },
        /* An idle connection closed by the server (a restart between requests). */
        { STEP_CLOSE, NULL, NULL },
        { STEP_ACCEPT, NULL, NULL },
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, REPLY_204, NULL },
        /* No answer in time: the client gives the stream up and the next request reconnects
         * (the late reply, on the old connection, can never be taken for the new one's). */
        { STEP_EXPECT, "PATCH /vm", "{\"state\":\"Resumed\"}" },
        { STEP_ACCEPT, NULL, NULL },
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, REPLY_204, NULL },
        { STEP_END, NULL, NULL },
    };
    char dir[] = "/tmp/test-fc-XXXXXX";
    _cleanup_free_ char *path = NULL;
    _cleanup_(fc_http_freep) struct fc_http *c = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_non_null(mkdtemp(dir));
    path = xasprintf("%s/api.sock", dir);
    int lfd = sock_listen_unix(path, 4, &err);
    assert_true(lfd >= 0);
    struct peer *p = peer_start_fd(steps, -1, lfd);
    assert_int_equal(fc_http_open(path, 2000, -1, &c, &err), 0);
    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), 0);
    assert_int_equal(fc_http_call(c, "GET", "/version", NULL, 0, NULL, &err), 0);
    /* Let the close reach us before the next request. */
    nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), 0);
    json_auto_t *resume = NULL;
    assert_int_equal(fc_body_vm_state(FC_VM_RESUMED, &resume, &err), 0);
    assert_int_equal(fc_http_call(c, "PATCH", "/vm", resume, 100, NULL, &err), -ETIMEDOUT);
    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), 0);
    assert_true(peer_finish(p));
    unlink(path);
    rmdir(dir);
}

/* fc_http_open() waits for a socket the VMM has not bound yet, within its timeout. */
static void
test_open_waits(void **state)
{
    static const struct step steps[] = {
        { STEP_ACCEPT, NULL, NULL },
        { STEP_EXPECT, "GET /", NULL },
        { STEP_SEND, REPLY_204, NULL },
        { STEP_END, NULL, NULL },
    };
    char dir[] = "/tmp/test-fc-XXXXXX";
    _cleanup_free_ char *path = NULL;
    _cleanup_(fc_http_freep) struct fc_http *c = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_non_null(mkdtemp(dir));
    path = xasprintf("%s/api.sock", dir);
    assert_int_equal(fc_http_open(path, 100, -1, &c, &err), -ETIMEDOUT);
    assert_null(c);
    struct peer *p = peer_start_at(steps, -1, -1, path);
    assert_int_equal(fc_http_open(path, 3000, -1, &c, &err), 0);
    assert_int_equal(fc_http_call(c, "GET", "/", NULL, 0, NULL, &err), 0);
    assert_true(peer_finish(p));
    unlink(path);
    rmdir(dir);
}

/* ---- bodies: golden files and the OpenAPI spec ---- */

struct body_case {
    const char *name;   /* tests/data/fc/<name>.json */
    const char *method; /* the operation in the spec */
    const char *path;
    json_t *body;
};

#define MAX_CASES 32

/* Append a case built by expr, which writes _j. */
#define ADD(nm, m, pth, expr)                               \
    do {                                                    \
        json_t *_j = NULL;                                  \
        if ((expr) < 0)                                     \
            fail_msg("build %s: %s", nm, tp_err_msg(&err)); \
        assert_true(n < MAX_CASES);                         \
        out[n++] = (struct body_case){ nm, m, pth, _j };    \
    } while (0)

/* Every body the driver sends, with values that exercise each optional field. */
static size_t
body_cases(struct body_case *out)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    static const struct fc_net_override overrides[] = {
        { .iface_id = "eth0", .host_dev_name = "tp-child1" },
        { .iface_id = "eth1", .host_dev_name = "tp-child1b" },
    };
    size_t n = 0;

    ADD("boot-source", "put", "/boot-source",
        fc_body_boot_source(&(struct fc_boot_source){ .kernel_image_path = "/cache/vmlinux",
                                                      .boot_args = "console=ttyS0 reboot=k panic=1",
                                                      .initrd_path = "/cache/initrd" },
                            &_j, &err));
    ADD("boot-source-minimal", "put", "/boot-source",
        fc_body_boot_source(&(struct fc_boot_source){ .kernel_image_path = "/cache/vmlinux" }, &_j,
                            &err));
    ADD("machine-config", "put", "/machine-config",
        fc_body_machine_config(&(struct fc_machine_config){ .vcpu_count = 2,
                                                            .mem_size_mib = 512,
                                                            .track_dirty_pages = true },
                               &_j, &err));
    ADD("machine-config-2m", "put", "/machine-config",
        fc_body_machine_config(&(struct fc_machine_config){ .vcpu_count = 4,
                                                            .mem_size_mib = 2048,
                                                            .smt = true,
                                                            .huge_pages = FC_HUGE_PAGES_2M },
                               &_j, &err));
    ADD("drive-rootfs", "put", "/drives/{drive_id}",
        fc_body_drive(&(struct fc_drive){ .drive_id = "rootfs",
                                          .path_on_host = "/inst/a/rootfs.ext4",
                                          .is_root_device = true },
                      &_j, &err));
    ADD("drive-data", "put", "/drives/{drive_id}",
        fc_body_drive(&(struct fc_drive){ .drive_id = "data_1",
                                          .path_on_host = "/inst/a/data.img",
                                          .is_read_only = true,
                                          .partuuid = "0eaa91a0-01",
                                          .cache_type = FC_CACHE_WRITEBACK,
                                          .io_engine = FC_IO_ENGINE_ASYNC },
                      &_j, &err));
    ADD("net-eth0", "put", "/network-interfaces/{iface_id}",
        fc_body_net_iface(&(struct fc_net_iface){ .iface_id = "eth0",
                                                  .host_dev_name = "tp-a1b2",
                                                  .guest_mac = "06:00:ac:10:00:02",
                                                  .mtu = 1500 },
                          &_j, &err));
    ADD("vsock", "put", "/vsock",
        fc_body_vsock(&(struct fc_vsock_dev){ .guest_cid = 3, .uds_path = "/inst/a/vsock.sock" },
                      &_j, &err));
    ADD("logger", "put", "/logger",
        fc_body_logger(&(struct fc_logger){ .log_path = "/inst/a/logs/vmm.log",
                                            .level = FC_LOG_INFO,
                                            .show_level = true },
                       &_j, &err));
    ADD("metrics", "put", "/metrics", fc_body_metrics("/inst/a/logs/metrics.json", &_j, &err));
    ADD("serial", "put", "/serial", fc_body_serial("/inst/a/logs/console.log", &_j, &err));
    ADD("action-instance-start", "put", "/actions",
        fc_body_action(FC_ACTION_INSTANCE_START, &_j, &err));
    ADD("action-ctrl-alt-del", "put", "/actions",
        fc_body_action(FC_ACTION_SEND_CTRL_ALT_DEL, &_j, &err));
    ADD("action-flush-metrics", "put", "/actions",
        fc_body_action(FC_ACTION_FLUSH_METRICS, &_j, &err));
    ADD("vm-paused", "patch", "/vm", fc_body_vm_state(FC_VM_PAUSED, &_j, &err));
    ADD("vm-resumed", "patch", "/vm", fc_body_vm_state(FC_VM_RESUMED, &_j, &err));
    ADD("snapshot-create-full", "put", "/snapshot/create",
        fc_body_snapshot_create(&(struct fc_snapshot_create){ .type = FC_SNAPSHOT_FULL,
                                                              .snapshot_path = "/snap/state",
                                                              .mem_file_path = "/snap/memory" },
                                &_j, &err));
    ADD("snapshot-create-diff", "put", "/snapshot/create",
        fc_body_snapshot_create(&(struct fc_snapshot_create){ .type = FC_SNAPSHOT_DIFF,
                                                              .snapshot_path = "/snap/state",
                                                              .mem_file_path = "/base/memory" },
                                &_j, &err));
    ADD("snapshot-load-file", "put", "/snapshot/load",
        fc_body_snapshot_load(&(struct fc_snapshot_load){ .snapshot_path = "/snap/state",
                                                          .backend = FC_MEM_BACKEND_FILE,
                                                          .backend_path = "/snap/memory",
                                                          .track_dirty_pages = true,
                                                          .resume_vm = true },
                              &_j, &err));
    ADD("snapshot-load-uffd", "put", "/snapshot/load",
        fc_body_snapshot_load(&(struct fc_snapshot_load){ .snapshot_path = "/tpl/state",
                                                          .backend = FC_MEM_BACKEND_UFFD,
                                                          .backend_path = "/inst/c/uffd.sock",
                                                          .track_dirty_pages = true,
                                                          .resume_vm = true,
                                                          .clock_realtime = true,
                                                          .net_overrides = overrides,
                                                          .n_net_overrides = 2,
                                                          .vsock_uds_path = "/inst/c/vsock.sock" },
                              &_j, &err));
    return n;
}

static void
free_cases(struct body_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(cases[i].body);
}

static void
test_body_golden(void **state)
{
    struct body_case cases[MAX_CASES];
    size_t n = body_cases(cases);
    const char *data = getenv("TORPOR_TEST_DATA");
    const char *regen = getenv("TORPOR_TEST_REGENERATE");
    (void)state;

    assert_non_null(data);
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *path = xasprintf("%s/fc/%s.json", data, cases[i].name);
        _cleanup_free_ char *dump = json_dumps(cases[i].body, JSON_SORT_KEYS | JSON_INDENT(2));
        _cleanup_free_ char *got = xasprintf("%s\n", dump);
        _cleanup_free_ char *want = NULL;

        if (regen && strcmp(regen, "1") == 0)
            assert_int_equal(fs_write_atomic(path, got, strlen(got), 0644, NULL), 0);
        if (fs_read_file(path, 1 << 20, &want, NULL, NULL) < 0)
            fail_msg("missing golden file %s", path);
        if (strcmp(want, got) != 0)
            fprintf(stderr, "body '%s' differs from %s:\n%s", cases[i].name, path, got);
        assert_string_equal(want, got);
    }
    free_cases(cases, n);
}

static void
test_body_invalid(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *j = NULL;
    (void)state;

    assert_int_equal(fc_body_boot_source(&(struct fc_boot_source){ 0 }, &j, &err), -EINVAL);
    assert_int_equal(
        fc_body_machine_config(&(struct fc_machine_config){ .vcpu_count = 0, .mem_size_mib = 128 },
                               &j, &err),
        -EINVAL);
    assert_int_equal(
        fc_body_machine_config(&(struct fc_machine_config){ .vcpu_count = 33, .mem_size_mib = 128 },
                               &j, &err),
        -EINVAL);
    assert_int_equal(
        fc_body_machine_config(
            &(struct fc_machine_config){ .vcpu_count = 3, .mem_size_mib = 128, .smt = true }, &j,
            &err),
        -EINVAL);
    assert_int_equal(
        fc_body_machine_config(&(struct fc_machine_config){ .vcpu_count = 1, .mem_size_mib = 0 },
                               &j, &err),
        -EINVAL);
    assert_int_equal(fc_body_machine_config(
                         &(struct fc_machine_config){
                             .vcpu_count = 1, .mem_size_mib = 129, .huge_pages = FC_HUGE_PAGES_2M },
                         &j, &err),
                     -EINVAL);
    assert_int_equal(
        fc_body_machine_config(
            &(struct fc_machine_config){ .vcpu_count = 1, .mem_size_mib = 128, .huge_pages = 7 },
            &j, &err),
        -EINVAL);
    assert_int_equal(
        fc_body_drive(&(struct fc_drive){ .drive_id = "root-fs", .path_on_host = "/x" }, &j, &err),
        -EINVAL);
    assert_string_equal(err.msg, "build drive: id 'root-fs' is not letters, digits and '_'");
    assert_int_equal(fc_body_drive(&(struct fc_drive){ .drive_id = "rootfs" }, &j, &err), -EINVAL);
    assert_int_equal(fc_body_drive(&(struct fc_drive){ .drive_id = "rootfs",
                                                       .path_on_host = "/x",
                                                       .io_engine = _FC_IO_ENGINE_INVALID },
                                   &j, &err),
                     -EINVAL);
    assert_int_equal(
        fc_body_net_iface(
            &(struct fc_net_iface){ .iface_id = "eth0", .host_dev_name = "tap0", .mtu = 67 }, &j,
            &err),
        -EINVAL);
    assert_int_equal(fc_body_net_iface(&(struct fc_net_iface){ .iface_id = "eth0" }, &j, &err),
                     -EINVAL);
    assert_int_equal(
        fc_body_vsock(&(struct fc_vsock_dev){ .guest_cid = 2, .uds_path = "/v" }, &j, &err),
        -EINVAL);
    assert_int_equal(
        fc_body_logger(&(struct fc_logger){ .log_path = "/l", .level = _FC_LOG_MAX }, &j, &err),
        -EINVAL);
    assert_int_equal(fc_body_metrics(NULL, &j, &err), -EINVAL);
    assert_int_equal(fc_body_serial("", &j, &err), -EINVAL);
    assert_int_equal(fc_body_action(_FC_ACTION_MAX, &j, &err), -EINVAL);
    assert_int_equal(fc_body_vm_state(_FC_VM_INVALID, &j, &err), -EINVAL);
    assert_int_equal(
        fc_body_snapshot_create(&(struct fc_snapshot_create){ .snapshot_path = "/s" }, &j, &err),
        -EINVAL);
    assert_int_equal(
        fc_body_snapshot_load(
            &(struct fc_snapshot_load){ .snapshot_path = "/s", .backend_path = "/m", .backend = 2 },
            &j, &err),
        -EINVAL);
    assert_int_equal(fc_body_snapshot_load(
                         &(struct fc_snapshot_load){
                             .snapshot_path = "/s",
                             .backend_path = "/m",
                             .n_net_overrides = 1,
                             .net_overrides = &(struct fc_net_override){ .iface_id = "eth 0",
                                                                         .host_dev_name = "t" } },
                         &j, &err),
                     -EINVAL);
    assert_null(j);
    assert_true(fc_id_valid("Root_1"));
    assert_false(fc_id_valid(""));
    assert_false(fc_id_valid("a/b"));
}

#ifdef HAVE_YAML
/* ---- a small OpenAPI checker: the spec as JSON (every scalar a string) ---- */

static json_t *
yaml_to_json(yaml_document_t *doc, yaml_node_t *node)
{
    json_t *out;

    if (!node)
        return NULL;
    switch (node->type) {
    case YAML_SCALAR_NODE:
        return json_stringn((const char *)node->data.scalar.value, node->data.scalar.length);
    case YAML_SEQUENCE_NODE:
        out = json_array();
        for (yaml_node_item_t *i = node->data.sequence.items.start;
             i < node->data.sequence.items.top; i++)
            json_array_append_new(out, yaml_to_json(doc, yaml_document_get_node(doc, *i)));
        return out;
    case YAML_MAPPING_NODE:
        out = json_object();
        for (yaml_node_pair_t *pr = node->data.mapping.pairs.start;
             pr < node->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(doc, pr->key);
            if (k && k->type == YAML_SCALAR_NODE)
                json_object_set_new(out, (const char *)k->data.scalar.value,
                                    yaml_to_json(doc, yaml_document_get_node(doc, pr->value)));
        }
        return out;
    default:
        return NULL;
    }
}

/* The spec file: $TORPOR_FC_SPEC (set by meson). NULL (the test skips) when it is absent. */
static json_t *
spec_load(void)
{
    const char *path = getenv("TORPOR_FC_SPEC");
    yaml_parser_t parser;
    yaml_document_t doc;
    json_t *spec = NULL;
    FILE *f;

    if (!path || !(f = fopen(path, "re")))
        return NULL;
    assert_true(yaml_parser_initialize(&parser));
    yaml_parser_set_input_file(&parser, f);
    if (yaml_parser_load(&parser, &doc)) {
        spec = yaml_to_json(&doc, yaml_document_get_root_node(&doc));
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    assert_non_null(spec);
    return spec;
}

static json_t *
spec_body_schema(json_t *spec, const char *method, const char *path)
{
    json_t *op = json_object_get(json_object_get(json_object_get(spec, "paths"), path), method);
    json_t *params = json_object_get(op, "parameters");
    size_t i;
    json_t *prm;

    json_array_foreach(params, i,
                       prm) if (strcmp(json_string_value(json_object_get(prm, "in")), "body") ==
                                0) return json_object_get(prm, "schema");
    return NULL;
}

static bool
in_enum(json_t *list, const char *v)
{
    size_t i;
    json_t *e;

    json_array_foreach(list, i, e) if (strcmp(json_string_value(e), v) == 0) return true;
    return false;
}

/* Check v against schema the way Firecracker's deserialisers would: types, required fields, no
 * unknown fields, enums, minimum/maximum. false with msg set on the first violation. */
static bool
spec_check(json_t *spec, json_t *schema, json_t *v, const char *where, char *msg, size_t msz)
{
    const char *ref = json_string_value(json_object_get(schema, "$ref"));
    const char *type;
    json_t *x;

    if (ref) {
        assert_true(strncmp(ref, "#/definitions/", 14) == 0);
        schema = json_object_get(json_object_get(spec, "definitions"), ref + 14);
        assert_non_null(schema);
    }
    type = json_string_value(json_object_get(schema, "type"));
    assert_non_null(type);
    if (strcmp(type, "object") == 0) {
        json_t *props = json_object_get(schema, "properties");
        const char *key;
        size_t i;

        if (!json_is_object(v))
            return snprintf(msg, msz, "%s: not an object", where), false;
        json_array_foreach(
            json_object_get(schema, "required"), i,
            x) if (!json_object_get(v, json_string_value(x))) return snprintf(msg, msz,
                                                                              "%s: missing '%s'",
                                                                              where,
                                                                              json_string_value(x)),
            false;
        json_object_foreach(v, key, x)
        {
            char sub[256];
            json_t *ps = json_object_get(props, key);
            if (!ps)
                return snprintf(msg, msz, "%s: unknown field '%s'", where, key), false;
            snprintf(sub, sizeof(sub), "%s.%s", where, key);
            if (!spec_check(spec, ps, x, sub, msg, msz))
                return false;
        }
        return true;
    }
    if (strcmp(type, "string") == 0) {
        if (!json_is_string(v))
            return snprintf(msg, msz, "%s: not a string", where), false;
        x = json_object_get(schema, "enum");
        if (x && !in_enum(x, json_string_value(v)))
            return snprintf(msg, msz, "%s: '%s' not in the enum", where, json_string_value(v)),
                   false;
        return true;
    }
    if (strcmp(type, "boolean") == 0) {
        if (!json_is_boolean(v))
            return snprintf(msg, msz, "%s: not a boolean", where), false;
        return true;
    }
    if (strcmp(type, "integer") == 0) {
        const char *min = json_string_value(json_object_get(schema, "minimum"));
        const char *max = json_string_value(json_object_get(schema, "maximum"));
        if (!json_is_integer(v))
            return snprintf(msg, msz, "%s: not an integer", where), false;
        if ((min && json_integer_value(v) < strtoll(min, NULL, 10)) ||
            (max && json_integer_value(v) > strtoll(max, NULL, 10)))
            return snprintf(msg, msz, "%s: out of range", where), false;
        return true;
    }
    if (strcmp(type, "array") == 0) {
        size_t i;
        if (!json_is_array(v))
            return snprintf(msg, msz, "%s: not an array", where), false;
        json_array_foreach(v, i, x)
        {
            char sub[256];
            snprintf(sub, sizeof(sub), "%s[%zu]", where, i);
            if (!spec_check(spec, json_object_get(schema, "items"), x, sub, msg, msz))
                return false;
        }
        return true;
    }
    fail_msg("%s: schema type '%s' not handled by the checker", where, type);
    return false;
}

static void
assert_spec_valid(json_t *spec, const char *method, const char *path, json_t *body)
{
    json_t *schema = spec_body_schema(spec, method, path);
    char msg[512];

    if (!schema)
        fail_msg("the spec has no body for %s %s", method, path);
    if (!spec_check(spec, schema, body, path, msg, sizeof(msg))) {
        _cleanup_free_ char *dump = json_dumps(body, JSON_SORT_KEYS);
        fail_msg("%s %s %s: %s", method, path, dump, msg);
    }
}

static void
test_body_spec(void **state)
{
    struct body_case cases[MAX_CASES];
    json_auto_t *spec = spec_load();
    char msg[512];
    size_t n;
    (void)state;

    if (!spec) {
        fprintf(stderr, "spec file not found (TORPOR_FC_SPEC): skipping\n");
        skip();
    }
    n = body_cases(cases);
    for (size_t i = 0; i < n; i++)
        assert_spec_valid(spec, cases[i].method, cases[i].path, cases[i].body);
    free_cases(cases, n);

    /* The checker itself catches what Firecracker would refuse. */
    static const char *const bad[] = {
        "{\"action_type\":\"Reboot\"}",
        "{}",
        "{\"action_type\":\"InstanceStart\",\"extra\":1}",
        "{\"action_type\":1}",
    };
    json_t *schema = spec_body_schema(spec, "put", "/actions");
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        json_auto_t *j = json_loads(bad[i], 0, NULL);
        assert_false(spec_check(spec, schema, j, "/actions", msg, sizeof(msg)));
    }
}

/* Every enum value each builder can produce is one the spec lists, and the instance states the
 * parser knows are exactly the spec's. */
static void
test_enums_spec(void **state)
{
    json_auto_t *spec = spec_load();
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *defs;
    (void)state;

    if (!spec)
        skip();
    defs = json_object_get(spec, "definitions");
    for (int v = 0; v < _FC_ACTION_MAX; v++) {
        json_auto_t *j = NULL;
        assert_int_equal(fc_body_action(v, &j, &err), 0);
        assert_spec_valid(spec, "put", "/actions", j);
    }
    for (int v = 0; v < _FC_VM_MAX; v++) {
        json_auto_t *j = NULL;
        assert_int_equal(fc_body_vm_state(v, &j, &err), 0);
        assert_spec_valid(spec, "patch", "/vm", j);
    }
    for (int v = 0; v < _FC_LOG_MAX; v++) {
        json_auto_t *j = NULL;
        assert_int_equal(
            fc_body_logger(&(struct fc_logger){ .log_path = "/l", .level = v }, &j, &err), 0);
        assert_spec_valid(spec, "put", "/logger", j);
    }
    for (int v = 0; v < _FC_SNAPSHOT_MAX; v++) {
        json_auto_t *j = NULL;
        assert_int_equal(fc_body_snapshot_create(
                             &(struct fc_snapshot_create){
                                 .type = v, .snapshot_path = "/s", .mem_file_path = "/m" },
                             &j, &err),
                         0);
        assert_spec_valid(spec, "put", "/snapshot/create", j);
    }
    for (int v = 0; v < _FC_MEM_BACKEND_MAX; v++) {
        json_auto_t *j = NULL;
        assert_int_equal(fc_body_snapshot_load(&(struct fc_snapshot_load){ .snapshot_path = "/s",
                                                                           .backend = v,
                                                                           .backend_path = "/m" },
                                               &j, &err),
                         0);
        assert_spec_valid(spec, "put", "/snapshot/load", j);
    }
    for (int c = 0; c < _FC_CACHE_MAX; c++)
        for (int e = 0; e < _FC_IO_ENGINE_MAX; e++) {
            json_auto_t *j = NULL;
            assert_int_equal(fc_body_drive(&(struct fc_drive){ .drive_id = "d",
                                                               .path_on_host = "/d",
                                                               .cache_type = c,
                                                               .io_engine = e },
                                           &j, &err),
                             0);
            assert_spec_valid(spec, "put", "/drives/{drive_id}", j);
        }
    for (int h = 0; h < _FC_HUGE_PAGES_MAX; h++) {
        json_auto_t *j = NULL;
        assert_int_equal(fc_body_machine_config(&(struct fc_machine_config){ .vcpu_count = 32,
                                                                             .mem_size_mib = 256,
                                                                             .huge_pages = h },
                                                &j, &err),
                         0);
        assert_spec_valid(spec, "put", "/machine-config", j);
    }

    json_t *states = json_object_get(
        json_object_get(json_object_get(json_object_get(defs, "InstanceInfo"), "properties"),
                        "state"),
        "enum");
    assert_int_equal(json_array_size(states), _FC_INSTANCE_MAX);
    for (int s = 0; s < _FC_INSTANCE_MAX; s++)
        assert_true(in_enum(states, fc_instance_state_to_string(s)));
    assert_null(fc_instance_state_to_string(_FC_INSTANCE_MAX));
}
#endif

/* ---- reply parsers ---- */

static void
test_parse_replies(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct fc_instance_info info = { .id = NULL };
    char *version = NULL, *fault;
    (void)state;

    const char *ok = "{\"id\":\"anonymous-instance\",\"state\":\"Not started\","
                     "\"vmm_version\":\"1.16.1\",\"app_name\":\"Firecracker\",\"extra\":true}";
    assert_int_equal(fc_parse_instance_info(ok, strlen(ok), &info, &err), 0);
    assert_int_equal(info.state, FC_INSTANCE_NOT_STARTED);
    assert_string_equal(info.id, "anonymous-instance");
    assert_string_equal(info.vmm_version, "1.16.1");
    assert_string_equal(info.app_name, "Firecracker");
    fc_instance_info_clear(&info);
    assert_null(info.id);

    static const char *const bad_info[] = {
        "",
        "[]",
        "{\"id\":\"x\",\"state\":\"Running\",\"vmm_version\":\"1\"}",
        "{\"id\":\"x\",\"state\":\"running\",\"vmm_version\":\"1\",\"app_name\":\"F\"}",
        "{\"id\":1,\"state\":\"Running\",\"vmm_version\":\"1\",\"app_name\":\"F\"}",
        "{\"id\":\"x\",\"state\":\"Running\",\"vmm_version\":\"1\",\"app_name\":\"F\"",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad_info); i++) {
        assert_int_equal(fc_parse_instance_info(bad_info[i], strlen(bad_info[i]), &info, &err),
                         -EPROTO);
        assert_null(info.id);
    }

    assert_int_equal(fc_parse_version("{\"firecracker_version\":\"1.16.1\"}", 32, &version, &err),
                     0);
    assert_string_equal(version, "1.16.1");
    free(version);
    version = NULL;
    assert_int_equal(fc_parse_version("{\"firecracker_version\":\"\"}", 26, &version, &err),
                     -EPROTO);
    assert_int_equal(fc_parse_version("{\"version\":\"1\"}", 15, &version, &err), -EPROTO);
    assert_null(version);

    static const struct {
        const char *body, *want;
    } faults[] = {
        { "{\"fault_message\":\"Invalid request method and/or path: GET /nope.\"}",
          "Invalid request method and/or path: GET /nope." },
        { "{\"fault_message\":\"line\\none\\ttwo\"}", "line one two" },
        { "{ \"error\": \"Bad header.\nAll previous unanswered requests will be dropped.\" }",
          "Bad header. All previous unanswered requests will be dropped." },
        { "  plain text\r\n", "plain text" },
        { "{\"fault_message\":5}", "{\"fault_message\":5}" },
        { "", "no error message in the reply" },
        { " \r\n ", "no error message in the reply" },
    };
    for (size_t i = 0; i < ELEMENTSOF(faults); i++) {
        fault = fc_parse_fault(faults[i].body, strlen(faults[i].body));
        assert_string_equal(fault, faults[i].want);
        free(fault);
    }
    _cleanup_free_ char *huge = xmalloc(3 * FC_FAULT_MAX);
    memset(huge, 'z', 3 * FC_FAULT_MAX);
    fault = fc_parse_fault(huge, 3 * FC_FAULT_MAX);
    assert_int_equal(strlen(fault), FC_FAULT_MAX);
    free(fault);
}

/* ---- vsock CONNECT handshake ---- */

static int
vsock_run(const struct step *steps, int timeout_ms, uint32_t *ret_port, char *leftover,
          size_t leftover_size, struct tp_err *err)
{
    struct peer *p = peer_start(steps);
    int r = fc_vsock_handshake(p->client_fd, 52, timeout_ms, ret_port, err);

    if (leftover) {
        ssize_t n = 0;
        if (sock_wait(p->client_fd, POLLIN, 1000) > 0)
            n = read(p->client_fd, leftover, leftover_size - 1);
        leftover[n > 0 ? n : 0] = '\0';
    }
    shutdown(p->client_fd, SHUT_RDWR);
    assert_true(peer_finish(p));
    return r;
}

static void
test_vsock(void **state)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    uint32_t port = 0;
    char rest[64];
    (void)state;

    static const struct step ok[] = {
        { STEP_EXPECT_RAW, "CONNECT 52\n", NULL },
        { STEP_SEND, "OK 10", NULL },
        { STEP_PAUSE, NULL, NULL },
        { STEP_SEND, "73741824\nHELLO", NULL },
        { STEP_END, NULL, NULL },
    };
    assert_int_equal(vsock_run(ok, 2000, &port, rest, sizeof(rest), &err), 0);
    assert_int_equal(port, 1073741824u);
    /* The payload after the OK line is left for the agent protocol. */
    assert_string_equal(rest, "HELLO");

    static const struct step refused[] = {
        { STEP_EXPECT_RAW, "CONNECT 52\n", NULL },
        { STEP_CLOSE, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    assert_int_equal(vsock_run(refused, 2000, NULL, NULL, 0, &err), -ECONNREFUSED);
    assert_non_null(strstr(err.msg, "nothing listening"));

    static const struct step garbage[] = {
        { STEP_EXPECT_RAW, "CONNECT 52\n", NULL },
        { STEP_SEND, "ERR 1\n", NULL },
        { STEP_END, NULL, NULL },
    };
    assert_int_equal(vsock_run(garbage, 2000, NULL, NULL, 0, &err), -EPROTO);
    assert_string_equal(err.msg, "vsock CONNECT 52: unexpected answer 'ERR 1\\n'");

    static const struct step overflow[] = {
        { STEP_EXPECT_RAW, "CONNECT 52\n", NULL },
        { STEP_SEND, "OK 99999999999\n", NULL },
        { STEP_END, NULL, NULL },
    };
    assert_int_equal(vsock_run(overflow, 2000, NULL, NULL, 0, &err), -EPROTO);

    static const struct step too_long[] = {
        { STEP_EXPECT_RAW, "CONNECT 52\n", NULL },
        { STEP_SEND, "OK 0000000000000000000000000000000000001\n", NULL },
        { STEP_END, NULL, NULL },
    };
    assert_int_equal(vsock_run(too_long, 2000, NULL, NULL, 0, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "longer than 32 bytes"));

    static const struct step partial[] = {
        { STEP_EXPECT_RAW, "CONNECT 52\n", NULL },
        { STEP_SEND, "OK 1", NULL },
        { STEP_CLOSE, NULL, NULL },
        { STEP_END, NULL, NULL },
    };
    assert_int_equal(vsock_run(partial, 2000, NULL, NULL, 0, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "partial answer 'OK 1'"));

    static const struct step silent[] = {
        { STEP_EXPECT_RAW, "CONNECT 52\n", NULL },
        { STEP_END, NULL, NULL },
    };
    assert_int_equal(vsock_run(silent, 100, NULL, NULL, 0, &err), -ETIMEDOUT);
}

static void
test_vsock_connect(void **state)
{
    static const struct step steps[] = {
        { STEP_ACCEPT, NULL, NULL },    { STEP_EXPECT_RAW, "CONNECT 1024\n", NULL },
        { STEP_SEND, "OK 77\n", NULL }, { STEP_EXPECT_RAW, "ping", NULL },
        { STEP_END, NULL, NULL },
    };
    char dir[] = "/tmp/test-fc-XXXXXX";
    _cleanup_free_ char *path = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    (void)state;

    assert_non_null(mkdtemp(dir));
    path = xasprintf("%s/v.sock", dir);
    int lfd = sock_listen_unix(path, 4, &err);
    assert_true(lfd >= 0);
    struct peer *p = peer_start_fd(steps, -1, lfd);
    int fd = fc_vsock_connect(path, 1024, 2000, &err);
    assert_true(fd >= 0);
    assert_int_equal(sock_write_all(fd, "ping", 4), 0);
    assert_true(peer_finish(p));
    close(fd);

    _cleanup_free_ char *gone = xasprintf("%s/none.sock", dir);
    assert_int_equal(fc_vsock_connect(gone, 1024, 2000, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "connect vsock socket"));
    unlink(path);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_reply),
        cmocka_unit_test(test_keep_alive_two_requests),
        cmocka_unit_test(test_split_reply),
        cmocka_unit_test(test_fault_message),
        cmocka_unit_test(test_http_layer_error),
        cmocka_unit_test(test_truncated_body),
        cmocka_unit_test(test_overlong_body),
        cmocka_unit_test(test_closed_mid_reply),
        cmocka_unit_test(test_closed_before_reply),
        cmocka_unit_test(test_oversized_headers),
        cmocka_unit_test(test_oversized_body),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_watch_fd),
        cmocka_unit_test(test_bad_request_line),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_open_waits),
        cmocka_unit_test(test_body_golden),
        cmocka_unit_test(test_body_invalid),
#ifdef HAVE_YAML
        cmocka_unit_test(test_body_spec),
        cmocka_unit_test(test_enums_spec),
#endif
        cmocka_unit_test(test_parse_replies),
        cmocka_unit_test(test_vsock),
        cmocka_unit_test(test_vsock_connect),
    };
    return cmocka_run_group_tests_name("fc", tests, NULL, NULL);
}
