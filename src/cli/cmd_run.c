/* torpor run: create and start a microVM. With a CMD and without -d it runs in the foreground
 * as docker's does: CMD attached to our stdio, the VM stopped (or with --rm removed) when CMD
 * ends, and CMD's exit code ours. Otherwise the id is printed and the VM runs on. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/name.h"
#include "util/xalloc.h"

/* torpord checks the same bounds (api/body.h); checking here names the user's option. */
#define RUN_MEMORY_MIB_MIN 64
#define RUN_MEMORY_MIB_MAX 65536
#define RUN_VCPUS_MAX      64
#define RUN_DISK_MIB_MAX   (1024 * 1024)

enum {
    OPT_NAME,
    OPT_MEMORY,
    OPT_VCPUS,
    OPT_HYPERVISOR,
    OPT_KERNEL,
    OPT_INITRD,
    OPT_ROOTFS,
    OPT_ACCEL,
    OPT_MEM_BACKEND,
    OPT_NETWORK,
    OPT_NETWORK_MODE,
    OPT_PUBLISH,
    OPT_DISK_SIZE,
    OPT_NO_AGENT,
    OPT_DETACH,
    OPT_INTERACTIVE,
    OPT_TTY,
    OPT_RM,
    OPT_TRACE,
    OPT_COLD,
    OPT_ENTRYPOINT,
    OPT_ENV,
    OPT_WORKDIR,
    OPT_USER,
};

/* The embedded default guest, named as an image would be: `torpor run default -- CMD`. */
#define RUN_DEFAULT_IMAGE "default"

static const struct cli_syntax syntax = {
    .verb = "run",
    .usage = "Usage: torpor run [OPTIONS] [default] [--] [CMD [ARGS...]]\n"
             "       torpor run [OPTIONS] IMAGE [CMD [ARGS...]]\n"
             "\n"
             "Create and start a microVM of the default guest. With CMD, torpor runs it in the\n"
             "foreground: CMD's output on stdout and stderr, torpor's exit code CMD's, and the VM\n"
             "stopped when CMD ends (removed with --rm). With -d, or without CMD, the VM runs on\n"
             "and its id is printed (a CMD then runs at boot, its output on the console).\n"
             "With an OCI IMAGE (pulled when torpord's store lacks it), the VM runs the image's\n"
             "entrypoint and CMD (CMD given here replaces the image's) as docker runs a\n"
             "container: its output in `torpor logs`, the VM stopped when it exits, its exit\n"
             "code the VM's (`torpor wait`) and, without -d, torpor's after following its output.\n"
             "Options end at the image or CMD. Sizes are MiB, or take a unit: 512M, 2G.\n",
    .operands = CLI_OPERANDS_CMD,
    /* As exec: a usage error must not pass for CMD's own exit code 2 (docker run says 125). */
    .usage_exit = CLI_EXIT_EXEC_DAEMON,
    .flags = {
        [OPT_NAME] = { "name", 0, "instance name ([a-z0-9][a-z0-9-]*)", "NAME" },
        [OPT_MEMORY] = { "memory", 'm', "guest memory, 64M to 64G", "SIZE" },
        [OPT_VCPUS] = { "vcpus", 0, "number of virtual CPUs, 1 to 64", "N" },
        [OPT_HYPERVISOR] = { "hypervisor", 0, "hypervisor driver (qemu)", "NAME" },
        [OPT_KERNEL] = { "kernel", 0, "guest kernel", "PATH" },
        [OPT_INITRD] = { "initrd", 0, "guest initramfs", "PATH" },
        [OPT_ROOTFS] = { "rootfs", 0, "root filesystem: a directory or an ext4 image", "DIR|IMG" },
        [OPT_ACCEL] = { "accel", 0, "accelerator (default: chosen by torpord)", "kvm|tcg" },
        [OPT_MEM_BACKEND] = { "mem-backend", 0,
                              "how restores load guest memory: map the snapshot's file "
                              "(default) or serve each page on first touch (hypervisors with "
                              "mem_uffd)",
                              "file|uffd" },
        [OPT_NETWORK] = { "network", 0,
                          "an address on torpord's bridge, or no NIC (default: default where "
                          "torpord has networking, else none)",
                          "default|none" },
        [OPT_NETWORK_MODE] = { "network-mode", 0,
                               "isolated: no layer-2 traffic with other isolated VMs (default); "
                               "shared: reaches every VM on the bridge",
                               "isolated|shared" },
        [OPT_PUBLISH] = { "publish", 'p',
                          "publish a guest port on the host (repeatable; HOSTIP defaults to "
                          "127.0.0.1, 0.0.0.0 is every address)",
                          "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]" },
        [OPT_DISK_SIZE] = { "disk-size", 0,
                            "size of the root disk built from a directory, or of this VM's "
                            "copy of an IMAGE's",
                            "SIZE" },
        [OPT_NO_AGENT] = { "no-agent", 0, "run without the guest agent: no exec", NULL },
        [OPT_DETACH] = { "detach", 'd', "run in the background and print the id", NULL },
        [OPT_INTERACTIVE] = { "interactive", 'i', "keep stdin attached to CMD", NULL },
        [OPT_TTY] = { "tty", 't', "run CMD on a pseudo-terminal", NULL },
        [OPT_RM] = { "rm", 0, "remove the VM when CMD ends", NULL },
        [OPT_TRACE] = CLI_FLAG_TRACE,
        [OPT_COLD] = { "cold", 0,
                       "boot, even where a template of this boot is kept (see 'torpor templates'), "
                       "and keep none",
                       NULL },
        [OPT_ENTRYPOINT] = { "entrypoint", 0, "IMAGE: run this instead of the image's entrypoint",
                             "CMD" },
        [OPT_ENV] = { "env", 'e', "IMAGE: set an environment variable (repeatable)", "K=V" },
        [OPT_WORKDIR] = { "workdir", 'w', "IMAGE: working directory of the workload", "DIR" },
        [OPT_USER] = { "user", 'u', "IMAGE: user of the workload", "USER[:GROUP]" },
    },
};

