/* fc-double: HTTP/1.1 request framing and responses over the API socket. */
#include "http.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int
http_conn_fill(struct http_conn *c)
{
    for (;;) {
        if (c->cap - c->len < 4096) {
            c->cap = c->cap ? c->cap * 2 : 16384;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf)
                abort();
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
        if (n > 0) {
            c->len += (size_t)n;
            return 1;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return -errno;
    }
}

void
http_conn_release(struct http_conn *c)
{
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

void
http_req_clear(struct http_req *req)
{
    free(req->body);
    req->body = NULL;
}

static int
write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            if (poll(&pfd, 1, 5000) <= 0)
                return -ETIMEDOUT;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static const char *
status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 413:
        return "Payload Too Large";
    default:
        return "Internal Server Error";
    }
}

int
http_send(int fd, int status, const char *body, bool deprecation)
{
    char head[512];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
                     "%s%s",
                     status, status_text(status), deprecation ? "Deprecation: true\r\n" : "",
                     body ? "Content-Type: application/json\r\n" : "");
    if (body)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    int r = write_all(fd, head, (size_t)n);
    if (r == 0 && blen)
        r = write_all(fd, body, blen);
    return r;
}

int
http_send_fault(int fd, int status, const char *msg, bool deprecation)
{
    json_t *o = json_pack("{s:s}", "fault_message", msg);
    char *text = json_dumps(o, JSON_COMPACT);
    int r = http_send(fd, status, text, deprecation);
    free(text);
    json_decref(o);
    return r;
}

int
http_send_transport_error(int fd, const char *msg)
{
    /* micro-http formats this body by hand: the newline is raw, so it is not valid JSON. */
    char body[1200];
    snprintf(body, sizeof(body),
             "{ \"error\": \"%s\nAll previous unanswered requests will be "
             "dropped.\" }",
             msg);
    return http_send(fd, 400, body, false);
}

static bool
token_eq(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

int
http_take_request(struct http_conn *c, size_t max_payload, struct http_req *req,
                  struct fcd_err *err)
{
    char head[HTTP_MAX_HEADERS + 8], *end, *line, *next;
    size_t head_len, content_len = 0;
    bool http10 = false, conn_close = false, conn_keep = false, expect_continue = false;

    memset(req, 0, sizeof(*req));
    c->buf[c->len] = '\0';
    end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) {
        if (c->len > HTTP_MAX_HEADERS)
            return fcd_fail(err, -EBADMSG, "Invalid request. Reason: headers too long.");
        return 0;
    }
    head_len = (size_t)(end - c->buf) + 4;
    if (head_len > HTTP_MAX_HEADERS)
        return fcd_fail(err, -EBADMSG, "Invalid request. Reason: headers too long.");
    /* Parse a copy: the buffer stays intact while the body is still arriving. */
    memcpy(head, c->buf, head_len);
    head[head_len] = '\0';
    end = head + head_len - 4;

    /* Request line: METHOD SP URI SP HTTP/1.x */
    line = head;
    next = strstr(line, "\r\n");
    {
        char *sp1, *sp2, *ver;
        *next = '\0';
        sp1 = strchr(line, ' ');
        sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || (size_t)(sp1 - line) >= sizeof(req->method) ||
            (size_t)(sp2 - sp1 - 1) >= sizeof(req->path) || sp1 == line || sp2 == sp1 + 1)
            return fcd_fail(err, -EBADMSG, "Invalid request line.");
        memcpy(req->method, line, (size_t)(sp1 - line));
        memcpy(req->path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
        ver = sp2 + 1;
        if (strcmp(ver, "HTTP/1.1") == 0)
            http10 = false;
        else if (strcmp(ver, "HTTP/1.0") == 0)
            http10 = true;
        else
            return fcd_fail(err, -EBADMSG, "Unsupported HTTP version.");
        if (req->path[0] != '/')
            return fcd_fail(err, -EBADMSG, "Invalid URI.");
    }
    for (line = next + 2; line < end; line = next + 2) {
        char *colon, *val;
        size_t nlen;
        next = strstr(line, "\r\n");
        *next = '\0';
        colon = strchr(line, ':');
        if (!colon || colon == line)
            return fcd_fail(err, -EBADMSG, "Invalid header.");
        nlen = (size_t)(colon - line);
        for (val = colon + 1; *val == ' ' || *val == '\t'; val++)
            ;
        if (token_eq(line, nlen, "Content-Length")) {
            char *e;
            errno = 0;
            unsigned long long v = strtoull(val, &e, 10);
            if (errno || e == val || *e || val[0] == '-')
                return fcd_fail(err, -EBADMSG,
                                "Invalid header. Reason: Invalid value. Key: "
                                "Content-Length");
            content_len = (size_t)v;
        } else if (token_eq(line, nlen, "Transfer-Encoding")) {
            return fcd_fail(err, -EBADMSG,
                            "Invalid header. Reason: Unsupported value. Key: "
                            "Transfer-Encoding; Value: %s",
                            val);
        } else if (token_eq(line, nlen, "Connection")) {
            conn_close = strcasecmp(val, "close") == 0;
            conn_keep = strcasecmp(val, "keep-alive") == 0;
        } else if (token_eq(line, nlen, "Expect")) {
            expect_continue = strcasecmp(val, "100-continue") == 0;
        }
    }
    if (content_len > max_payload)
        return fcd_fail(err, -EBADMSG,
                        "Request payload with size %zu is larger than the limit of %zu allowed "
                        "by server.",
                        content_len, max_payload);
    if (c->len - head_len < content_len) {
        if (expect_continue && !c->sent_continue) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            c->sent_continue = true;
            if (write_all(c->fd, cont, sizeof(cont) - 1) < 0)
                return fcd_fail(err, -EBADMSG, "write 100 Continue");
        }
        return 0;
    }
    req->keep_alive = http10 ? conn_keep : !conn_close;
    req->has_body = content_len > 0;
    req->body_len = content_len;
    req->body = malloc(content_len + 1);
    if (!req->body)
        abort();
    memcpy(req->body, c->buf + head_len, content_len);
    req->body[content_len] = '\0';
    memmove(c->buf, c->buf + head_len + content_len, c->len - head_len - content_len);
    c->len -= head_len + content_len;
    c->sent_continue = false;
    return 1;
}
