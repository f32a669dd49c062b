/* torpor: the command-line client of torpord; global options, then a table of verbs. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/cleanup.h"

static void
usage(FILE *f)
{
    fputs(
        "Usage: torpor [OPTIONS] COMMAND [ARGS...]\n"
        "\n"
        "Manage microVMs through torpord.\n"
        "\n"
        "Options:\n"
        "  --socket PATH   torpord's API socket (default: $TORPOR_SOCKET, else " CLI_DEFAULT_SOCKET
        ")\n"
        "  -h, --help      print this help\n"
        "  -V, --version   print torpor's version\n"
        "\n"
        "Commands:\n",
        f);
    for (size_t i = 0; i < cli_n_verbs; i++)
        if (cli_verbs[i].help)
            fprintf(f, "  %-14s %s\n", cli_verbs[i].name, cli_verbs[i].help);
    fputs("  help [COMMAND] print help\n"
          "\n"
          "Run 'torpor COMMAND --help' for a command's options.\n",
          f);
}

static int
dispatch(const struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_verb *v;

    if (strcmp(argv[0], "help") == 0) {
        char *help_argv[] = { NULL, (char *)"--help", NULL };
        if (argc < 2) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        v = cli_verb_find(argv[1]);
        if (!v) {
            cli_error("unknown command '%s'; see 'torpor help'", argv[1]);
            return CLI_EXIT_USAGE;
        }
        help_argv[0] = argv[1];
        return v->fn(ctx, 2, help_argv);
    }
    v = cli_verb_find(argv[0]);
    if (!v) {
        cli_error("unknown command '%s'; see 'torpor help'", argv[0]);
        return CLI_EXIT_USAGE;
    }
    return v->fn(ctx, argc, argv);
}

int
main(int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_global_opts g;
    struct cli_ctx ctx;
    int rc;

    if (cli_parse_global(argc, argv, getenv("TORPOR_SOCKET"), &g, &err) < 0) {
        cli_error("%s", tp_err_msg(&err));
        fputs("See 'torpor --help'.\n", stderr);
        return CLI_EXIT_USAGE;
    }
    if (g.help) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (g.man) {
        cli_man_page(stdout);
        return CLI_EXIT_OK;
    }
    if (g.version) {
        printf("torpor %s\n", TORPOR_VERSION);
        return CLI_EXIT_OK;
    }
    if (g.verb_index >= argc) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_error("cannot initialise libcurl");
        return CLI_EXIT_FAIL;
    }
    ctx = (struct cli_ctx){ .socket = g.socket };
    rc = dispatch(&ctx, argc - g.verb_index, argv + g.verb_index);
    curl_global_cleanup();
    return rc;
}
