/* The REST API server: libmicrohttpd on a listening Unix socket the daemon created,
 * one thread per client connection, dispatching to the handlers through the router; counts
 * requests and streams so it can refuse streams past a limit and shut down gracefully. */
#include "api/server.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "api/api-internal.h"
#include "api/body.h"
#include "api/errmap.h"
#include "obs/metrics.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/xalloc.h"

struct api_server {
    struct MHD_Daemon *daemon;
    struct inst_manager *m;
    unsigned idle_timeout_s;
    int stop_fd;               /* eventfd, readable once draining: streams end */
    int idle_fd;               /* eventfd, readable once draining with no connection left */
    pthread_mutex_t lock;      /* guards the fields below */
    unsigned connections;      /* open client connections */
    unsigned in_flight;        /* requests begun, reply not fully sent */
    unsigned streams;          /* requests and upgraded sessions holding a stream slot */
    unsigned detached_streams; /* of which upgraded sessions, released by the session */
    bool draining;
};

static bool
server_draining(struct api_server *s)
{
    pthread_mutex_lock(&s->lock);
    bool d = s->draining;
    pthread_mutex_unlock(&s->lock);
    return d;
}

/* An eventfd stays readable once written and never read: every poller sees it. */
static void
kick(int efd)
{
    if (eventfd_write(efd, 1) < 0)
        log_debug("api: write eventfd: %m");
}

static const api_handler_fn handlers[_API_ROUTE_MAX] = {
    [API_ROUTE_VERSION] = api_h_version,
    [API_ROUTE_CAPABILITIES] = api_h_capabilities,
    [API_ROUTE_LIST] = api_h_list,
    [API_ROUTE_CREATE] = api_h_create,
    [API_ROUTE_GET] = api_h_get,
    [API_ROUTE_DELETE] = api_h_delete,
    [API_ROUTE_STOP] = api_h_stop,
    [API_ROUTE_START] = api_h_start,
    [API_ROUTE_EXEC] = api_h_exec,
    [API_ROUTE_LOGS] = api_h_logs,
    [API_ROUTE_WAIT] = api_h_wait,
    [API_ROUTE_STANDBY] = api_h_standby,
    [API_ROUTE_RESTORE] = api_h_restore,
    [API_ROUTE_FORK] = api_h_fork,
    [API_ROUTE_PAUSE] = api_h_pause,
    [API_ROUTE_UNPAUSE] = api_h_unpause,
    [API_ROUTE_KILL] = api_h_kill,
    [API_ROUTE_ARCHIVE_GET] = api_h_archive_get,
    [API_ROUTE_STAT] = api_h_stat,
    [API_ROUTE_STATS] = api_h_stats,
    [API_ROUTE_SESSION_SIGNAL] = api_h_session_signal,
    [API_ROUTE_SESSION_RESIZE] = api_h_session_resize,
    [API_ROUTE_METRICS] = api_h_metrics,
    [API_ROUTE_EVENTS] = api_h_events,
    [API_ROUTE_IMAGES_LIST] = api_h_images_list,
    [API_ROUTE_IMAGES_PULL] = api_h_images_pull,
    [API_ROUTE_IMAGES_PRUNE] = api_h_images_prune,
    [API_ROUTE_IMAGE_GET] = api_h_image_get,
    [API_ROUTE_IMAGE_DELETE] = api_h_image_delete,
    [API_ROUTE_TEMPLATES] = api_h_templates,
    [API_ROUTE_TPL_PRUNE] = api_h_templates_prune,
    [API_ROUTE_TPL_DELETE] = api_h_template_delete,
};

static const struct api_upload_ops *const uploads[_API_ROUTE_MAX] = {
    [API_ROUTE_ARCHIVE_PUT] = &api_archive_put_ops,
    [API_ROUTE_IMAGES_LOAD] = &api_images_load_ops,
};

/* The upload handlers of req's route; NULL for a gathered body or an unmatched request. */
static const struct api_upload_ops *
upload_ops(const struct api_req *req)
{
    int r = (int)req->match.route;
    return r >= 0 && r < _API_ROUTE_MAX ? uploads[r] : NULL;
}

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

/* torpor_api_requests_total: one per reply queued, by route name (not path: bounded). */
static void
count_request(const struct api_req *req, unsigned status)
{
    char labels[OBS_LABELS_MAX], code[16];
    int route = (int)req->match.route;

    snprintf(code, sizeof(code), "%u", status);
    obs_labels(labels, sizeof(labels), "route",
               route >= 0 && route < _API_ROUTE_MAX ? api_route_name(req->match.route) : "none",
               "status", code, NULL);
    obs_counter_add(obs_default(), "torpor_api_requests_total", labels, 1);
}

