/* Request and response bodies: strict JSON -> request structs, records -> instance objects,
 * the capabilities object and the exec-stream frame header. Pure functions (no I/O). */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/agent_client.h"
#include "hypervisor/driver.h"
#include "instance/manager.h"
#include "store/store.h"
#include "util/err.h"

#define API_BODY_MAX (64u * 1024u) /* larger request bodies are 413 too_large */

#define API_MEMORY_MIB_MIN 64
#define API_MEMORY_MIB_MAX 65536
#define API_VCPUS_MIN      1
#define API_VCPUS_MAX      64
#define API_DISK_MIB_MIN   1
#define API_DISK_MIB_MAX   (1024 * 1024)
#define API_FORK_COUNT_MAX 64
/* Children are <prefix>-<n>: the prefix leaves room for "-NN" within a 63-character name. */
#define API_FORK_PREFIX_MAX 60

/* A parsed create request: req points into the owned fields. */
struct api_create_body {
    struct inst_create_req req;
    char *name;
    char *hypervisor;
    char *kernel;
    char *initrd;
    char *rootfs;
    char *accel;
    char *mem_backend;
    char *network;
    char *network_mode;
    struct net_port *ports;
    size_t n_ports;
    char **cmd;
    char *image;
    char **entrypoint;
    char **env;
    char *workdir;
    char *user;
};
void api_create_body_clear(struct api_create_body *b);

/* A parsed exec request: req points into the owned fields. */
struct api_exec_body {
    struct agent_exec_req req;
    char **argv;
    char **env;
    char *cwd;
    char *user;
    bool stdin_open; /* "stdin": the client sends stdin frames (needs an upgraded connection) */
    bool detach;     /* "detach": start, answer 201 {"pid"} and forget the command */
};
void api_exec_body_clear(struct api_exec_body *b);

/* A parsed fork request: req points into the owned fields. */
struct api_fork_body {
    struct inst_fork_req req;
    char *name;
    char *prefix;
    struct net_port *ports;
    size_t n_ports;
};
void api_fork_body_clear(struct api_fork_body *b);

/* Parse a POST /v1/instances body (len bytes, need not be NUL-terminated). Every field is
 * optional and null means "default"; unknown fields, wrong types and values out of range are
 * -EINVAL with a message naming the field. *ret is written only on success; clear it after. */
int api_parse_create(const char *data, size_t len, struct api_create_body *ret, struct tp_err *err);

/* Parse a POST .../exec body: cmd is required and non-empty, env entries are "K=V"; "user" is
 * NAME|UID[:GROUP|GID]; "rows"/"cols" (0..65535) only with "tty"; "detach" excludes "stdin"
 * and "tty". */
int api_parse_exec(const char *data, size_t len, struct api_exec_body *ret, struct tp_err *err);

/* Parse a POST .../fork body: {"count": 1..API_FORK_COUNT_MAX, "name": name, "prefix": name
 * of at most API_FORK_PREFIX_MAX characters, "standby": bool, "no_wait": bool}, every field
 * optional (not null); an empty body is one child with defaults (req.count = 1). "name" only
 * with count 1, and not with "prefix". -EINVAL naming the field otherwise. */
int api_parse_fork(const char *data, size_t len, struct api_fork_body *ret, struct tp_err *err);

/* POST /v1/sessions/{id}/signal: {"signal": 1..64} (required). */
int api_parse_session_signal(const char *data, size_t len, int *ret_sig, struct tp_err *err);
/* POST /v1/sessions/{id}/resize: {"rows": 1..65535, "cols": 1..65535} (both required). */
int api_parse_session_resize(const char *data, size_t len, uint16_t *ret_rows, uint16_t *ret_cols,
                             struct tp_err *err);

/* {"state": "Stopped", "timeout_ms": 1..600000 (default 30000)}; state required. */
int api_parse_wait(const char *data, size_t len, enum inst_state *ret_state, int *ret_timeout_ms,
                   struct tp_err *err);
/* Bodies of stop/start/standby/restore: empty, or a JSON object without fields. -EINVAL
 * otherwise. */
int api_parse_empty(const char *data, size_t len, struct tp_err *err);

/* "2026-11-22T00:10:00.123Z" for ms since the epoch (UTC). -EINVAL if out of range. */
int api_format_time(int64_t ms, char out[32]);

/* The instance object of api.md. Never NULL (OOM aborts). */
json_t *api_record_to_json(const struct inst_record *r);

/* {"hypervisors": {name: {cap: bool, ...}, ...}} for a NULL-terminated driver list. */
json_t *api_caps_to_json(const struct hv_driver *const *drivers);

/* Exec stream frame kinds (byte 0 of the header). */
enum api_frame_kind {
    API_FRAME_STDOUT = 1,
    API_FRAME_STDERR = 2,
    API_FRAME_EXIT = 3,
    API_FRAME_ERROR = 4,
};
#define API_FRAME_HEADER_SIZE 8

/* Write an 8-byte frame header: kind, three zero bytes, big-endian payload length.
 * Returns API_FRAME_HEADER_SIZE. */
size_t api_frame_header(uint8_t out[8], int kind, uint32_t len);
