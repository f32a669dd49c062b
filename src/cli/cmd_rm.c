/* torpor rm: remove instances (-f also kills a running VMM), continuing past failures. */
#include "cli.h"
#include "util/cleanup.h"

enum {
    FLAG_FORCE = 1u << 0,
};

static const struct cli_syntax syntax = {
    .verb = "rm",
    .usage = "Usage: torpor rm [OPTIONS] NAME...\n"
             "\n"
             "Remove instances; prints each NAME removed. NAME is an instance\n"
             "name, id, or unique id prefix.\n",
    .operands = CLI_OPERANDS_SOME,
    .flags = { { .name = "force",
                 .short_name = 'f',
                 .help = "remove even if its VMM runs (it is killed)" } },
};

int
cli_parse_rm(int argc, char **argv, struct rm_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    *ret = (struct rm_opts){
        .names = a.operands,
        .n_names = a.n_operands,
        .force = a.flags & FLAG_FORCE,
        .help = a.help,
    };
    return 0;
}

int
cli_cmd_rm(const struct cli_ctx *ctx, const struct rm_opts *o)
{
    return cli_for_each_instance(ctx, "DELETE", o->force ? "?force=true" : "", o->names, o->n_names,
                                 false);
}

int
cli_verb_rm(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct rm_opts o = { 0 };
    int r = cli_parse_rm(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_rm(ctx, &o);
}
