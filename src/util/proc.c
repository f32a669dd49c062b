/* Process helpers: detached spawn with an fd map, start-time identity, pidfd waits. */
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

/* Held before exec until the parent says go (one byte) or gives up (EOF). The parent's death
 * must end the hold even though a sibling forked by another thread may hold a copy of the gate's
 * write end until its own exec: the death signal covers that. */
static void
child_wait_gate(int gate, pid_t parent, int errpipe)
{
    char go = 0;
    ssize_t n;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(errpipe, errno);
    if (getppid() != parent)
        _exit(127); /* the parent died before the death signal was armed */
    do
        n = read(gate, &go, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        child_fail(errpipe, ECANCELED);
    /* From here the process is recorded: it must outlive the daemon. */
    if (prctl(PR_SET_PDEATHSIG, 0) < 0)
        child_fail(errpipe, errno);
    close(gate);
}

static bool
is_target(const struct proc_spawn_opts *o, int fd)
{
    for (size_t i = 0; i < o->n_fds; i++)
        if (o->fds[i].to == fd)
            return true;
    return false;
}

/* Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: mark what /proc/self/fd lists, read with raw
 * getdents64 (opendir would allocate). */
static int
cloexec_listed_from(int from)
{
    char buf[4096] __attribute__((aligned(8)));
    int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    long n;

    if (dfd < 0)
        return -errno;
    while ((n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0)
        for (long off = 0; off < n;) {
            const struct dirent64 *d = (const struct dirent64 *)(buf + off);
            int fd = 0;
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9')
                continue;
            for (const char *c = d->d_name; *c >= '0' && *c <= '9'; c++)
                fd = fd * 10 + (*c - '0');
            if (fd >= from && fd != dfd)
                (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    int e = n < 0 ? -errno : 0;
    close(dfd);
    return e;
}

/* Only stdio and the mapped fds may reach the program: whatever else is open here (an fd some
 * thread of the parent opened without O_CLOEXEC) becomes close-on-exec. Not closed outright:
 * the errno pipe must live until the exec it reports on. */
static int
child_seal_fds(const struct proc_spawn_opts *o)
{
    int top = 2;

    for (size_t i = 0; i < o->n_fds; i++)
        top = MAX(top, o->fds[i].to);
    for (int fd = 3; fd < top; fd++)
        if (!is_target(o, fd))
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC); /* EBADF: not open, nothing to do */
    if (close_range((unsigned)top + 1, UINT_MAX, CLOSE_RANGE_CLOEXEC) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    return cloexec_listed_from(top + 1);
}

/* Give up capabilities before exec: a root program whose bounding and inheritable sets are
 * empty gets no capability from execve, and capset() empties what this process holds. The
 * bounding set needs CAP_SETPCAP to shrink; without it there is nothing left to give up beyond
 * the sets capset() clears, and no_new_privs stops set-uid and file capabilities. */
static int
child_drop_caps(void)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

    if (syscall(SYS_capget, &h, d) < 0)
        return -errno;
    if (d[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP))
        /* PR_CAPBSET_READ fails (EINVAL) past the kernel's last capability. */
        for (unsigned long cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
                return -errno;
    /* EINVAL: a kernel without ambient capabilities has none to clear. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capset, &h, d) < 0)
        return -errno;
    return 0;
}

/* Runs in the forked child of a threaded parent: async-signal-safe calls only. */
static _noreturn_ void
child_exec(const struct proc_spawn_opts *o, int errpipe, int devnull, int *tmp, int gate,
           pid_t parent)
{
    int std[3] = { o->stdin_fd, o->stdout_fd, o->stderr_fd };

    if (gate >= 0)
        child_wait_gate(gate, parent, errpipe);

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
    int r = child_seal_fds(o);
    if (r >= 0 && o->drop_caps)
        r = child_drop_caps();
    if (r >= 0 && o->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        r = -errno;
    if (r < 0)
        child_fail(errpipe, -r);
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
    int pipefd[2], gate[2] = { -1, -1 };
    _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    _cleanup_free_ int *tmp = calloc(o->n_fds + 1, sizeof(int));
    pid_t parent = getpid();

    if (devnull < 0)
        return tp_err_errno(err, -errno, "open /dev/null");
    if (!tmp)
        return tp_err_set(err, -ENOMEM, "allocate fd map");
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return tp_err_errno(err, -errno, "create pipe");
    if (o->before_exec && pipe2(gate, O_CLOEXEC) < 0) {
        int e = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return tp_err_errno(err, e, "create pipe");
    }

    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        safe_close(gate[0]);
        safe_close(gate[1]);
        return tp_err_errno(err, e, "fork");
    }
    if (pid == 0) {
        close(pipefd[0]);
        if (gate[1] >= 0)
            close(gate[1]);
        child_exec(o, pipefd[1], devnull, tmp, gate[0], parent);
    }
    close(pipefd[1]);
    safe_close(gate[0]);
    if (o->before_exec) {
        int r = o->before_exec(o->before_exec_ctx, pid, err);
        char go = 1;
        if (r >= 0 && write(gate[1], &go, 1) != 1)
            r = tp_err_errno(err, -errno, "release child %d", (int)pid);
        close(gate[1]);
        if (r < 0) {
            /* It has run nothing of its own: kill it rather than wait for its EOF, which a
             * sibling held by another thread (holding a copy of our gate) could delay forever. */
            close(pipefd[0]);
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            return r;
        }
    }

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
proc_run_capture(char *const *argv, char *buf, size_t cap, int timeout_ms, struct tp_err *err)
{
    int fds[2];
    size_t len = 0;
    pid_t pid;

    if (cap == 0)
        return tp_err_set(err, -EINVAL, "no room for the output of '%s'", argv[0]);
    if (pipe2(fds, O_CLOEXEC) < 0)
        return tp_err_errno(err, -errno, "create pipe");
    const struct proc_spawn_opts o = {
        .argv = argv,
        .stdin_fd = -1,
        .stdout_fd = fds[1],
        .stderr_fd = -1,
    };
    int r = proc_spawn(&o, &pid, err);
    close(fds[1]);
    if (r < 0) {
        close(fds[0]);
        return r;
    }
    for (;;) {
        char sink[512];
        char *to = len < cap - 1 ? buf + len : sink;
        size_t room = len < cap - 1 ? cap - 1 - len : sizeof(sink);
        int w = sock_wait(fds[0], POLLIN, timeout_ms);
        if (w == 0) {
            r = tp_err_set(err, -ETIMEDOUT, "'%s' gave no answer within %d ms", argv[0],
                           timeout_ms);
            kill(pid, SIGKILL);
            break;
        }
        ssize_t n = w < 0 ? -1 : read(fds[0], to, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (to != sink)
            len += (size_t)n;
    }
    buf[len] = '\0';
    close(fds[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return r;
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
