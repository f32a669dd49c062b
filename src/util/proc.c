/* Process helpers: detached spawn with an fd map, start-time identity, pidfd waits. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "sock.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

static _noreturn_ void
child_fail(int errpipe, int e)
{
    ssize_t r = write(errpipe, &e, sizeof(e));
    (void)r;
    _exit(127);
}

/* Runs in the forked child of a threaded parent: async-signal-safe calls only. */
static _noreturn_ void
child_exec(const struct proc_spawn_opts *o, int errpipe, int devnull, int *tmp)
{
    int std[3] = { o->stdin_fd, o->stdout_fd, o->stderr_fd };

    if (o->new_session && setsid() < 0)
        child_fail(errpipe, errno);
    /* Move every source fd above the highest target first so dup2s cannot clobber them. */
    for (int i = 0; i < 3; i++)
        std[i] = std[i] < 0 ? devnull : std[i];
    for (int i = 0; i < 3; i++) {
        int nfd = fcntl(std[i], F_DUPFD_CLOEXEC, 1000);
        if (nfd < 0)
            child_fail(errpipe, errno);
        std[i] = nfd;
    }
    for (size_t i = 0; i < o->n_fds; i++) {
        tmp[i] = fcntl(o->fds[i].from, F_DUPFD_CLOEXEC, 1000);
        if (tmp[i] < 0)
            child_fail(errpipe, errno);
    }
    for (int i = 0; i < 3; i++)
        if (dup2(std[i], i) < 0)
            child_fail(errpipe, errno);
    for (size_t i = 0; i < o->n_fds; i++)
        if (dup2(tmp[i], o->fds[i].to) < 0)
            child_fail(errpipe, errno);
    if (o->cwd && chdir(o->cwd) < 0)
        child_fail(errpipe, errno);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (o->envp)
        execvpe(o->argv[0], o->argv, o->envp);
    else
        execvp(o->argv[0], o->argv);
    child_fail(errpipe, errno);
}

int
proc_spawn(const struct proc_spawn_opts *o, pid_t *ret_pid, struct tp_err *err)
{
    int pipefd[2];
    _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    _cleanup_free_ int *tmp = calloc(o->n_fds + 1, sizeof(int));

    if (devnull < 0)
        return tp_err_errno(err, -errno, "open /dev/null");
    if (!tmp)
        return tp_err_set(err, -ENOMEM, "allocate fd map");
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return tp_err_errno(err, -errno, "create pipe");

    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return tp_err_errno(err, e, "fork");
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(o, pipefd[1], devnull, tmp);
    }
    close(pipefd[1]);

    int child_errno = 0;
    ssize_t n;
    do
        n = read(pipefd[0], &child_errno, sizeof(child_errno));
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == sizeof(child_errno)) {
        waitpid(pid, NULL, 0);
        return tp_err_errno(err, -child_errno, "execute '%s'", o->argv[0]);
    }
    *ret_pid = pid;
    return 0;
}

int
proc_start_time(pid_t pid, uint64_t *ret)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return -ESRCH;
    buf[n] = '\0';
    /* comm may contain spaces and parens: fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -EIO;
    p += 2;
    char state = *p;
    if (state == 'Z' || state == 'X')
        return -ESRCH;
    /* p is field 3 (state); start time is field 22. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -EIO;
        p++;
    }
    *ret = strtoull(p, NULL, 10);
    return 0;
}

bool
proc_is_alive(pid_t pid, uint64_t start_time)
{
    uint64_t st;
    if (pid <= 0 || proc_start_time(pid, &st) < 0)
        return false;
    return st == start_time;
}

int
proc_pidfd_open(pid_t pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return -errno;
    /* pidfds are CLOEXEC by the kernel's contract. */
    return fd;
}

int
proc_pidfd_signal(int pidfd, int sig)
{
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
        return -errno;
    return 0;
}

int
proc_pidfd_wait(int pidfd, pid_t pid, int timeout_ms)
{
    int r = sock_wait(pidfd, POLLIN, timeout_ms);
    if (r < 0)
        return r;
    if (r == 0)
        return -ETIMEDOUT;
    /* Reap if it is our child; ECHILD is fine for adopted VMMs. */
    while (waitpid(pid, NULL, WNOHANG) < 0 && errno == EINTR)
        ;
    return 0;
}
