/* torpor completion bash|zsh (hidden): print a completion script generated from the verb and
 * option tables. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util/cleanup.h"

static const struct cli_syntax syntax = {
    .verb = "completion",
    .usage = "Usage: torpor completion SHELL\n"
             "\n"
             "Print a completion script for SHELL (bash or zsh), generated from torpor's own\n"
             "option tables. Load it with: source <(torpor completion bash)\n",
    .operands = CLI_OPERANDS_ONE,
    .choices = "bash zsh",
};

int
cli_verb_completion(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);

    (void)ctx;
    if (x >= 0)
        return x;
    if (strcmp(a.operands[0], "bash") == 0) {
        cli_completion_bash(stdout);
    } else if (strcmp(a.operands[0], "zsh") == 0) {
        cli_completion_zsh(stdout);
    } else {
        cli_error("no completion for shell '%s': bash or zsh", a.operands[0]);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

CLI_SYNTAX_FN(cli_syntax_completion)
