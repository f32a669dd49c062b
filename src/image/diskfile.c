/* Small files in and out of a stopped guest's ext4 disk with debugfs: the workload spec an image
 * instance boots with, and the exit code its agent leaves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image-internal.h"
#include "image.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

/* debugfs takes names on its command line: only plain absolute paths are written here. */
static bool
path_ok(const char *p)
{
    if (p[0] != '/' || strstr(p, ".."))
        return false;
    for (const char *c = p; *c; c++)
        if (*c <= ' ' || *c == '"' || *c == '\\' || *c == 0x7f)
            return false;
    return true;
}

int
image_disk_put_file(const char *disk, const char *path, const void *data, size_t len,
                    struct tp_err *err)
{
    _cleanup_free_ char *debugfs = NULL;
    _cleanup_close_ int src = memfd_create("disk-file", MFD_CLOEXEC);
    _cleanup_close_ int cmds = memfd_create("debugfs-cmds", MFD_CLOEXEC);
    int r;

    if (!path_ok(path))
        return tp_err_set(err, -EINVAL, "refuse disk path '%s'", path);
    if (src < 0 || cmds < 0)
        return tp_err_errno(err, -errno, "create buffers for debugfs");
    if ((r = image_find_tool("debugfs", &debugfs, err)) < 0)
        return r;
    if (fd_write_all(src, data, len) < 0)
        return tp_err_errno(err, -errno, "buffer '%s'", path);
    /* The child inherits neither memfd (CLOEXEC): it opens them through this process's fd
     * links. rm first: write refuses an existing name. Mode 0600, root's. */
    _cleanup_free_ char *srcpath = xasprintf("/proc/%d/fd/%d", (int)getpid(), src);
    _cleanup_free_ char *cmdfile = xasprintf("/proc/%d/fd/%d", (int)getpid(), cmds);
    _cleanup_free_ char *text =
        xasprintf("rm %s\nwrite %s %s\nsif %s mode 0100600\nsif %s uid 0\nsif %s gid 0\n", path,
                  srcpath, path, path, path, path);
    if (fd_write_all(cmds, text, strlen(text)) < 0)
        return tp_err_errno(err, -errno, "buffer debugfs commands");
    char *argv[] = { debugfs, (char *)"-w", (char *)"-f", cmdfile, (char *)disk, NULL };
    r = image_run(argv, -1, err);
    if (r < 0)
        return tp_err_wrap(err, "write '%s' into '%s'", path, disk);
    return 0;
}

int
image_disk_get_file(const char *disk, const char *path, size_t max, char **ret, struct tp_err *err)
{
    _cleanup_free_ char *debugfs = NULL, *req = NULL, *text = NULL;
    _cleanup_close_ int out = memfd_create("disk-file-out", MFD_CLOEXEC);
    int r;

    if (!path_ok(path))
        return tp_err_set(err, -EINVAL, "refuse disk path '%s'", path);
    if (out < 0)
        return tp_err_errno(err, -errno, "create a buffer for debugfs");
    if ((r = image_find_tool("debugfs", &debugfs, err)) < 0)
        return r;
    /* stat first: cat prints nothing for a missing file, which reads as an empty one. */
    req = xasprintf("stat %s", path);
    char *sargv[] = { debugfs, (char *)"-R", req, (char *)disk, NULL };
    r = image_run(sargv, out, err);
    if (r < 0)
        return tp_err_wrap(err, "read '%s' from '%s'", path, disk);
    _cleanup_free_ char *outpath = xasprintf("/proc/self/fd/%d", out);
    r = fs_read_file(outpath, 65536, &text, NULL, err);
    if (r < 0)
        return r;
    if (!strstr(text, "Inode:"))
        return tp_err_set(err, -ENOENT, "'%s' is not on '%s'", path, disk);
    free(req);
    req = xasprintf("cat %s", path);
    if (ftruncate(out, 0) < 0 || lseek(out, 0, SEEK_SET) < 0)
        return tp_err_errno(err, -errno, "reset the debugfs buffer");
    char *cargv[] = { debugfs, (char *)"-R", req, (char *)disk, NULL };
    r = image_run(cargv, out, err);
    if (r < 0)
        return tp_err_wrap(err, "read '%s' from '%s'", path, disk);
    free(text);
    text = NULL;
    r = fs_read_file(outpath, max, &text, NULL, err);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(text);
    return 0;
}
