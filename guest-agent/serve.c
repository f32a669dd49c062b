/* The protocol loop: one poll() over the host port, every exec's pipes and a signalfd. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "torpor/agent_proto.h"

#define AGENT_RNDRESEEDCRNG _IO('R', 0x07) /* <linux/random.h>, which musl lacks */

/* Backpressure: stop reading children while this much output waits for the host, and stop
 * reading the host while a command's stdin has this much queued. Neither blocks the loop. */
#define OUTQ_HIGH       (256u * 1024u)
#define STDIN_HIGH      (2 * AGENT_STDIN_WINDOW) /* a host keeping its window never gets here */
#define MAX_EXECS       128
#define MAX(a, b)       ((a) > (b) ? (a) : (b))
#define PORT_WAIT_LOG   10000 /* ms before saying the port is late (waiting goes on) */
#define TTY_DRAIN_READS 16    /* reads (of up to 64 KiB) of a reaped tty command's output */

struct outq {
    uint8_t *data;
    size_t cap;
    size_t len; /* bytes in data */
    size_t off; /* bytes already written */
};

struct srv {
    const struct serve_cfg *cfg;
    int port_fd;      /* -1 while the port is unknown (discovery) or closed */
    bool connected;   /* a host is there: the port is in the poll set */
    bool await_hello; /* a new host may follow an old one's unread bytes: skip input up to
                         the HELLO every host starts with */
    int uevent_fd;    /* while discovering the port */
    uint64_t wait_start;
    bool wait_logged;
    int sig_fd;
    uint8_t in[AGENT_HDR_SIZE + AGENT_MAX_PAYLOAD];
    size_t inlen;
    struct outq out;
    struct exec *execs;
    int n_execs;
    bool done; /* host gone for good */
};

static uint8_t io_buf[AGENT_MAX_PAYLOAD];

static void
outq_reset(struct outq *q)
{
    free(q->data);
    *q = (struct outq){ 0 };
}

static size_t
outq_pending(const struct outq *q)
{
    return q->len - q->off;
}

/* Queue one frame for the host; dropped when nobody listens. */
static void
send_frame(struct srv *s, uint32_t id, uint16_t type, const void *a, size_t alen, const void *b,
           size_t blen)
{
    struct outq *q = &s->out;
    size_t need = AGENT_HDR_SIZE + alen + blen;

    if (!s->connected || s->await_hello || s->port_fd < 0)
        return;
    if (q->off > 0 && q->off == q->len)
        q->off = q->len = 0;
    if (q->off > 0 && q->off >= q->len / 2) {
        memmove(q->data, q->data + q->off, q->len - q->off);
        q->len -= q->off;
        q->off = 0;
    }
    if (q->len + need > q->cap) {
        size_t cap = MAX(q->cap * 2, q->len + need);
        uint8_t *p = realloc(q->data, cap);
        if (!p) {
            agent_log("out of memory queueing a frame");
            return;
        }
        q->data = p;
        q->cap = cap;
    }
    agent_hdr_encode(q->data + q->len, (uint32_t)(alen + blen), id, type, 0);
    if (alen)
        memcpy(q->data + q->len + AGENT_HDR_SIZE, a, alen);
    if (blen)
        memcpy(q->data + q->len + AGENT_HDR_SIZE + alen, b, blen);
    q->len += need;
}

static void
send_errno(struct srv *s, uint32_t id, uint16_t type, int err, const char *msg)
{
    uint8_t code[4];
    agent_put_u32(code, (uint32_t)err);
    send_frame(s, id, type, code, sizeof(code), msg, strlen(msg) + 1);
}

static struct exec *
exec_find(struct srv *s, uint32_t id)
{
    for (struct exec *x = s->execs; x; x = x->next)
        if (x->id == id)
            return x;
    return NULL;
}

/* Orphan every exec: its output is dropped from now on and its id may be reused. */
static void
execs_forget(struct srv *s)
{
    for (struct exec *x = s->execs; x; x = x->next) {
        x->id = 0;
        /* Nobody can feed stdin any more: give the command EOF rather than a hang. */
        if (x->in_fd >= 0)
            close(x->in_fd);
        x->in_fd = -1;
        free(x->inbuf);
        x->inbuf = NULL;
        x->inlen = 0;
    }
}

/* The host went away (or broke the protocol): forget its exec ids, drop its bytes. */
static void
host_forget(struct srv *s)
{
    s->inlen = 0;
    outq_reset(&s->out);
    execs_forget(s);
}

