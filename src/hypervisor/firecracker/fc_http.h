/* Firecracker API transport: HTTP/1.1 requests over one persistent AF_UNIX connection. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/cleanup.h"
#include "util/err.h"

#define FC_HTTP_TIMEOUT_MS 10000      /* default bound on one request (send + whole reply) */
#define FC_HTTP_HEADER_MAX (8u << 10) /* status line + headers + blank line */
#define FC_HTTP_BODY_MAX   (1u << 20) /* a larger Content-Length is -EPROTO */

/* One parsed reply. */
struct fc_reply {
    int status;       /* 100..599 */
    bool keep_alive;  /* false when the server will close the connection after this reply */
    bool deprecation; /* "Deprecation: true": the request used a deprecated field */
    char *body;       /* owned, NUL-terminated (the body may hold NULs: use body_len); never NULL
                         in a parsed reply, "" when there is none */
    size_t body_len;
};

/* Free what reply owns and reset it; NULL-safe, usable as _cleanup_. */
void fc_reply_clear(struct fc_reply *reply);

enum {
    FC_PARSE_MORE = 0, /* buf holds a valid prefix of a reply: read more */
    FC_PARSE_DONE = 1, /* *ret_reply and *ret_consumed written */
};

/* Pure parser (no I/O, fuzzed): one reply from the start of buf. Lines end in CRLF (a bare LF is
 * tolerated). Bodies are framed by Content-Length only; without one the body is empty. Returns
 * FC_PARSE_MORE, FC_PARSE_DONE, or -EPROTO for a malformed reply, headers over
 * FC_HTTP_HEADER_MAX, a body over FC_HTTP_BODY_MAX, or a Transfer-Encoding (never decoded).
 * ret_reply and ret_consumed are written only on FC_PARSE_DONE; bytes past *ret_consumed belong
 * to whatever follows. */
int fc_http_parse_reply(const char *buf, size_t len, struct fc_reply *ret_reply,
                        size_t *ret_consumed, struct tp_err *err);

struct fc_http;

/* Take ownership of a connected stream fd (always, even on failure; it is made non-blocking).
 * timeout_ms bounds each request (<= 0: FC_HTTP_TIMEOUT_MS). watch_fd (a VMM pidfd, borrowed,
 * must outlive the connection; -1 for none) makes a wait fail at once with -ECONNRESET when the
 * VMM is gone and no data is left. Such a connection cannot reconnect. */
int fc_http_adopt(int fd, int timeout_ms, int watch_fd, struct fc_http **ret_conn,
                  struct tp_err *err);

/* Connect to an API socket path, then as fc_http_adopt(). The socket may not exist yet (a VMM
 * just spawned binds it itself): the connect waits for it up to the timeout (-ETIMEDOUT), with
 * inotify rather than sleeps. The path is kept: a connection the server closed after a complete
 * reply, or one given up after a timeout or a malformed reply, is reopened (without waiting)
 * before the next request, never while a request is in flight. */
int fc_http_open(const char *path, int timeout_ms, int watch_fd, struct fc_http **ret_conn,
                 struct tp_err *err);

/* Close and free; NULL-safe; returns NULL. */
struct fc_http *fc_http_free(struct fc_http *c);
DEFINE_CLEANUP(struct fc_http, fc_http_free)

/* Send one request and read its reply, whatever the status. method is an upper-case token, path
 * starts with '/' and has no spaces or control characters (-EINVAL otherwise). body (borrowed,
 * body_len bytes, may be NULL) goes with Content-Type: application/json. timeout_ms <= 0 means the
 * connection's bound. Interim 1xx replies are skipped. *ret_reply is the caller's to clear.
 * Errors: -ETIMEDOUT, -ECONNRESET (closed, or the VMM exited, before a complete reply), -EPROTO
 * (malformed or oversize reply, or bytes nobody asked for), -errno from the socket. After any of
 * these the connection is given up (see fc_http_open()). Thread-safe: one request at a time. */
int fc_http_request(struct fc_http *c, const char *method, const char *path, const char *body,
                    size_t body_len, int timeout_ms, struct fc_reply *ret_reply,
                    struct tp_err *err);

/* fc_http_request() with JSON: body (borrowed, may be NULL) is sent compact. A 2xx reply succeeds;
 * *ret_json (if non-NULL) gets its parsed body (NULL for an empty body; -EPROTO if it is not
 * JSON). Any other status is -EIO whose innermost frame is Firecracker's fault_message (or the
 * reply's own text when it has none). Every error is wrapped with "METHOD PATH". */
int fc_http_call(struct fc_http *c, const char *method, const char *path, const json_t *body,
                 int timeout_ms, json_t **ret_json, struct tp_err *err);
