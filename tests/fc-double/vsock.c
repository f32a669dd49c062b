/* fc-double: vsock over a Unix socket: "CONNECT <port>\n" → "OK <host port>\n", then a byte pipe
 * to a guest agent process (torpor-agent --serve-fd) that stands in for the guest listener. */
#include "vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define VSOCK_BUF       65536
#define VSOCK_PAGE_BASE 16 /* guest pages 16..31 receive bridged bytes */
#define VSOCK_PAGES     16

struct pipe_buf {
    char data[VSOCK_BUF];
    size_t len, off;
};

struct vsock_conn {
    int host_fd;  /* accepted on uds_path */
    int guest_fd; /* our end of the agent's socketpair, -1 until CONNECT succeeded */
    pid_t agent;
    bool reset; /* close at the next resume */
    unsigned slot;
    struct pipe_buf to_guest, to_host;
    struct vsock_conn *next;
};

int
vsock_open(struct vsock_dev *d, const char *uds_path, uint32_t guest_cid, struct fcd_err *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(uds_path) >= sizeof(sa.sun_path))
        return fcd_fail(err, -ENAMETOOLONG,
                        "Cannot create backend for vsock device: path '%s' "
                        "is too long",
                        uds_path);
    strcpy(sa.sun_path, uds_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fcd_fail(err, -errno, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
        int r = -errno;
        close(fd);
        return fcd_fail(err, r,
                        "Cannot create backend for vsock device: Error binding to the "
                        "host-side Unix socket '%s': %s",
                        uds_path, strerror(-r));
    }
    d->listen_fd = fd;
    d->uds_path = strdup(uds_path);
    d->guest_cid = guest_cid;
    d->next_host_port = 1u << 30;
    return 0;
}

static void
conn_free(struct vsock_conn *c)
{
    close(c->host_fd);
    if (c->guest_fd >= 0)
        close(c->guest_fd);
    free(c);
}

static void
conn_remove(struct vsock_dev *d, struct vsock_conn *c)
{
    for (struct vsock_conn **pp = &d->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    conn_free(c);
}

void
vsock_close(struct vsock_dev *d)
{
    while (d->conns)
        conn_remove(d, d->conns);
    if (d->listen_fd >= 0)
        close(d->listen_fd);
    d->listen_fd = -1;
    free(d->uds_path);
    d->uds_path = NULL;
}

void
vsock_mark_reset(struct vsock_dev *d)
{
    for (struct vsock_conn *c = d->conns; c; c = c->next)
        c->reset = true;
}

void
vsock_apply_reset(struct vsock_dev *d)
{
    struct vsock_conn *c = d->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->reset)
            conn_remove(d, c);
    }
}