static void
virtio_check_connected(struct srv *s)
{
    struct pollfd p = { .fd = s->port_fd, .events = POLLIN };
    if (poll(&p, 1, 0) < 0)
        return;
    /* No host: POLLHUP, and POLLIN too, since read() then never blocks (it returns what the
     * departed host left, then 0). Counting POLLIN as a host kept the port in the poll set
     * and the loop spinning on read() == 0 for as long as no host was there. Arrivals and
     * departures are announced by SIGIO. */
    bool now = !(p.revents & POLLHUP);
    /* Bytes the departed host left unread may still be queued, and the next host's may land
     * right behind them before this runs: never drain here (that could eat the new HELLO);
     * resynchronise on the HELLO instead. */
    if (!now && s->connected) {
        host_forget(s);
        s->await_hello = true;
    }
    s->connected = now;
}

static void
port_setup(struct srv *s)
{
    int fl = fcntl(s->port_fd, F_GETFL);
    if (s->cfg->kind == PORT_VIRTIO) {
        /* virtio_console signals host connect/disconnect with SIGIO (fasync); the signalfd
         * picks it up, so a disconnected port never makes the loop spin. */
        if (fcntl(s->port_fd, F_SETOWN, getpid()) < 0 ||
            fcntl(s->port_fd, F_SETFL, fl | O_NONBLOCK | O_ASYNC) < 0)
            agent_log("enable SIGIO on the port: %s", strerror(errno));
        s->connected = false;
        virtio_check_connected(s);
    } else {
        fcntl(s->port_fd, F_SETFL, fl | O_NONBLOCK);
        s->connected = true;
    }
    s->await_hello = false;
}

static void
host_gone(struct srv *s, const char *why)
{
    host_forget(s);
    if (s->cfg->kind == PORT_VIRTIO) {
        s->connected = false;
        s->await_hello = true;
        /* It may already be back: SIGIO would be pending, but checking is cheap. */
        virtio_check_connected(s);
        return;
    }
    agent_log("host gone (%s)", why);
    close(s->port_fd);
    s->port_fd = -1;
    s->connected = false;
    if (s->cfg->reconnect_path) {
        int fd = agent_connect_unix(s->cfg->reconnect_path);
        if (fd >= 0) {
            s->port_fd = fd;
            port_setup(s);
            return;
        }
        agent_log("reconnect to '%s': %s", s->cfg->reconnect_path, strerror(-fd));
    }
    s->done = true;
}

/* Protocol error: nothing after it can be trusted until the host reconnects. */
static void
protocol_error(struct srv *s, const char *what)
{
    agent_log("protocol error: %s", what);
    host_forget(s);
    if (s->cfg->kind == PORT_VIRTIO)
        s->await_hello = true; /* the host reconnects and says HELLO again */
    else
        host_gone(s, "protocol error");
}

static void
handle_hello(struct srv *s)
{
    char boot_id[64] = "";
    char buf[256];
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, boot_id, sizeof(boot_id) - 1);
        close(fd);
        boot_id[n > 0 ? n : 0] = '\0';
        boot_id[strcspn(boot_id, "\n")] = '\0';
    }
    int n = snprintf(buf, sizeof(buf), "version=%d%cboot_id=%s%cuptime_ms=%llu",
                     AGENT_PROTO_VERSION, 0, boot_id, 0, (unsigned long long)agent_uptime_ms());
    send_frame(s, 0, AGENT_HELLO_OK, buf, (size_t)n + 1, NULL, 0);
}

static void
handle_set_clock(struct srv *s, const uint8_t *p, uint32_t len)
{
    if (len != 8) {
        send_errno(s, 0, AGENT_ERROR, EINVAL, "SET_CLOCK payload must be 8 bytes");
        return;
    }
    int64_t ns = (int64_t)agent_get_u64(p);
    struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
    if (ns < 0) {
        send_errno(s, 0, AGENT_ERROR, EINVAL, "negative time");
        return;
    }
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
        send_errno(s, 0, AGENT_ERROR, errno, "set the clock");
        return;
    }
    send_frame(s, 0, AGENT_OK, NULL, 0, NULL, 0);
}

