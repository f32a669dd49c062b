/* QEMU driver internals: command-line builder, accelerator choice, TSC rate, the vtable. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "hypervisor/driver.h"
#include "util/err.h"

#define QEMU_BINARY_DEFAULT "qemu-system-x86_64"
#define QEMU_BINARY_ENV     "TORPOR_QEMU" /* overrides the binary (tests, other installs) */

extern const struct hv_driver qemu_driver;

struct qmp_conn;

/* qemu_posted.c: the next per_queue buffers the guest posted on each receive queue (the even
 * ones below QEMU_POSTED_MAX_QUEUES) of its virtio-serial and virtio-net devices, as
 * guest-physical ranges (off = address; *ret owned by the caller). */
#define QEMU_POSTED_MAX_QUEUES 6 /* virtio-serial: port 0, control and port 1 receive */
#define QEMU_POSTED_PER_QUEUE  4
int qemu_posted_buffers(struct qmp_conn *c, unsigned per_queue, struct hv_mem_range **ret,
                        size_t *ret_n, struct tp_err *err);
/* The device-writable descriptors of one x-query-virtio-queue-element reply, appended to *v
 * (*n entries; grown as needed). -EPROTO on a reply of another shape. */
int qemu_posted_parse_element(const json_t *elem, struct hv_mem_range **v, size_t *n);

struct qemu_argv_opts {
    const char *binary;   /* NULL: $TORPOR_QEMU, else QEMU_BINARY_DEFAULT */
    const char *accel;    /* "kvm" | "tcg" (already resolved) */
    uint64_t tsc_khz;     /* appended as tsc_early_khz=; 0 = unknown, omitted */
    int qmp_fd;           /* listening QMP socket as numbered in QEMU */
    int agent_fd;         /* listening agent socket as numbered in QEMU */
    int net_fd;           /* spec->nic's TAP as numbered in QEMU (ignored without spec->nic) */
    bool incoming;        /* -incoming defer: wait for migrate-incoming (restore) */
    bool start_paused;    /* -S: vCPUs wait for `cont` (restore without resume on load) */
    const char *mem_path; /* the guest RAM file (memory-backend-file) */
    bool mem_private;     /* map it copy-on-write (share=off): a fork template's, never written */
};

/* Build the NULL-terminated argv for spec. -EINVAL on a spec that lacks a required field. */
int qemu_argv_build(const struct hv_vm_spec *spec, const struct qemu_argv_opts *o, char ***ret_argv,
                    struct tp_err *err);

/* "kvm" or "tcg" (static strings). override, when non-NULL, wins if it is one of the two (else
 * -EINVAL). Otherwise kvm only when cpuinfo's flags show vmx or svm and kvm_path opens read-write.
 * NULL paths mean /proc/cpuinfo and /dev/kvm. */
int qemu_accel_pick(const char *override, const char *cpuinfo_path, const char *kvm_path,
                    const char **ret_accel, struct tp_err *err);

/* Host TSC rate in kHz, measured once per process (0 where it cannot be measured). */
uint64_t qemu_tsc_khz(void);

/* qemu_version.c: "X.Y.Z" from `--version` output (-EPROTO without one); the driver's probe
 * and version_compatible slots. */
int qemu_version_parse(const char *text, char **ret);
int qemu_probe(char **ret_version, struct tp_err *err);
bool qemu_version_compatible(const char *snap, const char *now);
