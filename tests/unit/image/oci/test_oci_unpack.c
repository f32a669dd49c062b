/* Unit tests for image/oci/unpack.c and rootfs.c (root disks built from a layout): layers written
 * here with libarchive (plain, gzip, zstd), whiteouts and opaque directories, every member type,
 * digests, and hostile layers. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "image/oci/oci.h"
#include "image/oci/rootfs.h"
#include "image/oci/unpack.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/xalloc.h"

/* A layer member: type f(ile) d(ir) l(symlink) h(ardlink) c(har device) p(fifo). */
struct m {
    char type;
    const char *path;
    const char *arg; /* content, symlink or hard link target */
    unsigned mode;
    unsigned uid;
};

struct fx {
    char *dir, *tree, *outside;
    int root_fd;
};

static int
setup(void **state)
{
    struct fx *f = xnew(struct fx, 1);
    char tmpl[] = "/tmp/torpor-unpack-test-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    f->dir = xstrdup(tmpl);
    f->tree = fs_path_join(f->dir, "tree");
    f->outside = fs_path_join(f->dir, "outside");
    assert_int_equal(mkdir(f->tree, 0755), 0);
    assert_int_equal(mkdir(f->outside, 0755), 0);
    f->root_fd = open(f->tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(f->root_fd >= 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    close(f->root_fd);
    fs_rm_rf(f->dir, NULL);
    free(f->dir);
    free(f->tree);
    free(f->outside);
    free(f);
    return 0;
}

/* The layer as a file at offset 0, its digest in ret_digest. */
static int
make_layer(const struct m *ms, size_t n, const char *filter, char ret_digest[8 + 64])
{
    int fd = memfd_create("layer", MFD_CLOEXEC);
    struct archive *a = archive_write_new();
    assert_true(fd >= 0);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (filter && strcmp(filter, "gzip") == 0)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    else if (filter && strcmp(filter, "zstd") == 0)
        assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_fd(a, fd), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, ms[i].path);
        archive_entry_set_perm(e, ms[i].mode ? ms[i].mode : 0644);
        archive_entry_set_uid(e, ms[i].uid);
        archive_entry_set_gid(e, ms[i].uid);
        archive_entry_set_mtime(e, 1000000000, 0);
        size_t size = 0;
        switch (ms[i].type) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            size = ms[i].arg ? strlen(ms[i].arg) : 0;
            archive_entry_set_size(e, (la_int64_t)size);
            archive_entry_xattr_add_entry(e, "user.torpor", "x", 1);
            break;
        case 'd':
            archive_entry_set_filetype(e, AE_IFDIR);
            break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, ms[i].arg);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, ms[i].arg);
            break;
        case 'c':
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_rdev(e, makedev(1, 3));
            break;
        case 'p':
            archive_entry_set_filetype(e, AE_IFIFO);
            break;
        }
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (size)
            assert_int_equal(archive_write_data(a, ms[i].arg, size), (la_ssize_t)size);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);

    unsigned char md[32];
    unsigned mdlen = 0;
    char buf[4096];
    ssize_t k;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    lseek(fd, 0, SEEK_SET);
    while ((k = read(fd, buf, sizeof(buf))) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)k);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    strcpy(ret_digest, "sha256:");
    for (unsigned i = 0; i < mdlen; i++)
        sprintf(ret_digest + 7 + 2 * i, "%02x", md[i]);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static int
apply(struct fx *f, const struct m *ms, size_t n, const char *filter, struct tp_err *err)
{
    char digest[8 + 64 + 1];
    int fd = make_layer(ms, n, filter, digest);
    int r = oci_layer_apply(f->root_fd, fd, digest, NULL, err);
    close(fd);
    return r;
}

