/* When console bytes arrived. torpord appends a record each time it finds the console log grown
 * (monitor.c watches the logs with inotify); readers (api/h_logs.c) map a byte's position to
 * the record that covers it. Only torpord writes the index, one writer at a time. */
#include "instance/console_index.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "instance/console.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

/* File layout: a 16-byte header, then 16-byte records (u64 end, i64 t_ns; little-endian).
 * Appends are single pwrite()s; a crash can leave a torn last record, which readers ignore and
 * the next append overwrites. */
#define IDX_MAGIC      "TPCONIDX\x01\0\0\0\0\0\0\0"
#define IDX_HDR        16u
#define IDX_REC        16u
#define IDX_READ_LIMIT (IDX_HDR + 4u * CONSOLE_INDEX_MAX_RECORDS * IDX_REC)

/* One lock for every instance's index: notes are a handful of syscalls. */
static pthread_mutex_t index_lock = PTHREAD_MUTEX_INITIALIZER;

static void
rec_encode(const struct console_rec *r, unsigned char *out)
{
    uint64_t e = htole64(r->end), t = htole64((uint64_t)r->t_ns);
    memcpy(out, &e, 8);
    memcpy(out + 8, &t, 8);
}

static void
rec_decode(const unsigned char *in, struct console_rec *r)
{
    uint64_t e, t;
    memcpy(&e, in, 8);
    memcpy(&t, in + 8, 8);
    r->end = le64toh(e);
    r->t_ns = (int64_t)le64toh(t);
}

/* Append the whole records of buf that extend recs; returns the bytes consumed. */
static size_t
recs_add(struct console_rec **recs, size_t *n, size_t *cap, const unsigned char *buf, size_t len)
{
    size_t k;

    for (k = 0; k + IDX_REC <= len; k += IDX_REC) {
        struct console_rec r;
        rec_decode(buf + k, &r);
        if (r.end == 0 || (*n > 0 && r.end <= (*recs)[*n - 1].end))
            continue; /* garbled: it would move the positions backwards */
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *recs = xrealloc(*recs, *cap * sizeof(**recs));
        }
        (*recs)[(*n)++] = r;
    }
    return k;
}

int
console_index_parse(const void *buf, size_t len, struct console_rec **ret_recs, size_t *ret_n)
{
    struct console_rec *recs = NULL;
    size_t n = 0, cap = 0;

    if (len < IDX_HDR || memcmp(buf, IDX_MAGIC, IDX_HDR) != 0)
        return -EBADMSG;
    recs_add(&recs, &n, &cap, (const unsigned char *)buf + IDX_HDR, len - IDX_HDR);
    *ret_recs = recs;
    *ret_n = n;
    return 0;
}

