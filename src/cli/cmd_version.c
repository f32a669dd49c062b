/* torpor version: print the CLI's version and, when reachable, torpord's. */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"

static const struct cli_syntax syntax = {
    .verb = "version",
    .usage = "Usage: torpor version\n"
             "\n"
             "Print the versions of torpor and of the torpord it talks to.\n",
    .operands = CLI_OPERANDS_NONE,
};

int
cli_cmd_version(const struct cli_ctx *ctx)
{
    json_t *reply = NULL;
    const char *v, *api;

    printf("client: %s\n", TORPOR_VERSION);
    fflush(stdout);
    if (cli_call(ctx, "GET", "/v1/version", NULL, &reply) < 0)
        return CLI_EXIT_FAIL;
    v = json_string_value(json_object_get(reply, "version"));
    api = json_string_value(json_object_get(reply, "api"));
    printf("server: %s (api %s)\n", v ? v : "?", api ? api : "?");
    json_decref(reply);
    return CLI_EXIT_OK;
}

int
cli_verb_version(const struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_verb_without_args(ctx, &syntax, argc, argv, cli_cmd_version);
}

CLI_SYNTAX_FN(cli_syntax_version)
