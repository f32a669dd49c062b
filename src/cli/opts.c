/* Global options, the one option parser every verb shares, and the parsing helpers. */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/name.h"
#include "util/xalloc.h"

enum {
    GLOBAL_SOCKET,
    GLOBAL_VERSION,
    GLOBAL_MAN,
};

const struct cli_syntax cli_global_syntax = {
    .verb = "",
    .usage = "Usage: torpor [OPTIONS] COMMAND [ARGS...]\n",
    .operands = CLI_OPERANDS_CMD, /* the verb is the "command": its words are its own */
    .flags = {
        [GLOBAL_SOCKET] = { "socket", 0, "torpord's API socket", "PATH" },
        [GLOBAL_VERSION] = { "version", 'V', "print torpor's version", NULL },
        [GLOBAL_MAN] = { "man", 0, NULL, NULL }, /* hidden: print torpor(1) in roff */
    },
};

int
cli_parse_global(int argc, char **argv, const char *env_socket, struct cli_global_opts *ret,
                 struct tp_err *err)
{
    struct cli_args a;
    const char *sock;
    int r;

    r = cli_parse_args(&cli_global_syntax, argc, argv, &a, err);
    if (r < 0)
        return r;
    sock = a.values[GLOBAL_SOCKET];
    if (!a.help && sock && !*sock)
        return tp_err_set(err, -EINVAL, "option '--socket' needs a non-empty path");
    *ret = (struct cli_global_opts){
        .socket = sock && *sock               ? sock
                  : env_socket && *env_socket ? env_socket
                                              : CLI_DEFAULT_SOCKET,
        .help = a.help,
        .version = a.flags & (1u << GLOBAL_VERSION),
        .man = a.flags & (1u << GLOBAL_MAN),
        .verb_index = argc - (int)a.n_operands,
    };
    return 0;
}

/* ---- the option parser -------------------------------------------------------------------- */

/* --help and -h: every verb has them, after its own flags in the usage. */
static const struct cli_flag help_flag = { "help", 'h', "print this help", NULL };

static size_t
syntax_n_flags(const struct cli_syntax *syn)
{
    size_t n = 0;

    while (n < CLI_FLAGS_MAX && syn->flags[n].name)
        n++;
    return n;
}

/* Flag i of syn, where i == syntax_n_flags(syn) is --help. */
static const struct cli_flag *
syntax_flag(const struct cli_syntax *syn, size_t n, size_t i)
{
    return i < n ? &syn->flags[i] : &help_flag;
}

#define FLAG_NONE      SIZE_MAX
#define FLAG_AMBIGUOUS (SIZE_MAX - 1)

struct parse {
    const struct cli_syntax *syn;
    size_t n_flags; /* syn's own; index n_flags is --help */
    int argc;
    char **argv;
    int i;       /* the word being read */
    char **opts; /* option words (and their separate values) in order */
    size_t n_opts;
    bool reorder; /* an option word came after an operand */
    cli_value_fn each;
    void *userdata;
    struct cli_args a;
    struct tp_err first; /* the first mistake; reported only if no --help comes */
};

/* Keep the first mistake and read on: a later --help still wins. */
static void _printf_(2, 3) parse_fail(struct parse *p, const char *fmt, ...)
{
    _cleanup_free_ char *msg = NULL;
    va_list ap;

    if (p->first.code != 0)
        return;
    va_start(ap, fmt);
    msg = xvasprintf(fmt, ap);
    va_end(ap);
    tp_err_set(&p->first, -EINVAL, "%s", msg);
}

static void
parse_seen(struct parse *p, size_t i, const char *value)
{
    if (i == p->n_flags) {
        p->a.help = true;
        return;
    }
    p->a.flags |= 1u << i;
    if (value)
        p->a.values[i] = value;
    if (p->each && p->first.code == 0)
        p->each(i, value, p->userdata);
}

/* The next word as an option's value, or NULL at the end of argv. */
static const char *
parse_take_value(struct parse *p)
{
    if (p->i + 1 >= p->argc)
        return NULL;
    p->i++;
    p->opts[p->n_opts++] = p->argv[p->i];
    return p->argv[p->i];
}