/* The guest's listener on the agent port: a torpor-agent serving one stream on fd 3. */
static int
agent_spawn(struct vsock_dev *d, struct vsock_conn *c)
{
    int sv[2];
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return -errno;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* The agent's log lines are the guest's console output. */
        if (dup2(sv[1], 3) < 0 || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(127);
        execl(d->agent_path, d->agent_path, "--serve-fd", "3", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    c->guest_fd = sv[0];
    c->agent = pid;
    return 0;
}

/* First readiness of a new connection: the whole CONNECT line must be there (as Firecracker
 * reads it from a non-blocking socket). false = drop the connection. */
static bool
conn_handshake(struct vsock_dev *d, struct vsock_conn *c)
{
    char line[64], *end, reply[32];
    unsigned long port;
    ssize_t n = recv(c->host_fd, line, 32, MSG_PEEK);
    size_t ll;

    if (n <= 0)
        return false;
    line[n] = '\0';
    end = memchr(line, '\n', (size_t)n);
    if (!end)
        return false;
    ll = (size_t)(end - line) + 1;
    if (recv(c->host_fd, line, ll, 0) != (ssize_t)ll)
        return false;
    *end = '\0';
    if (strncasecmp(line, "CONNECT ", 8) != 0)
        return false;
    errno = 0;
    port = strtoul(line + 8, &end, 10);
    if (errno || end == line + 8 || *end || port > UINT32_MAX)
        return false;
    /* Only the agent listens in the fake guest: any other port is answered with a reset. */
    if (!d->agent_path || port != d->agent_port)
        return false;
    if (agent_spawn(d, c) < 0)
        return false;
    n = snprintf(reply, sizeof(reply), "OK %u\n", d->next_host_port++);
    return send(c->host_fd, reply, (size_t)n, MSG_NOSIGNAL) == n;
}

int
vsock_poll_fill(struct vsock_dev *d, bool running, struct pollfd *pfds, int max)
{
    int n = 0;
    if (d->listen_fd < 0 || max < 1)
        return 0;
    pfds[n++] = (struct pollfd){ .fd = d->listen_fd, .events = POLLIN };
    /* A paused or not yet started guest answers nothing: its connections wait. */
    for (struct vsock_conn *c = d->conns; c && running && n + 2 <= max; c = c->next) {
        if (c->guest_fd < 0) {
            pfds[n++] = (struct pollfd){ .fd = c->host_fd, .events = POLLIN };
            continue;
        }
        pfds[n++] = (struct pollfd){ .fd = c->host_fd,
                                     .events = (short)((c->to_guest.len ? 0 : POLLIN) |
                                                       (c->to_host.len ? POLLOUT : 0)) };
        pfds[n++] = (struct pollfd){ .fd = c->guest_fd,
                                     .events = (short)((c->to_host.len ? 0 : POLLIN) |
                                                       (c->to_guest.len ? POLLOUT : 0)) };
    }
    return n;
}

static const struct pollfd *
find_pfd(const struct pollfd *pfds, int n, int fd)
{
    for (int i = 0; i < n; i++)
        if (pfds[i].fd == fd)
            return &pfds[i];
    return NULL;
}

/* Move bytes one way; the guest writes what passes through into its memory. false = closed. */
static bool
pump(int from, int to, struct pipe_buf *b, short rev_from, short rev_to, struct mem *mem,
     unsigned slot)
{
    if (!b->len && (rev_from & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(from, b->data, sizeof(b->data));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return false;
        if (n > 0) {
            b->len = (size_t)n;
            b->off = 0;
            mem_write(mem, (size_t)(VSOCK_PAGE_BASE + slot % VSOCK_PAGES) * MEM_PAGE, b->data,
                      (size_t)n < MEM_PAGE ? (size_t)n : MEM_PAGE);
            rev_to |= POLLOUT; /* try at once */
        }
    }
    if (b->len && (rev_to & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = send(to, b->data + b->off, b->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        if (n > 0) {
            b->off += (size_t)n;
            b->len -= (size_t)n;
        }
    }
    return true;
}

void
vsock_poll_handle(struct vsock_dev *d, bool running, const struct pollfd *pfds, int n,
                  struct mem *mem)
{
    const struct pollfd *lp = find_pfd(pfds, n, d->listen_fd);
    static unsigned slots;

    if (lp && (lp->revents & POLLIN)) {
        int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            struct vsock_conn *c = calloc(1, sizeof(*c));
            if (!c)
                abort();
            c->host_fd = fd;
            c->guest_fd = -1;
            c->slot = slots++;
            c->next = d->conns;
            d->conns = c;
        }
    }
    if (!running)
        return;
    struct vsock_conn *c = d->conns, *next;
    for (; c; c = next) {
        const struct pollfd *hp = find_pfd(pfds, n, c->host_fd);
        const struct pollfd *gp = c->guest_fd >= 0 ? find_pfd(pfds, n, c->guest_fd) : NULL;
        bool keep = true;
        next = c->next;
        if (!hp)
            continue;
        if (c->guest_fd < 0) {
            if (hp->revents)
                keep = conn_handshake(d, c);
        } else if (gp) {
            keep =
                pump(c->host_fd, c->guest_fd, &c->to_guest, hp->revents, gp->revents, mem,
                     c->slot) &&
                pump(c->guest_fd, c->host_fd, &c->to_host, gp->revents, hp->revents, mem, c->slot);
        }
        if (!keep)
            conn_remove(d, c);
    }
}
