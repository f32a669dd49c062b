/* Guest kernels: the default one in the cache, and a kernel's version from its name or header. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "image-internal.h"
#include "image.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

#define VMLINUZ_PREFIX "vmlinuz-"

static void
closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

int
image_default_kernel(const struct image_env *env, char **ret_kernel, struct tp_err *err)
{
    _cleanup_free_ char *boot = xasprintf("%s/kernel/boot", env->cache_dir);
    _cleanup_(closedirp) DIR *d = opendir(boot);
    _cleanup_free_ char *best = NULL;
    struct dirent *de;

    if (!d && errno != ENOENT)
        return tp_err_errno(err, -errno, "open kernel directory '%s'", boot);
    while (d && (de = readdir(d))) {
        if (strncmp(de->d_name, VMLINUZ_PREFIX, strlen(VMLINUZ_PREFIX)) != 0 ||
            !de->d_name[strlen(VMLINUZ_PREFIX)])
            continue;
        /* strverscmp orders 6.1.0-9 before 6.1.0-56, as a version sort should. */
        if (!best || strverscmp(de->d_name, best) > 0) {
            free(best);
            best = xstrdup(de->d_name);
        }
    }
    if (!best)
        return tp_err_set(err, -ENOENT,
                          "find default kernel: no vmlinuz-* in '%s'; run scripts/fetch-kernel "
                          "'%s/kernel' to download Debian's cloud kernel",
                          boot, env->cache_dir);
    *ret_kernel = fs_path_join(boot, best);
    return 0;
}

static int
pread_exact(int fd, void *buf, size_t len, off_t off)
{
    ssize_t n;
    do
        n = pread(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -ENODATA;
}

/* A bzImage carries "HdrS" at 0x202 and, at 0x20E, the offset (from 0x200) of a string that
 * starts with the kernel release: "6.1.0-56-cloud-amd64 (debian-kernel@...) #1 SMP ...". */
static int
version_from_header(const char *kernel, char **ret, struct tp_err *err)
{
    _cleanup_close_ int fd = open(kernel, O_RDONLY | O_CLOEXEC);
    unsigned char magic[4], off_le[2];
    char buf[256];
    int r;

    if (fd < 0)
        return tp_err_errno(err, -errno, "open kernel '%s'", kernel);
    r = pread_exact(fd, magic, sizeof(magic), 0x202);
    if (r == 0 && memcmp(magic, "HdrS", 4) != 0)
        r = -ENODATA;
    if (r == 0)
        r = pread_exact(fd, off_le, sizeof(off_le), 0x20E);
    if (r == -ENODATA)
        return tp_err_set(err, -EINVAL, "read kernel version: '%s' is not a bzImage", kernel);
    if (r < 0)
        return tp_err_errno(err, r, "read kernel header of '%s'", kernel);

    off_t off = 0x200 + (off_t)(off_le[0] | off_le[1] << 8);
    ssize_t n;
    do
        n = pread(fd, buf, sizeof(buf) - 1, off);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return tp_err_errno(err, -errno, "read kernel version string of '%s'", kernel);
    buf[n] = '\0';
    size_t len = strcspn(buf, " ");
    if (len == 0 || len == (size_t)n)
        return tp_err_set(err, -EINVAL, "read kernel version: no version string in '%s'", kernel);
    *ret = xstrndup(buf, len);
    return 0;
}

int
image_kernel_version(const char *kernel, char **ret, struct tp_err *err)
{
    const char *base = strrchr(kernel, '/');
    base = base ? base + 1 : kernel;

    if (strncmp(base, VMLINUZ_PREFIX, strlen(VMLINUZ_PREFIX)) == 0 &&
        base[strlen(VMLINUZ_PREFIX)]) {
        *ret = xstrdup(base + strlen(VMLINUZ_PREFIX));
        return 0;
    }
    return version_from_header(kernel, ret, err);
}
