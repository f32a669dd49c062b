/* Unit tests for guest/: the client against the real static agent (--serve-fd / --serve) and
 * against a scripted fake guest writing raw frames. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* cmocka.h needs stdarg, stddef and setjmp first. */
#include <cmocka.h>

#include "guest/agent_client.h"
#include "guest/agent_frame.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/proc.h"
#include "util/sock.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define T_MS 10000 /* generous bound for anything the agent does (sanitizers, busy host) */

struct out {
    char *out, *err;
    size_t out_len, err_len;
    int code;
};

static void
out_free(struct out *o)
{
    free(o->out);
    free(o->err);
    memset(o, 0, sizeof(*o));
}

static void
append(char **buf, size_t *len, const char *data, size_t n)
{
    *buf = xrealloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Drain x until EXIT; returns 0 or the first error (safe to call from any thread). */
static int
collect(struct agent_exec *x, struct out *o)
{
    struct tp_err err = { 0 };
    memset(o, 0, sizeof(*o));
    append(&o->out, &o->out_len, "", 0);
    append(&o->err, &o->err_len, "", 0);
    for (;;) {
        struct agent_event ev;
        int r = agent_exec_next(x, &ev, T_MS, &err);
        if (r < 0) {
            tp_err_clear(&err);
            return r;
        }
        if (ev.type == AGENT_EV_EXIT) {
            o->code = ev.exit_code;
            return 0;
        }
        if (ev.type == AGENT_EV_STDOUT)
            append(&o->out, &o->out_len, ev.data, ev.len);
        else
            append(&o->err, &o->err_len, ev.data, ev.len);
        free(ev.data);
    }
}

static int
run(struct agent_conn *c, const struct agent_exec_req *req, struct out *o)
{
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    int r = agent_exec_start(c, req, T_MS, &x, &err);
    tp_err_clear(&err);
    if (r < 0)
        return r;
    r = collect(x, o);
    agent_exec_free(x);
    return r;
}

/* ---- the real agent ---- */

struct agent_proc {
    pid_t pid;
    int pidfd;
};

static void
agent_spawn(char *const *argv, const struct proc_fd_map *fds, size_t n_fds, struct agent_proc *p)
{
    struct proc_spawn_opts o = {
        .argv = argv,
        .stdin_fd = -1,
        .stdout_fd = -1,
        .stderr_fd = getenv("TORPOR_TEST_VERBOSE") ? STDERR_FILENO : -1,
        .fds = fds,
        .n_fds = n_fds,
    };
    struct tp_err err = { 0 };
    assert_int_equal(proc_spawn(&o, &p->pid, &err), 0);
    p->pidfd = proc_pidfd_open(p->pid);
    assert_true(p->pidfd >= 0);
}

/* The agent must exit by itself once its host is gone: bounded wait, exit status 0. */
static void
agent_wait_exit(struct agent_proc *p)
{
    int status = -1;
    assert_int_equal(sock_wait(p->pidfd, POLLIN, T_MS), 1);
    assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(p->pidfd);
}

static const char *
agent_path(void)
{
    const char *path = getenv("TORPOR_AGENT");
    assert_non_null(path);
    return path;
}

static struct agent_conn *
agent_start_fd(struct agent_proc *p)
{
    int sv[2];
    struct agent_conn *c = NULL;
    struct tp_err err = { 0 };
    char *argv[] = { (char *)agent_path(), (char *)"--serve-fd", (char *)"3", NULL };

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct proc_fd_map map = { .from = sv[1], .to = 3 };
    agent_spawn(argv, &map, 1, p);
    close(sv[1]);
    assert_int_equal(agent_conn_open(sv[0], &c, &err), 0);
    return c;
}

static void
test_hello(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct agent_hello h;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(agent_conn_version(c), 0); /* unknown before HELLO */
    assert_int_equal(agent_conn_hello(c, T_MS, &h, &err), 0);
    assert_string_equal(h.version, "2");
    assert_int_equal(agent_conn_version(c), 2);
    assert_int_equal(strlen(h.boot_id), 36); /* the host's boot_id, a UUID */
    assert_true(h.uptime_ms > 0);
    assert_true(agent_conn_alive(c));
    agent_conn_free(c);
    agent_wait_exit(&p);
}

static void
test_echo_and_exit_codes(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct agent_exec *x = NULL;
    struct agent_event ev;
    struct tp_err err = { 0 };
    struct out o;
    (void)state;

    char *echo[] = { (char *)"echo", (char *)"hi", NULL };
    assert_int_equal(agent_exec_start(c, &(struct agent_exec_req){ .argv = echo }, T_MS, &x, &err),
                     0);
    assert_true(agent_exec_pid(x) > 0);
    assert_int_equal(collect(x, &o), 0);
    assert_string_equal(o.out, "hi\n");
    assert_int_equal(o.err_len, 0);
    assert_int_equal(o.code, 0);
    assert_int_equal(agent_exec_next(x, &ev, 0, &err), -ENODATA);
    tp_err_clear(&err);
    agent_exec_free(x);
    out_free(&o);

    char *fail[] = { (char *)"sh", (char *)"-c", (char *)"echo err >&2; exit 3", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = fail }, &o), 0);
    assert_int_equal(o.out_len, 0);
    assert_string_equal(o.err, "err\n");
    assert_int_equal(o.code, 3);
    out_free(&o);

    char *mixed[] = { (char *)"sh", (char *)"-c",
                      (char *)"echo out1; echo err1 >&2; echo out2; echo err2 >&2", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = mixed }, &o), 0);
    assert_string_equal(o.out, "out1\nout2\n");
    assert_string_equal(o.err, "err1\nerr2\n");
    out_free(&o);

    agent_conn_free(c);
    agent_wait_exit(&p);
}

