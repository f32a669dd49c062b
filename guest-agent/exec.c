/* Commands run for the host: fork, own session, stdio on pipes or a new pseudo-terminal, the
 * requested user, spawn errors via a CLOEXEC pipe. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

extern char **environ;

#define EXIT_CANNOT_RUN 126 /* docker's code for "the command could not be started" */

enum spawn_step {
    STEP_SETUP,
    STEP_TTY,
    STEP_USER,
    STEP_EXEC,
};

struct spawn_fail {
    int step;
    int err;
};

/* The child's side of one spawn, prepared by the parent. */
struct spawn_plan {
    const struct exec_req *req;
    char **env;
    const char *cwd;
    const struct user *user; /* NULL: keep the agent's ids */
    builtin_fn builtin;
    int in, out, err;     /* pipe ends for 0/1/2, or -1 with a tty */
    const char *tty_path; /* the PTY's slave */
    int fail;             /* CLOEXEC pipe: a struct spawn_fail when the child cannot run */
};

static void
close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    p[0] = p[1] = -1;
}

static __attribute__((noreturn)) void
child_fail(int fd, int step, int err)
{
    struct spawn_fail f = { .step = step, .err = err };
    ssize_t r = write(fd, &f, sizeof(f));
    (void)r;
    _exit(127);
}

/* A session leader opening a terminal without O_NOCTTY acquires it; TIOCSCTTY makes sure. */
static int
child_tty(const char *path)
{
    int fd = open(path, O_RDWR);
    if (fd < 0 || ioctl(fd, TIOCSCTTY, 0) < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (dup2(fd, i) < 0)
            return -1;
    if (fd > 2)
        close(fd);
    return 0;
}

/* A built-in never execs, so the agent's CLOEXEC fds (the host port, other commands' pipes)
 * must be closed by hand: a command holding them keeps its peers from seeing EOF. */
static void
close_from(int lowfd)
{
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0) == 0)
        return;
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        for (int fd = lowfd; fd < 65536; fd++)
            close(fd);
        return;
    }
    int self = dirfd(d);
    for (struct dirent *de; (de = readdir(d));) {
        int fd = atoi(de->d_name);
        if (fd >= lowfd && fd != self)
            close(fd);
    }
    closedir(d);
}

/* In the forked child: undo the agent's signal setup, stdio on the pipes or the terminal,
 * become the user, enter cwd, then exec (or run the built-in). */
static __attribute__((noreturn)) void
child_run(const struct spawn_plan *p)
{
    char *const *argv = p->req->argv;
    sigset_t none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    if (setsid() < 0)
        child_fail(p->fail, STEP_SETUP, errno);
    if (p->tty_path) {
        if (child_tty(p->tty_path) < 0)
            child_fail(p->fail, STEP_TTY, errno);
    } else if (dup2(p->in, 0) < 0 || dup2(p->out, 1) < 0 || dup2(p->err, 2) < 0) {
        /* The pipe fds are all >= 3 (0..2 are always open in the agent): no clobbering. */
        child_fail(p->fail, STEP_SETUP, errno);
    }
    /* Groups first: after setuid the process may no longer change them. */
    if (p->user && ((p->user->set_groups && setgroups(p->user->ngroups, p->user->groups) < 0) ||
                    setgid(p->user->gid) < 0 || setuid(p->user->uid) < 0))
        child_fail(p->fail, STEP_USER, errno);
    if (chdir(p->cwd) < 0) {
        /* Not a spawn error: EXEC_ERROR's ENOENT reads as "command not found" (127) on the
         * host. Docker exec says why on stderr and exits 126; so do we. */
        dprintf(STDERR_FILENO, "torpor: cannot run '%s': change directory to '%s': %s\n", argv[0],
                p->cwd, strerror(errno));
        _exit(EXIT_CANNOT_RUN);
    }
    /* execvpe looks argv[0] up in the caller's PATH: make that the command's own env. */
    environ = p->env;
    if (p->builtin) {
        close_from(3); /* the fail pipe too: the command is running now */
        _exit(p->builtin(argv));
    }
    execvpe(argv[0], argv, p->env);
    child_fail(p->fail, STEP_EXEC, errno);
}

/* A new PTY master (non-blocking, CLOEXEC) sized rows x cols, and its slave's path. */
static int
pty_open(uint16_t rows, uint16_t cols, char *path, size_t size)
{
    int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    unsigned n, unlock = 0;

    /* An initramfs without the /dev/ptmx node still has devpts' own. */
    if (fd < 0 && errno == ENOENT)
        fd = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (ioctl(fd, TIOCSPTLCK, &unlock) < 0 || ioctl(fd, TIOCGPTN, &n) < 0)
        goto fail;
    snprintf(path, size, "/dev/pts/%u", n);
    /* Set before the child runs, so it never sees the default size first. */
    if (rows && cols) {
        struct winsize ws = { .ws_row = rows, .ws_col = cols };
        if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
            goto fail;
    }
    return fd;
fail:;
    int e = -errno;
    close(fd);
    return e;
}

