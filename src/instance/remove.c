/* `rm`: delete an instance's files and record; live ones only with force. */
#include <errno.h>

#include "instance/manager-internal.h"
#include "instance/observe.h"
#include "util/fs.h"

int
inst_remove(struct inst_manager *m, const char *ref, bool force, struct tp_err *err)
{
    struct inst *i;
    struct trace t;
    char id[INST_ID_LEN + 1];
    int r = store_resolve(m->store, ref, id, err);
    if (r < 0)
        return r;
    /* A boot holds the instance for as long as the guest takes: cut it short. */
    bool cancelled = force && inst_cancel_boot(m, id) >= 0;
    r = inst_acquire_id(m, id, &i);
    if (r == -ENOENT && cancelled)
        return 0; /* the failed run removed it already */
    if (r < 0)
        return tp_err_set(err, r, "no such instance '%s'", ref);
    bool live = i->vm || i->rec->state != INST_STOPPED;
    if (live && !force) {
        r = tp_err_set(err, -EBUSY,
                       "cannot remove instance '%s': it is %s (stop it first or force)",
                       i->rec->name, inst_state_to_string(i->rec->state));
        goto out;
    }
    bool had_vmm = i->vm || i->rec->state == INST_UNKNOWN;
    trace_begin(&t, "rm");
    r = inst_op_begin(m, i, "rm", NULL, err);
    if (r < 0)
        goto out;
    inst_crashpoint(i, "rm.begin");
    if (i->rec->cfg.image && i->vm) {
        /* docker rm -f: SIGKILL, not the image's stop signal and its grace period. */
        inst_kill_vmm(i);
        trace_phase(&t, "kill_vmm");
    } else {
        r = inst_halt_vmm(m, i, &t, err);
    }
    if (r < 0) {
        inst_finish_op(m, i, &t, err);
        goto out;
    }
    inst_crashpoint(i, "rm.halted");
    inst_net_release(m, i); /* before the record goes: its address may be reused at once */
    r = fs_rm_rf(i->paths.dir, err);
    if (r >= 0)
        inst_crashpoint(i, "rm.files_removed");
    if (r >= 0)
        r = store_delete(m->store, i->id, err);
    if (r < 0) {
        /* Its VMM is gone already: the instance stays, but must not claim to be running (with
         * no VMM behind it, exec would have nothing to talk to). */
        if (had_vmm)
            inst_transition(m, i, INST_STOPPED, NULL);
        inst_finish_op(m, i, &t, err);
        goto out;
    }
    inst_obs_removed(i, &t);
    inst_table_remove(m, i);
    manager_notify_change(m);
out:
    inst_release(m, i);
    if (r >= 0)
        manager_template_gc(m);
    return r;
}
