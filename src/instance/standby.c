/* `standby`: pause → snapshot (durable) → VMM exits → memory back to the host → Standby.
 * A failure leaves either a running VM or a valid snapshot, never neither. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "instance/manager-internal.h"
#include "snapshot/snapshot.h"
#include "snapshot/workingset.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

/* The snapshot failed with the VM paused: let the guest run again and drop the target, so a
 * half-written base is never reused (the next standby is a full one). */
static int
roll_back(struct inst_manager *m, struct inst *i)
{
    struct tp_err e = { 0 };
    int r = 0;

    if (snap_discard(i->paths.snap_latest, &e) < 0)
        log_warn("instance=%s op=standby: %s", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
    if (!hv_exited(i->vm)) {
        if (hv_resume(i->vm, &e) >= 0)
            r = inst_transition(m, i, INST_RUNNING, &e);
        else /* The guest is intact, only paused: keep it (Paused) rather than kill it. */
            log_warn("instance=%s op=standby: cannot resume, left Paused: %s", i->id,
                     tp_err_msg(&e));
    } else {
        /* The VMM died mid-standby and no snapshot completed: say so. */
        log_warn("instance=%s op=standby: VMM lost during snapshot: %s", i->id, tp_err_msg(&e));
        hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
        inst_drop_vmm(i);
        r = inst_transition(m, i, INST_STOPPED, &e);
    }
    if (r < 0)
        log_error("instance=%s op=standby: %s", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
    return r;
}

/* Make the snapshot complete and durable while the VMM still holds the guest: if this fails the
 * VM can still be resumed. */
static int
take_snapshot(struct inst *i, const struct hv_vm_spec *spec, bool reuse, struct trace *t,
              struct tp_err *err)
{
    struct snap_manifest man = {
        .version = SNAP_MANIFEST_VERSION,
        .created_ms = wall_ms(),
        .memory_mib = i->rec->cfg.memory_mib,
        .vcpus = i->rec->cfg.vcpus,
    };
    uint64_t written = 0;
    bool diff = false;
    int r;

    snprintf(man.hypervisor, sizeof(man.hypervisor), "%s", i->vm->drv->name);
    const char *vmm_version = hv_version(i->vm->drv, NULL);
    snprintf(man.vmm_version, sizeof(man.vmm_version), "%s", vmm_version ? vmm_version : "");
    r = snap_prepare_target(i->paths.snap_base, i->paths.snap_latest, reuse, &diff, err);
    if (r < 0)
        return r;
    man.diff = diff;
    inst_crashpoint(i, "standby.target");
    r = inst_failpoint(i, "standby.snapshot", err);
    if (r >= 0)
        r = hv_snapshot(i->vm, spec, i->paths.snap_latest, diff, err);
    if (r < 0)
        return tp_err_wrap(err, "snapshot");
    inst_crashpoint(i, "standby.saved");
    r = snap_commit(i->paths.snap_latest, &man, &written, err);
    if (r < 0)
        return tp_err_wrap(err, "snapshot");
    trace_counter(t, "diff", diff);
    trace_counter(t, "memory_in_state", !snap_has_memory(i->paths.snap_latest));
    trace_counter(t, "memory_written_bytes", (int64_t)written);
    return 0;
}

/* The pages of the memory image the guest touched since its restore, read from its VMM's page
 * tables while it still holds them (the page cache would also show what a prefetch read), and
 * the receive buffers the guest has posted, which the VMM fills as soon as the guest runs
 * again (the agent channel's next message): the next restore reads them in first. A posted
 * buffer is a page the guest has not touched since it posted it, and a VMM's first touch of a
 * page missing from the cache reads megabytes around it (QEMU maps guest RAM MADV_HUGEPAGE:
 * 4 MiB). Advisory: a failure only costs that. */
static void
record_working_set(struct inst *i, const struct hv_vm_spec *spec, struct trace *t)
{
    _cleanup_(snap_ws_freep) struct snap_ws *ws = NULL;
    _cleanup_(snap_ws_freep) struct snap_ws *posted = NULL;
    _cleanup_(snap_ws_freep) struct snap_ws *both = NULL;
    _cleanup_free_ struct hv_mem_range *bufs = NULL;
    size_t nbufs = 0;
    struct tp_err e = { 0 };

    if (snap_ws_from_process(i->vm->pid, i->paths.snap_latest, &ws, &e) < 0) {
        log_debug("instance=%s op=standby: no working set recorded: %s", i->id, tp_err_msg(&e));
        tp_err_clear(&e);
        return;
    }
    if (hv_posted_buffers(i->vm, spec, &bufs, &nbufs, &e) < 0) {
        log_debug("instance=%s op=standby: no posted buffers: %s", i->id, tp_err_msg(&e));
        tp_err_clear(&e);
    }
    _cleanup_free_ struct snap_ws_range *ext = nbufs ? xnew(struct snap_ws_range, nbufs) : NULL;
    for (size_t k = 0; k < nbufs; k++)
        ext[k] = (struct snap_ws_range){ .off = bufs[k].off, .len = bufs[k].len };
    posted = snap_ws_from_extents(ext, nbufs, ws->page_size, (uint64_t)spec->memory_mib << 20);
    _cleanup_(snap_ws_freep) struct snap_ws *runs = snap_ws_union(ws, i->ws_prev);
    both = snap_ws_union(runs, posted);
    if (snap_ws_save(i->paths.snap_latest, both, &e) < 0) {
        log_debug("instance=%s op=standby: no working set recorded: %s", i->id, tp_err_msg(&e));
        tp_err_clear(&e);
        return;
    }
    trace_counter(t, "working_set_bytes", (int64_t)ws->bytes);
    trace_counter(t, "working_set_ranges", (int64_t)ws->n);
    trace_counter(t, "working_set_posted_bytes", (int64_t)(both->bytes - runs->bytes));
    trace_counter(t, "working_set_saved_bytes", (int64_t)both->bytes);
    snap_ws_free(i->ws_prev);
    i->ws_prev = TAKE_PTR(ws);
}

int
inst_standby(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    struct inst *i;
    struct trace t;
    uint64_t resident = 0;
    bool gc = false;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
    r = inst_require_state(i, "standby", STATE_BIT(INST_RUNNING), err);
    if (r < 0)
        goto out;
    if (!i->vm) {
        r = tp_err_set(err, -EBUSY, "instance '%s' has no VMM to snapshot", i->rec->name);
        goto out;
    }
    const struct hv_driver *drv = i->vm->drv;
    if (!hv_has_cap(drv, HV_CAP_SNAPSHOT) || !hv_has_cap(drv, HV_CAP_PAUSE)) {
        r = tp_err_set(err, -EOPNOTSUPP, "%s cannot snapshot: standby is not supported", drv->name);
        goto out;
    }
    trace_begin(&t, "standby");
    /* The journal is written with the Paused state: until then nothing needs undoing that
     * recovery would not undo anyway (a paused VMM found without a journal is resumed). */
    inst_op_set(i, "standby", NULL);
    inst_crashpoint(i, "standby.begin");

    r = hv_pause(i->vm, err);
    if (r < 0)
        goto done;
    r = inst_transition(m, i, INST_PAUSED, err);
    if (r < 0) {
        /* Could not even record the pause (e.g. a full disk): the guest runs on. */
        hv_resume(i->vm, NULL);
        i->rec->state = INST_RUNNING;
        goto done;
    }
    trace_phase(&t, "pause_vm");
    inst_crashpoint(i, "standby.paused");

    /* A template-backed guest (a fork) is snapshotted on its own from now on. */
    char tid[INST_ID_LEN + 1];
    bool templated = inst_template_get(i, tid) > 0;
    /* What a retained base is, and whether this VM's next snapshot may build on it, is the
     * driver's to say. */
    struct hv_vm_spec spec;
    inst_spec(m, i, &spec);
    bool reuse = hv_base_reusable(drv, &spec, i->paths.snap_base);
    r = take_snapshot(i, &spec, reuse, &t, err);
    if (r < 0) {
        roll_back(m, i);
        goto done;
    }
    trace_phase(&t, "create_snapshot");

    /* The snapshot is durable: from here on the instance ends in Standby whatever happens. */
    inst_crashpoint(i, "standby.committed");
    /* A template-backed guest's memory travelled in its state: there is no image to read in. */
    if (i->record_working_set && !templated) {
        record_working_set(i, &spec, &t);
        trace_phase(&t, "record_working_set");
        inst_crashpoint(i, "standby.working_set");
    }
    i->agent = agent_conn_free(i->agent);
    inst_failpoint(i, "standby.shutdown", NULL);
    if (hv_has_cap(drv, HV_CAP_GRACEFUL_VMM_SHUTDOWN)) {
        struct tp_err e = { 0 };
        if (hv_shutdown(i->vm, VMM_SHUTDOWN_TIMEOUT_MS, &e) < 0)
            log_warn("instance=%s op=standby: graceful VMM exit failed, killing: %s", i->id,
                     tp_err_msg(&e));
        tp_err_clear(&e);
    }
    if (!hv_exited(i->vm))
        hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
    inst_drop_vmm(i);
    trace_phase(&t, "shutdown_vmm");
    inst_crashpoint(i, "standby.vmm_down");

    struct tp_err e = { 0 };
    if (snap_release_memory(i->paths.snap_latest, &resident, &e) < 0)
        log_warn("instance=%s op=standby: %s", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
    trace_counter(&t, "memory_resident_bytes", (int64_t)resident);
    trace_phase(&t, "release_memory");
    inst_crashpoint(i, "standby.released");

    r = inst_transition(m, i, INST_STANDBY, err);
    /* Its memory now travels in its own snapshot: the template may go. */
    if (r >= 0 && templated) {
        inst_template_clear(i);
        gc = true;
    }
done:
    inst_finish_op(m, i, &t, r < 0 ? err : NULL);
    if (r >= 0)
        *ret = inst_record_dup(i->rec);
out:
    inst_release(m, i);
    if (gc)
        manager_template_gc(m);
    return r;
}

/* A daemon died during a standby. The snapshot decides: complete and durable → finish (the VMM
 * goes, Standby); not → it never happened (the VM runs on, the target is discarded, so the
 * next standby is a full one). */
int
standby_recover(struct inst_manager *m, struct inst *i)
{
    struct tp_err e = { 0 };
    struct snap_manifest man;
    uint64_t resident = 0;

    if (snap_validate(i->paths.snap_latest, &man, &e) >= 0) {
        if (i->vm) {
            hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
            inst_drop_vmm(i);
        }
        snap_release_memory(i->paths.snap_latest, &resident, NULL);
        inst_template_clear(i); /* as standby does: its memory travels in its snapshot */
        i->rec->state = INST_STANDBY;
        log_info("instance=%s recovery: standby had a durable snapshot: Standby", i->id);
        tp_err_clear(&e);
        return 0;
    }
    log_info("instance=%s recovery: standby had no complete snapshot (%s)", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
    snap_discard(i->paths.snap_latest, NULL);
    if (i->vm) {
        if (hv_resume(i->vm, &e) >= 0)
            i->rec->state = INST_RUNNING;
        else
            inst_recover_unknown(i, &e); /* the guest is there, paused: never killed on a guess */
        return 0;
    }
    /* Only a VMM that died with the host (or on its own) ends here: its memory is gone. */
    free(i->rec->last_error);
    i->rec->last_error = xasprintf("VMM lost during standby, before its snapshot was complete%s%s",
                                   e.code ? ": " : "", e.code ? tp_err_msg(&e) : "");
    tp_err_clear(&e);
    i->rec->state = INST_STOPPED;
    return 0;
}
