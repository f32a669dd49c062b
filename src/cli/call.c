/* Requests made for the user: a failure is reported on stderr, a reply printed as JSON. */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

int
cli_call(const struct cli_ctx *ctx, const char *method, const char *path, json_t *body,
         json_t **ret_reply)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    int r = client_call(ctx->socket, method, path, body, ret_reply, &err);

    if (r < 0)
        cli_error("%s", tp_err_msg(&err));
    return r;
}

void
cli_print_json(const json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2));
    putchar('\n');
}
