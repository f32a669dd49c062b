/* Working sets (src/snapshot/workingset.c): ranges from a bitmap, the file's encoding, its
 * refusal when truncated, corrupt or stale, recording from a process's page tables, prefetch. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "hypervisor/driver.h"
#include "snapshot/workingset.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define PAGE 4096u

static char dir[] = "/tmp/torpor-test-workingset-XXXXXX";

static void
set_bits(uint8_t *bits, uint64_t from, uint64_t to)
{
    for (uint64_t k = from; k < to; k++)
        bits[k / 8] |= (uint8_t)(1u << (k % 8));
}

/* A memory image of npages pages in dir. */
static void
make_image(uint64_t npages)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_close_ int fd = open(memory, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)(npages * PAGE)), 0);
}

static void
test_ranges_from_bitmap(void **state)
{
    uint8_t bits[4] = { 0 }; /* 32 pages */
    (void)state;

    set_bits(bits, 0, 3);   /* a run at the start */
    set_bits(bits, 4, 5);   /* one page after a one-page gap */
    set_bits(bits, 10, 17); /* across a byte boundary */
    set_bits(bits, 31, 32); /* the last page */
    _cleanup_(snap_ws_freep) struct snap_ws *ws = snap_ws_from_bitmap(bits, 32, PAGE);
    assert_int_equal(ws->n, 4);
    assert_int_equal(ws->ranges[0].off, 0);
    assert_int_equal(ws->ranges[0].len, 3 * PAGE);
    assert_int_equal(ws->ranges[1].off, 4 * PAGE);
    assert_int_equal(ws->ranges[1].len, PAGE);
    assert_int_equal(ws->ranges[2].off, 10 * PAGE);
    assert_int_equal(ws->ranges[2].len, 7 * PAGE);
    assert_int_equal(ws->ranges[3].off, 31 * PAGE);
    assert_int_equal(ws->ranges[3].len, PAGE);
    assert_int_equal(ws->bytes, 12 * PAGE);

    uint8_t none[4] = { 0 };
    _cleanup_(snap_ws_freep) struct snap_ws *empty = snap_ws_from_bitmap(none, 32, PAGE);
    assert_int_equal(empty->n, 0);
    assert_int_equal(empty->bytes, 0);
}

/* Two recordings merge page-exactly: overlaps, touching ranges and ranges inside others join,
 * gaps stay; a missing side gives the other. */
static void
test_union_merges_exactly(void **state)
{
    uint8_t ba[8] = { 0 }, bb[8] = { 0 }, bu[8] = { 0 }; /* 64 pages */
    (void)state;

    set_bits(ba, 0, 2); /* b continues it: adjacent */
    set_bits(bb, 2, 4);
    set_bits(ba, 10, 20); /* b inside a */
    set_bits(bb, 12, 14);
    set_bits(bb, 30, 33); /* overlapping, b first */
    set_bits(ba, 32, 40);
    set_bits(ba, 50, 51); /* gaps stay gaps */
    set_bits(bb, 52, 53);
    set_bits(bb, 63, 64);
    for (size_t k = 0; k < sizeof(bu); k++)
        bu[k] = ba[k] | bb[k];
    _cleanup_(snap_ws_freep) struct snap_ws *a = snap_ws_from_bitmap(ba, 64, PAGE);
    _cleanup_(snap_ws_freep) struct snap_ws *b = snap_ws_from_bitmap(bb, 64, PAGE);
    _cleanup_(snap_ws_freep) struct snap_ws *want = snap_ws_from_bitmap(bu, 64, PAGE);
    a->image.ino = 7;
    _cleanup_(snap_ws_freep) struct snap_ws *u = snap_ws_union(a, b);
    assert_int_equal(u->n, want->n);
    assert_int_equal(u->n, 6);
    for (size_t k = 0; k < u->n; k++) {
        assert_int_equal(u->ranges[k].off, want->ranges[k].off);
        assert_int_equal(u->ranges[k].len, want->ranges[k].len);
    }
    assert_int_equal(u->bytes, want->bytes);
    assert_int_equal(u->page_size, PAGE);
    assert_int_equal(u->image.ino, 7);
    /* Symmetric, and a union with nothing is a copy. */
    _cleanup_(snap_ws_freep) struct snap_ws *v = snap_ws_union(b, a);
    assert_int_equal(v->n, u->n);
    assert_int_equal(v->bytes, u->bytes);
    _cleanup_(snap_ws_freep) struct snap_ws *only = snap_ws_union(NULL, b);
    assert_int_equal(only->n, b->n);
    assert_int_equal(only->bytes, b->bytes);
    _cleanup_(snap_ws_freep) struct snap_ws *none = snap_ws_union(NULL, NULL);
    assert_int_equal(none->n, 0);
    assert_int_equal(none->bytes, 0);
}

