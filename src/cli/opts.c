/* Global options and the parsing helpers every verb shares. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

int
cli_parse_global(int argc, char **argv, const char *env_socket, struct cli_global_opts *ret,
                 struct tp_err *err)
{
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        {},
    };
    struct cli_global_opts o = {
        .socket = env_socket && *env_socket ? env_socket : CLI_DEFAULT_SOCKET,
    };
    int c;

    /* '+': stop at the verb, whose options are its own; ':' reports a missing value. */
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:hV", longopts, NULL)) >= 0) {
        switch (c) {
        case 's':
            if (!*optarg)
                return tp_err_set(err, -EINVAL, "option '--socket' needs a non-empty path");
            o.socket = optarg;
            break;
        case 'h':
            o.help = true;
            break;
        case 'V':
            o.version = true;
            break;
        default:
            return cli_getopt_error(c, argv, err);
        }
    }
    o.verb_index = optind;
    *ret = o;
    return 0;
}

int
cli_parse_no_args(const char *verb, int argc, char **argv, bool *ret_help, struct tp_err *err)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        {},
    };
    bool help = false;
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) >= 0) {
        if (c != 'h')
            return cli_getopt_error(c, argv, err);
        help = true;
    }
    if (!help && optind < argc)
        return tp_err_set(err, -EINVAL, "'%s' takes no arguments, got '%s'", verb, argv[optind]);
    *ret_help = help;
    return 0;
}

int
cli_parse_uint(const char *opt, const char *s, uint32_t max, uint32_t *ret, struct tp_err *err)
{
    unsigned long long v;
    char *end;

    /* strtoull accepts a sign and leading spaces: allow digits only. */
    if (!*s || strspn(s, "0123456789") != strlen(s))
        return tp_err_set(err, -EINVAL, "option '%s' expects a positive integer, not '%s'", opt, s);
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || v == 0 || v > max)
        return tp_err_set(err, -EINVAL, "option '%s' expects an integer from 1 to %u, not '%s'",
                          opt, max, s);
    *ret = (uint32_t)v;
    return 0;
}

int
cli_getopt_error(int c, char **argv, struct tp_err *err)
{
    /* getopt leaves optopt = the short option char, or 0 for an unknown long option; the
     * offending word is then the one before optind. */
    const char *word = optind > 0 ? argv[optind - 1] : "?";

    if (c == ':') {
        if (optopt > 0 && optopt < 128 && strncmp(word, "--", 2) != 0)
            return tp_err_set(err, -EINVAL, "option '-%c' needs a value", optopt);
        return tp_err_set(err, -EINVAL, "option '%s' needs a value", word);
    }
    if (optopt > 0 && optopt < 128)
        return tp_err_set(err, -EINVAL, "unknown option '-%c'", optopt);
    return tp_err_set(err, -EINVAL, "unknown option '%s'", word);
}

char *
cli_abspath(const char *path)
{
    char *r = realpath(path, NULL);
    _cleanup_free_ char *cwd = NULL;

    if (r)
        return r;
    if (path[0] == '/')
        return xstrdup(path);
    cwd = getcwd(NULL, 0);
    if (!cwd)
        return xstrdup(path); /* cwd was removed: let the daemon report the path */
    return fs_path_join(cwd, path);
}

void
cli_format_ago(int64_t seconds, char *buf, size_t size)
{
    const int64_t minute = 60, hour = 60 * minute, day = 24 * hour;

    /* Clock skew between daemon and CLI must not print "-3 seconds ago". */
    if (seconds < 1)
        snprintf(buf, size, "Less than a second ago");
    else if (seconds < minute)
        snprintf(buf, size, "%lld second%s ago", (long long)seconds, seconds == 1 ? "" : "s");
    else if (seconds < 2 * minute)
        snprintf(buf, size, "About a minute ago");
    else if (seconds < hour)
        snprintf(buf, size, "%lld minutes ago", (long long)(seconds / minute));
    else if (seconds < 2 * hour)
        snprintf(buf, size, "About an hour ago");
    else if (seconds < 2 * day)
        snprintf(buf, size, "%lld hours ago", (long long)(seconds / hour));
    else if (seconds < 14 * day)
        snprintf(buf, size, "%lld days ago", (long long)(seconds / day));
    else if (seconds < 60 * day)
        snprintf(buf, size, "%lld weeks ago", (long long)(seconds / (7 * day)));
    else if (seconds < 730 * day)
        snprintf(buf, size, "%lld months ago", (long long)(seconds / (30 * day)));
    else
        snprintf(buf, size, "%lld years ago", (long long)(seconds / (365 * day)));
}

void
cli_error(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout); /* keep stdout and stderr in order on a shared terminal */
    fputs("torpor: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int
cli_verb_prologue(const char *verb, const char *usage, int r, bool help, const struct tp_err *err)
{
    if (r < 0) {
        cli_error("%s", tp_err_msg(err));
        fprintf(stderr, "See 'torpor %s --help'.\n", verb);
        return CLI_EXIT_USAGE;
    }
    if (help) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    return -1;
}
