/* Guest agent client: a reader thread demultiplexes frames to per-exec queues and the control
 * waiter; writers share the socket under a write lock. */
#include "agent_client.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "guest/agent_frame.h"
#include "util/sock.h"
#include "util/xalloc.h"

struct agent_ev_node {
    struct agent_ev_node *next;
    struct agent_event ev;
};

struct agent_exec {
    struct agent_conn *c; /* holds a reference */
    uint32_t id;
    struct agent_exec *next; /* in c->execs, under c->lock */
    /* Everything below is under c->lock. */
    bool started;
    bool start_failed;
    int start_errno;
    char *start_msg;
    uint32_t pid;
    bool exit_queued;    /* EXIT received: no more events will be queued */
    bool exit_delivered; /* handed to the caller: -ENODATA from now on */
    bool overflow;
    struct agent_ev_node *head, *tail;
    size_t queued; /* output bytes in the queue */
    int evfd;      /* eventfd kicked whenever agent_exec_next() may have news */
    /* Flow control (version 2 agents). */
    uint64_t stdin_sent, stdin_acked; /* STDIN payload bytes */
    uint32_t out_unacked;             /* output handed to the caller, not yet acknowledged */
    bool cancelled;                   /* agent_exec_cancel(): stdin waits give up */
};

struct agent_conn {
    pthread_mutex_t lock;       /* everything below except fd and reader */
    pthread_cond_t cond;        /* broadcast on every change; CLOCK_MONOTONIC */
    pthread_mutex_t write_lock; /* one whole frame per write */
    pthread_mutex_t ctl_lock;   /* one control request at a time */
    int fd;
    pthread_t reader;
    unsigned refs;
    bool dead;
    char *dead_msg;
    uint32_t next_id;
    int version; /* from the last HELLO_OK; 0 = unknown */
    struct agent_exec *execs;
    /* Control replies come in request order: request n is answered by the n-th reply. */
    uint64_t ctl_sent;
    uint64_t ctl_recv;
    uint64_t ctl_reply_seq; /* which request the stored reply answers; 0 = none */
    uint16_t ctl_type;
    uint8_t *ctl_payload;
    size_t ctl_len;
};

static struct agent_conn *
conn_ref(struct agent_conn *c)
{
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
    return c;
}

static void
conn_unref(struct agent_conn *c)
{
    pthread_mutex_lock(&c->lock);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (!last)
        return;
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->write_lock);
    pthread_mutex_destroy(&c->ctl_lock);
    safe_close(c->fd);
    free(c->ctl_payload);
    free(c->dead_msg);
    free(c);
}

