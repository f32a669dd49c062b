/* Shared between server.c and the h_*.c handlers: the per-request context and reply helpers.
 * Only src/api includes this. */
#pragma once

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/router.h"
#include "api/server.h"
#include "guest/agent_client.h"
#include "instance/manager.h"
#include "util/err.h"

/* One HTTP request. Lives from the first access-handler call to MHD's completion notice. */
struct api_req {
    struct api_server *srv;
    struct inst_manager *m;
    struct MHD_Connection *conn;
    const char *method; /* MHD's, valid for the request */
    char *path;
    struct api_match match;
    char *body; /* accumulated upload, NUL-terminated; NULL when empty */
    size_t body_len;
    bool too_large;               /* the upload passed API_BODY_MAX: the rest is discarded */
    bool replied;                 /* a response is queued */
    bool stream;                  /* holds one of the server's API_STREAM_LIMIT stream slots */
    void *upload;                 /* a streamed upload's state (api_upload_ops), NULL otherwise */
    struct exec_session *session; /* an attached exec's, until the request completes */
};

/* A route whose request body is streamed to a handler instead of gathered (no API_BODY_MAX):
 * begin() on the first call (it may reply, e.g. with an error: then the body is dropped), data()
 * for each piece while no reply is queued, end() once the body is complete, and release() when
 * the request is over, whatever happened (req->upload may be NULL by then). */
struct api_upload_ops {
    enum MHD_Result (*begin)(struct api_req *req);
    enum MHD_Result (*data)(struct api_req *req, const char *data, size_t len);
    enum MHD_Result (*end)(struct api_req *req);
    void (*release)(struct api_req *req);
};
extern const struct api_upload_ops api_archive_put_ops;
extern const struct api_upload_ops api_images_load_ops;

/* A query parameter's value (MHD's, valid during the request), NULL when absent. */
const char *api_req_query(struct api_req *req, const char *key);

/* Handlers queue exactly one response through the helpers below and return their result. */
typedef enum MHD_Result (*api_handler_fn)(struct api_req *req);

/* 2xx with a JSON body (stolen; NULL = no body, e.g. 204). */
enum MHD_Result api_reply_json(struct api_req *req, unsigned status, json_t *body);
/* Failure r (-errno) with message: status and code from errmap; logged once at warn. */
enum MHD_Result api_reply_error(struct api_req *req, int r, const char *message);
/* api_reply_error() from a callee's tp_err (code -EIO when unset). */
enum MHD_Result api_reply_tp_err(struct api_req *req, const struct tp_err *err);
/* A prepared response (streams); takes a reference of resp only for the queue. */
enum MHD_Result api_reply_response(struct api_req *req, unsigned status, struct MHD_Response *resp);
/* 200 with a streamed body (exec, logs): the connection's idle timeout is lifted, since a
 * stream may rightly stay silent for longer (the handler notices a departed client itself),
 * and the connection closes when the stream ends. Consumes resp like api_reply_response(). */
enum MHD_Result api_reply_stream(struct api_req *req, struct MHD_Response *resp);

/* 101 Switching Protocols (Upgrade: tcp) with resp from MHD_create_response_for_upgrade(): the
 * request's stream slot passes to the session, which gives it back with
 * api_server_stream_release() when it ends. */
enum MHD_Result api_reply_upgrade(struct api_req *req, struct MHD_Response *resp);
void api_server_stream_release(struct api_server *s);
struct api_server *api_req_server(struct api_req *req);
/* Readable once the server shuts down (api_req_stop_fd() without a request). */
int api_server_stop_fd(struct api_server *s);

/* exec_session.c: an exec attached over an upgraded connection (stdin, resize, signals). */
struct exec_session;
/* Takes x (or, for a command that did not start, x NULL and its error frame spawn_err);
 * inst_id is copied. Reply with the upgrade response returned (NULL: nothing was taken, the
 * caller still owns x and spawn_err). Sets req->session. */
struct MHD_Response *api_exec_session_new(struct api_req *req, struct agent_exec *x,
                                          json_t *spawn_err, const char *inst_id, bool tty);
