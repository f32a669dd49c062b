/* Unit tests for the agent's tar (guest-agent/tar.c): a tree round trip, interchange with GNU tar,
 * a file over 1 GiB streamed, and hostile archives that must not write outside their directory. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka.h needs stdarg, stddef and setjmp first. */
#include <cmocka.h>

#include "util/cleanup.h"
#include "util/fs.h"
#include "util/tar.h"
#include "util/xalloc.h"

#define LONG_DIR "a-directory-name-that-is-quite-long-0123456789-0123456789-0123456789-0123456789"
#define LONG_FILE                                                                         \
    "a-file-name-longer-than-ustar-allows-in-one-field-0123456789-0123456789-0123456789-" \
    "0123456789-0123456789-0123456789"

static char *
temp_dir(void)
{
    char *dir = xstrdup("/tmp/torpor-tar-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void
put_file(const char *dir, const char *name, const char *text, mode_t mode, time_t mtime)
{
    _cleanup_free_ char *path = fs_path_join(dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    struct timespec ts[2] = { { .tv_sec = mtime }, { .tv_sec = mtime } };
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
}

/* Not CLOEXEC: the shell commands of a test read it as /proc/self/fd/N. */
static int
open_tmpfile(void)
{
    int fd = open("/tmp", O_RDWR | O_TMPFILE, 0600);
    assert_true(fd >= 0);
    return fd;
}

/* Compare two trees: types, modes, sizes, contents, link targets and (but for symlinks'
 * parents) mtimes. */
static void
compare_trees(const char *a, const char *b)
{
    _cleanup_free_ char *cmd = xasprintf("diff -r --no-dereference -x fifo '%s' '%s' >&2", a, b);
    assert_int_equal(system(cmd), 0);
    /* Metadata diff ignores: stat lines of both trees, relative names, sorted. */
    _cleanup_free_ char *st = xasprintf("cd '%s' && find . -exec stat -c '%%n %%F %%a %%s %%Y %%u "
                                        "%%g' {} + | sort > /tmp/.tar-a.$$ &&"
                                        " cd '%s' && find . -exec stat -c '%%n %%F %%a %%s %%Y %%u "
                                        "%%g' {} + | sort > /tmp/.tar-b.$$ &&"
                                        " diff /tmp/.tar-a.$$ /tmp/.tar-b.$$ >&2; r=$?; rm -f "
                                        "/tmp/.tar-a.$$ /tmp/.tar-b.$$; exit $r",
                                        a, b);
    assert_int_equal(system(st), 0);
}

/* src/top: everything the writer has to carry. */
static void
make_tree(const char *src)
{
    _cleanup_free_ char *top = fs_path_join(src, "top");
    _cleanup_free_ char *deep = xasprintf("%s/top/d/" LONG_DIR, src);
    _cleanup_free_ char *emptydir = fs_path_join(top, "emptydir");
    _cleanup_free_ char *fifo = fs_path_join(top, "fifo");
    _cleanup_free_ char *link = fs_path_join(top, "link");
    _cleanup_free_ char *longlink = fs_path_join(top, "longlink");
    _cleanup_free_ char *cmd = xasprintf("mkdir -p '%s'", deep);

    assert_int_equal(system(cmd), 0);
    put_file(top, "a", "hello\n", 0640, 1000000000);
    put_file(top, "empty", "", 0600, 1000000001);
    put_file(top, "exec", "#!/bin/sh\n", 04755, 1000000002);
    put_file(deep, LONG_FILE, "deep\n", 0644, 1000000003);
    assert_int_equal(mkdir(emptydir, 0750), 0);
    assert_int_equal(mkfifo(fifo, 0620), 0);
    assert_int_equal(symlink("a", link), 0);
    assert_int_equal(symlink("d/" LONG_DIR "/" LONG_FILE, longlink), 0);
    _cleanup_free_ char *times =
        xasprintf("touch -h -d @1100000000 '%s' '%s' '%s' && chmod 0555 '%s/d' && "
                  "touch -d @1200000000 '%s' '%s/d' '%s'",
                  link, longlink, fifo, top, emptydir, top, top);
    assert_int_equal(system(times), 0);
}

static void
test_round_trip(void **state)
{
    _cleanup_free_ char *src = temp_dir(), *dst = temp_dir(), *gnu = temp_dir();
    _cleanup_free_ char *top = fs_path_join(src, "top");
    _cleanup_free_ char *out_top = fs_path_join(dst, "top");
    _cleanup_free_ char *gnu_top = fs_path_join(gnu, "top");
    int err = open_tmpfile();
    (void)state;

    make_tree(src);
    int fd = open_tmpfile();
    assert_int_equal(tar_create(fd, top, err), TAR_EXIT_OK);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(tar_extract(fd, dst, err), TAR_EXIT_OK);
    compare_trees(top, out_top);

    /* GNU tar reads what we write (pax names included). */
    _cleanup_free_ char *cmd = xasprintf("tar -xf /proc/self/fd/%d -C '%s'", fd, gnu);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(system(cmd), 0);
    compare_trees(top, gnu_top);
    close(fd);

    /* The same tree again on top of the first extraction: files replaced, dirs merged. */
    fd = open_tmpfile();
    assert_int_equal(tar_create(fd, top, err), TAR_EXIT_OK);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(tar_extract(fd, dst, err), TAR_EXIT_OK);
    compare_trees(top, out_top);
    close(fd);

    /* A trailing slash and a "." leaf name the same top entry. */
    fd = open_tmpfile();
    _cleanup_free_ char *dotted = xasprintf("%s/top/d/..", src);
    assert_int_equal(tar_create(fd, dotted, err), TAR_EXIT_OK);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    _cleanup_free_ char *list = xasprintf("tar -tf /proc/self/fd/%d | head -1 | grep -qx top/", fd);
    assert_int_equal(system(list), 0);
    close(fd);

    close(err);
    _cleanup_free_ char *fix = xasprintf("chmod -R u+w '%s' '%s' '%s'", src, dst, gnu);
    assert_int_equal(system(fix), 0);
    assert_int_equal(fs_rm_rf(src, NULL), 0);
    assert_int_equal(fs_rm_rf(dst, NULL), 0);
    assert_int_equal(fs_rm_rf(gnu, NULL), 0);
}

/* Archives written by GNU tar in its own format (long names as 'L'/'K' entries) and in pax. */
static void
test_gnu_archives(void **state)
{
    static const char *const formats[] = { "gnu", "pax", "ustar" };
    _cleanup_free_ char *src = temp_dir();
    _cleanup_free_ char *top = fs_path_join(src, "top");
    int err = open_tmpfile();
    (void)state;

    make_tree(src);
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        _cleanup_free_ char *dst = temp_dir();
        _cleanup_free_ char *out_top = fs_path_join(dst, "top");
        _cleanup_free_ char *arch = fs_path_join(dst, "../torpor-tar-archive.tar");
        /* ustar cannot hold the long names: only the short part of the tree there. */
        bool ustar = strcmp(formats[i], "ustar") == 0;
        _cleanup_free_ char *cmd =
            xasprintf("tar --format=%s -cf '%s' -C '%s' %s", formats[i], arch, src,
                      ustar ? "top/a top/empty top/exec top/link top/fifo top/emptydir" : "top");
        assert_int_equal(system(cmd), 0);
        int fd = open(arch, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(tar_extract(fd, dst, err), TAR_EXIT_OK);
        close(fd);
        unlink(arch);
        if (!ustar) {
            compare_trees(top, out_top);
        } else {
            _cleanup_free_ char *a = fs_path_join(out_top, "a");
            struct stat st;
            assert_int_equal(lstat(a, &st), 0);
            assert_int_equal(st.st_mode & 07777, 0640);
            assert_int_equal(st.st_mtime, 1000000000);
        }
        _cleanup_free_ char *fix = xasprintf("chmod -R u+w '%s'", dst);
        assert_int_equal(system(fix), 0);
        assert_int_equal(fs_rm_rf(dst, NULL), 0);
    }
    close(err);
    _cleanup_free_ char *fix = xasprintf("chmod -R u+w '%s'", src);
    assert_int_equal(system(fix), 0);
    assert_int_equal(fs_rm_rf(src, NULL), 0);
}

static ssize_t
fd_read(void *ctx, void *buf, size_t len)
{
    ssize_t n = read(*(int *)ctx, buf, len);
    return n < 0 ? -errno : n;
}

/* A sparse file over 1 GiB goes through a pipe in chunks: the reader sees every byte. */
static void
test_large_file(void **state)
{
    _cleanup_free_ char *src = temp_dir();
    _cleanup_free_ char *big = fs_path_join(src, "big");
    uint64_t size = (1ull << 30) + 12345;
    int p[2];
    (void)state;

    int fd = open(big, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size - 1), 0);
    assert_int_equal(pwrite(fd, "Z", 1, (off_t)size - 1), 1);
    assert_int_equal(pwrite(fd, "A", 1, 0), 1);
    close(fd);

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        _exit(tar_create(p[1], big, STDERR_FILENO));
    }
    close(p[1]);
    struct tar_reader r = { .read = fd_read, .ctx = &p[0] };
    struct tar_entry e;
    assert_int_equal(tar_next(&r, &e), 1);
    assert_string_equal(e.name, "big");
    assert_int_equal(e.type, TAR_REG);
    assert_int_equal(e.size, size);
    static char buf[65536];
    uint64_t got = 0;
    char first = 0, last = 0;
    ssize_t n;
    while ((n = tar_read_data(&r, buf, sizeof(buf))) > 0) {
        if (got == 0)
            first = buf[0];
        last = buf[n - 1];
        got += (uint64_t)n;
    }
    assert_int_equal(n, 0);
    assert_int_equal(got, size);
    assert_int_equal(first, 'A');
    assert_int_equal(last, 'Z');
    tar_entry_clear(&e);
    assert_int_equal(tar_next(&r, &e), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(p[0]);
    assert_int_equal(fs_rm_rf(src, NULL), 0);
}

/* ---- hand-made archives ---- */

struct arch {
    uint8_t *data;
    size_t len;
};

static void
arch_put(struct arch *a, const void *p, size_t n)
{
    a->data = xrealloc(a->data, a->len + n);
    memcpy(a->data + a->len, p, n);
    a->len += n;
}

static void
arch_entry(struct arch *a, const char *name, char type, const char *link, const char *data)
{
    uint8_t h[TAR_BLOCK] = { 0 };
    size_t size = data ? strlen(data) : 0;
    unsigned sum = 0;

    memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
    snprintf((char *)h + 100, 8, "%07o", 0644);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011o", (unsigned)size);
    snprintf((char *)h + 136, 12, "%011o", 1000);
    h[156] = (uint8_t)type;
    if (link)
        memcpy(h + 157, link, strlen(link));
    memcpy(h + 257,
           "ustar\0"
           "00",
           8);
    memset(h + 148, ' ', 8);
    for (size_t i = 0; i < TAR_BLOCK; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    arch_put(a, h, sizeof(h));
    if (size) {
        uint8_t pad[TAR_BLOCK] = { 0 };
        arch_put(a, data, size);
        arch_put(a, pad, (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK);
    }
}

static void
arch_end(struct arch *a)
{
    uint8_t zero[2 * TAR_BLOCK] = { 0 };
    arch_put(a, zero, sizeof(zero));
}

static int
arch_extract(struct arch *a, const char *dir, char **ret_err)
{
    int fd = open_tmpfile(), err = open_tmpfile();
    assert_int_equal(write(fd, a->data, a->len), (ssize_t)a->len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    int r = tar_extract(fd, dir, err);
    char *msg = xzalloc(4096);
    assert_true(pread(err, msg, 4095, 0) >= 0);
    close(fd);
    close(err);
    free(a->data);
    *a = (struct arch){ 0 };
    *ret_err = msg;
    return r;
}

static size_t
count_entries(const char *dir)
{
    _cleanup_free_ char *cmd = xasprintf("test $(ls -A '%s' | wc -l) -eq 0", dir);
    return system(cmd) == 0 ? 0 : 1;
}

static void
test_hostile(void **state)
{
    _cleanup_free_ char *base = temp_dir();
    _cleanup_free_ char *dir = fs_path_join(base, "dir");
    _cleanup_free_ char *outside = fs_path_join(base, "outside");
    _cleanup_free_ char *escaped = fs_path_join(base, "x");
    struct arch a = { 0 };
    char *msg;
    (void)state;

    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkdir(outside, 0755), 0);

    arch_entry(&a, "ok", TAR_REG, NULL, "fine");
    arch_entry(&a, "../x", TAR_REG, NULL, "evil");
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    assert_non_null(strstr(msg, "refusing '../x'"));
    free(msg);
    assert_int_equal(access(escaped, F_OK), -1);

    arch_entry(&a, "./sub/../../x", TAR_REG, NULL, "evil");
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    free(msg);
    assert_int_equal(access(escaped, F_OK), -1);

    _cleanup_free_ char *abs = fs_path_join(outside, "abs");
    arch_entry(&a, abs, TAR_REG, NULL, "evil");
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    assert_non_null(strstr(msg, "absolute"));
    free(msg);

    /* A symlink to outside, then a file through it. */
    arch_entry(&a, "l", TAR_SYM, outside, NULL);
    arch_entry(&a, "l/x", TAR_REG, NULL, "evil");
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    assert_non_null(strstr(msg, "'l' is a symbolic link"));
    free(msg);
    /* ... or a directory through it, or a hard link to something behind it. */
    arch_entry(&a, "l/sub/", TAR_DIR, NULL, NULL);
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    free(msg);
    arch_entry(&a, "h", TAR_LNK, "l/secret", NULL);
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    free(msg);
    arch_entry(&a, "h", TAR_LNK, "../dir/ok", NULL);
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    assert_non_null(strstr(msg, "hard link"));
    free(msg);
    /* A file named like the symlink replaces the link; nothing is written through it. */
    arch_entry(&a, "l", TAR_REG, NULL, "replaced");
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_OK);
    free(msg);
    assert_int_equal(count_entries(outside), 0);

    /* A symlink to a directory that already exists inside DIR is not followed either. */
    _cleanup_free_ char *pre = fs_path_join(dir, "pre");
    assert_int_equal(symlink(outside, pre), 0);
    arch_entry(&a, "pre/x", TAR_REG, NULL, "evil");
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    free(msg);
    assert_int_equal(count_entries(outside), 0);
    assert_int_equal(access(escaped, F_OK), -1);

    /* Only DIR and outside in base: nothing escaped anywhere. */
    _cleanup_free_ char *only =
        xasprintf("test \"$(ls -A '%s' | tr '\\n' ' ')\" = 'dir outside '", base);
    assert_int_equal(system(only), 0);

    /* Hard links inside work; what they link is the file, not a copy. */
    arch_entry(&a, "f", TAR_REG, NULL, "data");
    arch_entry(&a, "./g", TAR_LNK, "./f", NULL);
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_OK);
    free(msg);
    _cleanup_free_ char *f = fs_path_join(dir, "f"), *g = fs_path_join(dir, "g");
    struct stat sf, sg;
    assert_int_equal(stat(f, &sf), 0);
    assert_int_equal(stat(g, &sg), 0);
    assert_int_equal(sf.st_ino, sg.st_ino);

    /* Not a directory, or missing: exit 2. */
    arch_end(&a);
    _cleanup_free_ char *missing = fs_path_join(base, "missing");
    assert_int_equal(arch_extract(&a, missing, &msg), TAR_EXIT_NOTFOUND);
    free(msg);
    arch_end(&a);
    assert_int_equal(arch_extract(&a, f, &msg), TAR_EXIT_NOTFOUND);
    free(msg);
    int err = open_tmpfile(), fd = open_tmpfile();
    assert_int_equal(tar_create(fd, missing, err), TAR_EXIT_NOTFOUND);
    close(fd);
    close(err);
    assert_int_equal(fs_rm_rf(base, NULL), 0);
}

/* torpor cp's renames: a top entry written under another name, a top component renamed or
 * dropped on extraction (hard links follow their renamed targets). */
static void
test_renames(void **state)
{
    _cleanup_free_ char *src = temp_dir(), *dst = temp_dir();
    _cleanup_free_ char *top = fs_path_join(src, "top");
    int err = open_tmpfile();
    struct stat st;
    (void)state;

    assert_int_equal(mkdir(top, 0755), 0);
    put_file(top, "f", "one", 0640, 1000000);
    _cleanup_free_ char *f = fs_path_join(top, "f");

    /* Written as "renamed": extracted under that name. */
    int fd = open_tmpfile();
    assert_int_equal(tar_create_as(fd, f, "renamed", err), TAR_EXIT_OK);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(tar_extract(fd, dst, err), TAR_EXIT_OK);
    _cleanup_free_ char *renamed = fs_path_join(dst, "renamed");
    assert_int_equal(stat(renamed, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    close(fd);

    /* The top directory as "copy", and with "" its contents straight into dst. */
    fd = open_tmpfile();
    assert_int_equal(tar_create(fd, top, err), TAR_EXIT_OK);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(tar_extract_as(fd, dst, "copy", err), TAR_EXIT_OK);
    _cleanup_free_ char *copied = fs_path_join(dst, "copy/f");
    assert_int_equal(stat(copied, &st), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(tar_extract_as(fd, dst, "", err), TAR_EXIT_OK);
    _cleanup_free_ char *flat = fs_path_join(dst, "f");
    assert_int_equal(stat(flat, &st), 0);
    _cleanup_free_ char *no_top = fs_path_join(dst, "top");
    assert_int_equal(stat(no_top, &st), -1);
    close(fd);

    /* "." as the written top: the contents only, as docker cp SRC/. */
    fd = open_tmpfile();
    _cleanup_free_ char *dst2 = temp_dir();
    assert_int_equal(tar_create_as(fd, top, ".", err), TAR_EXIT_OK);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(tar_extract(fd, dst2, err), TAR_EXIT_OK);
    _cleanup_free_ char *inner = fs_path_join(dst2, "f");
    assert_int_equal(stat(inner, &st), 0);
    close(fd);

    /* A rename never turns a refused name into an accepted one. */
    struct arch a = { 0 };
    arch_entry(&a, "../evil", TAR_REG, NULL, "x");
    arch_end(&a);
    fd = open_tmpfile();
    assert_int_equal(write(fd, a.data, a.len), (ssize_t)a.len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(tar_extract_as(fd, dst2, "ok", err), TAR_EXIT_FAIL);
    free(a.data);
    close(fd);

    close(err);
    assert_int_equal(fs_rm_rf(src, NULL), 0);
    assert_int_equal(fs_rm_rf(dst, NULL), 0);
    assert_int_equal(fs_rm_rf(dst2, NULL), 0);
}

/* Malformed input is an error, never a crash or a partial write outside. */
static void
test_malformed(void **state)
{
    _cleanup_free_ char *dir = temp_dir();
    struct arch a = { 0 };
    char *msg;
    (void)state;

    /* Truncated data. */
    arch_entry(&a, "t", TAR_REG, NULL, "0123456789");
    a.len -= TAR_BLOCK - 4;
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    assert_non_null(strstr(msg, "truncated"));
    free(msg);
    /* A bad checksum. */
    arch_entry(&a, "c", TAR_REG, NULL, NULL);
    a.data[0] ^= 1;
    arch_end(&a);
    assert_int_equal(arch_extract(&a, dir, &msg), TAR_EXIT_FAIL);
    assert_non_null(strstr(msg, "checksum"));
    free(msg);
    /* A pax size of 8 GiB is taken (the data is missing here). */
    static const char pax[] = "19 size=8589934592\n";
    arch_entry(&a, "././@PaxHeader", 'x', NULL, pax);
    arch_entry(&a, "huge", TAR_REG, NULL, NULL);
    int fd = open_tmpfile();
    assert_int_equal(write(fd, a.data, a.len), (ssize_t)a.len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    free(a.data);
    a = (struct arch){ 0 };
    struct tar_reader r = { .read = fd_read, .ctx = &fd };
    struct tar_entry e;
    assert_int_equal(tar_next(&r, &e), 1);
    assert_int_equal(e.size, 8589934592ull);
    tar_entry_clear(&e);
    assert_int_equal(tar_next(&r, &e), -EINVAL);
    close(fd);
    /* Names: what tar_name_split keeps. */
    char n1[] = "./a//b/./c/", n2[] = "././", n3[] = "a/../b", n4[] = ".//x";
    char *c[8];
    assert_int_equal(tar_name_split(n1, c, 8), 3);
    assert_string_equal(c[2], "c");
    assert_int_equal(tar_name_split(n2, c, 8), 0);
    assert_int_equal(tar_name_split(n3, c, 8), -EINVAL);
    assert_int_equal(tar_name_split(n4, c, 8), -EINVAL);
    assert_int_equal(count_entries(dir), 0); /* "t" was cut short: removed, not left half */
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_gnu_archives),
        cmocka_unit_test(test_large_file), cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_malformed),  cmocka_unit_test(test_renames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
