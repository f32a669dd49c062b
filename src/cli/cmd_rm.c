/* torpor rm: remove instances (-f also kills a running VMM), continuing past failures. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "util/cleanup.h"

static const char usage[] = "Usage: torpor rm [OPTIONS] NAME...\n"
                            "\n"
                            "Remove instances; prints each NAME removed. NAME is an instance\n"
                            "name, id, or unique id prefix.\n"
                            "\n"
                            "Options:\n"
                            "  -f, --force    remove even if its VMM runs (it is killed)\n"
                            "  -h, --help     print this help\n";

int
cli_parse_rm(int argc, char **argv, struct rm_opts *ret, struct tp_err *err)
{
    static const struct option longopts[] = {
        { "force", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    struct rm_opts o = { 0 };
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:fh", longopts, NULL)) >= 0) {
        switch (c) {
        case 'f':
            o.force = true;
            break;
        case 'h':
            o.help = true;
            break;
        default:
            return cli_getopt_error(c, argv, err);
        }
    }
    if (!o.help && optind >= argc)
        return tp_err_set(err, -EINVAL, "'rm' needs at least one NAME");
    o.names = argv + optind;
    o.n_names = (size_t)(argc - optind);
    *ret = o;
    return 0;
}

int
cli_cmd_rm(const struct cli_ctx *ctx, const struct rm_opts *o)
{
    return cli_for_each_instance(ctx, "DELETE", o->force ? "?force=true" : "", o->names,
                                 o->n_names);
}

int
cli_verb_rm(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct rm_opts o = { 0 };
    int r = cli_parse_rm(argc, argv, &o, &err);
    int x = cli_verb_prologue("rm", usage, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_rm(ctx, &o);
}
