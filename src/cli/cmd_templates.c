/* torpor templates [ls|prune|rm ID...] (and `torpor template`, as docker has `images` and
 * `image ls|prune|rm`): the booted guests that warm runs fork from. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

#define TEMPLATE_SHORT_ID 12

enum {
    OPT_QUIET,
    OPT_FORCE,
};

static const struct cli_syntax syntax = {
    .verb = "templates",
    .usage = "Usage: torpor templates [ls | prune | rm ID...]\n"
             "\n"
             "The first `run` of a guest (root disk, kernel, initrd, memory, vCPUs, command\n"
             "line, agent, hypervisor) keeps a frozen copy of it booted; later runs of the same\n"
             "guest fork from it instead of booting (`run --cold` boots). ls (the default)\n"
             "lists them, rm forgets some, prune forgets all; their files go once no instance\n"
             "maps their memory any more (IN USE).\n",
    .operands = CLI_OPERANDS_ANY,
    .flags = {
        [OPT_QUIET] = { "quiet", 'q', "print only ids", NULL },
        [OPT_FORCE] = { "force", 'f', "prune without asking (it never asks: accepted as docker's)",
                        NULL },
    },
    .choices = "ls prune rm",
};

static int
cmd_ls(const struct cli_ctx *ctx, bool quiet)
{
    json_t *arr = NULL, *o;
    size_t k;
    int64_t now = (int64_t)time(NULL);

    if (cli_call(ctx, "GET", "/v1/templates", NULL, &arr) < 0)
        return CLI_EXIT_FAIL;
    if (!quiet)
        printf("%-12s  %-10s  %-7s  %-5s  %-24s  %-6s  %s\n", "TEMPLATE ID", "HYPERVISOR", "MEMORY",
               "VCPUS", "CREATED", "IN USE", "ROOT DISK");
    json_array_foreach(arr, k, o)
    {
        const char *id = json_string_value(json_object_get(o, "id"));
        const char *hv = json_string_value(json_object_get(o, "hypervisor"));
        const char *disk = json_string_value(json_object_get(o, "root_disk"));
        json_int_t mem = json_integer_value(json_object_get(o, "memory_mib"));
        json_int_t vcpus = json_integer_value(json_object_get(o, "vcpus"));
        json_int_t created = json_integer_value(json_object_get(o, "created_ms"));
        json_int_t users = json_integer_value(json_object_get(o, "in_use"));
        char ago[64];

        if (!id)
            continue;
        if (quiet) {
            printf("%.*s\n", TEMPLATE_SHORT_ID, id);
            continue;
        }
        cli_format_ago(now - (int64_t)(created / 1000), ago, sizeof(ago));
        _cleanup_free_ char *memtext = xasprintf("%lldM", (long long)mem);
        printf("%-12.*s  %-10s  %-7s  %-5lld  %-24s  %-6lld  %s\n", TEMPLATE_SHORT_ID, id,
               hv ? hv : "?", memtext, (long long)vcpus, ago, (long long)users,
               disk ? disk : "(default)");
    }
    json_decref(arr);
    return CLI_EXIT_OK;
}

static int
cmd_prune(const struct cli_ctx *ctx)
{
    json_t *reply = NULL;

    if (cli_call(ctx, "POST", "/v1/templates/prune", NULL, &reply) < 0)
        return CLI_EXIT_FAIL;
    printf("Removed templates: %lld\n",
           (long long)json_integer_value(json_object_get(reply, "removed")));
    json_decref(reply);
    return CLI_EXIT_OK;
}

static int
cmd_rm(const struct cli_ctx *ctx, char *const *ids, size_t n)
{
    int x = CLI_EXIT_OK;

    for (size_t k = 0; k < n; k++) {
        /* the instance path's encoder keeps whatever was typed one path segment */
        _cleanup_free_ char *ipath = client_instance_path(ids[k], "");
        _cleanup_free_ char *path = xasprintf("/v1/templates/%s", ipath + strlen("/v1/instances/"));
        json_t *reply = NULL;
        if (cli_call(ctx, "DELETE", path, NULL, &reply) < 0) {
            x = CLI_EXIT_FAIL;
            continue;
        }
        json_decref(reply);
        printf("%s\n", ids[k]);
    }
    return x;
}

int
cli_verb_templates(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);
    const char *sub = r >= 0 && a.n_operands > 0 ? a.operands[0] : "ls";

    if (r >= 0 && !a.help) {
        if (strcmp(sub, "ls") != 0 && strcmp(sub, "prune") != 0 && strcmp(sub, "rm") != 0)
            r = tp_err_set(&err, -EINVAL, "unknown command '%s' (ls, prune or rm)", sub);
        else if (strcmp(sub, "rm") == 0 && a.n_operands < 2)
            r = tp_err_set(&err, -EINVAL, "'rm' needs at least one template ID");
        else if (strcmp(sub, "rm") != 0 && a.n_operands > 1)
            r = tp_err_set(&err, -EINVAL, "'%s' takes no arguments", sub);
    }
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);
    if (x >= 0)
        return x;
    if (strcmp(sub, "prune") == 0)
        return cmd_prune(ctx);
    if (strcmp(sub, "rm") == 0)
        return cmd_rm(ctx, a.operands + 1, a.n_operands - 1);
    return cmd_ls(ctx, a.flags & (1u << OPT_QUIET));
}

/* `template` is the same verb under docker's singular (`docker image rm`). */
void
cli_syntax_templates(const char *verb, struct cli_syntax *ret)
{
    *ret = syntax;
    if (verb && strcmp(verb, "template") == 0)
        ret->verb = "template";
}
