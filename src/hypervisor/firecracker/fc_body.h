/* Firecracker API bodies (v1.16.1 spec): one builder per request the driver sends, one parser
 * per reply it reads. */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Builders return 0 with a new reference in *ret_body, or -EINVAL (a required field missing, an
 * enum or number out of the spec's range, a resource id Firecracker would refuse). String
 * arguments are borrowed and copied. Optional strings are omitted when NULL. */

/* A resource id usable in a path (/drives/{id}, /network-interfaces/{id}): non-empty, only
 * ASCII letters, digits and '_'. */
bool fc_id_valid(const char *id);

/* PUT /boot-source */
struct fc_boot_source {
    const char *kernel_image_path; /* required */
    const char *boot_args;         /* NULL: Firecracker's default command line */
    const char *initrd_path;
};
int fc_body_boot_source(const struct fc_boot_source *b, json_t **ret_body, struct tp_err *err);

enum fc_huge_pages {
    FC_HUGE_PAGES_NONE,
    FC_HUGE_PAGES_2M,
    _FC_HUGE_PAGES_MAX,
    _FC_HUGE_PAGES_INVALID = -EINVAL,
};

/* PUT /machine-config. smt and track_dirty_pages are always sent; huge_pages only when not
 * NONE (2M needs an even mem_size_mib). */
struct fc_machine_config {
    unsigned vcpu_count;   /* 1..32; with smt 1 or even */
    uint64_t mem_size_mib; /* > 0 */
    bool smt;
    bool track_dirty_pages;
    enum fc_huge_pages huge_pages;
};
int fc_body_machine_config(const struct fc_machine_config *m, json_t **ret_body,
                           struct tp_err *err);

enum fc_cache_type {
    FC_CACHE_UNSAFE,
    FC_CACHE_WRITEBACK,
    _FC_CACHE_MAX,
    _FC_CACHE_INVALID = -EINVAL,
};

enum fc_io_engine {
    FC_IO_ENGINE_SYNC,
    FC_IO_ENGINE_ASYNC,
    _FC_IO_ENGINE_MAX,
    _FC_IO_ENGINE_INVALID = -EINVAL,
};

/* PUT /drives/{drive_id} (a virtio-block drive; cache_type and io_engine are always sent). */
struct fc_drive {
    const char *drive_id;     /* required, fc_id_valid() */
    const char *path_on_host; /* required */
    bool is_root_device;
    bool is_read_only;
    const char *partuuid; /* only meaningful for the root device */
    enum fc_cache_type cache_type;
    enum fc_io_engine io_engine;
};
int fc_body_drive(const struct fc_drive *d, json_t **ret_body, struct tp_err *err);

/* PUT /network-interfaces/{iface_id} */
struct fc_net_iface {
    const char *iface_id;      /* required, fc_id_valid() */
    const char *host_dev_name; /* required: the TAP device */
    const char *guest_mac;     /* "aa:bb:cc:dd:ee:ff" or NULL */
    unsigned mtu;              /* 0: not advertised; else 68..65535 */
};
int fc_body_net_iface(const struct fc_net_iface *n, json_t **ret_body, struct tp_err *err);

/* PUT /vsock (the deprecated vsock_id is never sent). */
struct fc_vsock_dev {
    uint32_t guest_cid;   /* >= 3 */
    const char *uds_path; /* required; Firecracker binds it, so it must not exist */
};
int fc_body_vsock(const struct fc_vsock_dev *v, json_t **ret_body, struct tp_err *err);

enum fc_log_level {
    FC_LOG_ERROR,
    FC_LOG_WARNING,
    FC_LOG_INFO,
    FC_LOG_DEBUG,
    FC_LOG_TRACE,
    FC_LOG_OFF,
    _FC_LOG_MAX,
    _FC_LOG_INVALID = -EINVAL,
};

/* PUT /logger */
struct fc_logger {
    const char *log_path; /* required */
    enum fc_log_level level;
    bool show_level;
    bool show_log_origin;
};
int fc_body_logger(const struct fc_logger *l, json_t **ret_body, struct tp_err *err);

/* PUT /metrics */
int fc_body_metrics(const char *metrics_path, json_t **ret_body, struct tp_err *err);

/* PUT /serial */
int fc_body_serial(const char *serial_out_path, json_t **ret_body, struct tp_err *err);

enum fc_action {
    FC_ACTION_INSTANCE_START,
    FC_ACTION_SEND_CTRL_ALT_DEL,
    FC_ACTION_FLUSH_METRICS,
    _FC_ACTION_MAX,
    _FC_ACTION_INVALID = -EINVAL,
};

/* PUT /actions */
int fc_body_action(enum fc_action a, json_t **ret_body, struct tp_err *err);

enum fc_vm_target {
    FC_VM_PAUSED,
    FC_VM_RESUMED,
    _FC_VM_MAX,
    _FC_VM_INVALID = -EINVAL,
};

/* PATCH /vm */
int fc_body_vm_state(enum fc_vm_target s, json_t **ret_body, struct tp_err *err);

enum fc_snapshot_type {
    FC_SNAPSHOT_FULL,
    FC_SNAPSHOT_DIFF,
    _FC_SNAPSHOT_MAX,
    _FC_SNAPSHOT_INVALID = -EINVAL,
};

/* PUT /snapshot/create (snapshot_type is always sent). */
struct fc_snapshot_create {
    enum fc_snapshot_type type;
    const char *snapshot_path; /* required: the state file */
    const char *mem_file_path; /* required; Diff writes dirty pages into it in place */
};
int fc_body_snapshot_create(const struct fc_snapshot_create *s, json_t **ret_body,
                            struct tp_err *err);

enum fc_mem_backend {
    FC_MEM_BACKEND_FILE,
    FC_MEM_BACKEND_UFFD,
    _FC_MEM_BACKEND_MAX,
    _FC_MEM_BACKEND_INVALID = -EINVAL,
};

struct fc_net_override {
    const char *iface_id;      /* required, fc_id_valid() */
    const char *host_dev_name; /* required */
};

/* PUT /snapshot/load. Always sends mem_backend (never the deprecated mem_file_path or
 * enable_diff_snapshots), track_dirty_pages and resume_vm; clock_realtime only when true;
 * network_overrides only when n_net_overrides > 0; vsock_override only when vsock_uds_path is
 * set. */
struct fc_snapshot_load {
    const char *snapshot_path; /* required */
    enum fc_mem_backend backend;
    const char *backend_path; /* required: the memory file, or the UFFD handler's socket */
    bool track_dirty_pages;
    bool resume_vm;
    bool clock_realtime;
    const struct fc_net_override *net_overrides;
    size_t n_net_overrides;
    const char *vsock_uds_path; /* vsock_override.uds_path */
};
int fc_body_snapshot_load(const struct fc_snapshot_load *s, json_t **ret_body, struct tp_err *err);

/* Replies. Parsers return -EPROTO for a reply that does not match the spec (not JSON, a required
 * field missing or of the wrong type, an unknown enum value); ret_* are written only on success
 * and are the caller's to clear. */

enum fc_instance_state {
    FC_INSTANCE_NOT_STARTED,
    FC_INSTANCE_RUNNING,
    FC_INSTANCE_PAUSED,
    _FC_INSTANCE_MAX,
    _FC_INSTANCE_INVALID = -EINVAL,
};

/* Firecracker's spelling ("Not started", ...), or NULL out of range. */
const char *fc_instance_state_to_string(enum fc_instance_state s);

/* GET / */
struct fc_instance_info {
    char *id;
    char *app_name;
    char *vmm_version;
    enum fc_instance_state state;
};

/* Free what info owns and reset it; NULL-safe, usable as _cleanup_. */
void fc_instance_info_clear(struct fc_instance_info *info);

int fc_parse_instance_info_json(const json_t *j, struct fc_instance_info *ret_info,
                                struct tp_err *err);
int fc_parse_instance_info(const char *buf, size_t len, struct fc_instance_info *ret_info,
                           struct tp_err *err);

/* GET /version: the firecracker_version string (e.g. "1.16.1"). */
int fc_parse_version_json(const json_t *j, char **ret_version, struct tp_err *err);
int fc_parse_version(const char *buf, size_t len, char **ret_version, struct tp_err *err);

/* The human text of an error reply, never NULL (malloc'd): "fault_message" of the API layer,
 * "error" of the HTTP layer (whose body may hold a raw newline, so it is not strict JSON), else
 * the body itself; control characters become spaces and the text is capped at
 * FC_FAULT_MAX bytes. */
#define FC_FAULT_MAX 4096
char *fc_parse_fault(const char *buf, size_t len);
