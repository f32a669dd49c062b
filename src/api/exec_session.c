/* An exec attached over an upgraded connection (101, Upgrade: tcp, as docker's attach): the
 * server sends exec-stream frames, the client sends stdin, resize and signal frames
 * (exec_input.h). Two threads per session: the connection's own thread carries the guest's
 * output to the client, an input thread carries the client's frames to the guest, so a guest
 * that stops reading stdin never holds its output back. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api-internal.h"
#include "api/body.h"
#include "api/errmap.h"
#include "api/exec_input.h"
#include "instance/state.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/sock.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define HANGUP_GRACE_MS 1000
#define INPUT_CHUNK     (64u * 1024u)

enum input_end {
    INPUT_RUNNING,
    INPUT_CLIENT_GONE, /* the socket closed both ways, or failed */
    INPUT_BAD_FRAME,   /* the client broke the protocol: err_msg says how */
};

/* Attached sessions by id, for signals and resizes that must not wait behind stdin in the
 * session's own stream (a command that does not read it). */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct exec_session *registry;

struct exec_session {
    struct exec_session *reg_next; /* in registry while the session runs */
    char id[17];                   /* 16 hex digits, sent in X-Torpor-Session */
    pthread_mutex_t lock;          /* refs, started */
    int refs;                      /* the request's and the upgraded connection's */
    bool started;                  /* on_upgraded() ran: the session owns its slot and command */
    struct api_server *srv;
    struct inst_manager *m;
    struct agent_exec *x; /* NULL when the command did not start */
    json_t *spawn_err;    /* then: the only frame to send */
    char *inst_id;
    bool tty;
    uint64_t started_ms;
    int end; /* for metrics: 0 after an exit frame, else why not */
    int sock;
    int stop_fd;  /* the server's: readable once it shuts down */
    int quit_efd; /* the output side tells the input thread to end */
    int done_efd; /* the input thread ended (input_end says why) */
    char *extra;  /* bytes MHD read past the request headers: the first input */
    size_t extra_len;
    enum input_end input_end;
    char *err_msg;
};

void
api_exec_hangup(struct agent_exec *x)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    uint64_t deadline = now_ms() + HANGUP_GRACE_MS;

    if (agent_exec_signal(x, SIGHUP, &err) < 0)
        return; /* the guest is unreachable: nothing more can be done from here */
    for (;;) {
        struct agent_event ev = { 0 };
        uint64_t now = now_ms();
        int r = agent_exec_next(x, &ev, now < deadline ? (int)(deadline - now) : 0, &err);

        free(ev.data);
        if (r == -ENOBUFS) {
            /* Its exit cannot be seen past an overflow: give it the grace, then kill. */
            if (now < deadline)
                poll(NULL, 0, (int)(deadline - now));
            r = -ETIMEDOUT;
        }
        if (r == -ETIMEDOUT) {
            log_info("api: exec pid %u ignored SIGHUP for %d ms: SIGKILL", agent_exec_pid(x),
                     HANGUP_GRACE_MS);
            agent_exec_signal(x, SIGKILL, &err);
            return;
        }
        if (r < 0 || ev.type == AGENT_EV_EXIT)
            return;
    }
}

static bool
op_is(const char *op, const char *name)
{
    return op && strcmp(op, name) == 0;
}

json_t *
api_exec_cut_error(struct inst_manager *m, const char *inst_id, int r, const char *msg)
{
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *text = NULL;
    const char *code = api_errmap(r).code;
    int exit_code = 125;

    if (inst_get(m, inst_id, &rec, &err) < 0) {
        text = xasprintf("the instance was removed: the command was killed with it");
        code = "not_found";
        exit_code = 137;
    } else if (rec->state == INST_STOPPED || op_is(rec->op, "stop") || op_is(rec->op, "rm")) {
        text = xasprintf("instance '%s' stopped: the command was killed with it", rec->name);
        code = "conflict";
        exit_code = 137;
    } else if (rec->state == INST_STANDBY || op_is(rec->op, "standby")) {
        text = xasprintf("instance '%s' went into standby: the command is kept in its snapshot "
                         "and runs on, detached, after a restore",
                         rec->name);
        code = "conflict";
    } else if (op_is(rec->op, "fork")) {
        text = xasprintf("instance '%s' is being forked: its VMM restarts, the command runs on "
                         "in the guest, detached",
                         rec->name);
        code = "conflict";
    } else {
        text = xasprintf("%s (the command may still run in the guest)", msg);
    }
    json_t *j = api_error_json(code, text);
    json_object_set_new(j, "exit_code", json_integer(exit_code));
    return j;
}