static void
handle_identity(struct srv *s, const uint8_t *p, uint32_t len)
{
    const char *end = (const char *)p + len;
    char msg[128];

    if (len > 0 && p[len - 1] != '\0') {
        send_errno(s, 0, AGENT_ERROR, EINVAL, "IDENTITY strings must be NUL-terminated");
        return;
    }
    /* Validate everything before applying anything. */
    for (const char *kv = (const char *)p; kv < end; kv += strlen(kv) + 1) {
        if (strncmp(kv, "hostname=", 9) == 0) {
            if (!ident_name_valid(kv + 9)) {
                send_errno(s, 0, AGENT_ERROR, EINVAL,
                           "hostname must be 1 to 64 letters, digits, '-', '.' or '_'");
                return;
            }
        } else if (strncmp(kv, "net=", 4) == 0) {
            struct net_cfg nc;
            if (net_cfg_parse(kv + 4, &nc) < 0) {
                send_errno(s, 0, AGENT_ERROR, EINVAL, "net must be IP/PREFIX,GATEWAY[,MAC]");
                return;
            }
        } else if (strncmp(kv, "machine_id=", 11) == 0) {
            if (!ident_machine_id_valid(kv + 11)) {
                send_errno(s, 0, AGENT_ERROR, EINVAL, "machine_id must be 32 hex digits");
                return;
            }
        } else if (strncmp(kv, "seed=", 5) == 0) {
            const char *h = kv + 5;
            if (agent_hex_decode(h, strlen(h), io_buf, sizeof(io_buf)) < 0) {
                send_errno(s, 0, AGENT_ERROR, EINVAL, "seed must be hex bytes");
                return;
            }
        } else {
            snprintf(msg, sizeof(msg), "unknown identity key '%.64s'", kv);
            send_errno(s, 0, AGENT_ERROR, EINVAL, msg);
            return;
        }
    }
    for (const char *kv = (const char *)p; kv < end; kv += strlen(kv) + 1) {
        if (strncmp(kv, "hostname=", 9) == 0) {
            /* /etc/hostname and /etc/hosts follow; only the kernel's name can fail it. */
            int r = ident_apply(kv + 9);
            if (r < 0) {
                send_errno(s, 0, AGENT_ERROR, -r, "set the hostname");
                return;
            }
        } else if (strncmp(kv, "machine_id=", 11) == 0) {
            /* On the root disk; a read-only one keeps what it has (logged). */
            ident_machine_id_apply(kv + 11);
        } else if (strncmp(kv, "net=", 4) == 0) {
            /* A fork child's own address and MAC in place of its parent's. */
            struct net_cfg nc;
            int r = net_cfg_parse(kv + 4, &nc);
            nc.keep_resolv = true; /* the same name servers as its parent's */
            if (r >= 0)
                r = net_apply(&nc);
            if (r < 0) {
                send_errno(s, 0, AGENT_ERROR, -r, "configure the network");
                return;
            }
        } else if (strncmp(kv, "seed=", 5) == 0) {
            /* Validated above, so it decodes. */
            const char *h = kv + 5;
            size_t n = (size_t)agent_hex_decode(h, strlen(h), io_buf, sizeof(io_buf));
            /* Mixing into the pool without crediting entropy (RNDADDENTROPY would need linux/
             * headers). A write only feeds the input pool: the CRNG that getrandom and
             * /dev/urandom read from keeps its key until its next reseed (up to a minute), so
             * forks of one image would still draw the same bytes. RNDRESEEDCRNG reseeds now
             * (Linux >= 4.17; its failure on an older kernel is harmless). */
            int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
            ssize_t w = fd >= 0 ? write(fd, io_buf, n) : -1;
            int e = errno;
            if (w == (ssize_t)n && ioctl(fd, AGENT_RNDRESEEDCRNG) < 0)
                agent_log("reseed the CRNG: %s", strerror(errno));
            if (fd >= 0)
                close(fd);
            if (w != (ssize_t)n) {
                send_errno(s, 0, AGENT_ERROR, w < 0 ? e : EIO, "write the seed to /dev/urandom");
                return;
            }
        }
    }
    send_frame(s, 0, AGENT_OK, NULL, 0, NULL, 0);
}

/* Check the EXEC payload layout: cwd, argv, env, then the user (F_USER) and the terminal size
 * (F_TTY), nothing else. On success req's strings point into p (valid during the call) and
 * req->argv is malloc'd (env shares its block). */
