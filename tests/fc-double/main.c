/* fc-double: a stand-in for the `firecracker` binary (flags, API socket, event loop). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fcd.h"
#include "http.h"
#include "snapfile.h"
#include "spec.h"
#include "vm.h"

#ifndef FCD_SPEC_DEFAULT
#define FCD_SPEC_DEFAULT "firecracker-api.yaml"
#endif

#define MAX_API_CONNS 10
#define MAX_PFDS      (2 + MAX_API_CONNS + 2 + 2 * 64)

enum arg_kind {
    ARG_FLAG,
    ARG_VALUE,
};

struct arg_def {
    const char *name;
    enum arg_kind kind;
    const char *value; /* parsed: "" for a flag given, NULL when absent */
};

/* Firecracker 1.16.1's flags (FIRECRACKER.md §1). */
static struct arg_def args[] = {
    { "api-sock", ARG_VALUE, NULL },
    { "id", ARG_VALUE, NULL },
    { "config-file", ARG_VALUE, NULL },
    { "no-api", ARG_FLAG, NULL },
    { "boot-timer", ARG_FLAG, NULL },
    { "log-path", ARG_VALUE, NULL },
    { "level", ARG_VALUE, NULL },
    { "module", ARG_VALUE, NULL },
    { "show-level", ARG_FLAG, NULL },
    { "show-log-origin", ARG_FLAG, NULL },
    { "metrics-path", ARG_VALUE, NULL },
    { "seccomp-filter", ARG_VALUE, NULL },
    { "no-seccomp", ARG_FLAG, NULL },
    { "http-api-max-payload-size", ARG_VALUE, NULL },
    { "mmds-size-limit", ARG_VALUE, NULL },
    { "metadata", ARG_VALUE, NULL },
    { "enable-pci", ARG_FLAG, NULL },
    { "version", ARG_FLAG, NULL },
    { "snapshot-version", ARG_FLAG, NULL },
    { "describe-snapshot", ARG_VALUE, NULL },
    { "start-time-us", ARG_VALUE, NULL },
    { "start-time-cpu-us", ARG_VALUE, NULL },
    { "parent-cpu-time-us", ARG_VALUE, NULL },
    { "help", ARG_FLAG, NULL },
};

static const char *
arg(const char *name)
{
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
        if (strcmp(args[i].name, name) == 0)
            return args[i].value;
    return NULL;
}

static int
parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq;
        struct arg_def *d = NULL;
        size_t nlen;

        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr,
                    "Arguments parsing error: Found argument '%s' which wasn't "
                    "expected, or isn't valid in this context.\n",
                    a);
            return -EINVAL;
        }
        eq = strchr(a, '=');
        nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        for (size_t k = 0; k < sizeof(args) / sizeof(args[0]); k++)
            if (strlen(args[k].name) == nlen && strncmp(args[k].name, a + 2, nlen) == 0)
                d = &args[k];
        if (!d) {
            fprintf(stderr,
                    "Arguments parsing error: Found argument '%.*s' which wasn't "
                    "expected, or isn't valid in this context.\n",
                    (int)nlen + 2, a);
            return -EINVAL;
        }
        if (d->value) {
            fprintf(stderr,
                    "Arguments parsing error: The argument '--%s' was provided more "
                    "than once.\n",
                    d->name);
            return -EINVAL;
        }
        if (d->kind == ARG_FLAG) {
            if (eq) {
                fprintf(stderr,
                        "Arguments parsing error: The argument '--%s' does not take "
                        "a value.\n",
                        d->name);
                return -EINVAL;
            }
            d->value = "";
        } else if (eq) {
            d->value = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            d->value = argv[++i];
        } else {
            fprintf(stderr,
                    "Arguments parsing error: The argument '--%s' requires a value, "
                    "but none was supplied\n",
                    d->name);
            return -EINVAL;
        }
    }
    if (arg("no-seccomp") && arg("seccomp-filter")) {
        fprintf(stderr, "Arguments parsing error: '--no-seccomp' and '--seccomp-filter' are "
                        "mutually exclusive.\n");
        return -EINVAL;
    }
    if (arg("no-api") && !arg("config-file")) {
        fprintf(stderr, "Arguments parsing error: '--no-api' requires '--config-file'.\n");
        return -EINVAL;
    }
    return 0;
}

