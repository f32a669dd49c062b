/* Root disks from OCI images: verify manifest and config, unpack the layers into a temp tree,
 * mkfs.ext4 -d, publish by rename under the manifest digest. */
#include "image/oci/rootfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "image/image.h"
#include "image/oci/unpack.h"
#include "util/cleanup.h"
#include "util/failpoint.h"
#include "util/fs.h"
#include "util/xalloc.h"

#define MANIFEST_MAX  (4u << 20)
#define CONFIG_MAX    (8u << 20)
#define TMP_PREFIX    "tmp-"
#define MIB           (1024ull * 1024ull)
#define MIN_DISK_MIB  256u /* as the default guest's: room for the workload's writes */
#define FREE_DISK_MIB 128u /* at least this much free on top of the image's files */

void
oci_rootfs_done(struct oci_rootfs *r)
{
    free(r->disk);
    oci_config_free(r->config);
    *r = (struct oci_rootfs){ 0 };
}

/* Crash points of a build (docs/design/recovery.md): the daemon SIGKILLs itself there. */
static void
crashpoint(const char *name)
{
    if (failpoint(name) == FAILPOINT_CRASH)
        raise(SIGKILL);
}

static char *
rootfs_dir(const char *layout_dir)
{
    return fs_path_join(layout_dir, OCI_ROOTFS_DIR);
}

static int
load_config(const char *layout_dir, const struct oci_manifest *m, struct oci_image_config **ret,
            struct tp_err *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    const char *mt = m->config.media_type;
    int r;

    if (mt && strcmp(mt, OCI_MT_CONFIG) != 0 && strcmp(mt, DOCKER_MT_CONFIG) != 0)
        return tp_err_set(err, -EOPNOTSUPP, "unsupported image config media type '%s'", mt);
    r = oci_blob_read(layout_dir, m->config.digest, CONFIG_MAX, &buf, &len, err);
    if (r < 0)
        return tp_err_wrap(err, "read image config '%s'", m->config.digest);
    r = oci_config_parse(buf, len, ret, err);
    if (r < 0)
        return r;
    const struct oci_image_config *c = *ret;
    if ((c->os && *c->os && strcmp(c->os, "linux") != 0) ||
        (c->architecture && *c->architecture && strcmp(c->architecture, "amd64") != 0)) {
        r = tp_err_set(err, -EOPNOTSUPP, "image platform %s/%s is not supported (linux/amd64)",
                       c->os ? c->os : "?", c->architecture ? c->architecture : "?");
        *ret = oci_config_free(*ret);
        return r;
    }
    return 0;
}

static int
unpack_layers(const char *layout_dir, const struct oci_manifest *m, const char *tree,
              struct oci_rootfs *st, struct tp_err *err)
{
    _cleanup_close_ int root_fd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct statvfs sv;
    uint64_t budget = UINT64_MAX;

    if (root_fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", tree);
    /* The tree and the disk made from it hold the same files: the tree gets half the free
     * space, so a layer that expands without end (a gzip bomb) stops there, not at a full disk. */
    if (fstatvfs(root_fd, &sv) == 0)
        budget = (uint64_t)sv.f_bavail * sv.f_frsize / 2;
    for (size_t i = 0; i < m->n_layers; i++) {
        const struct oci_desc *l = &m->layers[i];
        _cleanup_free_ char *path = oci_blob_path(layout_dir, l->digest);
        struct oci_unpack_stats us;
        if (!path)
            return tp_err_set(err, -EINVAL, "layer %zu has an invalid digest", i + 1);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return tp_err_errno(err, -errno, "open layer %zu '%s'", i + 1, l->digest);
        int r = oci_layer_apply_bounded(root_fd, fd, l->digest, budget - st->bytes, &us, err);
        if (r < 0)
            return tp_err_wrap(err, "unpack layer %zu/%zu '%s'", i + 1, m->n_layers, l->digest);
        st->layers++;
        st->entries += us.entries;
        st->bytes += us.bytes;
    }
    return 0;
}

static int
build(const char *layout_dir, const char *dir, const struct oci_manifest *m, const char *final,
      struct oci_rootfs *st, struct tp_err *err)
{
    _cleanup_free_ char *tmpl = fs_path_join(dir, TMP_PREFIX "XXXXXX");
    if (!mkdtemp(tmpl))
        return tp_err_errno(err, -errno, "create a build dir in '%s'", dir);
    _cleanup_free_ char *tree = fs_path_join(tmpl, "tree");
    _cleanup_free_ char *disk = fs_path_join(tmpl, "disk.ext4");
    _cleanup_close_ int fd = -EBADF; /* before any goto: its cleanup runs at out */
    int r;

