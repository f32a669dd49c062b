/* QMP client: line transport with ids and an event queue, plus one function per command. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hypervisor/driver.h"
#include "util/cleanup.h"
#include "util/err.h"

#define QMP_TIMEOUT_MS      10000      /* default bound on every read */
#define QMP_LINE_MAX        (8u << 20) /* a reply line longer than this is -EPROTO */
#define QMP_EVENT_QUEUE_MAX 256        /* oldest events are dropped beyond this */

enum qmp_msg_kind {
    QMP_MSG_GREETING,
    QMP_MSG_RETURN,
    QMP_MSG_ERROR,
    QMP_MSG_EVENT,
    _QMP_MSG_MAX,
    _QMP_MSG_INVALID = -22,
};

/* One parsed line from QEMU. */
struct qmp_msg {
    enum qmp_msg_kind kind;
    json_t *json; /* the whole object; owned */
    json_t *id;   /* borrowed from json; NULL when the message has none */
};

/* Free what msg owns and reset it; NULL-safe. */
void qmp_msg_clear(struct qmp_msg *msg);

/* Pure parser (no I/O, fuzzed): classify one line (without its newline). -EPROTO when it is not
 * JSON, not an object, or not one of the four QMP shapes. */
int qmp_parse_line(const char *line, size_t len, struct qmp_msg *ret_msg, struct tp_err *err);

struct qmp_conn;

/* Take ownership of a connected stream fd (always, even on failure), read the greeting and
 * negotiate capabilities. timeout_ms bounds the handshake and each later command (<= 0: the
 * default). watch_fd (a VMM pidfd, borrowed, must outlive the connection; -1 for none) makes
 * reads fail at once with -ECONNRESET when the VMM is gone and no data is left. */
int qmp_conn_adopt(int fd, int timeout_ms, int watch_fd, struct qmp_conn **ret_conn,
                   struct tp_err *err);

/* Connect to a QMP socket path, then as qmp_conn_adopt(). */
int qmp_conn_open(const char *path, int timeout_ms, int watch_fd, struct qmp_conn **ret_conn,
                  struct tp_err *err);

/* Close and free; NULL-safe; returns NULL. */
struct qmp_conn *qmp_conn_free(struct qmp_conn *c);
DEFINE_CLEANUP(struct qmp_conn, qmp_conn_free)

/* Run one command. args is stolen (may be NULL). fd_to_pass >= 0 travels with the command as
 * SCM_RIGHTS (for getfd; borrowed). Events read meanwhile are queued. On success
 * *ret_return (if non-NULL) gets a new reference to the "return" value.
 * -EIO with QEMU's "class: desc" as the innermost frame for an error reply, -ETIMEDOUT,
 * -ECONNRESET when QEMU goes away, -EPROTO for a malformed or oversize line.
 * Thread-safe: one command at a time per connection. */
int qmp_execute(struct qmp_conn *c, const char *cmd, json_t *args, int fd_to_pass,
                json_t **ret_return, struct tp_err *err);

/* Next queued event, waiting up to timeout_ms (0 = only what has arrived, < 0 = forever) without
 * holding the connection against commands. -ETIMEDOUT when none came. */
int qmp_event_next(struct qmp_conn *c, json_t **ret_event, int timeout_ms, struct tp_err *err);

/* Commands (qmp_cmd.c). */

/* query-status: the run state, plus QEMU's own status string if ret_status is non-NULL. */
int qmp_query_status(struct qmp_conn *c, enum hv_run_state *ret_state, char **ret_status,
                     struct tp_err *err);
int qmp_stop(struct qmp_conn *c, struct tp_err *err);
int qmp_cont(struct qmp_conn *c, struct tp_err *err);
int qmp_quit(struct qmp_conn *c, struct tp_err *err);
int qmp_migrate_set_capability(struct qmp_conn *c, const char *name, bool state,
                               struct tp_err *err);
/* migrate-set-parameters max-bandwidth (bytes/s). */
int qmp_migrate_set_max_bandwidth(struct qmp_conn *c, uint64_t bytes_per_sec, struct tp_err *err);
/* getfd: hand fd (borrowed) to QEMU under name, for "fd:NAME" migration URIs. */
int qmp_getfd(struct qmp_conn *c, const char *name, int fd, struct tp_err *err);
int qmp_migrate(struct qmp_conn *c, const char *uri, struct tp_err *err);
int qmp_migrate_cancel(struct qmp_conn *c, struct tp_err *err);
int qmp_migrate_incoming(struct qmp_conn *c, const char *uri, struct tp_err *err);
/* query-migrate: "none" before any migration, else QEMU's status ("active", "completed", ...). */
int qmp_query_migrate(struct qmp_conn *c, char **ret_status, struct tp_err *err);

struct qmp_migrate_info {
    char *status;     /* as qmp_query_migrate() */
    char *error_desc; /* why a failed migration failed, in QEMU's words; NULL if it gave none */
    int error_code;   /* -errno error_desc names (-ENOSPC for "No space left on device",
                         -EDQUOT), else -EIO; 0 without error_desc */
};

/* Free what info owns and reset it; usable as _cleanup_. */
void qmp_migrate_info_clear(struct qmp_migrate_info *info);

/* query-migrate with the failure's reason: ret_info is the caller's to clear. */
int qmp_query_migrate_info(struct qmp_conn *c, struct qmp_migrate_info *ret_info,
                           struct tp_err *err);