void
cli_run_opts_done(struct run_opts *o)
{
    free(o->name);
    free(o->hypervisor);
    free(o->kernel);
    free(o->initrd);
    free(o->rootfs);
    free(o->accel);
    free(o->mem_backend);
    free(o->network);
    free(o->network_mode);
    free(o->ports);
    strv_free(o->cmd);
    free(o->image);
    free(o->entrypoint);
    strv_free(o->env);
    free(o->workdir);
    free(o->user);
    *o = (struct run_opts){ 0 };
}

/* A string option's value: non-empty and UTF-8 (it goes into the JSON request). */
static int
want_text(const char *opt, const char *value, struct tp_err *err)
{
    _cleanup_free_ char *what = xasprintf("the value of '%s'", opt);

    if (!*value)
        return tp_err_set(err, -EINVAL, "option '%s' needs a non-empty value", opt);
    return cli_check_utf8(what, value, err);
}

/* --kernel, --initrd, --rootfs: an absolute path, for torpord's cwd is not ours. */
static int
want_path(const char *opt, const char *value, char **ret, struct tp_err *err)
{
    char *path;

    if (!*value)
        return tp_err_set(err, -EINVAL, "option '%s' needs a non-empty path", opt);
    path = cli_abspath(value);
    /* Checked once absolute: the cwd joined to it may be what is not UTF-8. torpord judges
     * whether it exists. */
    if (cli_check_utf8("the absolute path of that file", path, err) < 0) {
        free(path);
        return tp_err_wrap(err, "option '%s'", opt);
    }
    *ret = path;
    return 0;
}

struct run_parse {
    struct run_opts *o;
    struct tp_err perr; /* the first -p that does not parse */
};

