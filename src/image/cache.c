/* The image cache's layout: CACHE/<kind>/<sha256>.<ext>, built in unique temp names and
 * published by rename so concurrent builders of the same key are safe. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

int
image_cache_subdir(const struct image_env *env, const char *sub, char **ret_dir, struct tp_err *err)
{
    assert(env && env->cache_dir);
    _cleanup_free_ char *dir = fs_path_join(env->cache_dir, sub);
    struct stat st;
    int r = fs_mkdir_p(dir, IMAGE_CACHE_DIR_MODE, err);
    if (r < 0)
        return tp_err_wrap(err, "create image cache");
    /* Entries are built from the user's files (a --rootfs tree may hold secrets): only the
     * daemon's user may look in, also where an older torpor made the directory 0755. */
    if (stat(dir, &st) < 0)
        return tp_err_errno(err, -errno, "stat '%s'", dir);
    if ((st.st_mode & 07777) != IMAGE_CACHE_DIR_MODE && chmod(dir, IMAGE_CACHE_DIR_MODE) < 0)
        return tp_err_errno(err, -errno, "restrict image cache '%s' to its owner", dir);
    *ret_dir = TAKE_PTR(dir);
    return 0;
}

int
image_cache_tmpfile(const char *dir, char **ret_path, struct tp_err *err)
{
    _cleanup_free_ char *path = fs_path_join(dir, ".tmp-XXXXXX");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return tp_err_errno(err, -errno, "create temp file in '%s'", dir);
    *ret_path = TAKE_PTR(path);
    return fd;
}

int
image_cache_tmpdir(const char *dir, char **ret_path, struct tp_err *err)
{
    _cleanup_free_ char *path = fs_path_join(dir, ".tree-XXXXXX");
    if (!mkdtemp(path))
        return tp_err_errno(err, -errno, "create temp directory in '%s'", dir);
    *ret_path = TAKE_PTR(path);
    return 0;
}

int
image_cache_lookup(const struct image_env *env, struct image_hash *h, const char *kind,
                   const char *ext, char **ret_dir, char **ret_path, struct tp_err *err)
{
    _cleanup_free_ char *dir = NULL;
    char hex[IMAGE_HEX_LEN + 1];
    char *path;
    int r;

    r = image_hash_final(h, hex, err);
    if (r < 0)
        return r;
    r = image_cache_subdir(env, kind, &dir, err);
    if (r < 0)
        return r;
    path = xasprintf("%s/%s.%s", dir, hex, ext);
    r = fs_exists(path);
    *ret_dir = TAKE_PTR(dir);
    *ret_path = path;
    return r;
}

int
image_cache_publish(int fd, const char *tmp, const char *path, struct tp_err *err)
{
    if (fchmod(fd, IMAGE_CACHE_FILE_MODE) < 0)
        return tp_err_errno(err, -errno, "chmod '%s'", tmp);
    if (fsync(fd) < 0)
        return tp_err_errno(err, -errno, "fsync '%s'", tmp);
    /* Concurrent builders of one key write identical bytes: whichever rename lands last
     * replaces an equal file. */
    return fs_rename_durable(tmp, path, err);
}
