/* torpor pull [-q] REF: pull an image into torpord's store, with per-layer progress on a
 * terminal (bytes and rate, as docker draws it) and only the result otherwise. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

#define PULL_LAYERS_MAX 256

static const struct cli_syntax syntax = {
    .verb = "pull",
    .usage = "Usage: torpor pull [OPTIONS] NAME[:TAG|@DIGEST]\n"
             "\n"
             "Pull an image from a registry into torpord's image store. A manifest list or OCI\n"
             "index gives its linux/amd64 image; layers download in parallel, each verified as\n"
             "it streams, and an interrupted pull resumes where it stopped. Progress is drawn\n"
             "on a terminal; otherwise only the result is printed.\n",
    .operands = CLI_OPERANDS_ONE,
    .flags = {
        { "quiet", 'q', "print only the image's reference", NULL },
    },
};

struct layer_line {
    char id[13];
    int64_t start_bytes;
    double start_s;
};

struct pull_view {
    bool tty, quiet;
    char *buf; /* a partial line */
    size_t len;
    struct layer_line layers[PULL_LAYERS_MAX];
    size_t n;
    json_t *last; /* the final line */
};

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Draw one progress line in place: the cursor goes up to the layer's row and back. */
static void
draw(struct pull_view *v, const json_t *line)
{
    const char *id = json_string_value(json_object_get(line, "id"));
    const char *status = json_string_value(json_object_get(line, "status"));
    json_t *p = json_object_get(line, "progress");
    int64_t cur = json_integer_value(json_object_get(p, "current"));
    int64_t total = json_integer_value(json_object_get(p, "total"));
    size_t i;

    if (!id || !status)
        return;
    for (i = 0; i < v->n && strcmp(v->layers[i].id, id) != 0; i++)
        ;
    if (i == v->n) {
        if (v->n == PULL_LAYERS_MAX)
            return;
        snprintf(v->layers[i].id, sizeof(v->layers[i].id), "%s", id);
        v->layers[i].start_bytes = -1;
        v->n++;
        printf("\n");
    }
    struct layer_line *l = &v->layers[i];
    char extra[96] = "";
    if (strcmp(status, "Downloading") == 0) {
        char a[32], b[32], rate[32] = "";
        if (l->start_bytes < 0) {
            l->start_bytes = cur;
            l->start_s = now_s();
        }
        double dt = now_s() - l->start_s;
        if (dt > 0.05) {
            cli_format_bytes((uint64_t)((double)(cur - l->start_bytes) / dt), rate, sizeof(rate));
            strcat(rate, "/s");
        }
        cli_format_bytes((uint64_t)cur, a, sizeof(a));
        cli_format_bytes((uint64_t)total, b, sizeof(b));
        snprintf(extra, sizeof(extra), " %s/%s %s", a, b, rate);
    }
    size_t up = v->n - i;
    printf("\033[%zuA\r\033[2K%s: %s%s\033[%zuB\r", up, id, status, extra, up);
    fflush(stdout);
}

static int
on_line(struct pull_view *v, const char *text)
{
    json_t *line = json_loads(text, 0, NULL);
    if (!line)
        return 0;
    if (!json_object_get(line, "id") &&
        (json_object_get(line, "error") || json_object_get(line, "digest"))) {
        json_decref(v->last);
        v->last = line;
        return 0;
    }
    if (v->tty && !v->quiet)
        draw(v, line);
    json_decref(line);
    return 0;
}

static int
on_data(const void *data, size_t len, void *ud, struct tp_err *err)
{
    struct pull_view *v = ud;
    (void)err;
    v->buf = xrealloc(v->buf, v->len + len + 1);
    memcpy(v->buf + v->len, data, len);
    v->len += len;
    v->buf[v->len] = '\0';
    char *nl;
    while ((nl = memchr(v->buf, '\n', v->len))) {
        *nl = '\0';
        on_line(v, v->buf);
        size_t used = (size_t)(nl - v->buf) + 1;
        memmove(v->buf, nl + 1, v->len - used + 1);
        v->len -= used;
    }
    return 0;
}

int
cli_image_pull(const struct cli_ctx *ctx, const char *ref, bool quiet)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct pull_view v = { .tty = isatty(STDOUT_FILENO), .quiet = quiet };
    json_t *body = json_pack("{s:s}", "ref", ref);
    int r, rc = CLI_EXIT_OK;

    if (!body) {
        cli_error("reference '%s' is not valid UTF-8", ref);
        return CLI_EXIT_FAIL;
    }
    r = client_stream(ctx->socket, "POST", "/v1/images/pull", body, on_data, &v, &err);
    json_decref(body);
    free(v.buf);
    if (r < 0) {
        cli_error("%s", tp_err_msg(&err));
        json_decref(v.last);
        return CLI_EXIT_FAIL;
    }
    json_t *e = json_object_get(v.last, "error");
    if (!v.last) {
        cli_error("pull '%s': torpord ended the stream without a result", ref);
        rc = CLI_EXIT_FAIL;
    } else if (e) {
        cli_error("%s", json_string_value(e));
        rc = CLI_EXIT_FAIL;
    } else if (quiet) {
        printf("%s\n", json_string_value(json_object_get(v.last, "ref")));
    } else {
        printf("Digest: %s\nStatus: %s\n%s\n", json_string_value(json_object_get(v.last, "digest")),
               json_string_value(json_object_get(v.last, "status")),
               json_string_value(json_object_get(v.last, "ref")));
    }
    json_decref(v.last);
    return rc;
}

int
cli_verb_pull(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);

    return x >= 0 ? x : cli_image_pull(ctx, a.operands[0], a.flags & 1u);
}

CLI_SYNTAX_FN(cli_syntax_pull)
