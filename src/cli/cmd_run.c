/* torpor run: create and start a microVM, print its id. */
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

static const char usage[] =
    "Usage: torpor run [OPTIONS] [--] [CMD [ARGS...]]\n"
    "\n"
    "Create and start a microVM; prints its id on stdout.\n"
    "\n"
    "Options:\n"
    "      --name NAME          instance name ([a-z0-9][a-z0-9-]*)\n"
    "  -m, --memory MIB         guest memory in MiB\n"
    "      --vcpus N            number of virtual CPUs\n"
    "      --hypervisor NAME    hypervisor driver (qemu)\n"
    "      --kernel PATH        guest kernel\n"
    "      --initrd PATH        guest initramfs\n"
    "      --rootfs DIR|IMG     root filesystem: a directory or an ext4 image\n"
    "      --accel kvm|tcg      accelerator (default: chosen by torpord)\n"
    "      --disk-size MIB      size of the root disk built from a directory\n"
    "      --no-agent           do not wait for the guest agent\n"
    "      --trace              print the timing of each phase to stderr\n"
    "  -h, --help               print this help\n";

void
cli_run_opts_done(struct run_opts *o)
{
    free(o->name);
    free(o->hypervisor);
    free(o->kernel);
    free(o->initrd);
    free(o->rootfs);
    free(o->accel);
    strv_free(o->cmd);
    *o = (struct run_opts){ 0 };
}

static void
set_str(char **field, char *value)
{
    free(*field);
    *field = value;
}

int
cli_parse_run(int argc, char **argv, struct run_opts *ret, struct tp_err *err)
{
    enum {
        OPT_NAME = 0x100,
        OPT_VCPUS,
        OPT_HYPERVISOR,
        OPT_KERNEL,
        OPT_INITRD,
        OPT_ROOTFS,
        OPT_ACCEL,
        OPT_DISK_SIZE,
        OPT_NO_AGENT,
        OPT_TRACE,
    };
    static const struct option longopts[] = {
        { "name", required_argument, NULL, OPT_NAME },
        { "memory", required_argument, NULL, 'm' },
        { "vcpus", required_argument, NULL, OPT_VCPUS },
        { "hypervisor", required_argument, NULL, OPT_HYPERVISOR },
        { "kernel", required_argument, NULL, OPT_KERNEL },
        { "initrd", required_argument, NULL, OPT_INITRD },
        { "rootfs", required_argument, NULL, OPT_ROOTFS },
        { "accel", required_argument, NULL, OPT_ACCEL },
        { "disk-size", required_argument, NULL, OPT_DISK_SIZE },
        { "no-agent", no_argument, NULL, OPT_NO_AGENT },
        { "trace", no_argument, NULL, OPT_TRACE },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    _cleanup_(cli_run_opts_done) struct run_opts o = { 0 };
    const char *opt;
    char *path;
    int c, r;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:m:h", longopts, NULL)) >= 0) {
        switch (c) {
        case OPT_NAME:
            if (!*optarg)
                return tp_err_set(err, -EINVAL, "option '--name' needs a non-empty value");
            if (cli_check_utf8("the value of '--name'", optarg, err) < 0)
                return -EINVAL;
            set_str(&o.name, xstrdup(optarg));
            break;
        case 'm':
            r = cli_parse_uint("--memory", optarg, INT32_MAX, &o.memory_mib, err);
            if (r < 0)
                return r;
            break;
        case OPT_VCPUS:
            r = cli_parse_uint("--vcpus", optarg, INT32_MAX, &o.vcpus, err);
            if (r < 0)
                return r;
            break;
        case OPT_DISK_SIZE:
            r = cli_parse_uint("--disk-size", optarg, INT32_MAX, &o.disk_mib, err);
            if (r < 0)
                return r;
            break;
        case OPT_HYPERVISOR:
            if (!*optarg)
                return tp_err_set(err, -EINVAL, "option '--hypervisor' needs a non-empty value");
            if (cli_check_utf8("the value of '--hypervisor'", optarg, err) < 0)
                return -EINVAL;
            set_str(&o.hypervisor, xstrdup(optarg));
            break;
        case OPT_KERNEL:
        case OPT_INITRD:
        case OPT_ROOTFS:
            /* Not argv[optind - 1]: that is the value when it came as a separate word. */
            opt = c == OPT_KERNEL ? "--kernel" : c == OPT_INITRD ? "--initrd" : "--rootfs";
            if (!*optarg)
                return tp_err_set(err, -EINVAL, "option '%s' needs a non-empty path", opt);
            /* torpord's cwd is not ours: send absolute paths, and let it judge existence. */
            path = cli_abspath(optarg);
            /* Checked once absolute: the cwd joined to it may be what is not UTF-8. */
            if (cli_check_utf8("the absolute path of that file", path, err) < 0) {
                free(path);
                return tp_err_wrap(err, "option '%s'", opt);
            }
            set_str(c == OPT_KERNEL ? &o.kernel : c == OPT_INITRD ? &o.initrd : &o.rootfs, path);
            break;
        case OPT_ACCEL:
            if (strcmp(optarg, "kvm") != 0 && strcmp(optarg, "tcg") != 0)
                return tp_err_set(err, -EINVAL, "option '--accel' expects 'kvm' or 'tcg', not '%s'",
                                  optarg);
            set_str(&o.accel, xstrdup(optarg));
            break;
        case OPT_NO_AGENT:
            o.no_agent = true;
            break;
        case OPT_TRACE:
            o.trace = true;
            break;
        case 'h':
            o.help = true;
            break;
        default:
            return cli_getopt_error(c, argv, err);
        }
    }
    if (optind < argc) {
        o.cmd = xnew(char *, (size_t)(argc - optind) + 1);
        for (int i = optind; i < argc; i++) {
            _cleanup_free_ char *what = xasprintf("argument %d of CMD", i - optind + 1);
            if (cli_check_utf8(what, argv[i], err) < 0)
                return -EINVAL;
            o.cmd[i - optind] = xstrdup(argv[i]);
        }
    }
    *ret = o;
    o = (struct run_opts){ 0 }; /* moved to ret */
    return 0;
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
    if (o->disk_mib)
        json_object_set_new(b, "disk_mib", json_integer(o->disk_mib));
    if (o->no_agent)
        json_object_set_new(b, "no_agent", json_true());
    if (o->cmd) {
        json_t *a = json_array();
        strv_foreach (s, o->cmd)
            json_array_append_new(a, json_string(*s));
        json_object_set_new(b, "cmd", a);
    }
    return b;
}

int
cli_cmd_run(const struct cli_ctx *ctx, const struct run_opts *o)
{
    json_t *body = run_body(o), *inst = NULL;
    const char *id;
    int r;

    r = cli_call(ctx, "POST", "/v1/instances", body, &inst);
    json_decref(body);
    if (r < 0)
        return CLI_EXIT_FAIL;
    id = json_string_value(json_object_get(inst, "id"));
    if (!id) {
        json_decref(inst);
        cli_error("torpord's reply has no instance id");
        return CLI_EXIT_FAIL;
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
    int x = cli_verb_prologue("run", usage, r, o.help, &err);

    return x >= 0 ? x : cli_cmd_run(ctx, &o);
}
