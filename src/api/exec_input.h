/* Decoder of what an attached exec client sends on its upgraded connection (api.md, "Exec
 * session"): the exec-stream frame header (kind, three zero bytes, big-endian length) with
 * kinds stdin (1; empty = close stdin), resize (5: u16 rows, u16 cols, big-endian) and
 * signal (6: u32 signal number 1..64, big-endian). Pure: no I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define EXEC_INPUT_STDIN     1
#define EXEC_INPUT_RESIZE    5
#define EXEC_INPUT_SIGNAL    6
#define EXEC_INPUT_FRAME_MAX (1u << 20)

struct exec_input_event {
    int kind;
    const uint8_t *data; /* stdin bytes (valid during the callback); len 0 = close stdin */
    size_t len;
    uint16_t rows, cols; /* resize */
    int sig;             /* signal */
};

/* < 0 stops decoding and is returned by exec_input_feed(). */
typedef int (*exec_input_fn)(const struct exec_input_event *ev, void *userdata, struct tp_err *err);

struct exec_input {
    uint8_t hdr[8];
    size_t hdr_len;
    int kind;      /* 0 between frames */
    uint32_t need; /* payload length of the current frame */
    uint8_t *buf;  /* its payload so far */
    size_t have;
};

void exec_input_init(struct exec_input *d);
void exec_input_done(struct exec_input *d);
/* Decode len more bytes, calling out for every complete frame. -EPROTO with a message on an
 * unknown kind, nonzero reserved bytes, an oversize frame or a malformed resize/signal. */
int exec_input_feed(struct exec_input *d, const void *data, size_t len, exec_input_fn fn,
                    void *userdata, struct tp_err *err);
