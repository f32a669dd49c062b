/* Unit tests for util/: error chains, atomic writes, sparse clones, process identity. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "util/cleanup.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/proc.h"
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_chain),
        cmocka_unit_test(test_atomic_write_and_read),
        cmocka_unit_test(test_clone_keeps_holes),
        cmocka_unit_test(test_proc_identity),
        cmocka_unit_test(test_spawn_reports_exec_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
