/* QMP transport: greeting + capabilities handshake, id-matched commands, a bounded event queue. */
#include "hypervisor/qemu/qmp.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"
#include "util/sock.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define QMP_READ_CHUNK 65536

struct qmp_conn {
    pthread_mutex_t lock; /* one reader/command at a time */
    int fd;
    int watch_fd;   /* borrowed pidfd: readable once the VMM is gone */
    int wake_fd;    /* eventfd poked whenever an event is queued, for qmp_event_next() */
    int timeout_ms; /* bound on each command and the handshake */
    int dead;       /* sticky -errno once the stream cannot be trusted any more */
    int64_t next_id;
    char *buf; /* bytes read but not yet consumed as lines */
    size_t len, cap;
    size_t scanned; /* buf[0..scanned) holds no newline */
    json_t *events[QMP_EVENT_QUEUE_MAX];
    size_t ev_head, ev_count;
};

void
qmp_msg_clear(struct qmp_msg *msg)
{
    if (!msg)
        return;
    json_decref(msg->json);
    msg->json = NULL;
    msg->id = NULL;
    msg->kind = _QMP_MSG_INVALID;
}

int
qmp_parse_line(const char *line, size_t len, struct qmp_msg *ret_msg, struct tp_err *err)
{
    json_error_t jerr;
    json_t *j, *e;
    enum qmp_msg_kind kind;

    j = json_loadb(line, len, 0, &jerr);
    if (!j)
        return tp_err_set(err, -EPROTO, "parse QMP message: %s (column %d)", jerr.text,
                          jerr.column);
    if (!json_is_object(j)) {
        json_decref(j);
        return tp_err_set(err, -EPROTO, "parse QMP message: not a JSON object");
    }

    if (json_is_object(json_object_get(j, "QMP")))
        kind = QMP_MSG_GREETING;
    else if (json_object_get(j, "return"))
        kind = QMP_MSG_RETURN;
    else if ((e = json_object_get(j, "error"))) {
        if (!json_is_string(json_object_get(e, "class")) ||
            !json_is_string(json_object_get(e, "desc"))) {
            json_decref(j);
            return tp_err_set(err, -EPROTO, "parse QMP message: error without class and desc");
        }
        kind = QMP_MSG_ERROR;
    } else if (json_is_string(json_object_get(j, "event")))
        kind = QMP_MSG_EVENT;
    else {
        json_decref(j);
        return tp_err_set(err, -EPROTO, "parse QMP message: not a greeting, reply or event");
    }

    *ret_msg = (struct qmp_msg){ .kind = kind, .json = j, .id = json_object_get(j, "id") };
    return 0;
}

struct qmp_conn *
qmp_conn_free(struct qmp_conn *c)
{
    if (!c)
        return NULL;
    safe_close(c->fd);
    safe_close(c->wake_fd);
    for (size_t i = 0; i < c->ev_count; i++)
        json_decref(c->events[(c->ev_head + i) % QMP_EVENT_QUEUE_MAX]);
    free(c->buf);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return NULL;
}

static uint64_t
deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout_ms;
}

static int
ms_left(uint64_t deadline)
{
    uint64_t now = now_ms();

    if (deadline == UINT64_MAX)
        return -1;
    if (now >= deadline)
        return 0;
    return (int)MIN(deadline - now, (uint64_t)INT32_MAX);
}

static int
qmp_mark_dead(struct qmp_conn *c, int code)
{
    c->dead = code;
    return code;
}

/* Read one chunk. wait=false returns 0 at once when nothing is readable; wait=true waits until
 * deadline (-ETIMEDOUT). Returns 1 when bytes were added. */
