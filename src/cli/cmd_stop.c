/* torpor stop: stop instances, continuing past failures like docker. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "util/cleanup.h"

static const char usage[] = "Usage: torpor stop NAME...\n"
                            "\n"
                            "Stop instances; prints each NAME stopped. NAME is an instance name,\n"
                            "id, or unique id prefix.\n"
                            "\n"
                            "Options:\n"
                            "  -h, --help     print this help\n";

int
cli_parse_stop(int argc, char **argv, struct stop_opts *ret, struct tp_err *err)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        {},
    };
    struct stop_opts o = { 0 };
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) >= 0) {
        if (c != 'h')
            return cli_getopt_error(c, argv, err);
        o.help = true;
    }
    if (!o.help && optind >= argc)
        return tp_err_set(err, -EINVAL, "'stop' needs at least one NAME");
    o.names = argv + optind;
    o.n_names = (size_t)(argc - optind);
    *ret = o;
    return 0;
}

int
cli_cmd_stop(const struct cli_ctx *ctx, const struct stop_opts *o)
{
    return cli_for_each_instance(ctx, "POST", "/stop", o->names, o->n_names);
}

int
cli_verb_stop(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct stop_opts o = { 0 };
    int r = cli_parse_stop(argc, argv, &o, &err);
    int x = cli_verb_prologue("stop", usage, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_stop(ctx, &o);
}
