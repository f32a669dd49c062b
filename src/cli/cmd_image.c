/* torpor image ls|rm|pull|load|inspect|prune: docker's management-command spellings of the
 * image verbs; `image inspect` prints images as a JSON array. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "format.h"
#include "util/cleanup.h"

static const struct cli_syntax syntax = {
    .verb = "image",
    .usage = "Usage: torpor image COMMAND\n"
             "\n"
             "Manage images: ls (images), rm (rmi), pull, load, inspect, prune.\n",
    .operands = CLI_OPERANDS_CMD,
    .choices = "ls rm pull load inspect prune",
};

static const struct cli_syntax inspect_syntax = {
    .verb = "inspect",
    .usage = "Usage: torpor image inspect [OPTIONS] IMAGE [IMAGE...]\n"
             "\n"
             "Print images as a JSON array.\n",
    .operands = CLI_OPERANDS_SOME,
    .flags = {
        { "format", 'f', "a template: '{{.id}}'", "FORMAT" },
    },
};

static int
image_inspect(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&inspect_syntax, argc, argv, &a, &err);
    int x = cli_syntax_prologue(&inspect_syntax, r, a.help, &err);
    int rc = CLI_EXIT_OK;
    json_t *out;

    if (x >= 0)
        return x;
    out = json_array();
    for (size_t i = 0; i < a.n_operands; i++) {
        _cleanup_free_ char *path = cli_image_path(a.operands[i], "");
        json_t *reply = NULL;
        if (cli_call(ctx, "GET", path, NULL, &reply) < 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        if (a.values[0]) {
            if (cli_format_print(stdout, a.values[0], reply, &err) < 0) {
                cli_error("%s", tp_err_msg(&err));
                tp_err_clear(&err);
                rc = CLI_EXIT_FAIL;
            }
            json_decref(reply);
        } else {
            json_array_append_new(out, reply);
        }
    }
    if (!a.values[0])
        cli_print_json(out);
    json_decref(out);
    return rc;
}

int
cli_verb_image(const struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct {
        const char *sub;
        int (*fn)(const struct cli_ctx *ctx, int argc, char **argv);
    } subs[] = {
        { "ls", cli_verb_images },         { "list", cli_verb_images },  { "rm", cli_verb_rmi },
        { "remove", cli_verb_rmi },        { "pull", cli_verb_pull },    { "load", cli_verb_load },
        { "prune", cli_verb_image_prune }, { "inspect", image_inspect },
    };

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cli_usage_print(&syntax, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (strcmp(argv[1], subs[i].sub) == 0)
            return subs[i].fn(ctx, argc - 1, argv + 1);
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_usage_print(&syntax, stdout);
            return CLI_EXIT_OK;
        }
    cli_error("unknown command \"%s\" for \"torpor image\"", argv[1]);
    return CLI_EXIT_USAGE;
}

CLI_SYNTAX_FN(cli_syntax_image)
