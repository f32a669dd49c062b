/* `stop` and `kill`: halt the VMM (kill: at once), discard snapshots and guest RAM; the root disk
 * stays for `start`. */
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "instance/manager-internal.h"
#include "util/fs.h"

/* Files that mean nothing once the VMM is gone. */
int
inst_discard_runtime_files(struct inst *i, struct tp_err *err)
{
    int r;
    if ((r = fs_rm_rf(i->paths.snap_latest, err)) < 0 ||
        (r = fs_rm_rf(i->paths.snap_base, err)) < 0)
        return r;
    /* The guest memory files the driver keeps (an unknown driver's go with the dir). */
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    if (drv) {
        struct hv_vm_spec spec;
        inst_spec(i->m, i, &spec);
        if ((r = hv_drop_memory(drv, &spec, false, err)) < 0)
            return r;
    }
    inst_sock_paths(i);
    unlink(i->api_sock);
    unlink(i->agent_sock);
    /* A stopped instance boots afresh on its own memory: it no longer needs a template. */
    inst_template_clear(i);
    return 0;
}

/* stop (graceful: the guest syncs its disk, the VMM exits cleanly where it can) and kill (the
 * VMM is killed at once: a power cut). Both journal their op; recovery finishes either. */
static int
stop_or_kill(struct inst_manager *m, const char *ref, bool force, bool hard,
             struct inst_record **ret, struct tp_err *err)
{
    const char *op = hard ? "kill" : "stop";
    struct inst *i;
    struct trace t;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
    if (hard && !i->vm && i->rec->state != INST_UNKNOWN) {
        /* docker kill: "container X is not running" (Standby has no VMM: nothing to kill). */
        r = tp_err_set(err, -EBUSY, "cannot kill instance '%s': it is not running (%s)",
                       i->rec->name, inst_state_to_string(i->rec->state));
        goto out;
    }
    if (i->rec->state == INST_STOPPED && !i->vm) {
        *ret = inst_record_dup(i->rec); /* nothing to do */
        goto out;
    }
    if (i->rec->state == INST_STANDBY && !force) {
        r = tp_err_set(err, -EBUSY,
                       "instance '%s' is in Standby: stopping it discards its snapshot, the "
                       "guest's memory (restore it, or force: torpor stop -f)",
                       i->rec->name);
        goto out;
    }
    r = inst_require_state(i, op,
                           STATE_BIT(INST_RUNNING) | STATE_BIT(INST_PAUSED) |
                               STATE_BIT(INST_STANDBY) | STATE_BIT(INST_UNKNOWN),
                           err);
    if (r < 0)
        goto out;
    trace_begin(&t, op);
    r = inst_op_begin(m, i, op, NULL, err);
    if (r >= 0) {
        inst_crashpoint(i, hard ? "kill.begin" : "stop.begin");
        if (hard) {
            /* No sync, no graceful exit: what the guest had not written is lost, as on a
             * power cut (docker kill's SIGKILL). */
            if (i->vm && (r = hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, err)) >= 0)
                inst_drop_vmm(i);
            else if (!i->vm && i->rec->vmm_pid > 0)
                r = inst_kill_recorded_vmm(i, err);
            trace_phase(&t, "kill_vmm");
        } else
            r = inst_halt_vmm(m, i, &t, err);
    }
    if (r >= 0) {
        inst_crashpoint(i, hard ? "kill.halted" : "stop.halted");
        r = inst_discard_runtime_files(i, err);
    }
    if (r >= 0) {
        trace_phase(&t, "cleanup");
        inst_crashpoint(i, hard ? "kill.discarded" : "stop.discarded");
    }
    if (r >= 0) {
        i->rec->exit_code = hard ? 128 + SIGKILL : 0;
        if (!hard && i->rec->cfg.image) {
            /* docker stop: the code the workload ended with (e.g. 143 for SIGTERM). */
            int code = inst_workload_exit_code(i);
            i->rec->exit_code = code >= 0 ? code : 128 + SIGKILL;
        }
        r = inst_transition(m, i, INST_STOPPED, err);
    }
    inst_finish_op(m, i, &t, r < 0 ? err : NULL);
    if (r >= 0)
        *ret = inst_record_dup(i->rec);
out:
    inst_release(m, i);
    if (r >= 0)
        manager_template_gc(m);
    return r;
}

int
inst_stop(struct inst_manager *m, const char *ref, bool force, struct inst_record **ret,
          struct tp_err *err)
{
    return stop_or_kill(m, ref, force, false, ret, err);
}

int
inst_kill(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    return stop_or_kill(m, ref, false, true, ret, err);
}
