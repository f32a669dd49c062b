/* torpor inspect: print instances as a JSON array (always, as docker), or one line each with
 * --format TEMPLATE. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "format.h"
#include "util/cleanup.h"

static const struct cli_syntax syntax = {
    .verb = "inspect",
    .usage = "Usage: torpor inspect [OPTIONS] NAME...\n"
             "\n"
             "Print instances as a JSON array. NAME is an instance name, id, or unique id\n"
             "prefix.\n",
    .operands = CLI_OPERANDS_SOME,
    .flags = {
        { "format", 'f', "json, or a template: '{{.State}} {{json .LastOperation}}'", "FORMAT" },
    },
};

int
cli_parse_inspect(int argc, char **argv, struct inspect_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    int r = cli_parse_args(&syntax, argc, argv, &a, err);

    if (r < 0)
        return r;
    const char *format = a.values[0];
    if (format && strcmp(format, "json") == 0)
        format = NULL;
    if (!a.help && format && cli_format_check(format, err) < 0)
        return -EINVAL;
    *ret = (struct inspect_opts){
        .names = a.operands, .n_names = a.n_operands, .format = format, .help = a.help
    };
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
        if (o->format) {
            struct tp_err err = { 0 };
            if (cli_format_print(stdout, o->format, inst, &err) < 0) {
                cli_error("%s", tp_err_msg(&err));
                tp_err_clear(&err);
                rc = CLI_EXIT_FAIL;
            }
            json_decref(inst);
            continue;
        }
        json_array_append_new(found, inst ? inst : json_null());
    }
    /* An array of those found, whatever their number (docker's "[]" when none was). */
    if (!o->format)
        cli_print_json(found);
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

CLI_SYNTAX_FN(cli_syntax_inspect)
