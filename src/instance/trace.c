/* Phase tracing: cheap monotonic marks, rendered to JSON for the store and a line for logs. */
#include "instance/trace.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/timeutil.h"
#include "util/xalloc.h"

void
trace_begin(struct trace *t, const char *op)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->op, sizeof(t->op), "%s", op);
    t->t0_ns = t->mark_ns = now_ns();
}

void
trace_phase(struct trace *t, const char *name)
{
    uint64_t now = now_ns();
    if (t->n < TRACE_MAX_PHASES) {
        struct trace_phase *p = &t->phases[t->n++];
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->ms = (double)(now - t->mark_ns) / 1e6;
    }
    t->mark_ns = now;
}

void
trace_span(struct trace *t, const char *name, double ms)
{
    if (t->n < TRACE_MAX_PHASES) {
        struct trace_phase *p = &t->phases[t->n++];
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->ms = ms;
    }
}

void
trace_counter(struct trace *t, const char *name, int64_t value)
{
    for (unsigned k = 0; k < t->n_counters; k++)
        if (strcmp(t->counters[k].name, name) == 0) {
            t->counters[k].value = value;
            return;
        }
    if (t->n_counters == TRACE_MAX_COUNTERS)
        return;
    struct trace_counter *c = &t->counters[t->n_counters++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->value = value;
}

void
trace_end(struct trace *t, bool ok)
{
    t->ok = ok;
    t->total_ms = (double)(now_ns() - t->t0_ns) / 1e6;
}

static double
round1(double v)
{
    return (double)(long long)(v * 10.0 + 0.5) / 10.0;
}

char *
trace_to_json(const struct trace *t)
{
    json_t *phases = json_array();
    for (unsigned i = 0; i < t->n; i++)
        json_array_append_new(phases, json_pack("{s:s, s:f}", "name", t->phases[i].name, "ms",
                                                round1(t->phases[i].ms)));
    json_t *counters = json_object();
    for (unsigned i = 0; i < t->n_counters; i++)
        json_object_set_new(counters, t->counters[i].name,
                            json_integer((json_int_t)t->counters[i].value));
    json_t *o = json_pack("{s:s, s:b, s:f, s:o, s:o}", "op", t->op, "ok", t->ok, "total_ms",
                          round1(t->total_ms), "phases", phases, "counters", counters);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        abort();
    return s;
}

char *
trace_to_line(const struct trace *t)
{
    char *line = xasprintf("%s %s %.1f ms:", t->op, t->ok ? "ok" : "failed", t->total_ms);
    for (unsigned i = 0; i < t->n; i++) {
        char *next = xasprintf("%s %s=%.1f", line, t->phases[i].name, t->phases[i].ms);
        free(line);
        line = next;
    }
    for (unsigned i = 0; i < t->n_counters; i++) {
        char *next =
            xasprintf("%s %s=%lld", line, t->counters[i].name, (long long)t->counters[i].value);
        free(line);
        line = next;
    }
    return line;
}