/* Byte ranges become the whole pages they touch, sorted and merged, clipped to the image. */
static void
test_from_extents(void **state)
{
    const struct snap_ws_range r[] = {
        { .off = 9 * PAGE + 100, .len = 10 },   /* inside one page */
        { .off = 2 * PAGE - 1, .len = 2 },      /* straddles pages 1 and 2 */
        { .off = 3 * PAGE, .len = PAGE },       /* page 3: adjacent, merges */
        { .off = 9 * PAGE, .len = PAGE },       /* page 9 again */
        { .off = 0, .len = 0 },                 /* empty: nothing */
        { .off = 15 * PAGE, .len = 4 * PAGE },  /* runs past the 16-page image: clipped */
        { .off = 40 * PAGE, .len = PAGE },      /* beyond it: dropped */
        { .off = UINT64_MAX - 10, .len = 100 }, /* wraps: dropped */
    };
    (void)state;

    _cleanup_(snap_ws_freep) struct snap_ws *ws =
        snap_ws_from_extents(r, sizeof(r) / sizeof(r[0]), PAGE, 16 * PAGE);
    assert_int_equal(ws->n, 3);
    assert_int_equal(ws->ranges[0].off, 1 * PAGE);
    assert_int_equal(ws->ranges[0].len, 3 * PAGE);
    assert_int_equal(ws->ranges[1].off, 9 * PAGE);
    assert_int_equal(ws->ranges[1].len, PAGE);
    assert_int_equal(ws->ranges[2].off, 15 * PAGE);
    assert_int_equal(ws->ranges[2].len, PAGE);
    assert_int_equal(ws->bytes, 5 * PAGE);
    _cleanup_(snap_ws_freep) struct snap_ws *none = snap_ws_from_extents(NULL, 0, PAGE, 16 * PAGE);
    assert_int_equal(none->n, 0);
}

static void
test_encode_decode_round_trip(void **state)
{
    /* 1 GiB of pages: ranges far apart need multi-byte varints. */
    const uint64_t npages = 1u << 18;
    _cleanup_free_ uint8_t *bits = calloc(npages / 8, 1);
    _cleanup_free_ uint8_t *buf = NULL;
    _cleanup_(snap_ws_freep) struct snap_ws *back = NULL;
    size_t len = 0;
    (void)state;

    set_bits(bits, 1, 2);
    set_bits(bits, 300, 900);
    set_bits(bits, 100000, 100001);
    set_bits(bits, npages - 5, npages);
    _cleanup_(snap_ws_freep) struct snap_ws *ws = snap_ws_from_bitmap(bits, npages, PAGE);
    ws->image = (struct snap_ws_identity){
        .size = npages * PAGE, .dev = 2049, .ino = 77, .mtime_sec = 1700000000, .mtime_nsec = 5
    };
    snap_ws_encode(ws, &buf, &len);
    assert_true(len < 64 + 4 * 8 + 8); /* compact: a few bytes per range */
    assert_int_equal(snap_ws_decode(buf, len, &back, NULL), 0);
    assert_int_equal(back->n, ws->n);
    assert_int_equal(back->bytes, ws->bytes);
    assert_int_equal(back->page_size, PAGE);
    assert_memory_equal(&back->image, &ws->image, sizeof(ws->image));
    assert_memory_equal(back->ranges, ws->ranges, ws->n * sizeof(ws->ranges[0]));
}

/* Every truncation and every flipped byte is refused, never mistaken for a working set. */
static void
test_decode_refuses_damage(void **state)
{
    uint8_t bits[8] = { 0 };
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;
    (void)state;

    set_bits(bits, 2, 9);
    set_bits(bits, 20, 21);
    set_bits(bits, 40, 64);
    _cleanup_(snap_ws_freep) struct snap_ws *ws = snap_ws_from_bitmap(bits, 64, PAGE);
    ws->image.size = 64 * PAGE;
    snap_ws_encode(ws, &buf, &len);
    for (size_t cut = 0; cut < len; cut++) {
        struct snap_ws *back = NULL;
        assert_int_equal(snap_ws_decode(buf, cut, &back, NULL), -EPROTO);
        assert_null(back);
    }
    for (size_t at = 0; at < len; at++) {
        struct snap_ws *back = NULL;
        buf[at] ^= 0x10;
        assert_int_equal(snap_ws_decode(buf, len, &back, NULL), -EPROTO);
        buf[at] ^= 0x10;
    }
    _cleanup_(snap_ws_freep) struct snap_ws *back = NULL;
    assert_int_equal(snap_ws_decode(buf, len, &back, NULL), 0);
}