/* Waiting on agent_exec_fd() instead of a timed agent_exec_next(): output and exit arrive, and a
 * connection that dies wakes the waiter too. */
static void
test_exec_fd(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct agent_exec *x = NULL, *y = NULL;
    struct agent_event ev;
    struct tp_err err = { 0 };
    char got[64] = "";
    bool exited = false;
    (void)state;

    char *echo[] = { (char *)"echo", (char *)"via-fd", NULL };
    assert_int_equal(agent_exec_start(c, &(struct agent_exec_req){ .argv = echo }, T_MS, &x, &err),
                     0);
    while (!exited) {
        struct pollfd pf = { .fd = agent_exec_fd(x), .events = POLLIN };
        assert_int_equal(poll(&pf, 1, T_MS), 1);
        agent_exec_fd_drain(x);
        int r;
        while ((r = agent_exec_next(x, &ev, 0, &err)) == 0) {
            if (ev.type == AGENT_EV_STDOUT)
                strncat(got, ev.data, MIN(ev.len, sizeof(got) - strlen(got) - 1));
            if (ev.type == AGENT_EV_EXIT) {
                assert_int_equal(ev.exit_code, 0);
                exited = true;
            }
            free(ev.data);
        }
        if (!exited)
            assert_int_equal(r, -ETIMEDOUT);
        tp_err_clear(&err);
    }
    assert_string_equal(got, "via-fd\n");
    agent_exec_free(x);

    /* A command that never ends: freeing the connection must wake whoever polls its fd. */
    char *sleeper[] = { (char *)"sleep", (char *)"100", NULL };
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = sleeper }, T_MS, &y, &err), 0);
    agent_exec_fd_drain(y);
    agent_conn_free(c);
    struct pollfd pf = { .fd = agent_exec_fd(y), .events = POLLIN };
    assert_int_equal(poll(&pf, 1, T_MS), 1);
    assert_int_equal(agent_exec_next(y, &ev, 0, &err), -ECONNRESET);
    tp_err_clear(&err);
    agent_exec_free(y);
    agent_wait_exit(&p);
}

static void
test_spawn_errors(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    struct out o;
    (void)state;

    char *missing[] = { (char *)"/nonexistent/torpor-cmd", NULL };
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = missing }, T_MS, &x, &err), -ENOENT);
    assert_null(x);
    assert_non_null(strstr(tp_err_msg(&err), "/nonexistent/torpor-cmd"));
    tp_err_clear(&err);

    char *unknown[] = { (char *)"torpor-no-such-command", NULL };
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = unknown }, T_MS, &x, &err), -ENOENT);
    tp_err_clear(&err);

    /* A working directory that cannot be entered is not "command not found": as with docker
     * exec, the command exits 126 and its stderr says why. */
    char *pwd[] = { (char *)"pwd", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = pwd, .cwd = "/nonexistent-dir" }, &o),
                     0);
    assert_int_equal(o.code, 126);
    assert_int_equal(o.out_len, 0);
    assert_non_null(strstr(o.err, "change directory to '/nonexistent-dir'"));
    assert_non_null(strstr(o.err, "No such file or directory"));
    out_free(&o);

    /* The connection is still fine after spawn failures. */
    char *t[] = { (char *)"true", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = t }, &o), 0);
    assert_int_equal(o.code, 0);
    out_free(&o);
    agent_conn_free(c);
    agent_wait_exit(&p);
}

static void
test_cwd_env(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct out o;
    (void)state;

    char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)"pwd; echo $FOO", NULL };
    char *env[] = { (char *)"FOO=bar baz", (char *)"PATH=/usr/bin:/bin", NULL };
    assert_int_equal(
        run(c, &(struct agent_exec_req){ .argv = argv, .env = env, .cwd = "/tmp" }, &o), 0);
    assert_string_equal(o.out, "/tmp\nbar baz\n");
    out_free(&o);

    /* No PATH given: the agent's default applies, and cwd NULL means "/". */
    char *path[] = { (char *)"sh", (char *)"-c", (char *)"pwd; echo $PATH", NULL };
    char *env2[] = { (char *)"X=1", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = path, .env = env2 }, &o), 0);
    assert_string_equal(o.out, "/\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
    out_free(&o);

    /* No env at all: HOME from the passwd file, HOSTNAME the kernel's, and no TERM although
     * the agent itself may have one. */
    char host[256] = "";
    struct passwd *pw = getpwuid(getuid());
    const char *home = pw && pw->pw_dir[0] ? pw->pw_dir : getuid() == 0 ? "/root" : "/";
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    _cleanup_free_ char *want = xasprintf("%s|%s|unset\n", home, host);
    char *show[] = { (char *)"sh", (char *)"-c", (char *)"echo \"$HOME|$HOSTNAME|${TERM-unset}\"",
                     NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = show }, &o), 0);
    assert_string_equal(o.out, want);
    out_free(&o);

    /* What the host passes wins. */
    char *env3[] = { (char *)"HOME=/h", (char *)"HOSTNAME=given", (char *)"TERM=vt100", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = show, .env = env3 }, &o), 0);
    assert_string_equal(o.out, "/h|given|vt100\n");
    out_free(&o);
    agent_conn_free(c);
    agent_wait_exit(&p);
}

struct conc {
    struct agent_conn *c;
    int k;
    int r;
    struct out o;
};

static void *
conc_main(void *arg)
{
    struct conc *t = arg;
    char script[128];
    snprintf(script, sizeof(script),
             "i=0; while [ $i -lt 300 ]; do echo T%d-$i; echo E%d-$i >&2; i=$((i+1)); done", t->k,
             t->k);
    char *argv[] = { (char *)"sh", (char *)"-c", script, NULL };
    t->r = run(t->c, &(struct agent_exec_req){ .argv = argv }, &t->o);
    return NULL;
}

