/* The userfaultfd page-fault handler process, from the driver's side: start it before a load,
 * find it by its record after a daemon restart, stop it when a load fails. */
#include "hypervisor/firecracker/fc_uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/sock.h"
#include "util/xalloc.h"

#define FC_UFFD_READY_MS 10000 /* the handler maps the file and records itself */
#define FC_UFFD_KILL_MS  2000

/* The handler recorded in dir: 1 found (pid, start time), 0 none. */
static int
read_record(const char *dir, pid_t *ret_pid, uint64_t *ret_start)
{
    _cleanup_free_ char *path = fs_path_join(dir, FC_UFFD_PIDFILE);
    _cleanup_free_ char *data = NULL;
    unsigned long long st;
    size_t len;
    int pid;

    if (fs_read_file(path, 64, &data, &len, NULL) < 0 || sscanf(data, "%d %llu", &pid, &st) != 2 ||
        pid <= 0)
        return 0;
    *ret_pid = pid;
    *ret_start = st;
    return 1;
}

void
fc_uffd_forget(const char *dir)
{
    _cleanup_free_ char *path = fs_path_join(dir, FC_UFFD_PIDFILE);
    (void)unlink(path);
}

void
fc_uffd_stop(const char *dir)
{
    uint64_t st;
    pid_t pid;

    if (read_record(dir, &pid, &st) > 0) {
        _cleanup_close_ int pidfd = proc_pidfd_open(pid);
        if (pidfd >= 0 && proc_is_alive(pid, st) && proc_pidfd_signal(pidfd, SIGKILL) >= 0)
            (void)proc_pidfd_wait(pidfd, pid, FC_UFFD_KILL_MS);
    }
    fc_uffd_forget(dir);
}

bool
fc_uffd_recorded(const char *dir)
{
    uint64_t st;
    pid_t pid;
    return read_record(dir, &pid, &st) > 0;
}

void
fc_uffd_wait(const char *dir, int timeout_ms)
{
    uint64_t st;
    pid_t pid;

    if (read_record(dir, &pid, &st) == 0)
        return;
    _cleanup_close_ int pidfd = proc_pidfd_open(pid);
    if (pidfd >= 0 && proc_is_alive(pid, st))
        (void)proc_pidfd_wait(pidfd, pid, timeout_ms);
}

int
fc_uffd_check(const char *dir)
{
    uint64_t st;
    pid_t pid;

    if (read_record(dir, &pid, &st) == 0)
        return 0;
    return proc_is_alive(pid, st) ? 0 : -ESRCH;
}

int
fc_uffd_start(const char *dir, const char *memory, const char *log_path, pid_t *ret_starter,
              char **ret_sock, struct tp_err *err)
{
    _cleanup_free_ char *sock = fs_path_join(dir, FC_UFFD_SOCK);
    _cleanup_close_ int lfd = -EBADF, log_fd = -EBADF;
    pid_t pid;
    int r;

    fc_uffd_stop(dir);
    /* Listening before the handler even runs: the VMM can connect whenever its load starts. */
    lfd = sock_listen_unix(sock, 1, err);
    if (lfd < 0)
        return tp_err_wrap(err, "listen for the page-fault handshake");
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", log_path);
    char *const argv[] = {
        (char *)"/proc/self/exe", (char *)FC_UFFD_HANDLER_FLAG, (char *)memory, (char *)dir, NULL,
    };
    const struct proc_fd_map fds[] = { { lfd, 3 } };
    const struct proc_spawn_opts so = {
        .argv = argv,
        .cwd = dir,
        .stdin_fd = -1,
        .stdout_fd = -1,
        .stderr_fd = log_fd,
        .fds = fds,
        .n_fds = 1,
        .new_session = true, /* outlives torpord and its signals */
        .no_new_privs = true,
        .drop_caps = true,
    };
    r = proc_spawn(&so, &pid, err);
    if (r < 0)
        return tp_err_wrap(err, "start the page-fault handler");
    *ret_starter = pid;
    *ret_sock = TAKE_PTR(sock);
    return 0;
}

void
fc_uffd_abort(const char *dir, pid_t starter)
{
    if (starter > 0) {
        (void)kill(starter, SIGKILL); /* our unreaped child: the pid cannot be recycled */
        while (waitpid(starter, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    fc_uffd_stop(dir);
}

int
fc_uffd_started(const char *dir, pid_t starter, const char *log_path, struct tp_err *err)
{
    _cleanup_close_ int pidfd = proc_pidfd_open(starter);
    int r, status = 0;

    /* The starter exits once the detached handler has recorded itself. */
    r = pidfd < 0 ? pidfd : sock_wait(pidfd, POLLIN, FC_UFFD_READY_MS);
    if (r <= 0) {
        fc_uffd_abort(dir, starter);
        return tp_err_set(err, r < 0 ? r : -ETIMEDOUT, "page-fault handler did not start");
    }
    while (waitpid(starter, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fc_uffd_stop(dir);
        return tp_err_set(err, -EIO, "page-fault handler failed to start (see '%s')", log_path);
    }
    return 0;
}
