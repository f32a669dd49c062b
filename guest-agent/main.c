/* torpor-agent entry point: PID 1 boot duties, or serving the protocol on a given fd or path. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

static enum port_kind
fd_kind(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode))
        return PORT_VIRTIO;
    return PORT_STREAM;
}

static int
usage(void)
{
    fprintf(stderr, "usage: torpor-agent                 (as PID 1: boot, then serve)\n"
                    "       torpor-agent --serve PATH    (char device or Unix socket)\n"
                    "       torpor-agent --serve-fd N    (an inherited stream fd)\n");
    return 2;
}

int
main(int argc, char **argv)
{
    struct serve_cfg cfg = { .fd = -1 };

    /* A host that vanished must show up as EPIPE, not kill the agent. */
    signal(SIGPIPE, SIG_IGN);
    /* Commands' pipes must never land on 0..2 (the spawn code dup2s onto those). */
    for (int i = 0; i < 3 && getpid() != 1; i++)
        if (fcntl(i, F_GETFD) < 0 && open("/dev/null", O_RDWR) != i)
            return 1;

    if (argc == 3 && strcmp(argv[1], "--serve-fd") == 0) {
        char *end;
        errno = 0;
        long fd = strtol(argv[2], &end, 10);
        if (errno || *end || fd < 0 || fd > 65535 || fcntl((int)fd, F_GETFD) < 0)
            return usage();
        /* Commands must not inherit the host channel. */
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
        cfg.fd = (int)fd;
        cfg.kind = fd_kind(cfg.fd);
    } else if (argc == 3 && strcmp(argv[1], "--serve") == 0) {
        struct stat st;
        if (stat(argv[2], &st) < 0) {
            agent_log("stat '%s': %s", argv[2], strerror(errno));
            return 1;
        }
        if (S_ISSOCK(st.st_mode)) {
            cfg.fd = agent_connect_unix(argv[2]);
            cfg.kind = PORT_STREAM;
            cfg.reconnect_path = argv[2];
        } else {
            cfg.fd = open(argv[2], O_RDWR | O_CLOEXEC | O_NOCTTY);
            if (cfg.fd < 0)
                cfg.fd = -errno;
            cfg.kind = fd_kind(cfg.fd);
        }
        if (cfg.fd < 0) {
            agent_log("open '%s': %s", argv[2], strerror(-cfg.fd));
            return 1;
        }
    } else if (getpid() == 1) {
        /* The kernel passes unknown parameters without '=' as arguments: ignore them. */
        boot_main();
    } else {
        return usage();
    }
    return serve_run(&cfg) < 0 ? 1 : 0;
}
