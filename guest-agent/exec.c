/* Commands run for the host: fork, own session, stdio on pipes, spawn errors via a CLOEXEC pipe. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

extern char **environ;

#define EXIT_CANNOT_RUN 126 /* docker's code for "the command could not be started" */

enum spawn_step {
    STEP_SETUP,
    STEP_EXEC,
};

struct spawn_fail {
    int step;
    int err;
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

/* In the forked child: undo the agent's signal setup, move the pipes to 0/1/2, exec. */
static __attribute__((noreturn)) void
child_run(char *const *argv, char **env, const char *cwd, int in, int out, int err, int fail)
{
    sigset_t none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    if (setsid() < 0)
        child_fail(fail, STEP_SETUP, errno);
    /* The pipe fds are all >= 3 (0..2 are always open in the agent), so dup2 cannot clobber. */
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        child_fail(fail, STEP_SETUP, errno);
    if (chdir(cwd) < 0) {
        /* Not a spawn error: EXEC_ERROR's ENOENT reads as "command not found" (127) on the
         * host. Docker exec says why on stderr and exits 126; so do we. */
        dprintf(STDERR_FILENO, "torpor: cannot run '%s': change directory to '%s': %s\n", argv[0],
                cwd, strerror(errno));
        _exit(EXIT_CANNOT_RUN);
    }
    /* execvpe looks argv[0] up in the caller's PATH: make that the command's own env. */
    environ = env;
    execvpe(argv[0], argv, env);
    child_fail(fail, STEP_EXEC, errno);
}

int
exec_spawn(struct exec *x, char *const *argv, char *const *env, const char *cwd, bool stdin_open,
           char *msg, size_t msglen)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, fail[2] = { -1, -1 };
    char **envp = env_build(env, getuid(), "/etc/passwd");
    int r = 0;

    if (!*cwd)
        cwd = "/";
    if (!envp) {
        snprintf(msg, msglen, "allocate environment");
        return -ENOMEM;
    }
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
        pipe2(fail, O_CLOEXEC) < 0) {
        r = -errno;
        snprintf(msg, msglen, "create pipes: %s", strerror(errno));
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        r = -errno;
        snprintf(msg, msglen, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        child_run(argv, envp, cwd, in[0], out[1], err[1], fail[1]);

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
            snprintf(msg, msglen, "execute '%s': %s", argv[0], strerror(f.err));
        else
            snprintf(msg, msglen, "set up child: %s", strerror(f.err));
        goto out;
    }

    x->pid = pid;
    x->reaped = false;
    /* Without AGENT_EXEC_F_STDIN the command sees EOF at once (cat must not hang). */
    if (stdin_open) {
        x->in_fd = in[1];
        in[1] = -1;
        fcntl(x->in_fd, F_SETFL, O_NONBLOCK);
    } else {
        x->in_fd = -1;
    }
    x->out_fd = out[0];
    x->err_fd = err[0];
    out[0] = err[0] = -1;
    fcntl(x->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(x->err_fd, F_SETFL, O_NONBLOCK);
out:
    close_pair(in);
    close_pair(out);
    close_pair(err);
    close_pair(fail);
    free(envp);
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