static void
test_concurrent(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct conc t[4];
    pthread_t th[4];
    (void)state;

    for (int k = 0; k < 4; k++) {
        t[k] = (struct conc){ .c = c, .k = k };
        assert_int_equal(pthread_create(&th[k], NULL, conc_main, &t[k]), 0);
    }
    for (int k = 0; k < 4; k++)
        assert_int_equal(pthread_join(th[k], NULL), 0);
    for (int k = 0; k < 4; k++) {
        _cleanup_free_ char *want_out = NULL, *want_err = NULL;
        size_t lo = 0, le = 0;
        for (int i = 0; i < 300; i++) {
            char line[32];
            int n = snprintf(line, sizeof(line), "T%d-%d\n", k, i);
            append(&want_out, &lo, line, (size_t)n);
            n = snprintf(line, sizeof(line), "E%d-%d\n", k, i);
            append(&want_err, &le, line, (size_t)n);
        }
        assert_int_equal(t[k].r, 0);
        assert_string_equal(t[k].o.out, want_out);
        assert_string_equal(t[k].o.err, want_err);
        assert_int_equal(t[k].o.code, 0);
        out_free(&t[k].o);
    }
    agent_conn_free(c);
    agent_wait_exit(&p);
}

static void
test_large_output(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct out o;
    (void)state;

    char *argv[] = { (char *)"head", (char *)"-c", (char *)"1048576", (char *)"/dev/zero", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = argv }, &o), 0);
    assert_int_equal(o.out_len, 1048576);
    for (size_t i = 0; i < o.out_len; i++)
        if (o.out[i] != 0)
            fail_msg("byte %zu is %d", i, o.out[i]);
    assert_int_equal(o.code, 0);
    out_free(&o);
    agent_conn_free(c);
    agent_wait_exit(&p);
}

struct feeder {
    struct agent_exec *x;
    size_t total;
    int r;
};

static void *
feed_main(void *arg)
{
    struct feeder *f = arg;
    static char zero[65536];
    struct tp_err err = { 0 };

    for (size_t sent = 0; sent < f->total && f->r >= 0; sent += sizeof(zero))
        f->r = agent_exec_stdin(f->x, zero, sizeof(zero), &err);
    tp_err_clear(&err);
    return NULL;
}

/* A command that never reads stdin takes its window and no more: the connection stays free
 * for other execs and signals, and a blocked writer can be called off. */
static void
test_stdin_window(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct agent_hello h;
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    struct out o;
    pthread_t t;
    (void)state;

    assert_int_equal(agent_conn_hello(c, T_MS, &h, &err), 0);
    char *sleeper[] = { (char *)"sleep", (char *)"30", NULL };
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = sleeper, .stdin_open = true }, T_MS,
                         &x, &err),
        0);
    struct feeder f = { .x = x, .total = 4u << 20 };
    assert_int_equal(pthread_create(&t, NULL, feed_main, &f), 0);
    char *echo[] = { (char *)"echo", (char *)"through", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = echo }, &o), 0);
    assert_string_equal(o.out, "through\n");
    out_free(&o);
    agent_exec_cancel(x);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(f.r, -ECANCELED);
    assert_int_equal(agent_exec_signal(x, SIGKILL, &err), 0);
    agent_exec_free(x);
    agent_conn_free(c);
    agent_wait_exit(&p);
}

static void
test_stdin(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    struct out o;
    size_t big = 300 * 1024; /* several frames, more than a pipe holds */
    _cleanup_free_ char *data = xmalloc(big);
    (void)state;

    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    char *cat[] = { (char *)"cat", NULL };
    assert_int_equal(agent_exec_start(c,
                                      &(struct agent_exec_req){ .argv = cat, .stdin_open = true },
                                      T_MS, &x, &err),
                     0);
    assert_int_equal(agent_exec_stdin(x, "hello\n", 6, &err), 0);
    assert_int_equal(agent_exec_stdin(x, data, big, &err), 0);
    assert_int_equal(agent_exec_stdin(x, NULL, 0, &err), 0);
    assert_int_equal(collect(x, &o), 0);
    assert_int_equal(o.out_len, 6 + big);
    assert_memory_equal(o.out, "hello\n", 6);
    assert_memory_equal(o.out + 6, data, big);
    assert_int_equal(o.code, 0);
    out_free(&o);
    agent_exec_free(x);

    /* Without stdin_open, cat sees EOF at once instead of hanging. */
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = cat }, &o), 0);
    assert_int_equal(o.out_len, 0);
    assert_int_equal(o.code, 0);
    out_free(&o);
    agent_conn_free(c);
    agent_wait_exit(&p);
}

static void
test_signal(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_fd(&p);
    struct agent_exec *x = NULL;
    struct agent_event ev;
    struct tp_err err = { 0 };
    (void)state;

    char *argv[] = { (char *)"sleep", (char *)"100", NULL };
    assert_int_equal(agent_exec_start(c, &(struct agent_exec_req){ .argv = argv }, T_MS, &x, &err),
                     0);
    assert_int_equal(agent_exec_next(x, &ev, 50, &err), -ETIMEDOUT);
    tp_err_clear(&err);
    assert_int_equal(agent_exec_signal(x, SIGKILL, &err), 0);
    assert_int_equal(agent_exec_next(x, &ev, T_MS, &err), 0);
    assert_int_equal(ev.type, AGENT_EV_EXIT);
    assert_int_equal(ev.exit_code, 128 + SIGKILL);
    agent_exec_free(x);
    agent_conn_free(c);
    agent_wait_exit(&p);
}

/* The real agent after HELLO (version 2 features need the version known). */
static struct agent_conn *
agent_start_v2(struct agent_proc *p)
{
    struct agent_conn *c = agent_start_fd(p);
    struct agent_hello h;
    struct tp_err err = { 0 };
    assert_int_equal(agent_conn_hello(c, T_MS, &h, &err), 0);
    return c;
}