static const char *const step_what[] = {
    [STEP_SETUP] = "set up child",
    [STEP_TTY] = "attach the terminal",
    [STEP_USER] = "switch user",
};

int
exec_spawn(struct exec *x, const struct exec_req *req, char *msg, size_t msglen)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, fail[2] = { -1, -1 };
    int master = -1, r = 0;
    char tty_path[64];
    struct user u = { 0 };
    struct spawn_plan plan = { .req = req, .cwd = *req->cwd ? req->cwd : "/" };
    char **envp = NULL;

    if (req->builtin) {
        plan.builtin = builtin_find(req->argv[0]);
        if (!plan.builtin) {
            snprintf(msg, msglen, "no built-in %s", req->argv[0]);
            return -ENOENT;
        }
    }
    if (req->user) {
        r = user_resolve(req->user, "/etc/passwd", "/etc/group", &u, msg, msglen);
        if (r < 0)
            return r;
        plan.user = &u;
    } else {
        user_home(getuid(), "/etc/passwd", u.home, sizeof(u.home));
    }
    envp = env_build(req->env, u.home, req->tty);
    if (!envp) {
        snprintf(msg, msglen, "allocate environment");
        r = -ENOMEM;
        goto out;
    }
    plan.env = envp;
    if (req->tty) {
        master = pty_open(req->rows, req->cols, tty_path, sizeof(tty_path));
        if (master < 0) {
            r = master;
            snprintf(msg, msglen, "open a pseudo-terminal: %s", strerror(-r));
            goto out;
        }
        plan.tty_path = tty_path;
        plan.in = plan.out = plan.err = -1;
    } else if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        r = -errno;
        snprintf(msg, msglen, "create pipes: %s", strerror(errno));
        goto out;
    } else {
        plan.in = in[0];
        plan.out = out[1];
        plan.err = err[1];
    }
    if (pipe2(fail, O_CLOEXEC) < 0) {
        r = -errno;
        snprintf(msg, msglen, "create pipes: %s", strerror(errno));
        goto out;
    }
    plan.fail = fail[1];
    pid_t pid = fork();
    if (pid < 0) {
        r = -errno;
        snprintf(msg, msglen, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        child_run(&plan);

    close(fail[1]);
    fail[1] = -1;
    struct spawn_fail f;
    ssize_t n;
    do
        n = read(fail[0], &f, sizeof(f));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(f)) {
        /* The child exits at once: reap it here so the SIGCHLD reaper never sees it. */
        waitpid(pid, NULL, 0);
        r = -f.err;
        if (f.step == STEP_EXEC)
            snprintf(msg, msglen, "execute '%s': %s", req->argv[0], strerror(f.err));
        else
            snprintf(msg, msglen, "%s: %s", step_what[f.step], strerror(f.err));
        goto out;
    }

    x->pid = pid;
    x->reaped = false;
    x->tty = req->tty;
    x->in_fd = x->err_fd = -1;
    if (req->tty) {
        /* Without AGENT_EXEC_F_STDIN nothing is typed (docker exec -t without -i). */
        if (req->stdin_open)
            x->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
        x->out_fd = master;
        master = -1;
    } else {
        /* Without AGENT_EXEC_F_STDIN the command sees EOF at once (cat must not hang). */
        if (req->stdin_open) {
            x->in_fd = in[1];
            in[1] = -1;
            fcntl(x->in_fd, F_SETFL, O_NONBLOCK);
        }
        x->out_fd = out[0];
        x->err_fd = err[0];
        out[0] = err[0] = -1;
        fcntl(x->out_fd, F_SETFL, O_NONBLOCK);
        fcntl(x->err_fd, F_SETFL, O_NONBLOCK);
    }
out:
    if (master >= 0)
        close(master);
    close_pair(in);
    close_pair(out);
    close_pair(err);
    close_pair(fail);
    free(envp);
    user_release(&u);
    return r;
}
void
exec_release(struct exec *x)
{
    if (x->in_fd >= 0)
        close(x->in_fd);
    if (x->out_fd >= 0)
        close(x->out_fd);
    if (x->err_fd >= 0)
        close(x->err_fd);
    x->in_fd = x->out_fd = x->err_fd = -1;
    free(x->inbuf);
    x->inbuf = NULL;
    x->inlen = 0;
}

int
exec_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}
