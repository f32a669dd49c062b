/* `pause` and `unpause`: freeze a Running guest's vCPUs in its VMM (Running -> Paused) and let
 * them run again (Paused -> Running). Neither needs a journal: the VMM's run state and the
 * record are written in that order, and recovery settles the one window between them (a
 * record that does not say Paused gets its VMM resumed; one that says Paused, with no
 * operation in flight, keeps its VMM paused). */
#include <errno.h>

#include "instance/manager-internal.h"
#include "util/log.h"

/* After a pause the guest's wall clock lags by the time it was frozen: hand it the host's. */
#define UNPAUSE_CLOCK_TIMEOUT_MS 5000

int
inst_pause(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    struct inst *i;
    struct trace t;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
    if (i->rec->state == INST_PAUSED) {
        r = tp_err_set(err, -EBUSY, "instance '%s' is already paused", i->rec->name);
        goto out;
    }
    if (i->rec->state != INST_RUNNING || !i->vm) {
        r = tp_err_set(err, -EBUSY, "cannot pause instance '%s': it is not running (%s)",
                       i->rec->name, inst_state_to_string(i->rec->state));
        goto out;
    }
    if (!hv_has_cap(i->vm->drv, HV_CAP_PAUSE)) {
        r = tp_err_set(err, -EOPNOTSUPP, "%s cannot pause a VM", i->vm->drv->name);
        goto out;
    }
    trace_begin(&t, "pause");
    inst_crashpoint(i, "pause.begin");
    r = hv_pause(i->vm, err);
    if (r >= 0) {
        trace_phase(&t, "pause_vm");
        /* The record still says Running: recovery would resume the VMM. */
        inst_crashpoint(i, "pause.paused");
        r = inst_transition(m, i, INST_PAUSED, err);
        if (r < 0 && hv_resume(i->vm, NULL) >= 0)
            i->rec->state = INST_RUNNING; /* not recorded: the guest runs on, as it says */
    }
    if (r >= 0)
        inst_crashpoint(i, "pause.committed");
    inst_finish_op(m, i, &t, r < 0 ? err : NULL);
    if (r >= 0)
        *ret = inst_record_dup(i->rec);
out:
    inst_release(m, i);
    return r;
}

int
inst_unpause(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    struct inst *i;
    struct trace t;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
    if (i->rec->state != INST_PAUSED || !i->vm) {
        r = tp_err_set(err, -EBUSY, "instance '%s' is not paused (%s)", i->rec->name,
                       inst_state_to_string(i->rec->state));
        goto out;
    }
    trace_begin(&t, "unpause");
    inst_crashpoint(i, "unpause.begin");
    r = hv_resume(i->vm, err);
    if (r >= 0) {
        trace_phase(&t, "resume_vm");
        /* The record still says Paused, the VMM runs: recovery calls it Running. */
        inst_crashpoint(i, "unpause.resumed");
        r = inst_transition(m, i, INST_RUNNING, err);
        if (r < 0 && hv_pause(i->vm, NULL) >= 0)
            i->rec->state = INST_PAUSED; /* as recorded */
    }
    if (r >= 0) {
        inst_crashpoint(i, "unpause.committed");
        if (i->rec->cfg.agent && hv_has_cap(i->vm->drv, HV_CAP_EXEC_AGENT)) {
            struct tp_err cerr = { 0 };
            if (inst_agent_connect(m, i, UNPAUSE_CLOCK_TIMEOUT_MS, &cerr) >= 0)
                inst_sync_clock(i);
            else
                log_warn("instance=%s op=unpause: cannot set the guest clock: %s", i->id,
                         tp_err_msg(&cerr));
            tp_err_clear(&cerr);
            trace_phase(&t, "sync_clock");
        }
    }
    inst_finish_op(m, i, &t, r < 0 ? err : NULL);
    if (r >= 0)
        *ret = inst_record_dup(i->rec);
out:
    inst_release(m, i);
    return r;
}
