/* Working sets of snapshot memory images: recording from a VMM's page tables, a compact
 * versioned file, and a worker that reads the ranges into the page cache. */
#include "snapshot/workingset.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "hypervisor/driver.h"
#include "util/fs.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define WS_MAGIC       "TPWS"
#define WS_HEADER_LEN  64
#define WS_TRAILER_LEN 8
#define WS_MAX_FILE    (16u << 20) /* a canonical file for 16 GiB of 4 KiB pages fits in 4 MiB */

#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)
#define PAGEMAP_BATCH   4096 /* entries per pread: 32 KiB */

struct snap_ws *
snap_ws_free(struct snap_ws *ws)
{
    if (ws)
        free(ws->ranges);
    free(ws);
    return NULL;
}

void
snap_ws_identity_from_stat(struct snap_ws_identity *ret, const struct stat *st)
{
    *ret = (struct snap_ws_identity){
        .size = (uint64_t)st->st_size,
        .dev = (uint64_t)st->st_dev,
        .ino = (uint64_t)st->st_ino,
        .mtime_sec = (int64_t)st->st_mtim.tv_sec,
        .mtime_nsec = (uint64_t)st->st_mtim.tv_nsec,
    };
}

static bool
bit_set(const uint8_t *bits, uint64_t k)
{
    return bits[k / 8] & (1u << (k % 8));
}

struct snap_ws *
snap_ws_from_bitmap(const uint8_t *bits, uint64_t npages, uint32_t page_size)
{
    struct snap_ws *ws = xzalloc(sizeof(*ws));
    size_t runs = 0;

    ws->page_size = page_size;
    for (uint64_t k = 0; k < npages; k++)
        if (bit_set(bits, k) && (k == 0 || !bit_set(bits, k - 1)))
            runs++;
    ws->ranges = runs ? xnew(struct snap_ws_range, runs) : NULL;
    for (uint64_t k = 0; k < npages;) {
        if (!bit_set(bits, k)) {
            k++;
            continue;
        }
        uint64_t start = k;
        while (k < npages && bit_set(bits, k))
            k++;
        ws->ranges[ws->n++] = (struct snap_ws_range){
            .off = start * page_size,
            .len = (k - start) * page_size,
        };
        ws->bytes += (k - start) * page_size;
    }
    return ws;
}

struct snap_ws *
snap_ws_union(const struct snap_ws *a, const struct snap_ws *b)
{
    struct snap_ws *ws = xzalloc(sizeof(*ws));
    const struct snap_ws *base = a ? a : b;
    size_t na = a ? a->n : 0, nb = b ? b->n : 0, ka = 0, kb = 0;

    ws->page_size = base ? base->page_size : 0;
    ws->image = base ? base->image : (struct snap_ws_identity){ 0 };
    ws->ranges = na + nb ? xnew(struct snap_ws_range, na + nb) : NULL;
    while (ka < na || kb < nb) {
        /* The next range by offset; it extends the last one when it overlaps or touches it. */
        const struct snap_ws_range *r =
            kb >= nb || (ka < na && a->ranges[ka].off <= b->ranges[kb].off) ? &a->ranges[ka++]
                                                                            : &b->ranges[kb++];
        struct snap_ws_range *last = ws->n ? &ws->ranges[ws->n - 1] : NULL;
        if (last && r->off <= last->off + last->len) {
            if (r->off + r->len > last->off + last->len)
                last->len = r->off + r->len - last->off;
        } else {
            ws->ranges[ws->n++] = *r;
        }
    }
    for (size_t k = 0; k < ws->n; k++)
        ws->bytes += ws->ranges[k].len;
    return ws;
}

