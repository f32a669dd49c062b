/* Exec stream decoding: frames may be split anywhere across the pieces libcurl hands us. */
#include "exec_stream.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

void
exec_decoder_init(struct exec_decoder *d)
{
    *d = (struct exec_decoder){ 0 };
}

void
exec_decoder_done(struct exec_decoder *d)
{
    free(d->buf);
    free(d->error_code);
    free(d->error_message);
    *d = (struct exec_decoder){ 0 };
}

static int
parse_final(struct exec_decoder *d, struct tp_err *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(d->buf ? d->buf : "", d->buf_len, 0, &jerr);
    int r = 0;

    if (!json_is_object(j)) {
        r = tp_err_set(err, -EPROTO, "exec stream: %s frame is not a JSON object",
                       d->kind == EXEC_FRAME_EXIT ? "exit" : "error");
        goto out;
    }
    if (d->kind == EXEC_FRAME_EXIT) {
        json_t *c = json_object_get(j, "exit_code");
        if (!json_is_integer(c) || json_integer_value(c) < INT32_MIN ||
            json_integer_value(c) > INT32_MAX) {
            r = tp_err_set(err, -EPROTO, "exec stream: exit frame lacks an integer 'exit_code'");
            goto out;
        }
        d->exit_code = (int)json_integer_value(c);
    } else {
        const char *code = json_string_value(json_object_get(j, "code"));
        const char *msg = json_string_value(json_object_get(j, "message"));
        if (!msg) {
            r = tp_err_set(err, -EPROTO, "exec stream: error frame lacks a 'message'");
            goto out;
        }
        json_t *x = json_object_get(j, "exit_code");
        d->error_code = xstrdup(code ? code : "");
        d->error_message = xstrdup(msg);
        d->error_exit_code =
            json_is_integer(x) && json_integer_value(x) >= 0 && json_integer_value(x) <= 255
                ? (int)json_integer_value(x)
                : -1;
    }
    d->finished = true;
out:
    json_decref(j);
    return r;
}

static int
start_frame(struct exec_decoder *d, struct tp_err *err)
{
    const uint8_t *h = d->hdr;
    uint32_t len = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];

    if (h[0] < EXEC_FRAME_STDOUT || h[0] > EXEC_FRAME_ERROR)
        return tp_err_set(err, -EPROTO, "exec stream: unknown frame kind %u", h[0]);
    if (h[1] || h[2] || h[3])
        return tp_err_set(err, -EPROTO, "exec stream: nonzero reserved header bytes");
    if (len > EXEC_FRAME_MAX)
        return tp_err_set(err, -EPROTO, "exec stream: frame of %u bytes exceeds the %u limit", len,
                          EXEC_FRAME_MAX);
    d->kind = h[0];
    d->left = len;
    d->hdr_len = 0;
    if (d->kind == EXEC_FRAME_EXIT || d->kind == EXEC_FRAME_ERROR) {
        d->buf = xmalloc(len + 1);
        d->buf_len = 0;
    }
    return 0;
}

/* The current frame is complete. */
static int
end_frame(struct exec_decoder *d, struct tp_err *err)
{
    int r = 0;

    if (d->kind == EXEC_FRAME_EXIT || d->kind == EXEC_FRAME_ERROR) {
        r = parse_final(d, err);
        free(d->buf);
        d->buf = NULL;
        d->buf_len = 0;
    }
    d->kind = 0;
    return r;
}

int
exec_decoder_feed(struct exec_decoder *d, const void *data, size_t len, exec_output_fn out,
                  void *userdata, struct tp_err *err)
{
    const uint8_t *p = data;
    int r;

    while (len > 0) {
        if (d->finished)
            return tp_err_set(err, -EPROTO, "exec stream: data after the final frame");

        if (d->kind == 0) {
            size_t n = MIN(len, EXEC_FRAME_HEADER - d->hdr_len);
            memcpy(d->hdr + d->hdr_len, p, n);
            d->hdr_len += n;
            p += n;
            len -= n;
            if (d->hdr_len < EXEC_FRAME_HEADER)
                break;
            r = start_frame(d, err);
            if (r < 0)
                return r;
        } else {
            size_t n = MIN(len, (size_t)d->left);
            if (d->kind == EXEC_FRAME_STDOUT || d->kind == EXEC_FRAME_STDERR) {
                r = out(d->kind, p, n, userdata, err);
                if (r < 0)
                    return r;
            } else {
                memcpy(d->buf + d->buf_len, p, n);
                d->buf_len += n;
            }
            d->left -= (uint32_t)n;
            p += n;
            len -= n;
        }
        /* Checked after the header too: a zero-length frame ends at once. */
        if (d->kind != 0 && d->left == 0) {
            r = end_frame(d, err);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

int
exec_decoder_finish(const struct exec_decoder *d, struct tp_err *err)
{
    if (!d->finished)
        return tp_err_set(err, -EPROTO, "exec stream ended before the command's exit status");
    return 0;
}
