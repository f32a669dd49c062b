/* torpor fork: clone a running or standby instance into children, print their ids. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/name.h"

/* The daemon checks the same bounds (api/body.h); checking here makes them usage errors that
 * name the user's options. */
#define FORK_COUNT_MAX  64
#define FORK_PREFIX_MAX 60

enum {
    OPT_COUNT,
    OPT_NAME,
    OPT_PREFIX,
    OPT_STANDBY,
    OPT_NO_WAIT,
    OPT_PUBLISH,
    OPT_TRACE,
};

static const struct cli_syntax syntax = {
    .verb = "fork",
    .usage = "Usage: torpor fork [OPTIONS] NAME\n"
             "\n"
             "Fork a running or standby instance into children that start exactly where it\n"
             "is; prints each child's id on stdout. Guest memory is shared copy-on-write.\n"
             "Children are named <source's name>-<n> (or P-<n>), lowest free n first,\n"
             "unless --name names the only one.\n"
             "NAME is an instance name, id, or unique id prefix.\n",
    .operands = CLI_OPERANDS_ONE,
    .flags = {
        [OPT_COUNT] = { "count", 0, "number of children, 1 to 64 (default 1)", "N" },
        [OPT_NAME] = { "name", 0, "the child's name (one child only)", "CHILD" },
        [OPT_PREFIX] = { "prefix", 0, "name the children P-<n>", "P" },
        [OPT_STANDBY] = { "standby", 0, "leave the children on standby", NULL },
        [OPT_NO_WAIT] = { "no-wait", 0, "do not wait for the children's agents", NULL },
        [OPT_PUBLISH] = { "publish", 'p',
                          "publish a port of the only child (repeatable; children do not get "
                          "the source's)",
                          "[HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]" },
        [OPT_TRACE] = CLI_FLAG_TRACE,
    },
};

/* A value option given empty ("--name ''") is a mistake, not a request for the default. */
static int
want_nonempty(const char *opt, const char *value, struct tp_err *err)
{
    if (value && !*value)
        return tp_err_set(err, -EINVAL, "option '%s' needs a non-empty value", opt);
    return 0;
}

struct fork_parse {
    struct fork_opts *o;
    struct tp_err perr; /* the first -p that does not parse, or one too many */
};

static void
fork_on_option(size_t flag, const char *value, void *userdata)
{
    struct fork_parse *fp = userdata;
    struct net_port p;

    if (flag != OPT_PUBLISH || fp->perr.code < 0)
        return;
    if (net_port_parse(value, &p, &fp->perr) < 0)
        return;
    if (fp->o->n_ports == FORK_PORTS_MAX) {
        tp_err_set(&fp->perr, -E2BIG, "at most %d ports", FORK_PORTS_MAX);
        return;
    }
    fp->o->ports[fp->o->n_ports++] = p;
}

