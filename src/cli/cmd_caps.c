/* torpor capabilities: print torpord's hypervisor capability registry as JSON. */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

static const struct cli_syntax syntax = {
    .verb = "capabilities",
    .usage = "Usage: torpor capabilities\n"
             "\n"
             "Print what each hypervisor supports (pause, snapshot, ...) as JSON.\n",
    .operands = CLI_OPERANDS_NONE,
};

int
cli_parse_caps(int argc, char **argv, struct caps_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    *ret = (struct caps_opts){ .help = a.help };
    return 0;
}

int
cli_cmd_caps(const struct cli_ctx *ctx, const struct caps_opts *o)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *reply = NULL;

    if (client_call(ctx->socket, "GET", "/v1/capabilities", NULL, &reply, &err) < 0) {
        cli_error("%s", tp_err_msg(&err));
        return CLI_EXIT_FAIL;
    }
    json_dumpf(reply, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(reply);
    return CLI_EXIT_OK;
}

int
cli_verb_caps(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct caps_opts o = { 0 };
    int r = cli_parse_caps(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_caps(ctx, &o);
}
