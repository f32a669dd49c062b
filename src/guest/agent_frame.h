/* Agent protocol framing and payload codecs shared by the client and the fuzz target. Every
 * decoder treats its input as hostile (it comes from inside the guest). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "guest/agent_client.h"
#include "torpor/agent_proto.h"

/* One frame found in a buffer; payload points into that buffer. */
struct agent_frame {
    struct agent_hdr hdr;
    const uint8_t *payload;
};

/* Look for one frame at the start of buf. Returns the bytes it spans (> 0) with *ret filled,
 * 0 when buf holds only part of a frame, -EPROTO when the header announces more than
 * AGENT_MAX_PAYLOAD bytes (the stream cannot be resynchronised). */
int agent_frame_parse(const uint8_t *buf, size_t len, struct agent_frame *ret);

/* Payload of exactly 4 bytes (EXEC_STARTED pid, EXIT code, SIGNAL): 0 or -EPROTO. */
int agent_frame_u32(const struct agent_frame *f, uint32_t *ret);

/* EXEC_ERROR / ERROR: i32 errno (1..4095) then an optional NUL-terminated message.
 * *ret_msg points into the payload ("" when absent). 0 or -EPROTO. */
int agent_frame_errmsg(const struct agent_frame *f, int *ret_errno, const char **ret_msg);

/* HELLO_OK: NUL-terminated key=value strings; unknown keys are skipped. 0 or -EPROTO. */
int agent_frame_hello(const struct agent_frame *f, struct agent_hello *ret);

/* A whole frame (header + payload) in one malloc'd buffer: 0 or -E2BIG. */
int agent_frame_build(uint32_t id, uint16_t type, uint16_t flags, const void *payload, size_t len,
                      uint8_t **ret_buf, size_t *ret_len);

/* An AGENT_EXEC frame for req (version 2 fields and flags included when req asks for them):
 * 0, -EINVAL (empty argv) or -E2BIG (over AGENT_MAX_PAYLOAD). */
int agent_frame_build_exec(uint32_t id, const struct agent_exec_req *req, uint8_t **ret_buf,
                           size_t *ret_len);

/* NUL-joined strings (IDENTITY payload) as a frame: 0, -EINVAL (NULL kv) or -E2BIG. */
int agent_frame_build_strv(uint32_t id, uint16_t type, char *const *strv, uint8_t **ret_buf,
                           size_t *ret_len);
