/* torpor logs: print an instance's serial console, optionally following it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"

static const char usage[] = "Usage: torpor logs [OPTIONS] NAME\n"
                            "\n"
                            "Print the serial console output of the instance NAME.\n"
                            "\n"
                            "Options:\n"
                            "  -f, --follow   keep streaming new output\n"
                            "  -h, --help     print this help\n";

int
cli_parse_logs(int argc, char **argv, struct logs_opts *ret, struct tp_err *err)
{
    static const struct option longopts[] = {
        { "follow", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    struct logs_opts o = { 0 };
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:fh", longopts, NULL)) >= 0) {
        switch (c) {
        case 'f':
            o.follow = true;
            break;
        case 'h':
            o.help = true;
            break;
        default:
            return cli_getopt_error(c, argv, err);
        }
    }
    if (!o.help) {
        if (optind >= argc)
            return tp_err_set(err, -EINVAL, "'logs' needs an instance NAME");
        if (argc - optind > 1)
            return tp_err_set(err, -EINVAL, "'logs' takes one NAME, got also '%s'",
                              argv[optind + 1]);
        o.name = argv[optind];
    }
    *ret = o;
    return 0;
}

static int
logs_on_data(const void *data, size_t len, void *userdata, struct tp_err *err)
{
    const char *p = data;

    /* Unbuffered, so `logs -f` shows console lines as they come. */
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return tp_err_errno(err, -errno, "write to stdout");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
cli_cmd_logs(const struct cli_ctx *ctx, const struct logs_opts *o)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path =
        client_instance_path(o->name, o->follow ? "/logs?follow=true" : "/logs");

    fflush(stdout);
    if (client_stream(ctx->socket, "GET", path, NULL, logs_on_data, NULL, &err) < 0) {
        cli_error("%s", tp_err_msg(&err));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int
cli_verb_logs(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct logs_opts o = { 0 };
    int r = cli_parse_logs(argc, argv, &o, &err);
    int x = cli_verb_prologue("logs", usage, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_logs(ctx, &o);
}