static int
send_frame(struct exec_session *s, int kind, const void *data, size_t len)
{
    uint8_t hdr[API_FRAME_HEADER_SIZE];

    do {
        uint32_t n = (uint32_t)MIN(len, (size_t)(1u << 20));
        api_frame_header(hdr, kind, n);
        int r = sock_write_all(s->sock, hdr, sizeof(hdr));
        if (r >= 0 && n)
            r = sock_write_all(s->sock, data, n);
        if (r < 0)
            return r;
        data = (const uint8_t *)data + n;
        len -= n;
    } while (len > 0);
    return 0;
}

static int
send_json(struct exec_session *s, int kind, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);

    json_decref(j);
    if (!text)
        abort();
    int r = send_frame(s, kind, text, strlen(text));
    free(text);
    return r;
}

static int
on_input(const struct exec_input_event *ev, void *userdata, struct tp_err *err)
{
    struct exec_session *s = userdata;

    /* A failed write to the guest means its connection broke: the output side sees that too
     * and ends the session, so the error is only logged here. */
    _cleanup_(tp_err_clear) struct tp_err e = { 0 };
    int r = 0;
    switch (ev->kind) {
    case EXEC_INPUT_STDIN:
        r = agent_exec_stdin(s->x, ev->data, ev->len, &e);
        break;
    case EXEC_INPUT_RESIZE:
        if (s->tty)
            r = agent_exec_resize(s->x, ev->rows, ev->cols, &e);
        break;
    case EXEC_INPUT_SIGNAL:
        r = agent_exec_signal(s->x, ev->sig, &e);
        break;
    }
    if (r == -ECANCELED)
        return tp_err_set(err, r, "session ended");
    if (r < 0)
        log_debug("api: exec input: %s", tp_err_msg(&e));
    return 0;
}

/* Whether the peer closed both directions (not only its sending side). */
static bool
socket_hung_up(int fd)
{
    struct pollfd p = { .fd = fd, .events = 0 };
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR));
}

static void *
input_main(void *arg)
{
    struct exec_session *s = arg;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ uint8_t *buf = xmalloc(INPUT_CHUNK);
    struct exec_input d;
    int r = 0;

    bool half_closed = false;

    exec_input_init(&d);
    if (s->extra_len)
        r = exec_input_feed(&d, s->extra, s->extra_len, on_input, s, &err);
    while (r >= 0) {
        /* Once half-closed, only the full close is waited for (POLLHUP needs no request). */
        struct pollfd p[2] = {
            { .fd = s->sock, .events = half_closed ? 0 : POLLIN },
            { .fd = s->quit_efd, .events = POLLIN },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        if (half_closed) {
            s->input_end = INPUT_CLIENT_GONE; /* POLLHUP: it is gone now */
            break;
        }
        ssize_t n = recv(s->sock, buf, INPUT_CHUNK, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n == 0 && !half_closed && !socket_hung_up(s->sock)) {
            /* shutdown(SHUT_WR), as attach clients do once their stdin ends: the command's
             * stdin closes, the session goes on until the client really leaves. */
            half_closed = true;
            _cleanup_(tp_err_clear) struct tp_err e = { 0 };
            agent_exec_stdin(s->x, NULL, 0, &e);
            continue;
        }
        if (n <= 0) {
            s->input_end = INPUT_CLIENT_GONE;
            break;
        }
        r = exec_input_feed(&d, buf, (size_t)n, on_input, s, &err);
    }
    if (r == -ECANCELED)
        r = 0;
    if (r < 0) {
        s->input_end = INPUT_BAD_FRAME;
        s->err_msg = xstrdup(tp_err_msg(&err));
    }
    exec_input_done(&d);
    if (eventfd_write(s->done_efd, 1) < 0)
        log_debug("api: exec input: eventfd: %m");
    return NULL;
}

/* Carry the guest's output to the client until the command exits, the client leaves or breaks
 * the protocol, the guest connection breaks, or the server shuts down. */
static void
output_loop(struct exec_session *s)
{
    for (;;) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        struct agent_event ev = { 0 };
        int r = agent_exec_next(s->x, &ev, 0, &err);

        if (r == -ETIMEDOUT) {
            /* The client socket too (POLLHUP needs no request): the input thread may be
             * waiting for stdin room and not reading it. */
            struct pollfd p[4] = {
                { .fd = agent_exec_fd(s->x), .events = POLLIN },
                { .fd = s->stop_fd, .events = POLLIN },
                { .fd = s->done_efd, .events = POLLIN },
                { .fd = s->sock, .events = 0 },
            };
            if (poll(p, 4, -1) < 0 && errno != EINTR)
                return;
            if (p[3].revents & (POLLHUP | POLLERR)) {
                agent_exec_cancel(s->x);
                api_exec_hangup(s->x);
                return;
            }
            if (p[2].revents & POLLIN) {
                if (s->input_end == INPUT_BAD_FRAME)
                    send_json(s, API_FRAME_ERROR, api_error_json("invalid_argument", s->err_msg));
                api_exec_hangup(s->x);
                return;
            }
            if (p[1].revents & POLLIN) {
                send_json(s, API_FRAME_ERROR,
                          api_error_json("unavailable",
                                         "torpord is shutting down: the command keeps running "
                                         "in the guest, detached"));
                return;
            }
            agent_exec_fd_drain(s->x);
            continue;
        }
        if (r < 0) {
            log_warn("api: exec in instance %s: stream ended: %s", s->inst_id, tp_err_msg(&err));
            send_json(s, API_FRAME_ERROR,
                      api_exec_cut_error(s->m, s->inst_id, r, tp_err_msg(&err)));
            s->end = r;
            return;
        }
        if (ev.type == AGENT_EV_EXIT) {
            send_json(s, API_FRAME_EXIT, json_pack("{s:i}", "exit_code", ev.exit_code));
            s->end = 0;
            return;
        }
        r = ev.len ? send_frame(s, ev.type == AGENT_EV_STDOUT ? API_FRAME_STDOUT : API_FRAME_STDERR,
                                ev.data, ev.len)
                   : 0;
        free(ev.data);
        if (r < 0) { /* the client cannot take output any more: it left */
            api_exec_hangup(s->x);
            return;
        }
    }
}

