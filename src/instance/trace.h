/* Phase tracing of lifecycle operations: named phases with durations, kept as the instance's
 * last_operation, logged by the daemon and printed by `torpor ... --trace`. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define TRACE_MAX_PHASES   24
#define TRACE_MAX_COUNTERS 8

struct trace_phase {
    char name[32];
    double ms;
};

struct trace_counter {
    char name[32];
    int64_t value;
};

struct trace {
    char op[24];
    uint64_t t0_ns;   /* start of the operation */
    uint64_t mark_ns; /* end of the last phase */
    struct trace_phase phases[TRACE_MAX_PHASES];
    unsigned n;
    struct trace_counter counters[TRACE_MAX_COUNTERS]; /* facts of the operation: bytes, faults */
    unsigned n_counters;
    bool ok;
    double total_ms;
    /* Metrics count it under this name instead of op (a fork child's own trace: op "fork" in
     * inspect, "fork_child" in metrics, so one fork counts once). "" = op. */
    char metrics_op[24];
};

void trace_begin(struct trace *t, const char *op);
/* Close the current phase: everything since the previous mark is charged to name. */
void trace_phase(struct trace *t, const char *name);
/* A phase that ran alongside the others (a worker's): recorded with its own duration, without
 * closing the current phase. Its ms overlap the sequential phases, so they do not add up. */
void trace_span(struct trace *t, const char *name, double ms);
/* Record a named fact (e.g. bytes written); later values of the same name replace earlier. */
void trace_counter(struct trace *t, const char *name, int64_t value);
void trace_end(struct trace *t, bool ok);
/* {"op":..,"ok":..,"total_ms":..,"phases":[{"name":..,"ms":..}],"counters":{..}}; caller frees. */
char *trace_to_json(const struct trace *t);
/* "run 2210.4 ms: prepare=12.1 start_process=48.0 ..." for logs; caller frees. */
char *trace_to_line(const struct trace *t);
