/* Client-to-server frames of an attached exec. A stdin frame is handed out whole (at most
 * EXEC_INPUT_FRAME_MAX bytes), so the callback sees one write per frame the client sent. */
#include "api/exec_input.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/xalloc.h"

void
exec_input_init(struct exec_input *d)
{
    *d = (struct exec_input){ 0 };
}

void
exec_input_done(struct exec_input *d)
{
    free(d->buf);
    *d = (struct exec_input){ 0 };
}

static uint32_t
be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int
header_done(struct exec_input *d, struct tp_err *err)
{
    uint32_t len = be32(d->hdr + 4);

    if (d->hdr[1] || d->hdr[2] || d->hdr[3])
        return tp_err_set(err, -EPROTO, "exec input: reserved header bytes are not zero");
    switch (d->hdr[0]) {
    case EXEC_INPUT_STDIN:
        if (len > EXEC_INPUT_FRAME_MAX)
            return tp_err_set(err, -EPROTO, "exec input: stdin frame of %u bytes is over %u", len,
                              EXEC_INPUT_FRAME_MAX);
        break;
    case EXEC_INPUT_RESIZE:
    case EXEC_INPUT_SIGNAL:
        if (len != 4)
            return tp_err_set(err, -EPROTO, "exec input: frame kind %u needs 4 bytes, not %u",
                              d->hdr[0], len);
        break;
    default:
        return tp_err_set(err, -EPROTO, "exec input: unknown frame kind %u", d->hdr[0]);
    }
    d->kind = d->hdr[0];
    d->need = len;
    d->have = 0;
    d->buf = xrealloc(d->buf, MAX(len, 1u));
    return 0;
}

static int
frame_done(struct exec_input *d, exec_input_fn fn, void *userdata, struct tp_err *err)
{
    struct exec_input_event ev = { .kind = d->kind };

    d->kind = 0;
    d->hdr_len = 0;
    switch (ev.kind) {
    case EXEC_INPUT_STDIN:
        ev.data = d->buf;
        ev.len = d->need;
        break;
    case EXEC_INPUT_RESIZE:
        ev.rows = (uint16_t)(d->buf[0] << 8 | d->buf[1]);
        ev.cols = (uint16_t)(d->buf[2] << 8 | d->buf[3]);
        break;
    case EXEC_INPUT_SIGNAL: {
        uint32_t sig = be32(d->buf);
        if (sig < 1 || sig > 64)
            return tp_err_set(err, -EPROTO, "exec input: signal %u is not 1..64", sig);
        ev.sig = (int)sig;
        break;
    }
    }
    return fn(&ev, userdata, err);
}

int
exec_input_feed(struct exec_input *d, const void *data, size_t len, exec_input_fn fn,
                void *userdata, struct tp_err *err)
{
    const uint8_t *p = data;
    int r;

    while (len > 0 || (d->kind && d->have == d->need)) {
        if (!d->kind) {
            size_t n = MIN(len, sizeof(d->hdr) - d->hdr_len);
            memcpy(d->hdr + d->hdr_len, p, n);
            d->hdr_len += n;
            p += n;
            len -= n;
            if (d->hdr_len < sizeof(d->hdr))
                break;
            r = header_done(d, err);
            if (r < 0)
                return r;
        }
        size_t n = MIN(len, (size_t)(d->need - d->have));
        memcpy(d->buf + d->have, p, n);
        d->have += n;
        p += n;
        len -= n;
        if (d->have < d->need)
            break;
        r = frame_done(d, fn, userdata, err);
        if (r < 0)
            return r;
    }
    return 0;
}
