/* Global options and the parsing helpers every verb shares. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
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

/* getopt_long's value for syn->flags[i] when it has no short name: past every char. */
#define LONG_ONLY_VAL 0x100

static size_t
syntax_n_flags(const struct cli_syntax *syn)
{
    size_t n = 0;

    while (n < CLI_FLAGS_MAX && syn->flags[n].name)
        n++;
    return n;
}

int
cli_parse_args(const struct cli_syntax *syn, int argc, char **argv, struct cli_args *ret,
               struct tp_err *err)
{
    struct option longopts[CLI_FLAGS_MAX + 2] = { 0 };
    /* '+': stop at the first operand; ':' reports a missing value. Each option may take two
     * characters ("c:"), then "h" and the NUL. */
    char shortopts[2 + 2 * CLI_FLAGS_MAX + 2] = "+:";
    size_t n = syntax_n_flags(syn), ns = 2;
    struct cli_args a = { 0 };
    int c;

    for (size_t i = 0; i < n; i++) {
        const struct cli_flag *f = &syn->flags[i];
        assert(f->short_name != 'h');
        longopts[i] = (struct option){ f->name, f->arg ? required_argument : no_argument, NULL,
                                       f->short_name ? f->short_name : LONG_ONLY_VAL + (int)i };
        if (f->short_name) {
            shortopts[ns++] = f->short_name;
            if (f->arg)
                shortopts[ns++] = ':';
        }
    }
    longopts[n] = (struct option){ "help", no_argument, NULL, 'h' };
    shortopts[ns++] = 'h';
    shortopts[ns] = '\0';

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) >= 0) {
        size_t i = 0;

        if (c == 'h') {
            a.help = true;
            continue;
        }
        while (i < n && longopts[i].val != c)
            i++;
        if (i == n)
            return cli_getopt_error(c, argv, err);
        a.flags |= 1u << i;
        if (syn->flags[i].arg)
            a.values[i] = optarg;
    }
    a.operands = argv + optind;
    a.n_operands = (size_t)(argc - optind);
    if (!a.help) {
        switch (syn->operands) {
        case CLI_OPERANDS_NONE:
            if (a.n_operands > 0)
                return tp_err_set(err, -EINVAL, "'%s' takes no arguments, got '%s'", syn->verb,
                                  a.operands[0]);
            break;
        case CLI_OPERANDS_ONE:
            if (a.n_operands == 0)
                return tp_err_set(err, -EINVAL, "'%s' needs an instance NAME", syn->verb);
            if (a.n_operands > 1)
                return tp_err_set(err, -EINVAL, "'%s' takes one NAME, got also '%s'", syn->verb,
                                  a.operands[1]);
            break;
        case CLI_OPERANDS_SOME:
            if (a.n_operands == 0)
                return tp_err_set(err, -EINVAL, "'%s' needs at least one NAME", syn->verb);
            break;
        }
    }
    *ret = a;
    return 0;
}

/* "name ARG" or "name": what follows "--" in the option list. Caller frees. */
static char *
usage_label(const char *name, const char *arg)
{
    return arg ? xasprintf("%s %s", name, arg) : xstrdup(name);
}

static void
usage_option(FILE *f, int width, char short_name, const char *name, const char *arg,
             const char *help)
{
    _cleanup_free_ char *label = usage_label(name, arg);

    if (short_name)
        fprintf(f, "  -%c, ", short_name);
    else
        fputs("      ", f);
    fprintf(f, "--%-*s%s\n", width, label, help);
}

void
cli_usage_print(const struct cli_syntax *syn, FILE *f)
{
    size_t n = syntax_n_flags(syn), width = 9;

    /* Descriptions start in one column: "  -f, --force    remove ..." */
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *label = usage_label(syn->flags[i].name, syn->flags[i].arg);
        width = MAX(width, strlen(label) + 2);
    }
    fputs(syn->usage, f);
    fputs("\nOptions:\n", f);
    for (size_t i = 0; i < n; i++)
        usage_option(f, (int)width, syn->flags[i].short_name, syn->flags[i].name, syn->flags[i].arg,
                     syn->flags[i].help);
    usage_option(f, (int)width, 'h', "help", NULL, "print this help");
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

int
cli_check_utf8(const char *what, const char *s, struct tp_err *err)
{
    /* jansson's own test, so exactly what it would refuse is refused here. */
    json_t *j = json_string(s);

    if (!j)
        return tp_err_set(err, -EINVAL, "%s is not valid UTF-8", what);
    json_decref(j);
    return 0;
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

int
cli_syntax_prologue(const struct cli_syntax *syn, int r, bool help, const struct tp_err *err)
{
    if (r >= 0 && help) {
        cli_usage_print(syn, stdout);
        return CLI_EXIT_OK;
    }
    return cli_verb_prologue(syn->verb, NULL, r, false, err);
}

int
cli_verb_without_args(const struct cli_ctx *ctx, const struct cli_syntax *syn, int argc,
                      char **argv, int (*run)(const struct cli_ctx *ctx))
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(syn, argc, argv, &a, &err);
    int x = cli_syntax_prologue(syn, r, a.help, &err);

    return x >= 0 ? x : run(ctx);
}
