/* torpor port NAME [GUESTPORT[/PROTO]]: an instance's published ports, as docker port prints
 * them ("80/tcp -> 127.0.0.1:8080"), or the host side of one. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

static const struct cli_syntax syntax = {
    .verb = "port",
    .usage = "Usage: torpor port NAME [GUESTPORT[/PROTO]]\n"
             "\n"
             "List the ports NAME publishes on the host, one 'GUESTPORT/PROTO -> HOSTIP:HOSTPORT'\n"
             "line each, or only the host side of GUESTPORT (tcp unless /udp is given).\n",
    .operands = CLI_OPERANDS_ANY,
};

/* "80" or "80/udp" -> port and proto. */
static int
parse_filter(const char *s, unsigned *ret_port, const char **ret_proto, struct tp_err *err)
{
    const char *slash = strchr(s, '/');
    const char *proto = slash ? slash + 1 : "tcp";
    char *end;
    unsigned long port = strtoul(s, &end, 10);

    if (end == s || (slash ? end != slash : *end) || port < 1 || port > 65535 || s[0] == '-' ||
        s[0] == '+' || net_proto_from_string(proto) < 0)
        return tp_err_set(err, -EINVAL, "'%s' is not GUESTPORT[/tcp|udp]", s);
    *ret_port = (unsigned)port;
    *ret_proto = proto;
    return 0;
}

int
cli_format_ports(const json_t *ports, const char *filter, char **ret, struct tp_err *err)
{
    _cleanup_free_ char *out = xstrdup("");
    const char *want_proto = NULL;
    unsigned want_port = 0;
    size_t i;
    json_t *p;
    int r;

    if (filter && (r = parse_filter(filter, &want_port, &want_proto, err)) < 0)
        return r;
    json_array_foreach(ports, i, p)
    {
        const char *ip = json_string_value(json_object_get(p, "host_ip"));
        const char *proto = json_string_value(json_object_get(p, "proto"));
        json_int_t hp = json_integer_value(json_object_get(p, "host_port"));
        json_int_t gp = json_integer_value(json_object_get(p, "guest_port"));
        char *line;

        if (!ip || !proto)
            continue;
        if (filter && ((unsigned)gp != want_port || strcmp(proto, want_proto) != 0))
            continue;
        if (filter)
            line = xasprintf("%s%s:%lld\n", out, ip, (long long)hp);
        else
            line =
                xasprintf("%s%lld/%s -> %s:%lld\n", out, (long long)gp, proto, ip, (long long)hp);
        free(out);
        out = line;
    }
    if (filter && !*out)
        return tp_err_set(err, -ENOENT, "no public port '%u/%s' published", want_port, want_proto);
    *ret = TAKE_PTR(out);
    return 0;
}

static int
cmd_port(const struct cli_ctx *ctx, const char *name, const char *filter)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path = client_instance_path(name, "");
    _cleanup_free_ char *text = NULL;
    json_t *inst = NULL;

    if (cli_call(ctx, "GET", path, NULL, &inst) < 0)
        return CLI_EXIT_FAIL;
    int r = cli_format_ports(json_object_get(inst, "ports"), filter, &text, &err);
    json_decref(inst);
    if (r < 0) {
        cli_error("%s for '%s'", tp_err_msg(&err), name);
        return CLI_EXIT_FAIL;
    }
    fputs(text, stdout);
    return CLI_EXIT_OK;
}

int
cli_verb_port(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args(&syntax, argc, argv, &a, &err);

    if (r >= 0 && !a.help && (a.n_operands < 1 || a.n_operands > 2))
        r = tp_err_set(&err, -EINVAL, "'torpor port' takes NAME and at most one GUESTPORT");
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);
    return x >= 0 ? x : cmd_port(ctx, a.operands[0], a.n_operands > 1 ? a.operands[1] : NULL);
}

CLI_SYNTAX_FN(cli_syntax_port)
