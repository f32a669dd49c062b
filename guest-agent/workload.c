/* An image's workload (torpor run IMAGE): started from the spec the host wrote into the root
 * disk, as docker starts a container's process (its env, working dir and user, its output alone
 * on the first serial port); when it ends, its exit code goes to the disk and the guest goes
 * down, as a container stops with its process. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define SPEC_MAX     (1u << 20)
#define EXIT_PATH    "/.torpor-exit"
#define REAP_WAIT_MS 2000
/* The first serial port: the host logs it as the instance's console (docker logs). When the
 * host gave the kernel a port of its own (console=ttyS1), only the workload writes here. */
#define WORKLOAD_TTY "/dev/ttyS0"

extern char **environ;

pid_t workload_pid;
static int out_fd = -1; /* the workload's stdout/stderr; the agent keeps it to drain it */

struct spec {
    char **argv, **env;
    size_t argc, envc;
    char *cwd, *user;
};

static int
push(char ***v, size_t *n, char *s)
{
    char **nv = realloc(*v, (*n + 2) * sizeof(char *));
    if (!nv)
        return -ENOMEM;
    nv[(*n)++] = s;
    nv[*n] = NULL;
    *v = nv;
    return 0;
}

/* "key=hex" lines; the hex is decoded in place. */
static int
spec_parse(char *text, struct spec *s)
{
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(l, '=');
        if (!eq)
            return -EINVAL;
        *eq = '\0';
        char *hex = eq + 1;
        size_t hl = strlen(hex);
        if (hl % 2 || agent_hex_decode(hex, hl, (uint8_t *)hex, hl / 2) < 0)
            return -EINVAL;
        hex[hl / 2] = '\0';
        if (strlen(hex) != hl / 2)
            return -EINVAL; /* a NUL inside */
        int r = 0;
        if (strcmp(l, "arg") == 0)
            r = push(&s->argv, &s->argc, hex);
        else if (strcmp(l, "env") == 0)
            r = push(&s->env, &s->envc, hex);
        else if (strcmp(l, "cwd") == 0)
            s->cwd = hex;
        else if (strcmp(l, "user") == 0)
            s->user = hex;
        if (r < 0)
            return r;
    }
    return s->argc ? 0 : -EINVAL;
}

/* The workload's output port, raw: its bytes reach the host unmodified (no OPOST/ONLCR turning
 * \n into \r\n, no echo, no ICRNL, no ^C/^S handling), and opened with O_NOCTTY: the workload
 * has no controlling terminal, so no job control or SIGHUP, as under docker without -t.
 * /dev/console if the port is missing. */