static int
range_cmp(const void *a, const void *b)
{
    const struct snap_ws_range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

struct snap_ws *
snap_ws_from_extents(const struct snap_ws_range *r, size_t n, uint32_t page_size, uint64_t limit)
{
    _cleanup_free_ struct snap_ws_range *v = n ? xnew(struct snap_ws_range, n) : NULL;
    struct snap_ws pages = { .page_size = page_size };
    const uint64_t end_max = limit / page_size * page_size;

    for (size_t k = 0; k < n; k++) {
        uint64_t start = r[k].off / page_size * page_size;
        uint64_t end = r[k].len > UINT64_MAX - r[k].off ? UINT64_MAX : r[k].off + r[k].len;
        end = end > end_max ? end_max : (end + page_size - 1) / page_size * page_size;
        if (r[k].len > 0 && start < end)
            v[pages.n++] = (struct snap_ws_range){ .off = start, .len = end - start };
    }
    if (pages.n)
        qsort(v, pages.n, sizeof(*v), range_cmp);
    pages.ranges = v;
    /* A union with nothing merges the sorted ranges. */
    return snap_ws_union(&pages, NULL);
}

/* FNV-1a, 64 bits: detects torn and corrupted files, nothing more is asked of it. */
static uint64_t
fnv1a64(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < len; k++) {
        h ^= p[k];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void
put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
    for (unsigned k = 0; k < bytes; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t
get_le(const uint8_t *p, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < bytes; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static size_t
put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* One LEB128 value from [*p, end): false when it runs past end or past 64 bits. */
static bool
get_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
    uint64_t v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        if (shift == 63 && b > 1)
            return false;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *ret = v;
            return true;
        }
    }
    return false;
}

void
snap_ws_encode(const struct snap_ws *ws, uint8_t **ret_buf, size_t *ret_len)
{
    size_t cap = WS_HEADER_LEN + ws->n * 20 + WS_TRAILER_LEN;
    uint8_t *buf = xzalloc(cap);
    uint64_t prev_end = 0; /* in pages */
    size_t len = WS_HEADER_LEN;

    memcpy(buf, WS_MAGIC, 4);
    put_le(buf + 4, SNAP_WORKING_SET_VERSION, 4);
    put_le(buf + 8, ws->page_size, 4);
    put_le(buf + 12, ws->n, 4);
    put_le(buf + 16, ws->image.size, 8);
    put_le(buf + 24, ws->image.dev, 8);
    put_le(buf + 32, ws->image.ino, 8);
    put_le(buf + 40, (uint64_t)ws->image.mtime_sec, 8);
    put_le(buf + 48, ws->image.mtime_nsec, 8);
    put_le(buf + 56, ws->bytes, 8);
    for (size_t k = 0; k < ws->n; k++) {
        uint64_t start = ws->ranges[k].off / ws->page_size;
        uint64_t pages = ws->ranges[k].len / ws->page_size;
        len += put_varint(buf + len, start - prev_end);
        len += put_varint(buf + len, pages);
        prev_end = start + pages;
    }
    put_le(buf + len, fnv1a64(buf, len), 8);
    *ret_buf = buf;
    *ret_len = len + WS_TRAILER_LEN;
}

int
snap_ws_decode(const uint8_t *buf, size_t len, struct snap_ws **ret, struct tp_err *err)
{
    _cleanup_(snap_ws_freep) struct snap_ws *ws = NULL;

    if (len < WS_HEADER_LEN + WS_TRAILER_LEN)
        return tp_err_set(err, -EPROTO, "working set truncated at %zu bytes", len);
    if (memcmp(buf, WS_MAGIC, 4) != 0)
        return tp_err_set(err, -EPROTO, "not a working set file");
    if (get_le(buf + len - WS_TRAILER_LEN, 8) != fnv1a64(buf, len - WS_TRAILER_LEN))
        return tp_err_set(err, -EPROTO, "working set checksum mismatch");
    uint32_t version = (uint32_t)get_le(buf + 4, 4);
    if (version != SNAP_WORKING_SET_VERSION)
        return tp_err_set(err, -EPROTO, "working set version %" PRIu32 ", expected %d", version,
                          SNAP_WORKING_SET_VERSION);
    ws = xzalloc(sizeof(*ws));
    ws->page_size = (uint32_t)get_le(buf + 8, 4);
    uint64_t n = get_le(buf + 12, 4);
    ws->image.size = get_le(buf + 16, 8);
    ws->image.dev = get_le(buf + 24, 8);
    ws->image.ino = get_le(buf + 32, 8);
    ws->image.mtime_sec = (int64_t)get_le(buf + 40, 8);
    ws->image.mtime_nsec = get_le(buf + 48, 8);
    uint64_t bytes = get_le(buf + 56, 8);
    if (ws->page_size < 512 || ws->page_size > (1u << 21) ||
        (ws->page_size & (ws->page_size - 1)) != 0)
        return tp_err_set(err, -EPROTO, "working set page size %" PRIu32 " is invalid",
                          ws->page_size);
    uint64_t npages = ws->image.size / ws->page_size + (ws->image.size % ws->page_size != 0);
    /* Canonical ranges never touch: at most one per two pages; each takes two bytes at least. */
    if (n > npages / 2 + 1 || n > (len - WS_HEADER_LEN - WS_TRAILER_LEN) / 2)
        return tp_err_set(err, -EPROTO, "working set has %" PRIu64 " ranges for %" PRIu64 " pages",
                          n, npages);
    ws->ranges = n ? xnew(struct snap_ws_range, n) : NULL;
    const uint8_t *p = buf + WS_HEADER_LEN, *end = buf + len - WS_TRAILER_LEN;
    uint64_t pos = 0; /* end of the previous range, in pages */
    for (uint64_t k = 0; k < n; k++) {
        uint64_t gap, pages;
        if (!get_varint(&p, end, &gap) || !get_varint(&p, end, &pages))
            return tp_err_set(err, -EPROTO, "working set truncated in range %" PRIu64, k);
        if (pages == 0 || (k > 0 && gap == 0))
            return tp_err_set(err, -EPROTO, "working set range %" PRIu64 " is not canonical", k);
        if (gap > npages - pos || pages > npages - pos - gap)
            return tp_err_set(err, -EPROTO, "working set range %" PRIu64 " is outside the image",
                              k);
        pos += gap;
        ws->ranges[k] = (struct snap_ws_range){
            .off = pos * ws->page_size,
            .len = pages * ws->page_size,
        };
        pos += pages;
        ws->bytes += pages * ws->page_size;
        ws->n++;
    }
    if (p != end)
        return tp_err_set(err, -EPROTO, "working set has %td trailing bytes", end - p);
    if (ws->bytes != bytes)
        return tp_err_set(err, -EPROTO, "working set covers %" PRIu64 " bytes, says %" PRIu64,
                          ws->bytes, bytes);
    *ret = TAKE_PTR(ws);
    return 0;
}

int
snap_ws_check(const struct snap_ws *ws, const struct stat *image, struct tp_err *err)
{
    struct snap_ws_identity now;

    snap_ws_identity_from_stat(&now, image);
    if (now.size != ws->image.size || now.dev != ws->image.dev || now.ino != ws->image.ino)
        return tp_err_set(err, -ESTALE, "working set was taken of another memory image");
    if (now.mtime_sec != ws->image.mtime_sec || now.mtime_nsec != ws->image.mtime_nsec)
        return tp_err_set(err, -ESTALE, "memory image changed since its working set was taken");
    return 0;
}

int
snap_ws_save(const char *dir, struct snap_ws *ws, struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_free_ char *path = fs_path_join(dir, SNAP_WORKING_SET);
    _cleanup_free_ char *tmp = fs_path_join(dir, SNAP_WORKING_SET ".tmp");
    _cleanup_free_ uint8_t *buf = NULL;
    struct stat st;
    size_t len;
    int r;

    if (stat(memory, &st) < 0)
        return tp_err_errno(err, -errno, "stat '%s'", memory);
    snap_ws_identity_from_stat(&ws->image, &st);
    snap_ws_encode(ws, &buf, &len);
    /* Advisory: no fsync. A file torn by a power cut fails its checksum and is ignored. */
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return tp_err_errno(err, -errno, "create '%s'", tmp);
    r = fd_write_all(fd, buf, len);
    if (r < 0) {
        unlink(tmp);
        return tp_err_errno(err, r, "write '%s'", tmp);
    }
    if (rename(tmp, path) < 0) {
        r = tp_err_errno(err, -errno, "rename '%s'", tmp);
        unlink(tmp);
        return r;
    }
    return 0;
}

int
snap_ws_load(const char *dir, struct snap_ws **ret, struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_free_ char *path = fs_path_join(dir, SNAP_WORKING_SET);
    _cleanup_free_ char *data = NULL;
    _cleanup_(snap_ws_freep) struct snap_ws *ws = NULL;
    struct stat st;
    size_t len = 0;
    int r;

    r = fs_read_file(path, WS_MAX_FILE, &data, &len, err);
    if (r < 0)
        return r;
    r = snap_ws_decode((const uint8_t *)data, len, &ws, err);
    if (r < 0) {
        tp_err_wrap(err, "'%s'", path);
        return r;
    }
    if (stat(memory, &st) < 0)
        return tp_err_errno(err, -errno, "stat '%s'", memory);
    r = snap_ws_check(ws, &st, err);
    if (r < 0) {
        tp_err_wrap(err, "'%s'", path);
        return r;
    }
    *ret = TAKE_PTR(ws);
    return 0;
}

struct vma {
    uint64_t start, end, off;
};

/* The mappings of the image (by device and inode) in pid's address space. */
static int
find_mappings(pid_t pid, const struct stat *st, struct vma **ret, size_t *ret_n, struct tp_err *err)
{
    char path[64];
    _cleanup_free_ char *line = NULL;
    _cleanup_free_ struct vma *v = NULL;
    size_t cap = 0, n = 0, linecap = 0;

    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return tp_err_errno(err, -errno, "open '%s'", path);
    while (getline(&line, &linecap, f) > 0) {
        unsigned long long start, end, off, ino;
        unsigned maj, min;
        if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &start, &end, &off, &maj, &min, &ino) !=
            6)
            continue;
        if (ino != (unsigned long long)st->st_ino || maj != major(st->st_dev) ||
            min != minor(st->st_dev) || end <= start)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            v = xrealloc(v, cap * sizeof(*v));
        }
        v[n++] = (struct vma){ .start = start, .end = end, .off = off };
    }
    *ret = TAKE_PTR(v);
    *ret_n = n;
    return 0;
}