/* -p is repeatable: parse each value, in order; the first mistake is reported after. */
static void
run_on_option(size_t flag, const char *value, void *userdata)
{
    struct run_parse *rp = userdata;
    struct net_port p;

    if (flag == OPT_ENV) {
        /* docker: -e K takes K from our environment, and is dropped when we have none. */
        const char *val = strchr(value, '=') ? NULL : getenv(value);
        if (!strchr(value, '=') && !val)
            return;
        rp->o->env = xrealloc(rp->o->env, (rp->o->n_env + 2) * sizeof(char *));
        rp->o->env[rp->o->n_env++] = val ? xasprintf("%s=%s", value, val) : xstrdup(value);
        rp->o->env[rp->o->n_env] = NULL;
        return;
    }
    if (flag != OPT_PUBLISH || rp->perr.code < 0)
        return;
    if (net_port_parse(value, &p, &rp->perr) < 0)
        return;
    rp->o->ports = xrealloc(rp->o->ports, (rp->o->n_ports + 1) * sizeof(p));
    rp->o->ports[rp->o->n_ports++] = p;
}

int
cli_parse_run(int argc, char **argv, struct run_opts *ret, struct tp_err *err)
{
    _cleanup_(cli_run_opts_done) struct run_opts o = { 0 };
    struct run_parse rp = { .o = &o };
    const char *const *v;
    struct cli_args a;
    int r;

    r = cli_parse_args_each(&syntax, argc, argv, run_on_option, &rp, &a, err);
    if (r >= 0 && !a.help && rp.perr.code < 0)
        r = tp_err_set(err, -EINVAL, "option '--publish': %s", tp_err_msg(&rp.perr));
    tp_err_clear(&rp.perr);
    if (r < 0)
        return r;
    if (a.help) {
        *ret = (struct run_opts){ .help = true };
        return 0;
    }
    v = a.values;
    if (v[OPT_NAME]) {
        r = want_text("--name", v[OPT_NAME], err);
        if (r >= 0)
            r = cli_check_name("--name", v[OPT_NAME], NAME_MAX_LEN, err);
        if (r < 0)
            return r;
        o.name = xstrdup(v[OPT_NAME]);
    }
    if (v[OPT_MEMORY]) {
        r = cli_parse_size_mib("--memory", v[OPT_MEMORY], RUN_MEMORY_MIB_MIN, RUN_MEMORY_MIB_MAX,
                               &o.memory_mib, err);
        if (r < 0)
            return r;
    }
    if (v[OPT_VCPUS]) {
        r = cli_parse_uint("--vcpus", v[OPT_VCPUS], RUN_VCPUS_MAX, &o.vcpus, err);
        if (r < 0)
            return r;
    }
    if (v[OPT_DISK_SIZE]) {
        r = cli_parse_size_mib("--disk-size", v[OPT_DISK_SIZE], 1, RUN_DISK_MIB_MAX, &o.disk_mib,
                               err);
        if (r < 0)
            return r;
    }
    if (v[OPT_HYPERVISOR]) {
        r = want_text("--hypervisor", v[OPT_HYPERVISOR], err);
        if (r < 0)
            return r;
        o.hypervisor = xstrdup(v[OPT_HYPERVISOR]);
    }
    if (v[OPT_KERNEL] && (r = want_path("--kernel", v[OPT_KERNEL], &o.kernel, err)) < 0)
        return r;
    if (v[OPT_INITRD] && (r = want_path("--initrd", v[OPT_INITRD], &o.initrd, err)) < 0)
        return r;
    if (v[OPT_ROOTFS] && (r = want_path("--rootfs", v[OPT_ROOTFS], &o.rootfs, err)) < 0)
        return r;
    if (v[OPT_ACCEL]) {
        if (strcmp(v[OPT_ACCEL], "kvm") != 0 && strcmp(v[OPT_ACCEL], "tcg") != 0)
            return tp_err_set(err, -EINVAL, "option '--accel' expects 'kvm' or 'tcg', not '%s'",
                              v[OPT_ACCEL]);
        o.accel = xstrdup(v[OPT_ACCEL]);
    }
    if (v[OPT_MEM_BACKEND]) {
        if (strcmp(v[OPT_MEM_BACKEND], "file") != 0 && strcmp(v[OPT_MEM_BACKEND], "uffd") != 0)
            return tp_err_set(err, -EINVAL,
                              "option '--mem-backend' expects 'file' or 'uffd', not '%s'",
                              v[OPT_MEM_BACKEND]);
        o.mem_backend = xstrdup(v[OPT_MEM_BACKEND]);
    }
    if (v[OPT_NETWORK]) {
        if (strcmp(v[OPT_NETWORK], "default") != 0 && strcmp(v[OPT_NETWORK], "none") != 0)
            return tp_err_set(err, -EINVAL,
                              "option '--network' expects 'default' or 'none', not '%s'",
                              v[OPT_NETWORK]);
        o.network = xstrdup(v[OPT_NETWORK]);
    }
    if (v[OPT_NETWORK_MODE]) {
        if (strcmp(v[OPT_NETWORK_MODE], "isolated") != 0 &&
            strcmp(v[OPT_NETWORK_MODE], "shared") != 0)
            return tp_err_set(err, -EINVAL,
                              "option '--network-mode' expects 'isolated' or 'shared', not '%s'",
                              v[OPT_NETWORK_MODE]);
        o.network_mode = xstrdup(v[OPT_NETWORK_MODE]);
    }
    r = net_ports_check(o.ports, o.n_ports, err);
    if (r < 0)
        return tp_err_wrap(err, "option '--publish'");
    if ((o.n_ports || o.network_mode) && o.network && strcmp(o.network, "none") == 0)
        return tp_err_set(err, -EINVAL, "options '--%s' need a network: not with '--network none'",
                          o.n_ports ? "publish" : "network-mode");
    o.no_agent = a.flags & (1u << OPT_NO_AGENT);
    o.trace = a.flags & (1u << OPT_TRACE);
    o.cold = a.flags & (1u << OPT_COLD);
    o.detach = a.flags & (1u << OPT_DETACH);
    o.interactive = a.flags & (1u << OPT_INTERACTIVE);
    o.tty = a.flags & (1u << OPT_TTY);
    o.rm = a.flags & (1u << OPT_RM);
    char *const *ops = a.operands;
    size_t n_ops = a.n_operands;
    /* A "--" before the first operand makes it CMD (of the default guest), as before images. */
    bool dashdash = a.operands > argv + 1 && strcmp(a.operands[-1], "--") == 0;
    if (n_ops > 0 && !dashdash && strcmp(ops[0], RUN_DEFAULT_IMAGE) != 0) {
        r = cli_check_utf8("IMAGE", ops[0], err);
        if (r < 0)
            return r;
        if (!ops[0][0])
            return tp_err_set(err, -EINVAL, "an empty IMAGE names no image");
        if (o.rootfs)
            return tp_err_set(err, -EINVAL, "option '--rootfs' and an IMAGE exclude each other");
        o.image = xstrdup(ops[0]);
        ops++;
        n_ops--;
        if (n_ops > 0 && strcmp(ops[0], "--") == 0) {
            ops++;
            n_ops--;
        }
    } else if (n_ops > 0 && strcmp(ops[0], RUN_DEFAULT_IMAGE) == 0) {
        ops++;
        n_ops--;
        /* Options ended at the image, so a "--" after it is still the separator. */
        if (n_ops > 0 && strcmp(ops[0], "--") == 0) {
            ops++;
            n_ops--;
        }
    }
    if (n_ops > 0) {
        o.cmd = xnew(char *, n_ops + 1);
        for (size_t i = 0; i < n_ops; i++) {
            _cleanup_free_ char *what = xasprintf("argument %zu of CMD", i + 1);
            if (cli_check_utf8(what, ops[i], err) < 0)
                return -EINVAL;
            o.cmd[i] = xstrdup(ops[i]);
        }
    }
    if (v[OPT_ENTRYPOINT]) {
        if ((r = cli_check_utf8("the value of '--entrypoint'", v[OPT_ENTRYPOINT], err)) < 0)
            return r;
        o.entrypoint = xstrdup(v[OPT_ENTRYPOINT]);
    }
    if (v[OPT_WORKDIR]) {
        if (v[OPT_WORKDIR][0] != '/')
            return tp_err_set(err, -EINVAL, "option '--workdir' needs an absolute path, not '%s'",
                              v[OPT_WORKDIR]);
        if ((r = want_text("--workdir", v[OPT_WORKDIR], err)) < 0)
            return r;
        o.workdir = xstrdup(v[OPT_WORKDIR]);
    }
    if (v[OPT_USER]) {
        if ((r = want_text("--user", v[OPT_USER], err)) < 0)
            return r;
        o.user = xstrdup(v[OPT_USER]);
    }
    for (size_t k = 0; k < o.n_env; k++)
        if (o.env[k][0] == '=' || cli_check_utf8("the value of '--env'", o.env[k], err) < 0)
            return tp_err_set(err, -EINVAL, "option '--env' needs KEY=VALUE, not '%s'", o.env[k]);
    if (!o.image && (o.entrypoint || o.env || o.workdir || o.user))
        return tp_err_set(err, -EINVAL,
                          "options '--entrypoint', '--env', '--workdir' and '--user' set up an "
                          "image's workload: they need an IMAGE");
    if (o.image) {
        if ((o.interactive || o.tty) && o.detach)
            return tp_err_set(err, -EINVAL,
                              "options '--interactive' and '--tty' attach to the workload: not "
                              "with '--detach'");
        if (o.rm && o.detach)
            return tp_err_set(err, -EINVAL,
                              "option '--rm' removes the VM when its workload ends: not with "
                              "'--detach'");
        if (o.no_agent)
            return tp_err_set(err, -EINVAL,
                              "an IMAGE's workload is run by the guest agent: "
                              "not with '--no-agent'");
        *ret = o;
        o = (struct run_opts){ 0 };
        return 0;
    }
    bool foreground = o.cmd && !o.detach;
    if ((o.interactive || o.tty) && !foreground)
        return tp_err_set(err, -EINVAL,
                          "options '--interactive' and '--tty' attach to CMD: they "
                          "need a CMD and no '--detach'");
    if (o.rm && !foreground)
        return tp_err_set(err, -EINVAL,
                          "option '--rm' removes the VM when CMD ends: it needs a CMD in the "
                          "foreground (without '--detach', remove with 'torpor rm -f')");
    if (foreground && o.no_agent)
        return tp_err_set(err, -EINVAL,
                          "a CMD in the foreground runs through the guest agent: use '--detach' "
                          "with '--no-agent'");
    *ret = o;
    o = (struct run_opts){ 0 }; /* moved to ret */
    return 0;
}