static int
parse_exec(const uint8_t *p, uint32_t len, uint16_t flags, struct exec_req *req)
{
    if (len < 8)
        return -EINVAL;
    uint32_t argc = agent_get_u32(p), envc = agent_get_u32(p + 4);
    /* Each string takes at least its NUL byte: bounds the counts by len. */
    if (argc < 1 || argc > len || envc > len || argc + envc > len - 8)
        return -EINVAL;
    char **v = calloc((size_t)argc + envc + 2, sizeof(char *));
    if (!v)
        return -ENOMEM;
    const char *q = (const char *)p + 8, *end = (const char *)p + len;
    uint32_t nstr = 1 + argc + envc + ((flags & AGENT_EXEC_F_USER) ? 1 : 0);
    *req = (struct exec_req){ 0 };
    for (uint32_t i = 0; i < nstr; i++) {
        const char *nul = memchr(q, '\0', (size_t)(end - q));
        if (!nul) {
            free(v);
            return -EINVAL;
        }
        if (i == 0)
            req->cwd = q;
        else if (i <= argc)
            v[i - 1] = (char *)q;
        else if (i <= argc + envc)
            v[i] = (char *)q; /* env starts after argv's NULL: v[argc + 1 + j] */
        else
            req->user = q;
        q = nul + 1;
    }
    if (flags & AGENT_EXEC_F_TTY) {
        if (end - q < 4) {
            free(v);
            return -EINVAL;
        }
        req->tty = true;
        req->rows = agent_get_u16((const uint8_t *)q);
        req->cols = agent_get_u16((const uint8_t *)q + 2);
        q += 4;
    }
    if (q != end) {
        free(v);
        return -EINVAL;
    }
    req->argv = v;
    req->env = v + argc + 1;
    req->stdin_open = flags & AGENT_EXEC_F_STDIN;
    req->builtin = flags & AGENT_EXEC_F_BUILTIN;
    return 0;
}

static void
handle_exec(struct srv *s, uint32_t id, uint16_t flags, const uint8_t *p, uint32_t len)
{
    char msg[256];
    struct exec_req req;

    if (exec_find(s, id)) {
        send_errno(s, id, AGENT_EXEC_ERROR, EEXIST, "exec id already in use");
        return;
    }
    if (s->n_execs >= MAX_EXECS) {
        send_errno(s, id, AGENT_EXEC_ERROR, EAGAIN, "too many running commands");
        return;
    }
    int r = parse_exec(p, len, flags, &req);
    if (r < 0) {
        send_errno(s, id, AGENT_EXEC_ERROR, -r, "malformed EXEC payload");
        return;
    }
    struct exec *x = calloc(1, sizeof(*x));
    if (!x) {
        free((void *)req.argv);
        send_errno(s, id, AGENT_EXEC_ERROR, ENOMEM, "allocate exec");
        return;
    }
    r = exec_spawn(x, &req, msg, sizeof(msg));
    free((void *)req.argv);
    if (r < 0) {
        free(x);
        send_errno(s, id, AGENT_EXEC_ERROR, -r, msg);
        return;
    }
    x->id = id;
    x->acks = flags & AGENT_EXEC_F_ACKS;
    x->next = s->execs;
    s->execs = x;
    s->n_execs++;
    uint8_t pid[4];
    agent_put_u32(pid, (uint32_t)x->pid);
    send_frame(s, id, AGENT_EXEC_STARTED, pid, sizeof(pid), NULL, 0);
}

/* Queue bytes for the command's stdin (pump_stdin() writes them). */
static void
stdin_queue(struct exec *x, const uint8_t *p, size_t len)
{
    uint8_t *b = realloc(x->inbuf, x->inlen + len);
    if (!b) {
        agent_log("out of memory queueing stdin");
        return;
    }
    x->inbuf = b;
    memcpy(x->inbuf + x->inlen, p, len);
    x->inlen += len;
}

static void
handle_stdin(struct exec *x, const uint8_t *p, uint32_t len)
{
    struct termios t;

    if (x->in_fd < 0 || x->in_close) {
        x->in_ack += len; /* dropped: the window must not stay taken by it */
        return;
    }
    if (len > 0) {
        stdin_queue(x, p, len);
        return;
    }
    /* A terminal has no end: closing it would hang up the command. Type its EOF character
     * instead (the master reports the slave's settings), then drop only our duplicate fd. */
    if (x->tty && tcgetattr(x->in_fd, &t) == 0 && t.c_cc[VEOF] != _POSIX_VDISABLE)
        stdin_queue(x, &t.c_cc[VEOF], 1);
    x->in_close = true;
}

