/* Unit tests for util/: error chains, atomic writes, sparse clones, process identity. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "util/cleanup.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/sock.h"
#include "util/timefmt.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

static char *
make_tmpdir(void)
{
    char tmpl[] = "/tmp/torpor-test-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return xstrdup(tmpl);
}

static void
test_err_chain(void **state)
{
    struct tp_err err = { 0 };
    (void)state;
    assert_int_equal(tp_err_set(&err, EINVAL, "parse '%s'", "x"), -EINVAL);
    assert_int_equal(tp_err_wrap(&err, "load config"), -EINVAL);
    assert_string_equal(tp_err_msg(&err), "load config: parse 'x'");
    assert_int_equal(tp_err_errno(&err, -ENOENT, "open"), -ENOENT);
    assert_string_equal(tp_err_msg(&err), "open: No such file or directory");
    tp_err_clear(&err);
    assert_int_equal(err.code, 0);
    assert_string_equal(tp_err_msg(&err), "");
    assert_int_equal(tp_err_set(NULL, -EIO, "ignored"), -EIO);
}

/* "" has no first byte to skip: it must be refused, not read past its end. */
static void
test_mkdir_p_empty_path(void **state)
{
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fs_mkdir_p("", 0755, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "empty path"));
    tp_err_clear(&err);
}

