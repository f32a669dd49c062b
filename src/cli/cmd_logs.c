/* torpor logs: print an instance's serial console, optionally following it. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/fs.h"

enum {
    FLAG_FOLLOW = 1u << 0,
};

static const struct cli_syntax syntax = {
    .verb = "logs",
    .usage = "Usage: torpor logs [OPTIONS] NAME\n"
             "\n"
             "Print the serial console output of the instance NAME.\n",
    .operands = CLI_OPERANDS_ONE,
    .flags = { { .name = "follow", .short_name = 'f', .help = "keep streaming new output" } },
};

int
cli_parse_logs(int argc, char **argv, struct logs_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    *ret = (struct logs_opts){
        .name = a.help ? NULL : a.operands[0],
        .follow = a.flags & FLAG_FOLLOW,
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
    _cleanup_free_ char *path =
        client_instance_path(o->name, o->follow ? "/logs?follow=true" : "/logs");

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
