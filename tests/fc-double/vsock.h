/* fc-double: the vsock device's host side: hybrid UDS protocol, bridged to a guest agent run on
 * the host. */
#pragma once

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "fcd.h"
#include "mem.h"

struct vsock_conn;

struct vsock_dev {
    int listen_fd;
    char *uds_path;
    uint32_t guest_cid;
    struct vsock_conn *conns;
    uint32_t next_host_port;
    /* The fake guest: the agent binary and the port it listens on. */
    const char *agent_path;
    uint32_t agent_port;
};

/* Bind and listen on uds_path, which must not exist. */
int vsock_open(struct vsock_dev *d, const char *uds_path, uint32_t guest_cid, struct fcd_err *err);
/* Close the listener (the socket file stays, as Firecracker leaves it) and every connection. */
void vsock_close(struct vsock_dev *d);

/* Snapshot creation queued a transport reset: connections open now close at the next resume. */
void vsock_mark_reset(struct vsock_dev *d);
void vsock_apply_reset(struct vsock_dev *d);

/* Event loop: add fds to poll (nothing but the listener when the guest does not run), then
 * handle what poll returned. mem receives the guest's writes of bridged bytes. */
int vsock_poll_fill(struct vsock_dev *d, bool running, struct pollfd *pfds, int max);
void vsock_poll_handle(struct vsock_dev *d, bool running, const struct pollfd *pfds, int n,
                       struct mem *mem);
