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
    INPUT_CLIENT_GONE, /* EOF or an error on the socket */
    INPUT_BAD_FRAME,   /* the client broke the protocol: err_msg says how */
};

struct exec_session {
    struct api_server *srv;
    struct inst_manager *m;
    struct agent_exec *x; /* NULL when the command did not start */
    json_t *spawn_err;    /* then: the only frame to send */
    char *inst_id;
    bool tty;
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
    if (r < 0)
        log_debug("api: exec input: %s", tp_err_msg(&e));
    return 0;
}

static void *
input_main(void *arg)
{
    struct exec_session *s = arg;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ uint8_t *buf = xmalloc(INPUT_CHUNK);
    struct exec_input d;
    int r = 0;

    exec_input_init(&d);
    if (s->extra_len)
        r = exec_input_feed(&d, s->extra, s->extra_len, on_input, s, &err);
    while (r >= 0) {
        struct pollfd p[2] = {
            { .fd = s->sock, .events = POLLIN },
            { .fd = s->quit_efd, .events = POLLIN },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        ssize_t n = recv(s->sock, buf, INPUT_CHUNK, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            s->input_end = INPUT_CLIENT_GONE;
            break;
        }
        r = exec_input_feed(&d, buf, (size_t)n, on_input, s, &err);
    }
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
            struct pollfd p[3] = {
                { .fd = agent_exec_fd(s->x), .events = POLLIN },
                { .fd = s->stop_fd, .events = POLLIN },
                { .fd = s->done_efd, .events = POLLIN },
            };
            if (poll(p, 3, -1) < 0 && errno != EINTR)
                return;
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
            return;
        }
        if (ev.type == AGENT_EV_EXIT) {
            send_json(s, API_FRAME_EXIT, json_pack("{s:i}", "exit_code", ev.exit_code));
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
on_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
            size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct exec_session *s = cls;
    pthread_t input;

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
    if (!s->x) {
        send_json(s, API_FRAME_ERROR, s->spawn_err);
        s->spawn_err = NULL;
    } else if (pthread_create(&input, NULL, input_main, s) != 0) {
        log_warn("api: exec session: cannot start its input thread");
        api_exec_hangup(s->x);
    } else {
        output_loop(s);
        /* The final frame is written; the input thread may be in a guest write, which ends once
         * the command is gone or the guest connection breaks. */
        if (eventfd_write(s->quit_efd, 1) < 0)
            log_debug("api: exec session: eventfd: %m");
        pthread_join(input, NULL);
    }
    shutdown(sock, SHUT_WR);
    api_server_stream_release(s->srv);
    session_free(s);
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

struct MHD_Response *
api_exec_session_new(struct api_req *req, struct agent_exec *x, json_t *spawn_err,
                     const char *inst_id, bool tty)
{
    struct exec_session *s = xnew(struct exec_session, 1);

    s->spawn_err = spawn_err;
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
        s->x = NULL; /* the caller still owns x */
        session_free(s);
    }
    /* MHD gives no notice when a queued upgrade never completes (the client left first): the
     * session, its slot and x then stay until the daemon exits. Rare, and bounded by the slots. */
    return resp;
}
