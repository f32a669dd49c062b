/* torpor logs: print an instance's serial console, optionally following it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/timefmt.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

enum {
    FLAG_FOLLOW,
    FLAG_TAIL,
    FLAG_SINCE,
    FLAG_TIMESTAMPS,
};

static const struct cli_syntax syntax = {
    .verb = "logs",
    .usage = "Usage: torpor logs [OPTIONS] NAME\n"
             "\n"
             "Print the serial console output of the instance NAME. With --follow it\n"
             "keeps printing new output until the instance stops or is removed. A line's\n"
             "time (--since, --timestamps) is when torpord saw its first byte arrive.\n",
    .operands = CLI_OPERANDS_ONE,
    .flags = {
        [FLAG_FOLLOW] = { .name = "follow", .short_name = 'f', .help = "keep streaming new output" },
        [FLAG_TAIL] = { .name = "tail", .short_name = 'n', .arg = "N",
                        .help = "print only the last N lines (or all, the default)" },
        [FLAG_SINCE] = { .name = "since", .arg = "TIME",
                         .help = "only lines since TIME: RFC 3339 (2026-12-01T11:40:00Z), unix "
                                 "seconds, or a duration before now (10m, 1h30m)" },
        [FLAG_TIMESTAMPS] = { .name = "timestamps", .short_name = 't',
                              .help = "prefix each line with its time (RFC 3339, UTC)" },
    },
};

int
cli_parse_tail(const char *s, int64_t *ret, struct tp_err *err)
{
    uint64_t v = 0;

    if (strcmp(s, "all") == 0) {
        *ret = -1;
        return 0;
    }
    if (!*s)
        return tp_err_set(err, -EINVAL, "option '--tail' needs a number of lines or 'all'");
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_C(1) << 53))
            return tp_err_set(err, -EINVAL,
                              "option '--tail' needs a number of lines or 'all', got '%s'", s);
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *ret = (int64_t)v;
    return 0;
}

int
cli_parse_logs(int argc, char **argv, struct logs_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int64_t tail = -1;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    if (!a.help && a.values[FLAG_TAIL] && cli_parse_tail(a.values[FLAG_TAIL], &tail, err) < 0)
        return -EINVAL;
    /* Relative to now here, as docker's CLI does: the daemon gets an absolute time. */
    int64_t since = 0;
    if (!a.help && a.values[FLAG_SINCE] &&
        timefmt_parse_since(a.values[FLAG_SINCE], wall_ns(), &since, err) < 0)
        return tp_err_wrap(err, "invalid value for --since");
    *ret = (struct logs_opts){
        .name = a.help ? NULL : a.operands[0],
        .follow = a.flags & (1u << FLAG_FOLLOW),
        .tail = tail,
        .has_since = a.values[FLAG_SINCE] != NULL,
        .since_ns = since,
        .timestamps = a.flags & (1u << FLAG_TIMESTAMPS),
        .help = a.help,
    };
    return 0;
}

static int
logs_on_data(const void *data, size_t len, void *userdata, struct tp_err *err)
{
    /* Unbuffered, so `logs -f` shows console lines as they come. */
    int r = fd_write_all(STDOUT_FILENO, data, len);

    if (r < 0)
        return tp_err_errno(err, r, "write to stdout");
    return 0;
}

int
cli_cmd_logs(const struct cli_ctx *ctx, const struct logs_opts *o)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *tail = NULL, *since = NULL, *query = NULL, *path = NULL;

    if (o->tail >= 0)
        tail = xasprintf("&tail=%lld", (long long)o->tail);
    if (o->has_since) {
        /* Unix seconds with all nine fraction digits: exact, and no zone to get wrong. */
        int64_t s = o->since_ns / 1000000000, ns = o->since_ns % 1000000000;
        if (ns < 0) {
            ns += 1000000000;
            s--;
        }
        since = s < 0 ? xstrdup("&since=0") : xasprintf("&since=%" PRId64 ".%09" PRId64, s, ns);
    }
    query = xasprintf("/logs?follow=%s%s%s%s", o->follow ? "true" : "false", tail ? tail : "",
                      since ? since : "", o->timestamps ? "&timestamps=true" : "");
    path = client_instance_path(o->name, query);

    fflush(stdout);
    if (client_stream(ctx->socket, "GET", path, NULL, logs_on_data, NULL, &err) < 0) {
        cli_error("%s", tp_err_msg(&err));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int
cli_verb_logs(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct logs_opts o = { 0 };
    int r = cli_parse_logs(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_logs(ctx, &o);
}

CLI_SYNTAX_FN(cli_syntax_logs)
