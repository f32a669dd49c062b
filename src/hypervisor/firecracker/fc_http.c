/* HTTP/1.1 client for Firecracker's API socket: a pure reply parser and a keep-alive connection. */
#include "hypervisor/firecracker/fc_http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hypervisor/firecracker/fc_body.h"
#include "util/sock.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define FC_READ_CHUNK 65536

void
fc_reply_clear(struct fc_reply *reply)
{
    if (!reply)
        return;
    free(reply->body);
    *reply = (struct fc_reply){ .status = 0 };
}

/* RFC 9110 token characters (header names, Connection options). */
static bool
is_tchar(char ch)
{
    return isalnum((unsigned char)ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool
token_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* Trim optional whitespace (SP, HTAB) on both sides of [*s, *s + *n). */
static void
trim_ows(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* The status line: "HTTP/1.x NNN[ reason]". Returns the minor version or -EPROTO. */
static int
parse_status_line(const char *s, size_t n, int *ret_status, struct tp_err *err)
{
    int status;

    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return tp_err_set(err, -EPROTO, "parse HTTP reply: bad status line '%.*s'", (int)MIN(n, 64),
                          s);
    if (!isdigit((unsigned char)s[9]) || !isdigit((unsigned char)s[10]) ||
        !isdigit((unsigned char)s[11]) || (n > 12 && s[12] != ' '))
        return tp_err_set(err, -EPROTO, "parse HTTP reply: bad status code in '%.*s'",
                          (int)MIN(n, 64), s);
    status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status < 100 || status > 599)
        return tp_err_set(err, -EPROTO, "parse HTTP reply: status %d out of range", status);
    for (size_t i = 12; i < n; i++)
        if (iscntrl((unsigned char)s[i]) && s[i] != '\t')
            return tp_err_set(err, -EPROTO, "parse HTTP reply: control character in reason");
    *ret_status = status;
    return s[7] - '0';
}

/* Content-Length: 1*DIGIT, bounded before it can overflow. */
static int
parse_content_length(const char *v, size_t n, size_t *ret_len, struct tp_err *err)
{
    size_t len = 0;

    if (n == 0)
        return tp_err_set(err, -EPROTO, "parse HTTP reply: empty Content-Length");
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return tp_err_set(err, -EPROTO, "parse HTTP reply: bad Content-Length '%.*s'",
                              (int)MIN(n, 32), v);
        len = len * 10 + (size_t)(v[i] - '0');
        if (len > FC_HTTP_BODY_MAX)
            return tp_err_set(err, -EPROTO, "parse HTTP reply: body longer than %u bytes",
                              FC_HTTP_BODY_MAX);
    }
    *ret_len = len;
    return 0;
}

/* Connection: a comma-separated list of options. */
static void
parse_connection(const char *v, size_t n, bool *close_seen, bool *keep_alive_seen)
{
    while (n > 0) {
        const char *comma = memchr(v, ',', n);
        size_t item = comma ? (size_t)(comma - v) : n;
        const char *t = v;
        size_t tn = item;

        trim_ows(&t, &tn);
        if (token_eq(t, tn, "close"))
            *close_seen = true;
        else if (token_eq(t, tn, "keep-alive"))
            *keep_alive_seen = true;
        if (!comma)
            break;
        v = comma + 1;
        n -= item + 1;
    }
}

/* Where the header section ends (just past its blank line): 0 while incomplete, -EPROTO when
 * it cannot fit FC_HTTP_HEADER_MAX. */
static ssize_t
find_header_end(const char *buf, size_t len, struct tp_err *err)
{
    size_t scan = MIN(len, (size_t)FC_HTTP_HEADER_MAX);
    size_t line = 0;

    for (size_t i = 0; i < scan; i++) {
        if (buf[i] == '\0')
            return tp_err_set(err, -EPROTO, "parse HTTP reply: NUL byte in the headers");
        if (buf[i] != '\n')
            continue;
        size_t n = i - line;
        if (n == 0 || (n == 1 && buf[line] == '\r')) {
            if (line == 0)
                return tp_err_set(err, -EPROTO, "parse HTTP reply: blank status line");
            return (ssize_t)(i + 1);
        }
        line = i + 1;
    }
    if (len >= FC_HTTP_HEADER_MAX)
        return tp_err_set(err, -EPROTO, "parse HTTP reply: headers longer than %u bytes",
                          FC_HTTP_HEADER_MAX);
    return 0;
}

int
fc_http_parse_reply(const char *buf, size_t len, struct fc_reply *ret_reply, size_t *ret_consumed,
                    struct tp_err *err)
{
    static const char prefix[] = "HTTP/";
    bool close_seen = false, keep_alive_seen = false, deprecation = false, have_length = false;
    size_t content_length = 0, body_len, pos;
    ssize_t hdr_end;
    int minor, status = 0, r;

    if (len == 0)
        return FC_PARSE_MORE;
    /* Fail fast on a stream that is not HTTP at all instead of waiting for a newline. */
    if (memcmp(buf, prefix, MIN(len, sizeof(prefix) - 1)) != 0)
        return tp_err_set(err, -EPROTO, "parse HTTP reply: does not start with 'HTTP/'");
    hdr_end = find_header_end(buf, len, err);
    if (hdr_end <= 0)
        return (int)hdr_end;

    const char *nl = memchr(buf, '\n', (size_t)hdr_end);
    size_t n = (size_t)(nl - buf);
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    minor = parse_status_line(buf, n, &status, err);
    if (minor < 0)
        return minor;

    for (pos = (size_t)(nl - buf) + 1;;) {
        const char *line = buf + pos;
        nl = memchr(line, '\n', (size_t)hdr_end - pos);
        n = (size_t)(nl - line);
        pos += n + 1;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0)
            break;
        if (line[0] == ' ' || line[0] == '\t')
            return tp_err_set(err, -EPROTO, "parse HTTP reply: folded header line");
        const char *colon = memchr(line, ':', n);
        if (!colon || colon == line)
            return tp_err_set(err, -EPROTO, "parse HTTP reply: bad header line '%.*s'",
                              (int)MIN(n, 64), line);
        size_t name_len = (size_t)(colon - line);
        for (size_t i = 0; i < name_len; i++)
            if (!is_tchar(line[i]))
                return tp_err_set(err, -EPROTO, "parse HTTP reply: bad header name '%.*s'",
                                  (int)MIN(name_len, 64), line);
        const char *v = colon + 1;
        size_t vn = n - name_len - 1;
        trim_ows(&v, &vn);
        for (size_t i = 0; i < vn; i++)
            if (iscntrl((unsigned char)v[i]) && v[i] != '\t')
                return tp_err_set(err, -EPROTO,
                                  "parse HTTP reply: control character in header '%.*s'",
                                  (int)MIN(name_len, 64), line);

        if (token_eq(line, name_len, "Content-Length")) {
            size_t cl = 0;
            r = parse_content_length(v, vn, &cl, err);
            if (r < 0)
                return r;
            if (have_length && cl != content_length)
                return tp_err_set(err, -EPROTO, "parse HTTP reply: conflicting Content-Length");
            content_length = cl;
            have_length = true;
        } else if (token_eq(line, name_len, "Transfer-Encoding"))
            return tp_err_set(err, -EPROTO,
                              "parse HTTP reply: Transfer-Encoding '%.*s' unsupported",
                              (int)MIN(vn, 64), v);
        else if (token_eq(line, name_len, "Connection"))
            parse_connection(v, vn, &close_seen, &keep_alive_seen);
        else if (token_eq(line, name_len, "Deprecation"))
            deprecation = token_eq(v, vn, "true");
    }

    /* These never carry a body, whatever the headers say. */
    body_len = (status < 200 || status == 204 || status == 304) ? 0 : content_length;
    if (len - (size_t)hdr_end < body_len)
        return FC_PARSE_MORE;

    char *body = xmalloc(body_len + 1);
    memcpy(body, buf + hdr_end, body_len);
    body[body_len] = '\0';
    *ret_reply = (struct fc_reply){
        .status = status,
        .keep_alive = !close_seen && (minor == 1 || keep_alive_seen),
        .deprecation = deprecation,
        .body = body,
        .body_len = body_len,
    };
    *ret_consumed = (size_t)hdr_end + body_len;
    return FC_PARSE_DONE;
}

