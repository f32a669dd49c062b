/* torpor ps: list instances as a table, a JSON array, or ids only. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"
#include "format.h"
#include "util/cleanup.h"
#include "util/macro.h"
#include "util/xalloc.h"

#define PS_COLUMNS  9
#define PS_SHORT_ID 12

enum {
    FLAG_ALL = 1u << 0,
    FLAG_JSON = 1u << 1,
    FLAG_QUIET = 1u << 2,
    FLAG_NO_TRUNC = 1u << 3,
    FLAG_FORMAT = 1u << 4,
    FLAG_FILTER = 1u << 5,
};
#define OPT_FILTER 5

static const struct cli_syntax syntax = {
    .verb = "ps",
    .usage = "Usage: torpor ps [OPTIONS]\n"
             "\n"
             "List instances (running ones unless --all).\n",
    .operands = CLI_OPERANDS_NONE,
    .flags = {
        { "all", 'a', "include stopped instances", NULL },
        { "json", 0, "print the instances as a JSON array", NULL },
        { "quiet", 'q', "print ids only", NULL },
        { "no-trunc", 0, "print full ids", NULL },
        { "format", 0, "table, json, or a template: '{{.Name}} {{.State}}'", "FORMAT" },
        { "filter", 'f', "state=STATE, name=PART, id=PREFIX (repeatable)", "FILTER" },
    },
};

/* --filter is repeatable: keep each, in order. */
static void
ps_on_option(size_t flag, const char *value, void *userdata)
{
    struct ps_opts *o = userdata;
    if (flag == OPT_FILTER && o->n_filters < PS_FILTERS_MAX)
        o->filters[o->n_filters++] = value;
    else if (flag == OPT_FILTER)
        o->n_filters = PS_FILTERS_MAX + 1; /* refused below */
}

static const char *const filter_keys[] = { "state", "status", "name", "id" };

static int
filter_check(const char *f, struct tp_err *err)
{
    const char *eq = strchr(f, '=');
    for (size_t k = 0; eq && k < ELEMENTSOF(filter_keys); k++)
        if (strlen(filter_keys[k]) == (size_t)(eq - f) &&
            strncmp(f, filter_keys[k], (size_t)(eq - f)) == 0)
            return 0;
    return tp_err_set(err, -EINVAL, "--filter '%s': expected state=STATE, name=PART or id=PREFIX",
                      f);
}

/* The key a filter is about ("status" is docker's word for state). */
static const char *
filter_key(const char *f, const char **ret_value)
{
    const char *eq = strchr(f, '=');
    *ret_value = eq + 1;
    if (strncmp(f, "status=", 7) == 0 || strncmp(f, "state=", 6) == 0)
        return "state";
    return strncmp(f, "name=", 5) == 0 ? "name" : "id";
}

/* docker's rule: values of one key are alternatives, different keys must all match. */
static bool
filter_match(const struct ps_opts *o, const json_t *inst)
{
    static const char *const keys[] = { "state", "name", "id" };

    for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
        const char *have = json_string_value(json_object_get(inst, keys[k]));
        bool asked = false, hit = false;
        for (size_t i = 0; i < o->n_filters; i++) {
            const char *want;
            if (strcmp(filter_key(o->filters[i], &want), keys[k]) != 0)
                continue;
            asked = true;
            if (!have)
                continue;
            if (k == 0)
                hit |= strcasecmp(have, want) == 0; /* state: the word, any case */
            else if (k == 1)
                hit |= strstr(have, want) != NULL; /* name: a part of it */
            else
                hit |= strncmp(have, want, strlen(want)) == 0; /* id: a prefix */
        }
        if (asked && !hit)
            return false;
    }
    return true;
}

int
cli_parse_ps(int argc, char **argv, struct ps_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    struct ps_opts f = { 0 };
    int r = cli_parse_args_each(&syntax, argc, argv, ps_on_option, &f, &a, err);

    if (r < 0)
        return r;
    if (!a.help && f.n_filters > PS_FILTERS_MAX)
        return tp_err_set(err, -EINVAL, "at most %d --filter options", PS_FILTERS_MAX);
    for (size_t i = 0; !a.help && i < f.n_filters; i++)
        if (filter_check(f.filters[i], err) < 0)
            return -EINVAL;
    const char *format = a.values[4];
    bool json = (a.flags & FLAG_JSON) || (format && strcmp(format, "json") == 0);
    if (format && (strcmp(format, "json") == 0 || strcmp(format, "table") == 0))
        format = NULL;
    if (!a.help && json + !!(a.flags & FLAG_QUIET) + !!format > 1)
        return tp_err_set(err, -EINVAL,
                          "options '--json', '--format' and '--quiet' exclude each other");
    if (!a.help && format && cli_format_check(format, err) < 0)
        return -EINVAL;
    *ret = (struct ps_opts){
        .n_filters = f.n_filters,
        .all = a.flags & FLAG_ALL,
        .json = json,
        .quiet = a.flags & FLAG_QUIET,
        .no_trunc = a.flags & FLAG_NO_TRUNC,
        .format = format,
        .help = a.help,
    };
    memcpy(ret->filters, f.filters, sizeof(f.filters));
    return 0;
}

/* Seconds since the epoch of "YYYY-MM-DDTHH:MM:SS[.fff]Z", or -1. */
static int64_t
parse_timestamp(const char *s)
{
    struct tm tm = { 0 };
    const char *end;

    if (!s)
        return -1;
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -1;
    return (int64_t)timegm(&tm);
}

