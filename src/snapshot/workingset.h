/* A snapshot's working set: the pages of its memory image a restored guest touched, recorded at
 * the next standby and read into the page cache by the next restore while its VMM starts.
 *
 * The file "workingset" next to the manifest is advisory: it names the memory image it was
 * taken of (size, device, inode, mtime), so one that is missing, stale, truncated or corrupt is
 * refused here and the caller simply restores without it. Written to a temp file and renamed
 * (not fsynced: a torn file after a power cut fails its checksum).
 *
 * Format (version 1, integers little-endian): a 64-byte header — "TPWS", u32 version,
 * u32 page size, u32 number of ranges, u64 image size, u64 st_dev, u64 st_ino, i64 mtime s,
 * u64 mtime ns, u64 bytes covered — then per range two LEB128 varints in pages (the gap since
 * the end of the previous range, then the length), then an FNV-1a 64 checksum of all of it.
 * Ranges are sorted, non-empty and never touch (canonical: one range per run of pages). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "util/cleanup.h"
#include "util/err.h"

#define SNAP_WORKING_SET         "workingset"
#define SNAP_WORKING_SET_VERSION 1

struct snap_ws_range {
    uint64_t off; /* bytes, page aligned */
    uint64_t len; /* bytes, a multiple of the page size, > 0 */
};

/* The memory image a working set was taken of. */
struct snap_ws_identity {
    uint64_t size;
    uint64_t dev;
    uint64_t ino;
    int64_t mtime_sec;
    uint64_t mtime_nsec;
};

struct snap_ws {
    uint32_t page_size;
    struct snap_ws_identity image;
    struct snap_ws_range *ranges; /* owned, sorted by offset */
    size_t n;
    uint64_t bytes; /* sum of the ranges' lengths */
};

struct snap_ws *snap_ws_free(struct snap_ws *ws);
DEFINE_CLEANUP(struct snap_ws, snap_ws_free)

/* The identity of a memory image as stat(2) gave it. */
void snap_ws_identity_from_stat(struct snap_ws_identity *ret, const struct stat *st);

/* A working set from a bitmap of npages pages (bit k of bits[k / 8] = page k touched): one range
 * per run of set bits. The identity is left zero. Never fails (OOM aborts). */
struct snap_ws *snap_ws_from_bitmap(const uint8_t *bits, uint64_t npages, uint32_t page_size);

/* The pages in a or in b (either may be NULL): sorted, overlapping and adjacent ranges merged.
 * The identity is a's (else b's). Never fails (OOM aborts). */
struct snap_ws *snap_ws_union(const struct snap_ws *a, const struct snap_ws *b);

/* The pages that n byte ranges (unsorted, possibly overlapping) of an image of limit bytes
 * touch, whole pages, clipped to the image. The identity is left zero. Never fails. */
struct snap_ws *snap_ws_from_extents(const struct snap_ws_range *r, size_t n, uint32_t page_size,
                                     uint64_t limit);

/* Encode ws (version 1); *ret_buf is owned by the caller. */
void snap_ws_encode(const struct snap_ws *ws, uint8_t **ret_buf, size_t *ret_len);

/* Decode and check a buffer: -EPROTO when it is truncated, corrupt, of another version, or its
 * ranges are not canonical or do not fit in the image it names. */
int snap_ws_decode(const uint8_t *buf, size_t len, struct snap_ws **ret, struct tp_err *err);

/* Whether ws was taken of this memory image: -ESTALE when it names another (or a modified) one. */
int snap_ws_check(const struct snap_ws *ws, const struct stat *image, struct tp_err *err);

/* Write ws as dir's working set (temp file + rename), naming dir's memory image as it is now. */
int snap_ws_save(const char *dir, struct snap_ws *ws, struct tp_err *err);

/* Read dir's working set and check it against dir's memory image: -ENOENT (none), -EPROTO,
 * -ESTALE, -EFBIG. */
int snap_ws_load(const char *dir, struct snap_ws **ret, struct tp_err *err);

/* The pages of dir's memory image that process pid has mapped now (its page tables, from
 * /proc/pid/maps and /proc/pid/pagemap): what its guest touched since the process mapped the
 * image, not what merely sits in the page cache (a prefetch, fault-around aside). -ENOENT when
 * pid maps no such image. The identity is left zero (snap_ws_save fills it). */
int snap_ws_from_process(pid_t pid, const char *dir, struct snap_ws **ret, struct tp_err *err);

/* A worker thread that reads a working set's ranges into the page cache, in offset order
 * (readahead(2); posix_fadvise WILLNEED where the filesystem has no readahead). */
struct snap_prefetch;

struct snap_prefetch_stats {
    uint64_t bytes;  /* asked to be read (already cached pages included) */
    uint64_t ranges; /* ranges issued */
    double ms;       /* the worker's time to issue them all */
    int error;       /* first failure (-errno), 0 = none; the rest was still tried */
};

/* Start reading ws into the page cache of path (which it must have been checked against).
 * Takes ownership of ws (freed on failure too). */
int snap_prefetch_start(const char *path, struct snap_ws *ws, struct snap_prefetch **ret,
                        struct tp_err *err);

/* Wait for the worker and free it; ret_stats may be NULL. NULL-safe. */
void snap_prefetch_join(struct snap_prefetch *p, struct snap_prefetch_stats *ret_stats);
