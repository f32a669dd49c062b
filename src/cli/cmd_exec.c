/* torpor exec: run a command in a guest, stream its output, exit with its status. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attach.h"
#include "cli.h"
#include "client.h"
#include "exec_stream.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

enum {
    OPT_ENV,
    OPT_WORKDIR,
    OPT_INTERACTIVE,
    OPT_TTY,
    OPT_DETACH,
    OPT_USER,
};

static const struct cli_syntax syntax = {
    .verb = "exec",
    .usage = "Usage: torpor exec [OPTIONS] NAME [--] CMD [ARGS...]\n"
             "\n"
             "Run CMD in the instance NAME; its output streams to stdout and stderr and torpor exits\n"
             "with its exit code (125: torpor failed or the session was cut while CMD may still run,\n"
             "126: CMD could not run, 127: CMD not found, 137: the instance stopped under it).\n"
             "Ctrl-C, SIGTERM, SIGHUP and SIGQUIT reach CMD; if torpor itself dies, CMD gets SIGHUP.\n"
             "Options end at CMD: what follows it is CMD's.\n",
    .operands = CLI_OPERANDS_NAME_CMD,
    /* A usage error must not pass for CMD's own exit code 2. */
    .usage_exit = CLI_EXIT_EXEC_DAEMON,
    .flags = {
        [OPT_ENV] = { "env", 'e', "set an environment variable (repeatable); K alone: from ours",
                      "K=V" },
        [OPT_WORKDIR] = { "workdir", 'w', "working directory in the guest", "DIR" },
        [OPT_INTERACTIVE] = { "interactive", 'i', "keep stdin attached: it streams to CMD", NULL },
        [OPT_TTY] = { "tty", 't', "run CMD on a pseudo-terminal (-it for a shell)", NULL },
        [OPT_DETACH] = { "detach", 'd', "run CMD in the background, detached", NULL },
        [OPT_USER] = { "user", 'u', "run as this user (and group)", "USER[:GROUP]" },
    },
};

void
cli_exec_opts_done(struct exec_opts *o)
{
    free(o->name);
    strv_free(o->env);
    free(o->workdir);
    free(o->user);
    strv_free(o->cmd);
    *o = (struct exec_opts){ 0 };
}

static void
strv_push(char ***v, size_t *n, const char *s)
{
    *v = xrealloc(*v, sizeof(char *) * (*n + 2));
    (*v)[(*n)++] = xstrdup(s);
    (*v)[*n] = NULL;
}

struct exec_parse {
    struct exec_opts *o;
    size_t n_env;
};

/* -e is repeatable: keep each value, in order. */
static void
exec_on_option(size_t flag, const char *value, void *userdata)
{
    struct exec_parse *ep = userdata;

    if (flag != OPT_ENV)
        return;
    if (strchr(value, '=')) {
        strv_push(&ep->o->env, &ep->n_env, value);
        return;
    }
    /* docker's -e K: K's value here, or nothing at all when we have no K. */
    const char *v = *value ? getenv(value) : NULL;
    if (v) {
        _cleanup_free_ char *kv = xasprintf("%s=%s", value, v);
        strv_push(&ep->o->env, &ep->n_env, kv);
    } else if (!*value) {
        strv_push(&ep->o->env, &ep->n_env, value); /* refused below */
    }
}

int
cli_parse_exec(int argc, char **argv, struct exec_opts *ret, struct tp_err *err)
{
    _cleanup_(cli_exec_opts_done) struct exec_opts o = { 0 };
    struct exec_parse ep = { .o = &o };
    const char *workdir;
    size_t n_cmd = 0;
    struct cli_args a;
    int r;

    r = cli_parse_args_each(&syntax, argc, argv, exec_on_option, &ep, &a, err);
    if (r < 0)
        return r;
    if (a.help) {
        *ret = (struct exec_opts){ .help = true };
        return 0;
    }
    strv_foreach (e, o.env) {
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e)
            return tp_err_set(err, -EINVAL, "option '--env' expects K=V, not '%s'", *e);
        if (cli_check_utf8("the value of '--env'", *e, err) < 0)
            return -EINVAL;
    }
    workdir = a.values[OPT_WORKDIR];
    if (workdir) {
        if (!*workdir)
            return tp_err_set(err, -EINVAL, "option '--workdir' needs a non-empty value");
        if (cli_check_utf8("the value of '--workdir'", workdir, err) < 0)
            return -EINVAL;
        o.workdir = xstrdup(workdir);
    }
    if (a.values[OPT_USER]) {
        if (!*a.values[OPT_USER])
            return tp_err_set(err, -EINVAL, "option '--user' needs a non-empty value");
        o.user = xstrdup(a.values[OPT_USER]);
    }
    o.interactive = a.flags & (1u << OPT_INTERACTIVE);
    o.tty = a.flags & (1u << OPT_TTY);
    o.detach = a.flags & (1u << OPT_DETACH);
    if (o.detach && (o.interactive || o.tty))
        return tp_err_set(err, -EINVAL,
                          "option '--detach' cannot go with '--interactive' or '--tty'");
    o.name = xstrdup(a.operands[0]);
    for (size_t i = 1; i < a.n_operands; i++) {
        _cleanup_free_ char *what = xasprintf("argument %zu of CMD", i);
        if (cli_check_utf8(what, a.operands[i], err) < 0)
            return -EINVAL;
        strv_push(&o.cmd, &n_cmd, a.operands[i]);
    }
    *ret = o;
    o = (struct exec_opts){ 0 }; /* moved to ret */
    return 0;
}