static enum MHD_Result
queue_response(struct api_req *req, unsigned status, struct MHD_Response *resp, bool stream)
{
    count_request(req, status);
    /* While shutting down, say so: the client must not send another request on this
     * connection. */
    if (server_draining(req->srv))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result res = MHD_queue_response(req->conn, status, resp);

    MHD_destroy_response(resp); /* the queue holds its own reference */
    req->replied = true;
    if (res != MHD_YES)
        log_debug("api: %s %s: queueing the %u response failed", req->method, req->path, status);
    /* The handler ran without a timeout (see on_request); the reply must now be read. With the
     * timeout at 0, setting it also restarts the idle clock, so a long operation does not count
     * as client silence. A stream stays without one: it may rightly be quiet for long. */
    if (!stream && MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                             req->srv->idle_timeout_s) != MHD_YES)
        log_debug("api: %s %s: restoring the idle timeout failed", req->method, req->path);
    return res;
}

enum MHD_Result
api_reply_response(struct api_req *req, unsigned status, struct MHD_Response *resp)
{
    return queue_response(req, status, resp, false);
}

enum MHD_Result
api_reply_stream(struct api_req *req, struct MHD_Response *resp)
{
    /* Without keep-alive, no idle client outlives the stream. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return queue_response(req, 200, resp, true);
}

enum MHD_Result
api_reply_upgrade(struct api_req *req, struct MHD_Response *resp)
{
    struct api_server *s = req->srv;

    /* The slot moves to the session: MHD may report the request complete once it hands the
     * socket over, while the session goes on. */
    if (req->stream) {
        req->stream = false;
        pthread_mutex_lock(&s->lock);
        s->detached_streams++;
        pthread_mutex_unlock(&s->lock);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "tcp");
    count_request(req, MHD_HTTP_SWITCHING_PROTOCOLS);
    enum MHD_Result res = MHD_queue_response(req->conn, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
    MHD_destroy_response(resp);
    req->replied = true;
    return res;
}

void
api_server_stream_release(struct api_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->detached_streams--;
    s->streams--;
    pthread_mutex_unlock(&s->lock);
}

struct api_server *
api_req_server(struct api_req *req)
{
    return req->srv;
}

int
api_server_stop_fd(struct api_server *s)
{
    return s->stop_fd;
}

int
api_stream_acquire(struct api_req *req, struct tp_err *err)
{
    struct api_server *s = req->srv;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    if (s->draining)
        r = tp_err_set(err, -ESHUTDOWN, "torpord is shutting down");
    else if (s->streams >= API_STREAM_LIMIT)
        r = tp_err_set(err, -EUSERS,
                       "too many open streams: %u exec and logs streams are open, the limit; "
                       "retry once one ends",
                       s->streams);
    else {
        s->streams++;
        req->stream = true;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int
api_req_stop_fd(struct api_req *req)
{
    return req->srv->stop_fd;
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

const char *
api_req_query(struct api_req *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
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

    /* image refs (references, digests, ids) and template ids are checked by their handlers */
    bool image_route = req->match.route == API_ROUTE_IMAGE_GET ||
                       req->match.route == API_ROUTE_IMAGE_DELETE ||
                       req->match.route == API_ROUTE_TPL_DELETE;
    if (req->match.ref[0] && !image_route && !api_ref_valid(req->match.ref)) {
        _cleanup_free_ char *msg =
            xasprintf("invalid instance reference '%.64s': names, ids and id prefixes match "
                      "[a-z0-9][a-z0-9-]{0,62}",
                      req->match.ref);
        *res = api_reply_error(req, -EINVAL, msg);
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
    if (cl && !upload_ops(req)) {
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
        req->srv = s;
        req->m = s->m;
        req->conn = conn;
        req->method = method;
        req->path = xstrdup(url);
        *con_cls = req;
        pthread_mutex_lock(&s->lock);
        s->in_flight++;
        bool draining = s->draining;
        pthread_mutex_unlock(&s->lock);
        log_debug("api: %s %s: begin", method, req->path);
        if (draining)
            return api_reply_error(req, -ESHUTDOWN, "torpord is shutting down");
        if (!request_begin(req, &res) && upload_ops(req)) {
            /* No idle timeout while a handler may block on the guest taking the data. */
            MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
            res = upload_ops(req)->begin(req);
        }
        return res;
    }

    const struct api_upload_ops *up = upload_ops(req);
    if (up) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->replied)
            return MHD_YES; /* refused or failed: the rest is dropped, MHD closes after */
        return n > 0 ? up->data(req, upload_data, n) : up->end(req);
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
    /* MHD checks the idle timeout right after the handler returns, so an operation longer than
     * it would lose its reply: no timeout while the handler runs (queue_response restores it). */
    if (MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u) != MHD_YES)
        log_debug("api: %s %s: lifting the idle timeout failed", req->method, req->path);
    return handlers[req->match.route](req);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct api_req *req = *con_cls;

    if (!req)
        return;
    if (upload_ops(req))
        upload_ops(req)->release(req);
    if (req->session)
        api_exec_session_req_done(req->session);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("api: %s %s ended early (reason %d)", req->method, req->path, (int)toe);
    struct api_server *s = req->srv;
    pthread_mutex_lock(&s->lock);
    if (req->stream)
        s->streams--;
    s->in_flight--;
    pthread_mutex_unlock(&s->lock);
    free(req->body);
    free(req->path);
    free(req);
    *con_cls = NULL;
}

/* A shutdown waits for connections, not only for requests begun: one accepted just before it
 * may not have sent its request yet, and must still get a reply (a 503) rather than a cut. */
static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    struct api_server *s = cls;

    pthread_mutex_lock(&s->lock);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        s->connections++;
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && --s->connections == 0 && s->draining)
        kick(s->idle_fd);
    pthread_mutex_unlock(&s->lock);
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

/* libmicrohttpd's own unescaping would turn "%00" into a NUL that silently ends the path
 * ("l2%00junk" acting on l2) and "%2F" into a separator; api_url_unescape() leaves both as
 * written, so the ref check refuses them. */
static size_t
on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    return api_url_unescape(s);
}

static struct api_server *
server_free(struct api_server *s)
{
    safe_close(s->stop_fd);
    safe_close(s->idle_fd);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

int
api_server_start(struct inst_manager *m, int listen_fd, unsigned idle_timeout_s,
                 struct api_server **ret, struct tp_err *err)
{
    struct api_server *s;

    if (listen_fd < 0)
        return tp_err_set(err, -EBADF, "start API server: no listening socket");
    obs_declare(obs_default(), "torpor_api_requests_total", OBS_COUNTER,
                "API requests answered, by route and HTTP status.", NULL, 0);
    s = xnew(struct api_server, 1);
    s->m = m;
    s->idle_timeout_s = idle_timeout_s ? idle_timeout_s : API_IDLE_TIMEOUT_S;
    pthread_mutex_init(&s->lock, NULL);
    s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->idle_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->stop_fd < 0 || s->idle_fd < 0) {
        int r = -errno;
        server_free(s);
        return tp_err_errno(err, r, "create eventfd");
    }
    /* poll(), not select(): with hundreds of connections and every VMM's sockets, fds pass
     * FD_SETSIZE. The logger comes first, so that MHD reports nothing through its own. */
    s->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
            MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_ALLOW_UPGRADE,
        0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)API_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, s->idle_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        s, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, s, MHD_OPTION_END);
    if (!s->daemon) {
        server_free(s);
        return tp_err_set(err, -EIO, "start API server (libmicrohttpd) on fd %d", listen_fd);
    }
    *ret = s;
    return 0;
}

int
api_server_quiesce(struct api_server *s)
{
    pthread_mutex_lock(&s->lock);
    bool first = !s->draining;
    s->draining = true;
    if (s->connections == 0)
        kick(s->idle_fd);
    pthread_mutex_unlock(&s->lock);
    if (first) {
        /* New clients are refused at once instead of waiting in the backlog. */
        int fd = MHD_quiesce_daemon(s->daemon);
        safe_close(fd);
        kick(s->stop_fd);
    }
    return s->idle_fd;
}

void
api_server_pending(struct api_server *s, unsigned *ret_connections, unsigned *ret_requests)
{
    pthread_mutex_lock(&s->lock);
    *ret_connections = s->connections;
    *ret_requests = s->in_flight;
    pthread_mutex_unlock(&s->lock);
}

struct api_server *
api_server_stop(struct api_server *s)
{
    if (!s)
        return NULL;
    MHD_stop_daemon(s->daemon);
    return server_free(s);
}
