/* Wire protocol between torpord and the guest agent over one byte stream (virtio-serial port
 * with QEMU, vsock with Firecracker). Shared verbatim by the host and the static guest agent:
 * plain C, no dependencies. Everything is little-endian.
 *
 * A stream is a sequence of frames: a 12-byte header then `len` payload bytes.
 * id 0 is the control channel; every exec uses its own id, chosen by the host (non-zero, unique
 * per connection), so several execs run at once over one connection.
 *
 * Ordering: the guest answers every control request (id 0) exactly once, in the order received
 * (unknown control types get AGENT_ERROR EOPNOTSUPP), so the host can match replies by count.
 * For one exec id the guest sends EXEC_STARTED or EXEC_ERROR first, then any STDOUT/STDERR,
 * then EXIT last (EXIT is sent once both output pipes reached EOF and the process was reaped;
 * with F_TTY once the process was reaped and what its terminal held then was sent: output of
 * background processes still holding the terminal after that is dropped).
 *
 * Connection loss: when the host goes away, the guest forgets every exec id of that connection
 * (their processes keep running, their output is discarded) and resets its frame parser. */
#pragma once

#include <stdint.h>

#define AGENT_PROTO_VERSION 2 /* 2: EXEC flags TTY, USER, BUILTIN; AGENT_RESIZE */
#define AGENT_HDR_SIZE      12u
#define AGENT_MAX_PAYLOAD                                             \
    65536u /* a larger len is a protocol error: the reader resyncs by \
              dropping the connection */
#define AGENT_PORT_NAME "org.torpor.agent" /* virtio-serial port name the agent looks for */
/* Flow control per exec (version 2): see AGENT_STDIN_ACK and AGENT_OUTPUT_ACK. */
#define AGENT_STDIN_WINDOW  (256u * 1024u)
#define AGENT_OUTPUT_WINDOW (1024u * 1024u)

struct agent_hdr {
    uint32_t len;   /* payload bytes */
    uint32_t id;    /* 0 = control, else exec id */
    uint16_t type;  /* enum agent_msg */
    uint16_t flags; /* per type (AGENT_EXEC_F_*); 0 otherwise */
} __attribute__((packed));

_Static_assert(sizeof(struct agent_hdr) == AGENT_HDR_SIZE, "agent_hdr is 12 bytes on the wire");

/* Flags of an AGENT_EXEC frame. */
#define AGENT_EXEC_F_STDIN                                         \
    0x1u /* keep stdin open for AGENT_STDIN frames; without it the \
            command's stdin is at EOF from the start */
/* Version 2 (an agent reporting version=1 refuses these payloads as malformed, so the host
 * checks the version first). The EXEC payload grows after env[envc], in this order:
 *   F_USER: one more NUL-terminated string, "USER|UID[:GROUP|GID]" (docker's -u);
 *   F_TTY:  4 bytes, u16 rows then u16 cols (the terminal's size; 0 = leave the default).
 * F_TTY runs the command on a new pseudo-terminal that becomes its controlling terminal:
 * stdin, stdout and stderr are the PTY, output comes as STDOUT frames only, TERM=xterm is added
 * when env has no TERM, and closing stdin (an empty STDIN frame) types the terminal's EOF
 * character once. F_TTY without F_STDIN types nothing at all (a terminal has no "EOF from the
 * start"; as docker exec -t without -i, a command reading it waits). F_USER applies to
 * built-ins too. F_BUILTIN runs one of the agent's own built-ins (argv[0] names it; an unknown
 * one is EXEC_ERROR ENOENT) in the forked child instead of executing a file; argv[1..] are its
 * arguments:
 *   "tar-out" PATH: a POSIX tar (ustar, pax headers for long names, link targets, sizes from
 *                   8 GiB and large ids) of PATH on stdout, its top entry named after PATH's
 *                   last component, directories recursively, symlinks not followed (PATH
 *                   itself included); hard links are written as separate regular files;
 *   "tar-in" DIR:   extract the tar read from stdin (ustar, pax, GNU long names) under the
 *                   directory DIR; entries that would land outside DIR (absolute, "..", or
 *                   through a symlink) are refused and end the extraction. Existing files are
 *                   replaced, existing directories merged; numeric owners are kept when the
 *                   built-in runs as root;
 *   "stat" PATH:    one line "TYPE MODE SIZE" on stdout for PATH itself (lstat): TYPE is file,
 *                   dir, symlink or other, MODE the permission bits in octal; a symlink adds
 *                   " TARGET" (what it leads to: file, dir, other, or missing);
 *   "meminfo":      one line "TOTAL AVAILABLE", the guest's memory in bytes (/proc/meminfo).
 * A built-in exits 0 on success, 2 when PATH/DIR does not exist or is not a directory for
 * tar-in, 1 on any other failure; its messages go to stderr. */
