/* torpor stats: what instances' VMMs cost the host, as docker stats shows containers: CPU %
 * from two samples of the VMM's CPU time, memory as its PSS against the guest's configured
 * memory. Refreshed each second until Ctrl-C, or one sample pair with --no-stream. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "format.h"
#include "util/cleanup.h"
#include "util/macro.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define STATS_COLUMNS     7
#define STATS_SHORT_ID    12
#define STATS_FIRST_MS    500  /* between the two samples of the first CPU % (docker: ~1 s) */
#define STATS_INTERVAL_MS 1000 /* between refreshes */

enum {
    OPT_NO_STREAM,
    OPT_NO_TRUNC,
    OPT_FORMAT,
    OPT_ALL,
};

static const struct cli_syntax syntax = {
    .verb = "stats",
    .usage = "Usage: torpor stats [OPTIONS] [NAME...]\n"
             "\n"
             "Show what instances' VMMs cost the host, refreshed each second until Ctrl-C:\n"
             "CPU % of one host CPU, memory as the VMM's PSS (its resident memory, pages shared\n"
             "with fork children divided among them) against the guest's configured memory,\n"
             "what the guest itself has in use of its memory (from its agent; -- when it cannot\n"
             "say), and the VMM's threads. Without NAMEs: every Running or Paused instance; a\n"
             "NAME whose VMM does not run shows zeros.\n",
    .operands = CLI_OPERANDS_ANY,
    .flags = {
        [OPT_NO_STREAM] = { "no-stream", 0, "print one sample and exit", NULL },
        [OPT_NO_TRUNC] = { "no-trunc", 0, "print full ids", NULL },
        [OPT_FORMAT] = { "format", 0, "table, json, or a template: '{{.Name}} {{.CPUPerc}}'",
                         "FORMAT" },
        [OPT_ALL] = { "all", 'a', "also list instances whose VMM does not run (as zeros)", NULL },
    },
};

int
cli_parse_stats(int argc, char **argv, struct stats_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);
    const char *format;

    if (r < 0)
        return r;
    format = a.values[OPT_FORMAT];
    if (!a.help && format && strcmp(format, "json") != 0 && strcmp(format, "table") != 0 &&
        cli_format_check(format, err) < 0)
        return -EINVAL;
    if (!a.help && (a.flags & (1u << OPT_ALL)) && a.n_operands > 0)
        return tp_err_set(err, -EINVAL, "'stats --all' takes no NAME, got '%s'", a.operands[0]);
    *ret = (struct stats_opts){
        .names = a.operands,
        .n_names = a.n_operands,
        .no_stream = a.flags & (1u << OPT_NO_STREAM),
        .no_trunc = a.flags & (1u << OPT_NO_TRUNC),
        .all = a.flags & (1u << OPT_ALL),
        .json = format && strcmp(format, "json") == 0,
        .format =
            format && strcmp(format, "json") != 0 && strcmp(format, "table") != 0 ? format : NULL,
        .help = a.help,
    };
    return 0;
}

void
cli_format_bytes(uint64_t n, char *buf, size_t size)
{
    /* docker's units.BytesSize: binary units, four significant digits. */
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)n;
    size_t u = 0;

    while (v >= 1024.0 && u + 1 < ELEMENTSOF(units)) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, size, "%.4g%s", v, units[u]);
}

