/* POST /v1/instances/{ref}/exec: start a command through the manager, then stream its output
 * as exec-stream frames (api.md) until the exit frame, an error frame (also sent when the daemon
 * shuts down) or the client leaving. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "api/api-internal.h"
#include "api/body.h"
#include "api/errmap.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/sock.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define EXEC_FRAME_MAX    (1u << 20) /* split larger outputs into several frames */
#define EXEC_STREAM_BLOCK (64u * 1024u)

struct exec_stream {
    struct agent_exec *x;
    int client_fd; /* borrowed from MHD */
    int stop_fd;   /* borrowed from the server: readable once it shuts down */
    char *ref;     /* for logs */
    char *inst_id;
    struct inst_manager *m;
    bool client_gone; /* left before the command ended: it gets hung up on */
    uint64_t started_ms;
    int end;      /* for metrics: 0 after an exit frame, else the failure */
    uint8_t *buf; /* encoded frames not yet handed to MHD */
    size_t len, off;
    bool done; /* the last frame is in buf */
};

static void
stream_push(struct exec_stream *st, int kind, const void *data, size_t len)
{
    do {
        uint32_t n = (uint32_t)MIN(len, (size_t)EXEC_FRAME_MAX);
        st->buf = xrealloc(st->buf, st->len + API_FRAME_HEADER_SIZE + n);
        st->len += api_frame_header(st->buf + st->len, kind, n);
        if (n)
            memcpy(st->buf + st->len, data, n);
        st->len += n;
        data = (const uint8_t *)data + n;
        len -= n;
    } while (len > 0);
}

static void
stream_push_json(struct exec_stream *st, int kind, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);

    json_decref(j);
    if (!s)
        abort();
    stream_push(st, kind, s, strlen(s));
    free(s);
}

static void
stream_push_error(struct exec_stream *st, int r, const char *message)
{
    stream_push_json(st, API_FRAME_ERROR, api_error_json(api_errmap(r).code, message));
    st->done = true;
}

static int
stream_push_shutdown(struct exec_stream *st)
{
    stream_push_error(st, -ESHUTDOWN,
                      "torpord is shutting down: the command keeps running in the guest, its "
                      "output is no longer sent");
    return 0;
}

/* Fill buf with the next frame(s): blocks until the guest sends something, the command
 * exits, the guest connection breaks, the daemon shuts down, or the client disconnects. */
static int
stream_fill(struct exec_stream *st)
{
    /* Checked on every fill too, so a command that never pauses its output cannot hold the
     * shutdown until the drain deadline. */
    if (sock_wait(st->stop_fd, POLLIN, 0) > 0)
        return stream_push_shutdown(st);
    for (;;) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        struct agent_event ev = { 0 };
        int r = agent_exec_next(st->x, &ev, 0, &err);

        if (r == -ETIMEDOUT) {
            /* Nothing yet: sleep on the guest's news, the client leaving and the daemon shutting
             * down, whichever first. A negative fd (no client fd known) is skipped by poll(). */
            struct pollfd p[3] = {
                { .fd = agent_exec_fd(st->x), .events = POLLIN },
                { .fd = st->stop_fd, .events = POLLIN },
                { .fd = st->client_fd, .events = POLLRDHUP },
            };
            if (poll(p, 3, -1) < 0 && errno != EINTR)
                return -errno;
            if (api_client_gone(st->client_fd)) {
                st->client_gone = true;
                return -EPIPE;
            }
            if (p[1].revents & POLLIN)
                return stream_push_shutdown(st);
            agent_exec_fd_drain(st->x);
            continue;
        }
        if (r < 0) {
            log_warn("api: exec on '%s': stream ended: %s", st->ref, tp_err_msg(&err));
            stream_push_json(st, API_FRAME_ERROR,
                             api_exec_cut_error(st->m, st->inst_id, r, tp_err_msg(&err)));
            st->done = true;
            st->end = r;
            return 0;
        }
        switch (ev.type) {
        case AGENT_EV_STDOUT:
        case AGENT_EV_STDERR:
            if (ev.len > 0)
                stream_push(st, ev.type == AGENT_EV_STDOUT ? API_FRAME_STDOUT : API_FRAME_STDERR,
                            ev.data, ev.len);
            free(ev.data);
            if (ev.len == 0)
                continue;
            return 0;
        case AGENT_EV_EXIT:
            stream_push_json(st, API_FRAME_EXIT, json_pack("{s:i}", "exit_code", ev.exit_code));
            st->done = true;
            st->end = 0;
            return 0;
        }
        free(ev.data);
        stream_push_error(st, -EPROTO, "unknown event from the guest agent");
        return 0;
    }
}

