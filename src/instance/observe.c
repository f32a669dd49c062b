/* Lifecycle events and operation metrics, fed from the manager's few common paths (save,
 * finish of an operation) so that every verb reports without code of its own. */
#include "instance/observe.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "instance/state.h"
#include "obs/events.h"
#include "obs/metrics.h"
#include "util/timeutil.h"

/* Seconds, from 5 ms (a pause) to 2 minutes (a slow boot under TCG). */
static const double op_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1,     2.5,  5,     10,   30,  60,   120 };

void
inst_obs_declare(void)
{
    struct obs_registry *r = obs_default();

    obs_declare(r, "torpor_operation_duration_seconds", OBS_HISTOGRAM,
                "Duration of lifecycle operations, by operation and result.", op_buckets,
                ELEMENTSOF(op_buckets));
    obs_declare(r, "torpor_operation_phase_seconds", OBS_SUMMARY,
                "Time spent in each phase of lifecycle operations.", NULL, 0);
    obs_declare(r, "torpor_operation_failures_total", OBS_COUNTER,
                "Failed lifecycle operations, by operation and errno name.", NULL, 0);
    obs_declare(r, "torpor_state_transitions_total", OBS_COUNTER,
                "Instance state changes recorded, by from and to state.", NULL, 0);
    obs_declare(r, "torpor_standby_written_bytes_total", OBS_COUNTER,
                "Guest memory bytes written to snapshots by standby.", NULL, 0);
    obs_declare(r, "torpor_restore_read_bytes_total", OBS_COUNTER,
                "Bytes the VMM read from storage while restoring.", NULL, 0);
}

static const char *
state_lower(enum inst_state s)
{
    static const char *const names[_INST_STATE_MAX] = {
        [INST_CREATED] = "created", [INST_RUNNING] = "running", [INST_PAUSED] = "paused",
        [INST_STANDBY] = "standby", [INST_STOPPED] = "stopped", [INST_UNKNOWN] = "unknown",
    };
    return (int)s >= 0 && s < _INST_STATE_MAX ? names[s] : "invalid";
}

/* Publish o (stolen) with time and id/name of i filled in. */
static void
publish(struct inst *i, json_t *o)
{
    int64_t now = wall_ns();
    json_object_set_new(o, "time", json_real((double)now / 1e9));
    json_object_set_new(o, "time_nano", json_integer((json_int_t)now));
    json_object_set_new(o, "id", json_string(i->id));
    json_object_set_new(o, "name", json_string(i->rec && i->rec->name ? i->rec->name : ""));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        abort();
    obs_publish(obs_events(), now, s);
    free(s);
}

void
inst_obs_op_start(struct inst *i, const char *op)
{
    if (strcmp(i->obs_op, op) == 0)
        return;
    snprintf(i->obs_op, sizeof(i->obs_op), "%s", op);
    publish(i, json_pack("{s:s, s:s, s:s}", "type", "instance", "action", op, "status", "start"));
}

void
inst_obs_saved(struct inst *i)
{
    enum inst_state to = i->rec->state;

    if (i->rec->op && i->rec->op[0])
        inst_obs_op_start(i, i->rec->op);
    if (to == i->obs_state)
        return;
    char labels[OBS_LABELS_MAX];
    obs_labels(labels, sizeof(labels), "from", state_lower(i->obs_state), "to", state_lower(to),
               NULL);
    inst_obs_declare();
    obs_counter_add(obs_default(), "torpor_state_transitions_total", labels, 1);
    publish(i, json_pack("{s:s, s:s, s:s}", "type", "state", "action", state_lower(to), "from",
                         state_lower(i->obs_state)));
    i->obs_state = to;
}

static int64_t
trace_count(const struct trace *t, const char *name)
{
    for (unsigned k = 0; k < t->n_counters; k++)
        if (strcmp(t->counters[k].name, name) == 0)
            return t->counters[k].value;
    return -1;
}

static void
record_metrics(const struct trace *t, bool ok, int code)
{
    struct obs_registry *r = obs_default();
    char labels[OBS_LABELS_MAX];
    const char *op = t->metrics_op[0] ? t->metrics_op : t->op;

    inst_obs_declare();
    obs_labels(labels, sizeof(labels), "op", op, "result", ok ? "ok" : "error", NULL);
    obs_observe(r, "torpor_operation_duration_seconds", labels, t->total_ms / 1e3);
    for (unsigned k = 0; k < t->n; k++) {
        obs_labels(labels, sizeof(labels), "op", op, "phase", t->phases[k].name, NULL);
        obs_observe(r, "torpor_operation_phase_seconds", labels, t->phases[k].ms / 1e3);
    }
    if (!ok) {
        const char *reason = strerrorname_np(-code);
        obs_labels(labels, sizeof(labels), "op", op, "reason", reason ? reason : "unknown", NULL);
        obs_counter_add(r, "torpor_operation_failures_total", labels, 1);
    }
    int64_t v = trace_count(t, "memory_written_bytes");
    if (ok && strcmp(t->op, "standby") == 0 && v > 0)
        obs_counter_add(r, "torpor_standby_written_bytes_total", NULL, (double)v);
    v = trace_count(t, "vmm_read_bytes");
    if (strcmp(t->op, "restore") == 0 && v > 0)
        obs_counter_add(r, "torpor_restore_read_bytes_total", NULL, (double)v);
}

static void
op_end(struct inst *i, const struct trace *t, bool ok, const char *error)
{
    _cleanup_free_ char *trace = trace_to_json(t);
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", "instance", "action", t->op, "status",
                          ok ? "ok" : "error");
    json_t *tj = json_loads(trace, 0, NULL);
    if (tj)
        json_object_set_new(o, "trace", tj);
    if (error)
        json_object_set_new(o, "error", json_string(error));
    i->obs_op[0] = '\0';
    publish(i, o);
}

void
inst_obs_op_end(struct inst *i, const struct trace *t, const struct tp_err *err)
{
    bool ok = !err || err->code == 0;
    record_metrics(t, ok, ok ? 0 : err->code);
    op_end(i, t, ok, ok ? NULL : tp_err_msg(err));
}

void
inst_obs_removed(struct inst *i, const struct trace *t)
{
    struct trace done = *t;
    trace_end(&done, true);
    record_metrics(&done, true, 0);
    op_end(i, &done, true, NULL);
}

void
inst_obs_exec(double seconds, int r)
{
    struct obs_registry *reg = obs_default();
    char labels[OBS_LABELS_MAX];

    inst_obs_declare();
    obs_labels(labels, sizeof(labels), "op", "exec", "result", r >= 0 ? "ok" : "error", NULL);
    obs_observe(reg, "torpor_operation_duration_seconds", labels, seconds);
    if (r < 0) {
        const char *reason = strerrorname_np(-r);
        obs_labels(labels, sizeof(labels), "op", "exec", "reason", reason ? reason : "unknown",
                   NULL);
        obs_counter_add(reg, "torpor_operation_failures_total", labels, 1);
    }
}