struct fc_http {
    pthread_mutex_t lock; /* one request at a time */
    int fd;               /* -EBADF while closed (reopened on the next request when path is set) */
    int watch_fd;         /* borrowed pidfd: readable once the VMM is gone */
    int timeout_ms;
    char *path; /* NULL for an adopted fd */
    char *buf;  /* bytes read but not yet consumed as a reply */
    size_t len, cap;
};

struct fc_http *
fc_http_free(struct fc_http *c)
{
    if (!c)
        return NULL;
    safe_close(c->fd);
    free(c->path);
    free(c->buf);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return NULL;
}

static uint64_t
deadline_after(int timeout_ms)
{
    return now_ms() + (uint64_t)timeout_ms;
}

static int
ms_left(uint64_t deadline)
{
    uint64_t now = now_ms();

    return now >= deadline ? 0 : (int)MIN(deadline - now, (uint64_t)INT32_MAX);
}

/* Give the stream up: a late or partial reply must never be read as the next one's. */
static int
fc_http_drop(struct fc_http *c, int code)
{
    c->fd = safe_close(c->fd);
    c->len = 0;
    return code;
}

static int
fc_http_take_fd(struct fc_http *c, int fd, struct tp_err *err)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        int r = -errno;
        safe_close(fd);
        return tp_err_errno(err, r, "make the API socket non-blocking");
    }
    c->fd = fd;
    c->len = 0;
    return 0;
}