    if (mkdir(tree, 0755) < 0) {
        r = tp_err_errno(err, -errno, "create '%s'", tree);
        goto out;
    }
    r = unpack_layers(layout_dir, m, tree, st, err);
    if (r < 0)
        goto out;
    crashpoint("image.unpacked");
    /* Files rounded up to blocks plus an inode each, ext4's metadata and journal, free room. */
    uint64_t need = (st->bytes + st->entries * 4096) * 5 / 4 / MIB + 64 + FREE_DISK_MIB;
    uint64_t size = need < MIN_DISK_MIB ? MIN_DISK_MIB : need;
    r = image_ext4_from_tree(tree, disk, (uint32_t)size, err);
    if (r < 0)
        goto out;
    fd = open(disk, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0 || chmod(disk, 0600) < 0) {
        r = tp_err_errno(err, -errno, "sync '%s'", disk);
        goto out;
    }
    crashpoint("image.built");
    r = fs_rename_durable(disk, final, err);
out:
    fs_rm_rf(tmpl, NULL);
    return r;
}

int
oci_rootfs_get(const char *layout_dir, const struct oci_desc *manifest, struct oci_rootfs *ret,
               struct tp_err *err)
{
    _cleanup_(oci_rootfs_done) struct oci_rootfs st = { 0 };
    _cleanup_(oci_manifest_free) struct oci_manifest m = { 0 };
    _cleanup_free_ char *buf = NULL, *dir = rootfs_dir(layout_dir);
    _cleanup_close_ int lock = -EBADF;
    size_t len = 0;
    int r;

    const char *hex = oci_digest_hex(manifest->digest);
    if (!hex)
        return tp_err_set(err, -EINVAL, "invalid manifest digest '%s'", manifest->digest);
    r = oci_layout_init(layout_dir, err); /* ingest/ holds the lock file */
    if (r < 0)
        return r;
    lock = oci_layout_pull_lock(layout_dir, err);
    if (lock < 0)
        return lock;
    r = oci_blob_read(layout_dir, manifest->digest, MANIFEST_MAX, &buf, &len, err);
    if (r < 0)
        return tp_err_wrap(err, "read manifest '%s'", manifest->digest);
    r = oci_manifest_parse(buf, len, &m, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < m.n_layers; i++)
        if (!oci_layer_media_type_known(m.layers[i].media_type))
            return tp_err_set(err, -EOPNOTSUPP, "unsupported layer media type '%s'",
                              m.layers[i].media_type ? m.layers[i].media_type : "(none)");
    r = load_config(layout_dir, &m, &st.config, err);
    if (r < 0)
        return r;

    r = fs_mkdir_p(dir, 0700, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *name = xasprintf("%s.ext4", hex);
    st.disk = fs_path_join(dir, name);
    if (fs_exists(st.disk))
        st.cache_hit = true;
    else if ((r = build(layout_dir, dir, &m, st.disk, &st, err)) < 0)
        return tp_err_wrap(err, "build the root disk of '%s'", manifest->digest);
    *ret = st;
    st = (struct oci_rootfs){ 0 };
    return 0;
}

int
oci_rootfs_remove(const char *layout_dir, const char *manifest_digest, struct tp_err *err)
{
    const char *hex = oci_digest_hex(manifest_digest);
    if (!hex)
        return tp_err_set(err, -EINVAL, "invalid manifest digest '%s'", manifest_digest);
    _cleanup_free_ char *dir = rootfs_dir(layout_dir);
    _cleanup_free_ char *name = xasprintf("%s.ext4", hex);
    _cleanup_free_ char *path = fs_path_join(dir, name);
    if (unlink(path) < 0 && errno != ENOENT)
        return tp_err_errno(err, -errno, "remove '%s'", path);
    return 0;
}

int
oci_rootfs_gc(const char *layout_dir, struct tp_err *err)
{
    _cleanup_free_ char *dir = rootfs_dir(layout_dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    int r = 0;

    if (!d)
        return errno == ENOENT ? 0 : tp_err_errno(err, -errno, "open '%s'", dir);
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len != 64 + 5 || strcmp(de->d_name + 64, ".ext4") != 0)
            continue;
        _cleanup_free_ char *digest = xasprintf("sha256:%.64s", de->d_name);
        if (!oci_digest_valid(digest) || oci_blob_exists(layout_dir, digest))
            continue;
        int k = oci_rootfs_remove(layout_dir, digest, err);
        if (k < 0 && r == 0)
            r = k;
    }
    closedir(d);
    return r;
}

int
oci_rootfs_clean_tmp(const char *layout_dir, struct tp_err *err)
{
    _cleanup_free_ char *dir = rootfs_dir(layout_dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    int r = 0;

    if (!d)
        return errno == ENOENT ? 0 : tp_err_errno(err, -errno, "open '%s'", dir);
    while ((de = readdir(d)))
        if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
            _cleanup_free_ char *p = fs_path_join(dir, de->d_name);
            int k = fs_rm_rf(p, err);
            if (k < 0 && r == 0)
                r = k;
        }
    closedir(d);
    return r;
}