int
cli_parse_fork(int argc, char **argv, struct fork_opts *ret, struct tp_err *err)
{
    struct cli_args a;
    struct fork_opts o = { 0 };
    struct fork_parse fp = { .o = &o };
    int r = cli_parse_args_each(&syntax, argc, argv, fork_on_option, &fp, &a, err);

    if (r >= 0 && !a.help && fp.perr.code < 0)
        r = tp_err_set(err, -EINVAL, "option '--publish': %s", tp_err_msg(&fp.perr));
    tp_err_clear(&fp.perr);
    if (r < 0)
        return r;
    if (a.help) {
        *ret = (struct fork_opts){ .help = true };
        return 0;
    }
    if (a.values[OPT_COUNT]) {
        r = cli_parse_uint("--count", a.values[OPT_COUNT], FORK_COUNT_MAX, &o.count, err);
        if (r < 0)
            return r;
    }
    r = want_nonempty("--name", a.values[OPT_NAME], err);
    if (r < 0)
        return r;
    r = want_nonempty("--prefix", a.values[OPT_PREFIX], err);
    if (r < 0)
        return r;
    if (a.values[OPT_NAME] && cli_check_utf8("the value of '--name'", a.values[OPT_NAME], err) < 0)
        return -EINVAL;
    if (a.values[OPT_PREFIX] &&
        cli_check_utf8("the value of '--prefix'", a.values[OPT_PREFIX], err) < 0)
        return -EINVAL;
    if (a.values[OPT_NAME] &&
        (r = cli_check_name("--name", a.values[OPT_NAME], NAME_MAX_LEN, err)) < 0)
        return r;
    if (a.values[OPT_PREFIX] &&
        (r = cli_check_name("--prefix", a.values[OPT_PREFIX], FORK_PREFIX_MAX, err)) < 0)
        return r;
    if (a.values[OPT_NAME] && a.values[OPT_PREFIX])
        return tp_err_set(err, -EINVAL, "options '--name' and '--prefix' exclude each other");
    if (a.values[OPT_NAME] && o.count > 1)
        return tp_err_set(err, -EINVAL,
                          "option '--name' names one child; it cannot go with '--count %u'",
                          o.count);
    if (o.n_ports && o.count > 1)
        return tp_err_set(err, -EINVAL,
                          "option '--publish' publishes one child's ports; it cannot go with "
                          "'--count %u'",
                          o.count);
    r = net_ports_check(o.ports, o.n_ports, err);
    if (r < 0)
        return tp_err_wrap(err, "option '--publish'");
    o.source = a.operands[0];
    o.child_name = a.values[OPT_NAME];
    o.prefix = a.values[OPT_PREFIX];
    o.standby = a.flags & (1u << OPT_STANDBY);
    o.no_wait = a.flags & (1u << OPT_NO_WAIT);
    o.trace = a.flags & (1u << OPT_TRACE);
    *ret = o;
    return 0;
}

static json_t *
fork_body(const struct fork_opts *o)
{
    json_t *b = json_object();

    if (o->count)
        json_object_set_new(b, "count", json_integer(o->count));
    if (o->child_name)
        json_object_set_new(b, "name", json_string(o->child_name));
    if (o->prefix)
        json_object_set_new(b, "prefix", json_string(o->prefix));
    if (o->standby)
        json_object_set_new(b, "standby", json_true());
    if (o->no_wait)
        json_object_set_new(b, "no_wait", json_true());
    if (o->n_ports)
        json_object_set_new(b, "ports", cli_ports_json(o->ports, o->n_ports));
    return b;
}

/* The reply holds the children; the fork's phases are recorded on the source. */
static void
print_source_trace(const struct cli_ctx *ctx, const char *source)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path = client_instance_path(source, "");
    json_t *inst = NULL;

    if (client_call(ctx->socket, "GET", path, NULL, &inst, &err) < 0) {
        /* The children exist and their ids are printed: the fork itself stands. */
        cli_error("fork done, but reading its trace from '%s' failed: %s", source,
                  tp_err_msg(&err));
        return;
    }
    cli_print_trace(inst);
    json_decref(inst);
}

int
cli_cmd_fork(const struct cli_ctx *ctx, const struct fork_opts *o)
{
    _cleanup_free_ char *path = client_instance_path(o->source, "/fork");
    json_t *body = fork_body(o), *reply = NULL, *children, *child;
    size_t i;
    int r;

    r = cli_call(ctx, "POST", path, body, &reply);
    json_decref(body);
    if (r < 0)
        return CLI_EXIT_FAIL;
    children = json_object_get(reply, "instances");
    json_array_foreach(children, i, child)
    {
        if (!json_is_string(json_object_get(child, "id")))
            break;
    }
    if (!json_is_array(children) || json_array_size(children) == 0 ||
        i < json_array_size(children)) {
        json_decref(reply);
        cli_error("torpord's reply has no instance ids");
        return CLI_EXIT_FAIL;
    }
    json_array_foreach(children, i, child)
        printf("%s\n", json_string_value(json_object_get(child, "id")));
    fflush(stdout);
    json_decref(reply);
    if (o->trace)
        print_source_trace(ctx, o->source);
    return CLI_EXIT_OK;
}

int
cli_verb_fork(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct fork_opts o = { 0 };
    int r = cli_parse_fork(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_fork(ctx, &o);
}

CLI_SYNTAX_FN(cli_syntax_fork)