static struct fc_http *
fc_http_new(int timeout_ms, int watch_fd)
{
    struct fc_http *c = xnew(struct fc_http, 1);

    c->fd = -EBADF;
    c->watch_fd = watch_fd;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : FC_HTTP_TIMEOUT_MS;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

int
fc_http_adopt(int fd, int timeout_ms, int watch_fd, struct fc_http **ret_conn, struct tp_err *err)
{
    _cleanup_(fc_http_freep) struct fc_http *c = fc_http_new(timeout_ms, watch_fd);
    int r;

    r = fc_http_take_fd(c, fd, err);
    if (r < 0)
        return r;
    *ret_conn = TAKE_PTR(c);
    return 0;
}

/* A freshly spawned VMM may not have bound its socket yet: the first connect waits for it. A
 * reconnect does not, as a socket left by a dead VMM would only refuse until the deadline. */
static int
fc_http_connect(struct fc_http *c, bool wait, struct tp_err *err)
{
    int fd = wait ? sock_connect_when_ready(c->path, c->timeout_ms, err)
                  : sock_connect_unix(c->path, err);

    if (fd < 0)
        return tp_err_wrap(err, "connect Firecracker API socket");
    return fc_http_take_fd(c, fd, err);
}

int
fc_http_open(const char *path, int timeout_ms, int watch_fd, struct fc_http **ret_conn,
             struct tp_err *err)
{
    _cleanup_(fc_http_freep) struct fc_http *c = fc_http_new(timeout_ms, watch_fd);
    int r;

    c->path = xstrdup(path);
    r = fc_http_connect(c, true, err);
    if (r < 0)
        return r;
    *ret_conn = TAKE_PTR(c);
    return 0;
}

/* Before sending: the idle stream must hold nothing. An orderly close by the server is fine when
 * we can reconnect; stray bytes mean the previous reply was not what it claimed. */
static int
fc_http_ready(struct fc_http *c, struct tp_err *err)
{
    char byte;

    if (c->fd >= 0 && c->len == 0) {
        ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0)
            return tp_err_set(err, fc_http_drop(c, -EPROTO),
                              "unexpected bytes from Firecracker between replies");
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            c->fd = safe_close(c->fd);
    } else if (c->fd >= 0)
        return tp_err_set(err, fc_http_drop(c, -EPROTO),
                          "unexpected bytes from Firecracker between replies");
    if (c->fd >= 0)
        return 0;
    if (!c->path)
        return tp_err_set(err, -ECONNRESET, "API connection closed");
    return fc_http_connect(c, false, err);
}

static int
fc_http_send(struct fc_http *c, const char *data, size_t len, uint64_t deadline, struct tp_err *err)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n >= 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno == EPIPE ? -ECONNRESET : -errno;
            return tp_err_errno(err, fc_http_drop(c, e), "send request to Firecracker");
        }
        int left = ms_left(deadline);
        int r = left > 0 ? sock_wait(c->fd, POLLOUT, left) : 0;
        if (r < 0)
            return tp_err_errno(err, fc_http_drop(c, r), "wait to send to Firecracker");
        if (r == 0)
            return tp_err_set(err, fc_http_drop(c, -ETIMEDOUT),
                              "Firecracker did not take the request in time");
    }
    return 0;
}

/* Read one chunk: 0 when bytes were added. */
static int
fc_http_fill(struct fc_http *c, uint64_t deadline, struct tp_err *err)
{
    struct pollfd p[2] = {
        { .fd = c->fd, .events = POLLIN },
        { .fd = c->watch_fd, .events = POLLIN },
    };

    for (;;) {
        int r = poll(p, c->watch_fd >= 0 ? 2 : 1, ms_left(deadline));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            return tp_err_errno(err, fc_http_drop(c, r), "poll Firecracker API socket");
        }
        if (r == 0) {
            size_t got = c->len; /* before fc_http_drop() forgets it */
            return tp_err_set(err, fc_http_drop(c, -ETIMEDOUT),
                              "no complete reply from Firecracker within the time limit "
                              "(%zu bytes received)",
                              got);
        }
        /* Data still buffered wins over the exit notification: it may be the whole reply. */
        if (p[0].revents) {
            if (c->cap - c->len < FC_READ_CHUNK) {
                c->cap = c->len + FC_READ_CHUNK;
                c->buf = xrealloc(c->buf, c->cap);
            }
            ssize_t n = recv(c->fd, c->buf + c->len, FC_READ_CHUNK, 0);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                    continue;
                return tp_err_errno(err, fc_http_drop(c, -errno), "read Firecracker API socket");
            }
            if (n == 0 && c->len == 0)
                return tp_err_set(err, fc_http_drop(c, -ECONNRESET),
                                  "connection closed by Firecracker before a reply");
            if (n == 0) {
                size_t got = c->len;
                return tp_err_set(err, fc_http_drop(c, -ECONNRESET),
                                  "connection closed by Firecracker mid-reply (%zu bytes received)",
                                  got);
            }
            c->len += (size_t)n;
            return 0;
        }
        return tp_err_set(err, fc_http_drop(c, -ECONNRESET), "Firecracker exited");
    }
}

