/* The attached exec session of the CLI: one poll loop over the daemon socket (non-blocking,
 * so the guest's output is always read even while stdin waits to be sent), stdin and a
 * signalfd. Writes to stdout and stderr block: a slow reader of ours slows the command. */
#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "client.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/sock.h"
#include "util/xalloc.h"

#define HEAD_MAX     (16u * 1024u)
#define IO_CHUNK     (64u * 1024u)
#define OUT_HIGH     (256u * 1024u) /* stop reading stdin while this much waits for the socket */
#define FRAME_STDIN  1
#define FRAME_RESIZE 5
#define FRAME_SIGNAL 6

int
attach_parse_head(const char *buf, size_t len, int *status, long long *content_length,
                  size_t *head_len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);

    if (len >= 5 && memcmp(buf, "HTTP/", 5) != 0)
        return -EPROTO;
    if (!end)
        return len >= HEAD_MAX ? -EPROTO : -EAGAIN;
    /* "HTTP/1.1 101 Switching Protocols" */
    if (end - buf < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -EPROTO;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -EPROTO;
        st = st * 10 + (buf[i] - '0');
    }
    *status = st;
    *content_length = -1;
    for (const char *line = memchr(buf, '\n', (size_t)(end - buf)); line && line < end;
         line = memchr(line, '\n', (size_t)(end + 2 - line))) {
        line++;
        static const char cl[] = "content-length:";
        if ((size_t)(end - line) > sizeof(cl) - 1 && strncasecmp(line, cl, sizeof(cl) - 1) == 0) {
            long long n = 0;
            const char *p = line + sizeof(cl) - 1;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p < '0' || *p > '9')
                return -EPROTO;
            for (; *p >= '0' && *p <= '9'; p++) {
                if (n > (1LL << 40))
                    return -EPROTO;
                n = n * 10 + (*p - '0');
            }
            *content_length = n;
        }
    }
    *head_len = (size_t)(end - buf) + 4;
    return 0;
}

struct session {
    int sock;
    int sigfd;
    const struct attach_opts *o;
    struct exec_decoder *dec;
    uint8_t *out; /* stdin frames waiting for the socket */
    size_t out_len;
    size_t out_frame_left; /* bytes of out's first frame still to send; 0 between frames */
    uint8_t *ctl;          /* signal and resize frames: they go first, between stdin frames */
    size_t ctl_len;
    int interrupted; /* a signal ended the handshake */
    const char *socket_path;
    char session_id[33]; /* torpord's X-Torpor-Session: signals and resizes go beside the
                            stream, where no unread stdin holds them up; "" = in the stream */
    bool stdin_eof;
    bool stdout_closed; /* our stdout is gone: the command got SIGPIPE, its output is dropped */
};

static void
queue_frame(struct session *s, int kind, const void *data, size_t len)
{
    /* A signal must not wait behind stdin the command is not reading (Ctrl-C to `cat`). */
    bool ctl = kind != FRAME_STDIN;
    uint8_t **buf = ctl ? &s->ctl : &s->out;
    size_t *blen = ctl ? &s->ctl_len : &s->out_len;

    *buf = xrealloc(*buf, *blen + 8 + len);
    uint8_t *h = *buf + *blen;
    h[0] = (uint8_t)kind;
    h[1] = h[2] = h[3] = 0;
    h[4] = (uint8_t)(len >> 24);
    h[5] = (uint8_t)(len >> 16);
    h[6] = (uint8_t)(len >> 8);
    h[7] = (uint8_t)len;
    if (len)
        memcpy(h + 8, data, len);
    *blen += 8 + len;
}

/* Send what the socket takes: control frames first whenever no stdin frame is half sent. */
static void
flush_out(struct session *s)
{
    for (;;) {
        bool ctl = s->ctl_len && s->out_frame_left == 0;
        uint8_t *buf = ctl ? s->ctl : s->out;
        size_t *blen = ctl ? &s->ctl_len : &s->out_len;
        if (!*blen)
            return;
        size_t want = *blen;
        if (!ctl) {
            if (s->out_frame_left == 0)
                s->out_frame_left = 8 + ((size_t)buf[4] << 24 | (size_t)buf[5] << 16 |
                                         (size_t)buf[6] << 8 | buf[7]);
            want = MIN(want, s->out_frame_left);
        }
        ssize_t n = send(s->sock, buf, want, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN) {
            /* torpord left: what it sent is still read by the loop */
            s->out_len = s->ctl_len = s->out_frame_left = 0;
            return;
        }
        if (n <= 0)
            return;
        memmove(buf, buf + n, *blen - (size_t)n);
        *blen -= (size_t)n;
        if (!ctl)
            s->out_frame_left -= (size_t)n;
    }
}

