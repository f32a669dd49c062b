/* torpor stop, start, restart, standby, restore, pause, unpause and rm: one request per NAME;
 * each verb is a table row. rm --all asks the daemon for the names first. */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/macro.h"
#include "util/xalloc.h"

/* A lifecycle verb has at most one option besides rm's --all. */
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
    bool all;               /* -a, --all: every instance instead of NAMEs (rm) */
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
        .verb = "pause",
        .method = "POST",
        .suffix = "/pause",
        .usage = "Usage: torpor pause NAME...\n"
                 "\n"
                 "Pause running instances: their VMMs stop the guests' vCPUs, memory stays\n"
                 "in place ('torpor unpause' resumes them); prints each NAME paused. NAME is\n"
                 "an instance name, id, or unique id prefix.\n",
    },
    {
        .verb = "unpause",
        .method = "POST",
        .suffix = "/unpause",
        .usage = "Usage: torpor unpause NAME...\n"
                 "\n"
                 "Resume paused instances; prints each NAME resumed. NAME is an instance\n"
                 "name, id, or unique id prefix.\n",
    },
    {
        .verb = "rm",
        .method = "DELETE",
        .suffix = "",
        .flag = LIFECYCLE_FORCE,
        .force_help = "remove even if its VMM runs (it is killed); with --all, do not ask",
        .all = true,
        .usage = "Usage: torpor rm [OPTIONS] NAME...\n"
                 "       torpor rm --all [--force]\n"
                 "\n"
                 "Remove instances; prints each NAME removed. NAME is an instance\n"
                 "name, id, or unique id prefix. --all removes every instance: on a\n"
                 "terminal it asks first; otherwise it needs --force.\n",
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
        /* --all or NAMEs: lifecycle_parse() checks which. */
        .operands = lc->all ? CLI_OPERANDS_ANY : CLI_OPERANDS_SOME,
        .flags = { flags[lc->flag] },
    };
    if (lc->flag == LIFECYCLE_FORCE)
        ret->flags[0].help = lc->force_help;
    if (lc->all)
        ret->flags[1] =
            (struct cli_flag){ .name = "all", .short_name = 'a', .help = "remove every instance" };
}

void
cli_syntax_lifecycle(const char *verb, struct cli_syntax *ret)
{
    const struct cli_lifecycle *lc = lifecycle_find(verb);

    assert(lc);
    lifecycle_syntax(lc, ret);
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
    bool all = lc->all && (a.flags & 2u);
    if (!a.help && lc->all && all && a.n_operands > 0)
        return tp_err_set(err, -EINVAL, "'%s --all' takes no NAME, got '%s'", lc->verb,
                          a.operands[0]);
    if (!a.help && lc->all && !all && a.n_operands == 0)
        return tp_err_set(err, -EINVAL, "'%s' needs at least one NAME", lc->verb);
    *ret = (struct lifecycle_opts){
        .verb = lc,
        .names = a.operands,
        .n_names = a.n_operands,
        .trace = given && lc->flag == LIFECYCLE_TRACE,
        .force = given && lc->flag == LIFECYCLE_FORCE,
        .all = all,
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

bool
cli_rm_all_confirmed(const char *answer)
{
    /* docker's prompt: "y" or "yes" in any case; anything else (an empty line too) is no. */
    size_t n = strcspn(answer, "\r\n");
    return (n == 1 && (answer[0] == 'y' || answer[0] == 'Y')) ||
           (n == 3 && strncasecmp(answer, "yes", 3) == 0);
}

/* rm --all: every instance's name, after the guard (docker's prune): a terminal is asked,
 * anything else needs --force. 0 with the names (maybe none), 1: declined, <0: failed. */
static int
rm_all_names(const struct cli_ctx *ctx, bool force, char ***ret, size_t *ret_n)
{
    json_t *reply = NULL, *insts, *inst;
    size_t k, n;
    int r = cli_call(ctx, "GET", "/v1/instances?all=true", NULL, &reply);

    if (r < 0)
        return r;
    insts = json_object_get(reply, "instances");
    n = json_array_size(insts);
    if (n > 0 && !force) {
        char line[64] = "";
        if (!isatty(STDIN_FILENO)) {
            json_decref(reply);
            cli_error("rm --all: stdin is not a terminal to ask on: add --force to remove all %zu "
                      "instance%s",
                      n, n == 1 ? "" : "s");
            return -EINVAL;
        }
        fprintf(stderr,
                "WARNING! This will remove all %zu instance%s.\n"
                "Are you sure you want to continue? [y/N] ",
                n, n == 1 ? "" : "s");
        fflush(stderr);
        if (!fgets(line, sizeof(line), stdin) || !cli_rm_all_confirmed(line)) {
            json_decref(reply);
            return 1;
        }
    }
    char **names = xnew(char *, n + 1);
    json_array_foreach(insts, k, inst)
    {
        const char *name = json_string_value(json_object_get(inst, "name"));
        names[k] = xstrdup(name ? name : json_string_value(json_object_get(inst, "id")));
    }
    json_decref(reply);
    *ret = names;
    *ret_n = n;
    return 0;
}

int
cli_cmd_lifecycle(const struct cli_ctx *ctx, const struct lifecycle_opts *o)
{
    const struct cli_lifecycle *lc = o->verb;
    if (o->all) {
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        int r = rm_all_names(ctx, o->force, &names, &n);
        if (r != 0)
            return r < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
        struct lifecycle_opts each = *o;
        each.all = false;
        each.names = names;
        each.n_names = n;
        return cli_cmd_lifecycle(ctx, &each);
    }
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
