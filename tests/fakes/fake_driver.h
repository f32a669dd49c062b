/* A fake hypervisor driver for manager tests: its VMM is a real process (`sleep`), its
 * capabilities are whatever the test asks for, and it counts every call per instance. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hypervisor/driver.h"

#define FAKE_CAP(c) (1u << (c))

/* What the manager asked of the fake for one instance (keyed by the spec's instance id). */
struct fake_calls {
    unsigned launch;
    unsigned attach;
    unsigned pause;
    unsigned resume;
    unsigned snapshot;
    unsigned snapshot_diff; /* snapshots asked with diff = true */
    unsigned prepare_fork;
    unsigned restore;
    unsigned restore_resume_on_load; /* restores asked with resume_on_load = true */
    unsigned shutdown;
    unsigned release;
    bool last_snapshot_diff;
    bool last_restore_resume_on_load;
    pid_t pid;            /* the process last started for this instance */
    uint64_t start_time;  /* and its start time */
    char last_driver[32]; /* vm->drv->name seen by the last call that has a VM */
};

/* Whose guest memory semantics the fake has (driver.h leaves them to each driver).
 * QEMU: a shared RAM file in the instance dir, hard-linked as every snapshot's memory image; a
 * guest on a fork template maps its image copy-on-write and its snapshots carry the memory in
 * their state; a forked Running source restarts on the template.
 * FC (Firecracker): memory is anonymous after a boot; a restored VM maps the snapshot's image
 * privately, so that file must not change while it lives; a Full snapshot creates (truncates)
 * the memory file, a Diff writes pages in place into the VM's base, of the VM's size; a forked
 * Running source only resumes. Every rule is checked: a breach is refused (-EPERM) and
 * counted (fake_driver_violations). */
enum fake_model {
    FAKE_MODEL_QEMU,
    FAKE_MODEL_FC,
};

/* Choose the model of drivers initialised from now on (before any of them runs). */
void fake_driver_set_model(enum fake_model model);
enum fake_model fake_driver_model(void);

/* Memory rules broken since the last reset, and the last one's description. */
unsigned fake_driver_violations(char *ret_last, size_t size);

/* Fill drv with name (borrowed: it must outlive drv) and the capabilities in caps (a mask of
 * FAKE_CAP(HV_CAP_*)), and every slot except agent_connect (the fake has no guest agent), with
 * the memory semantics of the current model. */
void fake_driver_init(struct hv_driver *drv, const char *name, unsigned caps);

/* The calls recorded for instance id: -ENOENT when the fake never saw it. */
int fake_driver_calls(const char *id, struct fake_calls *ret);

/* Make snapshot() of instance id fail with -EIO (after counting the call) until cleared. */
void fake_driver_fail_snapshot(const char *id, bool fail);

/* Make attach() of instance id fail with -ETIMEDOUT (a VMM alive but not answering) until
 * cleared. */
void fake_driver_fail_attach(const char *id, bool fail);

/* Call fn(id, ctx) at the start of every restore() (before the snapshot is read), from the
 * thread that restores; NULL removes it. */
void fake_driver_on_restore(void (*fn)(const char *id, void *ctx), void *ctx);

/* Forget every instance (the processes must be gone). */
void fake_driver_reset(void);
