/* torpor capabilities: print torpord's hypervisor capability registry as JSON. */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"

static const struct cli_syntax syntax = {
    .verb = "capabilities",
    .usage = "Usage: torpor capabilities\n"
             "\n"
             "Print what each hypervisor supports (pause, snapshot, ...) as JSON.\n",
    .operands = CLI_OPERANDS_NONE,
};

int
cli_cmd_caps(const struct cli_ctx *ctx)
{
    json_t *reply = NULL;

    if (cli_call(ctx, "GET", "/v1/capabilities", NULL, &reply) < 0)
        return CLI_EXIT_FAIL;
    cli_print_json(reply);
    json_decref(reply);
    return CLI_EXIT_OK;
}

int
cli_verb_caps(const struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_verb_without_args(ctx, &syntax, argc, argv, cli_cmd_caps);
}

CLI_SYNTAX_FN(cli_syntax_caps)