json_t *
cli_ports_json(const struct net_port *v, size_t n)
{
    json_t *a = json_array();

    for (size_t k = 0; k < n; k++) {
        char ip[NET_IP_LEN];
        net_ip_format(v[k].host_ip, ip);
        json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:s}", "host_ip", ip, "host_port",
                                           (int)v[k].host_port, "guest_port", (int)v[k].guest_port,
                                           "proto", net_proto_to_string(v[k].proto)));
    }
    return a;
}

static json_t *
run_body(const struct run_opts *o)
{
    json_t *b = json_object();

    if (o->name)
        json_object_set_new(b, "name", json_string(o->name));
    if (o->memory_mib)
        json_object_set_new(b, "memory_mib", json_integer(o->memory_mib));
    if (o->vcpus)
        json_object_set_new(b, "vcpus", json_integer(o->vcpus));
    if (o->hypervisor)
        json_object_set_new(b, "hypervisor", json_string(o->hypervisor));
    if (o->kernel)
        json_object_set_new(b, "kernel", json_string(o->kernel));
    if (o->initrd)
        json_object_set_new(b, "initrd", json_string(o->initrd));
    if (o->rootfs)
        json_object_set_new(b, "rootfs", json_string(o->rootfs));
    if (o->accel)
        json_object_set_new(b, "accel", json_string(o->accel));
    if (o->mem_backend)
        json_object_set_new(b, "mem_backend", json_string(o->mem_backend));
    if (o->network)
        json_object_set_new(b, "network", json_string(o->network));
    if (o->network_mode)
        json_object_set_new(b, "network_mode", json_string(o->network_mode));
    if (o->n_ports)
        json_object_set_new(b, "ports", cli_ports_json(o->ports, o->n_ports));
    if (o->disk_mib)
        json_object_set_new(b, "disk_mib", json_integer(o->disk_mib));
    if (o->no_agent)
        json_object_set_new(b, "no_agent", json_true());
    if (o->cold)
        json_object_set_new(b, "cold", json_true());
    if (o->cmd) {
        json_t *a = json_array();
        strv_foreach (s, o->cmd)
            json_array_append_new(a, json_string(*s));
        json_object_set_new(b, "cmd", a);
    }
    if (o->image)
        json_object_set_new(b, "image", json_string(o->image));
    if (o->entrypoint) /* docker: --entrypoint is one word, the program */
        json_object_set_new(b, "entrypoint", json_pack("[s]", o->entrypoint));
    if (o->env) {
        json_t *a = json_array();
        strv_foreach (s, o->env)
            json_array_append_new(a, json_string(*s));
        json_object_set_new(b, "env", a);
    }
    if (o->workdir)
        json_object_set_new(b, "workdir", json_string(o->workdir));
    if (o->user)
        json_object_set_new(b, "user", json_string(o->user));
    if (o->image && (o->interactive || o->tty)) /* we exec the workload, attached */
        json_object_set_new(b, "attach", json_true());
    return b;
}

