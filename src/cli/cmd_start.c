/* torpor start: start stopped instances again, continuing past failures like docker. */
#include "cli.h"
#include "util/cleanup.h"

static const struct cli_syntax syntax = {
    .verb = "start",
    .usage = "Usage: torpor start NAME...\n"
             "\n"
             "Start stopped instances; prints each NAME started. NAME is an instance\n"
             "name, id, or unique id prefix.\n",
    .operands = CLI_OPERANDS_SOME,
};

int
cli_parse_start(int argc, char **argv, struct start_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    *ret = (struct start_opts){ .names = a.operands, .n_names = a.n_operands, .help = a.help };
    return 0;
}

int
cli_cmd_start(const struct cli_ctx *ctx, const struct start_opts *o)
{
    return cli_for_each_instance(ctx, "POST", "/start", o->names, o->n_names, false);
}

int
cli_verb_start(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct start_opts o = { 0 };
    int r = cli_parse_start(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_start(ctx, &o);
}
