/* torpord: the daemon. Owns the data dir (one daemon per dir), serves the REST API on a Unix
 * socket, and leaves VMMs running when it exits: they live in their own sessions. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/server.h"
#include "daemon/uffd_handler.h"
#include "hypervisor/firecracker/fc_driver.h"
#include "hypervisor/firecracker/fc_uffd.h"
#include "image/oci/oci.h"
#include "image/oci/rootfs.h"
#include "instance/console.h"
#include "instance/manager.h"
#include "net/net.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/roff.h"
#include "util/sock.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

static const char *arg_data_dir = "/var/lib/torpor";
static const char *arg_socket = "/run/torpor/torpor.sock";
static gid_t arg_socket_gid = (gid_t)-1; /* --socket-group; -1 = leave the group as created */
static const char *arg_cache_dir;
static const char *arg_agent;
static const char *arg_accel;
static int arg_ready_fd = -1;
static unsigned arg_client_timeout;  /* 0 = the API's default */
static uint64_t arg_console_log_max; /* 0 = the manager's default */
static bool arg_no_warm_runs;
static bool arg_network; /* --network or --subnet: torpord owns guest networking */
static struct net_subnet arg_subnet;
static bool arg_cleanup_network;
/* --metrics-listen; NULL = /metrics on the API socket only */
static const char *arg_metrics_listen;
/* --insecure-registry (repeatable) and --registry-config */
static char **arg_insecure_registries;
static size_t arg_n_insecure;
static const char *arg_registry_config;

/* VMMs run with their instance directory as working directory, so every path the daemon
 * derives from its options must be absolute. NULL when the working directory is unknown. */
static char *
absolute_path(const char *path)
{
    _cleanup_free_ char *cwd = NULL;

    if (path[0] == '/')
        return xstrdup(path);
    cwd = getcwd(NULL, 0);
    return cwd ? fs_path_join(cwd, path) : NULL;
}

/* torpord's options: getopt_long's table, the usage text and torpord(8) all come from here. */
static const struct daemon_opt {
    const char *name;
    int val;          /* getopt_long's code */
    const char *arg;  /* the value's name; NULL = a flag */
    const char *help; /* one paragraph, wrapped when printed */
} daemon_opts[] = {
    { "data-dir", 'd', "DIR", "instance records and files (default /var/lib/torpor)" },
    { "socket", 's', "PATH",
      "the API socket (default /run/torpor/torpor.sock); a directory torpord creates for it is "
      "mode 0755" },
    { "socket-group", 'g', "GROUP",
      "give the API socket (mode 0660) to GROUP, so its members can use torpor without being "
      "root (default: the group of the user running torpord); an unknown GROUP is an error" },
    { "cache-dir", 'c', "DIR",
      "kernels, initramfs and root disk images (default $TORPOR_CACHE_DIR, else "
      "/var/cache/torpor)" },
    { "agent", 'a', "PATH", "static guest agent binary (default: found beside torpord)" },
    { "accel", 'A', "kvm|tcg", "force an accelerator (default: kvm where usable, else tcg)" },
    { "log-level", 'l', "LEVEL", "error, warn, info (default) or debug; the log goes to stderr" },
    { "ready-fd", 'r', "N",
      "write \"READY\\n\" to file descriptor N once the API accepts requests" },
    { "client-timeout", 't', "SECONDS",
      "drop API clients silent this long while their request or the reading of a reply is "
      "awaited (default 10; running operations and streams such as exec and logs -f are never "
      "cut)" },
    { "console-log-max", 'C', "BYTES",
      "bytes of serial console kept per instance; older output is cut from the head" },
    { "firecracker", 'F', "PATH", "the firecracker binary, for instances run with it" },
    { "network", 'N', NULL,
      "give guests a network: bridge " NET_BRIDGE " with the subnet's first address, a TAP per "
      "VM, NAT in nftables table inet " NET_NFT_TABLE " (default subnet " NET_SUBNET_DEFAULT
      "). Without it torpord leaves the host's network alone and guests have none" },
    { "subnet", 'S', "CIDR", "the guests' IPv4 subnet, /8 to /30 (implies --network)" },
    { "cleanup-network", 'X', NULL,
      "remove the bridge, every TAP of torpor's and the nftables table, then exit" },
    { "metrics-listen", 'm', "ADDR:PORT",
      "also serve GET /metrics (Prometheus) on this TCP address, e.g. 127.0.0.1:9464 or :9464 "
      "(default: only on the API socket)" },
    { "log-format", 'L', "FORMAT",
      "text (default) or json: one JSON object per line with time, level, msg and the "
      "instance and op fields of the message" },
    { "insecure-registry", 'I', "HOST[:PORT]",
      "pull from this registry over plain HTTP (or HTTPS without verifying its certificate); "
      "repeatable. Loopback registries (localhost, 127.0.0.0/8, ::1) are insecure by default, "
      "as with dockerd" },
    { "registry-config", 'R', "PATH",
      "registry credentials, a docker-style config.json (\"auths\": {\"HOST\": {\"auth\": "
      "base64 of USER:PASS}}) (default $DOCKER_CONFIG/config.json, else "
      "~/.docker/config.json)" },
    { "no-warm-runs", 'W', NULL,
      "boot every run: keep no booted templates and fork from none (default: the first run of "
      "a guest keeps one, later runs of the same guest fork from it; see torpor templates)" },
    { "help", 'h', NULL, "print this help" },
    { "man", 'M', NULL, NULL }, /* hidden: print torpord(8) in roff */
};

