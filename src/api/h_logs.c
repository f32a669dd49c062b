/* GET /v1/instances/{ref}/logs[?follow=true][&tail=N][&since=T][&timestamps=true]: stream the
 * serial console file (from its last N lines with tail); with follow, keep the stream open and
 * send what is appended, woken by inotify, until the client leaves, the instance stops, the file
 * is deleted or moved away, or the daemon shuts down. When the size cap cuts the log's head
 * (instance/console.c), a follower keeps its place in the text. since and timestamps take each
 * line's time from the console index (instance/console_index.h): the time of its first byte. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api-internal.h"
#include "instance/console.h"
#include "instance/console_index.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/timefmt.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define LOGS_STREAM_BLOCK (64u * 1024u)
/* How often a follower looks whether its instance stopped. A VMM's exit closes the file it
 * writes (IN_CLOSE_WRITE), but the record says Stopped only a moment later. */
#define LOGS_STATE_CHECK_MS 500
/* Read size when lines are stamped or filtered: the output is at most 32 times larger. */
#define LOGS_LINES_READ (4u * 1024u)

struct logs_stream {
    int fd;        /* the console file */
    int ino_fd;    /* inotify, follow only; -EBADF otherwise */
    int client_fd; /* borrowed from MHD */
    int stop_fd;   /* borrowed from the server: readable once it shuts down */
    struct inst_manager *m;
    char id[INST_ID_LEN + 1]; /* the instance, to notice that it stopped */
    bool file_gone;
    bool stopping;     /* end at the next end of file */
    uint64_t cut_seen; /* console_log_cut_total() when the position was last adjusted */

    /* Line mode (since or timestamps): the text passes through logs_lines() into out. */
    bool lines;
    bool timestamps;
    int64_t since_ns; /* INT64_MIN: no since */
    char *log_path, *idx_path;
    struct console_index idx;
    bool line_start; /* the next byte starts a line */
    bool line_drop;  /* the current line is older than since */
    char *raw;       /* LOGS_LINES_READ bytes */
    char *out;
    size_t out_len, out_off, out_cap;
};

static void
logs_out(struct logs_stream *st, const void *p, size_t n)
{
    if (st->out_len + n > st->out_cap) {
        st->out_cap = (st->out_len + n) * 2;
        st->out = xrealloc(st->out, st->out_cap);
    }
    memcpy(st->out + st->out_len, p, n);
    st->out_len += n;
}

/* The time the byte at position pos arrived: from the index, which torpord appends to when it
 * sees the log grow; bytes it has not got to yet are noted now. */
static int64_t
logs_time_of(struct logs_stream *st, uint64_t pos)
{
    int64_t t;

    if (console_index_time(&st->idx, pos, &t))
        return t;
    (void)console_index_refresh(&st->idx, st->idx_path);
    if (console_index_time(&st->idx, pos, &t))
        return t;
    (void)console_index_note(st->log_path, st->idx_path, wall_ns());
    (void)console_index_refresh(&st->idx, st->idx_path);
    if (console_index_time(&st->idx, pos, &t))
        return t;
    return wall_ns(); /* no index can be written: read now, so it arrived by now */
}

/* Pass n bytes read at position pos through the line filter into out: a line older than since
 * is dropped whole, and with timestamps each line gets its time and a space in front. */
static void
logs_lines(struct logs_stream *st, const char *buf, size_t n, uint64_t pos)
{
    size_t k = 0;

    while (k < n) {
        if (st->line_start) {
            int64_t t = logs_time_of(st, pos + k);
            st->line_drop = t < st->since_ns;
            if (!st->line_drop && st->timestamps) {
                char ts[TIMEFMT_RFC3339_NS_MAX];
                size_t tl = timefmt_rfc3339_ns(t, ts);
                ts[tl++] = ' ';
                logs_out(st, ts, tl);
            }
            st->line_start = false;
        }
        const char *nl = memchr(buf + k, '\n', n - k);
        size_t seg = nl ? (size_t)(nl - (buf + k)) + 1 : n - k;
        if (!st->line_drop)
            logs_out(st, buf + k, seg);
        st->line_start = nl != NULL;
        k += seg;
    }
}

/* The size cap cut the log's head since we last looked: the same bytes are that much nearer
 * the start now. */
