/* `restore`: start the VMM from snapshot-latest, resuming during the load where the hypervisor
 * can, then wait for the guest agent. Until the guest runs, any failure leaves the instance in
 * Standby with its snapshot untouched. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "instance/manager-internal.h"
#include "snapshot/snapshot.h"
#include "snapshot/workingset.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define DEEP_TRACE_ENV "TORPOR_RESTORE_DEEP_TRACE"

struct marks {
    struct trace *t;
    struct inst_manager *m;
    struct inst *i;
    bool journal_load; /* the guest's run will not show in the snapshot: say it may begin */
};

#define RESTORE_LOADING "{\"loading\":true}" /* journal: the load may have begun */

/* The driver's phases are crash points too: "restore.start_process" falls between the VMM's
 * start and its load. */
static void
mark_phase(void *ctx, const char *phase)
{
    struct marks *mk = ctx;
    char point[64];

    trace_phase(mk->t, phase);
    /* From here the guest may run from the snapshot. Where that leaves no trace in its memory
     * image (the driver says), recovery must be told; else snap_validate shows it. */
    if (strcmp(phase, "start_process") == 0 && mk->journal_load &&
        inst_op_progress(mk->m, mk->i, RESTORE_LOADING, NULL) < 0)
        log_warn("instance=%s: cannot journal the load", mk->i->id);
    snprintf(point, sizeof(point), "restore.%s", phase);
    inst_crashpoint(mk->i, point);
}

/* Deep trace: what the VMM paid to get the guest running (faults, bytes read from disk). */
static void
trace_vmm_counters(struct trace *t, pid_t pid)
{
    char path[64], buf[4096];
    unsigned long long minflt = 0, majflt = 0, read_bytes = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n > 0) {
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        /* Fields after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt
         * majflt: minflt is the 8th, majflt the 10th. */
        if (p &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu %*u %llu", &minflt, &majflt) == 2) {
            trace_counter(t, "vmm_minor_faults", (int64_t)minflt);
            trace_counter(t, "vmm_major_faults", (int64_t)majflt);
        }
    }
    snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    char line[128];
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "read_bytes: %llu", &read_bytes) == 1)
            trace_counter(t, "vmm_read_bytes", (int64_t)read_bytes);
}

bool
inst_base_worth_keeping(struct inst *i, const struct hv_driver *drv, const char *dir)
{
    struct hv_vm_spec spec;

    if (!drv)
        return false;
    inst_spec(i->m, i, &spec);
    return hv_base_reusable(drv, &spec, dir);
}

