/* Unit tests for image/: the cpio writer, kernel versions, initramfs contents and caching, and
 * ext4 root disks checked with e2fsprogs' own tools. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "image/image-internal.h"
#include "image/image.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/xalloc.h"

/* ------------------------------------------------------------------ helpers */

static char *
make_tmpdir(void)
{
    char tmpl[] = "/tmp/torpor-image-test-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return xstrdup(tmpl);
}

static void
write_file(const char *path, const char *text)
{
    struct tp_err err = { 0 };
    assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, &err), 0);
}

static void
mkdirs(const char *path)
{
    assert_int_equal(fs_mkdir_p(path, 0755, NULL), 0);
}

/* Output of a shell command (bounded), NULL if it could not run. */
static char *
run_capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 20, len = 0, n;
    char *buf;

    if (!p)
        return NULL;
    buf = xmalloc(cap + 1);
    while (len < cap && (n = fread(buf + len, 1, cap - len, p)) > 0)
        len += n;
    buf[len] = '\0';
    pclose(p);
    return buf;
}

static bool
have_tool(const char *name)
{
    _cleanup_free_ char *p = NULL;
    return image_find_tool(name, &p, NULL) == 0;
}

/* A parsed newc entry. */
struct entry {
    char name[256];
    uint32_t mode, nlink, size;
    const char *data;
};

static uint32_t
hex8(const char *s)
{
    char b[9];
    memcpy(b, s, 8);
    b[8] = '\0';
    return (uint32_t)strtoul(b, NULL, 16);
}

/* Independent newc parser: returns the number of entries before the trailer, checks magic and
 * 4-byte alignment on the way (a failed check makes the count -1). */
static int
parse_newc(const char *buf, size_t len, struct entry *out, int max)
{
    size_t off = 0;
    int n = 0;

    for (;;) {
        if (off + 110 > len || memcmp(buf + off, "070701", 6) != 0 || off % 4 != 0)
            return -1;
        const char *h = buf + off;
        uint32_t mode = hex8(h + 14), nlink = hex8(h + 38), size = hex8(h + 54),
                 namesize = hex8(h + 94);
        const char *name = h + 110;
        if (off + 110 + namesize > len || name[namesize - 1] != '\0')
            return -1;
        off = (off + 110 + namesize + 3) & ~(size_t)3;
        if (strcmp(name, "TRAILER!!!") == 0)
            return n;
        if (n >= max || off + size > len || namesize > sizeof(out[n].name))
            return -1;
        memcpy(out[n].name, name, namesize);
        out[n].mode = mode;
        out[n].nlink = nlink;
        out[n].size = size;
        out[n].data = buf + off;
        off = (off + size + 3) & ~(size_t)3;
        n++;
    }
}

static const struct entry *
find_entry(const struct entry *e, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0)
            return &e[i];
    return NULL;
}

/* A fake kernel tree: DIR/boot/vmlinuz-9.9.9-fake and DIR/lib/modules/9.9.9-fake/kernel/... with
 * one small .ko per wanted module, spread over subdirectories as Debian does. */
static char *
make_fake_kernel(const char *dir, const char *skip, bool compress_last)
{
    _cleanup_free_ char *boot = fs_path_join(dir, "boot");
    char *kernel = fs_path_join(boot, "vmlinuz-9.9.9-fake");

    mkdirs(boot);
    write_file(kernel, "not really a kernel");
    for (size_t i = 0; i < image_initrd_n_modules; i++) {
        const char *m = image_initrd_modules[i];
        if (skip && strcmp(m, skip) == 0)
            continue;
        _cleanup_free_ char *sub =
            xasprintf("%s/lib/modules/9.9.9-fake/kernel/drivers/d%zu", dir, i % 3);
        bool z = compress_last && i == image_initrd_n_modules - 1;
        _cleanup_free_ char *p = xasprintf("%s/%s.ko%s", sub, m, z ? ".xz" : "");
        _cleanup_free_ char *body = xasprintf("module %s", m);
        mkdirs(sub);
        write_file(p, body);
    }
    return kernel;
}

