/* When console bytes arrived: a sidecar index of (position, time) records beside console.log. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Positions count bytes ever written to the log (console_log_cut_total() + file offset), so a
 * cut of the log's head leaves every record valid. Record k covers the positions from record
 * k-1's end (the first record: from the log's start) up to its own end, exclusive: the bytes
 * torpord found there at time t_ns (ns since the epoch, CLOCK_REALTIME). */
struct console_rec {
    uint64_t end;
    int64_t t_ns;
};

/* How many records an index keeps: past this the oldest half are merged into the next one. */
#define CONSOLE_INDEX_MAX_RECORDS 16384

/* torpord looked at the log at now_ns: record the bytes no record covers yet as arrived now.
 * Creates the index, and starts it over when it is unreadable or ahead of the log (the log was
 * replaced, or a cut went uncounted): then everything in the log gets the log's mtime, the
 * latest time any of it can have arrived. 0 also when the log does not exist; -errno. Safe
 * from any thread (one writer at a time within the process). */
int console_index_note(const char *log_path, const char *idx_path, int64_t now_ns);
/* Drop the records of bytes the size cap cut from the log, and past max records the oldest
 * ones; the index is rewritten to a temp file and renamed over. -errno. */
int console_index_compact(const char *log_path, const char *idx_path, size_t max);

/* Records parsed from an index file's bytes: a bad header is -EBADMSG; a torn last record is
 * ignored; a record whose end does not grow (a garbled write) is skipped. ret_* owned. */
int console_index_parse(const void *buf, size_t len, struct console_rec **ret_recs, size_t *ret_n);

/* A reader's copy of an index, refreshed as it grows. */
struct console_index {
    struct console_rec *recs;
    size_t n, cap;
    dev_t dev;
    ino_t ino;
    uint64_t off; /* bytes of the file consumed */
};
/* (Re)read idx_path: only what was appended when it is the same file. -ENOENT when there is
 * none, -EBADMSG when unreadable; idx then holds no records. */
int console_index_refresh(struct console_index *idx, const char *idx_path);
/* The time of the byte at position pos: false when no record covers it yet. */
bool console_index_time(const struct console_index *idx, uint64_t pos, int64_t *ret_ns);
void console_index_clear(struct console_index *idx);
