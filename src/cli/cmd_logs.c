/* torpor logs: print an instance's serial console, optionally following it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/fs.h"
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
             "keeps printing new output until the instance stops or is removed.\n",
    .operands = CLI_OPERANDS_ONE,
    .flags = {
        [FLAG_FOLLOW] = { .name = "follow", .short_name = 'f', .help = "keep streaming new output" },
        [FLAG_TAIL] = { .name = "tail", .short_name = 'n', .arg = "N",
                        .help = "print only the last N lines (or all, the default)" },
        [FLAG_SINCE] = { .name = "since", .arg = "TIME",
                         .help = "not supported yet: the console log has no per-line times" },
        [FLAG_TIMESTAMPS] = { .name = "timestamps", .short_name = 't',
                              .help = "not supported yet: the console log has no per-line times" },
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
    *ret = (struct logs_opts){
        .name = a.help ? NULL : a.operands[0],
        .follow = a.flags & (1u << FLAG_FOLLOW),
        .tail = tail,
        .since = a.values[FLAG_SINCE],
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
    _cleanup_free_ char *query = NULL, *path = NULL;

    /* Refused rather than ignored: the console file keeps no time per line (yet). */
    if (o->since || o->timestamps) {
        cli_error("%s is not supported yet: the console log keeps no time per line",
                  o->since ? "--since" : "--timestamps");
        return CLI_EXIT_FAIL;
    }
    if (o->tail >= 0)
        query = xasprintf("/logs?follow=%s&tail=%lld", o->follow ? "true" : "false",
                          (long long)o->tail);
    else
        query = xstrdup(o->follow ? "/logs?follow=true" : "/logs");
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