struct snap_prefetch *
inst_prefetch_start(struct inst *i, const char *snap_dir)
{
    _cleanup_(snap_ws_freep) struct snap_ws *ws = NULL;
    _cleanup_free_ char *memory = fs_path_join(snap_dir, HV_SNAP_MEMORY);
    struct snap_prefetch *p = NULL;
    struct tp_err e = { 0 };

    /* Advisory: without a usable working set the guest faults its memory in as before. */
    if (snap_ws_load(snap_dir, &ws, &e) < 0 ||
        snap_prefetch_start(memory, TAKE_PTR(ws), &p, &e) < 0)
        log_debug("instance=%s: no working set prefetch: %s", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
    return p;
}

void
inst_prefetch_finish(struct inst *i, struct snap_prefetch *p, struct trace *t)
{
    struct snap_prefetch_stats s;

    if (!p)
        return;
    snap_prefetch_join(p, &s);
    trace_span(t, "prefetch", s.ms);
    trace_counter(t, "prefetch_bytes", (int64_t)s.bytes);
    trace_counter(t, "prefetch_ranges", (int64_t)s.ranges);
    if (s.error < 0)
        log_debug("instance=%s: working set prefetch: %s", i->id, strerror(-s.error));
}

int
inst_restore(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    const char *deep_env = getenv(DEEP_TRACE_ENV);
    const bool deep = deep_env && strcmp(deep_env, "1") == 0;
    const struct hv_driver *drv;
    struct hv_vm_spec spec;
    struct trace t;
    struct inst *i;
    struct snap_prefetch *pf = NULL;
    bool resumed = false;
    _cleanup_(inst_nic_close) struct inst_nic nic = INST_NIC_INIT;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
    r = inst_require_state(i, "restore", STATE_BIT(INST_STANDBY), err);
    if (r < 0)
        goto out;
    drv = hv_driver_find(i->rec->cfg.hypervisor);
    if (!drv) {
        r = tp_err_set(err, -EINVAL, "unknown hypervisor '%s'", i->rec->cfg.hypervisor);
        goto out;
    }
    trace_begin(&t, "restore");
    /* Written with the VMM's pid (record_vmm), before that VMM can run: until then the
     * snapshot is only read, and recovery finds it Standby anyway. */
    inst_op_set(i, "restore", NULL);
    inst_crashpoint(i, "restore.begin");
    struct snap_manifest man;
    r = snap_validate(i->paths.snap_latest, &man, err);
    if (r >= 0)
        r = hv_check_snapshot_version(drv, man.vmm_version, err);
    if (r < 0) {
        tp_err_wrap(err, "restore '%s'", i->rec->name);
        goto done;
    }
    free(i->cmdline);
    i->cmdline = NULL;
    /* The same kernel command line the guest booted with: the VMM's argv must match. */
    r = inst_cmdline(i, &i->cmdline, err);
    if (r < 0)
        goto done;
    /* The guest's working set, read in while its VMM starts: its first faults hit the cache. */
    if (snap_has_memory(i->paths.snap_latest))
        pf = inst_prefetch_start(i, i->paths.snap_latest);
    trace_phase(&t, "prepare");

    inst_spec(m, i, &spec);
    struct marks mk = {
        .t = &t,
        .m = m,
        .i = i,
        .journal_load = !hv_load_writes_snapshot(drv, &spec, i->paths.snap_latest),
    };
    const struct hv_restore_opts ro = {
        .snap_dir = i->paths.snap_latest,
        .resume_on_load = !deep, /* deep trace keeps an explicit, separately timed resume */
        .phases = { .mark = mark_phase, .ctx = &mk },
    };
    /* The same address and MAC on a new TAP: standby's VMM took the old one along. */
    r = inst_nic_open(m, i, &spec, &nic, err);
    if (r < 0)
        goto done;
    r = hv_restore(drv, &spec, &ro, &i->vm, &resumed, err);
    if (r < 0) {
        i->rec->vmm_pid = 0; /* the driver reaped its VMM; the snapshot was only read */
        i->rec->vmm_start_time = 0;
        goto done;
    }
    monitor_watch(m->mon, i->id, i->vm);
    i->record_working_set = true;
    inst_crashpoint(i, "restore.loaded");
    if (!resumed) {
        r = hv_resume(i->vm, err);
        if (r < 0) {
            hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
            inst_drop_vmm(i);
            goto done;
        }
        r = inst_transition(m, i, INST_PAUSED, err);
        trace_phase(&t, "resume_vm");
    }
    /* The guest runs and writes its memory: the snapshot is consumed, whatever follows. */
    if (r >= 0)
        r = inst_transition(m, i, INST_RUNNING, err);
    inst_crashpoint(i, "restore.running");
    {
        struct tp_err e = { 0 };
        if (snap_retire_latest(i->paths.snap_latest, i->paths.snap_base,
                               inst_base_worth_keeping(i, drv, i->paths.snap_latest), &e) < 0)
            log_warn("instance=%s op=restore: %s", i->id, tp_err_msg(&e));
        tp_err_clear(&e);
    }
    if (r < 0)
        goto done;
    inst_crashpoint(i, "restore.retired");

    if (i->rec->cfg.agent && hv_has_cap(drv, HV_CAP_EXEC_AGENT)) {
        r = inst_agent_connect(m, i, AGENT_RECONNECT_TIMEOUT_MS, err);
        if (r < 0)
            goto done; /* Running, but say the agent did not come back */
        /* A fork child born in Standby runs for the first time: it takes its own identity
         * (the clock comes with it); any other guest only needs the clock it lost. */
        if (fs_exists(i->paths.identity_pending)) {
            trace_phase(&t, "wait_agent");
            r = inst_apply_identity(m, i, &t, err);
            if (r < 0)
                goto done;
            unlink(i->paths.identity_pending);
        } else {
            inst_sync_clock(i);
            trace_phase(&t, "wait_agent");
        }
    }
    if (deep)
        trace_vmm_counters(&t, i->vm->pid);
done:
    inst_prefetch_finish(i, pf, &t);
    inst_finish_op(m, i, &t, r < 0 ? err : NULL);
    if (r >= 0)
        *ret = inst_record_dup(i->rec);
out:
    inst_nic_close(&nic); /* under the instance lock: it may unpublish the instance's ports */
    inst_release(m, i);
    return r;
}

/* A daemon died during a restore. A VMM that started loading owns the guest from then on (it
 * resumes as part of the load): let it finish and adopt it. One that never started loading, or
 * none at all, leaves the snapshot as it was — if its memory is untouched (snap_validate). */
int
restore_recover(struct inst_manager *m, struct inst *i)
{
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    struct tp_err e = { 0 };

    (void)m;
    bool had_vmm = i->vm != NULL;
    int v = inst_recover_vmm(i);
    if (v < 0)
        return 0; /* alive, not answering: Unknown, never killed on a guess */
    if (v > 0) {
        if (fs_exists(i->paths.snap_latest) &&
            snap_retire_latest(i->paths.snap_latest, i->paths.snap_base,
                               inst_base_worth_keeping(i, drv, i->paths.snap_latest), &e) < 0)
            log_warn("instance=%s recovery: %s", i->id, tp_err_msg(&e));
        tp_err_clear(&e);
        i->rec->state = INST_RUNNING;
        log_info("instance=%s recovery: restore's VMM runs the guest: Running", i->id);
        return 0;
    }
    /* No VMM runs the guest. One found alive held nothing of it (never loaded): the snapshot
     * is as it was. One that is gone: where the guest's run leaves no trace in the memory
     * image (the load was journaled for that), a load that may have begun means the guest may
     * have run and written its disk, so the snapshot no longer matches it; else snap_validate
     * can tell. */
    bool loading = i->rec->op_data && strcmp(i->rec->op_data, RESTORE_LOADING) == 0;
    if (loading && !had_vmm)
        tp_err_set(&e, -ESTALE, "the guest may have run from its snapshot before its VMM died");
    else if (snap_validate(i->paths.snap_latest, NULL, &e) >= 0) {
        i->rec->state = INST_STANDBY;
        log_info("instance=%s recovery: restore never started the guest: Standby", i->id);
        return 0;
    }
    free(i->rec->last_error);
    i->rec->last_error = xasprintf("restore interrupted and its VMM is gone: %s", tp_err_msg(&e));
    tp_err_clear(&e);
    if (fs_exists(i->paths.snap_latest))
        snap_discard(i->paths.snap_latest, NULL);
    i->rec->state = INST_STOPPED;
    return 0;
}
