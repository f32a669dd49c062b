/* PID 1 boot duties: mounts, kernel modules, switch to the root disk, the image's init or the
 * user command, then serving the host. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "torpor/agent_proto.h"

#ifndef SYS_finit_module
#define SYS_finit_module 313 /* x86-64 */
#endif
#ifndef MS_MOVE
#define MS_MOVE 8192
#endif
#define RAMFS_MAGIC   0x858458f6
#define TMPFS_MAGIC   0x01021994
#define ROOT_WAIT_MS  10000
#define MODULES_DIR   "/lib/modules"
#define MODULES_ORDER MODULES_DIR "/torpor.order"
#define CMDLINE_MAX   4096

extern char **environ;

struct boot_opts {
    char *hostname;
    char *machine_id;
    char *root;
    char *init;
    char *cmd; /* hex of NUL-separated argv */
    char *agent_port;
    char *net;            /* IP/PREFIX,GATEWAY */
    char *dns;            /* IP[,IP...]: name servers for resolv.conf */
    char *workload;       /* path of an image's workload spec on the root disk */
    char *workload_defer; /* "1": prepare it (WorkingDir) but let the host exec it */
};

static void
mount_one(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
    if (mkdir(dst, 0755) < 0 && errno != EEXIST)
        agent_log("create '%s': %s", dst, strerror(errno));
    /* EBUSY: the kernel (or a previous stage) already mounted it. */
    if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
        agent_log("mount %s on '%s': %s", type, dst, strerror(errno));
}

/* Without /dev/console in the initramfs the kernel starts init with fds 0-2 closed. */
static void
ensure_stdio(void)
{
    int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    for (int i = 0; i < 3; i++)
        if (fcntl(i, F_GETFD) < 0)
            dup2(fd, i);
    if (fd > 2)
        close(fd);
    else
        fcntl(fd, F_SETFD, 0);
}

/* Our parameters carry no spaces or quotes (torpor.cmd is hex for that reason). */
static void
parse_cmdline(char *text, struct boot_opts *o)
{
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        { "torpor.hostname=", offsetof(struct boot_opts, hostname) },
        { "torpor.machine_id=", offsetof(struct boot_opts, machine_id) },
        { "torpor.root=", offsetof(struct boot_opts, root) },
        { "torpor.init=", offsetof(struct boot_opts, init) },
        { "torpor.cmd=", offsetof(struct boot_opts, cmd) },
        { "torpor.agent_port=", offsetof(struct boot_opts, agent_port) },
        { "torpor.net=", offsetof(struct boot_opts, net) },
        { "torpor.dns=", offsetof(struct boot_opts, dns) },
        { "torpor.workload=", offsetof(struct boot_opts, workload) },
        { "torpor.workload_defer=", offsetof(struct boot_opts, workload_defer) },
    };
    for (char *save = NULL, *w = strtok_r(text, " \t\n", &save); w;
         w = strtok_r(NULL, " \t\n", &save))
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strncmp(w, keys[i].key, strlen(keys[i].key)) == 0 && w[strlen(keys[i].key)])
                *(char **)((char *)o + keys[i].off) = w + strlen(keys[i].key);
}

/* "6c7300..." → { "ls", ... }; NULL when malformed or empty. */
static char **
decode_cmd(const char *hex)
{
    size_t hl = strlen(hex), n = hl / 2, argc = 0;
    if (hl == 0 || hl % 2)
        return NULL;
    char *bytes = malloc(n + 1);
    if (!bytes)
        return NULL;
    if (agent_hex_decode(hex, hl, (uint8_t *)bytes, n) < 0) {
        free(bytes);
        return NULL;
    }
    bytes[n] = '\0'; /* the trailing NUL is optional on the wire */
    for (size_t i = 0; i < n; i += strlen(bytes + i) + 1)
        argc++;
    char **argv = calloc(argc + 1, sizeof(char *));
    if (!argv) {
        free(bytes);
        return NULL;
    }
    argc = 0;
    for (size_t i = 0; i < n; i += strlen(bytes + i) + 1)
        argv[argc++] = bytes + i;
    return argv;
}

