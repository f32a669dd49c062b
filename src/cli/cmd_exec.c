/* torpor exec: run a command in a guest, stream its output, exit with its status. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "exec_stream.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

static const char usage[] =
    "Usage: torpor exec [OPTIONS] NAME [OPTIONS] [--] CMD [ARGS...]\n"
    "\n"
    "Run CMD in the instance NAME; its output streams to stdout and stderr and torpor exits\n"
    "with its exit code (125: torpor failed, 126: CMD could not run, 127: CMD not found).\n"
    "\n"
    "Options:\n"
    "  -e, --env K=V        set an environment variable (repeatable)\n"
    "  -w, --workdir DIR    working directory in the guest\n"
    "  -h, --help           print this help\n";

void
cli_exec_opts_done(struct exec_opts *o)
{
    free(o->name);
    strv_free(o->env);
    free(o->workdir);
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

/* One getopt pass over argv (argv[0] is skipped); stops at the first non-option or "--".
 * Returns the index of the first word not consumed. */
static int
parse_exec_options(int argc, char **argv, struct exec_opts *o, size_t *n_env, struct tp_err *err)
{
    static const struct option longopts[] = {
        { "env", required_argument, NULL, 'e' },
        { "workdir", required_argument, NULL, 'w' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:e:w:h", longopts, NULL)) >= 0) {
        switch (c) {
        case 'e': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg)
                return tp_err_set(err, -EINVAL, "option '--env' expects K=V, not '%s'", optarg);
            if (cli_check_utf8("the value of '--env'", optarg, err) < 0)
                return -EINVAL;
            strv_push(&o->env, n_env, optarg);
            break;
        }
        case 'w':
            if (!*optarg)
                return tp_err_set(err, -EINVAL, "option '--workdir' needs a non-empty value");
            if (cli_check_utf8("the value of '--workdir'", optarg, err) < 0)
                return -EINVAL;
            free(o->workdir);
            o->workdir = xstrdup(optarg);
            break;
        case 'h':
            o->help = true;
            break;
        default:
            return cli_getopt_error(c, argv, err);
        }
    }
    return optind;
}

int
cli_parse_exec(int argc, char **argv, struct exec_opts *ret, struct tp_err *err)
{
    _cleanup_(cli_exec_opts_done) struct exec_opts o = { 0 };
    size_t n_env = 0, n_cmd = 0;
    int i, r;

    /* Options may come before NAME and between NAME and CMD; each pass stops at the first
     * word that is not an option ('+'), so everything from CMD on belongs to the guest. */
    r = parse_exec_options(argc, argv, &o, &n_env, err);
    if (r < 0)
        return r;
    i = r;
    if (o.help)
        goto done;
    if (i >= argc)
        return tp_err_set(err, -EINVAL, "'exec' needs an instance NAME and a CMD");
    o.name = xstrdup(argv[i]);

    /* The second pass sees NAME as its argv[0]. */
    r = parse_exec_options(argc - i, argv + i, &o, &n_env, err);
    if (r < 0)
        return r;
    i += r;
    if (o.help)
        goto done;
    if (i >= argc)
        return tp_err_set(err, -EINVAL, "'exec' needs a CMD to run in '%s'", o.name);
    for (; i < argc; i++) {
        _cleanup_free_ char *what = xasprintf("argument %zu of CMD", n_cmd + 1);
        if (cli_check_utf8(what, argv[i], err) < 0)
            return -EINVAL;
        strv_push(&o.cmd, &n_cmd, argv[i]);
    }
done:
    *ret = o;
    o = (struct exec_opts){ 0 }; /* moved to ret */
    return 0;
}

static int
exec_output(int kind, const void *data, size_t len, void *userdata, struct tp_err *err)
{
    int fd = kind == EXEC_FRAME_STDOUT ? STDOUT_FILENO : STDERR_FILENO;
    int r = fd_write_all(fd, data, len);

    if (r < 0)
        return tp_err_errno(err, r, "write the command's %s",
                            fd == STDOUT_FILENO ? "stdout" : "stderr");
    return 0;
}

static int
exec_on_data(const void *data, size_t len, void *userdata, struct tp_err *err)
{
    return exec_decoder_feed(userdata, data, len, exec_output, NULL, err);
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
    return b;
}

int
cli_cmd_exec(const struct cli_ctx *ctx, const struct exec_opts *o)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path = client_instance_path(o->name, "/exec");
    struct exec_decoder dec;
    json_t *body = exec_body(o);
    int r, rc;

    fflush(stdout); /* output goes straight to the fds from here on */
    exec_decoder_init(&dec);
    r = client_stream(ctx->socket, "POST", path, body, exec_on_data, &dec, &err);
    json_decref(body);
    if (r >= 0)
        r = exec_decoder_finish(&dec, &err);
    if (r < 0) {
        cli_error("%s", tp_err_msg(&err));
        rc = CLI_EXIT_EXEC_DAEMON;
    } else if (dec.error_message) {
        cli_error("%s", dec.error_message);
        rc = strcmp(dec.error_code, "not_found") == 0 ? CLI_EXIT_EXEC_NOENT : CLI_EXIT_EXEC_SPAWN;
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
    int x = cli_verb_prologue("exec", usage, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_exec(ctx, &o);
}