#define AGENT_EXEC_F_TTY     0x2u
#define AGENT_EXEC_F_USER    0x4u
#define AGENT_EXEC_F_BUILTIN 0x8u
/* The host acknowledges this exec's output (AGENT_OUTPUT_ACK): only then does the guest hold
 * its output back past AGENT_OUTPUT_WINDOW. Version 2 hosts always set it. */
#define AGENT_EXEC_F_ACKS 0x10u

enum agent_msg {
    /* host -> guest */
    AGENT_HELLO = 1,      /* id 0, empty. Guest answers AGENT_HELLO_OK. Used as the readiness
                             signal: the host sends it right after connecting and blocks on the
                             reply; the guest reads it as soon as its port opens. A HELLO starts
                             a new connection and must be its first frame: after a host change
                             the guest skips input up to this (fixed) header, and it forgets
                             earlier exec ids (a restored or forked guest never saw its old
                             host leave). */
    AGENT_EXEC = 2,       /* payload: u32 argc (>= 1), u32 envc, then NUL-terminated strings:
                             cwd ("" = /), argv[argc], env[envc] ("K=V"), nothing after.
                             flags: AGENT_EXEC_F_*. Guest answers AGENT_EXEC_STARTED or
                             AGENT_EXEC_ERROR. The command runs in its own session (pgid = pid);
                             PATH defaults to a standard list when env has none. */
    AGENT_STDIN = 3,      /* data for the exec's stdin; empty payload = close stdin */
    AGENT_SIGNAL = 4,     /* payload: u32 signal number, sent to the exec's process group */
    AGENT_SET_CLOCK = 5,  /* id 0, payload: i64 unix time in ns; answered by AGENT_OK */
    AGENT_IDENTITY = 6,   /* id 0, payload: NUL-terminated "key=value" strings (hostname=...,
                             seed=<hex>, net=IP/PREFIX,GATEWAY,MAC: the NIC's address, default
                             route and MAC); answered by AGENT_OK once applied (fork) */
    AGENT_RESIZE = 7,     /* payload: u16 rows, u16 cols: the exec's terminal size (F_TTY
                             execs; ignored otherwise). No answer. Version 2. */
    AGENT_OUTPUT_ACK = 8, /* payload: u32 bytes of the exec's STDOUT/STDERR payloads the host
                             has consumed. Version 2: the guest stops reading an exec's output
                             while AGENT_OUTPUT_WINDOW bytes are sent and not acknowledged, so
                             a slow consumer slows its own command and no other. */
    AGENT_FORGET = 9,     /* empty: the host no longer follows this exec (detached, or its
                             client left): the guest drops its output and sends nothing more
                             for the id, not even EXIT; the command runs on. Version 2. */

    /* guest -> host */
    AGENT_HELLO_OK = 101,     /* id 0, payload: NUL-terminated "key=value" strings: version=,
                                 boot_id=, uptime_ms= */
    AGENT_EXEC_STARTED = 102, /* payload: u32 pid */
    AGENT_STDOUT = 103,       /* data (1..AGENT_MAX_PAYLOAD bytes) */
    AGENT_STDERR = 104,       /* data */
    AGENT_EXIT = 105,       /* payload: i32 exit code (128+signal when killed); last frame of id */
    AGENT_EXEC_ERROR = 106, /* payload: i32 errno then NUL-terminated message; last frame of id
                               (the command never ran: e.g. ENOENT; ESRCH: the -u user or group
                               is not in the guest's /etc/passwd or /etc/group) */
    AGENT_OK = 107,         /* id 0: the preceding control request succeeded */
    AGENT_ERROR = 108,      /* id 0: i32 errno then NUL-terminated message */
    AGENT_STDIN_ACK = 109,  /* payload: u32 bytes of the exec's STDIN payloads written to the
                               command (or dropped: its stdin was closed). Version 2: the host
                               keeps at most AGENT_STDIN_WINDOW bytes per exec unacknowledged,
                               so a command that does not read never stops the connection. */
};

/* Little-endian field access, independent of host byte order and alignment. */
static inline uint32_t
agent_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void
agent_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint16_t
agent_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline void
agent_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline uint64_t
agent_get_u64(const uint8_t *p)
{
    return (uint64_t)agent_get_u32(p) | (uint64_t)agent_get_u32(p + 4) << 32;
}

static inline void
agent_put_u64(uint8_t *p, uint64_t v)
{
    agent_put_u32(p, (uint32_t)v);
    agent_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline void
agent_hdr_decode(const uint8_t *p, struct agent_hdr *h)
{
    h->len = agent_get_u32(p);
    h->id = agent_get_u32(p + 4);
    h->type = (uint16_t)(p[8] | p[9] << 8);
    h->flags = (uint16_t)(p[10] | p[11] << 8);
}

static inline void
agent_hdr_encode(uint8_t *p, uint32_t len, uint32_t id, uint16_t type, uint16_t flags)
{
    agent_put_u32(p, len);
    agent_put_u32(p + 4, id);
    p[8] = (uint8_t)type;
    p[9] = (uint8_t)(type >> 8);
    p[10] = (uint8_t)flags;
    p[11] = (uint8_t)(flags >> 8);
}