static void
load_modules(void)
{
    char *list = agent_read_file(MODULES_ORDER, 64 * 1024);
    if (!list)
        return;
    for (char *save = NULL, *name = strtok_r(list, "\n", &save); name;
         name = strtok_r(NULL, "\n", &save)) {
        name += strspn(name, " \t");
        name[strcspn(name, " \t\r")] = '\0';
        if (!*name || *name == '#')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", MODULES_DIR, name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            agent_log("open module '%s': %s", path, strerror(errno));
            continue;
        }
        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
            agent_log("load module '%s': %s", name, strerror(errno));
        close(fd);
    }
    free(list);
}

/* Bring the loopback device up. Going up, a loopback device gets 127.0.0.1/8 from the kernel,
 * and ::1 when IPv6 is built in; the IPv4 address is checked and set should it be missing. */
static void
loopback_up(void)
{
    struct ifreq ifr = { .ifr_name = "lo" };
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        agent_log("loopback: socket: %s", strerror(errno));
        return;
    }
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
        agent_log("loopback: get flags of 'lo': %s", strerror(errno));
        goto out;
    }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) {
        agent_log("loopback: bring 'lo' up: %s", strerror(errno));
        goto out;
    }
    if (ioctl(fd, SIOCGIFADDR, &ifr) == 0)
        goto out;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    *sin = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (ioctl(fd, SIOCSIFADDR, &ifr) < 0) {
        agent_log("loopback: set 127.0.0.1 on 'lo': %s", strerror(errno));
        goto out;
    }
    *sin = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(0xff000000u) };
    if (ioctl(fd, SIOCSIFNETMASK, &ifr) < 0)
        agent_log("loopback: set the netmask of 'lo': %s", strerror(errno));
out:
    close(fd);
}

static bool
is_block_device(void *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISBLK(st.st_mode);
}

/* Remove the initramfs contents on its own device only, as switch_root does: it is RAM. */
static void
delete_contents(int dfd, dev_t rootdev)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;

    if (!d) {
        close(dfd);
        return;
    }
    while ((de = readdir(d))) {
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != rootdev)
            continue;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            if (sub >= 0)
                delete_contents(sub, rootdev);
            unlinkat(dfd, de->d_name, AT_REMOVEDIR);
        } else {
            unlinkat(dfd, de->d_name, 0);
        }
    }
    closedir(d);
}