json_t *
cli_stats_row(const json_t *prev, const json_t *cur, bool no_trunc)
{
    const char *id = json_string_value(json_object_get(cur, "id"));
    const char *name = json_string_value(json_object_get(cur, "name"));
    uint64_t pss = (uint64_t)json_integer_value(json_object_get(cur, "pss_bytes"));
    uint64_t limit = (uint64_t)json_integer_value(json_object_get(cur, "memory_bytes"));
    json_int_t threads = json_integer_value(json_object_get(cur, "threads"));
    double cpu = 0.0, mem = limit ? 100.0 * (double)pss / (double)limit : 0.0;
    char used[32], lim[32];
    _cleanup_free_ char *usage = NULL, *cpu_s = NULL, *mem_s = NULL, *pids = NULL;
    _cleanup_free_ char *short_id = NULL;

    /* CPU % over the time between the samples; 100% is one host CPU, as docker counts. */
    if (prev) {
        json_int_t dcpu = json_integer_value(json_object_get(cur, "cpu_ns")) -
                          json_integer_value(json_object_get(prev, "cpu_ns"));
        json_int_t dms = json_integer_value(json_object_get(cur, "timestamp_ms")) -
                         json_integer_value(json_object_get(prev, "timestamp_ms"));
        if (dcpu > 0 && dms > 0)
            cpu = 100.0 * (double)dcpu / ((double)dms * 1e6);
    }
    cli_format_bytes(pss, used, sizeof(used));
    cli_format_bytes(limit, lim, sizeof(lim));
    usage = xasprintf("%s / %s", used, lim);
    cpu_s = xasprintf("%.2f%%", cpu);
    mem_s = xasprintf("%.2f%%", mem);
    pids = xasprintf("%lld", (long long)threads);
    id = id ? id : "";
    short_id = xstrndup(id, no_trunc ? strlen(id) : STATS_SHORT_ID);
    /* What the guest itself has in use (its agent's view); "--" when it cannot say. */
    const json_t *gt = json_object_get(cur, "guest_memory_total_bytes");
    const json_t *gu = json_object_get(cur, "guest_memory_used_bytes");
    _cleanup_free_ char *guest = NULL;
    if (json_is_integer(gt) && json_is_integer(gu)) {
        char gused[32], gtotal[32];
        cli_format_bytes((uint64_t)json_integer_value(gu), gused, sizeof(gused));
        cli_format_bytes((uint64_t)json_integer_value(gt), gtotal, sizeof(gtotal));
        guest = xasprintf("%s / %s", gused, gtotal);
    } else {
        guest = xstrdup("--");
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "ID", short_id, "Name",
                     name ? name : "", "CPUPerc", cpu_s, "MemUsage", usage, "MemPerc", mem_s,
                     "GuestMem", guest, "PIDs", pids);
}

/* ---- sampling ---------------------------------------------------------------------------- */

static volatile sig_atomic_t stats_stop;

static void
stats_on_signal(int sig)
{
    (void)sig;
    stats_stop = 1;
}

/* Wait ms, or less once Ctrl-C came; false then. */
static bool
stats_pause(int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;

    while (!stats_stop) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return true;
        poll(NULL, 0, (int)(deadline - now));
    }
    return false;
}

/* A sample of zeros for an instance whose VMM does not run (docker shows stopped containers
 * so when named). */
static json_t *
stats_zero_sample(const json_t *inst)
{
    const char *id = json_string_value(json_object_get(inst, "id"));
    const char *name = json_string_value(json_object_get(inst, "name"));

    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "id", id ? id : "", "name",
                     name ? name : "", "cpu_ns", (json_int_t)0, "threads", (json_int_t)0,
                     "pss_bytes", (json_int_t)0, "memory_bytes", (json_int_t)0, "timestamp_ms",
                     (json_int_t)0);
}

/* One sample of ref appended to samples. A VMM that does not run (409): zeros with
 * keep_stopped (a NAME the user gave, or --all), else nothing. An instance gone (404) is an
 * error for a NAME the user gave, else (removed since the listing) nothing. Failures are
 * reported; < 0 then. */
static int
stats_sample_one(const struct cli_ctx *ctx, const char *ref, bool named, bool keep_stopped,
                 json_t *samples)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path = client_instance_path(ref, "/stats");
    json_t *s = NULL;
    int r = client_call(ctx->socket, "GET", path, NULL, &s, &err);

    if (r == -ENOENT && !named)
        return 0;
    if (r == -EBUSY) {
        /* No VMM (any more): not an error. */
        json_t *inst = NULL;
        _cleanup_free_ char *ipath = client_instance_path(ref, "");
        if (!keep_stopped)
            return 0;
        if (cli_call(ctx, "GET", ipath, NULL, &inst) < 0)
            return -EIO;
        json_array_append_new(samples, stats_zero_sample(inst));
        json_decref(inst);
        return 0;
    }
    if (r < 0) {
        cli_error("%s", tp_err_msg(&err));
        return r;
    }
    json_array_append_new(samples, s);
    return 0;
}

/* Samples of the NAMEs, or of every instance (Running and Paused ones only, unless all). */
static int
stats_sample(const struct cli_ctx *ctx, const struct stats_opts *o, json_t **ret)
{
    json_auto_t *samples = json_array();
    json_auto_t *reply = NULL;
    const json_t *inst;
    size_t i;

    for (i = 0; i < o->n_names; i++)
        if (stats_sample_one(ctx, o->names[i], true, true, samples) < 0)
            return -EIO;
    if (o->n_names == 0) {
        if (cli_call(ctx, "GET", o->all ? "/v1/instances?all=true" : "/v1/instances", NULL,
                     &reply) < 0)
            return -EIO;
        json_array_foreach(json_object_get(reply, "instances"), i, inst)
        {
            const char *id = json_string_value(json_object_get(inst, "id"));
            const char *state = json_string_value(json_object_get(inst, "state"));
            bool live = state && (strcmp(state, "Running") == 0 || strcmp(state, "Paused") == 0);
            if (!id)
                continue;
            if (!live && o->all)
                json_array_append_new(samples, stats_zero_sample(inst));
            else if (live && stats_sample_one(ctx, id, false, o->all, samples) < 0)
                return -EIO;
        }
    }
    *ret = TAKE_PTR(samples);
    return 0;
}