/* F_TTY: a terminal of the asked size as stdin/stdout/stderr, TERM=xterm, output on STDOUT. */
static void
test_tty(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_v2(&p);
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    struct out o;
    (void)state;

    char *show[] = { (char *)"sh", (char *)"-c",
                     (char *)"stty size; tty; echo $TERM; echo err >&2; test -t 0", NULL };
    assert_int_equal(
        run(c, &(struct agent_exec_req){ .argv = show, .tty = true, .rows = 24, .cols = 80 }, &o),
        0);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.err_len, 0); /* a terminal has one output */
    assert_true(strncmp(o.out, "24 80\r\n/dev/pts/", 16) == 0);
    assert_non_null(strstr(o.out, "\r\nxterm\r\nerr\r\n"));
    out_free(&o);

    /* RESIZE reaches the terminal (frames are handled in order: before the stdin line). */
    char *wait_size[] = { (char *)"sh", (char *)"-c", (char *)"read x; stty size", NULL };
    assert_int_equal(
        agent_exec_start(
            c,
            &(struct agent_exec_req){
                .argv = wait_size, .stdin_open = true, .tty = true, .rows = 24, .cols = 80 },
            T_MS, &x, &err),
        0);
    assert_int_equal(agent_exec_resize(x, 50, 132, &err), 0);
    assert_int_equal(agent_exec_stdin(x, "go\n", 3, &err), 0);
    assert_int_equal(collect(x, &o), 0);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "go\r\n50 132\r\n"); /* the terminal echoes the input */
    out_free(&o);
    agent_exec_free(x);

    /* Closing stdin types EOF: cat ends on it. */
    char *cat[] = { (char *)"cat", NULL };
    assert_int_equal(
        agent_exec_start(c,
                         &(struct agent_exec_req){ .argv = cat, .stdin_open = true, .tty = true },
                         T_MS, &x, &err),
        0);
    assert_int_equal(agent_exec_stdin(x, "abc\n", 4, &err), 0);
    assert_int_equal(agent_exec_stdin(x, NULL, 0, &err), 0);
    assert_int_equal(collect(x, &o), 0);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "abc\r\nabc\r\n");
    out_free(&o);
    agent_exec_free(x);

    /* A background process that keeps the terminal open does not hold EXIT back. */
    char *bg[] = { (char *)"sh", (char *)"-c", (char *)"(trap '' HUP; exec sleep 100) & echo done",
                   NULL };
    uint64_t t0 = now_ms();
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = bg, .tty = true }, T_MS, &x, &err),
        0);
    pid_t pgid = (pid_t)agent_exec_pid(x);
    assert_int_equal(collect(x, &o), 0);
    assert_true(now_ms() - t0 < 5000);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out, "done\r\n");
    out_free(&o);
    agent_exec_free(x);
    kill(-pgid, SIGKILL);

    agent_conn_free(c);
    agent_wait_exit(&p);
}

/* F_USER: ids and groups switched before exec, HOME from the user's entry; unknown names fail
 * as docker's do. */
static void
test_user(void **state)
{
    struct agent_proc p;
    struct agent_conn *c = agent_start_v2(&p);
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    struct out o;
    (void)state;

    if (geteuid() != 0) {
        agent_conn_free(c);
        agent_wait_exit(&p);
        skip();
    }
    char *ids[] = { (char *)"sh", (char *)"-c", (char *)"id -u; id -g; id -G; echo $HOME", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = ids, .user = "65534:65534" }, &o), 0);
    struct passwd *nobody = getpwuid(65534);
    _cleanup_free_ char *want_nobody =
        xasprintf("65534\n65534\n65534\n%s\n", nobody && *nobody->pw_dir ? nobody->pw_dir : "/");
    assert_string_equal(o.out, want_nobody);
    out_free(&o);
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = ids, .user = "4242" }, &o), 0);
    assert_string_equal(o.out, "4242\n0\n0\n/\n");
    out_free(&o);
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = ids, .user = "root" }, &o), 0);
    struct passwd *pw = getpwnam("root");
    _cleanup_free_ char *want = xasprintf("%s\n", pw->pw_dir);
    assert_non_null(strstr(o.out, want));
    out_free(&o);

    char *t[] = { (char *)"true", NULL };
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = t, .user = "torpor-no-such-user" },
                         T_MS, &x, &err),
        -ESRCH);
    assert_non_null(strstr(tp_err_msg(&err), "unable to find user torpor-no-such-user: no matching "
                                             "entries in passwd file"));
    tp_err_clear(&err);
    agent_conn_free(c);
    agent_wait_exit(&p);
}