static int
switch_root(const char *dev)
{
    static const char *const moves[] = { "/dev", "/proc", "/sys", "/run" };
    char path[64];
    struct stat st;
    struct statfs sfs;

    if (!uevent_wait(is_block_device, (void *)dev, ROOT_WAIT_MS)) {
        agent_log("root device '%s' did not appear within %d ms", dev, ROOT_WAIT_MS);
        return -ENODEV;
    }
    if (mkdir("/newroot", 0755) < 0 && errno != EEXIST)
        return -errno;
    if (mount(dev, "/newroot", "ext4", 0, NULL) < 0) {
        agent_log("mount '%s' as ext4: %s", dev, strerror(errno));
        return -errno;
    }
    for (size_t i = 0; i < sizeof(moves) / sizeof(moves[0]); i++) {
        snprintf(path, sizeof(path), "/newroot%s", moves[i]);
        mkdir(path, 0755);
        if (mount(moves[i], path, NULL, MS_MOVE, NULL) < 0) {
            agent_log("move '%s' to the root disk: %s", moves[i], strerror(errno));
            umount2(moves[i], MNT_DETACH);
        }
    }
    if (chdir("/newroot") < 0)
        return -errno;
    if (stat("/", &st) == 0 && statfs("/", &sfs) == 0 &&
        ((unsigned long)sfs.f_type == RAMFS_MAGIC || (unsigned long)sfs.f_type == TMPFS_MAGIC)) {
        int dfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
            delete_contents(dfd, st.st_dev);
    }
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) {
        agent_log("move the root disk to '/': %s", strerror(errno));
        return -errno;
    }
    if (chroot(".") < 0 || chdir("/") < 0) {
        agent_log("chroot into the root disk: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

/* PID 1 must never exit (kernel panic): when nothing else is left, just reap orphans. */
static __attribute__((noreturn)) void
reap_forever(void)
{
    sigset_t chld;
    int sig;

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    for (;;)
        if (wait(NULL) < 0 && errno == ECHILD)
            sigwait(&chld, &sig);
}

static void
reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
}

/* The user command runs on the console in its own session, like a getty's shell would. */
static pid_t
start_cmd(char **argv)
{
    static char *const term[] = { (char *)"TERM=linux", NULL };
    char home[USER_HOME_MAX];
    user_home(getuid(), "/etc/passwd", home, sizeof(home));
    char **envp = env_build(term, home, false);
    pid_t pid = fork();
    if (pid != 0) {
        if (pid < 0)
            agent_log("fork the command: %s", strerror(errno));
        free(envp);
        return pid > 0 ? pid : 0;
    }
    reset_signals();
    setsid();
    int fd = open("/dev/console", O_RDWR);
    if (fd >= 0) {
        ioctl(fd, TIOCSCTTY, 0);
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    if (envp)
        environ = envp;
    execvp(argv[0], argv);
    agent_log("execute '%s': %s", argv[0], strerror(errno));
    _exit(127);
}

void
boot_main(void)
{
    struct boot_opts o = { 0 };
    pid_t cmd_pid = 0;

    mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    ensure_stdio();
    loopback_up();
    mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
    mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");

    char *cmdline = agent_read_file("/proc/cmdline", CMDLINE_MAX);
    if (cmdline)
        parse_cmdline(cmdline, &o);
    load_modules();
    if (o.root && switch_root(o.root) < 0)
        agent_log("staying on the initramfs");
    /* After the switch, so the root disk's /tmp gets it and the initramfs has none to leak. */
    mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    /* On the root disk, so the image's init reads the same name from /etc/hostname. */
    if (o.hostname && ident_name_valid(o.hostname))
        ident_apply(o.hostname);
    else if (o.hostname)
        agent_log("ignoring torpor.hostname '%s': not a valid hostname", o.hostname);
    if (o.machine_id && ident_machine_id_valid(o.machine_id))
        ident_machine_id_apply(o.machine_id);
    else if (o.machine_id)
        agent_log("ignoring torpor.machine_id '%s': not 32 hex digits", o.machine_id);
    /* Also on the root disk (its /etc/resolv.conf), and before the image's init or the
     * command runs, so both find the network up. */
    if (o.net) {
        struct net_cfg nc;
        int r = net_cfg_parse(o.net, &nc);
        nc.dns = o.dns;
        if (r >= 0)
            r = net_apply(&nc);
        if (r < 0)
            agent_log("network '%s': %s", o.net, strerror(-r));
    }

    if (o.init) {
        pid_t pid = fork();
        if (pid < 0)
            agent_log("fork the agent: %s", strerror(errno));
        if (pid > 0) {
            /* PID 1 becomes the image's init; the agent lives on in the child. */
            char *argv[] = { o.init, NULL };
            execv(o.init, argv);
            agent_log("execute init '%s': %s", o.init, strerror(errno));
            reap_forever();
        }
    } else if (o.workload) {
        cmd_pid = workload_start(o.workload, o.workload_defer != NULL);
    } else if (o.cmd) {
        char **argv = decode_cmd(o.cmd);
        if (argv)
            cmd_pid = start_cmd(argv);
        else
            agent_log("torpor.cmd is not hex-encoded NUL-separated arguments");
    }

    struct serve_cfg cfg = {
        .fd = -1,
        .kind = PORT_VIRTIO,
        .port_name = o.agent_port ? o.agent_port : AGENT_PORT_NAME,
        .cmd_pid = cmd_pid,
        .workload = o.workload && cmd_pid > 0,
    };
    int r = serve_run(&cfg);
    agent_log("serving stopped (%s)", r < 0 ? strerror(-r) : "host gone");
    if (getpid() != 1)
        _exit(1);
    reap_forever();
}
