/* torpor restore: resume instances from standby, continuing past failures like start. */
#include "cli.h"
#include "util/cleanup.h"

enum {
    FLAG_TRACE = 1u << 0,
};

static const struct cli_syntax syntax = {
    .verb = "restore",
    .usage = "Usage: torpor restore [OPTIONS] NAME...\n"
             "\n"
             "Resume instances on standby from their snapshots; prints each NAME once its\n"
             "guest answers again. NAME is an instance name, id, or unique id prefix.\n",
    .operands = CLI_OPERANDS_SOME,
    .flags = { CLI_FLAG_TRACE },
};

int
cli_parse_restore(int argc, char **argv, struct restore_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    *ret = (struct restore_opts){
        .names = a.operands,
        .n_names = a.n_operands,
        .trace = a.flags & FLAG_TRACE,
        .help = a.help,
    };
    return 0;
}

int
cli_cmd_restore(const struct cli_ctx *ctx, const struct restore_opts *o)
{
    return cli_for_each_instance(ctx, "POST", "/restore", o->names, o->n_names, o->trace);
}

int
cli_verb_restore(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct restore_opts o = { 0 };
    int r = cli_parse_restore(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_restore(ctx, &o);
}
