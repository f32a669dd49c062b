/* HTTP/1.1 client for torpord's API over its Unix socket (libcurl + jansson). */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "util/err.h"

/* Largest reply body read into memory (streams are not bounded). */
#define CLIENT_REPLY_MAX (16u << 20)

/* Called with each piece of a 2xx streaming reply as it arrives; < 0 aborts the transfer
 * and becomes client_stream()'s result (set err). */
typedef int (*client_data_fn)(const void *data, size_t len, void *userdata, struct tp_err *err);

/* One request: method ("GET", "POST", "DELETE"), path ("/v1/..."), body (borrowed; NULL =
 * none). Returns 0 once any HTTP reply arrived: *ret_status, and *ret_reply = the parsed
 * JSON body (NULL when empty; caller owns). Errors: the daemon cannot be reached ("cannot
 * reach torpord at '<socket>': <reason> (is torpord running?)", -errno such as -ENOENT or
 * -ECONNREFUSED), the transfer broke (-EIO), a non-JSON body (-EPROTO), a body over
 * CLIENT_REPLY_MAX (-EFBIG). */
int client_request(const char *socket, const char *method, const char *path, json_t *body,
                   long *ret_status, json_t **ret_reply, struct tp_err *err);

/* client_request() where a non-2xx status is also an error: err then holds the daemon's
 * message (see client_reply_error()). *ret_reply is written on success only (may be NULL). */
int client_call(const char *socket, const char *method, const char *path, json_t *body,
                json_t **ret_reply, struct tp_err *err);

/* Like client_call(), but a 2xx reply's body goes to on_data piece by piece as it arrives
 * (exec streams, logs -f); a non-2xx reply is read whole and reported as an error. */
int client_stream(const char *socket, const char *method, const char *path, json_t *body,
                  client_data_fn on_data, void *userdata, struct tp_err *err);

/* client_call() whose body is read from fd until its end and sent chunked as it is read (PUT
 * of an archive). */
int client_upload(const char *socket, const char *method, const char *path, int fd,
                  json_t **ret_reply, struct tp_err *err);

/* Turn a failed reply into an error: the JSON body's "message" (or "daemon answered HTTP
 * <status>"), with an errno matching the status (404 -ENOENT, 409 -EBUSY, 400 -EINVAL, 501
 * -EOPNOTSUPP, 504 -ETIMEDOUT, 502 -EPROTO, 413 -E2BIG, 507 -ENOSPC, else -EIO). */
int client_reply_error(long status, const json_t *reply, struct tp_err *err);

/* The error for a daemon that cannot be reached at socket (reason: strerror or similar). For
 * code -EACCES it says how to get access (root, or torpord --socket-group) instead. */
int client_unreachable(const char *socket, const char *reason, int code, struct tp_err *err);

/* "/v1/instances/<ref, percent-encoded><suffix>"; suffix may be "". Caller frees. */
char *client_instance_path(const char *ref, const char *suffix);
