/* A minimal writer for the "newc" cpio format, the one the kernel unpacks as an initramfs. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/fs.h"

#define CPIO_HDR_LEN 110 /* "070701" + 13 fields of 8 hex digits */

static int
write_all(struct cpio_writer *w, const void *data, size_t len)
{
    int r = fd_write_all(w->fd, data, len);

    if (r < 0)
        return r;
    w->offset += len;
    return 0;
}

/* newc aligns both the header+name and the data to 4 bytes. */
static int
pad4(struct cpio_writer *w)
{
    static const char zeros[4];
    size_t n = (4 - (w->offset & 3)) & 3;
    return n ? write_all(w, zeros, n) : 0;
}

static int
add_entry(struct cpio_writer *w, const char *name, uint32_t mode, uint32_t nlink, const void *data,
          size_t len, struct tp_err *err)
{
    char hdr[CPIO_HDR_LEN + 1];
    uint32_t ino;
    int r;

    while (*name == '/')
        name++;
    if (!*name)
        return tp_err_set(err, -EINVAL, "add cpio entry: empty name");
    if (len > UINT32_MAX || strlen(name) >= PATH_MAX)
        return tp_err_set(err, -EFBIG, "add cpio entry '%s': %zu bytes is too large", name, len);

    /* The trailer conventionally has inode 0; real entries get distinct numbers so the
     * unpacker never treats two files as hard links. */
    ino = mode ? ++w->next_ino : 0;
    snprintf(hdr, sizeof(hdr), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino,
             mode, 0u, 0u, nlink, 0u, (uint32_t)len, 0u, 0u, 0u, 0u, (uint32_t)(strlen(name) + 1),
             0u);
    r = write_all(w, hdr, CPIO_HDR_LEN);
    if (r == 0)
        r = write_all(w, name, strlen(name) + 1);
    if (r == 0)
        r = pad4(w);
    if (r == 0 && len > 0)
        r = write_all(w, data, len);
    if (r == 0)
        r = pad4(w);
    if (r < 0)
        return tp_err_errno(err, r, "write cpio entry '%s'", name);
    return 0;
}

void
cpio_writer_init(struct cpio_writer *w, int fd)
{
    *w = (struct cpio_writer){ .fd = fd };
}

int
cpio_add_dir(struct cpio_writer *w, const char *name, mode_t mode, struct tp_err *err)
{
    return add_entry(w, name, S_IFDIR | (mode & 07777), 2, NULL, 0, err);
}

int
cpio_add_file(struct cpio_writer *w, const char *name, mode_t mode, const void *data, size_t len,
              struct tp_err *err)
{
    return add_entry(w, name, S_IFREG | (mode & 07777), 1, data, len, err);
}

int
cpio_add_symlink(struct cpio_writer *w, const char *name, const char *target, struct tp_err *err)
{
    /* A symlink's target is its data, without a NUL. */
    return add_entry(w, name, S_IFLNK | 0777, 1, target, strlen(target), err);
}

int
cpio_finish(struct cpio_writer *w, struct tp_err *err)
{
    return add_entry(w, "TRAILER!!!", 0, 1, NULL, 0, err);
}