static int
qmp_fill(struct qmp_conn *c, uint64_t deadline, bool wait, struct tp_err *err)
{
    struct pollfd p[2] = {
        { .fd = c->fd, .events = POLLIN },
        { .fd = c->watch_fd, .events = POLLIN },
    };

    for (;;) {
        int r = poll(p, c->watch_fd >= 0 ? 2 : 1, wait ? ms_left(deadline) : 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return tp_err_errno(err, -errno, "poll QMP socket");
        }
        if (r == 0)
            return wait ? tp_err_set(err, -ETIMEDOUT, "no answer from QEMU within the time limit")
                        : 0;
        /* Data still buffered wins over the exit notification: it may be the last reply. */
        if (p[0].revents) {
            if (c->cap - c->len < QMP_READ_CHUNK) {
                c->cap = c->len + QMP_READ_CHUNK;
                c->buf = xrealloc(c->buf, c->cap);
            }
            ssize_t n = read(c->fd, c->buf + c->len, QMP_READ_CHUNK);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                int e = errno == ECONNRESET ? -ECONNRESET : -errno;
                return tp_err_errno(err, qmp_mark_dead(c, e), "read QMP socket");
            }
            if (n == 0)
                return tp_err_set(err, qmp_mark_dead(c, -ECONNRESET),
                                  "QMP connection closed by QEMU");
            c->len += (size_t)n;
            return 1;
        }
        return tp_err_set(err, qmp_mark_dead(c, -ECONNRESET), "QEMU exited");
    }
}

static bool
is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Consume one complete line: 1 with *ret_msg, 0 when no full line is buffered yet. A malformed
 * line is consumed and reported (-EPROTO); the stream stays usable. */
static int
qmp_take_line(struct qmp_conn *c, struct qmp_msg *ret_msg, struct tp_err *err)
{
    for (;;) {
        char *nl =
            c->len > c->scanned ? memchr(c->buf + c->scanned, '\n', c->len - c->scanned) : NULL;
        if (!nl) {
            c->scanned = c->len;
            /* Without a newline we cannot resynchronise: the connection is done. */
            if (c->len > QMP_LINE_MAX)
                return tp_err_set(err, qmp_mark_dead(c, -EPROTO), "QMP line longer than %u bytes",
                                  QMP_LINE_MAX);
            return 0;
        }
        size_t n = (size_t)(nl - c->buf);
        if (n > QMP_LINE_MAX)
            return tp_err_set(err, qmp_mark_dead(c, -EPROTO), "QMP line longer than %u bytes",
                              QMP_LINE_MAX);
        int r = 0;
        bool blank = is_blank(c->buf, n);
        if (!blank)
            r = qmp_parse_line(c->buf, n, ret_msg, err);
        memmove(c->buf, nl + 1, c->len - n - 1);
        c->len -= n + 1;
        c->scanned = 0;
        if (blank)
            continue;
        return r < 0 ? r : 1;
    }
}

static void
qmp_queue_event(struct qmp_conn *c, json_t *ev)
{
    uint64_t one = 1;

    if (c->ev_count == QMP_EVENT_QUEUE_MAX) {
        log_debug("QMP event queue full: dropping the oldest event");
        json_decref(c->events[c->ev_head]);
        c->ev_head = (c->ev_head + 1) % QMP_EVENT_QUEUE_MAX;
        c->ev_count--;
    }
    c->events[(c->ev_head + c->ev_count) % QMP_EVENT_QUEUE_MAX] = ev;
    c->ev_count++;
    /* Only a wake-up hint; a full counter still leaves the eventfd readable. */
    if (write(c->wake_fd, &one, sizeof(one)) < 0)
        log_debug("poke QMP event waiters: %m");
}

/* Next message, waiting until deadline. */
static int
qmp_read_msg(struct qmp_conn *c, uint64_t deadline, struct qmp_msg *ret_msg, struct tp_err *err)
{
    for (;;) {
        if (c->dead)
            return tp_err_set(err, c->dead, "QMP connection unusable after an earlier failure");
        int r = qmp_take_line(c, ret_msg, err);
        if (r != 0)
            return r < 0 ? r : 0;
        r = qmp_fill(c, deadline, true, err);
        if (r < 0)
            return r;
    }
}