/* The flag named name[0..len): an exact name, else the only one it abbreviates (as
 * getopt_long, which torpor used before: "--tr" is --trace where nothing else matches). */
static size_t
parse_find_long(const struct parse *p, const char *name, size_t len)
{
    size_t found = FLAG_NONE;

    for (size_t i = 0; i <= p->n_flags; i++) {
        const char *f = syntax_flag(p->syn, p->n_flags, i)->name;
        if (strncmp(f, name, len) != 0)
            continue;
        if (f[len] == '\0')
            return i;
        found = found == FLAG_NONE ? i : FLAG_AMBIGUOUS;
    }
    return found;
}

static size_t
parse_find_short(const struct parse *p, char c)
{
    for (size_t i = 0; i <= p->n_flags; i++)
        if (syntax_flag(p->syn, p->n_flags, i)->short_name == c)
            return i;
    return FLAG_NONE;
}

/* "--name", "--name=VALUE" or "--name VALUE". */
static void
parse_long(struct parse *p, const char *word)
{
    const char *name = word + 2, *eq = strchr(name, '='), *value;
    int len = eq ? (int)(eq - name) : (int)strlen(name);
    size_t i = parse_find_long(p, name, (size_t)len);
    const struct cli_flag *f;

    if (i == FLAG_NONE) {
        parse_fail(p, "unknown flag: --%.*s", len, name);
        return;
    }
    if (i == FLAG_AMBIGUOUS) {
        parse_fail(p, "ambiguous flag: --%.*s (give the whole name)", len, name);
        return;
    }
    f = syntax_flag(p->syn, p->n_flags, i);
    if (!f->arg) {
        if (eq)
            parse_fail(p, "flag --%s takes no value, got '%s'", f->name, eq + 1);
        else
            parse_seen(p, i, NULL);
        return;
    }
    value = eq ? eq + 1 : parse_take_value(p);
    if (!value) {
        parse_fail(p, "flag needs an argument: --%s", f->name);
        return;
    }
    parse_seen(p, i, value);
}

/* "-a", "-abc" (flags grouped), "-mVALUE", "-m=VALUE" or "-m VALUE". */
static void
parse_short(struct parse *p, const char *word)
{
    for (const char *c = word + 1; *c; c++) {
        size_t i = parse_find_short(p, *c);
        const char *value;

        if (i == FLAG_NONE) {
            parse_fail(p, "unknown shorthand flag: '%c' in %s", *c, word);
            return;
        }
        if (!syntax_flag(p->syn, p->n_flags, i)->arg) {
            parse_seen(p, i, NULL);
            continue;
        }
        /* The rest of the word is the value; pflag (docker) drops one '=' before it. */
        value = c[1] == '=' ? c + 2 : c[1] ? c + 1 : parse_take_value(p);
        if (!value) {
            parse_fail(p, "flag needs an argument: '%c' in %s", *c, word);
            return;
        }
        parse_seen(p, i, value);
        return;
    }
}

/* Operands the syntax does not allow: -EINVAL with a message. */
static int
parse_check_operands(const struct cli_syntax *syn, const struct cli_args *a, struct tp_err *err)
{
    switch (syn->operands) {
    case CLI_OPERANDS_NONE:
        if (a->n_operands > 0)
            return tp_err_set(err, -EINVAL, "'%s' takes no arguments, got '%s'", syn->verb,
                              a->operands[0]);
        break;
    case CLI_OPERANDS_ONE:
        if (a->n_operands == 0)
            return tp_err_set(err, -EINVAL, "'%s' needs an instance NAME", syn->verb);
        if (a->n_operands > 1)
            return tp_err_set(err, -EINVAL, "'%s' takes one NAME, got also '%s'", syn->verb,
                              a->operands[1]);
        break;
    case CLI_OPERANDS_SOME:
        if (a->n_operands == 0)
            return tp_err_set(err, -EINVAL, "'%s' needs at least one NAME", syn->verb);
        break;
    case CLI_OPERANDS_ANY:
    case CLI_OPERANDS_CMD:
        break;
    case CLI_OPERANDS_NAME_CMD:
        if (a->n_operands == 0)
            return tp_err_set(err, -EINVAL, "'%s' needs an instance NAME and a CMD", syn->verb);
        if (a->n_operands == 1)
            return tp_err_set(err, -EINVAL, "'%s' needs a CMD to run in '%s'", syn->verb,
                              a->operands[0]);
        break;
    }
    /* An empty NAME would reach torpord as the collection's path ("inspect ''"). */
    size_t n_names = syn->operands == CLI_OPERANDS_NAME_CMD ? 1
                     : syn->operands == CLI_OPERANDS_CMD || syn->operands == CLI_OPERANDS_NONE
                         ? 0
                         : a->n_operands;
    for (size_t i = 0; i < n_names && i < a->n_operands; i++)
        if (!a->operands[i][0])
            return tp_err_set(err, -EINVAL, "an empty NAME names no instance");
    return 0;
}

