/* torpor standby: snapshot running instances and release their VMMs, continuing past
 * failures like stop. */
#include "cli.h"
#include "util/cleanup.h"

enum {
    FLAG_TRACE = 1u << 0,
};

static const struct cli_syntax syntax = {
    .verb = "standby",
    .usage = "Usage: torpor standby [OPTIONS] NAME...\n"
             "\n"
             "Put running instances on standby: snapshot each guest, stop its VMM and give\n"
             "its memory back to the host ('torpor restore' resumes it); prints each NAME\n"
             "put on standby. NAME is an instance name, id, or unique id prefix.\n",
    .operands = CLI_OPERANDS_SOME,
    .flags = { CLI_FLAG_TRACE },
};

int
cli_parse_standby(int argc, char **argv, struct standby_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    *ret = (struct standby_opts){
        .names = a.operands,
        .n_names = a.n_operands,
        .trace = a.flags & FLAG_TRACE,
        .help = a.help,
    };
    return 0;
}

int
cli_cmd_standby(const struct cli_ctx *ctx, const struct standby_opts *o)
{
    return cli_for_each_instance(ctx, "POST", "/standby", o->names, o->n_names, o->trace);
}

int
cli_verb_standby(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct standby_opts o = { 0 };
    int r = cli_parse_standby(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_standby(ctx, &o);
}
