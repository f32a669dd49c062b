/* The REST API server: libmicrohttpd on a listening Unix socket the daemon created,
 * one thread per client connection, dispatching to the handlers through the router. */
#include "api/server.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "api/api-internal.h"
#include "api/body.h"
#include "api/errmap.h"
#include "util/log.h"
#include "util/xalloc.h"

struct api_server {
    struct MHD_Daemon *daemon;
    struct inst_manager *m;
};

static const api_handler_fn handlers[_API_ROUTE_MAX] = {
    [API_ROUTE_VERSION] = api_h_version, [API_ROUTE_CAPABILITIES] = api_h_capabilities,
    [API_ROUTE_LIST] = api_h_list,       [API_ROUTE_CREATE] = api_h_create,
    [API_ROUTE_GET] = api_h_get,         [API_ROUTE_DELETE] = api_h_delete,
    [API_ROUTE_STOP] = api_h_stop,       [API_ROUTE_START] = api_h_start,
    [API_ROUTE_EXEC] = api_h_exec,       [API_ROUTE_LOGS] = api_h_logs,
    [API_ROUTE_WAIT] = api_h_wait,       [API_ROUTE_STANDBY] = api_h_standby,
    [API_ROUTE_RESTORE] = api_h_restore, [API_ROUTE_FORK] = api_h_fork,
};

static struct MHD_Response *
response_from_text(char *text)
{
    /* MHD frees the buffer with free() once the response is gone. */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        abort();
    return resp;
}

enum MHD_Result
api_reply_response(struct api_req *req, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result res = MHD_queue_response(req->conn, status, resp);

    MHD_destroy_response(resp); /* the queue holds its own reference */
    req->replied = true;
    if (res != MHD_YES)
        log_debug("api: %s %s: queueing the %u response failed", req->method, req->path, status);
    return res;
}

enum MHD_Result
api_reply_stream(struct api_req *req, struct MHD_Response *resp)
{
    /* API_IDLE_TIMEOUT_S counts from the last byte sent: it cut off an exec whose command was
     * quiet for longer, and `logs -f` of a quiet console. Without keep-alive, no idle client
     * outlives the stream either. */
    if (MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u) != MHD_YES)
        log_debug("api: %s %s: lifting the idle timeout failed", req->method, req->path);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return api_reply_response(req, 200, resp);
}

enum MHD_Result
api_reply_json(struct api_req *req, unsigned status, json_t *body)
{
    struct MHD_Response *resp;

    if (body) {
        char *s = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!s)
            abort();
        char *text = xasprintf("%s\n", s);
        free(s);
        resp = response_from_text(text);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    } else {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!resp)
            abort();
    }
    log_debug("api: %s %s -> %u", req->method, req->path, status);
    return api_reply_response(req, status, resp);
}

static enum MHD_Result
reply_error_status(struct api_req *req, struct api_status st, const char *message,
                   const char *allow)
{
    struct MHD_Response *resp = response_from_text(api_error_text(st.code, message));

    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    /* The one log line of a failed request. */
    log_warn("api: %s %s -> %u %s", req->method, req->path, st.status, message ? message : "");
    return api_reply_response(req, st.status, resp);
}

enum MHD_Result
api_reply_error(struct api_req *req, int r, const char *message)
{
    return reply_error_status(req, api_errmap(r), message, NULL);
}

enum MHD_Result
api_reply_tp_err(struct api_req *req, const struct tp_err *err)
{
    return api_reply_error(req, err && err->code < 0 ? err->code : -EIO, tp_err_msg(err));
}

int
api_req_query_bool(struct api_req *req, const char *key, bool *ret, struct tp_err *err)
{
    const char *value = NULL;
    size_t value_size = 0;

    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key), &value,
                                      &value_size) != MHD_YES) {
        *ret = false;
        return 0;
    }
    if (!value) {
        *ret = true;
        return 0;
    }
    return api_query_bool(key, value, ret, err);
}

int
api_req_client_fd(struct api_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -EBADF;
}

bool
api_client_gone(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };

    if (fd < 0)
        return false;
    if (poll(&p, 1, 0) <= 0)
        return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

struct query_check {
    const char *const *allowed;
    const char *bad; /* first key not in allowed */
};

static enum MHD_Result
query_check_key(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct query_check *q = cls;

    for (size_t i = 0; q->allowed && q->allowed[i]; i++)
        if (strcmp(q->allowed[i], key) == 0)
            return MHD_YES;
    q->bad = key;
    return MHD_NO;
}