/* A well-formed file (valid checksum) whose content breaks the rules is still refused. */
static void
test_decode_refuses_bad_ranges(void **state)
{
    struct snap_ws_range touching[] = { { 0, PAGE }, { PAGE, PAGE } };
    struct snap_ws_range outside[] = { { 60 * PAGE, 8 * PAGE } };
    struct snap_ws_range empty[] = { { 0, 0 } };
    struct {
        struct snap_ws_range *r;
        size_t n;
        uint32_t page;
        uint32_t version;
    } cases[] = {
        { touching, 2, PAGE, SNAP_WORKING_SET_VERSION },
        { outside, 1, PAGE, SNAP_WORKING_SET_VERSION },
        { empty, 1, PAGE, SNAP_WORKING_SET_VERSION },
        { NULL, 0, 3000, SNAP_WORKING_SET_VERSION },
        { NULL, 0, PAGE, SNAP_WORKING_SET_VERSION + 1 },
    };
    (void)state;

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct snap_ws ws = { .page_size = cases[c].page, .ranges = cases[c].r, .n = cases[c].n };
        _cleanup_free_ uint8_t *buf = NULL;
        struct snap_ws *back = NULL;
        size_t len = 0;
        ws.image.size = 64 * PAGE;
        for (size_t k = 0; k < ws.n; k++)
            ws.bytes += ws.ranges[k].len;
        snap_ws_encode(&ws, &buf, &len);
        if (cases[c].version != SNAP_WORKING_SET_VERSION) {
            /* Another version, with its checksum fixed up. */
            buf[4] = (uint8_t)cases[c].version;
            uint64_t h = 0xcbf29ce484222325ull;
            for (size_t k = 0; k < len - 8; k++)
                h = (h ^ buf[k]) * 0x100000001b3ull;
            for (unsigned k = 0; k < 8; k++)
                buf[len - 8 + k] = (uint8_t)(h >> (8 * k));
        }
        assert_int_equal(snap_ws_decode(buf, len, &back, NULL), -EPROTO);
        assert_null(back);
    }
}

/* Saved next to an image, loaded back while the image is unchanged; refused as stale once the
 * image is written, replaced or resized; missing or corrupt files are refused too. */
static void
test_save_load_and_staleness(void **state)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_free_ char *path = fs_path_join(dir, SNAP_WORKING_SET);
    uint8_t bits[2] = { 0 };
    struct snap_ws *back = NULL;
    (void)state;

    make_image(16);
    assert_int_equal(snap_ws_load(dir, &back, NULL), -ENOENT);
    set_bits(bits, 3, 7);
    _cleanup_(snap_ws_freep) struct snap_ws *ws = snap_ws_from_bitmap(bits, 16, PAGE);
    assert_int_equal(snap_ws_save(dir, ws, NULL), 0);
    assert_int_equal(snap_ws_load(dir, &back, NULL), 0);
    assert_int_equal(back->n, 1);
    assert_int_equal(back->bytes, 4 * PAGE);
    back = snap_ws_free(back);
    _cleanup_free_ char *tmp = fs_path_join(dir, SNAP_WORKING_SET ".tmp");
    assert_false(fs_exists(tmp));

    /* The image was written after the recording (a guest ran on it): stale. */
    struct timespec later[2] = { { 0, UTIME_OMIT }, { 0, 0 } };
    struct stat st;
    assert_int_equal(stat(memory, &st), 0);
    later[1] = st.st_mtim;
    later[1].tv_sec += 1;
    assert_int_equal(utimensat(AT_FDCWD, memory, later, 0), 0);
    assert_int_equal(snap_ws_load(dir, &back, NULL), -ESTALE);

    /* Another file under the same name: stale. */
    assert_int_equal(snap_ws_save(dir, ws, NULL), 0);
    assert_int_equal(unlink(memory), 0);
    make_image(16);
    assert_int_equal(snap_ws_load(dir, &back, NULL), -ESTALE);

    /* Resized: stale. */
    assert_int_equal(snap_ws_save(dir, ws, NULL), 0);
    assert_int_equal(truncate(memory, 32 * PAGE), 0);
    assert_int_equal(snap_ws_load(dir, &back, NULL), -ESTALE);

    /* Truncated and garbage files: refused. */
    assert_int_equal(snap_ws_save(dir, ws, NULL), 0);
    assert_int_equal(truncate(path, 40), 0);
    assert_int_equal(snap_ws_load(dir, &back, NULL), -EPROTO);
    assert_int_equal(fs_write_atomic(path, "garbage", 7, 0600, NULL), 0);
    assert_int_equal(snap_ws_load(dir, &back, NULL), -EPROTO);
    assert_null(back);
    unlink(path);
    unlink(memory);
}

/* This process maps the image shared and touches some pages: exactly those are recorded, not
 * the pages that are only in the page cache. Then a prefetch reads them. */