static void
handle_resize(struct exec *x, const uint8_t *p, uint32_t len)
{
    if (len != 4 || !x->tty || x->out_fd < 0)
        return;
    /* On the master this sets the slave's size and signals its foreground group (SIGWINCH). */
    struct winsize ws = { .ws_row = agent_get_u16(p), .ws_col = agent_get_u16(p + 2) };
    if (ioctl(x->out_fd, TIOCSWINSZ, &ws) < 0)
        agent_log("resize the terminal of exec %u: %s", x->id, strerror(errno));
}

static void
handle_frame(struct srv *s, const struct agent_hdr *h, const uint8_t *p)
{
    if (h->id == 0) {
        switch (h->type) {
        case AGENT_HELLO:
            /* A host sends HELLO first on every connection. A restored or forked guest never
             * saw its previous host leave (it was paused meanwhile), so that host's execs are
             * still here: their ids would clash with the new host's, which start at 1 again. */
            execs_forget(s);
            handle_hello(s);
            break;
        case AGENT_SET_CLOCK:
            handle_set_clock(s, p, h->len);
            break;
        case AGENT_IDENTITY:
            handle_identity(s, p, h->len);
            break;
        case AGENT_EXEC:
        case AGENT_STDIN:
        case AGENT_SIGNAL:
        case AGENT_RESIZE:
        case AGENT_OUTPUT_ACK:
        case AGENT_FORGET:
            agent_log("ignoring frame type %u on the control id", h->type);
            break;
        default:
            /* Every control request gets exactly one answer, so the host's count stays right. */
            send_errno(s, 0, AGENT_ERROR, EOPNOTSUPP, "unknown control request");
            break;
        }
        return;
    }
    if (h->type == AGENT_EXEC) {
        handle_exec(s, h->id, h->flags, p, h->len);
        return;
    }
    struct exec *x = exec_find(s, h->id);
    if (!x)
        return; /* finished or never existed: late STDIN/SIGNAL are harmless */
    if (h->type == AGENT_STDIN) {
        handle_stdin(x, p, h->len);
    } else if (h->type == AGENT_SIGNAL) {
        if (h->len == 4 && !x->reaped) {
            uint32_t sig = agent_get_u32(p);
            if (sig > 0 && sig < 65)
                kill(-x->pid, (int)sig);
        }
    } else if (h->type == AGENT_RESIZE) {
        handle_resize(x, p, h->len);
    } else if (h->type == AGENT_OUTPUT_ACK && h->len == 4) {
        uint32_t n = agent_get_u32(p);
        x->out_unacked -= n < x->out_unacked ? n : x->out_unacked;
    } else if (h->type == AGENT_FORGET) {
        x->id = 0; /* as for a host that left: output read and dropped, no EXIT */
    }
}

/* Skip input up to the first HELLO header (len 0, id 0, type HELLO, flags 0): what precedes it
 * belongs to a host that is gone. Keeps a possible partial header for the next read. */
static void
resync_on_hello(struct srv *s)
{
    uint8_t hello[AGENT_HDR_SIZE];
    size_t k;

    agent_hdr_encode(hello, 0, 0, AGENT_HELLO, 0);
    for (k = 0; k + AGENT_HDR_SIZE <= s->inlen; k++)
        if (memcmp(s->in + k, hello, AGENT_HDR_SIZE) == 0) {
            s->await_hello = false;
            break;
        }
    if (s->await_hello)
        k = s->inlen > AGENT_HDR_SIZE - 1 ? s->inlen - (AGENT_HDR_SIZE - 1) : 0;
    memmove(s->in, s->in + k, s->inlen - k);
    s->inlen -= k;
}

/* Split the input buffer into frames; keeps a partial frame for the next read. */
static void
parse_input(struct srv *s)
{
    size_t off = 0;
    while (s->inlen - off >= AGENT_HDR_SIZE) {
        struct agent_hdr h;
        agent_hdr_decode(s->in + off, &h);
        if (h.len > AGENT_MAX_PAYLOAD) {
            protocol_error(s, "frame larger than AGENT_MAX_PAYLOAD");
            return;
        }
        if (s->inlen - off < AGENT_HDR_SIZE + h.len)
            break;
        handle_frame(s, &h, s->in + off + AGENT_HDR_SIZE);
        if (s->port_fd < 0 || s->inlen == 0)
            return; /* the frame's reply failed and the host is gone */
        off += AGENT_HDR_SIZE + h.len;
    }
    memmove(s->in, s->in + off, s->inlen - off);
    s->inlen -= off;
}

