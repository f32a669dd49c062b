/* Unix socket helpers: listen, connect, fd passing. All fds are CLOEXEC. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* Bind and listen on path (an existing socket file is replaced; -EEXIST for any other kind of
 * file). Returns the fd. */
int sock_listen_unix(const char *path, int backlog, struct tp_err *err);

/* The file a listening socket was bound to, to recognise it later. */
struct sock_file {
    dev_t dev;
    ino_t ino;
};

/* Like sock_listen_unix() for a server that must be alone on path: a socket there that accepts
 * connections is a live server's (-EADDRINUSE, "another torpord is serving"); only a stale one
 * (connection refused) is replaced. ret_file identifies the file bound, for sock_unlink_own(). */
int sock_listen_unix_exclusive(const char *path, int backlog, struct sock_file *ret_file,
                               struct tp_err *err);

/* Remove path only if it is still the socket file f: a later server may have replaced it.
 * 1 removed, 0 left alone (gone, or not ours any more), -errno. */
int sock_unlink_own(const char *path, const struct sock_file *f);

/* Connect a stream socket to path. Returns the fd. */
int sock_connect_unix(const char *path, struct tp_err *err);

/* sendmsg with one SCM_RIGHTS fd attached to buf. */
int sock_send_with_fd(int sock, const void *buf, size_t len, int fd, struct tp_err *err);

/* Write all of buf; returns 0 or -errno (EPIPE when the peer is gone). */
int sock_write_all(int fd, const void *buf, size_t len);

/* Read exactly len bytes within timeout_ms (-1 = forever): 0, -ETIMEDOUT, -ECONNRESET on EOF. */
int sock_read_exact(int fd, void *buf, size_t len, int timeout_ms);

/* poll() one fd for events within timeout_ms: 1 ready, 0 timeout, -errno. Retries EINTR with the
 * remaining time. */
int sock_wait(int fd, short events, int timeout_ms);

/* Connect to a socket another process will create (a VMM that binds its own API socket):
 * inotify on the directory until the path exists, then connect, retrying every 1 ms while the
 * owner has bound but not yet listened. No sleep-polling while the path is absent. Returns the
 * fd; -ETIMEDOUT after timeout_ms. */
int sock_connect_when_ready(const char *path, int timeout_ms, struct tp_err *err);
