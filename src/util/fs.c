/* File helpers used by the store, the image builder and the snapshot code. */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "xalloc.h"

char *
fs_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    return xasprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

bool
fs_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

int
fs_mkdir_p(const char *path, mode_t mode, struct tp_err *err)
{
    /* The loop starts past the first byte: "" has none. */
    if (!*path)
        return tp_err_set(err, -EINVAL, "create directory: empty path");
    _cleanup_free_ char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return tp_err_errno(err, -errno, "create directory '%s'", p);
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return tp_err_errno(err, -errno, "create directory '%s'", p);
    return 0;
}

int
fs_fsync_dir(const char *dir, struct tp_err *err)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open directory '%s'", dir);
    if (fsync(fd) < 0)
        return tp_err_errno(err, -errno, "fsync directory '%s'", dir);
    return 0;
}

int
fs_fsync_file(const char *path, struct tp_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fdatasync(fd) < 0)
        return tp_err_errno(err, -errno, "fsync '%s'", path);
    return 0;
}

static int
fsync_parent(const char *path, struct tp_err *err)
{
    _cleanup_free_ char *copy = xstrdup(path);
    return fs_fsync_dir(dirname(copy), err);
}

int
fd_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, struct tp_err *err)
{
    _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, getpid());
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    int r;

    if (fd < 0)
        return tp_err_errno(err, -errno, "create '%s'", tmp);
    r = fd_write_all(fd, data, len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return tp_err_errno(err, r, "write '%s'", tmp);
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        return tp_err_errno(err, r, "rename '%s' to '%s'", tmp, path);
    }
    return fsync_parent(path, err);
}

int
fs_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len, struct tp_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 0;

    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", path);
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return tp_err_errno(err, -errno, "read '%s'", path);
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max)
            return tp_err_set(err, -EFBIG, "read '%s': larger than %zu bytes", path, max);
    }
    if (!buf)
        buf = xzalloc(1);
    buf[len] = '\0';
    *ret_data = TAKE_PTR(buf);
    if (ret_len)
        *ret_len = len;
    return 0;
}

static int
rm_rf_at(int parent, const char *name, struct tp_err *err)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return tp_err_errno(err, -errno, "remove '%s'", name);

    /* A writer still finishing (a monitor noting the console's last bytes) may create an entry
     * after the scan: empty the directory again, a bounded number of times. */
    for (int pass = 0;; pass++) {
        int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return errno == ENOENT ? 0 : tp_err_errno(err, -errno, "open directory '%s'", name);
        DIR *d = fdopendir(fd);
        if (!d) {
            close(fd);
            return tp_err_errno(err, -errno, "read directory '%s'", name);
        }
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            r = rm_rf_at(dirfd(d), de->d_name, err);
            if (r < 0)
                break;
        }
        closedir(d);
        if (r < 0)
            return tp_err_wrap(err, "remove '%s'", name);
        if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != ENOTEMPTY || pass == 4)
            return tp_err_errno(err, -errno, "remove directory '%s'", name);
    }
}

int
fs_rm_rf(const char *path, struct tp_err *err)
{
    return rm_rf_at(AT_FDCWD, path, err);
}

int
fs_rename_durable(const char *from, const char *to, struct tp_err *err)
{
    if (rename(from, to) < 0)
        return tp_err_errno(err, -errno, "rename '%s' to '%s'", from, to);
    return fsync_parent(to, err);
}

/* copy_file_range() refuses some pairs of filesystems: copy through a buffer instead. Sets
 * errno and returns -1 on failure, like the call it stands in for. */
static ssize_t
copy_bounce(int in, off_t *off_in, int out, off_t *off_out, size_t len)
{
    char buf[1 << 16];
    ssize_t n = pread(in, buf, MIN(len, sizeof(buf)), *off_in);
    if (n <= 0)
        return n;
    for (ssize_t done = 0; done < n;) {
        ssize_t w = pwrite(out, buf + done, (size_t)(n - done), *off_out + done);
        if (w < 0)
            return -1;
        done += w;
    }
    *off_in += n;
    *off_out += n;
    return n;
}

/* Copy the data extents of in to out, leaving holes as holes. */
static int
copy_sparse(int in, int out, off_t size)
{
    off_t pos = 0;
    while (pos < size) {
        off_t data = lseek(in, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break; /* only a hole remains */
            return -errno;
        }
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        off_t off_in = data, off_out = data;
        while (off_in < hole) {
            ssize_t n = copy_file_range(in, &off_in, out, &off_out, (size_t)(hole - off_in), 0);
            if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS))
                n = copy_bounce(in, &off_in, out, &off_out, (size_t)(hole - off_in));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            if (n == 0)
                return -EIO;
        }
        pos = hole;
    }
    return ftruncate(out, size) < 0 ? -errno : 0;
}

int
fs_clone_file(const char *src, const char *dst, mode_t mode, struct tp_err *err)
{
    _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int out = -EBADF;
    struct stat st;
    int r;

    if (in < 0)
        return tp_err_errno(err, -errno, "open '%s'", src);
    if (fstat(in, &st) < 0)
        return tp_err_errno(err, -errno, "stat '%s'", src);
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0)
        return tp_err_errno(err, -errno, "create '%s'", dst);
    if (ioctl(out, FICLONE, in) == 0)
        return 0;
    r = copy_sparse(in, out, st.st_size);
    if (r < 0) {
        unlink(dst);
        return tp_err_errno(err, r, "copy '%s' to '%s'", src, dst);
    }
    return 0;
}
