/* torpor load [-i FILE] [-q]: load images from a tar (an oci-archive or a `docker save`
 * tarball; stdin by default) or from an OCI layout directory. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

enum {
    FLAG_INPUT = 1u << 0,
    FLAG_QUIET = 1u << 1,
};

static const struct cli_syntax syntax = {
    .verb = "load",
    .usage = "Usage: torpor load [OPTIONS]\n"
             "\n"
             "Load images from a tar archive (an OCI layout in a tar, i.e. an oci-archive, or\n"
             "a `docker save` tarball) read from stdin or --input, or from an OCI layout\n"
             "directory given with --input.\n",
    .operands = CLI_OPERANDS_NONE,
    .flags = {
        { "input", 'i', "read from this tar archive file or OCI layout directory", "FILE" },
        { "quiet", 'q', "suppress the load output", NULL },
    },
};

int
cli_verb_load(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);
    const char *input;
    json_t *reply = NULL, *v;
    struct stat st;
    size_t k;

    if (x >= 0)
        return x;
    input = a.values[0];
    if (input && stat(input, &st) == 0 && S_ISDIR(st.st_mode)) {
        _cleanup_free_ char *abs = cli_abspath(input);
        json_t *body = json_pack("{s:s}", "path", abs);
        r = cli_call(ctx, "POST", "/v1/images/load", body, &reply);
        json_decref(body);
        if (r < 0)
            return CLI_EXIT_FAIL;
    } else {
        _cleanup_close_ int fd = -EBADF;
        if (input) {
            fd = open(input, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                cli_error("open '%s': %s", input, strerror(errno));
                return CLI_EXIT_FAIL;
            }
        } else if (isatty(STDIN_FILENO)) {
            cli_error("requested load from stdin, but stdin is a terminal; use --input or "
                      "redirect stdin");
            return CLI_EXIT_FAIL;
        }
        r = client_upload(ctx->socket, "POST", "/v1/images/load", fd >= 0 ? fd : STDIN_FILENO,
                          &reply, &err);
        if (r < 0) {
            cli_error("%s", tp_err_msg(&err));
            return CLI_EXIT_FAIL;
        }
    }
    if (!(a.flags & FLAG_QUIET)) {
        json_array_foreach(json_object_get(reply, "loaded"), k, v)
            printf("Loaded image: %s\n", json_string_value(v));
        json_array_foreach(json_object_get(reply, "images"), k, v)
            printf("Loaded image ID: %s\n", json_string_value(v));
    }
    json_decref(reply);
    return CLI_EXIT_OK;
}

CLI_SYNTAX_FN(cli_syntax_load)