static void
queue_u32(struct session *s, int kind, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    queue_frame(s, kind, b, sizeof(b));
}

static bool
term_size(uint16_t *rows, uint16_t *cols)
{
    struct winsize ws;

    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0 && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0)
        return false;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return ws.ws_row && ws.ws_col;
}

static int
on_output(int kind, const void *data, size_t len, void *userdata, struct tp_err *err)
{
    struct session *s = userdata;
    int fd = kind == EXEC_FRAME_STDOUT ? STDOUT_FILENO : STDERR_FILENO;

    if (fd == STDOUT_FILENO && s->stdout_closed)
        return 0;
    int r = fd_write_all(fd, data, len);
    if (r == -EPIPE && fd == STDOUT_FILENO) {
        /* As in a local pipeline: the writer learns its reader left. */
        s->stdout_closed = true;
        queue_u32(s, FRAME_SIGNAL, SIGPIPE);
        return 0;
    }
    if (r < 0 && fd == STDERR_FILENO)
        return 0; /* nowhere to report it either */
    if (r < 0)
        return tp_err_errno(err, r, "write the command's stdout");
    return 0;
}

/* Send a signal or resize by the side channel; false when it is not there (queue in-band). */
static bool
side_channel(struct session *s, const char *what, json_t *body)
{
    if (!s->session_id[0]) {
        json_decref(body);
        return false;
    }
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path = xasprintf("/v1/sessions/%s/%s", s->session_id, what);
    int r = client_call(s->socket_path, "POST", path, body, NULL, &err);
    json_decref(body);
    return r >= 0 || r == -ENOENT; /* ENOENT: the session just ended, nothing to do */
}

static int
on_signal(struct session *s)
{
    struct signalfd_siginfo si;
    ssize_t n = read(s->sigfd, &si, sizeof(si));

    if (n != (ssize_t)sizeof(si))
        return 0;
    if (si.ssi_signo == SIGWINCH) {
        uint16_t rows, cols;
        if (s->o->tty && term_size(&rows, &cols) &&
            !side_channel(s, "resize", json_pack("{s:i, s:i}", "rows", rows, "cols", cols)))
            queue_u32(s, FRAME_RESIZE, (uint32_t)rows << 16 | cols);
        return 0;
    }
    if (!side_channel(s, "signal", json_pack("{s:i}", "signal", (int)si.ssi_signo)))
        queue_u32(s, FRAME_SIGNAL, si.ssi_signo);
    return 0;
}

static int
session_loop(struct session *s, struct tp_err *err)
{
    _cleanup_free_ uint8_t *buf = xmalloc(IO_CHUNK);

    while (!s->dec->finished) {
        bool read_stdin = s->o->stdin_on && !s->stdin_eof && s->out_len < OUT_HIGH;
        struct pollfd p[3] = {
            { .fd = s->sock, .events = POLLIN | (s->out_len || s->ctl_len ? POLLOUT : 0) },
            { .fd = s->sigfd, .events = POLLIN },
            { .fd = read_stdin ? STDIN_FILENO : -1, .events = POLLIN },
        };
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            return tp_err_errno(err, -errno, "poll");
        }
        if (p[1].revents & POLLIN)
            on_signal(s);
        if (p[2].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(STDIN_FILENO, buf, IO_CHUNK);
            if (n < 0 && errno != EINTR && errno != EAGAIN)
                n = 0; /* an unreadable stdin ends like an empty one */
            if (n == 0) {
                s->stdin_eof = true;
                queue_frame(s, FRAME_STDIN, NULL, 0);
            } else if (n > 0) {
                queue_frame(s, FRAME_STDIN, buf, (size_t)n);
            }
        }
        if (p[0].revents & POLLOUT)
            flush_out(s);
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(s->sock, buf, IO_CHUNK, MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n <= 0)
                break; /* exec_decoder_finish() tells a cut from a complete stream */
            int r = exec_decoder_feed(s->dec, buf, (size_t)n, on_output, s, err);
            if (r < 0)
                return r;
        }
    }
    return exec_decoder_finish(s->dec, err);
}

static int
connect_daemon(const char *socket_path, struct tp_err *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(socket_path) >= sizeof(sa.sun_path))
        return client_unreachable(socket_path, "socket path is too long", -ENAMETOOLONG, err);
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tp_err_errno(err, -errno, "create socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int r = -errno;
        close(fd);
        return client_unreachable(socket_path, strerror(-r), r, err);
    }
    return fd;
}

/* Send the request and read the reply's head; 0 once switched (the bytes past the head are fed
 * to dec), else the daemon's error. */
