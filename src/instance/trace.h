/* Phase tracing of lifecycle operations: named phases with durations, kept as the instance's
 * last_operation, logged by the daemon and printed by `torpor ... --trace`. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define TRACE_MAX_PHASES 24

struct trace_phase {
    char name[32];
    double ms;
};

struct trace {
    char op[24];
    uint64_t t0_ns;   /* start of the operation */
    uint64_t mark_ns; /* end of the last phase */
    struct trace_phase phases[TRACE_MAX_PHASES];
    unsigned n;
    bool ok;
    double total_ms;
};

void trace_begin(struct trace *t, const char *op);
/* Close the current phase: everything since the previous mark is charged to name. */
void trace_phase(struct trace *t, const char *name);
void trace_end(struct trace *t, bool ok);
/* {"op":..,"ok":..,"total_ms":..,"phases":[{"name":..,"ms":..}]}; caller frees. */
char *trace_to_json(const struct trace *t);
/* "run 2210.4 ms: prepare=12.1 start_process=48.0 ..." for logs; caller frees. */
char *trace_to_line(const struct trace *t);
