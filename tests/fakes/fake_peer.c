/* Transcript player for driver tests: a thread on one end of a socketpair (see fake_peer.h). */
#include "fake_peer.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

#define PEER_READ_MS  5000
#define PEER_DONE_MS  5000
#define PEER_MAX_LINE (1u << 20)

struct fake_peer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fd;        /* the peer's end; closed only by fake_peer_stop() */
    int client_fd; /* handed out by fake_peer_fd() */
    char *script;
    json_t *last_id;
    char *buf; /* bytes from the client not yet consumed */
    size_t len, cap;
    int fds_pending; /* SCM_RIGHTS fds received and not yet matched by a <fd line */
    bool finished, ok;
    char error[512];
};

static void peer_fail(struct fake_peer *p, const char *fmt, ...) _printf_(2, 3);

static void
peer_fail(struct fake_peer *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
}

static int
peer_send(struct fake_peer *p, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(p->fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read more client bytes: 1 read, 0 EOF, -ETIMEDOUT, -errno. */
static int
peer_fill(struct fake_peer *p)
{
    struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
    char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    int r;

    do
        r = poll(&pfd, 1, PEER_READ_MS);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    if (p->cap - p->len < 4096) {
        p->cap = p->cap ? p->cap * 2 : 8192;
        p->buf = xrealloc(p->buf, p->cap);
    }
    struct iovec iov = { .iov_base = p->buf + p->len, .iov_len = p->cap - p->len };
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = cbuf,
        .msg_controllen = sizeof(cbuf),
    };
    ssize_t n = recvmsg(p->fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfds; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            close(fd);
            p->fds_pending++;
        }
    }
    if (n == 0)
        return 0;
    p->len += (size_t)n;
    return 1;
}

/* One client line (without newline), malloc'd; NULL with p->error set on EOF or timeout. */
static char *
peer_read_line(struct fake_peer *p)
{
    for (;;) {
        char *nl = p->len ? memchr(p->buf, '\n', p->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - p->buf);
            char *line = xstrndup(p->buf, n);
            memmove(p->buf, nl + 1, p->len - n - 1);
            p->len -= n + 1;
            return line;
        }
        if (p->len > PEER_MAX_LINE) {
            peer_fail(p, "client line longer than %u bytes", PEER_MAX_LINE);
            return NULL;
        }
        int r = peer_fill(p);
        if (r <= 0) {
            peer_fail(p, "reading the client: %s", r == 0 ? "EOF" : strerror(-r));
            return NULL;
        }
    }
}

static bool
peer_expect(struct fake_peer *p, const char *expected_text, bool want_fd)
{
    _cleanup_free_ char *line = peer_read_line(p);
    json_error_t jerr;
    bool same;

    if (!line)
        return false;
    json_t *got = json_loads(line, 0, &jerr);
    json_t *want = json_loads(expected_text, 0, &jerr);
    if (!got || !want) {
        peer_fail(p, "%s is not JSON: '%s'", got ? "expected line" : "client line",
                  got ? expected_text : line);
        json_decref(got);
        json_decref(want);
        return false;
    }
    json_decref(p->last_id);
    p->last_id = json_incref(json_object_get(got, "id"));
    json_object_del(got, "id");
    json_object_del(want, "id");
    same = json_equal(got, want);
    json_decref(got);
    json_decref(want);
    if (!same) {
        peer_fail(p, "expected %s, got %s", expected_text, line);
        return false;
    }
    if (want_fd) {
        if (p->fds_pending == 0) {
            peer_fail(p, "expected an fd with %s", expected_text);
            return false;
        }
        p->fds_pending--;
    }
    return true;
}

static char *
substitute_id(struct fake_peer *p, const char *text)
{
    const char *at = strstr(text, "\"$ID\"");
    if (!at)
        return xstrdup(text);
    _cleanup_free_ char *id = p->last_id ? json_dumps(p->last_id, JSON_ENCODE_ANY) : NULL;
    return xasprintf("%.*s%s%s", (int)(at - text), text, id ? id : "null", at + 5);
}

static bool
peer_send_line(struct fake_peer *p, const char *text)
{
    _cleanup_free_ char *line = substitute_id(p, text);
    _cleanup_free_ char *out = xasprintf("%s\n", line);
    int r = peer_send(p, out, strlen(out));
    if (r < 0)
        peer_fail(p, "send '%s': %s", line, strerror(-r));
    return r == 0;
}

static bool
peer_send_big(struct fake_peer *p, size_t n)
{
    const char *head = "{\"return\": \"", *tail = "\"}\n";
    size_t fill = n > strlen(head) + strlen(tail) ? n - strlen(head) - strlen(tail) : 0;
    _cleanup_free_ char *big = xmalloc(strlen(head) + fill + strlen(tail) + 1);

    strcpy(big, head);
    memset(big + strlen(head), 'a', fill);
    strcpy(big + strlen(head) + fill, tail);
    /* The client is expected to give up part-way and hang up. */
    int r = peer_send(p, big, strlen(big));
    return r == 0 || r == -EPIPE || r == -ECONNRESET;
}

