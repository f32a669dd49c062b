/* Startup: re-derive each instance's state from what is really there — a live VMM found by
 * pid + start time that answers its control channel, else a snapshot, else nothing. */
#include <errno.h>
#include <string.h>

#include "instance/manager-internal.h"
#include "snapshot/snapshot.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/xalloc.h"

static enum inst_state
derive(struct inst_manager *m, struct inst *i)
{
    struct inst_record *rec = i->rec;
    const struct hv_driver *drv = hv_driver_find(rec->cfg.hypervisor);
    struct tp_err err = { 0 };
    enum inst_state st = INST_STOPPED;

    if (drv && rec->vmm_pid > 0 && proc_is_alive(rec->vmm_pid, rec->vmm_start_time)) {
        struct hv_vm_spec spec;
        enum hv_run_state rs;
        inst_spec(m, i, &spec);
        if (hv_attach(drv, &spec, rec->vmm_pid, rec->vmm_start_time, &i->vm, &err) < 0 ||
            hv_query(i->vm, &rs, &err) < 0) {
            /* Alive but not answering: say so rather than guess. */
            free(rec->last_error);
            rec->last_error =
                xasprintf("VMM pid %d does not answer: %s", (int)rec->vmm_pid, tp_err_msg(&err));
            tp_err_clear(&err);
            return INST_UNKNOWN;
        }
        monitor_watch(m->mon, i->id, i->vm);
        /* A live VMM consumed snapshot-latest (the daemon died during a restore): it is the
         * retained base now. */
        if (fs_exists(i->paths.snap_latest) &&
            snap_retire_latest(i->paths.snap_latest, i->paths.snap_base,
                               hv_has_cap(drv, HV_CAP_SNAPSHOT_BASE_REUSE), &err) < 0) {
            log_warn("instance=%s: %s", i->id, tp_err_msg(&err));
            tp_err_clear(&err);
        }
        return rs == HV_RUN_PAUSED ? INST_PAUSED : INST_RUNNING;
    }
    if (fs_exists(i->paths.snap_latest)) {
        if (snap_validate(i->paths.snap_latest, NULL, &err) >= 0)
            return INST_STANDBY;
        /* A standby that died before its snapshot was complete: there is nothing to restore. */
        free(rec->last_error);
        rec->last_error = xasprintf("incomplete snapshot discarded: %s", tp_err_msg(&err));
        tp_err_clear(&err);
        snap_discard(i->paths.snap_latest, NULL);
    }
    return st;
}

int
inst_reconcile(struct inst_manager *m, struct tp_err *err)
{
    struct inst_record **recs = NULL;
    size_t n = 0;
    int r = store_list(m->store, &recs, &n, err);
    if (r < 0)
        return r;

    for (size_t k = 0; k < n; k++) {
        struct inst *i = inst_table_add(m, TAKE_PTR(recs[k]));
        struct inst *locked;
        if (inst_acquire_id(m, i->id, &locked) < 0)
            continue;
        enum inst_state before = i->rec->state, now = derive(m, i);
        /* An Unknown VMM is alive but unattached: its pid is all stop and rm can kill it by. */
        bool forget_pid = !i->vm && now != INST_UNKNOWN;
        if (now != before || (forget_pid && i->rec->vmm_pid)) {
            /* Derived, not a user transition: record the truth directly. */
            i->rec->state = now;
            if (forget_pid)
                i->rec->vmm_pid = 0, i->rec->vmm_start_time = 0;
            struct tp_err serr = { 0 };
            if (inst_save(m, i, &serr) < 0)
                log_error("instance=%s: %s", i->id, tp_err_msg(&serr));
            tp_err_clear(&serr);
        }
        if (now != before)
            log_info("instance=%s name=%s state=%s (recorded %s)", i->id, i->rec->name,
                     inst_state_to_string(now), inst_state_to_string(before));
        else
            log_info("instance=%s name=%s state=%s", i->id, i->rec->name,
                     inst_state_to_string(now));
        inst_release(m, locked);
    }
    inst_record_array_free(recs, n);
    return 0;
}