static int
qmp_send(struct qmp_conn *c, json_t *req, int fd_to_pass, struct tp_err *err)
{
    _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
    _cleanup_free_ char *line = NULL;
    int r;

    if (!body)
        return tp_err_set(err, -ENOMEM, "serialise QMP command");
    line = xasprintf("%s\n", body);
    if (fd_to_pass >= 0)
        r = sock_send_with_fd(c->fd, line, strlen(line), fd_to_pass, err);
    else {
        r = sock_write_all(c->fd, line, strlen(line));
        if (r < 0)
            r = tp_err_errno(err, r, "write QMP socket");
    }
    if (r == -EPIPE || r == -ECONNRESET)
        return qmp_mark_dead(c, -ECONNRESET);
    return r;
}

static int
qmp_execute_locked(struct qmp_conn *c, const char *cmd, json_t *args, int fd_to_pass,
                   json_t **ret_return, struct tp_err *err)
{
    json_auto_t *req = json_object();
    int64_t id;
    uint64_t deadline;
    int r;

    if (!req) {
        json_decref(args);
        return tp_err_set(err, -ENOMEM, "allocate QMP command");
    }
    if (args)
        json_object_set_new(req, "arguments", args);
    if (c->dead)
        return tp_err_set(err, c->dead, "QMP connection unusable after an earlier failure");

    id = ++c->next_id;
    json_object_set_new(req, "execute", json_string(cmd));
    json_object_set_new(req, "id", json_integer(id));
    r = qmp_send(c, req, fd_to_pass, err);
    if (r < 0)
        return r;

    deadline = deadline_after(c->timeout_ms);
    for (;;) {
        _cleanup_(qmp_msg_clear) struct qmp_msg m = { .json = NULL };

        r = qmp_read_msg(c, deadline, &m, err);
        if (r < 0)
            return r;
        if (m.kind == QMP_MSG_EVENT) {
            qmp_queue_event(c, TAKE_PTR(m.json));
            continue;
        }
        if (m.kind == QMP_MSG_GREETING)
            continue;
        /* QEMU omits the id only when it could not parse our request: that reply is ours.
         * A different id is a late answer to a command that timed out earlier. */
        if (m.id && !(json_is_integer(m.id) && json_integer_value(m.id) == id)) {
            log_debug("QMP: skipping a reply that is not for command id %lld", (long long)id);
            continue;
        }
        if (m.kind == QMP_MSG_ERROR) {
            json_t *e = json_object_get(m.json, "error");
            return tp_err_set(err, -EIO, "%s: %s", json_string_value(json_object_get(e, "class")),
                              json_string_value(json_object_get(e, "desc")));
        }
        if (ret_return)
            *ret_return = json_incref(json_object_get(m.json, "return"));
        return 0;
    }
}

int
qmp_execute(struct qmp_conn *c, const char *cmd, json_t *args, int fd_to_pass, json_t **ret_return,
            struct tp_err *err)
{
    int r;

    pthread_mutex_lock(&c->lock);
    r = qmp_execute_locked(c, cmd, args, fd_to_pass, ret_return, err);
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        tp_err_wrap(err, "QMP '%s'", cmd);
    return r;
}

static int
qmp_handshake(struct qmp_conn *c, struct tp_err *err)
{
    _cleanup_(qmp_msg_clear) struct qmp_msg m = { .json = NULL };
    int r;

    r = qmp_read_msg(c, deadline_after(c->timeout_ms), &m, err);
    if (r < 0) {
        tp_err_wrap(err, "read QMP greeting");
        return r;
    }
    if (m.kind != QMP_MSG_GREETING)
        return tp_err_set(err, -EPROTO, "expected a QMP greeting first");
    r = qmp_execute_locked(c, "qmp_capabilities", NULL, -1, NULL, err);
    if (r < 0)
        tp_err_wrap(err, "QMP 'qmp_capabilities'");
    return r;
}