/* CMD attached (eo: what to exec, NULL = o's CMD as it is), then the VM stopped or removed;
 * CMD's exit code (125 when torpor failed). */
static int
run_foreground(const struct cli_ctx *ctx, const struct run_opts *o, const char *id,
               const struct exec_opts *given)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct exec_opts eo = {
        .name = (char *)id,
        .cmd = o->cmd,
        .interactive = o->interactive,
        .tty = o->tty,
    };
    int rc = cli_cmd_exec(ctx, given ? given : &eo);
    _cleanup_free_ char *path = client_instance_path(id, o->rm ? "?force=true" : "/stop");

    /* As docker's container ends with its main process. */
    int r = client_call(ctx->socket, o->rm ? "DELETE" : "POST", path, NULL, NULL, &err);
    if (r < 0 && r != -ENOENT)
        cli_error("%s", tp_err_msg(&err));
    return rc;
}

static char **
strv_from_json(const json_t *a)
{
    if (!json_is_array(a))
        return NULL;
    char **v = xnew(char *, json_array_size(a) + 1);
    for (size_t k = 0; k < json_array_size(a); k++) {
        const char *s = json_string_value(json_array_get(a, k));
        v[k] = xstrdup(s ? s : "");
    }
    return v;
}

/* run -it IMAGE: the workload torpord computed (the instance's cmd, env, workdir, user), exec'd
 * attached to our stdio; its end stops the VM (or removes it with --rm), its code ours. */