static void
test_record_from_process_and_prefetch(void **state)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    struct snap_ws *ws = NULL, *back = NULL;
    struct snap_prefetch *p = NULL;
    struct snap_prefetch_stats stats;
    (void)state;

    if (sysconf(_SC_PAGESIZE) != PAGE)
        skip();
    make_image(64);
    assert_int_equal(snap_ws_from_process(getpid(), dir, &ws, NULL), -ENOENT);
    _cleanup_close_ int fd = open(memory, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    /* In the page cache, never mapped: not part of the working set. */
    char page[PAGE] = { 1 };
    assert_int_equal(pwrite(fd, page, PAGE, 40 * PAGE), (ssize_t)PAGE);
    uint8_t *mem = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(mem != MAP_FAILED);
    /* Writes: a read fault could map cached neighbours too (fault-around). */
    for (unsigned k = 8; k < 12; k++)
        mem[k * PAGE] = 1;
    mem[20 * PAGE + 7] = 1;
    assert_int_equal(snap_ws_from_process(getpid(), dir, &ws, NULL), 0);
    munmap(mem, 64 * PAGE);
    assert_int_equal(ws->n, 2);
    assert_int_equal(ws->ranges[0].off, 8 * PAGE);
    assert_int_equal(ws->ranges[0].len, 4 * PAGE);
    assert_int_equal(ws->ranges[1].off, 20 * PAGE);
    assert_int_equal(ws->ranges[1].len, PAGE);
    assert_int_equal(snap_ws_save(dir, ws, NULL), 0);
    ws = snap_ws_free(ws);

    assert_int_equal(snap_ws_load(dir, &back, NULL), 0);
    assert_int_equal(snap_prefetch_start(memory, back, &p, NULL), 0);
    snap_prefetch_join(p, &stats);
    assert_int_equal(stats.bytes, 5 * PAGE);
    assert_int_equal(stats.ranges, 2);
    assert_int_equal(stats.error, 0);
    snap_prefetch_join(NULL, NULL);
}

/* Pages of fd in the page cache (cachestat(2), Linux >= 6.5: it counts folios whose read is
 * still in flight, which mincore does not); -1 where the kernel lacks it. */
static long long
cached_pages(int fd)
{
    struct {
        uint64_t off, len;
    } range = { 0, 0 };
    uint64_t cs[5] = { 0 };
    if (syscall(451, fd, &range, cs, 0) < 0)
        return -1;
    return (long long)cs[0];
}

/* One range longer than the kernel's per-call readahead limit (max(read_ahead_kb, the device's
 * optimal I/O size): 8 MiB where this was written) is read in whole, not cut at the limit. */
static void
test_prefetch_reads_long_ranges_whole(void **state)
{
    enum {
        NPAGES = 24u * 1024 * 1024 / PAGE
    };
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_free_ uint8_t *bits = calloc(NPAGES / 8, 1);
    _cleanup_free_ char *chunk = malloc(1 << 20);
    struct snap_prefetch *p = NULL;
    struct snap_prefetch_stats stats;
    (void)state;

    if (sysconf(_SC_PAGESIZE) != PAGE)
        skip();
    _cleanup_close_ int fd = open(memory, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0 && bits && chunk);
    memset(chunk, 0x5a, 1 << 20);
    for (unsigned k = 0; k < NPAGES * PAGE / (1u << 20); k++)
        assert_int_equal(write(fd, chunk, 1 << 20), 1 << 20);
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    long long before = cached_pages(fd);
    if (before < 0 || before > NPAGES / 2)
        skip(); /* no cachestat, or a filesystem that keeps it all cached (tmpfs) */
    set_bits(bits, 0, NPAGES);
    struct snap_ws *ws = snap_ws_from_bitmap(bits, NPAGES, PAGE);
    assert_int_equal(ws->n, 1);
    assert_int_equal(snap_prefetch_start(memory, ws, &p, NULL), 0);
    snap_prefetch_join(p, &stats);
    assert_int_equal(stats.error, 0);
    assert_int_equal(stats.bytes, (uint64_t)NPAGES * PAGE);
    assert_int_equal(cached_pages(fd), NPAGES);
}

static int
teardown_all(void **state)
{
    (void)state;
    return fs_rm_rf(dir, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges_from_bitmap),
        cmocka_unit_test(test_union_merges_exactly),
        cmocka_unit_test(test_from_extents),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_decode_refuses_damage),
        cmocka_unit_test(test_decode_refuses_bad_ranges),
        cmocka_unit_test(test_save_load_and_staleness),
        cmocka_unit_test(test_record_from_process_and_prefetch),
        cmocka_unit_test(test_prefetch_reads_long_ranges_whole),
    };
    if (!mkdtemp(dir))
        return 1;
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
