/* Files in and out of a guest, as docker's archive API: GET .../archive?path=P streams a tar
 * of P (the agent's tar-out built-in), PUT .../archive?path=DIR extracts the tar in the body
 * under DIR (tar-in, fed as the body arrives), GET .../stat?path=P describes P (stat). The
 * built-ins run through the agent like any exec, so this works on guests without a tar. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "api/api-internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/xalloc.h"

#define ARCHIVE_BLOCK       (64u * 1024u)
#define BUILTIN_MSG_MAX     1024u  /* stderr kept for the error message */
#define BUILTIN_FIRST_MS    30000  /* tar-out's first output, stat's answer */
#define BUILTIN_FINISH_MS   120000 /* tar-in's exit once the body is complete */
#define BUILTIN_EXIT_ABSENT 2      /* the built-ins' "no such path" (agent_proto.h) */

/* What a built-in said on stderr (bounded) and how it ended. */
struct builtin_run {
    struct agent_exec *x;
    char msg[BUILTIN_MSG_MAX];
    size_t msg_len;
    bool exited;
    int code;
};

static void
msg_append(struct builtin_run *b, const char *data, size_t len)
{
    size_t n = MIN(len, sizeof(b->msg) - 1 - b->msg_len);
    memcpy(b->msg + b->msg_len, data, n);
    b->msg_len += n;
    b->msg[b->msg_len] = '\0';
}

/* The message without its trailing newline, or what to say without one. */
static const char *
msg_text(struct builtin_run *b, const char *fallback)
{
    while (b->msg_len && (b->msg[b->msg_len - 1] == '\n' || b->msg[b->msg_len - 1] == '\r'))
        b->msg[--b->msg_len] = '\0';
    return b->msg_len ? b->msg : fallback;
}

/* The status of a built-in's failure: its exit code 2 says the path is not there. */
static enum MHD_Result
reply_builtin_failure(struct api_req *req, struct builtin_run *b, const char *what)
{
    _cleanup_free_ char *m = NULL;
    int r = -EIO;

    if (b->code == BUILTIN_EXIT_ABSENT) {
        r = -ENOENT;
        m = xasprintf("could not find '%s' in instance '%s'", api_req_query(req, "path"),
                      req->match.ref);
        return api_reply_error(req, r, m);
    }
    m = xasprintf("%s: %s", what, msg_text(b, "failed"));
    if (strstr(b->msg, "No space left"))
        r = -ENOSPC;
    else if (strstr(b->msg, "refus") || strstr(b->msg, "malformed") || strstr(b->msg, "truncated"))
        r = -EINVAL;
    return api_reply_error(req, r, m);
}

/* Take every event queued now (timeout 0) or wait up to timeout_ms for one; stdout goes to
 * out (may be NULL: dropped). Returns 0, -ETIMEDOUT, or the connection's error. */
static int
builtin_pump(struct builtin_run *b, int timeout_ms, char **out, size_t *out_len, struct tp_err *err)
{
    for (int t = timeout_ms;; t = 0) {
        struct agent_event ev = { 0 };
        int r = agent_exec_next(b->x, &ev, t, err);
        if (r < 0)
            return r == -ETIMEDOUT && t == 0 && t != timeout_ms ? 0 : r;
        if (ev.type == AGENT_EV_EXIT) {
            b->exited = true;
            b->code = ev.exit_code;
            return 0;
        }
        if (ev.type == AGENT_EV_STDERR) {
            msg_append(b, ev.data, ev.len);
        } else if (out && ev.len) {
            *out = xrealloc(*out, *out_len + ev.len);
            memcpy(*out + *out_len, ev.data, ev.len);
            *out_len += ev.len;
        }
        free(ev.data);
        if (out && *out_len)
            return 0; /* output to hand on */
    }
}

/* "path" must be absolute; starts builtin[0] on it (argv: name, path). */
static int
builtin_start(struct api_req *req, const char *name, bool stdin_open, struct builtin_run *b,
              struct tp_err *err)
{
    const char *path = api_req_query(req, "path");
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;

