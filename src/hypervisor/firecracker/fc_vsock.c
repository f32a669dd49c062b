/* The hybrid vsock CONNECT handshake: one request line out, one "OK <port>" line back. */
#include "hypervisor/firecracker/fc_vsock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "util/cleanup.h"
#include "util/sock.h"
#include "util/timeutil.h"

/* "OK " 1*DIGIT "\n", the number fitting 32 bits. */
static int
parse_ok_line(const char *line, size_t n, uint32_t *ret_port)
{
    uint64_t v = 0;

    if (n < 5 || memcmp(line, "OK ", 3) != 0 || line[n - 1] != '\n')
        return -EPROTO;
    for (size_t i = 3; i < n - 1; i++) {
        if (line[i] < '0' || line[i] > '9')
            return -EPROTO;
        v = v * 10 + (uint64_t)(line[i] - '0');
        if (v > UINT32_MAX)
            return -EPROTO;
    }
    *ret_port = (uint32_t)v;
    return 0;
}

/* Printable form of what came back, for the error message. */
static void
quote_line(const char *line, size_t n, char *out, size_t out_size)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 5 < out_size; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch == '\n')
            o += (size_t)snprintf(out + o, out_size - o, "\\n");
        else if (ch < ' ' || ch >= 0x7f)
            o += (size_t)snprintf(out + o, out_size - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
}

int
fc_vsock_handshake(int fd, uint32_t port, int timeout_ms, uint32_t *ret_host_port,
                   struct tp_err *err)
{
    char req[32], line[FC_VSOCK_LINE_MAX], shown[4 * FC_VSOCK_LINE_MAX + 8];
    uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : FC_VSOCK_TIMEOUT_MS);
    uint32_t host_port;
    size_t n = 0;
    int len;

    len = snprintf(req, sizeof(req), "CONNECT %u\n", port);
    /* Firecracker reads the request once, on first readiness: it must arrive whole. */
    for (;;) {
        ssize_t w = send(fd, req, (size_t)len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return tp_err_errno(err, errno == EPIPE ? -ECONNRESET : -errno, "send vsock CONNECT %u",
                                port);
        if (w != len)
            return tp_err_set(err, -EIO, "send vsock CONNECT %u: short write", port);
        break;
    }

    while (n == 0 || line[n - 1] != '\n') {
        uint64_t now = now_ms();
        int r;

        if (n == sizeof(line)) {
            quote_line(line, n, shown, sizeof(shown));
            return tp_err_set(err, -EPROTO, "vsock CONNECT %u: answer '%s' longer than %d bytes",
                              port, shown, FC_VSOCK_LINE_MAX);
        }
        r = now >= deadline ? 0 : sock_wait(fd, POLLIN, (int)MIN(deadline - now, 60000u));
        if (r < 0)
            return tp_err_errno(err, r, "vsock CONNECT %u: wait for the answer", port);
        if (r == 0 && now_ms() >= deadline)
            return tp_err_set(err, -ETIMEDOUT, "vsock CONNECT %u: no answer within %d ms", port,
                              timeout_ms > 0 ? timeout_ms : FC_VSOCK_TIMEOUT_MS);
        if (r == 0)
            continue;
        /* One byte at a time: what follows the newline is the guest's, not ours to take. */
        ssize_t got = recv(fd, line + n, 1, MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return tp_err_errno(err, -errno, "vsock CONNECT %u: read the answer", port);
        }
        if (got == 0) {
            if (n == 0)
                return tp_err_set(err, -ECONNREFUSED,
                                  "vsock CONNECT %u: closed without an answer (nothing listening "
                                  "on that port in the guest?)",
                                  port);
            quote_line(line, n, shown, sizeof(shown));
            return tp_err_set(err, -EPROTO, "vsock CONNECT %u: closed after a partial answer '%s'",
                              port, shown);
        }
        n++;
    }

    if (parse_ok_line(line, n, &host_port) < 0) {
        quote_line(line, n, shown, sizeof(shown));
        return tp_err_set(err, -EPROTO, "vsock CONNECT %u: unexpected answer '%s'", port, shown);
    }
    if (ret_host_port)
        *ret_host_port = host_port;
    return 0;
}

int
fc_vsock_connect(const char *uds_path, uint32_t port, int timeout_ms, struct tp_err *err)
{
    _cleanup_close_ int fd = sock_connect_unix(uds_path, err);
    int r;

    if (fd < 0)
        return tp_err_wrap(err, "connect vsock socket");
    r = fc_vsock_handshake(fd, port, timeout_ms, NULL, err);
    if (r < 0)
        return tp_err_wrap(err, "vsock '%s'", uds_path);
    return TAKE_FD(fd);
}