static char *
cell_str(const json_t *inst, const char *key)
{
    const char *s = json_string_value(json_object_get(inst, key));
    return xstrdup(s ? s : "-");
}

static char *
cell_int(const json_t *inst, const char *key, const char *unit)
{
    const json_t *v = json_object_get(inst, key);
    if (!json_is_integer(v))
        return xstrdup("-");
    return xasprintf("%lld%s", (long long)json_integer_value(v), unit);
}

/* docker ps's IMAGE: the familiar form (busybox, user/app:1, reg:5000/x:v1); "default" for the
 * built-in guest, "-" for a user's rootfs. */
static char *
cell_image(const json_t *inst)
{
    const char *s = json_string_value(json_object_get(inst, "image"));
    if (!s)
        return xstrdup(json_is_string(json_object_get(inst, "rootfs")) ? "-" : "default");
    if (strncmp(s, "docker.io/library/", 18) == 0)
        s += 18;
    else if (strncmp(s, "docker.io/", 10) == 0)
        s += 10;
    size_t n = strlen(s);
    if (n > 7 && strcmp(s + n - 7, ":latest") == 0 && !strchr(s, '@'))
        n -= 7;
    return xstrndup(s, n);
}

static void
print_table(const json_t *list, bool no_trunc)
{
    static const char *const heads[PS_COLUMNS] = { "ID",    "IMAGE", "NAME", "STATE",  "MEMORY",
                                                   "VCPUS", "PID",   "IP",   "CREATED" };
    size_t n = json_array_size(list), width[PS_COLUMNS];
    _cleanup_free_ char **cells = xnew(char *, (n + 1) * PS_COLUMNS);
    int64_t now = (int64_t)time(NULL);

    for (size_t c = 0; c < PS_COLUMNS; c++) {
        cells[c] = xstrdup(heads[c]);
        width[c] = strlen(heads[c]);
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *inst = json_array_get(list, i);
        char **row = cells + (i + 1) * PS_COLUMNS;
        const char *id = json_string_value(json_object_get(inst, "id"));
        int64_t created = parse_timestamp(json_string_value(json_object_get(inst, "created_at")));
        char ago[64];

        row[0] = id ? xstrndup(id, no_trunc ? strlen(id) : PS_SHORT_ID) : xstrdup("-");
        row[1] = cell_image(inst);
        row[2] = cell_str(inst, "name");
        row[3] = cell_str(inst, "state");
        row[4] = cell_int(inst, "memory_mib", "MiB");
        row[5] = cell_int(inst, "vcpus", "");
        row[6] = cell_int(inst, "pid", "");
        row[7] = cell_str(json_object_get(inst, "network"), "ip");
        if (created >= 0) {
            cli_format_ago(now - created, ago, sizeof(ago));
            row[8] = xstrdup(ago);
        } else {
            row[8] = xstrdup("-");
        }
        for (size_t c = 0; c < PS_COLUMNS; c++)
            width[c] = MAX(width[c], strlen(row[c]));
    }
    for (size_t i = 0; i <= n; i++) {
        char **row = cells + i * PS_COLUMNS;
        for (size_t c = 0; c < PS_COLUMNS; c++) {
            if (c + 1 < PS_COLUMNS)
                printf("%-*s   ", (int)width[c], row[c]);
            else
                printf("%s\n", row[c]);
            free(row[c]);
        }
    }
}

int
cli_cmd_ps(const struct cli_ctx *ctx, const struct ps_opts *o)
{
    json_t *reply = NULL, *list;
    const json_t *inst;
    size_t i;

    /* A state filter names the states wanted, Stopped ones too (docker: status=exited). */
    bool all = o->all;
    for (size_t k = 0; k < o->n_filters; k++) {
        const char *v;
        all |= strcmp(filter_key(o->filters[k], &v), "state") == 0;
    }
    if (cli_call(ctx, "GET", all ? "/v1/instances?all=true" : "/v1/instances", NULL, &reply) < 0)
        return CLI_EXIT_FAIL;
    list = json_object_get(reply, "instances");
    if (!json_is_array(list)) {
        json_decref(reply);
        cli_error("torpord's reply has no 'instances' array");
        return CLI_EXIT_FAIL;
    }
    for (i = json_array_size(list); o->n_filters && i-- > 0;)
        if (!filter_match(o, json_array_get(list, i)))
            json_array_remove(list, i);
    if (o->json) {
        cli_print_json(list);
    } else if (o->format) {
        struct tp_err err = { 0 };
        json_array_foreach(list, i, inst) if (cli_format_print(stdout, o->format, inst, &err) < 0)
        {
            cli_error("%s", tp_err_msg(&err));
            tp_err_clear(&err);
            json_decref(reply);
            return CLI_EXIT_FAIL;
        }
    } else if (o->quiet) {
        /* The table's short ids, as docker's ps -q (full ones with --no-trunc). */
        json_array_foreach(list, i, inst)
        {
            const char *id = json_string_value(json_object_get(inst, "id"));
            if (id)
                printf("%.*s\n", o->no_trunc ? (int)strlen(id) : PS_SHORT_ID, id);
        }
    } else {
        print_table(list, o->no_trunc);
    }
    json_decref(reply);
    return CLI_EXIT_OK;
}

int
cli_verb_ps(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct ps_opts o = { 0 };
    int r = cli_parse_ps(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_ps(ctx, &o);
}

CLI_SYNTAX_FN(cli_syntax_ps)