/* The sample of the same instance in prev, or NULL. */
static const json_t *
stats_find(const json_t *prev, const json_t *cur)
{
    const char *id = json_string_value(json_object_get(cur, "id"));
    const json_t *s;
    size_t i;

    json_array_foreach(prev, i, s)
    {
        const char *pid = json_string_value(json_object_get(s, "id"));
        if (id && pid && strcmp(id, pid) == 0)
            return s;
    }
    return NULL;
}

static void
stats_print_table(const json_t *rows)
{
    static const char *const heads[STATS_COLUMNS] = {
        "ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "GUEST MEM USED / TOTAL", "PIDS"
    };
    static const char *const keys[STATS_COLUMNS] = { "ID",      "Name",     "CPUPerc", "MemUsage",
                                                     "MemPerc", "GuestMem", "PIDs" };
    size_t width[STATS_COLUMNS], i;
    const json_t *row;

    for (size_t c = 0; c < STATS_COLUMNS; c++)
        width[c] = strlen(heads[c]);
    json_array_foreach(rows, i, row) for (size_t c = 0; c < STATS_COLUMNS; c++) width[c] =
        MAX(width[c], strlen(json_string_value(json_object_get(row, keys[c]))));
    for (size_t c = 0; c < STATS_COLUMNS; c++)
        printf(c + 1 < STATS_COLUMNS ? "%-*s   " : "%.*s\n", (int)width[c], heads[c]);
    json_array_foreach(rows, i, row) for (size_t c = 0; c < STATS_COLUMNS; c++)
    {
        const char *v = json_string_value(json_object_get(row, keys[c]));
        if (c + 1 < STATS_COLUMNS)
            printf("%-*s   ", (int)width[c], v);
        else
            printf("%s\n", v);
    }
}

static int
stats_print(const struct stats_opts *o, const json_t *prev, const json_t *cur, bool clear)
{
    json_auto_t *rows = json_array();
    const json_t *s, *row;
    size_t i;

    json_array_foreach(cur, i, s)
        json_array_append_new(rows, cli_stats_row(stats_find(prev, s), s, o->no_trunc));
    /* docker's way on a terminal: clear the screen, cursor home, then the table. */
    if (clear)
        fputs("\033[2J\033[H", stdout);
    if (o->json) {
        json_array_foreach(rows, i, row)
        {
            json_dumpf(row, stdout, JSON_COMPACT);
            putchar('\n');
        }
    } else if (o->format) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        json_array_foreach(rows, i, row) if (cli_format_print(stdout, o->format, row, &err) < 0)
        {
            cli_error("%s", tp_err_msg(&err));
            return -EINVAL;
        }
    } else {
        stats_print_table(rows);
    }
    fflush(stdout);
    return 0;
}

int
cli_cmd_stats(const struct cli_ctx *ctx, const struct stats_opts *o)
{
    struct sigaction sa = { .sa_handler = stats_on_signal }; /* no SA_RESTART: poll wakes */
    json_auto_t *prev = NULL, *cur = NULL;
    bool tty = !o->no_stream && isatty(STDOUT_FILENO);

    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    stats_stop = 0;

    /* The first CPU % needs two samples, as docker's first frame does. */
    if (stats_sample(ctx, o, &prev) < 0)
        return CLI_EXIT_FAIL;
    if (!stats_pause(STATS_FIRST_MS))
        return CLI_EXIT_OK;
    for (;;) {
        if (stats_sample(ctx, o, &cur) < 0)
            return CLI_EXIT_FAIL;
        if (stats_print(o, prev, cur, tty) < 0)
            return CLI_EXIT_FAIL;
        if (o->no_stream || !stats_pause(STATS_INTERVAL_MS))
            return CLI_EXIT_OK; /* Ctrl-C ends a stream cleanly, as docker's */
        json_decref(prev);
        prev = TAKE_PTR(cur);
    }
}

int
cli_verb_stats(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct stats_opts o = { 0 };
    int r = cli_parse_stats(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_stats(ctx, &o);
}

CLI_SYNTAX_FN(cli_syntax_stats)