/* A client left a command that still runs: SIGHUP to its process group, as a closed terminal
 * does, then SIGKILL if it has not exited within a second. Its output is dropped. */
void api_exec_hangup(struct agent_exec *x);
/* The request of session s completed (MHD's notice): if the upgrade never ran, the command is
 * hung up and the slot given back. */
void api_exec_session_req_done(struct exec_session *s);
/* The error object ending a stream whose guest connection broke (r, msg): says what happened to
 * the instance, and carries the exit code the client should use ("exit_code": 137 when the
 * instance stopped or is gone, 125 when the command may still run). */
json_t *api_exec_cut_error(struct inst_manager *m, const char *inst_id, int r, const char *msg);

/* The guest's own view of its memory, through the agent's meminfo built-in (h_stats.c): 0 with
 * MemTotal and MemAvailable in bytes, < 0 when it cannot be had (no agent, not Running, no
 * answer within timeout_ms). */
int api_guest_memory(struct inst_manager *m, const char *id, int timeout_ms, uint64_t *total,
                     uint64_t *avail);

/* A boolean query parameter: absent -> false, bare "?key" -> true, else api_query_bool(). */
int api_req_query_bool(struct api_req *req, const char *key, bool *ret, struct tp_err *err);

/* Take a stream slot for req before starting an exec or logs stream; it is given back when the
 * request completes. -EUSERS when all API_STREAM_LIMIT are taken, -ESHUTDOWN while the server
 * shuts down (both 503). */
int api_stream_acquire(struct api_req *req, struct tp_err *err);

/* Readable once the server shuts down: streams poll it to end early. */
int api_req_stop_fd(struct api_req *req);

/* The client's socket, to notice a disconnect while a stream blocks; -EBADF if unknown. */
int api_req_client_fd(struct api_req *req);

/* True once the peer of fd hung up (POLLRDHUP/POLLHUP/POLLERR), without waiting. */
bool api_client_gone(int fd);

enum MHD_Result api_h_version(struct api_req *req);
enum MHD_Result api_h_capabilities(struct api_req *req);
enum MHD_Result api_h_list(struct api_req *req);
enum MHD_Result api_h_create(struct api_req *req);
enum MHD_Result api_h_get(struct api_req *req);
enum MHD_Result api_h_delete(struct api_req *req);
enum MHD_Result api_h_stop(struct api_req *req);
enum MHD_Result api_h_start(struct api_req *req);
enum MHD_Result api_h_exec(struct api_req *req);
enum MHD_Result api_h_logs(struct api_req *req);
enum MHD_Result api_h_wait(struct api_req *req);
enum MHD_Result api_h_standby(struct api_req *req);
enum MHD_Result api_h_restore(struct api_req *req);
enum MHD_Result api_h_fork(struct api_req *req);
enum MHD_Result api_h_pause(struct api_req *req);
enum MHD_Result api_h_unpause(struct api_req *req);
enum MHD_Result api_h_kill(struct api_req *req);
enum MHD_Result api_h_archive_get(struct api_req *req);
enum MHD_Result api_h_session_signal(struct api_req *req);
enum MHD_Result api_h_session_resize(struct api_req *req);
enum MHD_Result api_h_stat(struct api_req *req);
enum MHD_Result api_h_stats(struct api_req *req);
enum MHD_Result api_h_metrics(struct api_req *req);
enum MHD_Result api_h_events(struct api_req *req);
enum MHD_Result api_h_images_list(struct api_req *req);
enum MHD_Result api_h_images_pull(struct api_req *req);
enum MHD_Result api_h_images_prune(struct api_req *req);
enum MHD_Result api_h_image_get(struct api_req *req);
enum MHD_Result api_h_image_delete(struct api_req *req);
/* The text of GET /metrics: every registered metric plus those sampled now (instances by state,
 * the daemon's CPU and fds, each VMM's PSS). Caller frees. */
char *api_metrics_text(struct inst_manager *m);