static void
port_read(struct srv *s)
{
    ssize_t n = read(s->port_fd, s->in + s->inlen, sizeof(s->in) - s->inlen);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            host_gone(s, strerror(errno));
        return;
    }
    if (n == 0) {
        host_gone(s, "end of stream");
        return;
    }
    s->inlen += (size_t)n;
    if (s->await_hello)
        resync_on_hello(s);
    if (!s->await_hello)
        parse_input(s);
}

static void
port_flush(struct srv *s)
{
    struct outq *q = &s->out;
    while (s->port_fd >= 0 && s->connected && outq_pending(q) > 0) {
        ssize_t n = write(s->port_fd, q->data + q->off, outq_pending(q));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                host_gone(s, strerror(errno));
            return;
        }
        q->off += (size_t)n;
    }
    if (outq_pending(q) == 0)
        q->off = q->len = 0;
}

static void
pump_output(struct srv *s, struct exec *x, int *fd, uint16_t type)
{
    ssize_t n = read(*fd, io_buf, sizeof(io_buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0 && x->tty) {
        /* Closing the master now would hang up the terminal and SIGHUP a command that is still
         * exiting: keep it until the reap (finish_execs()). */
        x->tty_hup = true;
        return;
    }
    if (n <= 0) {
        close(*fd);
        *fd = -1;
        return;
    }
    if (x->id) {
        send_frame(s, x->id, type, io_buf, (size_t)n, NULL, 0);
        x->out_unacked += (uint32_t)n;
    }
}

/* Tell the host how much stdin went to its commands: it keeps a window per exec. */
static void
send_stdin_acks(struct srv *s)
{
    for (struct exec *x = s->execs; x; x = x->next) {
        if (x->in_ack && x->id) {
            uint8_t n[4];
            agent_put_u32(n, x->in_ack);
            send_frame(s, x->id, AGENT_STDIN_ACK, n, sizeof(n), NULL, 0);
        }
        x->in_ack = 0;
    }
}

static void
pump_stdin(struct exec *x)
{
    while (x->inlen > 0) {
        ssize_t n = write(x->in_fd, x->inbuf, x->inlen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            /* The command closed its stdin: what it did not read is lost, as with a pipe. */
            x->in_ack += (uint32_t)x->inlen;
            x->inlen = 0;
            x->in_close = true;
            break;
        }
        memmove(x->inbuf, x->inbuf + n, x->inlen - (size_t)n);
        x->inlen -= (size_t)n;
        x->in_ack += (uint32_t)n;
    }
    if (x->in_close) {
        close(x->in_fd);
        x->in_fd = -1;
        free(x->inbuf);
        x->inbuf = NULL;
    }
}

static void
reap(struct srv *s)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            if (pid < 0 && errno == EINTR)
                continue;
            return;
        }
        if (pid == s->cfg->cmd_pid && s->cfg->workload)
            workload_finish(exec_status_code(status));
        if (pid == s->cfg->cmd_pid)
            agent_log("command exited with %d", exec_status_code(status));
        for (struct exec *x = s->execs; x; x = x->next)
            if (x->pid == pid && !x->reaped) {
                x->reaped = true;
                x->code = exec_status_code(status);
            }
    }
}

/* A reaped tty command: what it wrote is readable now (a non-blocking read of the master
 * flushes the terminal's pending input first). Background processes that still hold the
 * terminal would keep it open forever, so the rest is theirs and not waited for. */
