/* Prometheus metrics: a registry of counter, gauge, histogram and summary families with
 * labelled series, updated from any thread and rendered in the text exposition format 0.0.4. */
#pragma once

#include <stddef.h>

#include "util/cleanup.h"

enum obs_type {
    OBS_COUNTER,
    OBS_GAUGE,
    OBS_HISTOGRAM,
    OBS_SUMMARY, /* _sum and _count only: no quantiles */
    _OBS_TYPE_MAX,
    _OBS_TYPE_INVALID = -22,
};

#define OBS_LABELS_MAX 256 /* a series' rendered labels, e.g. op="standby",result="ok" */

struct obs_registry;

struct obs_registry *obs_registry_new(void);
/* NULL-safe; returns NULL. */
struct obs_registry *obs_registry_free(struct obs_registry *r);
DEFINE_CLEANUP(struct obs_registry, obs_registry_free)

/* The daemon's registry, created on first use and never freed. */
struct obs_registry *obs_default(void);

/* Declare a family (idempotent: a second declaration of the same name is ignored). buckets
 * (ascending upper bounds, +Inf implied) are copied; histograms only. name and help must be
 * string literals (kept, not copied). */
void obs_declare(struct obs_registry *r, const char *name, enum obs_type type, const char *help,
                 const double *buckets, size_t n_buckets);

/* Render labels as name="value" pairs from a NULL-terminated list of name, value, ...; values
 * are escaped (\\, \", \n). Truncated to size; returns buf. */
char *obs_labels(char *buf, size_t size, ...);

/* Updates on a series (created on first use) of a declared family; an undeclared name is a
 * programmer error. labels may be NULL or "" for none. */
void obs_counter_add(struct obs_registry *r, const char *name, const char *labels, double v);
void obs_gauge_set(struct obs_registry *r, const char *name, const char *labels, double v);
/* Histograms: one observation into its buckets, _sum and _count; summaries: _sum and _count. */
void obs_observe(struct obs_registry *r, const char *name, const char *labels, double v);

/* The registry in the text exposition format: families in declaration order, series sorted by
 * their labels. Caller frees. */
char *obs_render(struct obs_registry *r);
