/* torpor images: list the images in torpord's store as docker does (REPOSITORY TAG IMAGE ID
 * CREATED SIZE), as JSON, as ids, or through a template. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "client.h"
#include "format.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

enum {
    FLAG_QUIET = 1u << 0,
    FLAG_ALL = 1u << 1,
    FLAG_NO_TRUNC = 1u << 2,
    FLAG_FORMAT = 1u << 3,
};

static const struct cli_syntax syntax = {
    .verb = "images",
    .usage = "Usage: torpor images [OPTIONS] [REPOSITORY[:TAG]]\n"
             "\n"
             "List the images in torpord's store, one row per name.\n",
    .operands = CLI_OPERANDS_ANY,
    .flags = {
        { "quiet", 'q', "print image ids only", NULL },
        { "all", 'a', "show all images (torpor keeps no intermediate ones)", NULL },
        { "no-trunc", 0, "print full image ids", NULL },
        { "format", 0, "table, json, or a template: '{{.Repository}}:{{.Tag}}'", "FORMAT" },
    },
};

char *
cli_image_path(const char *ref, const char *suffix)
{
    /* the instance path's encoder percent-encodes '/' too: one path segment */
    _cleanup_free_ char *p = client_instance_path(ref, suffix);
    return xasprintf("/v1/images/%s", p + strlen("/v1/instances/"));
}

void
cli_format_size_si(uint64_t n, char *buf, size_t size)
{
    /* docker's units.HumanSize: decimal units, four significant digits */
    static const char *const units[] = { "B", "kB", "MB", "GB", "TB", "PB" };
    double v = (double)n;
    size_t u = 0;
    while (v >= 1000.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1000.0;
        u++;
    }
    snprintf(buf, size, "%.4g%s", v, units[u]);
}

/* Seconds since the epoch of an RFC 3339 time ("2025-01-02T03:04:05[.fff](Z|+hh:mm)"), or -1. */
static int64_t
parse_rfc3339(const char *s)
{
    struct tm tm = { 0 };
    const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    int64_t t;

    if (!p)
        return -1;
    t = (int64_t)timegm(&tm);
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    if ((*p == '+' || *p == '-') && strlen(p) >= 6) {
        int off =
            ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
        t += *p == '+' ? -off : off;
    }
    return t;
}

/* The docker-style row object of an API image: Repository, Tag, ID, CreatedSince, Size... */
static json_t *
row_of(const json_t *im, bool no_trunc)
{
    const char *id = json_string_value(json_object_get(im, "id"));
    const char *created = json_string_value(json_object_get(im, "created"));
    int64_t t = parse_rfc3339(created);
    char ago[64] = "N/A", size[32];
    _cleanup_free_ char *short_id = NULL;

    if (t >= 0) {
        cli_format_ago((int64_t)time(NULL) - t, ago, sizeof(ago));
    }
    cli_format_size_si((uint64_t)json_integer_value(json_object_get(im, "size")), size,
                       sizeof(size));
    if (id && !no_trunc && strncmp(id, "sha256:", 7) == 0)
        short_id = xstrndup(id + 7, 12);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "Repository",
                     json_string_value(json_object_get(im, "repository")) ?: "<none>", "Tag",
                     json_string_value(json_object_get(im, "tag")) ?: "<none>", "ID",
                     short_id ? short_id : (id ? id : ""), "CreatedSince", ago, "CreatedAt",
                     created ? created : "", "Size", size, "Digest",
                     json_string_value(json_object_get(im, "digest")) ?: "");
}

/* [REPOSITORY[:TAG]] as docker matches it: the repository as shown, and the tag if given. */
static bool
matches(const json_t *im, const char *want)
{
    const char *repo = json_string_value(json_object_get(im, "repository"));
    const char *tag = json_string_value(json_object_get(im, "tag"));
    const char *colon = strrchr(want, ':');
    if (colon && strchr(colon, '/'))
        colon = NULL;
    size_t rl = colon ? (size_t)(colon - want) : strlen(want);
    if (!repo || strlen(repo) != rl || strncmp(repo, want, rl) != 0)
        return false;
    return !colon || (tag && strcmp(tag, colon + 1) == 0);
}

int
cli_verb_images(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);
    const char *format;
    bool json, quiet, no_trunc;
    json_t *reply = NULL, *im;
    size_t i;

    if (x >= 0)
        return x;
    if (a.n_operands > 1) {
        cli_error("\"images\" requires at most 1 argument");
        return CLI_EXIT_USAGE;
    }
    format = a.values[3];
    json = format && strcmp(format, "json") == 0;
    if (format && (json || strcmp(format, "table") == 0))
        format = NULL;
    quiet = a.flags & FLAG_QUIET;
    no_trunc = a.flags & FLAG_NO_TRUNC;
    if (format && cli_format_check(format, &err) < 0) {
        cli_error("%s", tp_err_msg(&err));
        return CLI_EXIT_USAGE;
    }
    if (cli_call(ctx, "GET", "/v1/images", NULL, &reply) < 0)
        return CLI_EXIT_FAIL;
    if (!quiet && !json && !format)
        printf("%-40s %-12s %-14s %-16s %s\n", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
    json_t *out = json_array();
    json_array_foreach(reply, i, im)
    {
        if (a.n_operands == 1 && !matches(im, a.operands[0]))
            continue;
        json_t *row = row_of(im, no_trunc);
        if (json) {
            json_array_append(out, im);
        } else if (quiet) {
            printf("%s\n", json_string_value(json_object_get(row, "ID")));
        } else if (format) {
            if (cli_format_print(stdout, format, row, &err) < 0) {
                json_decref(row);
                json_decref(out);
                json_decref(reply);
                cli_error("%s", tp_err_msg(&err));
                return CLI_EXIT_FAIL;
            }
        } else {
            printf("%-40s %-12s %-14s %-16s %s\n",
                   json_string_value(json_object_get(row, "Repository")),
                   json_string_value(json_object_get(row, "Tag")),
                   json_string_value(json_object_get(row, "ID")),
                   json_string_value(json_object_get(row, "CreatedSince")),
                   json_string_value(json_object_get(row, "Size")));
        }
        json_decref(row);
    }
    if (json)
        cli_print_json(out);
    json_decref(out);
    json_decref(reply);
    return CLI_EXIT_OK;
}

CLI_SYNTAX_FN(cli_syntax_images)
