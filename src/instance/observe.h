/* What the lifecycle manager tells the outside about itself: operation and state-change events
 * on the event bus, and the operation metrics. Only the instance layer includes this. */
#pragma once

#include "instance/manager-internal.h"
#include "instance/trace.h"

/* Declare the manager's metric families in obs_default() (idempotent). */
void inst_obs_declare(void);
/* i (locked) begins op: a "start" event, once per operation. */
void inst_obs_op_start(struct inst *i, const char *op);
/* i's record was saved: a state event when its state differs from the last one told. */
void inst_obs_saved(struct inst *i);
/* i's operation t ended (err NULL or code 0: ok): its metrics and an "ok"/"error" event with
 * the trace. */
void inst_obs_op_end(struct inst *i, const struct trace *t, const struct tp_err *err);
/* i was removed (rm succeeded): its end event. */
void inst_obs_removed(struct inst *i, const struct trace *t);