/* Wake a consumer polling agent_exec_fd(). */
static void
exec_kick(struct agent_exec *x)
{
    uint64_t one = 1;
    if (x->evfd >= 0 && write(x->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        abort(); /* an eventfd write fails only on overflow, which EAGAIN covers */
}

/* Under c->lock. The first reason sticks. */
static void
mark_dead_locked(struct agent_conn *c, const char *why)
{
    if (!c->dead) {
        c->dead = true;
        c->dead_msg = xstrdup(why);
    }
    for (struct agent_exec *x = c->execs; x; x = x->next)
        exec_kick(x);
    pthread_cond_broadcast(&c->cond);
}

static int
conn_reset_err(struct agent_conn *c, struct tp_err *err)
{
    return tp_err_set(err, -ECONNRESET, "agent connection lost: %s",
                      c->dead_msg ? c->dead_msg : "closed");
}

static void
deadline_after(int timeout_ms, struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Under c->lock: wait for a change; -ETIMEDOUT once the deadline passed (NULL = forever). */
static int
conn_wait_locked(struct agent_conn *c, const struct timespec *deadline)
{
    if (!deadline) {
        pthread_cond_wait(&c->cond, &c->lock);
        return 0;
    }
    return pthread_cond_timedwait(&c->cond, &c->lock, deadline) == ETIMEDOUT ? -ETIMEDOUT : 0;
}

static struct agent_exec *
exec_find_locked(struct agent_conn *c, uint32_t id)
{
    for (struct agent_exec *x = c->execs; x; x = x->next)
        if (x->id == id)
            return x;
    return NULL;
}

static void
queue_event_locked(struct agent_exec *x, enum agent_event_type type, const uint8_t *data,
                   size_t len, int code)
{
    struct agent_ev_node *n = xzalloc(sizeof(*n));
    n->ev.type = type;
    n->ev.exit_code = code;
    if (len) {
        n->ev.data = xmalloc(len);
        memcpy(n->ev.data, data, len);
        n->ev.len = len;
    }
    if (x->tail)
        x->tail->next = n;
    else
        x->head = n;
    x->tail = n;
    x->queued += len;
}

/* Route one validated-length frame. -EPROTO when its payload is malformed. */
static int
dispatch_locked(struct agent_conn *c, const struct agent_frame *f)
{
    const struct agent_hdr *h = &f->hdr;
    struct agent_hello hello;
    struct agent_exec *x;
    const char *msg;
    uint32_t u;
    int e;

    /* Validate the payload of every known type before looking at the id. */
    switch (h->type) {
    case AGENT_HELLO_OK:
        if (agent_frame_hello(f, &hello) < 0)
            return -EPROTO;
        break;
    case AGENT_ERROR:
    case AGENT_EXEC_ERROR:
        if (agent_frame_errmsg(f, &e, &msg) < 0)
            return -EPROTO;
        break;
    case AGENT_EXEC_STARTED:
    case AGENT_EXIT:
    case AGENT_STDIN_ACK:
        if (agent_frame_u32(f, &u) < 0)
            return -EPROTO;
        break;
    case AGENT_OK:
        if (h->len != 0)
            return -EPROTO;
        break;
    default:
        break;
    }

    if (h->id == 0) {
        if (h->type != AGENT_HELLO_OK && h->type != AGENT_OK && h->type != AGENT_ERROR)
            return 0;
        if (c->ctl_recv >= c->ctl_sent)
            return 0; /* unsolicited: must not shift the request/reply count */
        c->ctl_recv++;
        if (c->ctl_recv != c->ctl_sent)
            return 0; /* answers a request that already timed out */
        free(c->ctl_payload);
        c->ctl_payload = h->len ? xmalloc(h->len) : NULL;
        if (h->len)
            memcpy(c->ctl_payload, f->payload, h->len);
        c->ctl_len = h->len;
        c->ctl_type = h->type;
        c->ctl_reply_seq = c->ctl_recv;
        pthread_cond_broadcast(&c->cond);
        return 0;
    }

    x = exec_find_locked(c, h->id);
    if (!x || x->exit_queued || x->start_failed)
        return 0;
    switch (h->type) {
    case AGENT_STDIN_ACK:
        /* Never past what was sent: a confused guest cannot open the window wider. */
        x->stdin_acked = MIN(x->stdin_acked + u, x->stdin_sent);
        break;
    case AGENT_EXEC_STARTED:
        x->started = true;
        x->pid = u;
        break;
    case AGENT_EXEC_ERROR:
        if (x->started)
            return 0;
        x->start_failed = true;
        x->start_errno = e;
        x->start_msg = xstrdup(msg);
        break;
    case AGENT_STDOUT:
    case AGENT_STDERR:
        if (x->overflow || h->len == 0)
            return 0;
        if (x->queued + h->len > AGENT_EXEC_MAX_QUEUED) {
            x->overflow = true;
            break;
        }
        queue_event_locked(x, h->type == AGENT_STDOUT ? AGENT_EV_STDOUT : AGENT_EV_STDERR,
                           f->payload, h->len, 0);
        break;
    case AGENT_EXIT:
        /* An exit without EXEC_STARTED still ends the exec. */
        x->started = true;
        x->exit_queued = true;
        if (!x->overflow)
            queue_event_locked(x, AGENT_EV_EXIT, NULL, 0, (int32_t)u);
        break;
    default:
        return 0;
    }
    exec_kick(x);
    pthread_cond_broadcast(&c->cond);
    return 0;
}

static void *
reader_main(void *arg)
{
    struct agent_conn *c = arg;
    size_t cap = AGENT_HDR_SIZE + AGENT_MAX_PAYLOAD, len = 0;
    _cleanup_free_ uint8_t *buf = xmalloc(cap);
    const char *why = "closed by the guest";

    for (;;) {
        ssize_t n = read(c->fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            why = "read failed";
        if (n <= 0)
            break;
        len += (size_t)n;

        size_t off = 0;
        int r = 0;
        pthread_mutex_lock(&c->lock);
        while (off < len) {
            struct agent_frame f;
            r = agent_frame_parse(buf + off, len - off, &f);
            if (r < 0) {
                why = "protocol error: frame larger than the protocol allows";
                break;
            }
            if (r == 0)
                break;
            off += (size_t)r;
            r = dispatch_locked(c, &f);
            if (r < 0) {
                why = "protocol error: malformed payload";
                break;
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (r < 0) {
            /* Nothing after a bad frame can be trusted: writers fail from now on too. */
            shutdown(c->fd, SHUT_RDWR);
            break;
        }
        memmove(buf, buf + off, len - off);
        len -= off;
    }
    pthread_mutex_lock(&c->lock);
    mark_dead_locked(c, why);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int
agent_conn_open(int fd, struct agent_conn **ret, struct tp_err *err)
{
    _cleanup_close_ int owned = fd;
    pthread_condattr_t ca;
    struct agent_conn *c;
    int r;

    if (fd < 0)
        return tp_err_set(err, -EBADF, "open agent connection: invalid fd");
    c = xzalloc(sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->write_lock, NULL);
    pthread_mutex_init(&c->ctl_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    c->fd = TAKE_FD(owned);
    c->refs = 1;
    c->next_id = 1;
    r = pthread_create(&c->reader, NULL, reader_main, c);
    if (r != 0) {
        conn_unref(c);
        return tp_err_errno(err, -r, "start agent reader thread");
    }
    *ret = c;
    return 0;
}

struct agent_conn *
agent_conn_free(struct agent_conn *c)
{
    if (!c)
        return NULL;
    pthread_mutex_lock(&c->lock);
    mark_dead_locked(c, "connection closed by the host");
    pthread_mutex_unlock(&c->lock);
    /* Wakes the reader's read() and any writer blocked on a full socket. */
    shutdown(c->fd, SHUT_RDWR);
    pthread_join(c->reader, NULL);
    conn_unref(c);
    return NULL;
}

bool
agent_conn_alive(struct agent_conn *c)
{
    pthread_mutex_lock(&c->lock);
    bool alive = !c->dead;
    pthread_mutex_unlock(&c->lock);
    return alive;
}

/* Write one whole frame; takes ownership of buf. */
static int
conn_send(struct agent_conn *c, uint8_t *buf, size_t len, struct tp_err *err)
{
    _cleanup_free_ uint8_t *owned = buf;
    int r;

    pthread_mutex_lock(&c->lock);
    bool dead = c->dead;
    pthread_mutex_unlock(&c->lock);
    if (dead) {
        pthread_mutex_lock(&c->lock);
        r = conn_reset_err(c, err);
        pthread_mutex_unlock(&c->lock);
        return r;
    }
    pthread_mutex_lock(&c->write_lock);
    r = sock_write_all(c->fd, owned, len);
    pthread_mutex_unlock(&c->write_lock);
    if (r < 0) {
        /* A partial frame may be on the wire: the stream is unusable now. */
        shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_lock(&c->lock);
        mark_dead_locked(c, "write failed");
        pthread_mutex_unlock(&c->lock);
        return tp_err_errno(err, -ECONNRESET, "send to the agent");
    }
    return 0;
}

/* One control round trip. On success the reply's type and payload (caller frees) are returned;
 * AGENT_ERROR replies are turned into the guest's errno here. */
static int
ctl_request(struct agent_conn *c, uint8_t *frame, size_t len, int timeout_ms, uint16_t *ret_type,
            uint8_t **ret_payload, size_t *ret_len, struct tp_err *err)
{
    _cleanup_free_ uint8_t *payload = NULL;
    struct timespec deadline;
    size_t plen = 0;
    uint16_t type = 0;
    uint64_t seq;
    int r;

    pthread_mutex_lock(&c->ctl_lock);
    pthread_mutex_lock(&c->lock);
    seq = ++c->ctl_sent;
    pthread_mutex_unlock(&c->lock);
    r = conn_send(c, frame, len, err);
    if (r < 0) {
        pthread_mutex_unlock(&c->ctl_lock);
        return r;
    }
    if (timeout_ms >= 0)
        deadline_after(timeout_ms, &deadline);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (c->ctl_reply_seq == seq)
            break;
        if (c->dead) {
            r = conn_reset_err(c, err);
            break;
        }
        if (conn_wait_locked(c, timeout_ms >= 0 ? &deadline : NULL) == -ETIMEDOUT &&
            c->ctl_reply_seq != seq) {
            r = tp_err_set(err, -ETIMEDOUT, "no answer from the agent within %d ms", timeout_ms);
            break;
        }
    }
    if (r == 0) {
        type = c->ctl_type;
        payload = TAKE_PTR(c->ctl_payload);
        plen = c->ctl_len;
        c->ctl_reply_seq = 0;
    }
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&c->ctl_lock);
    if (r < 0)
        return r;
    if (type == AGENT_ERROR) {
        struct agent_frame f = { .hdr = { .len = (uint32_t)plen }, .payload = payload };
        const char *msg;
        int e;
        /* Validated by the reader already. */
        agent_frame_errmsg(&f, &e, &msg);
        return tp_err_set(err, -e, "agent: %s", msg);
    }
    *ret_type = type;
    *ret_payload = TAKE_PTR(payload);
    *ret_len = plen;
    return 0;
}

int
agent_conn_hello(struct agent_conn *c, int timeout_ms, struct agent_hello *ret, struct tp_err *err)
{
    _cleanup_free_ uint8_t *payload = NULL;
    uint8_t *frame;
    size_t flen, plen;
    uint16_t type;
    int r;

    r = agent_frame_build(0, AGENT_HELLO, 0, NULL, 0, &frame, &flen);
    if (r < 0)
        return tp_err_set(err, r, "build HELLO");
    r = ctl_request(c, frame, flen, timeout_ms, &type, &payload, &plen, err);
    if (r < 0)
        return tp_err_wrap(err, "agent hello");
    if (type != AGENT_HELLO_OK)
        return tp_err_set(err, -EPROTO, "agent hello: unexpected reply type %u", type);
    struct agent_frame f = { .hdr = { .len = (uint32_t)plen }, .payload = payload };
    struct agent_hello h;
    if (agent_frame_hello(&f, &h) < 0)
        return tp_err_set(err, -EPROTO, "agent hello: malformed reply");
    char *end;
    errno = 0;
    intmax_t v = strtoimax(h.version, &end, 10);
    pthread_mutex_lock(&c->lock);
    c->version = errno || end == h.version || *end || v < 0 || v > INT32_MAX ? 0 : (int)v;
    pthread_mutex_unlock(&c->lock);
    *ret = h;
    return 0;
}

int
agent_conn_version(struct agent_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int v = c->version;
    pthread_mutex_unlock(&c->lock);
    return v;
}

/* A version 1 agent would answer the extended payload with "malformed": say why instead. */
static int
exec_check_version(struct agent_conn *c, const struct agent_exec_req *req, struct tp_err *err)
{
    const char *what = req->tty ? "a TTY" : req->user ? "a user (-u)" : "built-ins";
    int v = agent_conn_version(c);

    if (!req->tty && !req->user && !req->builtin)
        return 0;
    if (v >= 2)
        return 0;
    if (v == 0)
        return tp_err_set(err, -EOPNOTSUPP,
                          "the guest agent's version is unknown (no HELLO yet), %s needs version 2",
                          what);
    return tp_err_set(err, -EOPNOTSUPP,
                      "the guest agent is version %d, too old for %s (needs 2); restart the "
                      "instance to boot the current agent",
                      v, what);
}

static int
ctl_expect_ok(struct agent_conn *c, uint8_t *frame, size_t flen, int timeout_ms, const char *what,
              struct tp_err *err)
{
    _cleanup_free_ uint8_t *payload = NULL;
    size_t plen;
    uint16_t type;
    int r = ctl_request(c, frame, flen, timeout_ms, &type, &payload, &plen, err);
    if (r < 0)
        return tp_err_wrap(err, "agent %s", what);
    if (type != AGENT_OK)
        return tp_err_set(err, -EPROTO, "agent %s: unexpected reply type %u", what, type);
    return 0;
}

int
agent_conn_set_clock(struct agent_conn *c, int64_t unix_ns, int timeout_ms, struct tp_err *err)
{
    uint8_t ns[8], *frame;
    size_t flen;

    agent_put_u64(ns, (uint64_t)unix_ns);
    int r = agent_frame_build(0, AGENT_SET_CLOCK, 0, ns, sizeof(ns), &frame, &flen);
    if (r < 0)
        return tp_err_set(err, r, "build SET_CLOCK");
    return ctl_expect_ok(c, frame, flen, timeout_ms, "set clock", err);
}

int
agent_conn_identity(struct agent_conn *c, char *const *kv, int timeout_ms, struct tp_err *err)
{
    uint8_t *frame;
    size_t flen;
    int r = agent_frame_build_strv(0, AGENT_IDENTITY, kv, &frame, &flen);
    if (r < 0)
        return tp_err_set(err, r, "build IDENTITY: %s", r == -E2BIG ? "too large" : "no values");
    return ctl_expect_ok(c, frame, flen, timeout_ms, "identity", err);
}

int
agent_exec_start(struct agent_conn *c, const struct agent_exec_req *req, int timeout_ms,
                 struct agent_exec **ret, struct tp_err *err)
{
    _cleanup_(agent_exec_freep) struct agent_exec *x = NULL;
    struct timespec deadline;
    uint8_t *frame;
    size_t flen;
    uint32_t id;
    int r;

    r = exec_check_version(c, req, err);
    if (r < 0)
        return tp_err_wrap(err, "exec '%s'", req->argv && req->argv[0] ? req->argv[0] : "");

    pthread_mutex_lock(&c->lock);
    id = c->next_id++;
    if (c->next_id == 0)
        c->next_id = 1; /* 0 is the control channel */
    pthread_mutex_unlock(&c->lock);

    r = agent_frame_build_exec(id, req, &frame, &flen);
    if (r < 0)
        return tp_err_set(err, r, "exec: %s",
                          r == -E2BIG ? "arguments and environment exceed one frame"
                                      : "empty argv");

    x = xzalloc(sizeof(*x));
    x->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (x->evfd < 0) {
        int e = -errno;
        free(x);
        x = NULL;
        return tp_err_errno(err, e, "create exec eventfd");
    }
    x->c = conn_ref(c);
    x->id = id;
    pthread_mutex_lock(&c->lock);
    x->next = c->execs;
    c->execs = x;
    pthread_mutex_unlock(&c->lock);

    r = conn_send(c, frame, flen, err);
    if (r < 0)
        return tp_err_wrap(err, "exec '%s'", req->argv[0]);

    if (timeout_ms >= 0)
        deadline_after(timeout_ms, &deadline);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (x->started)
            break;
        if (x->start_failed) {
            r = tp_err_set(err, -x->start_errno, "agent: %s", x->start_msg);
            break;
        }
        if (c->dead) {
            r = conn_reset_err(c, err);
            break;
        }
        if (conn_wait_locked(c, timeout_ms >= 0 ? &deadline : NULL) == -ETIMEDOUT && !x->started &&
            !x->start_failed) {
            r = tp_err_set(err, -ETIMEDOUT, "no answer from the agent within %d ms", timeout_ms);
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        return tp_err_wrap(err, "exec '%s'", req->argv[0]);
    *ret = TAKE_PTR(x);
    return 0;
}

int
agent_exec_next(struct agent_exec *x, struct agent_event *ev, int timeout_ms, struct tp_err *err)
{
    struct agent_conn *c = x->c;
    struct timespec deadline;
    int r = 0;

    if (timeout_ms >= 0)
        deadline_after(timeout_ms, &deadline);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (x->exit_delivered) {
            r = tp_err_set(err, -ENODATA, "exec %u already exited", x->id);
            break;
        }
        if (x->head) {
            struct agent_ev_node *n = x->head;
            x->head = n->next;
            if (!x->head)
                x->tail = NULL;
            x->queued -= n->ev.len;
            if (n->ev.type == AGENT_EV_EXIT)
                x->exit_delivered = true;
            else
                x->out_unacked += (uint32_t)n->ev.len;
            *ev = n->ev;
            free(n);
            break;
        }
        if (x->overflow) {
            r = tp_err_set(err, -ENOBUFS, "exec %u: more than %u bytes of output not consumed",
                           x->id, AGENT_EXEC_MAX_QUEUED);
            break;
        }
        if (c->dead) {
            r = conn_reset_err(c, err);
            break;
        }
        if (conn_wait_locked(c, timeout_ms >= 0 ? &deadline : NULL) == -ETIMEDOUT && !x->head &&
            !c->dead && !x->overflow) {
            r = tp_err_set(err, -ETIMEDOUT, "no output within %d ms", timeout_ms);
            break;
        }
    }
    /* Acknowledged in batches: the guest's window is four of them. */
    uint32_t ack = 0;
    /* Sent whatever the agent's version: one before 2 ignores it, and the EXEC frame always
     * asks for acknowledgements (AGENT_EXEC_F_ACKS). */
    if (x->out_unacked >= AGENT_OUTPUT_WINDOW / 4 && !c->dead) {
        ack = x->out_unacked;
        x->out_unacked = 0;
    }
    pthread_mutex_unlock(&c->lock);
    if (ack) {
        _cleanup_(tp_err_clear) struct tp_err e = { 0 };
        uint8_t payload[4], *frame;
        size_t flen;
        agent_put_u32(payload, ack);
        if (agent_frame_build(x->id, AGENT_OUTPUT_ACK, 0, payload, 4, &frame, &flen) >= 0)
            conn_send(c, frame, flen, &e); /* a broken connection shows on the next call */
    }
    return r;
}

void
agent_exec_cancel(struct agent_exec *x)
{
    pthread_mutex_lock(&x->c->lock);
    x->cancelled = true;
    pthread_cond_broadcast(&x->c->cond);
    pthread_mutex_unlock(&x->c->lock);
}

/* Version 2: wait until chunk more bytes fit in the exec's stdin window. 1 when they may be
 * sent, 0 when they are moot (the command exited), -ECANCELED, or the connection's error. */
static int
stdin_window_wait(struct agent_exec *x, size_t chunk, struct tp_err *err)
{
    struct agent_conn *c = x->c;
    int r = 1;

    pthread_mutex_lock(&c->lock);
    if (c->version >= 2) {
        while (!c->dead && !x->cancelled && !x->exit_queued &&
               x->stdin_sent - x->stdin_acked + chunk > AGENT_STDIN_WINDOW)
            conn_wait_locked(c, NULL);
        x->stdin_sent += chunk;
    }
    if (x->cancelled)
        r = tp_err_set(err, -ECANCELED, "exec %u: stdin cancelled", x->id);
    else if (c->dead)
        r = conn_reset_err(c, err);
    else if (x->exit_queued)
        r = 0;
    pthread_mutex_unlock(&c->lock);
    return r;
}

int
agent_exec_stdin(struct agent_exec *x, const void *data, size_t len, struct tp_err *err)
{
    const uint8_t *p = data;
    int r;

    do {
        size_t chunk = MIN(len, (size_t)AGENT_MAX_PAYLOAD);
        uint8_t *frame;
        size_t flen;
        r = stdin_window_wait(x, chunk, err);
        if (r == 0)
            return 0; /* the command is gone: nobody reads this */
        if (r > 0)
            r = agent_frame_build(x->id, AGENT_STDIN, 0, p, chunk, &frame, &flen);
        if (r >= 0)
            r = conn_send(x->c, frame, flen, err);
        if (r < 0)
            return tp_err_wrap(err, "write stdin of exec %u", x->id);
        p += chunk;
        len -= chunk;
    } while (len > 0);
    return 0;
}

int
agent_exec_resize(struct agent_exec *x, uint16_t rows, uint16_t cols, struct tp_err *err)
{
    uint8_t payload[4], *frame;
    size_t flen;

    agent_put_u16(payload, rows);
    agent_put_u16(payload + 2, cols);
    int r = agent_frame_build(x->id, AGENT_RESIZE, 0, payload, sizeof(payload), &frame, &flen);
    if (r >= 0)
        r = conn_send(x->c, frame, flen, err);
    if (r < 0)
        return tp_err_wrap(err, "resize the terminal of exec %u", x->id);
    return 0;
}

int
agent_exec_signal(struct agent_exec *x, int sig, struct tp_err *err)
{
    uint8_t payload[4], *frame;
    size_t flen;

    if (sig <= 0 || sig >= 65)
        return tp_err_set(err, -EINVAL, "invalid signal %d", sig);
    agent_put_u32(payload, (uint32_t)sig);
    int r = agent_frame_build(x->id, AGENT_SIGNAL, 0, payload, sizeof(payload), &frame, &flen);
    if (r >= 0)
        r = conn_send(x->c, frame, flen, err);
    if (r < 0)
        return tp_err_wrap(err, "signal exec %u", x->id);
    return 0;
}

uint32_t
agent_exec_pid(const struct agent_exec *x)
{
    return x->pid;
}

struct agent_exec *
agent_exec_free(struct agent_exec *x)
{
    if (!x)
        return NULL;
    struct agent_conn *c = x->c;
    pthread_mutex_lock(&c->lock);
    for (struct agent_exec **pp = &c->execs; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    /* A command still running is let go: its output no longer crosses the connection (nor
     * waits there for an acknowledgement that would never come). */
    bool forget = c->version >= 2 && !c->dead && x->started && !x->exit_queued;
    pthread_mutex_unlock(&c->lock);
    if (forget) {
        _cleanup_(tp_err_clear) struct tp_err e = { 0 };
        uint8_t *frame;
        size_t flen;
        if (agent_frame_build(x->id, AGENT_FORGET, 0, NULL, 0, &frame, &flen) >= 0)
            conn_send(c, frame, flen, &e);
    }
    for (struct agent_ev_node *n = x->head, *next; n; n = next) {
        next = n->next;
        free(n->ev.data);
        free(n);
    }
    free(x->start_msg);
    safe_close(x->evfd);
    free(x);
    conn_unref(c);
    return NULL;
}

int
agent_exec_fd(struct agent_exec *x)
{
    return x->evfd;
}

void
agent_exec_fd_drain(struct agent_exec *x)
{
    uint64_t n;
    if (read(x->evfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        abort(); /* a non-blocking eventfd read fails only with EAGAIN */
}