/* F_BUILTIN: tar-out of a tree, tar-in of that stream elsewhere, through the protocol. */
static void
test_builtin_tar(void **state)
{
    char src[] = "/tmp/torpor-tar-src-XXXXXX", dst[] = "/tmp/torpor-tar-dst-XXXXXX";
    struct agent_proc p;
    struct agent_conn *c = agent_start_v2(&p);
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    struct out o, in;
    (void)state;

    assert_non_null(mkdtemp(src));
    assert_non_null(mkdtemp(dst));
    _cleanup_free_ char *mk =
        xasprintf("cd %s && mkdir -p tree/sub && echo one > tree/a && ln -s a tree/l && "
                  "head -c 200000 /dev/urandom > tree/sub/big",
                  src);
    assert_int_equal(system(mk), 0);
    _cleanup_free_ char *tree = fs_path_join(src, "tree");
    char *out_argv[] = { (char *)"tar-out", tree, NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = out_argv, .builtin = true }, &in), 0);
    assert_int_equal(in.code, 0);
    assert_int_equal(in.err_len, 0);
    assert_true(in.out_len > 200000);

    char *in_argv[] = { (char *)"tar-in", dst, NULL };
    assert_int_equal(
        agent_exec_start(
            c, &(struct agent_exec_req){ .argv = in_argv, .builtin = true, .stdin_open = true },
            T_MS, &x, &err),
        0);
    assert_int_equal(agent_exec_stdin(x, in.out, in.out_len, &err), 0);
    assert_int_equal(agent_exec_stdin(x, NULL, 0, &err), 0);
    assert_int_equal(collect(x, &o), 0);
    assert_int_equal(o.code, 0);
    out_free(&o);
    agent_exec_free(x);
    out_free(&in);
    _cleanup_free_ char *cmp = xasprintf("diff -r --no-dereference %s/tree %s/tree", src, dst);
    assert_int_equal(system(cmp), 0);

    /* Exit codes: a missing DIR is 2; an unknown built-in never starts. */
    char *missing[] = { (char *)"tar-in", (char *)"/nonexistent/dir", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = missing, .builtin = true }, &o), 0);
    assert_int_equal(o.code, 2);
    assert_non_null(strstr(o.err, "/nonexistent/dir"));
    out_free(&o);
    char *nope[] = { (char *)"nope", NULL };
    assert_int_equal(agent_exec_start(c, &(struct agent_exec_req){ .argv = nope, .builtin = true },
                                      T_MS, &x, &err),
                     -ENOENT);
    assert_non_null(strstr(tp_err_msg(&err), "no built-in nope"));
    tp_err_clear(&err);

    _cleanup_free_ char *rm = xasprintf("rm -rf %s %s", src, dst);
    assert_int_equal(system(rm), 0);
    agent_conn_free(c);
    agent_wait_exit(&p);
}

static struct agent_conn *
accept_conn(int lfd)
{
    struct agent_conn *c = NULL;
    struct tp_err err = { 0 };
    assert_int_equal(sock_wait(lfd, POLLIN, T_MS), 1);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(agent_conn_open(fd, &c, &err), 0);
    return c;
}

/* --serve PATH on a Unix socket: after the host drops the connection the agent connects again,
 * and commands of the old connection keep running. */
static void
test_reconnect(void **state)
{
    char dir[] = "/tmp/torpor-agent-XXXXXX";
    struct agent_proc p;
    struct agent_hello h;
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    struct out o;
    (void)state;

    assert_non_null(mkdtemp(dir));
    _cleanup_free_ char *path = fs_path_join(dir, "a.sock");
    int lfd = sock_listen_unix(path, 4, &err);
    assert_true(lfd >= 0);
    char *argv[] = { (char *)agent_path(), (char *)"--serve", path, NULL };
    agent_spawn(argv, NULL, 0, &p);

    struct agent_conn *c = accept_conn(lfd);
    assert_int_equal(agent_conn_hello(c, T_MS, &h, &err), 0);
    char *sleeper[] = { (char *)"sleep", (char *)"100", NULL };
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = sleeper }, T_MS, &x, &err), 0);
    pid_t sleep_pid = (pid_t)agent_exec_pid(x);
    agent_conn_free(c);
    /* The exec outlives its connection on our side too, reporting the loss. */
    struct agent_event ev;
    assert_int_equal(agent_exec_next(x, &ev, T_MS, &err), -ECONNRESET);
    tp_err_clear(&err);
    agent_exec_free(x);

    c = accept_conn(lfd);
    assert_int_equal(agent_conn_hello(c, T_MS, &h, &err), 0);
    char *echo[] = { (char *)"echo", (char *)"again", NULL };
    assert_int_equal(run(c, &(struct agent_exec_req){ .argv = echo }, &o), 0);
    assert_string_equal(o.out, "again\n");
    out_free(&o);
    assert_int_equal(kill(sleep_pid, 0), 0); /* still running in the agent */
    assert_int_equal(kill(-sleep_pid, SIGKILL), 0);

    /* With the listener gone the agent's reconnect fails and it exits cleanly. */
    close(lfd);
    unlink(path);
    agent_conn_free(c);
    agent_wait_exit(&p);
    rmdir(dir);
}

/* ---- a scripted fake guest ---- */

struct fake {
    int fd; /* guest end */
    pthread_t th;
    pthread_mutex_t wlock;
    bool drop_first_hello; /* let the first HELLO time out, answer it late */
    int hellos;
};

static void
fake_write(struct fake *f, uint32_t id, uint16_t type, const void *p, size_t len)
{
    uint8_t hdr[AGENT_HDR_SIZE];
    agent_hdr_encode(hdr, (uint32_t)len, id, type, 0);
    pthread_mutex_lock(&f->wlock);
    int r = sock_write_all(f->fd, hdr, sizeof(hdr));
    if (r == 0 && len)
        r = sock_write_all(f->fd, p, len);
    pthread_mutex_unlock(&f->wlock);
    (void)r; /* a dead connection is what some tests want */
}

static void
fake_write_u32(struct fake *f, uint32_t id, uint16_t type, uint32_t v)
{
    uint8_t b[4];
    agent_put_u32(b, v);
    fake_write(f, id, type, b, sizeof(b));
}

static void
fake_write_errmsg(struct fake *f, uint32_t id, uint16_t type, int e, const char *msg)
{
    uint8_t b[64];
    agent_put_u32(b, (uint32_t)e);
    size_t n = strlen(msg) + 1;
    memcpy(b + 4, msg, n);
    fake_write(f, id, type, b, 4 + n);
}

/* Answers requests until the host closes: EXEC → STARTED, HELLO → HELLO_OK, SET_CLOCK → OK,
 * IDENTITY → ERROR EPERM. */