    *b = (struct builtin_run){ 0 }; /* callers free b->x on every path */
    if (!path || path[0] != '/')
        return tp_err_set(err, -EINVAL,
                          "query parameter 'path' must be an absolute path in "
                          "the guest");
    if (strlen(path) > 4096)
        return tp_err_set(err, -EINVAL, "query parameter 'path' is longer than 4096 bytes");
    int r = inst_get(req->m, req->match.ref, &rec, err);
    if (r < 0)
        return r;
    char *argv[] = { (char *)name, (char *)path, NULL };
    struct agent_exec_req er = { .argv = argv, .builtin = true, .stdin_open = stdin_open };
    return inst_exec_start(req->m, rec->id, &er, &b->x, err);
}

/* ---- GET archive ------------------------------------------------------------------------- */

struct archive_out {
    struct builtin_run b;
    char *buf; /* tar bytes not yet handed to MHD */
    size_t len, off;
    int client_fd;
    int stop_fd;
    bool client_gone;
};

static ssize_t
archive_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct archive_out *a = cls;

    while (a->off == a->len) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        free(a->buf);
        a->buf = NULL;
        a->len = a->off = 0;
        if (a->b.exited) {
            if (a->b.code == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
            /* Cut without the tar's end blocks: the client sees a truncated archive. */
            log_warn("api: archive: tar-out failed: %s", msg_text(&a->b, "no message"));
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        int r = builtin_pump(&a->b, 0, &a->buf, &a->len, &err);
        if (r == -ETIMEDOUT) {
            struct pollfd p[3] = {
                { .fd = agent_exec_fd(a->b.x), .events = POLLIN },
                { .fd = a->stop_fd, .events = POLLIN },
                { .fd = a->client_fd, .events = POLLRDHUP },
            };
            if (poll(p, 3, -1) < 0 && errno != EINTR)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            if (api_client_gone(a->client_fd)) {
                a->client_gone = true;
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (p[1].revents & POLLIN)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            agent_exec_fd_drain(a->b.x);
            continue;
        }
        if (r < 0) {
            log_warn("api: archive: %s", tp_err_msg(&err));
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = MIN(max, a->len - a->off);
    memcpy(buf, a->buf + a->off, n);
    a->off += n;
    return (ssize_t)n;
}

static void
archive_out_free(void *cls)
{
    struct archive_out *a = cls;

    if (a->b.x && !a->b.exited)
        api_exec_hangup(a->b.x); /* a client that left, a timeout: tar-out must not run on */
    agent_exec_free(a->b.x);
    free(a->buf);
    free(a);
}

enum MHD_Result
api_h_archive_get(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct archive_out *a = xnew(struct archive_out, 1);
    int r = api_stream_acquire(req, &err);

    if (r >= 0)
        r = builtin_start(req, "tar-out", false, &a->b, &err);
    /* The status goes out with the first bytes: wait for them, or for the failure. */
    if (r >= 0)
        r = builtin_pump(&a->b, BUILTIN_FIRST_MS, &a->buf, &a->len, &err);
    if (r < 0) {
        archive_out_free(a);
        return api_reply_tp_err(req, &err);
    }
    if (a->b.exited && a->b.code != 0) {
        enum MHD_Result res = reply_builtin_failure(req, &a->b, "copy from the guest");
        archive_out_free(a);
        return res;
    }
    a->client_fd = api_req_client_fd(req);
    a->stop_fd = api_req_stop_fd(req);
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, ARCHIVE_BLOCK, archive_reader, a, archive_out_free);
    if (!resp) {
        archive_out_free(a);
        return api_reply_error(req, -ENOMEM, "create archive response");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-tar");
    return api_reply_stream(req, resp);
}

/* ---- GET stat ---------------------------------------------------------------------------- */

enum MHD_Result
api_h_stat(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *out = NULL;
    struct builtin_run b = { 0 };
    size_t out_len = 0;
    int r = builtin_start(req, "stat", false, &b, &err);

    while (r >= 0 && !b.exited)
        r = builtin_pump(&b, BUILTIN_FIRST_MS, &out, &out_len, &err);
    if (b.x && !b.exited)
        api_exec_hangup(b.x);
    agent_exec_free(b.x);
    if (r < 0)
        return api_reply_tp_err(req, &err);
    if (b.code != 0)
        return reply_builtin_failure(req, &b, "stat in the guest");
    /* "TYPE MODE SIZE[ TARGET_TYPE]\n" (agent_proto.h) */
    char type[16], target[16] = "";
    unsigned mode;
    unsigned long long size;
    out = xrealloc(out, out_len + 1);
    out[out_len] = '\0';
    if (sscanf(out, "%15s %o %llu %15s", type, &mode, &size, target) < 3)
        return api_reply_error(req, -EPROTO, "the guest agent's stat answer is malformed");
    const char *path = api_req_query(req, "path");
    const char *slash = strrchr(path, '/');
    const char *name = slash && slash[1] ? slash + 1 : path;
    return api_reply_json(req, 200,
                          json_pack("{s:s, s:s, s:s, s:i, s:I}", "path", path, "name", name, "type",
                                    type, "mode", (int)mode, "size", (json_int_t)size));
}

/* ---- PUT archive ------------------------------------------------------------------------- */

struct put_state {
    struct builtin_run b;
    bool failed; /* talking to the guest failed: err says why */
    struct tp_err err;
};

static enum MHD_Result
put_begin(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct put_state *p = xnew(struct put_state, 1);
    int r = api_stream_acquire(req, &err);

    if (r >= 0)
        r = builtin_start(req, "tar-in", true, &p->b, &err);
    if (r < 0) {
        agent_exec_free(p->b.x);
        free(p);
        return api_reply_tp_err(req, &err);
    }
    req->upload = p;
    return MHD_YES;
}

/* A failure during the body is answered once the body is complete: a reply sent while the
 * client still sends would reach it as a broken pipe rather than as the reason. */
static enum MHD_Result
put_data(struct api_req *req, const char *data, size_t len)
{
    struct put_state *p = req->upload;

    if (p->b.exited || p->failed)
        return MHD_YES; /* tar-in stopped at an error: the rest of the body is dropped */
    /* Collect stderr (and a failure) as it comes: tar-in stops at its first error. */
    int r = builtin_pump(&p->b, 0, NULL, NULL, &p->err);
    if (r < 0 && r != -ETIMEDOUT) {
        p->failed = true;
        return MHD_YES;
    }
    tp_err_clear(&p->err);
    if (!p->b.exited && agent_exec_stdin(p->b.x, data, len, &p->err) < 0)
        p->failed = true;
    return MHD_YES;
}

static enum MHD_Result
put_end(struct api_req *req)
{
    struct put_state *p = req->upload;
    int r = p->failed ? -EIO : 0;

    if (r == 0 && !p->b.exited)
        r = agent_exec_stdin(p->b.x, NULL, 0, &p->err);
    while (r >= 0 && !p->b.exited)
        r = builtin_pump(&p->b, BUILTIN_FINISH_MS, NULL, NULL, &p->err);
    if (r < 0)
        return api_reply_tp_err(req, &p->err);
    if (p->b.code != 0)
        return reply_builtin_failure(req, &p->b, "copy into the guest");
    return api_reply_json(req, 200, json_object());
}

static void
put_release(struct api_req *req)
{
    struct put_state *p = req->upload;

    if (!p)
        return;
    if (p->b.x && !p->b.exited) {
        /* The client left mid-body: end tar-in's input, so that it sees a truncated archive
         * and removes the file it was writing; a hang-up only if it does not end. */
        _cleanup_(tp_err_clear) struct tp_err e = { 0 };
        int r = agent_exec_stdin(p->b.x, NULL, 0, &e);
        while (r >= 0 && !p->b.exited)
            r = builtin_pump(&p->b, 1000, NULL, NULL, &e);
        if (!p->b.exited)
            api_exec_hangup(p->b.x);
    }
    agent_exec_free(p->b.x);
    tp_err_clear(&p->err);
    free(p);
    req->upload = NULL;
}

const struct api_upload_ops api_archive_put_ops = {
    .begin = put_begin,
    .data = put_data,
    .end = put_end,
    .release = put_release,
};
