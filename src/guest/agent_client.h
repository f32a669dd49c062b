/* Host side of the guest agent protocol (include/torpor/agent_proto.h): one connection per
 * instance, multiplexing any number of concurrent execs. A reader thread demultiplexes frames;
 * callers block on their own exec's queue with a bound.
 *
 * Threads: every function may be called from any thread; control requests (hello, set_clock,
 * identity) are serialized, execs run concurrently. The connection is reference-counted: each
 * agent_exec keeps it alive, so an exec may outlive agent_conn_free() (it then reports
 * -ECONNRESET). Everything the guest sends is validated: an oversize or truncated frame marks
 * the connection dead; frames for unknown exec ids and unknown types are ignored. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/cleanup.h"
#include "util/err.h"

struct agent_conn;
struct agent_exec;

struct agent_hello {
    char version[16];
    char boot_id[40];
    uint64_t uptime_ms;
};

/* Take ownership of a connected stream socket (also on failure) and start the reader thread.
 * It must be a socket: agent_conn_free() wakes the reader with shutdown(2). */
int agent_conn_open(int fd, struct agent_conn **ret, struct tp_err *err);
/* The owner's release: shuts the socket down, wakes every waiter with -ECONNRESET, joins the
 * reader. Memory and fd go with the last agent_exec. NULL-safe; returns NULL. */
struct agent_conn *agent_conn_free(struct agent_conn *c);
DEFINE_CLEANUP(struct agent_conn, agent_conn_free)
/* False once the stream hit EOF or a protocol error. */
bool agent_conn_alive(struct agent_conn *c);

/* Readiness: send HELLO and block for HELLO_OK up to timeout_ms (-ETIMEDOUT). The connection
 * remembers the version the agent reported. */
int agent_conn_hello(struct agent_conn *c, int timeout_ms, struct agent_hello *ret,
                     struct tp_err *err);
/* The protocol version from the last HELLO_OK; 0 before one (or when it was not a number). */
int agent_conn_version(struct agent_conn *c);
/* Control requests answered by AGENT_OK / AGENT_ERROR (the guest's errno, message in err).
 * kv: NULL-terminated "hostname=..." / "seed=<hex>" strings. A late reply to a request that
 * timed out is recognised and dropped. */
int agent_conn_set_clock(struct agent_conn *c, int64_t unix_ns, int timeout_ms, struct tp_err *err);
int agent_conn_identity(struct agent_conn *c, char *const *kv, int timeout_ms, struct tp_err *err);

struct agent_exec_req {
    char *const *argv; /* non-empty */
    char *const *env;  /* "K=V", may be NULL */
    const char *cwd;   /* NULL = "/" */
    bool stdin_open;   /* keep stdin open for agent_exec_stdin(); else it reads EOF at once */
    /* Version 2 (agent_exec_start() refuses them against an older agent): */
    bool tty; /* run on a pseudo-terminal of rows x cols (0 = the default size) */
    uint16_t rows, cols;
    const char *user; /* docker's -u: "USER|UID[:GROUP|GID]"; NULL = the agent's own user */
    bool builtin;     /* argv[0] names one of the agent's built-ins ("tar-out", "tar-in") */
};

/* Start a command; returns once the guest answered EXEC_STARTED (or the spawn error:
 * -ENOENT etc. with the guest's message; -ESRCH for an unknown user or group).
 * -E2BIG when argv+env+cwd+user exceed one frame, -ETIMEDOUT, -ECONNRESET, -EOPNOTSUPP when
 * tty, user or builtin is asked of an agent older than version 2 (or before agent_conn_hello). */
int agent_exec_start(struct agent_conn *c, const struct agent_exec_req *req, int timeout_ms,
                     struct agent_exec **ret, struct tp_err *err);

#define AGENT_EXEC_MAX_QUEUED (8u * 1024 * 1024)

enum agent_event_type {
    AGENT_EV_STDOUT,
    AGENT_EV_STDERR,
    AGENT_EV_EXIT,
};

struct agent_event {
    enum agent_event_type type;
    char *data; /* owned by the event (STDOUT/STDERR); free() it */
    size_t len;
    int exit_code; /* EXIT */
};

/* Next output or the exit of x, waiting up to timeout_ms (-1 = forever): 0 with *ev filled,
 * -ETIMEDOUT, -ECONNRESET when the connection died (output received before that is still
 * delivered first). After EXIT, returns -ENODATA.
 * Overflow policy: at most AGENT_EXEC_MAX_QUEUED bytes of output wait per exec. Beyond that
 * the reader drops the exec's further output (it never blocks other execs) and, once the queued
 * events are consumed, this returns -ENOBUFS for good (the exit code is lost too); the command
 * keeps running: signal it if needed. */
int agent_exec_next(struct agent_exec *x, struct agent_event *ev, int timeout_ms,
                    struct tp_err *err);
/* An fd (owned by x) that polls readable whenever agent_exec_next() may have news: output,
 * the exit, a broken connection. Spurious wake-ups are possible. To wait without a timer:
 * poll it, call agent_exec_fd_drain(), then agent_exec_next(x, ev, 0, ...) until -ETIMEDOUT. */
int agent_exec_fd(struct agent_exec *x);
void agent_exec_fd_drain(struct agent_exec *x);
/* Write to the command's stdin (split into frames); len 0 closes it. Needs req.stdin_open,
 * else the guest ignores it. With a version 2 agent at most AGENT_STDIN_WINDOW bytes are in
 * flight per exec: this blocks while the command does not read, without holding up anyone
 * else; -ECANCELED once agent_exec_cancel() is called, 0 (data dropped) once the command
 * exited. */
int agent_exec_stdin(struct agent_exec *x, const void *data, size_t len, struct tp_err *err);
/* Make a blocked (and any later) agent_exec_stdin() of x return -ECANCELED: for the thread
 * that ends a session while another may be feeding stdin. */
void agent_exec_cancel(struct agent_exec *x);
/* Tell a tty exec's terminal its new size (the guest signals SIGWINCH); ignored by the guest
 * for other execs. No answer comes back. */
int agent_exec_resize(struct agent_exec *x, uint16_t rows, uint16_t cols, struct tp_err *err);
/* Send sig to the command's process group. */
int agent_exec_signal(struct agent_exec *x, int sig, struct tp_err *err);
/* The command's pid inside the guest. */
uint32_t agent_exec_pid(const struct agent_exec *x);
/* Forget x (output still arriving for it is dropped). NULL-safe. */
struct agent_exec *agent_exec_free(struct agent_exec *x);
DEFINE_CLEANUP(struct agent_exec, agent_exec_free)
