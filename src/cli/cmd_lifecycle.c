/* torpor stop, start, standby, restore and rm: one request per NAME; each verb is a table row. */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/macro.h"
#include "util/xalloc.h"

/* A lifecycle verb has at most one option. */
enum lifecycle_flag {
    LIFECYCLE_NO_FLAG,
    LIFECYCLE_TRACE, /* --trace: the reply's last_operation, for the verbs that record one */
    LIFECYCLE_FORCE, /* -f: rm also kills a running VMM, stop also discards a snapshot */
};

struct cli_lifecycle {
    const char *verb;
    const char *method; /* POST (with "{}") or DELETE (no body) */
    const char *suffix; /* after /v1/instances/<name> */
    const char *then;   /* a second POST once the first succeeded (restart: stop, start) */
    enum lifecycle_flag flag;
    const char *force_help; /* with LIFECYCLE_FORCE */
    const char *usage;
};

static const struct cli_lifecycle lifecycles[] = {
    {
        .verb = "stop",
        .method = "POST",
        .suffix = "/stop",
        .flag = LIFECYCLE_FORCE,
        .force_help = "also stop one on standby (its snapshot goes)",
        .usage = "Usage: torpor stop [OPTIONS] NAME...\n"
                 "\n"
                 "Stop instances; prints each NAME stopped (a stopped one is no error). NAME\n"
                 "is an instance name, id, or unique id prefix.\n",
    },
    {
        .verb = "start",
        .method = "POST",
        .suffix = "/start",
        .usage = "Usage: torpor start NAME...\n"
                 "\n"
                 "Start stopped instances; prints each NAME started (a running one is no\n"
                 "error). NAME is an instance name, id, or unique id prefix.\n",
    },
    {
        .verb = "restart",
        .method = "POST",
        .suffix = "/stop",
        .then = "/start",
        .usage = "Usage: torpor restart NAME...\n"
                 "\n"
                 "Stop and start instances again (a fresh boot on the same disk); prints each\n"
                 "NAME restarted. NAME is an instance name, id, or unique id prefix.\n",
    },
    {
        .verb = "standby",
        .method = "POST",
        .suffix = "/standby",
        .flag = LIFECYCLE_TRACE,
        .usage = "Usage: torpor standby [OPTIONS] NAME...\n"
                 "\n"
                 "Put running instances on standby: snapshot each guest, stop its VMM and give\n"
                 "its memory back to the host ('torpor restore' resumes it); prints each NAME\n"
                 "put on standby. NAME is an instance name, id, or unique id prefix.\n",
    },
    {
        .verb = "restore",
        .method = "POST",
        .suffix = "/restore",
        .flag = LIFECYCLE_TRACE,
        .usage = "Usage: torpor restore [OPTIONS] NAME...\n"
                 "\n"
                 "Resume instances on standby from their snapshots; prints each NAME once its\n"
                 "guest answers again. NAME is an instance name, id, or unique id prefix.\n",
    },
    {
        .verb = "rm",
        .method = "DELETE",
        .suffix = "",
        .flag = LIFECYCLE_FORCE,
        .force_help = "remove even if its VMM runs (it is killed)",
        .usage = "Usage: torpor rm [OPTIONS] NAME...\n"
                 "\n"
                 "Remove instances; prints each NAME removed. NAME is an instance\n"
                 "name, id, or unique id prefix.\n",
    },
};

static const struct cli_lifecycle *
lifecycle_find(const char *verb)
{
    for (size_t i = 0; i < ELEMENTSOF(lifecycles); i++)
        if (strcmp(lifecycles[i].verb, verb) == 0)
            return &lifecycles[i];
    return NULL;
}

static void
lifecycle_syntax(const struct cli_lifecycle *lc, struct cli_syntax *ret)
{
    /* LIFECYCLE_NO_FLAG's entry is all zero: its NULL name leaves the option list empty. */
    static const struct cli_flag flags[] = {
        [LIFECYCLE_TRACE] = CLI_FLAG_TRACE,
        [LIFECYCLE_FORCE] = { .name = "force", .short_name = 'f' },
    };

    *ret = (struct cli_syntax){
        .verb = lc->verb,
        .usage = lc->usage,
        .operands = CLI_OPERANDS_SOME,
        .flags = { flags[lc->flag] },
    };
    if (lc->flag == LIFECYCLE_FORCE)
        ret->flags[0].help = lc->force_help;
}

static int
lifecycle_parse(const struct cli_lifecycle *lc, int argc, char **argv, struct lifecycle_opts *ret,
                struct tp_err *err)
{
    struct cli_syntax syn;
    struct cli_args a;
    bool given;
    int r;

    lifecycle_syntax(lc, &syn);
    r = cli_parse_args(&syn, argc, argv, &a, err);
    if (r < 0)
        return r;
    given = a.flags & 1u; /* the verb's one option, syn.flags[0] */
    *ret = (struct lifecycle_opts){
        .verb = lc,
        .names = a.operands,
        .n_names = a.n_operands,
        .trace = given && lc->flag == LIFECYCLE_TRACE,
        .force = given && lc->flag == LIFECYCLE_FORCE,
        .help = a.help,
    };
    return 0;
}

int
cli_parse_lifecycle(int argc, char **argv, struct lifecycle_opts *ret, struct tp_err *err)
{
    const struct cli_lifecycle *lc = lifecycle_find(argv[0]);

    if (!lc)
        return tp_err_set(err, -EINVAL, "unknown command '%s'", argv[0]);
    return lifecycle_parse(lc, argc, argv, ret, err);
}

int
cli_cmd_lifecycle(const struct cli_ctx *ctx, const struct lifecycle_opts *o)
{
    const struct cli_lifecycle *lc = o->verb;
    /* --force is a query parameter (rm's DELETE, stop's POST). */
    _cleanup_free_ char *suffix = xasprintf("%s%s", lc->suffix, o->force ? "?force=true" : "");
    int rc = CLI_EXIT_OK;

    /* Like docker: print each name done, report each failure and go on to the next name. */
    for (size_t i = 0; i < o->n_names; i++) {
        _cleanup_free_ char *path = client_instance_path(o->names[i], suffix);
        json_t *body = strcmp(lc->method, "POST") == 0 ? json_object() : NULL, *reply = NULL;
        int r = cli_call(ctx, lc->method, path, body, &reply);

        if (r >= 0 && lc->then) {
            _cleanup_free_ char *next = client_instance_path(o->names[i], lc->then);
            json_decref(reply);
            reply = NULL;
            r = cli_call(ctx, "POST", next, body, &reply);
        }
        json_decref(body);
        if (r < 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        printf("%s\n", o->names[i]);
        fflush(stdout);
        if (o->trace)
            cli_print_trace(reply);
        json_decref(reply);
    }
    return rc;
}

int
cli_verb_lifecycle(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    const struct cli_lifecycle *lc = lifecycle_find(argv[0]);
    struct lifecycle_opts o = { 0 };
    struct cli_syntax syn;
    int r, x;

    assert(lc); /* main() sends only this table's verbs here */
    lifecycle_syntax(lc, &syn);
    r = lifecycle_parse(lc, argc, argv, &o, &err);
    x = cli_syntax_prologue(&syn, r, o.help, &err);
    return x >= 0 ? x : cli_cmd_lifecycle(ctx, &o);
}