int
snap_ws_from_process(pid_t pid, const char *dir, struct snap_ws **ret, struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_free_ struct vma *vmas = NULL;
    _cleanup_free_ uint8_t *bits = NULL;
    _cleanup_free_ uint64_t *entries = NULL;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    struct stat st;
    char path[64];
    size_t n = 0;
    int r;

    if (stat(memory, &st) < 0)
        return tp_err_errno(err, -errno, "stat '%s'", memory);
    r = find_mappings(pid, &st, &vmas, &n, err);
    if (r < 0)
        return r;
    if (n == 0)
        return tp_err_set(err, -ENOENT, "process %d does not map '%s'", (int)pid, memory);
    snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", path);
    uint64_t npages = ((uint64_t)st.st_size + page - 1) / page;
    bits = xzalloc(npages / 8 + 1);
    entries = xnew(uint64_t, PAGEMAP_BATCH);
    for (size_t k = 0; k < n; k++) {
        for (uint64_t va = vmas[k].start; va < vmas[k].end;) {
            uint64_t want = (vmas[k].end - va) / page;
            if (want > PAGEMAP_BATCH)
                want = PAGEMAP_BATCH;
            ssize_t got =
                pread(fd, entries, want * sizeof(uint64_t), (off_t)(va / page * sizeof(uint64_t)));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                return tp_err_errno(err, got < 0 ? -errno : -EIO, "read '%s'", path);
            size_t m = (size_t)got / sizeof(uint64_t);
            for (size_t e = 0; e < m; e++) {
                uint64_t pg = (vmas[k].off + (va - vmas[k].start)) / page + e;
                if ((entries[e] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED)) && pg < npages)
                    bits[pg / 8] |= (uint8_t)(1u << (pg % 8));
            }
            va += m * page;
        }
    }
    *ret = snap_ws_from_bitmap(bits, npages, (uint32_t)page);
    return 0;
}