/* How far the log reaches in positions, and when it last changed. 0: there is no log. */
static int
log_extent(const char *log_path, uint64_t *ret_end, int64_t *ret_mtime_ns)
{
    _cleanup_close_ int fd = open(log_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    struct stat st;

    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    /* The size cap cuts and counts under the exclusive lock: read both as one. */
    (void)flock(fd, LOCK_SH);
    uint64_t cut = console_log_cut_total(fd);
    int r = fstat(fd, &st);
    (void)flock(fd, LOCK_UN);
    if (r < 0)
        return -errno;
    *ret_end = cut + (uint64_t)st.st_size;
    *ret_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    return 1;
}

static int
write_rec(int fd, off_t at, const struct console_rec *rec)
{
    unsigned char buf[IDX_REC];

    rec_encode(rec, buf);
    if (pwrite(fd, buf, IDX_REC, at) != (ssize_t)IDX_REC)
        return errno ? -errno : -EIO;
    return 0;
}

static int
compact_locked(const char *log_path, const char *idx_path, size_t max)
{
    _cleanup_free_ char *data = NULL;
    _cleanup_free_ struct console_rec *recs = NULL;
    _cleanup_free_ unsigned char *out = NULL;
    _cleanup_close_ int lfd = -EBADF;
    size_t len, n, first = 0;
    int r;

    r = fs_read_file(idx_path, IDX_READ_LIMIT, &data, &len, NULL);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    if (console_index_parse(data, len, &recs, &n) < 0)
        return 0; /* unreadable: the next note starts it over */
    lfd = open(log_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    uint64_t cut = lfd >= 0 ? console_log_cut_total(lfd) : 0;
    /* Records that end at or before the cut describe bytes no longer in the log. */
    while (first < n && recs[first].end <= cut)
        first++;
    /* Past the bound, the oldest half go: the first one kept then covers their bytes too,
     * with its later time. */
    if (n - first > max)
        first = n - max / 2;
    if (first == 0 && len == IDX_HDR + n * IDX_REC)
        return 0;
    size_t keep = n - first;
    out = xmalloc(IDX_HDR + keep * IDX_REC);
    memcpy(out, IDX_MAGIC, IDX_HDR);
    for (size_t k = 0; k < keep; k++)
        rec_encode(&recs[first + k], out + IDX_HDR + k * IDX_REC);
    return fs_write_atomic(idx_path, out, IDX_HDR + keep * IDX_REC, 0600, NULL);
}

static int
note_locked(const char *log_path, const char *idx_path, int64_t now_ns)
{
    _cleanup_close_ int fd = -EBADF;
    unsigned char hdr[IDX_HDR], last[IDX_REC];
    uint64_t end = 0;
    int64_t mtime = 0;
    struct stat st;
    int r;

    r = log_extent(log_path, &end, &mtime);
    if (r <= 0)
        return r;
    fd = open(idx_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || fstat(fd, &st) < 0)
        return -errno;
    uint64_t size = (uint64_t)st.st_size;
    if (size >= IDX_HDR && pread(fd, hdr, IDX_HDR, 0) == (ssize_t)IDX_HDR &&
        memcmp(hdr, IDX_MAGIC, IDX_HDR) == 0) {
        uint64_t n = (size - IDX_HDR) / IDX_REC;
        struct console_rec prev = { 0 };
        if (n > 0) {
            if (pread(fd, last, IDX_REC, (off_t)(IDX_HDR + (n - 1) * IDX_REC)) != IDX_REC)
                return errno ? -errno : -EIO;
            rec_decode(last, &prev);
        }
        if (prev.end <= end) {
            if (prev.end == end)
                return 0; /* nothing new */
            /* Over a torn record a crash left, if any (shorter than this one). */
            struct console_rec rec = { .end = end, .t_ns = now_ns };
            r = write_rec(fd, (off_t)(IDX_HDR + n * IDX_REC), &rec);
            if (r >= 0 && n + 1 > CONSOLE_INDEX_MAX_RECORDS)
                r = compact_locked(log_path, idx_path, CONSOLE_INDEX_MAX_RECORDS);
            return r;
        }
        /* The index reaches past the log: not this log's. */
    }
    /* Start over, as a new file so that readers notice: what the log holds arrived at its
     * mtime at the latest. */
    unsigned char fresh[IDX_HDR + IDX_REC];
    struct console_rec rec = { .end = end, .t_ns = mtime < now_ns ? mtime : now_ns };
    memcpy(fresh, IDX_MAGIC, IDX_HDR);
    rec_encode(&rec, fresh + IDX_HDR);
    return fs_write_atomic(idx_path, fresh, end > 0 ? sizeof(fresh) : IDX_HDR, 0600, NULL);
}

int
console_index_note(const char *log_path, const char *idx_path, int64_t now_ns)
{
    pthread_mutex_lock(&index_lock);
    int r = note_locked(log_path, idx_path, now_ns);
    pthread_mutex_unlock(&index_lock);
    return r;
}

int
console_index_compact(const char *log_path, const char *idx_path, size_t max)
{
    pthread_mutex_lock(&index_lock);
    int r = compact_locked(log_path, idx_path, max);
    pthread_mutex_unlock(&index_lock);
    return r;
}

void
console_index_clear(struct console_index *idx)
{
    free(idx->recs);
    *idx = (struct console_index){ 0 };
}

int
console_index_refresh(struct console_index *idx, const char *idx_path)
{
    _cleanup_close_ int fd = open(idx_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    _cleanup_free_ unsigned char *buf = NULL;
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0) {
        int r = -errno;
        console_index_clear(idx);
        return r;
    }
    uint64_t size = (uint64_t)st.st_size;
    /* Renamed over (compacted), or started over: read it all again. */
    if (st.st_dev != idx->dev || st.st_ino != idx->ino || size < idx->off) {
        console_index_clear(idx);
        idx->dev = st.st_dev;
        idx->ino = st.st_ino;
    }
    if (size > IDX_READ_LIMIT)
        size = IDX_READ_LIMIT;
    if (size <= idx->off)
        return idx->off >= IDX_HDR ? 0 : -EBADMSG;
    size_t len = (size_t)(size - idx->off);
    buf = xmalloc(len);
    ssize_t got = pread(fd, buf, len, (off_t)idx->off);
    if (got < 0)
        return -errno;
    len = (size_t)got;
    size_t at = 0;
    if (idx->off == 0) {
        if (len < IDX_HDR || memcmp(buf, IDX_MAGIC, IDX_HDR) != 0)
            return -EBADMSG;
        at = IDX_HDR;
    }
    at += recs_add(&idx->recs, &idx->n, &idx->cap, buf + at, len - at);
    idx->off += at;
    return 0;
}

bool
console_index_time(const struct console_index *idx, uint64_t pos, int64_t *ret_ns)
{
    size_t lo = 0, hi = idx->n;

    /* The first record that ends past pos. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (idx->recs[mid].end > pos)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (lo == idx->n)
        return false;
    *ret_ns = idx->recs[lo].t_ns;
    return true;
}