static void
session_free(struct exec_session *s)
{
    pthread_mutex_destroy(&s->lock);
    agent_exec_free(s->x);
    json_decref(s->spawn_err);
    safe_close(s->quit_efd);
    safe_close(s->done_efd);
    free(s->inst_id);
    free(s->extra);
    free(s->err_msg);
    free(s);
}

static void
registry_add(struct exec_session *s)
{
    pthread_mutex_lock(&registry_lock);
    s->reg_next = registry;
    registry = s;
    pthread_mutex_unlock(&registry_lock);
}

static void
registry_remove(struct exec_session *s)
{
    pthread_mutex_lock(&registry_lock);
    for (struct exec_session **pp = &registry; *pp; pp = &(*pp)->reg_next)
        if (*pp == s) {
            *pp = s->reg_next;
            break;
        }
    pthread_mutex_unlock(&registry_lock);
}

/* Run fn on the running session with this id, under the registry lock (so it cannot end
 * meanwhile; fn must not block for long). -ENOENT when there is none. */
static int
registry_with(const char *id, int (*fn)(struct exec_session *s, void *arg), void *arg)
{
    int r = -ENOENT;

    pthread_mutex_lock(&registry_lock);
    for (struct exec_session *s = registry; s; s = s->reg_next)
        if (s->x && strcmp(s->id, id) == 0) {
            r = fn(s, arg);
            break;
        }
    pthread_mutex_unlock(&registry_lock);
    return r;
}

static void
session_unref(struct exec_session *s)
{
    pthread_mutex_lock(&s->lock);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last)
        session_free(s);
}

void
api_exec_session_req_done(struct exec_session *s)
{
    pthread_mutex_lock(&s->lock);
    bool started = s->started;
    log_debug("api: exec session: request done (upgraded: %s)", started ? "yes" : "no");
    /* MHD calls this after the upgrade handler, or without ever calling it (the client left
     * before the 101 went out): then nobody else will let go of the command and the slot. */
    s->started = true;
    pthread_mutex_unlock(&s->lock);
    if (!started) {
        log_debug("api: exec session: the upgrade never completed");
        if (s->x)
            api_exec_hangup(s->x);
        api_server_stream_release(s->srv);
        session_unref(s); /* the connection's reference: it will not run */
    }
    session_unref(s);
}