static void *
fake_main(void *arg)
{
    struct fake *f = arg;
    static const char hello[] = "version=1\0boot_id=fake\0uptime_ms=42";
    uint8_t *buf = xmalloc(AGENT_MAX_PAYLOAD);

    for (;;) {
        uint8_t hb[AGENT_HDR_SIZE];
        struct agent_hdr h;
        if (sock_read_exact(f->fd, hb, sizeof(hb), -1) < 0)
            break;
        agent_hdr_decode(hb, &h);
        if (h.len > AGENT_MAX_PAYLOAD || (h.len && sock_read_exact(f->fd, buf, h.len, -1) < 0))
            break;
        switch (h.type) {
        case AGENT_EXEC:
            fake_write_u32(f, h.id, AGENT_EXEC_STARTED, 4242);
            break;
        case AGENT_HELLO:
            if (f->drop_first_hello && f->hellos++ == 0)
                break;
            fake_write(f, 0, AGENT_HELLO_OK, hello, sizeof(hello));
            break;
        case AGENT_SET_CLOCK:
            if (f->drop_first_hello) /* the late answer to the dropped HELLO comes first */
                fake_write(f, 0, AGENT_HELLO_OK, hello, sizeof(hello));
            fake_write(f, 0, h.len == 8 ? AGENT_OK : AGENT_ERROR, NULL, 0);
            break;
        case AGENT_IDENTITY:
            fake_write_errmsg(f, 0, AGENT_ERROR, EPERM, "nope");
            break;
        default:
            break;
        }
    }
    free(buf);
    return NULL;
}

static struct agent_conn *
fake_start(struct fake *f, bool drop_first_hello)
{
    int sv[2];
    struct agent_conn *c = NULL;
    struct tp_err err = { 0 };

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    *f = (struct fake){ .fd = sv[1], .drop_first_hello = drop_first_hello };
    pthread_mutex_init(&f->wlock, NULL);
    assert_int_equal(agent_conn_open(sv[0], &c, &err), 0);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
    return c;
}

/* After the host side is gone, the fake's reader sees EOF and ends. */
static void
fake_stop(struct fake *f)
{
    shutdown(f->fd, SHUT_RDWR);
    assert_int_equal(pthread_join(f->th, NULL), 0);
    close(f->fd);
    pthread_mutex_destroy(&f->wlock);
}

static struct agent_exec *
fake_exec(struct agent_conn *c)
{
    struct agent_exec *x = NULL;
    struct tp_err err = { 0 };
    char *argv[] = { (char *)"x", NULL };
    assert_int_equal(agent_exec_start(c, &(struct agent_exec_req){ .argv = argv }, T_MS, &x, &err),
                     0);
    assert_int_equal(agent_exec_pid(x), 4242);
    return x;
}

static void
test_fake_control(void **state)
{
    struct fake f;
    struct agent_conn *c = fake_start(&f, true);
    struct agent_hello h;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(agent_conn_hello(c, 100, &h, &err), -ETIMEDOUT);
    tp_err_clear(&err);
    /* The late HELLO_OK arrives before this request's OK and must not be taken for it. */
    assert_int_equal(agent_conn_set_clock(c, 1700000000000000000LL, T_MS, &err), 0);
    assert_int_equal(agent_conn_hello(c, T_MS, &h, &err), 0);
    assert_string_equal(h.boot_id, "fake");
    assert_int_equal(h.uptime_ms, 42);
    char *kv[] = { (char *)"hostname=x", NULL };
    assert_int_equal(agent_conn_identity(c, kv, T_MS, &err), -EPERM);
    assert_non_null(strstr(tp_err_msg(&err), "nope"));
    tp_err_clear(&err);
    assert_true(agent_conn_alive(c));
    agent_conn_free(c);
    fake_stop(&f);
}

static void
test_fake_unknown_ids_and_exit(void **state)
{
    struct fake f;
    struct agent_conn *c = fake_start(&f, false);
    struct agent_exec *x = fake_exec(c);
    struct agent_event ev;
    struct tp_err err = { 0 };
    (void)state;

    fake_write(&f, 99, AGENT_STDOUT, "zz", 2);     /* unknown id */
    fake_write(&f, 99, AGENT_EXIT, "\1\0\0\0", 4); /* unknown id */
    fake_write(&f, 1, 999, "??", 2);               /* unknown type */
    fake_write(&f, 0, AGENT_OK, NULL, 0);          /* unsolicited control reply */
    fake_write(&f, 1, AGENT_STDERR, "e", 1);
    fake_write(&f, 1, AGENT_STDOUT, "x", 1);
    fake_write_u32(&f, 1, AGENT_EXIT, 5);
    fake_write(&f, 1, AGENT_STDOUT, "late", 4); /* after EXIT: dropped */

    assert_int_equal(agent_exec_next(x, &ev, T_MS, &err), 0);
    assert_int_equal(ev.type, AGENT_EV_STDERR);
    assert_int_equal(ev.len, 1);
    assert_memory_equal(ev.data, "e", 1);
    free(ev.data);
    assert_int_equal(agent_exec_next(x, &ev, T_MS, &err), 0);
    assert_int_equal(ev.type, AGENT_EV_STDOUT);
    assert_memory_equal(ev.data, "x", 1);
    free(ev.data);
    assert_int_equal(agent_exec_next(x, &ev, T_MS, &err), 0);
    assert_int_equal(ev.type, AGENT_EV_EXIT);
    assert_int_equal(ev.exit_code, 5);
    assert_int_equal(agent_exec_next(x, &ev, T_MS, &err), -ENODATA);
    tp_err_clear(&err);

    /* The connection survived all of it: a control round trip still works. */
    struct agent_hello h;
    assert_int_equal(agent_conn_hello(c, T_MS, &h, &err), 0);
    assert_true(agent_conn_alive(c));
    agent_exec_free(x);
    agent_conn_free(c);
    fake_stop(&f);
}

