/* `exec`: run a command in the guest through its agent (connected lazily after a restart). */
#include <errno.h>

#include "instance/manager-internal.h"

#define EXEC_START_TIMEOUT_MS 10000

int
inst_exec_start(struct inst_manager *m, const char *ref, const struct agent_exec_req *req,
                struct agent_exec **ret, struct tp_err *err)
{
    struct inst *i;
    int r = inst_acquire(m, ref, &i, err);
    if (r < 0)
        return r;
    r = inst_require_state(i, "exec in", STATE_BIT(INST_RUNNING), err);
    if (r < 0)
        goto out;
    if (!i->rec->cfg.agent) {
        r = tp_err_set(err, -EOPNOTSUPP, "instance '%s' runs without the guest agent",
                       i->rec->name);
        goto out;
    }
    r = inst_agent_connect(m, i, AGENT_RECONNECT_TIMEOUT_MS, err);
    if (r < 0)
        goto out;
    r = agent_exec_start(i->agent, req, EXEC_START_TIMEOUT_MS, ret, err);
out:
    inst_release(m, i);
    return r;
}