static void
on_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
            size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct exec_session *s = cls;
    pthread_t input;

    pthread_mutex_lock(&s->lock);
    s->started = true;
    pthread_mutex_unlock(&s->lock);
    log_debug("api: exec session %s: upgraded", s->id);
    registry_add(s);

    s->sock = sock;
    if (extra_in_size) {
        s->extra = xmalloc(extra_in_size);
        memcpy(s->extra, extra_in, extra_in_size);
        s->extra_len = extra_in_size;
    }
    /* Blocking writes: a client that stops reading holds its own session only. */
    int fl = fcntl(sock, F_GETFL);
    if (fl >= 0)
        fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
    s->end = -EPIPE;
    if (!s->x) {
        send_json(s, API_FRAME_ERROR, s->spawn_err);
        s->spawn_err = NULL;
        s->end = -ENOENT;
    } else if (pthread_create(&input, NULL, input_main, s) != 0) {
        log_warn("api: exec session: cannot start its input thread");
        api_exec_hangup(s->x);
    } else {
        output_loop(s);
        /* The final frame is written; an input thread waiting for stdin room gives up. */
        agent_exec_cancel(s->x);
        if (eventfd_write(s->quit_efd, 1) < 0)
            log_debug("api: exec session: eventfd: %m");
        pthread_join(input, NULL);
    }
    registry_remove(s);
    inst_obs_exec((double)(now_ms() - s->started_ms) / 1e3, s->end);
    shutdown(sock, SHUT_WR);
    api_server_stream_release(s->srv);
    session_unref(s);
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

struct MHD_Response *
api_exec_session_new(struct api_req *req, struct agent_exec *x, json_t *spawn_err,
                     const char *inst_id, bool tty)
{
    struct exec_session *s = xnew(struct exec_session, 1);

    pthread_mutex_init(&s->lock, NULL);
    s->refs = 2;
    uint8_t rnd[8];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        abort(); /* the kernel's pool never runs dry for 8 bytes after boot */
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(s->id + 2 * i, 3, "%02x", rnd[i]);
    s->spawn_err = spawn_err;
    s->started_ms = now_ms();
    s->srv = api_req_server(req);
    s->m = req->m;
    s->x = x;
    s->inst_id = xstrdup(inst_id);
    s->tty = tty;
    s->sock = -1;
    s->stop_fd = api_req_stop_fd(req);
    s->quit_efd = eventfd(0, EFD_CLOEXEC);
    s->done_efd = eventfd(0, EFD_CLOEXEC);
    struct MHD_Response *resp = NULL;
    if (s->quit_efd >= 0 && s->done_efd >= 0)
        resp = MHD_create_response_for_upgrade(on_upgraded, s);
    if (!resp) {
        s->x = NULL; /* the caller still owns x and spawn_err */
        s->spawn_err = NULL;
        session_free(s);
        return NULL;
    }
    req->session = s;
    MHD_add_response_header(resp, "X-Torpor-Session", s->id);
    return resp;
}

/* ---- side channel: POST /v1/sessions/{id}/signal and /resize ---------------------------- */

struct side_args {
    int sig;
    uint16_t rows, cols;
    struct tp_err *err;
};

static int
do_signal(struct exec_session *s, void *arg)
{
    struct side_args *a = arg;
    return agent_exec_signal(s->x, a->sig, a->err);
}

static int
do_resize(struct exec_session *s, void *arg)
{
    struct side_args *a = arg;
    if (!s->tty)
        return tp_err_set(a->err, -EINVAL, "session %s has no terminal to resize", s->id);
    return agent_exec_resize(s->x, a->rows, a->cols, a->err);
}

static enum MHD_Result
side_call(struct api_req *req, int (*fn)(struct exec_session *s, void *arg), struct side_args *a)
{
    int r = registry_with(req->match.ref, fn, a);

    if (r == -ENOENT && !a->err->code)
        return api_reply_error(req, -ENOENT, "no running exec session with that id");
    if (r < 0)
        return api_reply_tp_err(req, a->err);
    return api_reply_json(req, 200, json_object());
}

enum MHD_Result
api_h_session_signal(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct side_args a = { .err = &err };

    if (api_parse_session_signal(req->body, req->body_len, &a.sig, &err) < 0)
        return api_reply_tp_err(req, &err);
    return side_call(req, do_signal, &a);
}

enum MHD_Result
api_h_session_resize(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct side_args a = { .err = &err };

    if (api_parse_session_resize(req->body, req->body_len, &a.rows, &a.cols, &err) < 0)
        return api_reply_tp_err(req, &err);
    return side_call(req, do_resize, &a);
}
