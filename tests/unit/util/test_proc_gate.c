/* proc_spawn's hold before exec (before_exec): the caller records the pid while the child has
 * run nothing of its own; a refusal means it never runs; a dead parent never leaves it behind. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "util/cleanup.h"
#include "util/proc.h"

static char dir[] = "/tmp/torpor-test-gate-XXXXXX";

struct seen {
    pid_t pid;
    char marker[256];
    bool marker_existed; /* when the hook ran */
    int ret;
};

static int
record(void *ctx, pid_t pid, struct tp_err *err)
{
    struct seen *s = ctx;
    (void)err;
    s->pid = pid;
    s->marker_existed = access(s->marker, F_OK) == 0;
    return s->ret;
}

static void
spawn_touch(struct seen *s, int *ret_r, pid_t *ret_pid)
{
    char *const argv[] = { (char *)"touch", s->marker, NULL };
    const struct proc_spawn_opts o = {
        .argv = argv,
        .stdin_fd = -1,
        .stdout_fd = -1,
        .stderr_fd = -1,
        .before_exec = record,
        .before_exec_ctx = s,
    };
    struct tp_err err = { 0 };
    *ret_r = proc_spawn(&o, ret_pid, &err);
    tp_err_clear(&err);
}

static void
test_held_until_recorded(void **state)
{
    struct seen s = { .ret = 0 };
    pid_t pid = 0;
    int r, status;
    (void)state;

    snprintf(s.marker, sizeof(s.marker), "%s/ran", dir);
    spawn_touch(&s, &r, &pid);
    assert_int_equal(r, 0);
    assert_int_equal(s.pid, pid);
    assert_false(s.marker_existed); /* the child had not run its program yet */
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(access(s.marker, F_OK), 0);
}

static void
test_refused_never_runs(void **state)
{
    struct seen s = { .ret = -EIO };
    pid_t pid = 0;
    int r;
    (void)state;

    snprintf(s.marker, sizeof(s.marker), "%s/never", dir);
    spawn_touch(&s, &r, &pid);
    assert_int_equal(r, -EIO);
    assert_true(s.pid > 0);
    assert_int_equal(access(s.marker, F_OK), -1); /* the program never ran */
    assert_int_equal(kill(s.pid, 0), -1);         /* and the child was reaped */
}

/* The "daemon" dies inside the hook, after telling the test the held child's pid. */
static int
die_in_hook(void *ctx, pid_t pid, struct tp_err *err)
{
    int fd = *(int *)ctx;
    (void)err;
    if (write(fd, &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
        _exit(2);
    raise(SIGKILL);
    return 0;
}

/* The parent dies while the child is held (a daemon killed while recording a VMM's pid): the
 * child must go too, not run unrecorded. */
static void
test_parent_death_ends_hold(void **state)
{
    char marker[256];
    int pfd[2];
    (void)state;

    snprintf(marker, sizeof(marker), "%s/orphan", dir);
    assert_int_equal(pipe(pfd), 0);
    pid_t mid = fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        char *const argv[] = { (char *)"touch", marker, NULL };
        const struct proc_spawn_opts o = {
            .argv = argv,
            .stdin_fd = -1,
            .stdout_fd = -1,
            .stderr_fd = -1,
            .before_exec = die_in_hook,
            .before_exec_ctx = &pfd[1],
        };
        pid_t pid;
        close(pfd[0]);
        proc_spawn(&o, &pid, NULL);
        _exit(1); /* not reached */
    }
    close(pfd[1]);
    pid_t held = 0;
    assert_int_equal(read(pfd[0], &held, sizeof(held)), (ssize_t)sizeof(held));
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(mid, &status, 0), mid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* The held child is not ours to wait for: its pidfd tells when it is gone (bounded). */
    int pidfd = proc_pidfd_open(held);
    if (pidfd >= 0) {
        assert_int_equal(proc_pidfd_wait(pidfd, held, 10000), 0);
        close(pidfd);
    }
    assert_int_equal(access(marker, F_OK), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_until_recorded),
        cmocka_unit_test(test_refused_never_runs),
        cmocka_unit_test(test_parent_death_ends_hold),
    };
    if (!mkdtemp(dir))
        return 1;
    int r = cmocka_run_group_tests_name("proc_gate", tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        r = r ? r : 1;
    return r;
}
