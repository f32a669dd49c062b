/* Incremental decoder for torpord's exec stream (8-byte frame headers, then payloads). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

enum exec_frame_kind {
    EXEC_FRAME_STDOUT = 1,
    EXEC_FRAME_STDERR = 2,
    EXEC_FRAME_EXIT = 3,  /* {"exit_code": N}; last frame */
    EXEC_FRAME_ERROR = 4, /* {"code": slug, "message": text[, "exit_code": N]}; last frame */
};

#define EXEC_FRAME_HEADER 8
#define EXEC_FRAME_MAX    (16u << 20) /* a longer payload is a protocol error */

/* Receives output (kinds 1 and 2) as it arrives: a frame's payload may come in several
 * pieces. < 0 stops decoding and is returned by exec_decoder_feed(). */
typedef int (*exec_output_fn)(int kind, const void *data, size_t len, void *userdata,
                              struct tp_err *err);

struct exec_decoder {
    uint8_t hdr[EXEC_FRAME_HEADER];
    size_t hdr_len; /* header bytes gathered so far */
    int kind;       /* current frame's kind; 0 between frames */
    uint32_t left;  /* payload bytes of the current frame still to come */
    char *buf;      /* payload of a final frame, gathered whole */
    size_t buf_len;
    bool finished;       /* the exit or error frame was decoded */
    int exit_code;       /* after an exit frame */
    char *error_code;    /* after an error frame: the slug ("" if absent), owned */
    char *error_message; /* after an error frame, owned */
    int error_exit_code; /* after an error frame: the exit code torpord suggests, -1 if none */
};

/* Start empty. */
void exec_decoder_init(struct exec_decoder *d);
/* Free what d owns; d can be initialised again. */
void exec_decoder_done(struct exec_decoder *d);

/* Decode len more bytes of the stream, calling out for output. -EPROTO (message set) on an
 * unknown kind, nonzero reserved bytes, a payload over EXEC_FRAME_MAX, a malformed final
 * payload, or bytes after the final frame. */
int exec_decoder_feed(struct exec_decoder *d, const void *data, size_t len, exec_output_fn out,
                      void *userdata, struct tp_err *err);

/* At end of stream: 0 when a final frame arrived, else -EPROTO. */
int exec_decoder_finish(const struct exec_decoder *d, struct tp_err *err);