/* Whether the "K=V" list sets key. */
static bool
getenv_in(char **env, const char *key)
{
    size_t n = strlen(key);

    strv_foreach (e, env)
        if (strncmp(*e, key, n) == 0 && (*e)[n] == '=')
            return true;
    return false;
}

static json_t *
exec_body(const struct exec_opts *o)
{
    json_t *b = json_object(), *cmd = json_array();

    strv_foreach (s, o->cmd)
        json_array_append_new(cmd, json_string(*s));
    json_object_set_new(b, "cmd", cmd);
    if (o->env) {
        json_t *env = json_array();
        strv_foreach (s, o->env)
            json_array_append_new(env, json_string(*s));
        json_object_set_new(b, "env", env);
    }
    if (o->workdir)
        json_object_set_new(b, "cwd", json_string(o->workdir));
    if (o->user)
        json_object_set_new(b, "user", json_string(o->user));
    if (o->interactive)
        json_object_set_new(b, "stdin", json_true());
    if (o->tty)
        json_object_set_new(b, "tty", json_true());
    if (o->detach)
        json_object_set_new(b, "detach", json_true());
    return b;
}

int
cli_cmd_exec(const struct cli_ctx *ctx, const struct exec_opts *o)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path = client_instance_path(o->name, "/exec");
    struct attach_opts ao = { .stdin_on = o->interactive, .tty = o->tty };
    struct exec_decoder dec;
    json_t *body = exec_body(o);
    int r, rc;

    if (o->tty && o->interactive && !isatty(STDIN_FILENO)) {
        json_decref(body);
        cli_error("the input device is not a TTY: drop -t, or run from a terminal");
        return CLI_EXIT_EXEC_DAEMON;
    }
    if (o->tty && !getenv_in(o->env, "TERM") && getenv("TERM")) {
        /* The guest's programs draw for the terminal we have. */
        json_t *env = json_object_get(body, "env");
        if (!env)
            json_object_set_new(body, "env", env = json_array());
        json_array_append_new(env, json_sprintf("TERM=%s", getenv("TERM")));
    }
    if (o->detach) {
        json_t *reply = NULL;
        long status = 0;
        r = client_request(ctx->socket, "POST", path, body, &status, &reply, &err);
        json_decref(body);
        if (r >= 0 && (status < 200 || status >= 300)) {
            /* A command that did not start says which code it earns (127, 126). */
            json_t *x = json_object_get(reply, "exit_code");
            rc = json_is_integer(x) ? (int)json_integer_value(x) : CLI_EXIT_EXEC_DAEMON;
            r = client_reply_error(status, reply, &err);
        } else {
            rc = 0;
        }
        json_decref(reply);
        if (r < 0) {
            cli_error("%s", tp_err_msg(&err));
            return rc ? rc : CLI_EXIT_EXEC_DAEMON;
        }
        return 0;
    }
    fflush(stdout); /* output goes straight to the fds from here on */
    exec_decoder_init(&dec);
    r = attach_exec(ctx->socket, path, body, &ao, &dec, &err);
    json_decref(body);
    if (r < 0) {
        cli_error("%s", tp_err_msg(&err));
        rc = CLI_EXIT_EXEC_DAEMON;
    } else if (dec.error_message) {
        cli_error("%s", dec.error_message);
        if (dec.error_exit_code >= 0)
            rc = dec.error_exit_code;
        else
            rc = strcmp(dec.error_code, "not_found") == 0 ? CLI_EXIT_EXEC_NOENT
                                                          : CLI_EXIT_EXEC_DAEMON;
    } else {
        /* A status outside 0..255 cannot be an exit code; keep it visible as a failure. */
        rc = dec.exit_code >= 0 && dec.exit_code <= 255 ? dec.exit_code : 255;
    }
    exec_decoder_done(&dec);
    return rc;
}

int
cli_verb_exec(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(cli_exec_opts_done) struct exec_opts o = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    int r = cli_parse_exec(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_exec(ctx, &o);
}

CLI_SYNTAX_FN(cli_syntax_exec)