static int
run_image_attached(const struct cli_ctx *ctx, const struct run_opts *o, const json_t *inst)
{
    const char *id = json_string_value(json_object_get(inst, "id"));
    const char *wd = json_string_value(json_object_get(inst, "workdir"));
    const char *user = json_string_value(json_object_get(inst, "user"));
    struct exec_opts eo = {
        .name = xstrdup(id),
        .cmd = strv_from_json(json_object_get(inst, "cmd")),
        .env = strv_from_json(json_object_get(inst, "env")),
        .workdir = wd ? xstrdup(wd) : NULL,
        .user = user ? xstrdup(user) : NULL,
        .interactive = o->interactive,
        .tty = o->tty,
    };
    struct run_opts stop = *o;
    stop.cmd = eo.cmd;
    int rc = eo.cmd ? run_foreground(ctx, &stop, id, &eo) : CLI_EXIT_EXEC_DAEMON;
    cli_exec_opts_done(&eo);
    return rc;
}

/* An image's workload in the foreground, as docker run without -d: its output followed until
 * it ends, then its exit code ours (the VM removed with --rm). */
static int
run_image_foreground(const struct cli_ctx *ctx, const struct run_opts *o, const char *id)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    const struct logs_opts lo = { .name = id, .follow = true, .tail = -1 };
    int rc;

    if (cli_cmd_logs(ctx, &lo) != CLI_EXIT_OK)
        cli_error("could not follow the output of '%s'", id);
    _cleanup_free_ char *path = client_instance_path(id, "/wait");
    for (;;) {
        json_t *body = json_pack("{s:s, s:i}", "state", "Stopped", "timeout_ms", 600000);
        json_t *reply = NULL;
        int r = client_call(ctx->socket, "POST", path, body, &reply, &err);
        json_decref(body);
        if (r == -ETIMEDOUT) {
            tp_err_clear(&err);
            continue;
        }
        if (r < 0) {
            cli_error("%s", tp_err_msg(&err));
            return CLI_EXIT_EXEC_DAEMON;
        }
        json_t *code = json_object_get(reply, "exit_code");
        rc = json_is_integer(code) ? (int)json_integer_value(code) : 0;
        json_decref(reply);
        break;
    }
    if (o->rm) {
        _cleanup_free_ char *del = client_instance_path(id, "?force=true");
        if (client_call(ctx->socket, "DELETE", del, NULL, NULL, &err) < 0 && err.code != -ENOENT)
            cli_error("%s", tp_err_msg(&err));
    }
    return rc;
}