/* Listening replaces a stale socket but never deletes another kind of file. */
static void
test_listen_replaces_only_sockets(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *file = fs_path_join(dir, "precious");
    _cleanup_free_ char *stale = fs_path_join(dir, "stale.sock");
    _cleanup_free_ char *data = NULL;
    struct tp_err err = { 0 };
    int fd;
    (void)state;

    assert_int_equal(fs_write_atomic(file, "keep", 4, 0600, &err), 0);
    assert_int_equal(sock_listen_unix(file, 1, &err), -EEXIST);
    assert_non_null(strstr(tp_err_msg(&err), "not a socket"));
    assert_int_equal(fs_read_file(file, 64, &data, NULL, &err), 0);
    assert_string_equal(data, "keep");

    fd = sock_listen_unix(stale, 1, &err);
    assert_true(fd >= 0);
    close(fd); /* leaves the socket file behind, as a dead VMM or daemon does */
    fd = sock_listen_unix(stale, 1, &err);
    assert_true(fd >= 0);
    close(fd);
    tp_err_clear(&err);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

static void
test_atomic_write_and_read(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *p = fs_path_join(dir, "f");
    _cleanup_free_ char *data = NULL;
    struct tp_err err = { 0 };
    size_t n;
    (void)state;

    assert_int_equal(fs_write_atomic(p, "hello", 5, 0644, &err), 0);
    assert_int_equal(fs_read_file(p, 100, &data, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(data, "hello");
    free(TAKE_PTR(data));
    assert_int_equal(fs_read_file(p, 3, &data, &n, &err), -EFBIG);
    tp_err_clear(&err);
    assert_int_equal(fs_rm_rf(dir, &err), 0);
    assert_false(fs_exists(dir));
}

static void
test_clone_keeps_holes(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *a = fs_path_join(dir, "a");
    _cleanup_free_ char *b = fs_path_join(dir, "b");
    struct tp_err err = { 0 };
    struct stat st;
    (void)state;

    int fd = open(a, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "x", 1, 64 << 20), 1); /* 64 MiB hole then one byte */
    close(fd);
    assert_int_equal(fs_clone_file(a, b, 0644, &err), 0);
    assert_int_equal(stat(b, &st), 0);
    assert_int_equal(st.st_size, (64 << 20) + 1);
    assert_true(st.st_blocks * 512 < (1 << 20)); /* still sparse */
    assert_int_equal(fs_clone_file(a, b, 0644, &err), -EEXIST);
    tp_err_clear(&err);
    assert_int_equal(fs_rm_rf(dir, &err), 0);
}

static void
test_proc_identity(void **state)
{
    uint64_t st;
    (void)state;
    assert_int_equal(proc_start_time(getpid(), &st), 0);
    assert_true(proc_is_alive(getpid(), st));
    assert_false(proc_is_alive(getpid(), st + 1));
    assert_int_equal(proc_start_time(0x3fffffff, &st), -ESRCH);
}

static void
test_spawn_reports_exec_failure(void **state)
{
    char *argv[] = { (char *)"/nonexistent/torpor-binary", NULL };
    struct proc_spawn_opts o = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1 };
    struct tp_err err = { 0 };
    pid_t pid;
    (void)state;
    assert_int_equal(proc_spawn(&o, &pid, &err), -ENOENT);
    assert_non_null(strstr(tp_err_msg(&err), "/nonexistent/torpor-binary"));
    tp_err_clear(&err);
}

static int
spawn_wait(struct proc_spawn_opts *o)
{
    struct tp_err err = { 0 };
    pid_t pid;
    int status;

    assert_int_equal(proc_spawn(o, &pid, &err), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void
test_spawn_passes_only_mapped_fds(void **state)
{
    /* Exit 0 only if 7 (mapped) is open and 5 and 50 (inherited, no CLOEXEC) are not. */
    char *argv[] = { (char *)"sh", (char *)"-c",
                     (char *)"test -e /proc/self/fd/7 || exit 1; test -e /proc/self/fd/5 && exit 2;"
                             " test -e /proc/self/fd/50 && exit 3; exit 0",
                     NULL };
    int p[2];
    (void)state;

    assert_int_equal(pipe(p), 0); /* deliberately without O_CLOEXEC */
    assert_int_equal(dup2(p[0], 5), 5);
    assert_int_equal(dup2(p[1], 50), 50);
    const struct proc_fd_map fds[] = { { .from = p[0], .to = 7 } };
    struct proc_spawn_opts o = {
        .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .fds = fds, .n_fds = 1
    };
    assert_int_equal(spawn_wait(&o), 0);
    /* The test itself can fail: without the mapping the child sees no fd 7. */
    o.n_fds = 0;
    assert_int_equal(spawn_wait(&o), 1);
    close(5);
    close(50);
    close(p[0]);
    close(p[1]);
}

static void
test_spawn_drops_privileges(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *out = fs_path_join(dir, "status");
    _cleanup_free_ char *text = NULL;
    char *argv[] = { (char *)"cat", (char *)"/proc/self/status", NULL };
    struct tp_err err = { 0 };
    (void)state;

    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    struct proc_spawn_opts o = { .argv = argv,
                                 .stdin_fd = -1,
                                 .stdout_fd = fd,
                                 .stderr_fd = -1,
                                 .no_new_privs = true,
                                 .drop_caps = true };
    assert_int_equal(spawn_wait(&o), 0);
    close(fd);
    assert_int_equal(fs_read_file(out, 1 << 16, &text, NULL, &err), 0);
    assert_non_null(strstr(text, "\nNoNewPrivs:\t1\n"));
    assert_non_null(strstr(text, "\nCapInh:\t0000000000000000\n"));
    assert_non_null(strstr(text, "\nCapPrm:\t0000000000000000\n"));
    assert_non_null(strstr(text, "\nCapEff:\t0000000000000000\n"));
    assert_non_null(strstr(text, "\nCapAmb:\t0000000000000000\n"));
    /* Only a caller with CAP_SETPCAP (root here) can empty the bounding set. */
    if (geteuid() == 0)
        assert_non_null(strstr(text, "\nCapBnd:\t0000000000000000\n"));
    /* Only the child gave them up. */
    free(text);
    text = NULL;
    assert_int_equal(fs_read_file("/proc/self/status", 1 << 16, &text, NULL, &err), 0);
    if (geteuid() == 0)
        assert_null(strstr(text, "\nCapEff:\t0000000000000000\n"));
    assert_int_equal(fs_rm_rf(dir, &err), 0);
}

struct waiter {
    const char *path;
    int timeout_ms;
    int r;
    pthread_t t;
};

static void *
wait_thread(void *arg)
{
    struct waiter *w = arg;
    struct tp_err err = { 0 };
    w->r = sock_connect_when_ready(w->path, w->timeout_ms, &err);
    tp_err_clear(&err);
    return NULL;
}

static int
bound_socket(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    strcpy(sa.sun_path, path);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void
test_connect_when_ready(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *path = fs_path_join(dir, "api.sock");
    struct tp_err err = { 0 };
    struct waiter w = { .path = path, .timeout_ms = 10000 };
    (void)state;

    /* Appears while we wait: bound first (connect refused), listening a moment later. */
    assert_int_equal(pthread_create(&w.t, NULL, wait_thread, &w), 0);
    int fd = bound_socket(path);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(pthread_join(w.t, NULL), 0);
    assert_true(w.r >= 0);
    close(w.r);

    /* Already there. */
    int c = sock_connect_when_ready(path, 1000, &err);
    assert_true(c >= 0);
    close(c);
    close(fd);

    /* Never appears: bounded. */
    uint64_t t0 = now_ms();
    _cleanup_free_ char *none = fs_path_join(dir, "never.sock");
    assert_int_equal(sock_connect_when_ready(none, 50, &err), -ETIMEDOUT);
    assert_true(now_ms() - t0 >= 50);
    assert_true(now_ms() - t0 < 5000);
    tp_err_clear(&err);

    /* Bound but never listening: retried, then bounded too. */
    unlink(path);
    fd = bound_socket(path);
    assert_int_equal(sock_connect_when_ready(path, 30, &err), -ETIMEDOUT);
    tp_err_clear(&err);
    close(fd);
    assert_int_equal(fs_rm_rf(dir, &err), 0);
}

/* logs --since: RFC 3339, unix seconds, durations back from now; and the -t prefix format. */
static void
test_timefmt(void **state)
{
    const int64_t S = 1000000000LL;
    const int64_t now = 1796127600LL * S; /* 2026-12-01T12:20:00Z */
    int64_t t = 0;
    char buf[TIMEFMT_RFC3339_NS_MAX];
    (void)state;

    assert_int_equal(timefmt_parse_since("2026-12-01T11:40:00Z", now, &t, NULL), 0);
    assert_int_equal(t, 1796125200LL * S);
    assert_int_equal(timefmt_parse_since("2026-12-01t12:40:00.5+01:00", now, &t, NULL), 0);
    assert_int_equal(t, 1796125200LL * S + S / 2);
    assert_int_equal(timefmt_parse_since("2026-12-01T06:10:00.123456789-05:30", now, &t, NULL), 0);
    assert_int_equal(t, 1796125200LL * S + 123456789);
    assert_int_equal(timefmt_parse_since("2024-02-29T00:00:00Z", now, &t, NULL), 0);
    assert_int_equal(timefmt_parse_since("1796125200", now, &t, NULL), 0);
    assert_int_equal(t, 1796125200LL * S);
    assert_int_equal(timefmt_parse_since("1796125200.25", now, &t, NULL), 0);
    assert_int_equal(t, 1796125200LL * S + S / 4);
    assert_int_equal(timefmt_parse_since("0", now, &t, NULL), 0);
    assert_int_equal(t, 0);
    assert_int_equal(timefmt_parse_since("10m", now, &t, NULL), 0);
    assert_int_equal(t, now - 600 * S);
    assert_int_equal(timefmt_parse_since("1h30m", now, &t, NULL), 0);
    assert_int_equal(t, now - 5400 * S);
    assert_int_equal(timefmt_parse_since("45s", now, &t, NULL), 0);
    assert_int_equal(t, now - 45 * S);
    assert_int_equal(timefmt_parse_since("1.5h", now, &t, NULL), 0);
    assert_int_equal(t, now - 5400 * S);
    assert_int_equal(timefmt_parse_since("250ms", now, &t, NULL), 0);
    assert_int_equal(t, now - S / 4);
    assert_int_equal(timefmt_parse_since("2us3ns", now, &t, NULL), 0);
    assert_int_equal(t, now - 2003);

    const char *bad[] = { "",
                          "yesterday",
                          "-10m",
                          "10",
                          "10x",
                          "1h-5m",
                          "m",
                          ".s",
                          "1.",
                          "2026-12-01",
                          "2026-12-01T11:40:00",
                          "2026-13-01T00:00:00Z",
                          "2026-02-29T00:00:00Z",
                          "2026-12-01T24:00:00Z",
                          "2026-12-01T11:40:00.Z",
                          "2026-12-01T11:40:00.1234567891Z",
                          "2026-12-01T11:40:00+0100",
                          "2026-12-01T11:40:00Zjunk",
                          "99999999999999999999",
                          "9999999999h" };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        t = 7;
        int r = timefmt_parse_since(bad[k], now, &t, &err);
        if (strcmp(bad[k], "10") == 0) { /* a plain number is a unix time */
            assert_int_equal(r, 0);
            continue;
        }
        if (r != -EINVAL)
            fail_msg("'%s' parsed", bad[k]);
        assert_int_equal(t, 7);
        assert_non_null(strstr(err.msg, "is not a time"));
    }
    assert_int_equal(timefmt_parse_duration("1h", &t), 0);
    assert_int_equal(t, 3600 * S);
    assert_int_equal(timefmt_parse_duration("\xc2\xb5s", &t), -EINVAL);
    assert_int_equal(timefmt_parse_duration("3\xc2\xb5s", &t), 0);
    assert_int_equal(t, 3000);

    assert_int_equal(timefmt_rfc3339_ns(1796125200LL * S + 123456789, buf), 30);
    assert_string_equal(buf, "2026-12-01T11:40:00.123456789Z");
    timefmt_rfc3339_ns(5, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000000005Z");
    timefmt_rfc3339_ns(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999999999Z");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_chain),
        cmocka_unit_test(test_mkdir_p_empty_path),
        cmocka_unit_test(test_listen_replaces_only_sockets),
        cmocka_unit_test(test_atomic_write_and_read),
        cmocka_unit_test(test_clone_keeps_holes),
        cmocka_unit_test(test_proc_identity),
        cmocka_unit_test(test_spawn_reports_exec_failure),
        cmocka_unit_test(test_spawn_passes_only_mapped_fds),
        cmocka_unit_test(test_spawn_drops_privileges),
        cmocka_unit_test(test_connect_when_ready),
        cmocka_unit_test(test_timefmt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