int
cli_parse_args_each(const struct cli_syntax *syn, int argc, char **argv, cli_value_fn each,
                    void *userdata, struct cli_args *ret, struct tp_err *err)
{
    /* Option parsing ends at "--" and, for a command, at its first word (docker's
     * SetInterspersed(false) for `exec NAME CMD...` and `run ... CMD`). */
    size_t cmd_at = syn->operands == CLI_OPERANDS_CMD        ? 0
                    : syn->operands == CLI_OPERANDS_NAME_CMD ? 1
                                                             : SIZE_MAX;
    _cleanup_free_ char **operands = xnew(char *, (size_t)argc + 1);
    size_t n_operands = 0;
    struct parse p = {
        .syn = syn,
        .n_flags = syntax_n_flags(syn),
        .argc = argc,
        .argv = argv,
        .opts = xnew(char *, (size_t)argc + 1),
        .each = each,
        .userdata = userdata,
    };
    bool ended = false;
    int r = 0;

    for (size_t i = 0; i < p.n_flags; i++)
        assert(syn->flags[i].short_name != 'h' && strcmp(syn->flags[i].name, "help") != 0);

    for (p.i = 1; p.i < argc; p.i++) {
        char *w = argv[p.i];

        /* "-" alone is a word (stdin, by convention), not an option. */
        if (ended || w[0] != '-' || w[1] == '\0') {
            if (!ended && n_operands == cmd_at)
                ended = true;
            operands[n_operands++] = w;
            continue;
        }
        p.opts[p.n_opts++] = w;
        p.reorder = p.reorder || n_operands > 0;
        if (strcmp(w, "--") == 0)
            ended = true;
        else if (w[1] == '-')
            parse_long(&p, w);
        else
            parse_short(&p, w);
    }

    /* Like GNU getopt, reorder argv: options first, then the operands, each in their order, so
     * the operands are one array callers can borrow. An argv in that order already is not
     * written (it may be read-only). */
    if (p.reorder) {
        memcpy(argv + 1, p.opts, p.n_opts * sizeof(char *));
        memcpy(argv + 1 + p.n_opts, operands, n_operands * sizeof(char *));
    }
    p.a.operands = argv + 1 + p.n_opts;
    p.a.n_operands = n_operands;

    if (!p.a.help) {
        if (p.first.code < 0) {
            r = -EINVAL;
            if (err)
                tp_err_move(err, &p.first);
        } else {
            r = parse_check_operands(syn, &p.a, err);
        }
    }
    if (r >= 0)
        *ret = p.a;
    tp_err_clear(&p.first);
    free(p.opts);
    return r;
}

int
cli_parse_args(const struct cli_syntax *syn, int argc, char **argv, struct cli_args *ret,
               struct tp_err *err)
{
    return cli_parse_args_each(syn, argc, argv, NULL, NULL, ret, err);
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
        if (syn->flags[i].help)
            width = MAX(width, strlen(label) + 2);
    }
    fputs(syn->usage, f);
    fputs("\nOptions:\n", f);
    for (size_t i = 0; i <= n; i++) {
        const struct cli_flag *fl = syntax_flag(syn, n, i);
        if (!fl->help)
            continue;
        usage_option(f, (int)width, fl->short_name, fl->name, fl->arg, fl->help);
    }
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