static bool
peer_wait_eof(struct fake_peer *p)
{
    for (;;) {
        int r = peer_fill(p);
        if (r == 0)
            return true;
        if (r < 0) {
            peer_fail(p, "waiting for the client to hang up: %s", strerror(-r));
            return false;
        }
        p->len = 0; /* whatever the client sends now is not part of the script */
    }
}

static bool
peer_step(struct fake_peer *p, const char *line, unsigned lineno)
{
    unsigned long n;
    char name[128];

    if (strncmp(line, "> ", 2) == 0)
        return peer_send_line(p, line + 2);
    if (strncmp(line, "<fd ", 4) == 0)
        return peer_expect(p, line + 4, true);
    if (strncmp(line, "< ", 2) == 0)
        return peer_expect(p, line + 2, false);
    if (strncmp(line, "raw ", 4) == 0) {
        _cleanup_free_ char *out = xasprintf("%s\n", line + 4);
        return peer_send(p, out, strlen(out)) == 0;
    }
    if (strncmp(line, "partial ", 8) == 0)
        return peer_send(p, line + 8, strlen(line + 8)) == 0;
    if (sscanf(line, "big %lu", &n) == 1)
        return peer_send_big(p, n);
    if (sscanf(line, "events %lu %127s", &n, name) == 2) {
        for (unsigned long i = 0; i < n; i++) {
            _cleanup_free_ char *ev =
                xasprintf("{\"event\": \"%s\", \"data\": {\"n\": %lu}, "
                          "\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n",
                          name, i);
            if (peer_send(p, ev, strlen(ev)) < 0)
                return false;
        }
        return true;
    }
    if (strcmp(line, "close") == 0)
        return shutdown(p->fd, SHUT_RDWR) == 0;
    if (strcmp(line, "wait-eof") == 0)
        return peer_wait_eof(p);
    peer_fail(p, "transcript line %u: unknown directive '%s'", lineno, line);
    return false;
}

static void *
peer_main(void *arg)
{
    struct fake_peer *p = arg;
    bool ok = true;
    unsigned lineno = 0;

    for (char *save = NULL, *line = strtok_r(p->script, "\n", &save); line && ok;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (line[0] == '\0' || line[0] == '#')
            continue;
        ok = peer_step(p, line, lineno);
    }
    pthread_mutex_lock(&p->lock);
    p->ok = ok;
    p->finished = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int
fake_peer_start(struct fake_peer **ret_peer, const char *transcript)
{
    _cleanup_free_ char *path = NULL;
    const char *data = getenv("TORPOR_TEST_DATA");
    struct fake_peer *p;
    int sv[2], r;

    if (transcript[0] == '/' || !data)
        path = xstrdup(transcript);
    else
        path = fs_path_join(data, transcript);

    p = xnew(struct fake_peer, 1);
    r = fs_read_file(path, 1u << 20, &p->script, NULL, NULL);
    if (r < 0) {
        free(p);
        return r;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        r = -errno;
        free(p->script);
        free(p);
        return r;
    }
    p->fd = sv[0];
    p->client_fd = sv[1];
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    r = pthread_create(&p->thread, NULL, peer_main, p);
    if (r != 0) {
        close(sv[0]);
        close(sv[1]);
        free(p->script);
        free(p);
        return -r;
    }
    *ret_peer = p;
    return 0;
}

int
fake_peer_fd(struct fake_peer *p)
{
    return TAKE_FD(p->client_fd);
}

bool
fake_peer_done(struct fake_peer *p)
{
    struct timespec until;
    bool done;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PEER_DONE_MS / 1000;
    pthread_mutex_lock(&p->lock);
    while (!p->finished)
        if (pthread_cond_timedwait(&p->cond, &p->lock, &until) == ETIMEDOUT)
            break;
    done = p->finished && p->ok;
    if (!p->finished)
        peer_fail(p, "transcript still running after %d ms", PEER_DONE_MS);
    pthread_mutex_unlock(&p->lock);
    if (!done)
        fprintf(stderr, "fake peer: %s\n", p->error);
    return done;
}

const char *
fake_peer_error(struct fake_peer *p)
{
    return p->error;
}

void
fake_peer_stop(struct fake_peer *p)
{
    if (!p)
        return;
    /* Wakes a thread blocked in poll/read/send on its end. */
    shutdown(p->fd, SHUT_RDWR);
    pthread_join(p->thread, NULL);
    close(p->fd);
    safe_close(p->client_fd);
    json_decref(p->last_id);
    free(p->buf);
    free(p->script);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