static int
handshake(int fd, const char *socket_path, const char *path, json_t *body, struct session *s,
          struct tp_err *err)
{
    _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
    _cleanup_free_ char *req = NULL;
    _cleanup_free_ char *buf = xmalloc(HEAD_MAX + 1);
    size_t len = 0, head_len = 0;
    long long content_length = -1;
    int status = 0, r;

    if (!text)
        return tp_err_set(err, -ENOMEM, "encode request body");
    req = xasprintf("POST %s HTTP/1.1\r\nHost: torpord\r\nUser-Agent: torpor/" TORPOR_VERSION
                    "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n%s",
                    path, strlen(text), text);
    r = sock_write_all(fd, req, strlen(req));
    if (r < 0)
        return tp_err_errno(err, r, "send the exec request to torpord at '%s'", socket_path);
    for (;;) {
        /* The command may take seconds to start: a signal meanwhile ends torpor as usual. */
        struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
                               { .fd = s->sigfd, .events = POLLIN } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return tp_err_errno(err, -errno, "poll");
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
                si.ssi_signo != SIGWINCH) {
                s->interrupted = (int)si.ssi_signo;
                return tp_err_set(err, -EINTR, "interrupted");
            }
            continue;
        }
        ssize_t n = recv(fd, buf + len, HEAD_MAX - len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return tp_err_set(err, -EIO, "torpord at '%s' closed the connection before replying",
                              socket_path);
        len += (size_t)n;
        r = attach_parse_head(buf, len, &status, &content_length, &head_len);
        if (r == 0)
            break;
        if (r != -EAGAIN)
            return tp_err_set(err, -EPROTO, "torpord at '%s' sent a malformed HTTP reply",
                              socket_path);
    }
    if (status == 101) {
        _cleanup_free_ char *head = xstrndup(buf, head_len);
        const char *h = strcasestr(head, "\r\nX-Torpor-Session:");
        if (h) {
            h += strlen("\r\nX-Torpor-Session:");
            h += strspn(h, " \t");
            size_t n = strspn(h, "0123456789abcdef");
            if (n > 0 && n < sizeof(s->session_id))
                memcpy(s->session_id, h, n);
        }
        return exec_decoder_feed(s->dec, buf + head_len, len - head_len, on_output, s, err);
    }

    /* An ordinary reply: its body is the error. */
    size_t want = content_length >= 0 ? (size_t)MIN(content_length, (long long)CLIENT_REPLY_MAX)
                                      : CLIENT_REPLY_MAX;
    _cleanup_free_ char *bodybuf = xmalloc(want + 1);
    size_t have = MIN(len - head_len, want);
    memcpy(bodybuf, buf + head_len, have);
    while (have < want) {
        ssize_t n = recv(fd, bodybuf + have, want - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    json_t *j = json_loadb(bodybuf, have, 0, NULL);
    r = client_reply_error(status, j, err);
    json_decref(j);
    return r < 0 ? r : tp_err_set(err, -EPROTO, "torpord answered HTTP %d to an exec", status);
}

int
attach_exec(const char *socket_path, const char *path, json_t *body, const struct attach_opts *o,
            struct exec_decoder *dec, struct tp_err *err)
{
    struct session s = { .sock = -1, .sigfd = -1, .o = o, .dec = dec, .socket_path = socket_path };
    struct termios saved;
    bool raw = false;
    sigset_t mask, old;
    struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe;
    uint16_t rows, cols;
    int r;

    if (o->tty && term_size(&rows, &cols)) {
        json_object_set_new(body, "rows", json_integer(rows));
        json_object_set_new(body, "cols", json_integer(cols));
    }
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGQUIT);
    sigaddset(&mask, SIGWINCH);
    sigprocmask(SIG_BLOCK, &mask, &old);
    sigaction(SIGPIPE, &ign, &old_pipe);
    s.sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (s.sigfd < 0) {
        r = tp_err_errno(err, -errno, "signalfd");
        goto out;
    }
    r = connect_daemon(socket_path, err);
    if (r < 0)
        goto out;
    s.sock = r;
    r = handshake(s.sock, socket_path, path, body, &s, err);
    if (r < 0)
        goto out;
    /* Raw only once attached: an error before that prints on a sane terminal. */
    if (o->tty && o->stdin_on && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios t = saved;
        cfmakeraw(&t);
        raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    fcntl(s.sock, F_SETFL, fcntl(s.sock, F_GETFL) | O_NONBLOCK);
    r = session_loop(&s, err);
out:
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    safe_close(s.sock);
    safe_close(s.sigfd);
    free(s.out);
    free(s.ctl);
    sigaction(SIGPIPE, &old_pipe, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (s.interrupted) {
        /* Die of it as torpor would have without the session (the shell sees 130 etc.). */
        signal(s.interrupted, SIG_DFL);
        raise(s.interrupted);
    }
    return r;
}
