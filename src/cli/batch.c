/* One request per named instance: print each name done, go on past failures (docker does). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

int
cli_for_each_instance(const struct cli_ctx *ctx, const char *method, const char *suffix,
                      char *const *names, size_t n_names, bool trace)
{
    int rc = CLI_EXIT_OK;

    for (size_t i = 0; i < n_names; i++) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        _cleanup_free_ char *path = client_instance_path(names[i], suffix);
        /* POST verbs take an empty object; DELETE takes no body. */
        json_t *body = strcmp(method, "POST") == 0 ? json_object() : NULL, *reply = NULL;
        int r = client_call(ctx->socket, method, path, body, &reply, &err);

        json_decref(body);
        if (r < 0) {
            cli_error("%s", tp_err_msg(&err));
            rc = CLI_EXIT_FAIL;
            continue;
        }
        printf("%s\n", names[i]);
        fflush(stdout);
        if (trace)
            cli_print_trace(reply);
        json_decref(reply);
    }
    return rc;
}
