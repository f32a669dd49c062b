/* torpor wait NAME...: block until each instance is Stopped, then print its exit code (docker
 * wait): 0 for a clean stop, 137 for a kill, else how its VMM ended. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

/* The daemon bounds one wait (10 minutes); the CLI waits for as long as it takes. */
#define WAIT_CHUNK_MS 600000

static const struct cli_syntax syntax = {
    .verb = "wait",
    .usage = "Usage: torpor wait NAME...\n"
             "\n"
             "Block until each instance stops, then print its exit code: 0 for a clean\n"
             "stop (or a guest that powered off), 137 when it was killed, else how its VMM\n"
             "ended. Fails (exit 1) when the instance is removed or torpord shuts down.\n",
    .operands = CLI_OPERANDS_SOME,
};

/* Wait for one instance; its exit code, or < 0 (reported). */
static int
wait_one(const struct cli_ctx *ctx, const char *name)
{
    _cleanup_free_ char *path = client_instance_path(name, "/wait");

    for (;;) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        json_t *body = json_pack("{s:s, s:i}", "state", "Stopped", "timeout_ms", WAIT_CHUNK_MS);
        json_t *reply = NULL;
        int r = client_call(ctx->socket, "POST", path, body, &reply, &err);

        json_decref(body);
        if (r == -ETIMEDOUT)
            continue; /* still running: wait on */
        if (r < 0) {
            cli_error("%s", tp_err_msg(&err));
            return r;
        }
        json_t *code = json_object_get(reply, "exit_code");
        int rc = json_is_integer(code) ? (int)json_integer_value(code) : 0;
        json_decref(reply);
        return rc;
    }
}

int
cli_cmd_wait(const struct cli_ctx *ctx, char *const *names, size_t n)
{
    int rc = CLI_EXIT_OK;

    for (size_t i = 0; i < n; i++) {
        int code = wait_one(ctx, names[i]);
        if (code < 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        printf("%d\n", code);
        fflush(stdout);
    }
    return rc;
}

int
cli_verb_wait(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);

    return x >= 0 ? x : cli_cmd_wait(ctx, a.operands, a.n_operands);
}

CLI_SYNTAX_FN(cli_syntax_wait)