int
qmp_conn_adopt(int fd, int timeout_ms, int watch_fd, struct qmp_conn **ret_conn, struct tp_err *err)
{
    _cleanup_(qmp_conn_freep) struct qmp_conn *c = xnew(struct qmp_conn, 1);
    int r;

    c->fd = fd;
    c->watch_fd = watch_fd;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : QMP_TIMEOUT_MS;
    pthread_mutex_init(&c->lock, NULL);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0)
        return tp_err_errno(err, -errno, "create eventfd");

    r = qmp_handshake(c, err);
    if (r < 0)
        return r;
    *ret_conn = TAKE_PTR(c);
    return 0;
}

int
qmp_conn_open(const char *path, int timeout_ms, int watch_fd, struct qmp_conn **ret_conn,
              struct tp_err *err)
{
    int fd, r;

    fd = sock_connect_unix(path, err);
    if (fd < 0) {
        tp_err_wrap(err, "connect QMP socket");
        return fd;
    }
    r = qmp_conn_adopt(fd, timeout_ms, watch_fd, ret_conn, err);
    if (r < 0)
        tp_err_wrap(err, "QMP handshake on '%s'", path);
    return r;
}

/* Read whatever is already available, queueing events and dropping stray replies. */
static int
qmp_drain_locked(struct qmp_conn *c, struct tp_err *err)
{
    for (;;) {
        _cleanup_(qmp_msg_clear) struct qmp_msg m = { .json = NULL };

        if (c->dead)
            return tp_err_set(err, c->dead, "QMP connection unusable after an earlier failure");
        int r = qmp_take_line(c, &m, err);
        if (r < 0)
            return r;
        if (r > 0) {
            if (m.kind == QMP_MSG_EVENT)
                qmp_queue_event(c, TAKE_PTR(m.json));
            else
                log_debug("QMP: dropping a reply no command is waiting for");
            continue;
        }
        r = qmp_fill(c, 0, false, err);
        if (r <= 0)
            return r;
    }
}

int
qmp_event_next(struct qmp_conn *c, json_t **ret_event, int timeout_ms, struct tp_err *err)
{
    uint64_t deadline = deadline_after(timeout_ms);

    for (;;) {
        _cleanup_(tp_err_clear) struct tp_err drain_err = { 0 };
        uint64_t counter;
        int r;

        pthread_mutex_lock(&c->lock);
        /* Reset the wake-up before looking at the queue, so a later queueing is never missed. */
        while (read(c->wake_fd, &counter, sizeof(counter)) > 0)
            ;
        /* A queued event is still worth returning when the stream has just failed. */
        r = qmp_drain_locked(c, &drain_err);
        if (c->ev_count > 0) {
            json_t *ev = c->events[c->ev_head];
            c->ev_head = (c->ev_head + 1) % QMP_EVENT_QUEUE_MAX;
            c->ev_count--;
            pthread_mutex_unlock(&c->lock);
            *ret_event = ev;
            return 0;
        }
        struct pollfd p[3] = {
            { .fd = c->fd, .events = POLLIN },
            { .fd = c->wake_fd, .events = POLLIN },
            { .fd = c->watch_fd, .events = POLLIN },
        };
        nfds_t n = c->watch_fd >= 0 ? 3 : 2;
        pthread_mutex_unlock(&c->lock);
        if (r < 0) {
            if (err)
                tp_err_move(err, &drain_err);
            tp_err_wrap(err, "wait for a QMP event");
            return r;
        }

        int left = ms_left(deadline);
        if (left == 0)
            return tp_err_set(err, -ETIMEDOUT, "wait for a QMP event: none within %d ms",
                              timeout_ms);
        r = poll(p, n, left);
        if (r < 0 && errno != EINTR)
            return tp_err_errno(err, -errno, "wait for a QMP event");
    }
}