static bool
id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 64)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            return false;
    return true;
}

/* Firecracker binds its API socket itself: a path that exists (a stale socket) is an error. */
static int
api_socket_open(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timespec ts;
    int fd;

    /* Start-up time varies: a client must wait for the socket, not race it. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    srand((unsigned)(ts.tv_nsec ^ getpid()));
    ts = (struct timespec){ .tv_nsec = (long)(rand() % 20001) * 1000 };
    nanosleep(&ts, NULL);

    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "Failed to open the API socket at: %s. Path too long.\n", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        int r = -errno;
        fprintf(stderr,
                "Failed to open the API socket at: %s. Check that it is not already used: %s\n",
                path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return r;
    }
    return fd;
}

/* --config-file: every resource through the same path as the API, then InstanceStart. */
static int
config_file_apply(struct vm *vm, const char *path)
{
    static const char *const order[] = { "logger",
                                         "metrics",
                                         "boot-source",
                                         "machine-config",
                                         "cpu-config",
                                         "drives",
                                         "network-interfaces",
                                         "pmem",
                                         "vsock",
                                         "balloon",
                                         "entropy",
                                         "mmds-config",
                                         "memory-hotplug",
                                         "serial" };
    json_error_t jerr;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *v;
    const char *key;
    int r = 0;

    if (!json_is_object(cfg)) {
        fprintf(stderr, "Configuration for VMM from one single json failed: %s\n", jerr.text);
        json_decref(cfg);
        return -EINVAL;
    }
    json_object_foreach(cfg, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
            known |= strcmp(order[i], key) == 0;
        if (!known) {
            fprintf(stderr,
                    "Configuration for VMM from one single json failed: unknown field "
                    "`%s`\n",
                    key);
            json_decref(cfg);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && r == 0; i++) {
        json_t *res = json_object_get(cfg, order[i]), *item;
        size_t idx;
        if (!res)
            continue;
        bool list = strcmp(order[i], "drives") == 0 ||
                    strcmp(order[i], "network-interfaces") == 0 || strcmp(order[i], "pmem") == 0;
        for (idx = 0; r == 0 && (list ? idx < json_array_size(res) : idx < 1); idx++) {
            const char *idkey = strcmp(order[i], "drives") == 0 ? "drive_id"
                                : strcmp(order[i], "pmem") == 0 ? "id"
                                                                : "iface_id";
            char p[512];
            struct vm_reply rep;
            item = list ? json_array_get(res, idx) : res;
            if (list)
                snprintf(p, sizeof(p), "/%s/%s", order[i],
                         json_string_value(json_object_get(item, idkey)) ?: "");
            else
                snprintf(p, sizeof(p), "/%s",
                         strcmp(order[i], "mmds-config") == 0      ? "mmds/config"
                         : strcmp(order[i], "memory-hotplug") == 0 ? "hotplug/memory"
                                                                   : order[i]);
            char *body = json_dumps(item, JSON_COMPACT);
            vm_api_call(vm, "PUT", p, body, strlen(body), &rep);
            if (rep.status >= 400) {
                fprintf(stderr, "Configuration for VMM from one single json failed: %s: %s\n", p,
                        rep.body);
                r = -EINVAL;
            }
            vm_reply_clear(&rep);
            free(body);
        }
    }
    json_decref(cfg);
    if (r == 0) {
        struct vm_reply rep;
        const char *start = "{\"action_type\":\"InstanceStart\"}";
        vm_api_call(vm, "PUT", "/actions", start, strlen(start), &rep);
        if (rep.status >= 400) {
            fprintf(stderr, "Configuration for VMM from one single json failed: %s\n", rep.body);
            r = -EINVAL;
        }
        vm_reply_clear(&rep);
    }
    return r;
}

static void
timer_set(int tfd, unsigned ms)
{
    struct itimerspec it = { 0 };
    if (ms) {
        it.it_interval.tv_sec = ms / 1000;
        it.it_interval.tv_nsec = (long)(ms % 1000) * 1000000;
        it.it_value = it.it_interval;
    }
    timerfd_settime(tfd, 0, &it, NULL);
}

static unsigned
env_uint(const char *name, unsigned def)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : def;
}

int
main(int argc, char **argv)
{
    struct http_conn conns[MAX_API_CONNS];
    int nconns = 0, api_fd = -1, tfd, rc = FCD_EXIT_OK;
    const char *spec_path = getenv("FC_DOUBLE_SPEC");
    unsigned tick_ms = env_uint("FC_DOUBLE_TICK_MS", 20);
    size_t max_payload = 51200;
    struct spec *spec = NULL;
    struct fcd_err err = { { 0 } };
    bool ticking = false;
    struct vm vm;

    signal(SIGPIPE, SIG_IGN);
    if (parse_args(argc, argv) < 0)
        return FCD_EXIT_ARG_PARSING;
    if (arg("help")) {
        printf("fc-double: a test double of firecracker v%s (see tests/fc-double/README.md)\n",
               FCD_VERSION);
        return 0;
    }
    if (arg("version")) {
        printf("Firecracker v%s\n\n", FCD_VERSION);
        return 0;
    }
    if (arg("snapshot-version")) {
        printf("v%s\n", FCD_SNAPSHOT_VERSION);
        return 0;
    }
    if (arg("describe-snapshot")) {
        char ver[32];
        if (snapfile_version(arg("describe-snapshot"), ver, sizeof(ver), &err) < 0) {
            fprintf(stderr, "Error: %s\n", err.msg);
            return FCD_EXIT_GENERIC;
        }
        printf("v%s\n", ver);
        return 0;
    }
    if (arg("id") && !id_valid(arg("id"))) {
        fprintf(stderr, "Invalid instance ID: '%s' (1 to 64 alphanumeric characters or '-')\n",
                arg("id"));
        return FCD_EXIT_ARG_PARSING;
    }
    if (arg("http-api-max-payload-size"))
        max_payload = strtoul(arg("http-api-max-payload-size"), NULL, 10);
    if (arg("level") || arg("log-path")) {
        if (fcd_log_open(arg("log-path"), arg("level") ? arg("level") : "Info",
                         arg("show-level") != NULL, arg("show-log-origin") != NULL) < 0) {
            fprintf(stderr, "Logger error: cannot open '%s': %s\n",
                    arg("log-path") ? arg("log-path") : "", strerror(errno));
            return FCD_EXIT_GENERIC;
        }
    }
    if (!spec_path)
        spec_path = FCD_SPEC_DEFAULT;
    if (spec_load(spec_path, &spec, &err) < 0) {
        fprintf(stderr, "fc-double: %s (set FC_DOUBLE_SPEC)\n", err.msg);
        return FCD_EXIT_GENERIC;
    }
    if (strcmp(spec_version(spec), FCD_VERSION) != 0) {
        fprintf(stderr, "fc-double: the API spec is version %s, the double implements %s\n",
                spec_version(spec), FCD_VERSION);
        spec_free(spec);
        return FCD_EXIT_GENERIC;
    }

    vm_init(&vm, spec, arg("id") ? arg("id") : "anonymous-instance");
    vm.enable_pci = arg("enable-pci") != NULL;
    vm.ignore_ctrlaltdel =
        getenv("FC_DOUBLE_CTRLALTDEL") && strcmp(getenv("FC_DOUBLE_CTRLALTDEL"), "ignore") == 0;
    vm.vsock.agent_path = getenv("FC_DOUBLE_AGENT");
    vm.vsock.agent_port = env_uint("FC_DOUBLE_AGENT_PORT", 52);
    fcd_log("Info", "Running Firecracker v%s (fc-double)", FCD_VERSION);
    if (arg("metrics-path")) {
        struct vm_reply rep;
        json_t *b = json_pack("{s:s}", "metrics_path", arg("metrics-path"));
        char *text = json_dumps(b, JSON_COMPACT);
        vm_api_call(&vm, "PUT", "/metrics", text, strlen(text), &rep);
        free(text);
        json_decref(b);
        if (rep.status >= 400) {
            fprintf(stderr, "Failed to initialize metrics: %s\n", rep.body);
            vm_reply_clear(&rep);
            rc = FCD_EXIT_GENERIC;
            goto out;
        }
        vm_reply_clear(&rep);
    }
    if (arg("metadata")) {
        json_error_t jerr;
        json_t *md = json_load_file(arg("metadata"), 0, &jerr);
        if (!json_is_object(md)) {
            fprintf(stderr, "Unable to load metadata '%s': %s\n", arg("metadata"), jerr.text);
            json_decref(md);
            rc = FCD_EXIT_GENERIC;
            goto out;
        }
        json_decref(vm.mmds);
        vm.mmds = md;
    }
    if (!arg("no-api")) {
        api_fd = api_socket_open(arg("api-sock") ? arg("api-sock") : "/run/firecracker.socket");
        if (api_fd < 0) {
            rc = FCD_EXIT_GENERIC;
            goto out;
        }
    }
    if (arg("config-file") && config_file_apply(&vm, arg("config-file")) < 0) {
        rc = FCD_EXIT_BAD_CONFIG;
        goto out;
    }

    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    for (;;) {
        struct pollfd pfds[MAX_PFDS];
        int n = 0, vs_first, vs_n;
        bool running = vm.state == VM_RUNNING;

        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (vm.exit_now) {
            rc = vm.exit_code;
            break;
        }
        if (running && vm.reboot_pending) {
            fcd_console("reboot: Restarting system");
            rc = FCD_EXIT_OK;
            break;
        }
        if (running != ticking) {
            timer_set(tfd, running ? tick_ms : 0);
            ticking = running;
        }
        pfds[n++] = (struct pollfd){ .fd = tfd, .events = POLLIN };
        pfds[n++] = (struct pollfd){ .fd = nconns < MAX_API_CONNS ? api_fd : -1, .events = POLLIN };
        for (int i = 0; i < nconns; i++)
            pfds[n++] = (struct pollfd){ .fd = conns[i].fd, .events = POLLIN };
        vs_first = n;
        vs_n = vsock_poll_fill(&vm.vsock, running, pfds + n, MAX_PFDS - n);
        n += vs_n;
        if (poll(pfds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            rc = FCD_EXIT_GENERIC;
            break;
        }
        if (pfds[0].revents & POLLIN) {
            uint64_t expirations;
            if (read(tfd, &expirations, sizeof(expirations)) > 0 && vm.state == VM_RUNNING)
                vm_guest_tick(&vm);
        }
        if (pfds[1].revents & POLLIN) {
            int fd = accept4(api_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0)
                conns[nconns++] = (struct http_conn){ .fd = fd };
        }
        for (int i = 0; i < nconns && !vm.exit_now; i++) {
            struct http_conn *c = &conns[i];
            bool drop = false;
            int r;

            if (!(pfds[2 + i].revents & (POLLIN | POLLHUP | POLLERR)) || pfds[2 + i].fd != c->fd)
                continue;
            r = http_conn_fill(c);
            if (r == 0 || (r < 0 && r != -EAGAIN))
                drop = true;
            while (!drop && !vm.exit_now) {
                struct http_req req;
                struct vm_reply rep;
                r = http_take_request(c, max_payload, &req, &err);
                if (r == 0)
                    break;
                if (r < 0) {
                    http_send_transport_error(c->fd, err.msg);
                    drop = true;
                    break;
                }
                vm_api_call(&vm, req.method, req.path, req.body, req.body_len, &rep);
                if (http_send(c->fd, rep.status, rep.body, rep.deprecation) < 0 || !req.keep_alive)
                    drop = true;
                if (rep.fatal) {
                    vm.exit_now = true;
                    vm.exit_code = FCD_EXIT_GENERIC;
                }
                vm_reply_clear(&rep);
                http_req_clear(&req);
            }
            if (drop) {
                close(c->fd);
                http_conn_release(c);
                conns[i] = conns[--nconns];
                /* The moved connection's poll result belongs to another slot: next turn. */
                pfds[2 + i].revents = 0;
                pfds[2 + i].fd = -1;
                i--;
            }
        }
        vsock_poll_handle(&vm.vsock, running && vm.state == VM_RUNNING, pfds + vs_first, vs_n,
                          &vm.mem);
    }
    close(tfd);
out:
    for (int i = 0; i < nconns; i++) {
        close(conns[i].fd);
        http_conn_release(&conns[i]);
    }
    if (api_fd >= 0)
        close(api_fd);
    vm_release(&vm);
    spec_free(spec);
    return rc;
}
