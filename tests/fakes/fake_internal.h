/* Shared by the fake driver's files only: its per-instance records and their lock. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "fake_driver.h"
#include "hypervisor/driver.h"

#define FAKE_STATE     "fake-vm-state v1\n"     /* what snapshot writes and restore expects */
#define FAKE_STATE_RAM "fake-vm-state v1 ram\n" /* the same, with guest memory inside */
#define FAKE_ID_MAX    64
#define FAKE_MIB       (1024ull * 1024ull)

/* One per instance id the fake has seen; lives until fake_driver_reset(). */
struct fake_inst {
    char id[FAKE_ID_MAX];
    struct fake_calls calls;
    bool fail_snapshot;
    bool fail_attach;
    bool paused;
    /* The FC-like model: the memory file the VM maps privately since its load (-1: none, its
     * memory is anonymous), with what it looked like then; and the file its next Diff may
     * write (the one it loaded or last wrote). */
    int mapped_fd;
    struct timespec mapped_mtime;
    off_t mapped_size;
    dev_t base_dev;
    ino_t base_ino;
    struct fake_inst *next;
};

/* The manager calls slots from its callers' threads and from its exit monitor. */
extern pthread_mutex_t fake_lock;

/* Find or add the entry for id; caller holds fake_lock. */
struct fake_inst *fake_inst_get(const char *id);
/* The first entry (then ->next), or NULL; caller holds fake_lock. */
struct fake_inst *fake_inst_first(void);
/* The entry of a live VM, counting the call (remembers the driver); caller holds fake_lock. */
struct fake_inst *fake_vm_enter(struct hv_vm *vm);
/* Write the fake's device state file into snap_dir (text: FAKE_STATE or FAKE_STATE_RAM). */
int fake_write_state(const char *snap_dir, const char *text, struct tp_err *err);
/* Count a snapshot call and check what every model checks (injected failure, paused VM). */
int fake_snapshot_enter(struct hv_vm *vm, const struct hv_vm_spec *spec, bool diff,
                        struct tp_err *err);

/* A broken memory rule: recorded (the test fails at teardown) and returned as -EPERM. */
int fake_violation(struct tp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* fake_fc.c: Firecracker's memory semantics. */
void fake_fc_init(struct hv_driver *drv);
/* Called at the start of every slot: a file some live VM maps must not have changed. */
void fake_fc_check_mapped(void);
/* After a restore process started: it maps snap_dir's memory image (checked). */
int fake_fc_load(struct fake_inst *fi, const struct hv_vm_spec *spec, const char *snap_dir,
                 struct tp_err *err);