/* n MiB as the shortest exact "<n><unit>": 64M, 64G, 1T. */
static void
format_mib(uint32_t n, char *buf, size_t size)
{
    if (n >= 1024u * 1024u && n % (1024u * 1024u) == 0)
        snprintf(buf, size, "%uT", n / (1024u * 1024u));
    else if (n >= 1024u && n % 1024u == 0)
        snprintf(buf, size, "%uG", n / 1024u);
    else
        snprintf(buf, size, "%uM", n);
}

int
cli_parse_size_mib(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *ret,
                   struct tp_err *err)
{
    /* The unit's size in KiB; a plain number is MiB, as it always was here. */
    static const struct {
        char unit;
        uint64_t kib;
    } units[] = { { 'k', 1 }, { 'm', 1024 }, { 'g', 1024 * 1024 }, { 't', 1024 * 1024 * 1024 } };
    size_t digits = strspn(s, "0123456789");
    const char *rest = s + digits;
    uint64_t kib = 1024, v;
    char lo[16], hi[16];

    format_mib(min, lo, sizeof(lo));
    format_mib(max, hi, sizeof(hi));
    if (*rest) {
        size_t u = 0;
        while (u < ELEMENTSOF(units) && units[u].unit != (rest[0] | 0x20))
            u++;
        /* 2G, 2g, 2GB, 2GiB: the unit letter, optionally "B" or "iB". */
        if (u < ELEMENTSOF(units) &&
            (strcasecmp(rest + 1, "") == 0 || strcasecmp(rest + 1, "b") == 0 ||
             strcasecmp(rest + 1, "ib") == 0))
            kib = units[u].kib;
        else
            digits = 0;
    }
    if (digits == 0)
        return tp_err_set(err, -EINVAL,
                          "option '%s' expects a size such as 512M or 2G (a plain number is "
                          "MiB), not '%s'",
                          opt, s);
    /* Below 2^40, times at most 2^20 MiB per unit: no overflow; longer is out of range. */
    v = digits <= 12 ? strtoull(s, NULL, 10) : UINT64_MAX;
    if (v != UINT64_MAX && kib == 1 && v % 1024 != 0)
        return tp_err_set(err, -EINVAL, "option '%s' expects whole MiB, not '%s'", opt, s);
    if (v != UINT64_MAX)
        v = kib == 1 ? v / 1024 : v * (kib / 1024);
    if (v < min || v > max)
        return tp_err_set(err, -EINVAL, "option '%s' expects a size from %s to %s, not '%s'", opt,
                          lo, hi, s);
    *ret = (uint32_t)v;
    return 0;
}

int
cli_check_name(const char *opt, const char *s, size_t max, struct tp_err *err)
{
    if (!name_valid(s, max))
        return tp_err_set(err, -EINVAL,
                          "option '%s' expects lowercase letters, digits and '-' (not first), "
                          "at most %zu characters, not '%s'",
                          opt, max, s);
    return 0;
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
    char *msg;

    fflush(stdout); /* keep stdout and stderr in order on a shared terminal */
    va_start(ap, fmt);
    msg = xvasprintf(fmt, ap);
    va_end(ap);
    /* Messages carry text from outside (a registry's error, a manifest's media type): no
     * control byte of theirs may drive the terminal. */
    for (char *p = msg; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f)
            *p = '?';
    fprintf(stderr, "torpor: %s\n", msg);
    free(msg);
}

int
cli_syntax_prologue(const struct cli_syntax *syn, int r, bool help, const struct tp_err *err)
{
    if (r < 0) {
        cli_error("%s", tp_err_msg(err));
        fprintf(stderr, "See 'torpor %s --help'.\n", syn->verb);
        return syn->usage_exit ? syn->usage_exit : CLI_EXIT_USAGE;
    }
    if (help) {
        cli_usage_print(syn, stdout);
        return CLI_EXIT_OK;
    }
    return -1;
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