static bool
exists_in(struct fx *f, const char *rel)
{
    struct stat st;
    return fstatat(f->root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static char *
read_in(struct fx *f, const char *rel)
{
    _cleanup_free_ char *p = fs_path_join(f->tree, rel);
    char *data = NULL;
    if (fs_read_file(p, 1 << 20, &data, NULL, NULL) < 0)
        return NULL;
    return data;
}

static bool
outside_empty(struct fx *f)
{
    _cleanup_free_ char *p = fs_path_join(f->outside, "pwned");
    return !fs_exists(p);
}

/* ------------------------------------------------------------------ tests */

static void
test_member_types(void **state)
{
    struct fx *f = *state;
    struct tp_err err = { 0 };
    const struct m l[] = {
        { 'd', "usr/", NULL, 0755, 0 },
        { 'f', "usr/hello", "hi\n", 04750, 1000 },
        { 'l', "usr/link", "/usr/hello", 0777, 0 },
        { 'h', "usr/hard", "usr/hello", 0, 0 },
        { 'c', "dev/null", NULL, 0666, 0 },
        { 'p', "run/fifo", NULL, 0600, 0 },
        { 'f', "./deep/er/file", "x", 0644, 0 }, /* parents made on the way */
    };
    struct stat st, st2;
    char v[8];

    assert_int_equal(apply(f, l, ELEMENTSOF(l), NULL, &err), 0);
    _cleanup_free_ char *hello = read_in(f, "usr/hello");
    assert_string_equal(hello, "hi\n");
    assert_int_equal(fstatat(f->root_fd, "usr/hello", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(st.st_mode & 07777, 04750); /* set-id kept: mode after chown */
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_mtime, 1000000000);
    _cleanup_free_ char *hp = fs_path_join(f->tree, "usr/hello");
    assert_int_equal(getxattr(hp, "user.torpor", v, sizeof(v)), 1);
    assert_int_equal(fstatat(f->root_fd, "usr/hard", &st2, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(st.st_ino, st2.st_ino);
    char target[64] = { 0 };
    assert_int_equal(readlinkat(f->root_fd, "usr/link", target, sizeof(target) - 1), 10);
    assert_string_equal(target, "/usr/hello");
    assert_int_equal(fstatat(f->root_fd, "dev/null", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(1, 3));
    assert_int_equal(fstatat(f->root_fd, "run/fifo", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(fstatat(f->root_fd, "usr", &st, 0), 0);
    assert_int_equal(st.st_mtime, 1000000000); /* set after its children went in */
    assert_true(exists_in(f, "deep/er/file"));
}

static void
test_whiteouts(void **state)
{
    struct fx *f = *state;
    struct tp_err err = { 0 };
    const struct m l1[] = {
        { 'f', "a/x", "1", 0, 0 }, { 'f', "a/y", "2", 0, 0 },   { 'f', "b/z", "3", 0, 0 },
        { 'f', "c", "4", 0, 0 },   { 'd', "d", NULL, 0755, 0 }, { 'f', "d/e", "5", 0, 0 },
    };
    const struct m l2[] = {
        { 'f', ".wh.c", "", 0, 0 },
        { 'f', "a/new", "6", 0, 0 }, /* before the opaque marker: this layer's, kept */
        { 'f', "a/.wh..wh..opq", "", 0, 0 },
        { 'f', ".wh.d", "", 0, 0 },        /* a whole directory */
        { 'f', "b/.wh.absent", "", 0, 0 }, /* nothing to hide: fine */
        { 'f', "gone/.wh.x", "", 0, 0 },   /* nor below a missing dir */
    };
    const struct m l3[] = { { 'f', "c", "back", 0, 0 } };

    assert_int_equal(apply(f, l1, ELEMENTSOF(l1), "gzip", &err), 0);
    assert_int_equal(apply(f, l2, ELEMENTSOF(l2), "zstd", &err), 0);
    assert_false(exists_in(f, "c"));
    assert_false(exists_in(f, "a/x"));
    assert_false(exists_in(f, "a/y"));
    assert_true(exists_in(f, "a/new"));
    assert_false(exists_in(f, "a/.wh..wh..opq"));
    assert_true(exists_in(f, "b/z"));
    assert_false(exists_in(f, "d"));
    assert_false(exists_in(f, "gone"));
    assert_int_equal(apply(f, l3, ELEMENTSOF(l3), NULL, &err), 0);
    _cleanup_free_ char *c = read_in(f, "c");
    assert_string_equal(c, "back");
}

static void
test_replace_types(void **state)
{
    struct fx *f = *state;
    struct tp_err err = { 0 };
    const struct m l1[] = { { 'f', "d/f", "1", 0, 0 }, { 'f', "x", "1", 0, 0 } };
    const struct m l2[] = { { 'f', "d", "file now", 0, 0 }, { 'd', "x", NULL, 0700, 0 } };

    assert_int_equal(apply(f, l1, ELEMENTSOF(l1), NULL, &err), 0);
    assert_int_equal(apply(f, l2, ELEMENTSOF(l2), NULL, &err), 0);
    _cleanup_free_ char *d = read_in(f, "d");
    assert_string_equal(d, "file now");
    struct stat st;
    assert_int_equal(fstatat(f->root_fd, "x", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISDIR(st.st_mode));
}

static void
test_hostile(void **state)
{
    struct fx *f = *state;
    struct tp_err err = { 0 };
    const struct m links[] = {
        { 'l', "rel", "../outside", 0777, 0 }, { 'l', "up", "../../../../../../..", 0777, 0 },
        { 'l', "abs", f->outside, 0777, 0 },   { 'l', "etc", "/etc", 0777, 0 },
        { 'l', "root", "/", 0777, 0 },
    };
    assert_int_equal(apply(f, links, ELEMENTSOF(links), NULL, &err), 0);

    /* Each of these is refused or lands inside the tree; none may write outside it. */
    static const char *const through[] = { "rel/pwned", "abs/pwned", "etc/passwd", "up/pwned" };
    for (size_t i = 0; i < ELEMENTSOF(through); i++) {
        const struct m l[] = { { 'f', through[i], "evil", 0, 0 } };
        tp_err_clear(&err);
        (void)apply(f, l, 1, NULL, &err);
        assert_true(outside_empty(f));
    }
    /* "up" resolves to the tree's root: up/pwned is the tree's /pwned. */
    assert_true(exists_in(f, "pwned"));
    _cleanup_free_ char *pw = NULL;
    assert_int_equal(fs_read_file("/etc/passwd", 1 << 20, &pw, NULL, NULL), 0);
    assert_null(strstr(pw, "evil"));

    /* ".." in a name: refused outright. */
    const struct m dotdot[] = { { 'f', "../outside/pwned", "evil", 0, 0 } };
    tp_err_clear(&err);
    assert_int_equal(apply(f, dotdot, 1, NULL, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "outside the tree"));
    assert_true(outside_empty(f));

    /* An absolute name is the tree's. */
    const struct m absname[] = { { 'f', "/abs-name", "in", 0, 0 } };
    tp_err_clear(&err);
    assert_int_equal(apply(f, absname, 1, NULL, &err), 0);
    assert_true(exists_in(f, "abs-name"));

    /* Hard links: out by "..", or through a symlink to the host's root. */
    const struct m hl1[] = { { 'h', "stolen", "../../../etc/passwd", 0, 0 } };
    tp_err_clear(&err);
    assert_int_equal(apply(f, hl1, 1, NULL, &err), -EINVAL);
    const struct m hl2[] = { { 'h', "stolen", "root/etc/shadow", 0, 0 } };
    tp_err_clear(&err);
    assert_true(apply(f, hl2, 1, NULL, &err) < 0);
    assert_false(exists_in(f, "stolen"));

    /* A whiteout through a symlink removes nothing outside. */
    _cleanup_free_ char *keep = fs_path_join(f->outside, "keep");
    assert_int_equal(fs_write_atomic(keep, "k", 1, 0644, NULL), 0);
    const struct m wh[] = { { 'f', "abs/.wh.keep", "", 0, 0 },
                            { 'f', "rel/.wh..wh..opq", "", 0, 0 } };
    tp_err_clear(&err);
    (void)apply(f, wh, ELEMENTSOF(wh), NULL, &err);
    assert_true(fs_exists(keep));
    tp_err_clear(&err);
}

static void
test_digest_and_corruption(void **state)
{
    struct fx *f = *state;
    struct tp_err err = { 0 };
    const struct m l[] = { { 'f', "file", "some content that compresses", 0, 0 } };
    char digest[8 + 64 + 1];
    struct oci_unpack_stats st;

    /* Right digest, stats. */
    int fd = make_layer(l, 1, "gzip", digest);
    assert_int_equal(oci_layer_apply(f->root_fd, fd, digest, &st, &err), 0);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.bytes, strlen(l[0].arg));
    close(fd);

    /* A bound on the content written: exactly enough passes, one byte less is refused. */
    fd = make_layer(l, 1, "gzip", digest);
    assert_int_equal(oci_layer_apply_bounded(f->root_fd, fd, digest, strlen(l[0].arg), &st, &err),
                     0);
    close(fd);
    fd = make_layer(l, 1, "gzip", digest);
    assert_int_equal(
        oci_layer_apply_bounded(f->root_fd, fd, digest, strlen(l[0].arg) - 1, &st, &err), -ENOSPC);
    assert_non_null(strstr(tp_err_msg(&err), "the tree may hold"));
    close(fd);
    tp_err_clear(&err);

    /* Wrong digest: the layer is refused even though it unpacks. */
    fd = make_layer(l, 1, "gzip", digest);
    digest[10] = digest[10] == '0' ? '1' : '0';
    assert_int_equal(oci_layer_apply(f->root_fd, fd, digest, NULL, &err), -EBADMSG);
    assert_non_null(strstr(tp_err_msg(&err), "does not match its digest"));
    close(fd);
    tp_err_clear(&err);

    /* Corrupt gzip: garbage in the middle of the deflate stream. */
    fd = make_layer(l, 1, "gzip", digest);
    struct stat fst;
    assert_int_equal(fstat(fd, &fst), 0);
    char junk[16];
    memset(junk, 0xA5, sizeof(junk));
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 12), (ssize_t)sizeof(junk));
    assert_true(oci_layer_apply(f->root_fd, fd, NULL, NULL, &err) < 0);
    assert_non_null(tp_err_msg(&err));
    tp_err_clear(&err);
    lseek(fd, 0, SEEK_SET);
    assert_true(oci_layer_apply(f->root_fd, fd, digest, NULL, &err) < 0);
    assert_non_null(strstr(tp_err_msg(&err), "does not match its digest"));
    close(fd);
    tp_err_clear(&err);

    /* Not a tar at all. */
    fd = memfd_create("junk", MFD_CLOEXEC);
    assert_int_equal(write(fd, "this is not a tar archive, not even close ........", 50), 50);
    lseek(fd, 0, SEEK_SET);
    assert_true(oci_layer_apply(f->root_fd, fd, NULL, NULL, &err) < 0);
    close(fd);
    tp_err_clear(&err);

    assert_int_equal(oci_layer_apply(f->root_fd, 0, "md5:abc", NULL, &err), -EINVAL);
    tp_err_clear(&err);
}

/* ------------------------------------------------------------------ root disks */

static char *
put_blob(const char *layout, const void *data, size_t len)
{
    char *d = oci_digest_of(data, len);
    assert_int_equal(oci_blob_put(layout, d, data, len, NULL), 0);
    return d;
}

static char *
put_layer(const char *layout, const struct m *ms, size_t n)
{
    char digest[8 + 64 + 1];
    int fd = make_layer(ms, n, "gzip", digest);
    char buf[1 << 16];
    ssize_t k = read(fd, buf, sizeof(buf));
    close(fd);
    assert_true(k > 0 && k < (ssize_t)sizeof(buf));
    char *d = put_blob(layout, buf, (size_t)k);
    assert_string_equal(d, digest);
    return d;
}

/* A manifest over layers l1, l2 with the given config and layer media type. */
static void
put_image(const char *layout, const char *config, const char *layer_mt, struct oci_desc *ret)
{
    const struct m l1[] = { { 'f', "etc/hello", "hi", 0, 0 },
                            { 'f', "gone", "x", 0, 0 },
                            { 'f', "opq/old", "x", 0, 0 } };
    const struct m l2[] = { { 'f', ".wh.gone", "", 0, 0 },
                            { 'f', "opq/.wh..wh..opq", "", 0, 0 },
                            { 'f', "bin/app", "#!/bin/sh", 0755, 0 } };
    _cleanup_free_ char *d1 = put_layer(layout, l1, ELEMENTSOF(l1));
    _cleanup_free_ char *d2 = put_layer(layout, l2, ELEMENTSOF(l2));
    _cleanup_free_ char *dc = put_blob(layout, config, strlen(config));
    _cleanup_free_ char *man =
        xasprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
                  "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":"
                  "\"%s\",\"size\":1},{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1}]}",
                  OCI_MT_MANIFEST, OCI_MT_CONFIG, dc, strlen(config), layer_mt, d1, layer_mt, d2);
    ret->digest = put_blob(layout, man, strlen(man));
    ret->media_type = xstrdup(OCI_MT_MANIFEST);
    ret->size = (int64_t)strlen(man);
}

static char *
debugfs(const char *disk, const char *req)
{
    _cleanup_free_ char *cmd = xasprintf("debugfs -R '%s' '%s' 2>&1", req, disk);
    FILE *p = popen(cmd, "r");
    char *out = xnew(char, 65536);
    size_t n = fread(out, 1, 65535, p);
    out[n] = '\0';
    pclose(p);
    return out;
}

static size_t
count_tmp(const char *layout)
{
    _cleanup_free_ char *dir = fs_path_join(layout, OCI_ROOTFS_DIR);
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    while (d && (de = readdir(d)))
        n += strncmp(de->d_name, "tmp-", 4) == 0;
    if (d)
        closedir(d);
    return n;
}

static void
test_rootfs(void **state)
{
    struct fx *f = *state;
    struct tp_err err = { 0 };
    _cleanup_free_ char *layout = fs_path_join(f->dir, "layout");
    const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":"
                      "{\"Cmd\":[\"/bin/app\"]}}";
    struct oci_desc man = { 0 };
    struct oci_rootfs rf = { 0 };

    assert_int_equal(oci_layout_init(layout, &err), 0);
    put_image(layout, cfg, OCI_MT_LAYER_GZIP, &man);
    assert_int_equal(oci_rootfs_get(layout, &man, &rf, &err), 0);
    assert_false(rf.cache_hit);
    assert_int_equal(rf.layers, 2);
    assert_string_equal(rf.config->cmd[0], "/bin/app");
    _cleanup_free_ char *ls = debugfs(rf.disk, "ls -p /");
    assert_non_null(strstr(ls, "/etc/"));
    assert_non_null(strstr(ls, "/bin/"));
    assert_null(strstr(ls, "/gone/"));
    _cleanup_free_ char *lso = debugfs(rf.disk, "ls -p /opq");
    assert_null(strstr(lso, "/old/"));
    _cleanup_free_ char *cat = debugfs(rf.disk, "cat /etc/hello");
    assert_non_null(strstr(cat, "hi"));
    struct stat st;
    assert_int_equal(stat(rf.disk, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    _cleanup_free_ char *disk = xstrdup(rf.disk);
    oci_rootfs_done(&rf);

    /* Again: the cached disk, untouched. */
    assert_int_equal(oci_rootfs_get(layout, &man, &rf, &err), 0);
    assert_true(rf.cache_hit);
    assert_string_equal(rf.disk, disk);
    oci_rootfs_done(&rf);
    assert_int_equal(oci_rootfs_remove(layout, man.digest, &err), 0);
    assert_false(fs_exists(disk));
    assert_int_equal(oci_rootfs_remove(layout, man.digest, &err), 0);

    /* A layer blob changed on disk: refused, nothing published, no temp dir left. */
    struct oci_manifest m = { 0 };
    _cleanup_free_ char *mbuf = NULL;
    size_t mlen = 0;
    assert_int_equal(oci_blob_read(layout, man.digest, 1 << 20, &mbuf, &mlen, &err), 0);
    assert_int_equal(oci_manifest_parse(mbuf, mlen, &m, &err), 0);
    _cleanup_free_ char *lp = oci_blob_path(layout, m.layers[1].digest);
    chmod(lp, 0600);
    int fd = open(lp, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\x1f\x8b\x08\x00XXXX", 8, 0), 8);
    close(fd);
    assert_true(oci_rootfs_get(layout, &man, &rf, &err) < 0);
    assert_non_null(strstr(tp_err_msg(&err), "unpack layer 2/2"));
    tp_err_clear(&err);
    assert_false(fs_exists(disk));
    assert_int_equal(count_tmp(layout), 0);
    oci_manifest_free(&m);
    oci_desc_done(&man);

    /* Unsupported layer media type and platform. */
    put_image(layout, cfg, "application/vnd.oci.image.layer.v1.tar+bzip2", &man);
    assert_int_equal(oci_rootfs_get(layout, &man, &rf, &err), -EOPNOTSUPP);
    assert_non_null(strstr(tp_err_msg(&err), "unsupported layer media type"));
    tp_err_clear(&err);
    oci_desc_done(&man);
    put_image(layout, "{\"architecture\":\"arm64\",\"os\":\"linux\"}", OCI_MT_LAYER_GZIP, &man);
    assert_int_equal(oci_rootfs_get(layout, &man, &rf, &err), -EOPNOTSUPP);
    assert_non_null(strstr(tp_err_msg(&err), "arm64"));
    tp_err_clear(&err);
    oci_desc_done(&man);

    /* A crash mid-build leaves a temp dir: the next start removes it. */
    _cleanup_free_ char *stale = xasprintf("%s/%s/tmp-crashed/tree", layout, OCI_ROOTFS_DIR);
    assert_int_equal(fs_mkdir_p(stale, 0700, &err), 0);
    assert_int_equal(count_tmp(layout), 1);
    assert_int_equal(oci_rootfs_clean_tmp(layout, &err), 0);
    assert_int_equal(count_tmp(layout), 0);
}

/* A layout on a 20 MiB tmpfs and a 12 MiB layer: the build runs out of space; the error says
 * so and nothing is left, neither a disk nor a temp dir. */
static void
test_rootfs_disk_full(void **state)
{
    struct fx *f = *state;
    struct tp_err err = { 0 };
    _cleanup_free_ char *mnt = fs_path_join(f->dir, "small");
    _cleanup_free_ char *cmd = xasprintf("mount -t tmpfs -o size=20m tmpfs '%s' 2>/dev/null", mnt);

    assert_int_equal(mkdir(mnt, 0700), 0);
    if (geteuid() != 0 || system(cmd) != 0)
        skip();
    _cleanup_free_ char *layout = fs_path_join(mnt, "layout");
    size_t big = 12u << 20;
    char *data = xmalloc(big + 1);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + (i * 7919u + i / 13) % 26);
    data[big] = '\0';
    const struct m l[] = { { 'f', "big", data, 0644, 0 } };
    char digest[8 + 64 + 1];
    int fd = make_layer(l, 1, NULL, digest);
    free(data);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *blob = xmalloc((size_t)st.st_size);
    assert_int_equal(pread(fd, blob, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    assert_int_equal(oci_layout_init(layout, &err), 0);
    assert_int_equal(oci_blob_put(layout, digest, blob, (size_t)st.st_size, &err), 0);
    free(blob);
    const char *cfg = "{\"config\":{\"Cmd\":[\"/big\"]}}";
    _cleanup_free_ char *dc = put_blob(layout, cfg, strlen(cfg));
    _cleanup_free_ char *man =
        xasprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
                  "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":"
                  "\"%s\",\"size\":%lld}]}",
                  OCI_MT_MANIFEST, OCI_MT_CONFIG, dc, strlen(cfg), OCI_MT_LAYER_TAR, digest,
                  (long long)st.st_size);
    struct oci_desc d = { .media_type = (char *)OCI_MT_MANIFEST, .size = (int64_t)strlen(man) };
    d.digest = put_blob(layout, man, strlen(man));
    struct oci_rootfs rf = { 0 };

    int r = oci_rootfs_get(layout, &d, &rf, &err);
    assert_true(r < 0);
    assert_int_equal(r, -ENOSPC);
    assert_non_null(strstr(tp_err_msg(&err), "No space left on device"));
    /* stopped by the bound (half the free space), before the disk filled */
    assert_non_null(strstr(tp_err_msg(&err), "the tree may hold"));
    tp_err_clear(&err);
    assert_int_equal(count_tmp(layout), 0);
    _cleanup_free_ char *disk = xasprintf("%s/%s/%s.ext4", layout, OCI_ROOTFS_DIR, d.digest + 7);
    assert_false(fs_exists(disk));
    free(d.digest);
    _cleanup_free_ char *umount = xasprintf("umount '%s'", mnt);
    assert_int_equal(system(umount), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_member_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whiteouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_and_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rootfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rootfs_disk_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
