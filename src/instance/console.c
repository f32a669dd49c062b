/* Console logs are capped: a chatty guest must not fill the data dir. The VMM appends
 * (O_APPEND), so the head can be cut away under it: collapsed out of the file where the
 * filesystem can (ext4, xfs), else the file starts over. The bytes cut so far are counted in
 * an xattr of the file, so a reader that follows it moves back by as much (api/h_logs.c). */
#include "instance/console.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/xalloc.h"

#define CUT_XATTR "user.torpor.cut"

uint64_t
console_log_cut_total(int fd)
{
    char buf[32];
    ssize_t n = fgetxattr(fd, CUT_XATTR, buf, sizeof(buf) - 1);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtoull(buf, NULL, 10);
}

/* Readers shift their position by what was cut since they last looked. */
static void
note_cut(int fd, uint64_t cut)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64, console_log_cut_total(fd) + cut);
    (void)fsetxattr(fd, CUT_XATTR, buf, (size_t)n, 0);
}

int
console_log_trim(const char *path, uint64_t max, uint64_t *ret_cut)
{
    _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;

    *ret_cut = 0;
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size <= max)
        return 0;
    /* Keep the newest half of the cap; cut whole blocks, as collapsing requires. */
    uint64_t blk = st.st_blksize > 0 ? (uint64_t)st.st_blksize : 4096;
    uint64_t cut = ((uint64_t)st.st_size - max / 2) / blk * blk;
    /* Readers hold a shared lock over "adjust for cuts, then read": they never see the file
     * cut without the count saying so. */
    (void)flock(fd, LOCK_EX);
    if (cut > 0 && fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, (off_t)cut) == 0) {
        note_cut(fd, cut);
        *ret_cut = cut;
        return 0; /* closing fd drops the lock */
    }
    /* Collapsing is not supported here (or raced with an append past the range): start the
     * file over; the VMM's next append lands at the new end. */
    if (ftruncate(fd, 0) < 0)
        return -errno;
    note_cut(fd, (uint64_t)st.st_size);
    *ret_cut = (uint64_t)st.st_size;
    return 0;
}

uint64_t
console_tail_offset_buf(const char *buf, size_t len, uint64_t lines)
{
    uint64_t seen = 0;

    if (lines == 0)
        return len;
    /* A '\n' at the very end closes the last line; it starts none. */
    for (size_t k = len > 0 && buf[len - 1] == '\n' ? len - 1 : len; k-- > 0;)
        if (buf[k] == '\n' && ++seen == lines)
            return k + 1;
    return 0;
}

#define TAIL_BLOCK (64u << 10)

int
console_tail_offset(int fd, uint64_t lines, uint64_t *ret)
{
    _cleanup_free_ char *buf = NULL;
    struct stat sb;
    uint64_t seen = 0;

    if (fstat(fd, &sb) < 0)
        return -errno;
    uint64_t end = (uint64_t)sb.st_size;
    if (lines == 0) {
        *ret = end;
        return 0;
    }
    buf = xmalloc(TAIL_BLOCK);
    bool last = true; /* the block holding the file's last byte */
    while (end > 0) {
        size_t n = end < TAIL_BLOCK ? (size_t)end : TAIL_BLOCK;
        uint64_t at = end - n;
        ssize_t got = pread(fd, buf, n, (off_t)at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if ((size_t)got != n)
            return -EIO; /* shrank under us: the caller holds the cap's lock */
        size_t k = n;
        if (last && buf[n - 1] == '\n')
            k--; /* closes the last line */
        last = false;
        while (k-- > 0)
            if (buf[k] == '\n' && ++seen == lines) {
                *ret = at + k + 1;
                return 0;
            }
        end = at;
    }
    *ret = 0;
    return 0;
}
