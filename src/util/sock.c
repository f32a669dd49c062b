/* Unix domain socket helpers shared by the QMP client, the agent client and the API. */
#include "sock.h"

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "timeutil.h"

static int
fill_addr(struct sockaddr_un *sa, const char *path, struct tp_err *err)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return tp_err_set(err, -ENAMETOOLONG,
                          "socket path '%s' is longer than %zu bytes: use a shorter data dir", path,
                          sizeof(sa->sun_path) - 1);
    strcpy(sa->sun_path, path);
    return 0;
}

/* Whether a server accepts connections on path: 1 yes, 0 no (stale socket or none), -errno.
 * Non-blocking, so a live server with a full backlog (EAGAIN) answers at once too. */
static int
probe_live(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    _cleanup_close_ int fd = -EBADF;

    strcpy(sa.sun_path, path); /* fill_addr() checked the length */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN)
        return 1;
    if (errno == ECONNREFUSED || errno == ENOENT)
        return 0;
    return -errno;
}

/* Bind and listen, replacing a socket file already at path only when replace_live or when it is
 * stale; ret_file (may be NULL) gets the identity of the file bound. */
static int
listen_unix(const char *path, int backlog, bool replace_live, struct sock_file *ret_file,
            struct tp_err *err)
{
    struct sockaddr_un sa;
    struct stat st;
    _cleanup_close_ int fd = -EBADF;
    int r = fill_addr(&sa, path, err);
    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tp_err_errno(err, -errno, "create socket");
    /* Only a socket is ours to replace: a mistyped path must not cost the user a file. */
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
        return tp_err_set(err, -EEXIST, "listen on '%s': it exists and is not a socket", path);
    if (!replace_live) {
        r = probe_live(path);
        if (r < 0)
            return tp_err_errno(err, r, "probe '%s'", path);
        if (r > 0)
            return tp_err_set(err, -EADDRINUSE,
                              "another torpord is serving '%s' (it accepts connections)", path);
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return tp_err_errno(err, -errno, "remove stale socket '%s'", path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return tp_err_errno(err, -errno, "bind '%s'", path);
    if (ret_file) {
        if (lstat(path, &st) < 0)
            return tp_err_errno(err, -errno, "stat '%s'", path);
        *ret_file = (struct sock_file){ .dev = st.st_dev, .ino = st.st_ino };
    }
    if (listen(fd, backlog) < 0)
        return tp_err_errno(err, -errno, "listen on '%s'", path);
    return TAKE_FD(fd);
}

int
sock_listen_unix(const char *path, int backlog, struct tp_err *err)
{
    return listen_unix(path, backlog, true, NULL, err);
}

int
sock_listen_unix_exclusive(const char *path, int backlog, struct sock_file *ret_file,
                           struct tp_err *err)
{
    return listen_unix(path, backlog, false, ret_file, err);
}

int
sock_unlink_own(const char *path, const struct sock_file *f)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    /* A later server replaced the file: the path is its socket now, not ours to remove. */
    if (!S_ISSOCK(st.st_mode) || st.st_dev != f->dev || st.st_ino != f->ino)
        return 0;
    if (unlink(path) < 0)
        return errno == ENOENT ? 0 : -errno;
    return 1;
}

int
sock_connect_unix(const char *path, struct tp_err *err)
{
    struct sockaddr_un sa;
    _cleanup_close_ int fd = -EBADF;
    int r = fill_addr(&sa, path, err);
    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tp_err_errno(err, -errno, "create socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return tp_err_errno(err, -errno, "connect to '%s'", path);
    return TAKE_FD(fd);
}

int
sock_send_with_fd(int sock, const void *buf, size_t len, int fd, struct tp_err *err)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = cbuf,
        .msg_controllen = sizeof(cbuf),
    };
    memset(cbuf, 0, sizeof(cbuf));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));

    ssize_t n;
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return tp_err_errno(err, -errno, "send fd");
    /* The fd travels with the first byte; the rest is ordinary data. */
    if ((size_t)n < len) {
        int r = sock_write_all(sock, (const char *)buf + n, len - (size_t)n);
        if (r < 0)
            return tp_err_errno(err, r, "send message");
    }
    return 0;
}

int
sock_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                int r = sock_wait(fd, POLLOUT, -1);
                if (r < 0)
                    return r;
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
sock_wait(int fd, short events, int timeout_ms)
{
    uint64_t deadline = timeout_ms < 0 ? 0 : now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int left = -1;
        if (timeout_ms >= 0) {
            uint64_t now = now_ms();
            left = now >= deadline ? 0 : (int)(deadline - now);
        }
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, left);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        return r > 0 ? 1 : 0;
    }
}

int
sock_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    char *p = buf;
    uint64_t deadline = timeout_ms < 0 ? 0 : now_ms() + (uint64_t)timeout_ms;
    while (len > 0) {
        int left = -1;
        if (timeout_ms >= 0) {
            uint64_t now = now_ms();
            left = now >= deadline ? 0 : (int)(deadline - now);
        }
        int r = sock_wait(fd, POLLIN, left);
        if (r < 0)
            return r;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ECONNRESET;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One connect attempt: the fd, or -errno (-ENOENT / -ECONNREFUSED mean "not yet"). */
static int
try_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

int
sock_connect_when_ready(const char *path, int timeout_ms, struct tp_err *err)
{
    struct sockaddr_un probe;
    _cleanup_close_ int ino = -EBADF;
    char *copy = NULL;
    uint64_t deadline = now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    int r = fill_addr(&probe, path, err);
    if (r < 0)
        return r;

    ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ino < 0)
        return tp_err_errno(err, -errno, "inotify_init1");
    copy = strdup(path);
    if (!copy)
        return tp_err_set(err, -ENOMEM, "copy path");
    /* Watch first, then look: a socket created in between still wakes us. */
    r = inotify_add_watch(ino, dirname(copy), IN_CREATE | IN_MOVED_TO);
    free(copy);
    if (r < 0)
        return tp_err_errno(err, -errno, "watch the directory of '%s'", path);

    for (;;) {
        int fd = try_connect(path);
        if (fd >= 0)
            return fd;
        if (fd != -ENOENT && fd != -ECONNREFUSED)
            return tp_err_errno(err, fd, "connect to '%s'", path);
        uint64_t now = now_ms();
        if (now >= deadline)
            return tp_err_set(err, -ETIMEDOUT, "'%s' was not ready within %d ms", path, timeout_ms);
        if (fd == -ECONNREFUSED) {
            /* Bound but not listening yet: the owner is between bind() and listen(). */
            struct timespec ms = { 0, 1000000 };
            nanosleep(&ms, NULL);
            continue;
        }
        r = sock_wait(ino, POLLIN, (int)(deadline - now));
        if (r < 0)
            return tp_err_errno(err, r, "wait for '%s'", path);
        char buf[4096];
        while (read(ino, buf, sizeof(buf)) > 0)
            ; /* drain: any event means "look again" */
    }
}