static void
check_kills_connection(const void *hdr_and_payload, size_t len)
{
    struct fake f;
    struct agent_conn *c = fake_start(&f, false);
    struct agent_exec *x = fake_exec(c);
    struct agent_event ev;
    struct tp_err err = { 0 };

    pthread_mutex_lock(&f.wlock);
    assert_int_equal(sock_write_all(f.fd, hdr_and_payload, len), 0);
    pthread_mutex_unlock(&f.wlock);
    assert_int_equal(agent_exec_next(x, &ev, T_MS, &err), -ECONNRESET);
    assert_non_null(strstr(tp_err_msg(&err), "protocol error"));
    tp_err_clear(&err);
    assert_false(agent_conn_alive(c));
    /* Requests fail at once on a dead connection. */
    assert_int_equal(agent_exec_signal(x, SIGTERM, &err), -ECONNRESET);
    tp_err_clear(&err);
    agent_exec_free(x);
    agent_conn_free(c);
    fake_stop(&f);
}

static void
test_fake_oversize(void **state)
{
    uint8_t hdr[AGENT_HDR_SIZE];
    (void)state;
    agent_hdr_encode(hdr, AGENT_MAX_PAYLOAD + 1, 1, AGENT_STDOUT, 0);
    check_kills_connection(hdr, sizeof(hdr));
}

static void
test_fake_truncated(void **state)
{
    uint8_t b[AGENT_HDR_SIZE + 2] = { 0 };
    (void)state;
    agent_hdr_encode(b, 2, 1, AGENT_EXIT, 0); /* EXIT needs 4 bytes */
    check_kills_connection(b, sizeof(b));
}

struct waiter {
    struct agent_exec *x;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool waiting;
    bool done;
    int r;
};

static void *
waiter_main(void *arg)
{
    struct waiter *w = arg;
    struct agent_event ev;
    struct tp_err err = { 0 };
    pthread_mutex_lock(&w->lock);
    w->waiting = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    int r = agent_exec_next(w->x, &ev, -1, &err);
    tp_err_clear(&err);
    pthread_mutex_lock(&w->lock);
    w->r = r;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void
test_free_wakes_waiter(void **state)
{
    struct fake f;
    struct agent_conn *c = fake_start(&f, false);
    struct waiter w = { .x = fake_exec(c) };
    pthread_t th;
    struct timespec deadline;
    (void)state;

    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
    pthread_mutex_lock(&w.lock);
    while (!w.waiting)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);

    uint64_t t0 = now_ms();
    agent_conn_free(c); /* the waiter blocks forever otherwise: it must wake */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&w.lock);
    int r = 0;
    while (!w.done && r == 0)
        r = pthread_cond_timedwait(&w.cond, &w.lock, &deadline);
    pthread_mutex_unlock(&w.lock);
    assert_true(w.done);
    assert_int_equal(w.r, -ECONNRESET);
    assert_true(now_ms() - t0 < 2000);
    assert_int_equal(pthread_join(th, NULL), 0);
    agent_exec_free(w.x); /* the last reference: the connection's memory goes here */
    fake_stop(&f);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
}

/* One exec whose output nobody reads must not stall the others. */
static void
test_fake_overflow(void **state)
{
    struct fake f;
    struct agent_conn *c = fake_start(&f, false);
    struct agent_exec *slow = fake_exec(c), *other = fake_exec(c);
    struct agent_event ev;
    struct tp_err err = { 0 };
    _cleanup_free_ uint8_t *chunk = xzalloc(AGENT_MAX_PAYLOAD);
    size_t sent = 0, got = 0;
    (void)state;

    while (sent <= AGENT_EXEC_MAX_QUEUED) {
        fake_write(&f, 1, AGENT_STDOUT, chunk, AGENT_MAX_PAYLOAD);
        sent += AGENT_MAX_PAYLOAD;
    }
    fake_write_u32(&f, 1, AGENT_EXIT, 0);
    fake_write(&f, 2, AGENT_STDOUT, "ok", 2);
    fake_write_u32(&f, 2, AGENT_EXIT, 0);

    assert_int_equal(agent_exec_next(other, &ev, T_MS, &err), 0);
    assert_int_equal(ev.type, AGENT_EV_STDOUT);
    assert_memory_equal(ev.data, "ok", 2);
    free(ev.data);
    assert_int_equal(agent_exec_next(other, &ev, T_MS, &err), 0);
    assert_int_equal(ev.type, AGENT_EV_EXIT);

    int r;
    while ((r = agent_exec_next(slow, &ev, T_MS, &err)) == 0) {
        assert_int_equal(ev.type, AGENT_EV_STDOUT);
        got += ev.len;
        free(ev.data);
    }
    assert_int_equal(r, -ENOBUFS);
    tp_err_clear(&err);
    assert_true(got <= AGENT_EXEC_MAX_QUEUED);
    assert_true(got < sent);
    assert_true(agent_conn_alive(c));
    agent_exec_free(slow);
    agent_exec_free(other);
    agent_conn_free(c);
    fake_stop(&f);
}

/* A version 1 agent (the fake) gets no version 2 payload: the host says why instead. */
static void
test_fake_old_agent(void **state)
{
    struct fake f;
    struct agent_conn *c = fake_start(&f, false);
    struct agent_exec *x = NULL;
    struct agent_hello h;
    struct tp_err err = { 0 };
    char *argv[] = { (char *)"sh", NULL };
    (void)state;

    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = argv, .tty = true }, T_MS, &x, &err),
        -EOPNOTSUPP);
    assert_non_null(strstr(tp_err_msg(&err), "version is unknown"));
    tp_err_clear(&err);
    assert_int_equal(agent_conn_hello(c, T_MS, &h, &err), 0);
    assert_int_equal(agent_conn_version(c), 1);
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = argv, .tty = true }, T_MS, &x, &err),
        -EOPNOTSUPP);
    assert_non_null(strstr(tp_err_msg(&err), "the guest agent is version 1, too old for a TTY"));
    tp_err_clear(&err);
    assert_int_equal(
        agent_exec_start(c, &(struct agent_exec_req){ .argv = argv, .user = "1" }, T_MS, &x, &err),
        -EOPNOTSUPP);
    tp_err_clear(&err);
    assert_int_equal(agent_exec_start(c, &(struct agent_exec_req){ .argv = argv, .builtin = true },
                                      T_MS, &x, &err),
                     -EOPNOTSUPP);
    tp_err_clear(&err);
    assert_null(x);
    /* Plain execs still go. */
    x = fake_exec(c);
    agent_exec_free(x);
    agent_conn_free(c);
    fake_stop(&f);
}