/* First call for a request: route it and reject what needs no body to decide. Returns true
 * when a response is already queued. */
static bool
request_begin(struct api_req *req, enum MHD_Result *res)
{
    enum api_match_result mr = api_route_match(req->method, req->path, &req->match);
    const char *cl;

    if (mr == API_MATCH_NOT_FOUND) {
        _cleanup_free_ char *msg = xasprintf("no route for %s %s", req->method, req->path);
        *res = api_reply_error(req, -ENOENT, msg);
        return true;
    }
    if (mr == API_MATCH_BAD_METHOD) {
        _cleanup_free_ char *msg = xasprintf("method %s not allowed on %s (allowed: %s)",
                                             req->method, req->path, req->match.allow);
        *res = reply_error_status(req, (struct api_status){ 405, API_CODE_METHOD_NOT_ALLOWED }, msg,
                                  req->match.allow);
        return true;
    }

    struct query_check q = { .allowed = api_route_query_keys(req->match.route) };
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_check_key, &q);
    if (q.bad) {
        _cleanup_free_ char *msg = xasprintf("unknown query parameter '%.64s'", q.bad);
        *res = api_reply_error(req, -EINVAL, msg);
        return true;
    }

    /* Refuse an announced oversize body before reading any of it (and before MHD would send
     * "100 Continue"). Chunked uploads are caught while accumulating. */
    cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && n > API_BODY_MAX) {
            _cleanup_free_ char *msg =
                xasprintf("request body of %llu bytes is over the %u byte limit", n, API_BODY_MAX);
            *res = api_reply_error(req, -EMSGSIZE, msg);
            return true;
        }
    }
    return false;
}

static void
body_append(struct api_req *req, const char *data, size_t n)
{
    if (req->too_large)
        return;
    if (n > API_BODY_MAX - req->body_len) {
        req->too_large = true;
        free(req->body);
        req->body = NULL;
        req->body_len = 0;
        return;
    }
    req->body = xrealloc(req->body, req->body_len + n + 1);
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct api_server *s = cls;
    struct api_req *req = *con_cls;
    enum MHD_Result res = MHD_YES;

    if (!req) {
        req = xnew(struct api_req, 1);
        req->m = s->m;
        req->conn = conn;
        req->method = method;
        req->path = xstrdup(url);
        *con_cls = req;
        request_begin(req, &res);
        return res;
    }

    if (*upload_data_size > 0) {
        /* A response is already queued (or the body is over the limit): drop the data
         * without keeping it, MHD closes the connection after replying. */
        if (!req->replied)
            body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->replied)
        return MHD_YES;
    if (req->too_large) {
        _cleanup_free_ char *msg =
            xasprintf("request body is over the %u byte limit", API_BODY_MAX);
        return api_reply_error(req, -EMSGSIZE, msg);
    }
    return handlers[req->match.route](req);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct api_req *req = *con_cls;

    if (!req)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("api: %s %s ended early (reason %d)", req->method, req->path, (int)toe);
    free(req->body);
    free(req->path);
    free(req);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) _printf_(2, 0);

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    _cleanup_free_ char *msg = NULL;

    if (log_max_level < LOG_LVL_DEBUG)
        return;
    msg = xvasprintf(fmt, ap);
    /* MHD's messages end with a newline of their own. */
    size_t n = strlen(msg);
    if (n > 0 && msg[n - 1] == '\n')
        msg[n - 1] = '\0';
    log_debug("api: libmicrohttpd: %s", msg);
}

int
api_server_start(struct inst_manager *m, int listen_fd, unsigned idle_timeout_s,
                 struct api_server **ret, struct tp_err *err)
{
    struct api_server *s;

    if (listen_fd < 0)
        return tp_err_set(err, -EBADF, "start API server: no listening socket");
    s = xnew(struct api_server, 1);
    s->m = m;
    if (idle_timeout_s == 0)
        idle_timeout_s = API_IDLE_TIMEOUT_S;
    s->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                     MHD_USE_ERROR_LOG | MHD_USE_ITC,
                                 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_CONNECTION_LIMIT,
                                 MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout_s,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_END);
    if (!s->daemon) {
        free(s);
        return tp_err_set(err, -EIO, "start API server (libmicrohttpd) on fd %d", listen_fd);
    }
    *ret = s;
    return 0;
}

struct api_server *
api_server_stop(struct api_server *s)
{
    if (!s)
        return NULL;
    MHD_stop_daemon(s->daemon);
    free(s);
    return NULL;
}
