/* `start`: boot a Stopped instance again on its existing disk. */
#include "instance/manager-internal.h"
#include "util/fs.h"

int
inst_start(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    struct inst *i;
    struct trace t;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
    if (i->rec->state == INST_RUNNING) {
        *ret = inst_record_dup(i->rec); /* nothing to do */
        goto out;
    }
    r = inst_require_state(i, "start", STATE_BIT(INST_STOPPED), err);
    if (r < 0)
        goto out;
    trace_begin(&t, "start");
    r = inst_op_begin(m, i, "start", NULL, err);
    if (r >= 0) {
        inst_crashpoint(i, "start.begin");
        r = inst_boot(m, i, &t, err);
    }
    if (r >= 0) {
        inst_crashpoint(i, "start.booted");
        /* 1: an image's workload already ran to its end. */
        r = r == 1 ? inst_save(m, i, err) : inst_transition(m, i, INST_RUNNING, err);
    }
    inst_finish_op(m, i, &t, r < 0 ? err : NULL);
    if (r >= 0)
        *ret = inst_record_dup(i->rec);
out:
    inst_release(m, i);
    return r;
}