static void
drain_tty(struct srv *s, struct exec *x)
{
    for (int i = 0; i < TTY_DRAIN_READS && x->out_fd >= 0; i++) {
        ssize_t n = read(x->out_fd, io_buf, sizeof(io_buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (x->id)
            send_frame(s, x->id, AGENT_STDOUT, io_buf, (size_t)n, NULL, 0);
    }
    if (x->in_fd >= 0)
        close(x->in_fd);
    close(x->out_fd);
    x->in_fd = x->out_fd = -1;
}

/* EXIT goes out once both pipes hit EOF (a terminal: once drained) and the process was
 * reaped. */
static void
finish_execs(struct srv *s)
{
    for (struct exec **pp = &s->execs; *pp;) {
        struct exec *x = *pp;
        if (x->tty && x->reaped && x->out_fd >= 0)
            drain_tty(s, x);
        if (!x->reaped || x->out_fd >= 0 || x->err_fd >= 0) {
            pp = &x->next;
            continue;
        }
        if (x->id) {
            uint8_t code[4];
            agent_put_u32(code, (uint32_t)x->code);
            send_frame(s, x->id, AGENT_EXIT, code, sizeof(code), NULL, 0);
        }
        *pp = x->next;
        exec_release(x);
        free(x);
        s->n_execs--;
    }
}

static void
handle_signals(struct srv *s)
{
    struct signalfd_siginfo si;
    bool chld = false, io = false;
    while (read(s->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD)
            chld = true;
        else if (si.ssi_signo == SIGIO)
            io = true;
    }
    if (chld)
        reap(s);
    if (io && s->port_fd >= 0 && s->cfg->kind == PORT_VIRTIO)
        virtio_check_connected(s);
}

static void
say_ready(void)
{
    uint64_t ms = agent_uptime_ms();
    agent_log("ready %llu.%03llu", (unsigned long long)(ms / 1000),
              (unsigned long long)(ms % 1000));
}

static void
discover_port(struct srv *s)
{
    char *path;
    if (s->uevent_fd >= 0)
        uevent_drain(s->uevent_fd);
    path = port_find(s->cfg->port_name);
    if (!path)
        return;
    s->port_fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (s->port_fd < 0) {
        agent_log("open '%s': %s", path, strerror(errno));
        free(path);
        return;
    }
    free(path);
    if (s->uevent_fd >= 0)
        close(s->uevent_fd);
    s->uevent_fd = -1;
    port_setup(s);
    say_ready();
}

static bool
stdin_backlog(const struct srv *s)
{
    for (const struct exec *x = s->execs; x; x = x->next)
        if (x->inlen >= STDIN_HIGH)
            return true;
    return false;
}

enum slot_kind {
    SLOT_SIG,
    SLOT_PORT,
    SLOT_UEVENT,
    SLOT_OUT,
    SLOT_ERR,
    SLOT_IN,
};

struct slot {
    enum slot_kind kind;
    struct exec *x;
};

static int
loop(struct srv *s)
{
    struct pollfd *pfd = NULL;
    struct slot *slot = NULL;
    size_t cap = 0;

    while (!s->done) {
        size_t need = 3 + 3 * (size_t)s->n_execs, n = 0;
        if (need > cap) {
            struct pollfd *np = realloc(pfd, need * sizeof(*pfd));
            if (np)
                pfd = np;
            struct slot *ns = realloc(slot, need * sizeof(*slot));
            if (ns)
                slot = ns;
            if (!np || !ns) {
                agent_log("out of memory");
                free(pfd);
                free(slot);
                return -ENOMEM;
            }
            cap = need;
        }
        bool out_full = outq_pending(&s->out) >= OUTQ_HIGH;
        pfd[n] = (struct pollfd){ .fd = s->sig_fd, .events = POLLIN };
        slot[n++] = (struct slot){ SLOT_SIG, NULL };
        if (s->port_fd >= 0 && s->connected) {
            short ev = 0;
            if (!out_full && !stdin_backlog(s))
                ev |= POLLIN;
            if (outq_pending(&s->out) > 0)
                ev |= POLLOUT;
            pfd[n] = (struct pollfd){ .fd = s->port_fd, .events = ev };
            slot[n++] = (struct slot){ SLOT_PORT, NULL };
        }
        if (s->uevent_fd >= 0) {
            pfd[n] = (struct pollfd){ .fd = s->uevent_fd, .events = POLLIN };
            slot[n++] = (struct slot){ SLOT_UEVENT, NULL };
        }
        for (struct exec *x = s->execs; x; x = x->next) {
            /* Output of an orphaned exec is discarded, so it never waits for the queue; a
             * followed one waits for its host to take what it has. */
            bool may_read =
                !x->id || (!out_full && (!x->acks || x->out_unacked < AGENT_OUTPUT_WINDOW));
            if (x->out_fd >= 0 && may_read && !x->tty_hup) {
                pfd[n] = (struct pollfd){ .fd = x->out_fd, .events = POLLIN };
                slot[n++] = (struct slot){ SLOT_OUT, x };
            }
            if (x->err_fd >= 0 && may_read) {
                pfd[n] = (struct pollfd){ .fd = x->err_fd, .events = POLLIN };
                slot[n++] = (struct slot){ SLOT_ERR, x };
            }
            if (x->in_fd >= 0 && x->inlen > 0) {
                pfd[n] = (struct pollfd){ .fd = x->in_fd, .events = POLLOUT };
                slot[n++] = (struct slot){ SLOT_IN, x };
            }
        }
        int timeout = -1;
        if (s->uevent_fd >= 0 && !s->wait_logged) {
            uint64_t waited = agent_uptime_ms() - s->wait_start;
            timeout = waited >= PORT_WAIT_LOG ? 0 : (int)(PORT_WAIT_LOG - waited);
        }
        int r = poll(pfd, n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            agent_log("poll: %s", strerror(errno));
            free(pfd);
            free(slot);
            return -errno;
        }
        if (r == 0 && s->uevent_fd >= 0 && !s->wait_logged) {
            agent_log("port '%s' not found after %d ms, still waiting", s->cfg->port_name,
                      PORT_WAIT_LOG);
            s->wait_logged = true;
        }
        for (size_t i = 0; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            struct exec *x = slot[i].x;
            switch (slot[i].kind) {
            case SLOT_SIG:
                handle_signals(s);
                break;
            case SLOT_PORT:
                /* The port may have been closed or dropped by an earlier slot's handling. */
                if (s->port_fd != pfd[i].fd || !s->connected)
                    break;
                /* A departed virtio host also shows POLLIN: its SIGIO may still be unread. */
                if (s->cfg->kind == PORT_VIRTIO && (pfd[i].revents & POLLHUP)) {
                    virtio_check_connected(s);
                    break;
                }
                if (pfd[i].revents & POLLIN)
                    port_read(s);
                else if (pfd[i].revents & (POLLHUP | POLLERR))
                    host_gone(s, "hangup");
                if ((pfd[i].revents & POLLOUT) && s->port_fd == pfd[i].fd)
                    port_flush(s);
                break;
            case SLOT_UEVENT:
                discover_port(s);
                break;
            case SLOT_OUT:
                if (x->out_fd >= 0)
                    pump_output(s, x, &x->out_fd, AGENT_STDOUT);
                break;
            case SLOT_ERR:
                if (x->err_fd >= 0)
                    pump_output(s, x, &x->err_fd, AGENT_STDERR);
                break;
            case SLOT_IN:
                if (x->in_fd >= 0)
                    pump_stdin(x);
                break;
            }
        }
        /* Stdin frames just queued and closes requested need no poll round to start. */
        for (struct exec *x = s->execs; x; x = x->next)
            if (x->in_fd >= 0 && (x->inlen > 0 || x->in_close))
                pump_stdin(x);
        send_stdin_acks(s);
        finish_execs(s);
        port_flush(s);
    }
    free(pfd);
    free(slot);
    return 0;
}

int
serve_run(const struct serve_cfg *cfg)
{
    struct srv *s = calloc(1, sizeof(*s));
    sigset_t mask;
    int r;

    if (!s)
        return -ENOMEM;
    s->cfg = cfg;
    s->port_fd = cfg->fd;
    s->uevent_fd = -1;

    /* SIGCHLD (reaping) and SIGIO (host connect/disconnect) arrive through the loop. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGIO);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    s->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->sig_fd < 0) {
        r = -errno;
        agent_log("signalfd: %s", strerror(errno));
        free(s);
        return r;
    }
    /* Children that ended before the signal was blocked would otherwise wait for the next. */
    reap(s);

    if (s->port_fd >= 0) {
        port_setup(s);
        say_ready();
    } else {
        s->uevent_fd = uevent_open();
        if (s->uevent_fd < 0)
            agent_log("open uevent socket: %s", strerror(-s->uevent_fd));
        s->wait_start = agent_uptime_ms();
        discover_port(s);
        if (s->port_fd < 0 && s->uevent_fd < 0) {
            agent_log("port '%s' not found and no uevents to wait for", cfg->port_name);
            close(s->sig_fd);
            free(s);
            return -ENODEV;
        }
    }
    r = loop(s);
    for (struct exec *x = s->execs, *next; x; x = next) {
        next = x->next;
        exec_release(x);
        free(x);
    }
    outq_reset(&s->out);
    if (s->port_fd >= 0)
        close(s->port_fd);
    if (s->uevent_fd >= 0)
        close(s->uevent_fd);
    close(s->sig_fd);
    free(s);
    return r;
}
