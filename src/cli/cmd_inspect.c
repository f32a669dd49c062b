/* torpor inspect: print instances as pretty JSON (one object, or an array for several). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

static const struct cli_syntax syntax = {
    .verb = "inspect",
    .usage = "Usage: torpor inspect NAME...\n"
             "\n"
             "Print instances as JSON: one object for one NAME, else an array.\n"
             "NAME is an instance name, id, or unique id prefix.\n",
    .operands = CLI_OPERANDS_SOME,
};

int
cli_parse_inspect(int argc, char **argv, struct inspect_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    *ret = (struct inspect_opts){ .names = a.operands, .n_names = a.n_operands, .help = a.help };
    return 0;
}

int
cli_cmd_inspect(const struct cli_ctx *ctx, const struct inspect_opts *o)
{
    json_t *found = json_array();
    int rc = CLI_EXIT_OK;

    /* Like docker: print what was found, report the rest, and fail if anything was missing. */
    for (size_t i = 0; i < o->n_names; i++) {
        _cleanup_free_ char *path = client_instance_path(o->names[i], "");
        json_t *inst = NULL;

        if (cli_call(ctx, "GET", path, NULL, &inst) < 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        json_array_append_new(found, inst ? inst : json_null());
    }
    /* One NAME: its object, or nothing if it failed. Several: an array of those found. */
    if (o->n_names > 1)
        cli_print_json(found);
    else if (json_array_size(found) == 1)
        cli_print_json(json_array_get(found, 0));
    json_decref(found);
    return rc;
}

int
cli_verb_inspect(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inspect_opts o = { 0 };
    int r = cli_parse_inspect(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_inspect(ctx, &o);
}
