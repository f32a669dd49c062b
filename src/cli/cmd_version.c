/* torpor version: print the CLI's version and, when reachable, torpord's. */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

static const struct cli_syntax syntax = {
    .verb = "version",
    .usage = "Usage: torpor version\n"
             "\n"
             "Print the versions of torpor and of the torpord it talks to.\n",
    .operands = CLI_OPERANDS_NONE,
};

int
cli_parse_version(int argc, char **argv, struct version_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    *ret = (struct version_opts){ .help = a.help };
    return 0;
}

int
cli_cmd_version(const struct cli_ctx *ctx, const struct version_opts *o)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *reply = NULL;
    const char *v, *api;

    printf("client: %s\n", TORPOR_VERSION);
    fflush(stdout);
    if (client_call(ctx->socket, "GET", "/v1/version", NULL, &reply, &err) < 0) {
        cli_error("%s", tp_err_msg(&err));
        return CLI_EXIT_FAIL;
    }
    v = json_string_value(json_object_get(reply, "version"));
    api = json_string_value(json_object_get(reply, "api"));
    printf("server: %s (api %s)\n", v ? v : "?", api ? api : "?");
    json_decref(reply);
    return CLI_EXIT_OK;
}

int
cli_verb_version(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct version_opts o = { 0 };
    int r = cli_parse_version(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_version(ctx, &o);
}
