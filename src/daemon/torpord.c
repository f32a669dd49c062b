/* torpord: the daemon. Owns the data dir (one daemon per dir), serves the REST API on a Unix
 * socket, and leaves VMMs running when it exits: they live in their own sessions. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "hypervisor/firecracker/fc_driver.h"
#include "instance/console.h"
#include "instance/manager.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/sock.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

static const char *arg_data_dir = "/var/lib/torpor";
static const char *arg_socket = "/run/torpor/torpor.sock";
static const char *arg_cache_dir;
static const char *arg_agent;
static const char *arg_accel;
static int arg_ready_fd = -1;
static unsigned arg_client_timeout;  /* 0 = the API's default */
static uint64_t arg_console_log_max; /* 0 = the manager's default */

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

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: torpord [--data-dir DIR] [--socket PATH] [--cache-dir DIR] [--agent PATH]\n"
            "               [--accel kvm|tcg] [--log-level error|warn|info|debug] [--ready-fd N]\n"
            "               [--client-timeout SECONDS] [--console-log-max BYTES]\n"
            "               [--firecracker PATH]\n"
            "\n"
            "  --data-dir DIR   instance records and files (default /var/lib/torpor)\n"
            "  --socket PATH    API socket (default /run/torpor/torpor.sock)\n"
            "  --cache-dir DIR  kernels, initramfs and root disk images (default\n"
            "                   $TORPOR_CACHE_DIR or /var/cache/torpor)\n"
            "  --agent PATH     static guest agent binary (default: found beside torpord)\n"
            "  --accel ACCEL    force an accelerator (default: kvm where usable, else tcg)\n"
            "  --ready-fd N     write \"READY\\n\" to fd N once the API accepts requests\n"
            "  --client-timeout SECONDS  drop API clients silent this long while their\n"
            "                   request or the reading of a reply is awaited (default 10;\n"
            "                   running operations and streams such as exec and logs -f are\n"
            "                   never cut)\n");
}

static int
parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        { "data-dir", required_argument, NULL, 'd' },
        { "socket", required_argument, NULL, 's' },
        { "cache-dir", required_argument, NULL, 'c' },
        { "agent", required_argument, NULL, 'a' },
        { "accel", required_argument, NULL, 'A' },
        { "log-level", required_argument, NULL, 'l' },
        { "ready-fd", required_argument, NULL, 'r' },
        { "client-timeout", required_argument, NULL, 't' },
        { "console-log-max", required_argument, NULL, 'C' },
        { "firecracker", required_argument, NULL, 'F' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    int c;
    enum log_level lvl;
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
        case 'h':
            usage(stdout);
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

/* flock path (created if needed) for the daemon's lifetime: the fd, -EBUSY while another
 * process holds it. */
static int
lock_file(const char *p, struct tp_err *err)
{
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", p);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int r = -errno;
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
    };
    r = inst_manager_open(&mo, &m, err);
    if (r < 0)
        return tp_err_wrap(err, "open data dir '%s'", data_dir);

    sockdir = xstrdup(arg_socket);
    r = fs_mkdir_p(dirname(sockdir), 0755, err);
    if (r < 0)
        return r;
    socklockfd = lock_socket(arg_socket, err);
    if (socklockfd < 0)
        return socklockfd;
    listenfd = sock_listen_unix_exclusive(arg_socket, 128, &sockfile, err);
    if (listenfd < 0)
        return listenfd;
    chmod(arg_socket, 0660);
    r = api_server_start(m, listenfd, arg_client_timeout, &srv, err);
    if (r < 0)
        return tp_err_wrap(err, "start API server");
    listenfd = -EBADF; /* the server owns it now */

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
    if (parse_args(argc, argv) < 0)
        return 2;
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
