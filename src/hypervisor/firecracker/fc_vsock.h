/* Host-initiated vsock streams through Firecracker's hybrid vsock Unix socket. */
#pragma once

#include <stdint.h>

#include "util/err.h"

#define FC_VSOCK_TIMEOUT_MS 5000 /* default bound on the CONNECT/OK exchange */
#define FC_VSOCK_LINE_MAX   32   /* the longest "OK <port>\n" accepted */

/* On a stream already connected to the vsock device's uds_path (fd borrowed): send
 * "CONNECT <port>\n" in one write, then read Firecracker's "OK <host_port>\n" byte by byte, so
 * nothing after the newline is consumed. timeout_ms bounds the exchange (<= 0: the default).
 * *ret_host_port (if non-NULL) gets the host side's port. Errors: -ECONNREFUSED when the stream
 * closes without an answer (nothing listens on port in the guest), -ETIMEDOUT, -EPROTO for any
 * other answer, -errno from the socket. */
int fc_vsock_handshake(int fd, uint32_t port, int timeout_ms, uint32_t *ret_host_port,
                       struct tp_err *err);

/* Connect to uds_path and run fc_vsock_handshake(). Returns the connected fd (blocking,
 * CLOEXEC), ready for the agent protocol: every byte from it is guest payload. */
int fc_vsock_connect(const char *uds_path, uint32_t port, int timeout_ms, struct tp_err *err);
