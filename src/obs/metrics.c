/* Prometheus metrics: families and labelled series under one lock, rendered to text. */
#include "obs/metrics.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

struct series {
    struct series *next; /* sorted by labels */
    char *labels;
    double value;            /* counter, gauge; histogram and summary: _sum */
    uint64_t count;          /* histogram and summary */
    uint64_t *bucket_counts; /* histogram: non-cumulative, one per bucket plus +Inf */
};

struct family {
    struct family *next;
    const char *name;
    const char *help;
    enum obs_type type;
    double *buckets;
    size_t n_buckets;
    struct series *series;
};

struct obs_registry {
    pthread_mutex_t lock;
    struct family *head, **tail;
};

static const char *const type_names[_OBS_TYPE_MAX] = {
    [OBS_COUNTER] = "counter",
    [OBS_GAUGE] = "gauge",
    [OBS_HISTOGRAM] = "histogram",
    [OBS_SUMMARY] = "summary",
};

struct obs_registry *
obs_registry_new(void)
{
    struct obs_registry *r = xnew(struct obs_registry, 1);
    pthread_mutex_init(&r->lock, NULL);
    r->tail = &r->head;
    return r;
}

struct obs_registry *
obs_registry_free(struct obs_registry *r)
{
    if (!r)
        return NULL;
    for (struct family *f = r->head, *fn; f; f = fn) {
        fn = f->next;
        for (struct series *s = f->series, *sn; s; s = sn) {
            sn = s->next;
            free(s->labels);
            free(s->bucket_counts);
            free(s);
        }
        free(f->buckets);
        free(f);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
    return NULL;
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static struct obs_registry *default_registry;

static void
default_init(void)
{
    default_registry = obs_registry_new();
}

struct obs_registry *
obs_default(void)
{
    pthread_once(&default_once, default_init);
    return default_registry;
}

static struct family *
family_find(struct obs_registry *r, const char *name)
{
    for (struct family *f = r->head; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

void
obs_declare(struct obs_registry *r, const char *name, enum obs_type type, const char *help,
            const double *buckets, size_t n_buckets)
{
    pthread_mutex_lock(&r->lock);
    if (!family_find(r, name)) {
        struct family *f = xnew(struct family, 1);
        f->name = name;
        f->help = help;
        f->type = type;
        if (type == OBS_HISTOGRAM && n_buckets) {
            f->buckets = xnew(double, n_buckets);
            memcpy(f->buckets, buckets, n_buckets * sizeof(*buckets));
            f->n_buckets = n_buckets;
        }
        *r->tail = f;
        r->tail = &f->next;
    }
    pthread_mutex_unlock(&r->lock);
}

char *
obs_labels(char *buf, size_t size, ...)
{
    size_t used = 0;
    va_list ap;

    assert(size > 0);
    buf[0] = '\0';
    va_start(ap, size);
    for (const char *k; (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        int n = snprintf(buf + used, size - used, "%s%s=\"", used ? "," : "", k);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
        for (const char *p = v ? v : ""; *p && used + 3 < size; p++) {
            if (*p == '\\' || *p == '"' || *p == '\n') {
                buf[used++] = '\\';
                buf[used++] = *p == '\n' ? 'n' : *p;
            } else {
                buf[used++] = *p;
            }
        }
        if (used + 2 > size)
            break;
        buf[used++] = '"';
        buf[used] = '\0';
    }
    va_end(ap);
    buf[size - 1] = '\0';
    return buf;
}

/* Under r->lock: the series of name with labels, created in sorted place. */
static struct series *
series_get(struct obs_registry *r, const char *name, const char *labels, struct family **ret_f)
{
    struct family *f = family_find(r, name);
    struct series **at;

    assert(f); /* declared before use */
    if (!labels)
        labels = "";
    for (at = &f->series; *at; at = &(*at)->next) {
        int c = strcmp((*at)->labels, labels);
        if (c == 0) {
            *ret_f = f;
            return *at;
        }
        if (c > 0)
            break;
    }
    struct series *s = xnew(struct series, 1);
    s->labels = xstrdup(labels);
    if (f->type == OBS_HISTOGRAM)
        s->bucket_counts = xnew(uint64_t, f->n_buckets + 1);
    s->next = *at;
    *at = s;
    *ret_f = f;
    return s;
}

void
obs_counter_add(struct obs_registry *r, const char *name, const char *labels, double v)
{
    struct family *f;
    pthread_mutex_lock(&r->lock);
    series_get(r, name, labels, &f)->value += v;
    pthread_mutex_unlock(&r->lock);
}

void
obs_gauge_set(struct obs_registry *r, const char *name, const char *labels, double v)
{
    struct family *f;
    pthread_mutex_lock(&r->lock);
    series_get(r, name, labels, &f)->value = v;
    pthread_mutex_unlock(&r->lock);
}

void
obs_observe(struct obs_registry *r, const char *name, const char *labels, double v)
{
    struct family *f;
    pthread_mutex_lock(&r->lock);
    struct series *s = series_get(r, name, labels, &f);
    s->value += v;
    s->count++;
    if (f->type == OBS_HISTOGRAM) {
        size_t b = 0;
        while (b < f->n_buckets && v > f->buckets[b])
            b++;
        s->bucket_counts[b]++;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Integral values print as integers, others with enough digits to read back the same. */
static void
put_value(FILE *out, double v)
{
    if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", out);
    else if (isnan(v))
        fputs("NaN", out);
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        fprintf(out, "%.0f", v);
    else {
        /* The shortest of %.15g..%.17g that reads back as v: 0.1, not 0.10000000000000001. */
        char buf[32];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof(buf), "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
        fputs(buf, out);
    }
}

/* name{labels[,extra]} value */
static void
put_sample(FILE *out, const char *name, const char *suffix, const char *labels, const char *extra,
           double v)
{
    bool any = labels[0] || extra;
    fprintf(out, "%s%s%s%s%s%s%s ", name, suffix, any ? "{" : "", labels,
            labels[0] && extra ? "," : "", extra ? extra : "", any ? "}" : "");
    put_value(out, v);
    fputc('\n', out);
}

char *
obs_render(struct obs_registry *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    if (!out)
        abort();
    pthread_mutex_lock(&r->lock);
    for (struct family *f = r->head; f; f = f->next) {
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                type_names[f->type]);
        for (struct series *s = f->series; s; s = s->next) {
            if (f->type == OBS_COUNTER || f->type == OBS_GAUGE) {
                put_sample(out, f->name, "", s->labels, NULL, s->value);
                continue;
            }
            if (f->type == OBS_HISTOGRAM) {
                uint64_t cum = 0;
                for (size_t b = 0; b <= f->n_buckets; b++) {
                    char le[48];
                    cum += s->bucket_counts[b];
                    if (b < f->n_buckets)
                        snprintf(le, sizeof(le), "le=\"%g\"", f->buckets[b]);
                    else
                        snprintf(le, sizeof(le), "le=\"+Inf\"");
                    put_sample(out, f->name, "_bucket", s->labels, le, (double)cum);
                }
            }
            put_sample(out, f->name, "_sum", s->labels, NULL, s->value);
            put_sample(out, f->name, "_count", s->labels, NULL, (double)s->count);
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (fclose(out) != 0)
        abort();
    return text;
}