static void
logs_follow_cut(struct logs_stream *st)
{
    uint64_t now = console_log_cut_total(st->fd);
    if (now == st->cut_seen)
        return;
    off_t at = lseek(st->fd, 0, SEEK_CUR);
    uint64_t delta = now - st->cut_seen;
    if (at >= 0)
        lseek(st->fd, (uint64_t)at > delta ? at - (off_t)delta : 0, SEEK_SET);
    st->cut_seen = now;
}

/* Drain the inotify queue; notes whether the file went away. */
static void
logs_drain_inotify(struct logs_stream *st)
{
    /* Aligned as inotify_event requires. */
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    for (;;) {
        ssize_t n = read(st->ino_fd, buf, sizeof(buf));
        if (n <= 0)
            return; /* EAGAIN: drained */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
                st->file_gone = true;
            p += sizeof(*ev) + ev->len;
        }
    }
}

/* IN_DELETE_SELF only comes once the inode is freed, which our own open fd prevents; an unlink
 * shows up as IN_ATTRIB (link count change) instead, so look at the link count. */
static void
logs_check_unlinked(struct logs_stream *st)
{
    struct stat sb;

    if (fstat(st->fd, &sb) == 0 && sb.st_nlink == 0)
        st->file_gone = true;
}

/* Whether the instance no longer runs a guest that writes to its console: Stopped, or gone. */
static bool
logs_instance_stopped(struct logs_stream *st)
{
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;

    if (inst_get(st->m, st->id, &rec, NULL) < 0)
        return true;
    return rec->state == INST_STOPPED;
}

/* Block until the file may have grown (1), it is gone or its instance stopped (0), the daemon
 * shuts down (-ESHUTDOWN), or the client left (-EPIPE). */
static int
logs_wait(struct logs_stream *st)
{
    for (;;) {
        if (logs_instance_stopped(st)) {
            st->file_gone = true; /* nothing more comes: end at the end of the file */
            return 0;
        }
        /* A negative fd (no client fd known) is skipped by poll(). */
        struct pollfd p[3] = {
            { .fd = st->ino_fd, .events = POLLIN },
            { .fd = st->stop_fd, .events = POLLIN },
            { .fd = st->client_fd, .events = POLLRDHUP },
        };
        int r = poll(p, 3, LOGS_STATE_CHECK_MS);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p[2].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
            return -EPIPE;
        if (p[1].revents & POLLIN)
            return -ESHUTDOWN;
        if (p[0].revents & POLLIN) {
            logs_drain_inotify(st);
            logs_check_unlinked(st);
            return st->file_gone ? 0 : 1;
        }
        if (p[0].revents)
            return -EIO;
    }
}

static ssize_t
logs_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct logs_stream *st = cls;
    (void)pos;

    for (;;) {
        if (st->out_off < st->out_len) {
            size_t n = st->out_len - st->out_off < max ? st->out_len - st->out_off : max;
            memcpy(buf, st->out + st->out_off, n);
            st->out_off += n;
            return (ssize_t)n;
        }
        st->out_off = st->out_len = 0;
        /* Under the log's shared lock: the size cap cuts under the exclusive one. */
        (void)flock(st->fd, LOCK_SH);
        logs_follow_cut(st);
        uint64_t apos = st->cut_seen + (uint64_t)lseek(st->fd, 0, SEEK_CUR);
        ssize_t n = st->lines ? read(st->fd, st->raw, LOGS_LINES_READ) : read(st->fd, buf, max);
        (void)flock(st->fd, LOCK_UN);
        if (n > 0 && st->lines) {
            logs_lines(st, st->raw, (size_t)n, apos);
            continue; /* send what passed, or read on */
        }
        if (n > 0)
            return n;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_debug("api: read console log: %m");
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        /* EOF past the end although no cut was noted (no user xattrs here): go on from the
         * log's new beginning. */
        struct stat sb;
        off_t at = lseek(st->fd, 0, SEEK_CUR);
        if (fstat(st->fd, &sb) == 0 && at > sb.st_size && lseek(st->fd, 0, SEEK_SET) == 0)
            continue;
        /* EOF. Whatever was written before a delete/move or the shutdown has now been read. */
        if (st->ino_fd < 0 || st->file_gone || st->stopping)
            return MHD_CONTENT_READER_END_OF_STREAM;
        int r = logs_wait(st);
        if (r == -ESHUTDOWN)
            st->stopping = true; /* a clean end, so the client sees a complete response */
        else if (r < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        /* Gone or stopping: read once more for the last bytes; r == 1: grew. */
    }
}