static bool
token_ok(const char *s, bool is_path)
{
    if (!s || !*s || (is_path && s[0] != '/'))
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f || (!is_path && !isupper((unsigned char)*s)))
            return false;
    return true;
}

static int
fc_http_request_locked(struct fc_http *c, const char *method, const char *path, const char *body,
                       size_t body_len, int timeout_ms, struct fc_reply *ret_reply,
                       struct tp_err *err)
{
    _cleanup_free_ char *head = NULL;
    uint64_t deadline = deadline_after(timeout_ms > 0 ? timeout_ms : c->timeout_ms);
    int r;

    if (!token_ok(method, false) || !token_ok(path, true))
        return tp_err_set(err, -EINVAL, "refuse to send a malformed request line");
    r = fc_http_ready(c, err);
    if (r < 0)
        return r;

    if (body)
        head = xasprintf("%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                         method, path, body_len);
    else
        head = xasprintf("%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
                         method, path);
    r = fc_http_send(c, head, strlen(head), deadline, err);
    if (r >= 0 && body)
        r = fc_http_send(c, body, body_len, deadline, err);
    if (r < 0)
        return r;

    for (;;) {
        struct fc_reply reply;
        size_t used;

        r = fc_http_parse_reply(c->buf, c->len, &reply, &used, err);
        if (r < 0)
            return fc_http_drop(c, r);
        if (r == FC_PARSE_MORE) {
            r = fc_http_fill(c, deadline, err);
            if (r < 0)
                return r;
            continue;
        }
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        if (reply.status < 200) {
            fc_reply_clear(&reply);
            continue;
        }
        if (!reply.keep_alive)
            fc_http_drop(c, 0);
        *ret_reply = reply;
        return 0;
    }
}

int
fc_http_request(struct fc_http *c, const char *method, const char *path, const char *body,
                size_t body_len, int timeout_ms, struct fc_reply *ret_reply, struct tp_err *err)
{
    int r;

    pthread_mutex_lock(&c->lock);
    r = fc_http_request_locked(c, method, path, body, body_len, timeout_ms, ret_reply, err);
    pthread_mutex_unlock(&c->lock);
    return r;
}

static int
fc_http_call_inner(struct fc_http *c, const char *method, const char *path, const json_t *body,
                   int timeout_ms, json_t **ret_json, struct tp_err *err)
{
    _cleanup_(fc_reply_clear) struct fc_reply reply = { .body = NULL };
    _cleanup_free_ char *text = NULL;
    json_error_t jerr;
    int r;

    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text)
            return tp_err_set(err, -EINVAL, "serialise request body");
    }
    r = fc_http_request(c, method, path, text, text ? strlen(text) : 0, timeout_ms, &reply, err);
    if (r < 0)
        return r;
    if (reply.status < 200 || reply.status > 299) {
        _cleanup_free_ char *fault = fc_parse_fault(reply.body, reply.body_len);
        tp_err_set(err, -EIO, "%s", fault);
        return tp_err_wrap(err, "HTTP %d", reply.status);
    }
    if (ret_json) {
        json_t *j = NULL;
        if (reply.body_len > 0) {
            j = json_loadb(reply.body, reply.body_len, JSON_DECODE_ANY, &jerr);
            if (!j)
                return tp_err_set(err, -EPROTO, "parse reply body: %s (column %d)", jerr.text,
                                  jerr.column);
        }
        *ret_json = j;
    }
    return 0;
}

int
fc_http_call(struct fc_http *c, const char *method, const char *path, const json_t *body,
             int timeout_ms, json_t **ret_json, struct tp_err *err)
{
    int r = fc_http_call_inner(c, method, path, body, timeout_ms, ret_json, err);

    if (r < 0)
        tp_err_wrap(err, "%s %s", method, path);
    return r;
}