/* TORPOR_TEST_KERNEL, else the default kernel scripts/fetch-kernel put in the cache. */
static const char *
real_kernel(void)
{
    static char *cached;
    const char *k = getenv("TORPOR_TEST_KERNEL");
    const char *cache = getenv("TORPOR_CACHE_DIR");

    if (k && *k)
        return fs_exists(k) ? k : NULL;
    if (!cached) {
        struct image_env env = { .cache_dir = cache && *cache ? cache : "/var/cache/torpor" };
        if (image_default_kernel(&env, &cached, NULL) < 0)
            return NULL;
    }
    return cached;
}

/* ------------------------------------------------------------------ cpio */

static void
test_cpio_round_trip(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *path = fs_path_join(dir, "a.cpio");
    _cleanup_free_ char *buf = NULL;
    struct tp_err err = { 0 };
    struct cpio_writer w;
    struct entry e[8];
    size_t len;
    (void)state;

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    cpio_writer_init(&w, fd);
    assert_int_equal(cpio_add_dir(&w, "/dev", 0755, &err), 0);
    assert_int_equal(cpio_add_dir(&w, "lib/modules", 0700, &err), 0);
    assert_int_equal(cpio_add_file(&w, "/init", 0755, "#!/bin/sh\n", 10, &err), 0);
    assert_int_equal(cpio_add_file(&w, "lib/modules/x.ko", 0644, "abc", 3, &err), 0);
    assert_int_equal(cpio_add_file(&w, "empty", 0600, NULL, 0, &err), 0);
    assert_int_equal(cpio_add_symlink(&w, "sh", "/bin/busybox", &err), 0);
    assert_int_equal(cpio_finish(&w, &err), 0);
    assert_int_equal(w.offset % 4, 0);
    close(fd);

    assert_int_equal(fs_read_file(path, 1 << 20, &buf, &len, &err), 0);
    assert_int_equal(len, w.offset);
    int n = parse_newc(buf, len, e, 8);
    assert_int_equal(n, 6);
    assert_string_equal(e[0].name, "dev");
    assert_int_equal(e[0].mode, S_IFDIR | 0755);
    assert_int_equal(e[1].mode, S_IFDIR | 0700);
    assert_string_equal(e[2].name, "init");
    assert_int_equal(e[2].mode, S_IFREG | 0755);
    assert_int_equal(e[2].size, 10);
    assert_memory_equal(e[2].data, "#!/bin/sh\n", 10);
    assert_string_equal(e[3].name, "lib/modules/x.ko");
    assert_int_equal(e[3].size, 3);
    assert_memory_equal(e[3].data, "abc", 3);
    assert_int_equal(e[4].size, 0);
    assert_int_equal(e[4].mode, S_IFREG | 0600);
    assert_int_equal(e[5].mode, S_IFLNK | 0777);
    assert_memory_equal(e[5].data, "/bin/busybox", 12);

    /* GNU cpio, an independent reader, agrees on names and kinds. */
    if (have_tool("cpio")) {
        _cleanup_free_ char *cmd = xasprintf("cpio -itv --quiet < '%s' 2>&1", path);
        _cleanup_free_ char *out = run_capture(cmd);
        assert_non_null(out);
        assert_non_null(strstr(out, "drwxr-xr-x"));
        assert_non_null(strstr(out, " init\n"));
        assert_non_null(strstr(out, "lib/modules/x.ko\n"));
        assert_non_null(strstr(out, "sh -> /bin/busybox"));
        assert_null(strstr(out, "rror"));
    }
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

/* ------------------------------------------------------------------ kernels */

static void
test_kernel_version_from_name(void **state)
{
    _cleanup_free_ char *v = NULL;
    struct tp_err err = { 0 };
    (void)state;

    /* Parsed from the name alone: the file need not exist. */
    assert_int_equal(image_kernel_version("/x/boot/vmlinuz-6.1.0-56-cloud-amd64", &v, &err), 0);
    assert_string_equal(v, "6.1.0-56-cloud-amd64");
}

static void
test_kernel_version_from_header(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *link = fs_path_join(dir, "kernel");
    _cleanup_free_ char *junk = fs_path_join(dir, "junk");
    _cleanup_free_ char *v = NULL;
    struct tp_err err = { 0 };
    const char *k = real_kernel();
    (void)state;

    write_file(junk, "this is not a bzImage, just some text long enough to be read ........"
                     "..................................................................."
                     "..................................................................."
                     "..................................................................."
                     "..................................................................."
                     "..................................................................."
                     "...................................................................");
    assert_int_equal(image_kernel_version(junk, &v, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "not a bzImage"));
    assert_null(v);
    tp_err_clear(&err);

    if (!k) {
        assert_int_equal(fs_rm_rf(dir, NULL), 0);
        skip(); /* set TORPOR_TEST_KERNEL to a vmlinuz-<ver> (scripts/fetch-kernel) */
    }
    /* A name that says nothing forces the header path. */
    assert_int_equal(symlink(k, link), 0);
    assert_int_equal(image_kernel_version(link, &v, &err), 0);
    const char *base = strrchr(k, '/');
    base = base ? base + 1 : k;
    if (strncmp(base, "vmlinuz-", 8) == 0)
        assert_string_equal(v, base + 8);
    else
        assert_true(strlen(v) > 3 && v[0] >= '2' && v[0] <= '9' && strchr(v, '.'));
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

static void
test_default_kernel(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *boot = xasprintf("%s/kernel/boot", dir);
    _cleanup_free_ char *a = fs_path_join(boot, "vmlinuz-6.1.0-9-cloud-amd64");
    _cleanup_free_ char *b = fs_path_join(boot, "vmlinuz-6.1.0-56-cloud-amd64");
    _cleanup_free_ char *k = NULL;
    struct image_env env = { .cache_dir = dir };
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(image_default_kernel(&env, &k, &err), -ENOENT);
    assert_non_null(strstr(tp_err_msg(&err), "scripts/fetch-kernel"));
    assert_null(k);
    tp_err_clear(&err);

    mkdirs(boot);
    write_file(a, "a");
    write_file(b, "b");
    /* Version order, not byte order: -56 is newer than -9. */
    assert_int_equal(image_default_kernel(&env, &k, &err), 0);
    assert_string_equal(k, b);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

/* ------------------------------------------------------------------ initramfs */

static void
check_initrd(const char *path, const char *agent_text, bool fake)
{
    _cleanup_free_ char *buf = NULL;
    struct entry *e = xnew(struct entry, 64);
    size_t len;

    assert_int_equal(fs_read_file(path, 64u << 20, &buf, &len, NULL), 0);
    int n = parse_newc(buf, len, e, 64);
    assert_true(n > 0);

    const struct entry *init = find_entry(e, n, "init");
    assert_non_null(init);
    assert_int_equal(init->mode, S_IFREG | 0755);
    assert_int_equal(init->size, strlen(agent_text));
    assert_memory_equal(init->data, agent_text, init->size);
    static const char *const dirs[] = {
        "dev", "proc", "sys", "run", "tmp", "newroot", "lib/modules"
    };
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        const struct entry *d = find_entry(e, n, dirs[i]);
        assert_non_null(d);
        assert_int_equal(d->mode & S_IFMT, S_IFDIR);
    }

    const struct entry *order = find_entry(e, n, "lib/modules/torpor.order");
    assert_non_null(order);
    _cleanup_free_ char *text = xstrndup(order->data, order->size);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    for (size_t i = 0; i < image_initrd_n_modules; i++) {
        _cleanup_free_ char *want = xasprintf("%s.ko", image_initrd_modules[i]);
        _cleanup_free_ char *name = xasprintf("lib/modules/%s", want);
        assert_non_null(line);
        assert_string_equal(line, want); /* load order: dependencies first */
        const struct entry *m = find_entry(e, n, name);
        assert_non_null(m);
        assert_int_equal(m->mode, S_IFREG | 0644);
        if (fake) {
            _cleanup_free_ char *body = xasprintf("module %s", image_initrd_modules[i]);
            assert_int_equal(m->size, strlen(body));
            assert_memory_equal(m->data, body, m->size);
        } else {
            /* A real module is an ELF relocatable object. */
            assert_true(m->size > 64);
            assert_memory_equal(m->data, "\177ELF", 4);
        }
        line = strtok_r(NULL, "\n", &save);
    }
    assert_null(line);
    free(e);
}

static void
test_initrd_fake_kernel_and_cache(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *cache = fs_path_join(dir, "cache");
    _cleanup_free_ char *agent = fs_path_join(dir, "agent");
    _cleanup_free_ char *kernel = make_fake_kernel(dir, NULL, false);
    _cleanup_free_ char *p1 = NULL, *p2 = NULL, *p3 = NULL;
    struct image_env env = { .cache_dir = cache, .agent_path = agent };
    struct tp_err err = { 0 };
    struct stat s1, s2;
    (void)state;

    write_file(agent, "agent v1");
    assert_int_equal(image_initrd(&env, kernel, &p1, &err), 0);
    assert_non_null(strstr(p1, "/initrd/"));
    check_initrd(p1, "agent v1", true);

    /* Same inputs: the same file, not rewritten. */
    assert_int_equal(stat(p1, &s1), 0);
    assert_int_equal(image_initrd(&env, kernel, &p2, &err), 0);
    assert_string_equal(p1, p2);
    assert_int_equal(stat(p2, &s2), 0);
    assert_int_equal(s1.st_ino, s2.st_ino);
    assert_int_equal(s1.st_mtim.tv_sec, s2.st_mtim.tv_sec);
    assert_int_equal(s1.st_mtim.tv_nsec, s2.st_mtim.tv_nsec);

    /* A new agent is a new key. */
    write_file(agent, "agent v2");
    assert_int_equal(image_initrd(&env, kernel, &p3, &err), 0);
    assert_string_not_equal(p1, p3);
    check_initrd(p3, "agent v2", true);
    assert_true(fs_exists(p1));
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

static void
test_initrd_missing_module(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *agent = fs_path_join(dir, "agent");
    _cleanup_free_ char *kernel = make_fake_kernel(dir, "virtio_blk", false);
    _cleanup_free_ char *p = NULL;
    struct image_env env = { .cache_dir = dir, .agent_path = agent };
    struct tp_err err = { 0 };
    (void)state;

    write_file(agent, "agent");
    assert_int_equal(image_initrd(&env, kernel, &p, &err), -ENOENT);
    assert_non_null(strstr(tp_err_msg(&err), "'virtio_blk'"));
    assert_null(p);
    tp_err_clear(&err);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

static void
test_initrd_compressed_module(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *agent = fs_path_join(dir, "agent");
    _cleanup_free_ char *kernel = make_fake_kernel(dir, NULL, true);
    _cleanup_free_ char *p = NULL;
    struct image_env env = { .cache_dir = dir, .agent_path = agent };
    struct tp_err err = { 0 };
    (void)state;

    write_file(agent, "agent");
    assert_int_equal(image_initrd(&env, kernel, &p, &err), -EOPNOTSUPP);
    assert_non_null(strstr(tp_err_msg(&err), "compressed"));
    assert_null(p);
    tp_err_clear(&err);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

struct build_arg {
    const struct image_env *env;
    const char *kernel;
    char *path;
    int r;
};

static void *
build_thread(void *p)
{
    struct build_arg *a = p;
    a->r = image_initrd(a->env, a->kernel, &a->path, NULL);
    return NULL;
}

static void
test_initrd_concurrent_builders(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *cache = fs_path_join(dir, "cache");
    _cleanup_free_ char *agent = fs_path_join(dir, "agent");
    _cleanup_free_ char *kernel = make_fake_kernel(dir, NULL, false);
    _cleanup_free_ char *ls = NULL;
    struct image_env env = { .cache_dir = cache, .agent_path = agent };
    struct build_arg a[4];
    pthread_t t[4];
    (void)state;

    write_file(agent, "agent");
    for (int i = 0; i < 4; i++) {
        a[i] = (struct build_arg){ .env = &env, .kernel = kernel };
        assert_int_equal(pthread_create(&t[i], NULL, build_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a[i].r, 0);
        assert_string_equal(a[i].path, a[0].path);
    }
    check_initrd(a[0].path, "agent", true);
    /* Every temp file was renamed or removed: the cache holds exactly one entry. */
    _cleanup_free_ char *cmd = xasprintf("ls -A '%s/initrd' | wc -l", cache);
    ls = run_capture(cmd);
    assert_non_null(ls);
    assert_int_equal(atoi(ls), 1);
    for (int i = 0; i < 4; i++)
        free(a[i].path);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

static void
test_initrd_real_kernel(void **state)
{
    const char *k = real_kernel();
    (void)state;
    if (!k)
        skip(); /* set TORPOR_TEST_KERNEL to an extracted vmlinuz-<ver> (scripts/fetch-kernel) */

    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *agent = fs_path_join(dir, "agent");
    _cleanup_free_ char *p = NULL;
    struct image_env env = { .cache_dir = dir, .agent_path = agent };
    struct tp_err err = { 0 };

    write_file(agent, "#!/bin/sh\necho agent\n");
    if (image_initrd(&env, k, &p, &err) < 0)
        fail_msg("image_initrd: %s", tp_err_msg(&err));
    check_initrd(p, "#!/bin/sh\necho agent\n", false);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

/* ------------------------------------------------------------------ root disks */

static bool
have_rootfs_tools(void)
{
    return have_tool("mkfs.ext4") && have_tool("debugfs");
}

/* debugfs -R 'cmd' IMAGE, stderr dropped. */
static char *
debugfs(const char *image, const char *cmd)
{
    _cleanup_free_ char *tool = NULL;
    assert_int_equal(image_find_tool("debugfs", &tool, NULL), 0);
    _cleanup_free_ char *sh = xasprintf("'%s' -R '%s' '%s' 2>/dev/null", tool, cmd, image);
    char *out = run_capture(sh);
    assert_non_null(out);
    return out;
}

static void
test_root_disk_default(void **state)
{
    (void)state;
    if (!have_rootfs_tools() || !fs_exists("/bin/busybox"))
        skip();

    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *p = NULL, *p2 = NULL;
    struct image_env env = { .cache_dir = dir };
    struct tp_err err = { 0 };
    struct stat s1, s2;

    if (image_root_disk(&env, NULL, 0, &p, &err) < 0)
        fail_msg("image_root_disk: %s", tp_err_msg(&err));
    assert_non_null(strstr(p, "/rootfs/"));

    _cleanup_free_ char *bb = debugfs(p, "stat /bin/busybox");
    assert_non_null(strstr(bb, "Type: regular"));
    assert_non_null(strstr(bb, "User:     0   Group:     0"));
    assert_non_null(strstr(bb, "Mode:  0755"));
    _cleanup_free_ char *sh = debugfs(p, "stat /bin/sh");
    assert_non_null(strstr(sh, "Type: symlink"));
    assert_non_null(strstr(sh, "\"/bin/busybox\""));
    assert_non_null(strstr(sh, "User:     0   Group:     0"));
    _cleanup_free_ char *tmp = debugfs(p, "stat /tmp");
    assert_non_null(strstr(tmp, "Mode:  01777"));
    _cleanup_free_ char *osr = debugfs(p, "cat /etc/os-release");
    assert_non_null(strstr(osr, "NAME=torpor-busybox"));
    _cleanup_free_ char *sup = debugfs(p, "stats");
    assert_non_null(strstr(sup, "Filesystem volume name:   rootfs"));
    assert_non_null(strstr(sup, "Block size:               4096"));
    assert_non_null(strstr(sup, "Block count:              65536")); /* 256 MiB default */

    /* Cached: same path, same inode, untouched. */
    assert_int_equal(stat(p, &s1), 0);
    assert_int_equal(image_root_disk(&env, NULL, 0, &p2, &err), 0);
    assert_string_equal(p, p2);
    assert_int_equal(stat(p2, &s2), 0);
    assert_int_equal(s1.st_ino, s2.st_ino);
    assert_int_equal(s1.st_mtim.tv_nsec, s2.st_mtim.tv_nsec);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

static void
test_root_disk_from_dir(void **state)
{
    (void)state;
    if (!have_rootfs_tools())
        skip();

    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *cache = fs_path_join(dir, "cache");
    _cleanup_free_ char *src = fs_path_join(dir, "src");
    _cleanup_free_ char *etc = fs_path_join(src, "etc");
    _cleanup_free_ char *f = fs_path_join(etc, "motd");
    _cleanup_free_ char *lnk = fs_path_join(src, "link");
    _cleanup_free_ char *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL, *p5 = NULL;
    struct image_env env = { .cache_dir = cache };
    struct tp_err err = { 0 };

    struct stat st;

    mkdirs(etc);
    write_file(f, "hello\n");
    assert_int_equal(symlink("etc/motd", lnk), 0);
    if (image_root_disk(&env, src, 0, &p1, &err) < 0)
        fail_msg("image_root_disk: %s", tp_err_msg(&err));
    _cleanup_free_ char *cat = debugfs(p1, "cat /etc/motd");
    assert_string_equal(cat, "hello\n");
    /* The image holds the tree's bytes whatever their modes: it is the daemon user's alone. */
    assert_int_equal(stat(p1, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    _cleanup_free_ char *rootfs_dir = fs_path_join(cache, "rootfs");
    assert_int_equal(stat(rootfs_dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);

    /* Same tree: same key. */
    assert_int_equal(image_root_disk(&env, src, 0, &p2, &err), 0);
    assert_string_equal(p1, p2);
    /* A changed file, a changed mode, a changed link target, a changed size: new keys. */
    write_file(f, "hellO\n");
    assert_int_equal(image_root_disk(&env, src, 0, &p3, &err), 0);
    assert_string_not_equal(p1, p3);
    _cleanup_free_ char *cat3 = debugfs(p3, "cat /etc/motd");
    assert_string_equal(cat3, "hellO\n");
    assert_int_equal(chmod(f, 0600), 0);
    assert_int_equal(image_root_disk(&env, src, 0, &p4, &err), 0);
    assert_string_not_equal(p3, p4);
    assert_int_equal(image_root_disk(&env, src, 300, &p5, &err), 0);
    assert_string_not_equal(p4, p5);

    /* The result is itself a valid source: an ext4 file comes back as given. */
    _cleanup_free_ char *same = NULL;
    assert_int_equal(image_root_disk(&env, p5, 0, &same, &err), 0);
    assert_string_equal(same, p5);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

static void
test_root_disk_bad_sources(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *junk = fs_path_join(dir, "junk.img");
    _cleanup_free_ char *missing = fs_path_join(dir, "missing");
    _cleanup_free_ char *p = NULL;
    struct image_env env = { .cache_dir = dir };
    struct tp_err err = { 0 };
    (void)state;

    write_file(junk, "definitely not a filesystem");
    assert_int_equal(image_root_disk(&env, junk, 0, &p, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "not an ext4 image"));
    assert_null(p);
    tp_err_clear(&err);

    assert_int_equal(image_root_disk(&env, missing, 0, &p, &err), -ENOENT);
    assert_non_null(strstr(tp_err_msg(&err), missing));
    assert_null(p);
    tp_err_clear(&err);

    assert_int_equal(image_root_disk(&env, "/dev/null", 0, &p, &err), -EINVAL);
    assert_null(p);
    tp_err_clear(&err);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

/* The cache's two halves every builder shares: find the entry for a key, publish a temp file. */
static void
test_cache_lookup_publish(void **state)
{
    _cleanup_free_ char *dir = make_tmpdir();
    _cleanup_free_ char *cache = fs_path_join(dir, "cache");
    _cleanup_free_ char *sub = NULL, *entry = NULL, *sub2 = NULL, *entry2 = NULL, *tmp = NULL;
    _cleanup_free_ char *data = NULL, *want_sub = NULL;
    struct image_env env = { .cache_dir = cache };
    struct image_hash h = { 0 };
    struct tp_err err = { 0 };
    struct stat st;
    size_t len = 0;
    int fd;
    (void)state;

    assert_int_equal(image_hash_init(&h, &err), 0);
    image_hash_str(&h, "key");
    assert_int_equal(image_cache_lookup(&env, &h, "things", "bin", &sub, &entry, &err), 0);
    want_sub = fs_path_join(cache, "things");
    assert_string_equal(sub, want_sub);
    assert_true(fs_exists(sub)); /* created for the temp file */
    assert_int_equal(strncmp(entry, want_sub, strlen(want_sub)), 0);
    assert_int_equal(strlen(entry), strlen(want_sub) + 1 + IMAGE_HEX_LEN + strlen(".bin"));
    assert_string_equal(entry + strlen(entry) - 4, ".bin");
    assert_false(fs_exists(entry));

    fd = image_cache_tmpfile(sub, &tmp, &err);
    assert_true(fd >= 0);
    assert_int_equal(fd_write_all(fd, "payload", 7), 0);
    assert_int_equal(image_cache_publish(fd, tmp, entry, &err), 0);
    close(fd);
    assert_false(fs_exists(tmp));
    assert_int_equal(stat(entry, &st), 0);
    /* Entries carry the user's files: only the daemon's user may read them or list them. */
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(fs_read_file(entry, 64, &data, &len, &err), 0);
    assert_string_equal(data, "payload");

    /* The same key again: the same path, now found. */
    assert_int_equal(image_hash_init(&h, &err), 0);
    image_hash_str(&h, "key");
    assert_int_equal(image_cache_lookup(&env, &h, "things", "bin", &sub2, &entry2, &err), 1);
    assert_string_equal(entry2, entry);

    /* A directory an older torpor left open to everyone is closed on the next use. */
    assert_int_equal(chmod(sub, 0755), 0);
    free(sub2);
    free(entry2);
    assert_int_equal(image_hash_init(&h, &err), 0);
    image_hash_str(&h, "key");
    assert_int_equal(image_cache_lookup(&env, &h, "things", "bin", &sub2, &entry2, &err), 1);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
}

static void
test_run_reports_stderr(void **state)
{
    struct tp_err err = { 0 };
    char *argv[] = { (char *)"sh", (char *)"-c", (char *)"echo boom >&2; exit 3", NULL };
    (void)state;

    assert_int_equal(image_run(argv, -1, &err), -EIO);
    assert_non_null(strstr(tp_err_msg(&err), "status 3"));
    assert_non_null(strstr(tp_err_msg(&err), "boom"));
    tp_err_clear(&err);
}

/* A chatty tool says why it failed last: that part must survive the truncation. */
static void
test_run_reports_stderr_tail(void **state)
{
    struct tp_err err = { 0 };
    char *argv[] = { (char *)"sh", (char *)"-c",
                     (char *)"i=0; while [ $i -lt 400 ]; do echo progress line $i >&2; "
                             "i=$((i+1)); done; echo the real reason >&2; exit 1",
                     NULL };
    (void)state;

    assert_int_equal(image_run(argv, -1, &err), -EIO);
    assert_non_null(strstr(tp_err_msg(&err), "the real reason"));
    assert_null(strstr(tp_err_msg(&err), "progress line 0 "));
    tp_err_clear(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpio_round_trip),
        cmocka_unit_test(test_kernel_version_from_name),
        cmocka_unit_test(test_kernel_version_from_header),
        cmocka_unit_test(test_default_kernel),
        cmocka_unit_test(test_initrd_fake_kernel_and_cache),
        cmocka_unit_test(test_initrd_missing_module),
        cmocka_unit_test(test_initrd_compressed_module),
        cmocka_unit_test(test_initrd_concurrent_builders),
        cmocka_unit_test(test_initrd_real_kernel),
        cmocka_unit_test(test_root_disk_default),
        cmocka_unit_test(test_root_disk_from_dir),
        cmocka_unit_test(test_root_disk_bad_sources),
        cmocka_unit_test(test_cache_lookup_publish),
        cmocka_unit_test(test_run_reports_stderr),
        cmocka_unit_test(test_run_reports_stderr_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