/* The pull `run` does for a missing image: progress on a terminal, as `torpor pull`. */
static int
cli_run_pull_image(const struct cli_ctx *ctx, const char *ref)
{
    return cli_image_pull(ctx, ref, !isatty(STDERR_FILENO)) == CLI_EXIT_OK ? 0 : -EIO;
}

/* POST /v1/instances; for an IMAGE torpord does not have, pull it and ask once more, as the
 * docker CLI does on "No such image". */
static int
create_instance(const struct cli_ctx *ctx, const struct run_opts *o, json_t *body, json_t **ret)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    int r = client_call(ctx->socket, "POST", "/v1/instances", body, ret, &err);

    if (r == -ENOENT && o->image && strstr(tp_err_msg(&err), "No such image")) {
        fprintf(stderr, "Unable to find image '%s' locally\n", o->image);
        tp_err_clear(&err);
        r = cli_run_pull_image(ctx, o->image);
        if (r < 0)
            return r;
        r = client_call(ctx->socket, "POST", "/v1/instances", body, ret, &err);
    }
    if (r < 0)
        cli_error("%s", tp_err_msg(&err));
    return r;
}

int
cli_cmd_run(const struct cli_ctx *ctx, const struct run_opts *o)
{
    bool foreground = o->cmd && !o->detach;
    json_t *body = run_body(o), *inst = NULL;
    const char *id;
    int r;

    if (foreground && o->tty && o->interactive && !isatty(STDIN_FILENO)) {
        /* Said before a VM is made for nothing. */
        json_decref(body);
        cli_error("the input device is not a TTY: drop -t, or run from a terminal");
        return CLI_EXIT_EXEC_DAEMON;
    }
    if (o->image)
        foreground = !o->detach;
    else if (foreground) /* CMD is exec'd once the VM is up, not started at boot */
        json_object_del(body, "cmd");
    r = create_instance(ctx, o, body, &inst);
    json_decref(body);
    if (r < 0)
        return CLI_EXIT_EXEC_DAEMON; /* docker run: 125 when the daemon refuses */
    id = json_string_value(json_object_get(inst, "id"));
    if (!id) {
        json_decref(inst);
        cli_error("torpord's reply has no instance id");
        return CLI_EXIT_EXEC_DAEMON; /* docker run: 125 when the daemon refuses */
    }
    if (foreground) {
        _cleanup_free_ char *own = xstrdup(id);
        if (o->trace)
            cli_print_trace(inst);
        if (o->image && (o->interactive || o->tty)) {
            int rc = run_image_attached(ctx, o, inst);
            json_decref(inst);
            return rc;
        }
        json_decref(inst);
        return o->image ? run_image_foreground(ctx, o, own) : run_foreground(ctx, o, own, NULL);
    }
    printf("%s\n", id);
    fflush(stdout);
    if (o->trace)
        cli_print_trace(inst);
    json_decref(inst);
    return CLI_EXIT_OK;
}

int
cli_verb_run(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(cli_run_opts_done) struct run_opts o = { 0 };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    int r = cli_parse_run(argc, argv, &o, &err);
    int x = cli_syntax_prologue(&syntax, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_run(ctx, &o);
}

CLI_SYNTAX_FN(cli_syntax_run)
