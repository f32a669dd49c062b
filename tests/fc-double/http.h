/* fc-double: the API's HTTP/1.1 as micro-http serves it (Content-Length bodies, keep-alive). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "fcd.h"

#define HTTP_MAX_HEADERS 8192

struct http_req {
    char method[16];
    char path[1024];
    bool keep_alive;
    bool has_body; /* a Content-Length header with a value > 0 */
    char *body;    /* NUL-terminated copy, owned by the request */
    size_t body_len;
};

struct http_conn {
    int fd;
    char *buf; /* bytes read and not yet consumed */
    size_t len, cap;
    bool sent_continue; /* 100 Continue already sent for the pending request */
};

/* Read what the socket has into c (non-blocking fd). 1 data read, 0 EOF, -errno. */
int http_conn_fill(struct http_conn *c);

/* Take one complete request off c: 1 and *req filled (free with http_req_clear), 0 when more
 * bytes are needed, -EBADMSG for a malformed request or a body over max_payload (err holds
 * micro-http's text; answer with http_send_transport_error and close). */
int http_take_request(struct http_conn *c, size_t max_payload, struct http_req *req,
                      struct fcd_err *err);
void http_req_clear(struct http_req *req);
void http_conn_release(struct http_conn *c);

/* One response. body is JSON text or NULL (then no Content-Type/Length other than 0). */
int http_send(int fd, int status, const char *body, bool deprecation);
/* {"fault_message": msg} with status. */
int http_send_fault(int fd, int status, const char *msg, bool deprecation);
/* The HTTP layer's own error body (not JSON: it carries a raw newline), then close. */
int http_send_transport_error(int fd, const char *msg);
