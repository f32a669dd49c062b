/* The one caller of driver slots: capability checks, then the driver; generic process control. */
#pragma once

#include "hypervisor/driver.h"
#include "util/cleanup.h"

/* Each returns -EOPNOTSUPP (with a message naming driver and capability) when the driver lacks
 * what the operation needs. */
int hv_launch(const struct hv_driver *drv, const struct hv_vm_spec *spec, struct hv_vm **ret_vm,
              struct tp_err *err);
int hv_attach(const struct hv_driver *drv, const struct hv_vm_spec *spec, pid_t pid,
              uint64_t start_time, struct hv_vm **ret_vm, struct tp_err *err);
int hv_query(struct hv_vm *vm, enum hv_run_state *ret, struct tp_err *err);
int hv_pause(struct hv_vm *vm, struct tp_err *err);
int hv_resume(struct hv_vm *vm, struct tp_err *err);
int hv_shutdown(struct hv_vm *vm, int timeout_ms, struct tp_err *err);
int hv_snapshot(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *snap_dir, bool diff,
                struct tp_err *err);
/* Guest memory (driver.h): whether the next snapshot may be a diff onto base_dir (false also
 * without HV_CAP_SNAPSHOT_BASE_REUSE); fork preparation; the driver's memory files; whether
 * a run from snap_dir shows in it. */
bool hv_base_reusable(const struct hv_driver *drv, const struct hv_vm_spec *spec,
                      const char *base_dir);
int hv_prepare_fork(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *tdir,
                    bool keep_source, bool *ret_restart, struct tp_err *err);
int hv_drop_memory(const struct hv_driver *drv, const struct hv_vm_spec *spec, bool running,
                   struct tp_err *err);
bool hv_load_writes_snapshot(const struct hv_driver *drv, const struct hv_vm_spec *spec,
                             const char *snap_dir);
int hv_restore(const struct hv_driver *drv, const struct hv_vm_spec *spec,
               const struct hv_restore_opts *o, struct hv_vm **ret_vm, bool *ret_resumed,
               struct tp_err *err);
/* The driver's socket file names (driver.h), defaults applied. */
const char *hv_api_sock_name(const struct hv_driver *drv);
const char *hv_agent_sock_name(const struct hv_driver *drv);
/* The VMM's version, probed once per driver and cached: borrowed, NULL when the driver cannot
 * tell (the error says why, once). */
const char *hv_version(const struct hv_driver *drv, struct tp_err *err);
/* 0 when a snapshot of VMM version snap (NULL: unrecorded) loads with this host's VMM;
 * -EPROTONOSUPPORT naming both versions otherwise. */
int hv_check_snapshot_version(const struct hv_driver *drv, const char *snap, struct tp_err *err);
int hv_finish_load(struct hv_vm *vm, int timeout_ms, struct tp_err *err);
/* drv->posted_buffers, or -EOPNOTSUPP without it. */
int hv_posted_buffers(struct hv_vm *vm, const struct hv_vm_spec *spec, struct hv_mem_range **ret,
                      size_t *ret_n, struct tp_err *err);
int hv_agent_connect(struct hv_vm *vm, const struct hv_vm_spec *spec, struct tp_err *err);

/* SIGKILL the VMM through its pidfd and wait (bounded) for it to be gone. */
int hv_kill(struct hv_vm *vm, int timeout_ms, struct tp_err *err);
/* How an exited VMM ended, without reaping it: its exit status, or 128 + the signal that
 * killed it (docker's convention). -EAGAIN while it runs; -ECHILD when it is not our child (a
 * VMM adopted after a restart) or was reaped already. */
int hv_exit_code(const struct hv_vm *vm);
/* True once the VMM process has exited (pidfd readable); never blocks. */
bool hv_exited(const struct hv_vm *vm);
/* The same, waiting up to timeout_ms for the exit. */
bool hv_wait_exited(const struct hv_vm *vm, int timeout_ms);
/* Driver release + close pidfd + free. NULL-safe; returns NULL. Does not stop the VMM. */
struct hv_vm *hv_vm_release(struct hv_vm *vm);
DEFINE_CLEANUP(struct hv_vm, hv_vm_release)