static int
out_open(void)
{
    int fd = open(WORKLOAD_TTY, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cflag |= CLOCAL | CREAD; /* no modem lines to wait for */
        t.c_cflag &= ~(tcflag_t)CRTSCTS;
        if (tcsetattr(fd, TCSANOW, &t) < 0)
            agent_log("make '%s' raw: %s", WORKLOAD_TTY, strerror(errno));
    }
    /* Blocking from here: a workload writing faster than the port drains waits, as on a pipe. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

/* What docker run prints (runc's wording) when a container's process cannot start, on the
 * workload's stderr; its exit code: 127 not found, 126 found but not runnable. */
static int
exec_failed(const char *file, int e)
{
    if (e == ENOENT && !strchr(file, '/'))
        dprintf(STDERR_FILENO,
                "torpor: unable to start container process: exec: \"%s\": executable file not "
                "found in $PATH\n",
                file);
    else if (e == ENOENT)
        dprintf(STDERR_FILENO,
                "torpor: unable to start container process: exec: \"%s\": stat %s: no such file "
                "or directory\n",
                file, file);
    else
        dprintf(STDERR_FILENO, "torpor: unable to start container process: exec: \"%s\": %s\n",
                file,
                e == EACCES    ? "permission denied"
                : e == ENOEXEC ? "exec format error"
                               : strerror(e));
    return e == ENOENT ? 127 : 126;
}

static void
mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

pid_t
workload_start(const char *spec_path, bool defer)
{
    struct spec s = { 0 };
    struct user u = { 0 };
    char msg[256];
    char *text = agent_read_file(spec_path, SPEC_MAX);

    /* From here, the agent's words about the workload go where the workload's own would. */
    out_fd = out_open();
    if (!text || spec_parse(text, &s) < 0) {
        agent_log("workload spec '%s' is missing or malformed", spec_path);
        workload_finish(126);
    }
    int r = user_resolve(s.user ? s.user : "0", "/etc/passwd", "/etc/group", &u, msg, sizeof(msg));
    if (r < 0) {
        /* docker: "unable to find user X: no matching entries in passwd file", exit 126. */
        dprintf(out_fd >= 0 ? out_fd : STDERR_FILENO, "torpor: %s\n", msg);
        workload_finish(126);
    }
    /* docker makes a missing WorkingDir. */
    if (s.cwd)
        mkdir_p(s.cwd);
    if (defer) {
        user_release(&u);
        return 0;
    }
    char **envp = env_build(s.env, u.home, false);
    pid_t pid = fork();
    if (pid != 0) {
        if (pid < 0) {
            agent_log("fork the workload: %s", strerror(errno));
            workload_finish(126);
        }
        free(envp);
        user_release(&u);
        workload_pid = pid;
        return pid;
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    setsid();
    /* stdin is /dev/null, as docker run without -i gives a container. */
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0 && null != 0) {
        dup2(null, 0);
        close(null);
    }
    if (out_fd >= 0) {
        dup2(out_fd, 1);
        dup2(out_fd, 2);
    }
    if ((u.set_groups && setgroups(u.ngroups, u.groups) < 0) || setgid(u.gid) < 0 ||
        setuid(u.uid) < 0) {
        dprintf(STDERR_FILENO, "torpor: become user '%s': %s\n", s.user ? s.user : "0",
                strerror(errno));
        _exit(126);
    }
    if (chdir(s.cwd ? s.cwd : "/") < 0) {
        dprintf(STDERR_FILENO, "torpor: change directory to '%s': %s\n", s.cwd, strerror(errno));
        _exit(126);
    }
    if (envp)
        environ = envp;
    execvpe(s.argv[0], s.argv, envp ? envp : environ);
    _exit(exec_failed(s.argv[0], errno));
}

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
workload_finish(int code)
{
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "%d\n", code);
    int fd = open(EXIT_PATH, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    agent_log("workload exited with code %d", code);
    if (fd < 0 || write(fd, buf, (size_t)n) != n || fsync(fd) < 0)
        agent_log("record the exit code in '%s': %s", EXIT_PATH, strerror(errno));
    if (fd >= 0)
        close(fd);
    /* Everything the workload wrote reaches the host before the guest goes down. */
    if (out_fd >= 0)
        tcdrain(out_fd);
    /* As a container's other processes die with its first one. */
    kill(-1, SIGKILL);
    for (uint64_t end = now_ms() + REAP_WAIT_MS; now_ms() < end;) {
        pid_t p = waitpid(-1, NULL, WNOHANG);
        if (p < 0 && errno == ECHILD)
            break;
        if (p <= 0)
            usleep(5000);
    }
    sync();
    /* Read-only: the journal is checkpointed, so the host reads the code from the disk. */
    umount2("/tmp", MNT_DETACH);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
        agent_log("remount the root read-only: %s", strerror(errno));
    sync();
    /* reboot=t plus QEMU's -no-reboot: the VMM exits. */
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}

/* The built-in `stop-workload SIG GRACE_MS` (run by the host's stop): SIG to the workload, then
 * SIGKILL after GRACE_MS; returns once it is gone (the agent, reaping it, ends the guest). */
int
workload_builtin_stop(char *const *argv)
{
    if (!argv[1] || !argv[2]) {
        dprintf(STDERR_FILENO, "usage: stop-workload SIG GRACE_MS\n");
        return 2;
    }
    int sig = atoi(argv[1]), grace = atoi(argv[2]);
    if (workload_pid <= 0) {
        /* No workload (it never started): the guest may go down now. */
        sync();
        return 0;
    }
    kill(workload_pid, sig);
    for (int round = 0; round < 2; round++) {
        for (uint64_t end = now_ms() + (uint64_t)grace; now_ms() < end;) {
            if (kill(workload_pid, 0) < 0 && errno == ESRCH)
                return 0;
            usleep(10000);
        }
        kill(workload_pid, SIGKILL);
        grace = 5000;
    }
    return 1;
}