/* Bytes per readahead(2) call: the default read_ahead_kb (128 KiB), below which few devices go. */
#define PREFETCH_CHUNK (128u * 1024)

struct snap_prefetch {
    pthread_t thread;
    int fd;
    struct snap_ws *ws;
    struct snap_prefetch_stats stats;
};

static void *
prefetch_worker(void *arg)
{
    struct snap_prefetch *p = arg;
    uint64_t t0 = now_ns();

    for (size_t k = 0; k < p->ws->n; k++) {
        const struct snap_ws_range *rg = &p->ws->ranges[k];
        /* readahead(2) queues the reads and returns; a guest fault on a page still being read
         * waits for that read instead of issuing its own. The kernel reads at most one
         * readahead window per call (max(read_ahead_kb, the device's optimal I/O size)) and
         * silently drops the rest: a longer range, issued whole, lost its tail, and the
         * guest's first touch there read a whole window around it (8 MiB here), most of it
         * outside the working set. Hence chunks no bigger than the smallest such window. */
        for (uint64_t off = rg->off; off < rg->off + rg->len; off += PREFETCH_CHUNK) {
            uint64_t len = rg->off + rg->len - off;
            int r = 0;
            if (len > PREFETCH_CHUNK)
                len = PREFETCH_CHUNK;
            if (readahead(p->fd, (off_t)off, len) < 0) {
                r = errno == EINVAL
                        ? -posix_fadvise(p->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED)
                        : -errno;
            }
            if (r < 0 && p->stats.error == 0)
                p->stats.error = r;
        }
        p->stats.bytes += rg->len;
        p->stats.ranges++;
    }
    p->stats.ms = (double)(now_ns() - t0) / 1e6;
    return NULL;
}

int
snap_prefetch_start(const char *path, struct snap_ws *ws, struct snap_prefetch **ret,
                    struct tp_err *err)
{
    _cleanup_(snap_ws_freep) struct snap_ws *owned = ws;
    struct snap_prefetch *p;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int r;

    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", path);
    p = xzalloc(sizeof(*p));
    p->fd = fd;
    p->ws = TAKE_PTR(owned);
    r = pthread_create(&p->thread, NULL, prefetch_worker, p);
    if (r != 0) {
        close(p->fd);
        snap_ws_free(p->ws);
        free(p);
        return tp_err_errno(err, -r, "start the prefetch worker");
    }
    *ret = p;
    return 0;
}

void
snap_prefetch_join(struct snap_prefetch *p, struct snap_prefetch_stats *ret_stats)
{
    if (!p)
        return;
    pthread_join(p->thread, NULL);
    if (ret_stats)
        *ret_stats = p->stats;
    close(p->fd);
    snap_ws_free(p->ws);
    free(p);
}