static void
test_frame_codec(void **state)
{
    struct agent_frame f;
    uint8_t *buf = NULL;
    size_t len;
    (void)state;

    char *argv[] = { (char *)"ls", (char *)"-l", NULL };
    char *env[] = { (char *)"A=1", NULL };
    struct agent_exec_req req = { .argv = argv, .env = env, .cwd = "/x", .stdin_open = true };
    assert_int_equal(agent_frame_build_exec(7, &req, &buf, &len), 0);
    assert_int_equal(agent_frame_parse(buf, len - 1, &f), 0); /* partial */
    assert_int_equal(agent_frame_parse(buf, len, &f), (int)len);
    assert_int_equal(f.hdr.id, 7);
    assert_int_equal(f.hdr.type, AGENT_EXEC);
    assert_int_equal(f.hdr.flags, AGENT_EXEC_F_STDIN | AGENT_EXEC_F_ACKS);
    assert_memory_equal(f.payload, "\2\0\0\0\1\0\0\0/x\0ls\0-l\0A=1\0", f.hdr.len);
    free(buf);

    /* Version 2: the user, then rows and cols, after env; one flag each. */
    req.user = "nobody:nogroup";
    req.tty = true;
    req.rows = 0x0132;
    req.cols = 80;
    req.builtin = true;
    assert_int_equal(agent_frame_build_exec(8, &req, &buf, &len), 0);
    assert_int_equal(agent_frame_parse(buf, len, &f), (int)len);
    assert_int_equal(f.hdr.flags, AGENT_EXEC_F_STDIN | AGENT_EXEC_F_TTY | AGENT_EXEC_F_USER |
                                      AGENT_EXEC_F_BUILTIN | AGENT_EXEC_F_ACKS);
    static const char v2[] = "\2\0\0\0\1\0\0\0/x\0ls\0-l\0A=1\0nobody:nogroup\0\x32\x01\x50\0";
    assert_int_equal(f.hdr.len, sizeof(v2) - 1);
    assert_memory_equal(f.payload, v2, f.hdr.len);
    free(buf);
    req = (struct agent_exec_req){ .argv = argv, .user = "", .stdin_open = false };
    assert_int_equal(agent_frame_build_exec(9, &req, &buf, &len), 0);
    assert_int_equal(agent_frame_parse(buf, len, &f), (int)len);
    assert_int_equal(f.hdr.flags, AGENT_EXEC_F_USER | AGENT_EXEC_F_ACKS);
    assert_memory_equal(f.payload, "\2\0\0\0\0\0\0\0\0ls\0-l\0\0", f.hdr.len);
    free(buf);

    char *none[] = { NULL };
    assert_int_equal(
        agent_frame_build_exec(1, &(struct agent_exec_req){ .argv = none }, &buf, &len), -EINVAL);
    _cleanup_free_ char *huge = xmalloc(AGENT_MAX_PAYLOAD + 1);
    memset(huge, 'a', AGENT_MAX_PAYLOAD);
    huge[AGENT_MAX_PAYLOAD] = '\0';
    char *big[] = { huge, NULL };
    assert_int_equal(agent_frame_build_exec(1, &(struct agent_exec_req){ .argv = big }, &buf, &len),
                     -E2BIG);

    /* Guest replies that do not end their strings inside the payload are rejected. */
    struct agent_hello h;
    int e;
    const char *msg;
    f = (struct agent_frame){ .hdr = { .len = 6 }, .payload = (const uint8_t *)"boot_i" };
    assert_int_equal(agent_frame_hello(&f, &h), -EPROTO);
    f = (struct agent_frame){ .hdr = { .len = 6 }, .payload = (const uint8_t *)"\2\0\0\0ab" };
    assert_int_equal(agent_frame_errmsg(&f, &e, &msg), -EPROTO);
    f = (struct agent_frame){ .hdr = { .len = 7 }, .payload = (const uint8_t *)"\2\0\0\0ab" };
    assert_int_equal(agent_frame_errmsg(&f, &e, &msg), 0);
    assert_int_equal(e, 2);
    assert_string_equal(msg, "ab");
    f = (struct agent_frame){ .hdr = { .len = 4 }, .payload = (const uint8_t *)"\0\0\0\0" };
    assert_int_equal(agent_frame_errmsg(&f, &e, &msg), -EPROTO);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_codec),
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_echo_and_exit_codes),
        cmocka_unit_test(test_exec_fd),
        cmocka_unit_test(test_spawn_errors),
        cmocka_unit_test(test_cwd_env),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_large_output),
        cmocka_unit_test(test_stdin_window),
        cmocka_unit_test(test_stdin),
        cmocka_unit_test(test_signal),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_tty),
        cmocka_unit_test(test_user),
        cmocka_unit_test(test_builtin_tar),
        cmocka_unit_test(test_fake_old_agent),
        cmocka_unit_test(test_fake_control),
        cmocka_unit_test(test_fake_unknown_ids_and_exit),
        cmocka_unit_test(test_fake_oversize),
        cmocka_unit_test(test_fake_truncated),
        cmocka_unit_test(test_free_wakes_waiter),
        cmocka_unit_test(test_fake_overflow),
    };
    /* A test that fails mid-way leaves a socket whose peer is gone: no SIGPIPE deaths. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
