/* `rm`: delete an instance's files and record; live ones only with force. */
#include <errno.h>

#include "instance/manager-internal.h"
#include "util/fs.h"

int
inst_remove(struct inst_manager *m, const char *ref, bool force, struct tp_err *err)
{
    struct inst *i;
    struct trace t;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
    bool live = i->vm || i->rec->state != INST_STOPPED;
    if (live && !force) {
        r = tp_err_set(err, -EBUSY,
                       "cannot remove instance '%s': it is %s (stop it first or force)",
                       i->rec->name, inst_state_to_string(i->rec->state));
        goto out;
    }
    bool had_vmm = i->vm || i->rec->state == INST_UNKNOWN;
    trace_begin(&t, "rm");
    r = inst_halt_vmm(m, i, &t, err);
    if (r < 0)
        goto out;
    r = fs_rm_rf(i->paths.dir, err);
    if (r >= 0)
        r = store_delete(m->store, i->id, err);
    if (r < 0) {
        /* Its VMM is gone already: the instance stays, but must not claim to be running (with
         * no VMM behind it, exec would have nothing to talk to). */
        if (had_vmm)
            inst_transition(m, i, INST_STOPPED, NULL);
        goto out;
    }
    inst_table_remove(m, i);
    manager_notify_change(m);
out:
    inst_release(m, i);
    if (r >= 0)
        manager_template_gc(m);
    return r;
}