static ssize_t
exec_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct exec_stream *st = cls;

    if (st->off == st->len) {
        st->off = st->len = 0;
        if (st->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (stream_fill(st) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the client left */
    }
    size_t n = MIN(max, st->len - st->off);
    memcpy(buf, st->buf + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void
exec_stream_free(void *cls)
{
    struct exec_stream *st = cls;

    /* A client that left before the end hangs up on the command, as closing a terminal does
     * (`torpor exec vm yes | head -1` must not leave `yes` spinning). */
    if (st->x && !st->done)
        api_exec_hangup(st->x); /* our poll or MHD's failed send found the client gone */
    inst_obs_exec((double)(now_ms() - st->started_ms) / 1e3, st->end);
    agent_exec_free(st->x);
    free(st->buf);
    free(st->ref);
    free(st->inst_id);
    free(st);
}

/* Failures the guest reports for the spawn itself: the instance is fine, the command did not
 * run. They travel in the stream (kind 4) so clients tell them from a bad ref (exit 127/126). */
static bool
is_spawn_error(int r)
{
    switch (-r) {
    case ENOENT:
    case EACCES:
    case EPERM:
    case ENOEXEC:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG:
    case E2BIG:
    case ETXTBSY:
    case ESRCH: /* the -u user or group is unknown in the guest */
        return true;
    default:
        return false;
    }
}

/* The error frame of a command that did not start, with docker's exit code for it. */
static json_t *
spawn_error_json(int r, const char *message)
{
    json_t *j = api_error_json(api_errmap(r).code, message);

    json_object_set_new(j, "exit_code", json_integer(r == -ENOENT ? 127 : 126));
    return j;
}

static enum MHD_Result
reply_stream(struct api_req *req, struct exec_stream *st)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, EXEC_STREAM_BLOCK, exec_reader, st, exec_stream_free);

    if (!resp) {
        exec_stream_free(st);
        return api_reply_error(req, -ENOMEM, "create exec stream response");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/vnd.torpor.exec-stream");
    return api_reply_stream(req, resp);
}

/* docker's attach handshake: "Connection: Upgrade" and "Upgrade: tcp". */
static bool
wants_upgrade(struct api_req *req)
{
    const char *up =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
    const char *conn =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
    return up && conn && strcasecmp(up, "tcp") == 0 && strcasestr(conn, "upgrade");
}

enum MHD_Result
api_h_exec(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;
    struct agent_exec *x = NULL;
    struct api_exec_body b;
    struct exec_stream *st;
    bool upgrade = wants_upgrade(req), detach, tty;
    int r;

    if (api_parse_exec(req->body, req->body_len, &b, &err) < 0)
        return api_reply_tp_err(req, &err);
    detach = b.detach;
    tty = b.req.tty;
    if ((b.stdin_open || b.req.tty) && !upgrade) {
        api_exec_body_clear(&b);
        return api_reply_error(req, -EINVAL,
                               "fields 'stdin' and 'tty' need an attached session: send the "
                               "request with \"Connection: Upgrade\" and \"Upgrade: tcp\"");
    }
    /* Resolve the ref first: a missing instance is a plain 404, while ENOENT from the start
     * below then means the command was not found. */
    r = inst_get(req->m, req->match.ref, &rec, &err);
    if (r >= 0 && !detach)
        r = api_stream_acquire(req, &err); /* before the command starts, not after */
    if (r < 0) {
        api_exec_body_clear(&b);
        return api_reply_tp_err(req, &err);
    }
    r = inst_exec_start(req->m, rec->id, &b.req, &x, &err);
    api_exec_body_clear(&b);
    if (r < 0 && !is_spawn_error(r))
        return api_reply_tp_err(req, &err);
    if (r < 0 && detach) {
        /* The error object with the exit code a client should use (127, 126). */
        log_warn("api: %s %s -> detached exec failed to start: %s", req->method, req->path,
                 tp_err_msg(&err));
        return api_reply_json(req, api_errmap(r).status, spawn_error_json(r, tp_err_msg(&err)));
    }
    if (detach) {
        /* Forgotten at once (AGENT_FORGET): the guest drops its output from now on. */
        json_t *j = json_pack("{s:I}", "pid", (json_int_t)agent_exec_pid(x));
        agent_exec_free(x);
        return api_reply_json(req, 201, j);
    }
    if (upgrade) {
        /* A spawn failure travels in the session too, as its only frame. */
        json_t *spawn_err = r < 0 ? spawn_error_json(r, tp_err_msg(&err)) : NULL;
        struct MHD_Response *resp = api_exec_session_new(req, x, spawn_err, rec->id, tty);
        if (!resp) {
            if (x)
                api_exec_hangup(x);
            agent_exec_free(x);
            return api_reply_error(req, -ENOMEM, "create exec session");
        }
        log_debug("api: %s %s -> 101 attached exec", req->method, req->path);
        return api_reply_upgrade(req, resp);
    }

    st = xnew(struct exec_stream, 1);
    st->x = x;
    st->started_ms = now_ms();
    st->end = r < 0 ? r : -EPIPE; /* until an exit frame says otherwise */
    st->m = req->m;
    st->inst_id = xstrdup(rec->id);
    st->client_fd = api_req_client_fd(req);
    st->stop_fd = api_req_stop_fd(req);
    st->ref = xstrdup(req->match.ref);
    if (r < 0) {
        log_warn("api: %s %s -> 200 exec failed to start: %s", req->method, req->path,
                 tp_err_msg(&err));
        stream_push_json(st, API_FRAME_ERROR, spawn_error_json(r, tp_err_msg(&err)));
        st->done = true;
    }
    return reply_stream(req, st);
}