static void
logs_stream_free(void *cls)
{
    struct logs_stream *st = cls;

    safe_close(st->fd);
    safe_close(st->ino_fd);
    console_index_clear(&st->idx);
    free(st->log_path);
    free(st->idx_path);
    free(st->raw);
    free(st->out);
    free(st);
}

enum MHD_Result
api_h_logs(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path = NULL, *idx_path = NULL;
    _cleanup_close_ int fd = -EBADF, ino = -EBADF;
    struct MHD_Response *resp;
    struct logs_stream *st;
    bool follow, timestamps;
    const char *since_s = api_req_query(req, "since");
    int64_t since = INT64_MIN;

    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;
    const char *tail_s = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "tail");
    uint64_t tail = 0;
    bool has_tail = tail_s && strcmp(tail_s, "all") != 0;

    if (api_req_query_bool(req, "follow", &follow, &err) < 0 ||
        api_req_query_bool(req, "timestamps", &timestamps, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (since_s && timefmt_parse_since(since_s, wall_ns(), &since, &err) < 0) {
        tp_err_wrap(&err, "query parameter 'since'");
        return api_reply_tp_err(req, &err);
    }
    if (has_tail) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(tail_s, &end, 10);
        if (errno || !*tail_s || *end || tail_s[0] == '-' || tail_s[0] == '+')
            return api_reply_error(req, -EINVAL,
                                   "query parameter 'tail' must be a number of lines or 'all'");
        tail = v;
    }
    if (inst_get(req->m, req->match.ref, &rec, &err) < 0 ||
        inst_console_log(req->m, rec->id, &path, &idx_path, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (api_stream_acquire(req, &err) < 0)
        return api_reply_tp_err(req, &err);

    if (follow) {
        /* Watch before the first read, so nothing appended in between is missed. */
        ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ino < 0) {
            tp_err_errno(&err, -errno, "create inotify instance for '%s'", path);
            return api_reply_tp_err(req, &err);
        }
        if (inotify_add_watch(ino, path, IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF) <
            0) {
            tp_err_errno(&err, -errno, "watch console log '%s'", path);
            return api_reply_tp_err(req, &err);
        }
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        tp_err_errno(&err, -errno, "open console log '%s'", path);
        return api_reply_tp_err(req, &err);
    }

    if (has_tail) {
        uint64_t at;
        (void)flock(fd, LOCK_SH); /* the size cap cuts under the exclusive lock */
        int r = console_tail_offset(fd, tail, &at);
        if (r >= 0 && lseek(fd, (off_t)at, SEEK_SET) < 0)
            r = -errno;
        (void)flock(fd, LOCK_UN);
        if (r < 0) {
            tp_err_errno(&err, r, "find the last %llu lines of '%s'", (unsigned long long)tail,
                         path);
            return api_reply_tp_err(req, &err);
        }
    }
    st = xnew(struct logs_stream, 1);
    st->m = req->m;
    memcpy(st->id, rec->id, sizeof(st->id));
    st->fd = TAKE_FD(fd);
    st->cut_seen = console_log_cut_total(st->fd);
    st->ino_fd = TAKE_FD(ino);
    st->client_fd = api_req_client_fd(req);
    st->stop_fd = api_req_stop_fd(req);
    st->lines = since_s || timestamps;
    st->timestamps = timestamps;
    st->since_ns = since;
    st->line_start = true;
    if (st->lines) {
        /* Times for everything there now; later bytes are noted as they are read. */
        (void)console_index_note(path, idx_path, wall_ns());
        (void)console_index_refresh(&st->idx, idx_path);
        st->log_path = TAKE_PTR(path);
        st->idx_path = TAKE_PTR(idx_path);
        st->raw = xmalloc(LOGS_LINES_READ);
    }
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, LOGS_STREAM_BLOCK, logs_reader, st,
                                             logs_stream_free);
    if (!resp) {
        logs_stream_free(st);
        return api_reply_error(req, -ENOMEM, "create logs response");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    return api_reply_stream(req, resp);
}
