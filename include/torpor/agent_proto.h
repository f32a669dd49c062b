/* Wire protocol between torpord and the guest agent over one byte stream (virtio-serial port
 * with QEMU, vsock with Firecracker). Shared verbatim by the host and the static guest agent:
 * plain C, no dependencies. Everything is little-endian.
 *
 * A stream is a sequence of frames: a 12-byte header then `len` payload bytes.
 * id 0 is the control channel; every exec uses its own id, chosen by the host (non-zero, unique
 * per connection), so several execs run at once over one connection. */
#pragma once

#include <stdint.h>

#define AGENT_PROTO_VERSION 1
#define AGENT_MAX_PAYLOAD   65536u /* a larger len is a protocol error: the reader resyncs by
                                      dropping the connection */
#define AGENT_PORT_NAME     "org.torpor.agent" /* virtio-serial port name the agent looks for */

struct agent_hdr {
    uint32_t len;  /* payload bytes */
    uint32_t id;   /* 0 = control, else exec id */
    uint16_t type; /* enum agent_msg */
    uint16_t flags; /* 0; reserved */
} __attribute__((packed));

enum agent_msg {
    /* host -> guest */
    AGENT_HELLO = 1,      /* id 0, empty. Guest answers AGENT_HELLO_OK. Used as the readiness
                             signal: the host sends it right after connecting and blocks on the
                             reply; the guest reads it as soon as its port opens. */
    AGENT_EXEC = 2,       /* payload: u32 argc, u32 envc, then NUL-terminated strings:
                             cwd ("" = /), argv[argc], env[envc] ("K=V"). Guest answers
                             AGENT_EXEC_STARTED or AGENT_EXEC_ERROR. */
    AGENT_STDIN = 3,      /* data for the exec's stdin; empty payload = close stdin */
    AGENT_SIGNAL = 4,     /* payload: u32 signal number, sent to the exec's process group */
    AGENT_SET_CLOCK = 5,  /* id 0, payload: i64 unix time in ns; answered by AGENT_OK */
    AGENT_IDENTITY = 6,   /* id 0, payload: NUL-terminated "key=value" strings (hostname=...,
                             seed=<hex>); answered by AGENT_OK once applied (fork) */

    /* guest -> host */
    AGENT_HELLO_OK = 101, /* id 0, payload: NUL-terminated "key=value" strings: version=,
                             boot_id=, uptime_ms= */
    AGENT_EXEC_STARTED = 102, /* payload: u32 pid */
    AGENT_STDOUT = 103,   /* data */
    AGENT_STDERR = 104,   /* data */
    AGENT_EXIT = 105,     /* payload: i32 exit code (128+signal when killed); last frame of id */
    AGENT_EXEC_ERROR = 106, /* payload: i32 errno then NUL-terminated message; last frame of id
                               (the command never ran: e.g. ENOENT) */
    AGENT_OK = 107,       /* id 0: the preceding control request succeeded */
    AGENT_ERROR = 108,    /* id 0: i32 errno then message */
};
