/* torpor image prune [-a] [-f]: remove unnamed images (with -a, every image no instance uses),
 * unreferenced layers and partial downloads, after docker's prompt. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

enum {
    FLAG_ALL = 1u << 0,
    FLAG_FORCE = 1u << 1,
};

static const struct cli_syntax syntax = {
    .verb = "prune",
    .usage = "Usage: torpor image prune [OPTIONS]\n"
             "\n"
             "Remove unnamed (dangling) images, the layers no image references and partial\n"
             "downloads.\n",
    .operands = CLI_OPERANDS_NONE,
    .flags = {
        { "all", 'a', "remove all images no instance uses, not just dangling ones", NULL },
        { "force", 'f', "do not prompt for confirmation", NULL },
    },
};

int
cli_verb_image_prune(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);
    bool all;
    json_t *reply = NULL, *v;
    size_t k;
    char size[32];

    if (x >= 0)
        return x;
    all = a.flags & FLAG_ALL;
    if (!(a.flags & FLAG_FORCE)) {
        char line[64] = "";
        fprintf(stderr, "%s\nAre you sure you want to continue? [y/N] ",
                all ? "WARNING! This will remove all images without at least one instance "
                      "associated to them."
                    : "WARNING! This will remove all dangling images.");
        fflush(stderr);
        if (!fgets(line, sizeof(line), stdin) || !cli_rm_all_confirmed(line))
            return CLI_EXIT_OK; /* docker: declining is not a failure */
    }
    if (cli_call(ctx, "POST", all ? "/v1/images/prune?all=true" : "/v1/images/prune", NULL,
                 &reply) < 0)
        return CLI_EXIT_FAIL;
    json_t *del = json_object_get(reply, "images_deleted");
    if (json_array_size(del) > 0) {
        printf("Deleted Images:\n");
        json_array_foreach(del, k, v)
        {
            const char *u = json_string_value(json_object_get(v, "untagged"));
            if (u)
                printf("untagged: %s\n", u);
            printf("deleted: %s\n", json_string_value(json_object_get(v, "deleted")));
        }
        printf("\n");
    }
    cli_format_size_si((uint64_t)json_integer_value(json_object_get(reply, "space_reclaimed")),
                       size, sizeof(size));
    printf("Total reclaimed space: %s\n", size);
    json_decref(reply);
    return CLI_EXIT_OK;
}

CLI_SYNTAX_FN(cli_syntax_image_prune)
