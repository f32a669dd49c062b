/* torpor rmi [-f] IMAGE...: remove images from torpord's store (docker rmi): a name is
 * untagged; the image's blobs go with its last name. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

static const struct cli_syntax syntax = {
    .verb = "rmi",
    .usage = "Usage: torpor rmi [OPTIONS] IMAGE [IMAGE...]\n"
             "\n"
             "Remove images: a name is untagged, and the image (its layers no other image\n"
             "shares) goes with its last name. An image an instance uses, or an id naming an\n"
             "image of several names, is refused unless forced.\n",
    .operands = CLI_OPERANDS_SOME,
    .flags = {
        { "force", 'f', "remove even when an instance uses the image or it has several names",
          NULL },
    },
};

int
cli_cmd_rmi(const struct cli_ctx *ctx, char *const *refs, size_t n, bool force)
{
    int rc = CLI_EXIT_OK;

    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *path = cli_image_path(refs[i], force ? "?force=true" : "");
        json_t *reply = NULL, *v;
        size_t k;
        if (cli_call(ctx, "DELETE", path, NULL, &reply) < 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        json_array_foreach(json_object_get(reply, "untagged"), k, v)
            printf("Untagged: %s\n", json_string_value(v));
        json_array_foreach(json_object_get(reply, "deleted"), k, v)
            printf("Deleted: %s\n", json_string_value(v));
        json_decref(reply);
    }
    return rc;
}

int
cli_verb_rmi(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);

    return x >= 0 ? x : cli_cmd_rmi(ctx, a.operands, a.n_operands, a.flags & 1u);
}

CLI_SYNTAX_FN(cli_syntax_rmi)
