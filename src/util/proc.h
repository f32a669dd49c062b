/* Processes: spawn detached children with chosen fds, identify pids by start time, pidfds. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* An fd the child receives: parent's fd `from` appears as `to` in the child. */
struct proc_fd_map {
    int from;
    int to;
};

struct proc_spawn_opts {
    char *const *argv;             /* argv[0] is looked up in PATH */
    char *const *envp;             /* NULL = inherit */
    const char *cwd;               /* NULL = inherit */
    int stdin_fd;                  /* -1 = /dev/null */
    int stdout_fd;                 /* -1 = /dev/null */
    int stderr_fd;                 /* -1 = /dev/null */
    const struct proc_fd_map *fds; /* extra fds to pass; no other fd reaches the program, even
                                      one the caller left without O_CLOEXEC */
    size_t n_fds;
    bool new_session;  /* setsid(): survives the daemon and its signals */
    bool no_new_privs; /* PR_SET_NO_NEW_PRIVS: set-uid bits and file capabilities are ignored */
    /* The program holds no capability, even run by root: the bounding (where the caller holds
     * CAP_SETPCAP), ambient, inheritable, permitted and effective sets are emptied. It keeps
     * what its uid owns, nothing else (no CAP_DAC_OVERRIDE). */
    bool drop_caps;
    /* Called in the parent with the child's pid while the child is held before exec (it has
     * run nothing of its own yet): a caller records the pid durably here, so a crash can never
     * leave a process it does not know about. A negative return aborts the spawn (the child
     * exits without exec'ing) and becomes proc_spawn's. If the parent dies while the child is
     * held, the child exits too. NULL = no hold. */
    int (*before_exec)(void *ctx, pid_t pid, struct tp_err *err);
    void *before_exec_ctx;
};

/* fork + exec. Returns the pid; exec failures are reported here, not as an exit status
 * (a CLOEXEC pipe carries the child's errno back). With before_exec, the child is reaped on
 * every failure. */
int proc_spawn(const struct proc_spawn_opts *o, pid_t *ret_pid, struct tp_err *err);

/* Run argv with stdin and stderr on /dev/null; the first cap - 1 bytes of its stdout go to buf,
 * NUL-terminated (the rest is drained), until it closes its stdout. 0 once it ran, whatever its
 * exit status (a version probe reads the text); -ETIMEDOUT (it is killed) when that takes over
 * timeout_ms; -errno when it could not run. */
int proc_run_capture(char *const *argv, char *buf, size_t cap, int timeout_ms, struct tp_err *err);

/* Start time of pid in clock ticks since boot (field 22 of /proc/PID/stat).
 * -ESRCH when the process is gone. */
int proc_start_time(pid_t pid, uint64_t *ret);

/* True when pid exists, is not a zombie, and started at start_time. */
bool proc_is_alive(pid_t pid, uint64_t start_time);

/* pidfd_open(2); -errno on failure. Readable (POLLIN) once the process exits. */
int proc_pidfd_open(pid_t pid);

/* Send sig through a pidfd (never hits a recycled pid). */
int proc_pidfd_signal(int pidfd, int sig);

/* Wait until the pidfd's process exits, up to timeout_ms: 0 exited, -ETIMEDOUT, -errno.
 * Reaps it if it is our child. */
int proc_pidfd_wait(int pidfd, pid_t pid, int timeout_ms);
