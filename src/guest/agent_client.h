/* Host side of the guest agent protocol (include/torpor/agent_proto.h): one connection per
 * instance, multiplexing any number of concurrent execs. A reader thread demultiplexes frames;
 * callers block on their own exec's queue with a bound. */
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

/* Take ownership of a connected stream fd and start the reader thread. */
int agent_conn_open(int fd, struct agent_conn **ret, struct tp_err *err);
/* Closes the fd, wakes every waiter with -ECONNRESET, joins the reader. NULL-safe. */
struct agent_conn *agent_conn_free(struct agent_conn *c);
DEFINE_CLEANUP(struct agent_conn, agent_conn_free)
/* False once the stream hit EOF or a protocol error. */
bool agent_conn_alive(struct agent_conn *c);

/* Readiness: send HELLO and block for HELLO_OK up to timeout_ms (-ETIMEDOUT). */
int agent_conn_hello(struct agent_conn *c, int timeout_ms, struct agent_hello *ret,
                     struct tp_err *err);
/* Control requests answered by AGENT_OK / AGENT_ERROR. */
int agent_conn_set_clock(struct agent_conn *c, int64_t unix_ns, int timeout_ms,
                         struct tp_err *err);
int agent_conn_identity(struct agent_conn *c, char *const *kv, int timeout_ms,
                        struct tp_err *err);

struct agent_exec_req {
    char *const *argv; /* non-empty */
    char *const *env;  /* "K=V", may be NULL */
    const char *cwd;   /* NULL = "/" */
};

/* Start a command; returns once the guest answered EXEC_STARTED (or the spawn error:
 * -ENOENT etc. with the guest's message). */
int agent_exec_start(struct agent_conn *c, const struct agent_exec_req *req, int timeout_ms,
                     struct agent_exec **ret, struct tp_err *err);

enum agent_event_type {
    AGENT_EV_STDOUT,
    AGENT_EV_STDERR,
    AGENT_EV_EXIT,
};

struct agent_event {
    enum agent_event_type type;
    char *data;    /* owned by the event (STDOUT/STDERR); free() it */
    size_t len;
    int exit_code; /* EXIT */
};

/* Next output or the exit of x, waiting up to timeout_ms (-1 = forever): 0 with *ev filled,
 * -ETIMEDOUT, -ECONNRESET when the connection died. After EXIT, returns -ENODATA. */
int agent_exec_next(struct agent_exec *x, struct agent_event *ev, int timeout_ms,
                    struct tp_err *err);
/* Write to the command's stdin; len 0 closes it. */
int agent_exec_stdin(struct agent_exec *x, const void *data, size_t len, struct tp_err *err);
int agent_exec_signal(struct agent_exec *x, int sig, struct tp_err *err);
/* Forget x (output still arriving for it is dropped). NULL-safe. */
struct agent_exec *agent_exec_free(struct agent_exec *x);
DEFINE_CLEANUP(struct agent_exec, agent_exec_free)
