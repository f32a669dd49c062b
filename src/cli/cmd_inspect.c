/* torpor inspect: print instances as pretty JSON (one object, or an array for several). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

static const char usage[] = "Usage: torpor inspect NAME...\n"
                            "\n"
                            "Print instances as JSON: one object for one NAME, else an array.\n"
                            "NAME is an instance name, id, or unique id prefix.\n"
                            "\n"
                            "Options:\n"
                            "  -h, --help     print this help\n";

int
cli_parse_inspect(int argc, char **argv, struct inspect_opts *ret, struct tp_err *err)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        {},
    };
    struct inspect_opts o = { 0 };
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) >= 0) {
        if (c != 'h')
            return cli_getopt_error(c, argv, err);
        o.help = true;
    }
    if (!o.help && optind >= argc)
        return tp_err_set(err, -EINVAL, "'inspect' needs at least one NAME");
    o.names = argv + optind;
    o.n_names = (size_t)(argc - optind);
    *ret = o;
    return 0;
}

int
cli_cmd_inspect(const struct cli_ctx *ctx, const struct inspect_opts *o)
{
    json_t *found = json_array();
    int rc = CLI_EXIT_OK;

    /* Like docker: print what was found, report the rest, and fail if anything was missing. */
    for (size_t i = 0; i < o->n_names; i++) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        _cleanup_free_ char *path = client_instance_path(o->names[i], "");
        json_t *inst = NULL;

        if (client_call(ctx->socket, "GET", path, NULL, &inst, &err) < 0) {
            cli_error("%s", tp_err_msg(&err));
            rc = CLI_EXIT_FAIL;
            continue;
        }
        json_array_append_new(found, inst ? inst : json_null());
    }
    if (o->n_names == 1 && json_array_size(found) == 1)
        json_dumpf(json_array_get(found, 0), stdout, JSON_INDENT(2));
    else if (o->n_names > 1)
        json_dumpf(found, stdout, JSON_INDENT(2));
    if (o->n_names > 1 || json_array_size(found) == 1)
        putchar('\n');
    json_decref(found);
    return rc;
}

int
cli_verb_inspect(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inspect_opts o = { 0 };
    int r = cli_parse_inspect(argc, argv, &o, &err);
    int x = cli_verb_prologue("inspect", usage, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_inspect(ctx, &o);
}
