/* `stop`: halt the VMM, discard snapshots and guest RAM; the root disk stays for `start`. */
#include <errno.h>
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
    if (unlink(i->paths.mem) < 0 && errno != ENOENT)
        return tp_err_errno(err, -errno, "remove '%s'", i->paths.mem);
    inst_sock_paths(i);
    unlink(i->api_sock);
    unlink(i->agent_sock);
    /* A stopped instance boots afresh on its own memory: it no longer needs a template. */
    inst_template_clear(i);
    return 0;
}

int
inst_stop(struct inst_manager *m, const char *ref, bool force, struct inst_record **ret,
          struct tp_err *err)
{
    struct inst *i;
    struct trace t;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
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
    r = inst_require_state(i, "stop",
                           STATE_BIT(INST_RUNNING) | STATE_BIT(INST_PAUSED) |
                               STATE_BIT(INST_STANDBY) | STATE_BIT(INST_UNKNOWN),
                           err);
    if (r < 0)
        goto out;
    trace_begin(&t, "stop");
    r = inst_op_begin(m, i, "stop", NULL, err);
    if (r >= 0) {
        inst_crashpoint(i, "stop.begin");
        r = inst_halt_vmm(m, i, &t, err);
    }
    if (r >= 0) {
        inst_crashpoint(i, "stop.halted");
        r = inst_discard_runtime_files(i, err);
    }
    if (r >= 0) {
        trace_phase(&t, "cleanup");
        inst_crashpoint(i, "stop.discarded");
    }
    if (r >= 0)
        r = inst_transition(m, i, INST_STOPPED, err);
    inst_finish_op(m, i, &t, r < 0 ? err : NULL);
    if (r >= 0)
        *ret = inst_record_dup(i->rec);
out:
    inst_release(m, i);
    if (r >= 0)
        manager_template_gc(m);
    return r;
}