#define USAGE_HELP_COLUMN 25
#define USAGE_WIDTH       80

/* text from column `at` on, wrapped at USAGE_WIDTH and continued at USAGE_HELP_COLUMN. */
static void
usage_wrap(FILE *f, const char *text, size_t at)
{
    const char *p = text;

    while (*p) {
        size_t room = USAGE_WIDTH - 1 - at, len = strlen(p);
        if (len > room) {
            len = room;
            while (len > 0 && p[len] != ' ')
                len--;
            if (len == 0)
                len = strcspn(p, " ");
        }
        fprintf(f, "%.*s\n", (int)len, p);
        p += len;
        while (*p == ' ')
            p++;
        if (*p)
            fprintf(f, "%*s", USAGE_HELP_COLUMN, "");
        at = USAGE_HELP_COLUMN;
    }
}

static void
usage(FILE *f)
{
    fputs("Usage: torpord [OPTIONS]\n"
          "\n"
          "The torpor daemon: runs microVMs and serves torpor's REST API on a Unix socket.\n"
          "\n"
          "Options:\n",
          f);
    for (size_t i = 0; i < ELEMENTSOF(daemon_opts); i++) {
        const struct daemon_opt *o = &daemon_opts[i];
        int n;
        if (!o->help)
            continue;
        n = fprintf(f, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        if (n >= USAGE_HELP_COLUMN - 1) {
            fprintf(f, "\n%*s", USAGE_HELP_COLUMN, "");
        } else {
            fprintf(f, "%*s", USAGE_HELP_COLUMN - n, "");
        }
        usage_wrap(f, o->help, USAGE_HELP_COLUMN);
    }
}

/* torpord(8), from the table above. */
static void
man_page(FILE *f)
{
    roff_title(f, "torpord", "8", "torpor " TORPOR_VERSION, "System Administration");
    roff_section(f, "NAME");
    fputs("torpord \\- the torpor microVM daemon\n", f);
    roff_section(f, "SYNOPSIS");
    fputs("\\fBtorpord\\fR [\\fIOPTIONS\\fR]\n", f);
    roff_section(f, "DESCRIPTION");
    roff_paragraphs(f,
                    "torpord runs microVMs (QEMU or Firecracker guests) and serves torpor's REST "
                    "API on a Unix socket; torpor(1) is its command-line client. It owns its data "
                    "dir (one daemon per dir and per socket), records every instance there, and "
                    "leaves VMMs running when it exits: a torpord started again finds them.\n\n"
                    "Only root, and members of the group given with --socket-group, can use the "
                    "socket. On SIGTERM or SIGINT torpord lets requests in flight finish, then "
                    "exits 0; the VMMs keep running.");
    roff_section(f, "OPTIONS");
    for (size_t i = 0; i < ELEMENTSOF(daemon_opts); i++)
        if (daemon_opts[i].help)
            roff_option(f, 0, daemon_opts[i].name, daemon_opts[i].arg, daemon_opts[i].help);
    roff_section(f, "ENVIRONMENT");
    fputs(".TP\n\\fBTORPOR_CACHE_DIR\\fR\n", f);
    roff_text(f, "the cache dir when --cache-dir is not given\n");
    fputs(".TP\n\\fBTORPOR_AGENT\\fR\n", f);
    roff_text(f, "the guest agent binary when --agent is not given\n");
    roff_section(f, "EXIT STATUS");
    roff_paragraphs(f, "0 after a clean shutdown, 1 when torpord could not start or run (the "
                       "reason is logged), 2 for a usage error.");
    roff_section(f, "FILES");
    roff_paragraphs(f, "/run/torpor/torpor.sock: the API socket.\n\n"
                       "/var/lib/torpor: the data dir (torpor.db and one directory per "
                       "instance).\n\n/var/cache/torpor: kernels and images.");
    roff_section(f, "SEE ALSO");
    fputs("\\fBtorpor\\fR(1)\n", f);
}

static int
parse_args(int argc, char **argv)
{
    struct option opts[ELEMENTSOF(daemon_opts) + 1] = { 0 };
    int c;
    enum log_level lvl;

    for (size_t i = 0; i < ELEMENTSOF(daemon_opts); i++)
        opts[i] = (struct option){ daemon_opts[i].name,
                                   daemon_opts[i].arg ? required_argument : no_argument, NULL,
                                   daemon_opts[i].val };
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
        switch (c) {
        case 'd':
            if (!*optarg) {
                fprintf(stderr, "torpord: --data-dir must not be empty\n");
                return -EINVAL;
            }
            arg_data_dir = optarg;
            break;
        case 's':
            arg_socket = optarg;
            break;
        case 'g': {
            /* Resolved now: a typo must stop the start, not surface as a socket nobody can use. */
            struct group *gr;
            errno = 0;
            gr = getgrnam(optarg);
            if (!gr) {
                fprintf(stderr, "torpord: --socket-group: unknown group '%s'%s%s\n", optarg,
                        errno ? ": " : "", errno ? strerror(errno) : "");
                return -EINVAL;
            }
            arg_socket_gid = gr->gr_gid;
            break;
        }
        case 'c':
            if (!*optarg) {
                fprintf(stderr, "torpord: --cache-dir must not be empty\n");
                return -EINVAL;
            }
            arg_cache_dir = optarg;
            break;
        case 'a':
            arg_agent = optarg;
            break;
        case 'A':
            if (strcmp(optarg, "kvm") != 0 && strcmp(optarg, "tcg") != 0) {
                fprintf(stderr, "torpord: --accel must be kvm or tcg\n");
                return -EINVAL;
            }
            arg_accel = optarg;
            break;
        case 'l':
            if (log_parse_level(optarg, &lvl) < 0) {
                fprintf(stderr, "torpord: unknown log level '%s'\n", optarg);
                return -EINVAL;
            }
            log_set_level(lvl);
            break;
        case 'r': {
            char *end;
            errno = 0;
            long fd = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || fd < 0 || fd > INT_MAX ||
                fcntl((int)fd, F_GETFD) < 0) {
                fprintf(stderr, "torpord: --ready-fd '%s' is not an open file descriptor\n",
                        optarg);
                return -EINVAL;
            }
            arg_ready_fd = (int)fd;
            break;
        }
        case 't': {
            char *end;
            errno = 0;
            unsigned long t = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || t == 0 || t > 86400) {
                fprintf(stderr, "torpord: --client-timeout '%s' is not 1..86400 seconds\n", optarg);
                return -EINVAL;
            }
            arg_client_timeout = (unsigned)t;
            break;
        }
        case 'F':
            if (!*optarg) {
                fprintf(stderr, "torpord: --firecracker must not be empty\n");
                return -EINVAL;
            }
            {
                /* Absolute: VMMs start in their instance dirs. The driver reads it from the
                 * environment where it starts one (and where it probes the version). */
                _cleanup_free_ char *abs = absolute_path(optarg);
                if (!abs || setenv(FC_BINARY_ENV, abs, 1) < 0)
                    return -errno;
                break;
            }
        case 'C': {
            char *end;
            errno = 0;
            unsigned long long b = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || b < CONSOLE_LOG_MAX_MIN || b > (1ull << 40)) {
                fprintf(stderr, "torpord: --console-log-max '%s' is not %llu..%llu bytes\n", optarg,
                        (unsigned long long)CONSOLE_LOG_MAX_MIN, 1ull << 40);
                return -EINVAL;
            }
            arg_console_log_max = b;
            break;
        }
        case 'W':
            arg_no_warm_runs = true;
            break;
        case 'N':
            arg_network = true;
            break;
        case 'S': {
            _cleanup_(tp_err_clear) struct tp_err e = { 0 };
            if (net_subnet_parse(optarg, &arg_subnet, &e) < 0) {
                fprintf(stderr, "torpord: --subnet: %s\n", tp_err_msg(&e));
                return -EINVAL;
            }
            arg_network = true;
            break;
        }
        case 'X':
            arg_cleanup_network = true;
            break;
        case 'm':
            if (!*optarg) {
                fprintf(stderr, "torpord: --metrics-listen needs ADDR:PORT\n");
                return -EINVAL;
            }
            arg_metrics_listen = optarg;
            break;
        case 'L': {
            enum log_format fmt;
            if (log_parse_format(optarg, &fmt) < 0) {
                fprintf(stderr, "torpord: --log-format '%s' is not text or json\n", optarg);
                return -EINVAL;
            }
            log_set_format(fmt);
            break;
        }
        case 'I':
            if (!oci_registry_host_valid(optarg)) {
                fprintf(stderr, "torpord: --insecure-registry '%s' is not HOST[:PORT]\n", optarg);
                return -EINVAL;
            }
            arg_insecure_registries =
                xrealloc(arg_insecure_registries, sizeof(char *) * (arg_n_insecure + 2));
            arg_insecure_registries[arg_n_insecure++] = xstrdup(optarg);
            arg_insecure_registries[arg_n_insecure] = NULL;
            break;
        case 'R':
            if (!*optarg) {
                fprintf(stderr, "torpord: --registry-config must not be empty\n");
                return -EINVAL;
            }
            arg_registry_config = absolute_path(optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'M':
            man_page(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "torpord: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

/* The guest agent ships beside the daemon: build tree or installed layout. */
static char *
find_agent(void)
{
    static const char *const rel[] = { "../../guest-agent/torpor-agent",
                                       "../lib/torpor/torpor-agent" };
    char exe[PATH_MAX];
    const char *env = getenv("TORPOR_AGENT");
    if (env)
        return xstrdup(env);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *dir = dirname(exe);
    for (size_t k = 0; k < ELEMENTSOF(rel); k++) {
        char *p = xasprintf("%s/%s", dir, rel[k]);
        if (access(p, R_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

#define LOCK_GRACE_MS 2000 /* how long a dead daemon's forked children may still hold its lock */

/* flock path (created if needed) for the daemon's lifetime: the fd, -EBUSY while another
 * process holds it. A daemon killed between a fork and its child's exec leaves the child
 * holding a copy of the lock until its parent-death signal lands: a restart right after such a
 * kill waits that out, bounded. */
static int
lock_file(const char *p, struct tp_err *err)
{
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", p);
    for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; waited += 10) {
        int r = -errno;
        if (r == -EINTR)
            continue;
        if (r == -EWOULDBLOCK && waited < LOCK_GRACE_MS) {
            (void)poll(NULL, 0, 10);
            continue;
        }
        close(fd);
        if (r == -EWOULDBLOCK)
            return -EBUSY;
        return tp_err_errno(err, r, "lock '%s'", p);
    }
    return fd; /* held until exit */
}

/* One daemon per data dir: a second one would fight over VMMs and records. */
static int
lock_data_dir(const char *dir, struct tp_err *err)
{
    _cleanup_free_ char *p = fs_path_join(dir, "torpord.lock");
    int fd = lock_file(p, err);
    if (fd == -EBUSY)
        return tp_err_set(err, -EBUSY, "another torpord is using data dir '%s'", dir);
    return fd;
}

/* One daemon per socket, whatever its data dir. The lock (beside the socket) keeps two daemons
 * starting at once from both taking a stale socket for theirs; the probe in
 * sock_listen_unix_exclusive() catches a server that holds no lock. */
static int
lock_socket(const char *path, struct tp_err *err)
{
    _cleanup_free_ char *p = xasprintf("%s.lock", path);
    int fd = lock_file(p, err);
    if (fd == -EBUSY)
        return tp_err_set(err, -EADDRINUSE, "another torpord is serving '%s'", path);
    return fd;
}

/* Graceful shutdown: requests in flight finish (a boot under way answers its client), streams
 * end, silent clients time out, then the threads are joined. Returns false when connections were
 * still open at the deadline or a second signal came: the caller then exits without waiting. */
static bool
drain_api(struct api_server *srv, int sigfd)
{
    int idle = api_server_quiesce(srv);
    uint64_t deadline = now_ms() + API_DRAIN_TIMEOUT_MS;
    unsigned conns, reqs;

    for (;;) {
        struct pollfd p[2] = { { .fd = idle, .events = POLLIN },
                               { .fd = sigfd, .events = POLLIN } };
        uint64_t now = now_ms();
        int left = now >= deadline ? 0 : (int)(deadline - now);
        int r = poll(p, 2, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0 && (p[0].revents & POLLIN))
            return true;
        api_server_pending(srv, &conns, &reqs);
        if (r > 0 && (p[1].revents & POLLIN))
            log_warn("torpord: second signal: exiting now; %u request(s) still running get no "
                     "reply",
                     reqs);
        else
            log_warn("torpord: %u request(s) on %u connection(s) still running after %d s: "
                     "exiting without their replies",
                     reqs, conns, API_DRAIN_TIMEOUT_MS / 1000);
        return false;
    }
}

static int
run(struct tp_err *err)
{
    _cleanup_(inst_manager_freep) struct inst_manager *m = NULL;
    _cleanup_free_ char *agent = NULL, *sockdir = NULL, *data_dir = NULL, *cache_dir = NULL;
    _cleanup_close_ int lockfd = -EBADF, socklockfd = -EBADF, listenfd = -EBADF, sigfd = -EBADF;
    struct api_server *srv = NULL;
    _cleanup_(api_metrics_http_stopp) struct api_metrics_http *metrics_http = NULL;
    struct sock_file sockfile;
    sigset_t mask;
    int r;

    /* Block before any thread starts so every thread inherits the mask and signalfd sees all. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sigfd < 0)
        return tp_err_errno(err, -errno, "create signalfd");

    data_dir = absolute_path(arg_data_dir);
    if (!data_dir)
        return tp_err_errno(err, -errno, "resolve data dir '%s'", arg_data_dir);
    r = fs_mkdir_p(data_dir, 0700, err);
    if (r < 0)
        return r;
    lockfd = lock_data_dir(data_dir, err);
    if (lockfd < 0)
        return lockfd;

    agent = arg_agent ? xstrdup(arg_agent) : find_agent();
    if (!agent || access(agent, R_OK) < 0)
        return tp_err_set(err, -ENOENT, "guest agent binary not found%s%s (use --agent PATH)",
                          agent ? ": " : "", agent ? agent : "");
    if (!arg_cache_dir)
        arg_cache_dir =
            getenv("TORPOR_CACHE_DIR") ? getenv("TORPOR_CACHE_DIR") : "/var/cache/torpor";
    cache_dir = absolute_path(arg_cache_dir);
    if (!cache_dir)
        return tp_err_errno(err, -errno, "resolve cache dir '%s'", arg_cache_dir);

    const struct inst_manager_opts mo = {
        .data_dir = data_dir,
        .cache_dir = cache_dir,
        .agent_path = agent,
        .accel = arg_accel,
        .console_log_max = arg_console_log_max,
        .no_warm_runs = arg_no_warm_runs,
        .subnet = arg_network ? &arg_subnet : NULL,
    };
    r = inst_manager_open(&mo, &m, err);
    if (r < 0)
        return tp_err_wrap(err, "open data dir '%s'", data_dir);
    {
        /* Root disk builds a crash cut short: only their temp dirs, never a published disk. */
        _cleanup_free_ char *images = fs_path_join(data_dir, "images");
        struct tp_err cerr = { 0 };
        if (oci_rootfs_clean_tmp(images, &cerr) < 0)
            log_warn("remove unfinished image root disk builds: %s", tp_err_msg(&cerr));
        tp_err_clear(&cerr);
    }

    sockdir = xstrdup(arg_socket);
    /* A directory made for the socket must let the socket's group reach it, whatever the
     * daemon's umask of 077 says. */
    mode_t old_umask = umask(022);
    r = fs_mkdir_p(dirname(sockdir), 0755, err);
    umask(old_umask);
    if (r < 0)
        return r;
    socklockfd = lock_socket(arg_socket, err);
    if (socklockfd < 0)
        return socklockfd;
    listenfd = sock_listen_unix_exclusive(arg_socket, 128, &sockfile, err);
    if (listenfd < 0)
        return listenfd;
    /* The socket is root's and its group's: root, or --socket-group's members. */
    if (arg_socket_gid != (gid_t)-1 && chown(arg_socket, (uid_t)-1, arg_socket_gid) < 0)
        return tp_err_errno(err, -errno, "give socket '%s' to group %u", arg_socket,
                            (unsigned)arg_socket_gid);
    if (chmod(arg_socket, 0660) < 0)
        return tp_err_errno(err, -errno, "make socket '%s' mode 0660", arg_socket);
    {
        /* images: an OCI layout in DATA_DIR/images; the conf lives as long as the daemon */
        static struct oci_registry_conf rc;
        _cleanup_free_ char *images = fs_path_join(data_dir, "images");
        rc.insecure = arg_insecure_registries;
        rc.auth_config = arg_registry_config;
        r = oci_layout_init(images, err);
        if (r >= 0)
            r = oci_layout_clean_tmp(images, err);
        if (r < 0)
            return tp_err_wrap(err, "create the image store");
        api_images_configure(images, &rc);
    }
    r = api_server_start(m, listenfd, arg_client_timeout, &srv, err);
    if (r < 0)
        return tp_err_wrap(err, "start API server");
    listenfd = -EBADF; /* the server owns it now */
    if (arg_metrics_listen) {
        r = api_metrics_http_start(m, arg_metrics_listen, &metrics_http, err);
        if (r < 0)
            return r;
        log_info("torpord: metrics on http://%s/metrics", arg_metrics_listen);
    }

    log_info("torpord ready: socket %s, data dir %s", arg_socket, data_dir);
    if (arg_ready_fd >= 0) {
        if (write(arg_ready_fd, "READY\n", 6) < 0)
            log_warn_errno(-errno, "write to --ready-fd %d", arg_ready_fd);
        /* Closing stdout or stderr would hand its number to the next open(): log lines would
         * land in a database or a client's connection. */
        if (arg_ready_fd > STDERR_FILENO)
            close(arg_ready_fd);
    }

    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) < 0 && errno == EINTR)
        ;
    log_info("torpord: signal %u, shutting down (VMMs keep running)", si.ssi_signo);
    inst_manager_quiesce(m); /* waiters (torpor wait) answer now instead of holding us up */
    bool drained = drain_api(srv, sigfd);
    /* Only our own socket: another daemon may have bound the path since. */
    r = sock_unlink_own(arg_socket, &sockfile);
    if (r < 0)
        log_warn_errno(r, "remove socket '%s'", arg_socket);
    else if (r == 0)
        log_info("torpord: '%s' is no longer our socket, leaving it", arg_socket);
    if (!drained)
        _exit(0); /* the handlers still run on the manager: no joining, no freeing under them */
    api_server_stop(srv);
    return 0;
}

int
main(int argc, char **argv)
{
    struct tp_err err = { 0 };
    /* The page-fault handler of a restored VMM (the Firecracker driver starts it). */
    if (argc >= 2 && strcmp(argv[1], FC_UFFD_HANDLER_FLAG) == 0)
        return uffd_handler_main(argc, argv);
    if (net_subnet_parse(NET_SUBNET_DEFAULT, &arg_subnet, NULL) < 0)
        abort();
    if (parse_args(argc, argv) < 0)
        return 2;
    if (arg_cleanup_network) {
        if (net_host_cleanup(&err) < 0) {
            log_error("torpord: %s", tp_err_msg(&err));
            tp_err_clear(&err);
            return 1;
        }
        return 0;
    }
    /* Everything torpord and its VMMs create (records, guest memory, disks, console logs,
     * snapshots) is the daemon user's alone; the API socket is opened up explicitly. */
    umask(077);
    if (run(&err) < 0) {
        log_error("torpord: %s", tp_err_msg(&err));
        tp_err_clear(&err);
        return 1;
    }
    return 0;
}
