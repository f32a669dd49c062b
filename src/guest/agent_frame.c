/* Agent protocol framing: find frames in a byte buffer, decode and build payloads. */
#include "agent_frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

int
agent_frame_parse(const uint8_t *buf, size_t len, struct agent_frame *ret)
{
    struct agent_hdr h;

    if (len < AGENT_HDR_SIZE)
        return 0;
    agent_hdr_decode(buf, &h);
    if (h.len > AGENT_MAX_PAYLOAD)
        return -EPROTO;
    if (len - AGENT_HDR_SIZE < h.len)
        return 0;
    ret->hdr = h;
    ret->payload = buf + AGENT_HDR_SIZE;
    return (int)(AGENT_HDR_SIZE + h.len);
}

int
agent_frame_u32(const struct agent_frame *f, uint32_t *ret)
{
    if (f->hdr.len != 4)
        return -EPROTO;
    *ret = agent_get_u32(f->payload);
    return 0;
}

int
agent_frame_errmsg(const struct agent_frame *f, int *ret_errno, const char **ret_msg)
{
    if (f->hdr.len < 4)
        return -EPROTO;
    int32_t e = (int32_t)agent_get_u32(f->payload);
    if (e <= 0 || e >= 4096)
        return -EPROTO;
    /* The message must end inside the payload: never read past a guest-chosen length. */
    if (f->hdr.len > 4 && f->payload[f->hdr.len - 1] != '\0')
        return -EPROTO;
    *ret_errno = e;
    *ret_msg = f->hdr.len > 4 ? (const char *)f->payload + 4 : "";
    return 0;
}

static int
copy_field(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        return -EPROTO;
    memcpy(dst, src, n + 1);
    return 0;
}

int
agent_frame_hello(const struct agent_frame *f, struct agent_hello *ret)
{
    struct agent_hello h = { 0 };
    const char *p = (const char *)f->payload, *end = p + f->hdr.len;

    if (f->hdr.len > 0 && f->payload[f->hdr.len - 1] != '\0')
        return -EPROTO;
    for (; p < end; p += strlen(p) + 1) {
        int r = 0;
        if (strncmp(p, "version=", 8) == 0) {
            r = copy_field(h.version, sizeof(h.version), p + 8);
        } else if (strncmp(p, "boot_id=", 8) == 0) {
            r = copy_field(h.boot_id, sizeof(h.boot_id), p + 8);
        } else if (strncmp(p, "uptime_ms=", 10) == 0) {
            const char *v = p + 10;
            char *e;
            if (*v < '0' || *v > '9')
                return -EPROTO;
            errno = 0;
            uintmax_t u = strtoumax(v, &e, 10);
            if (errno || *e || u > UINT64_MAX)
                return -EPROTO;
            h.uptime_ms = (uint64_t)u;
        }
        if (r < 0)
            return r;
    }
    *ret = h;
    return 0;
}

int
agent_frame_build(uint32_t id, uint16_t type, uint16_t flags, const void *payload, size_t len,
                  uint8_t **ret_buf, size_t *ret_len)
{
    if (len > AGENT_MAX_PAYLOAD)
        return -E2BIG;
    uint8_t *buf = xmalloc(AGENT_HDR_SIZE + len);
    agent_hdr_encode(buf, (uint32_t)len, id, type, flags);
    if (len)
        memcpy(buf + AGENT_HDR_SIZE, payload, len);
    *ret_buf = buf;
    *ret_len = AGENT_HDR_SIZE + len;
    return 0;
}

static size_t
strv_length(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

/* Append NUL-terminated strings to a frame being built; false when it would not fit. */
static bool
put_str(uint8_t *buf, size_t *off, const char *s)
{
    size_t n = strlen(s) + 1;
    if (n > AGENT_HDR_SIZE + AGENT_MAX_PAYLOAD - *off)
        return false;
    memcpy(buf + *off, s, n);
    *off += n;
    return true;
}

int
agent_frame_build_exec(uint32_t id, const struct agent_exec_req *req, uint8_t **ret_buf,
                       size_t *ret_len)
{
    size_t argc = strv_length(req->argv), envc = strv_length(req->env);
    size_t off = AGENT_HDR_SIZE + 8;
    uint16_t flags = (req->stdin_open ? AGENT_EXEC_F_STDIN : 0) | AGENT_EXEC_F_ACKS;
    uint8_t *buf;

    if (argc == 0)
        return -EINVAL;
    if (argc + envc > AGENT_MAX_PAYLOAD)
        return -E2BIG;
    buf = xmalloc(AGENT_HDR_SIZE + AGENT_MAX_PAYLOAD);
    agent_put_u32(buf + AGENT_HDR_SIZE, (uint32_t)argc);
    agent_put_u32(buf + AGENT_HDR_SIZE + 4, (uint32_t)envc);
    bool ok = put_str(buf, &off, req->cwd ? req->cwd : "");
    for (size_t i = 0; ok && i < argc; i++)
        ok = put_str(buf, &off, req->argv[i]);
    for (size_t i = 0; ok && i < envc; i++)
        ok = put_str(buf, &off, req->env[i]);
    /* Version 2 fields follow env in flag order: the user, then the terminal size. */
    if (ok && req->user) {
        flags |= AGENT_EXEC_F_USER;
        ok = put_str(buf, &off, req->user);
    }
    if (ok && req->tty) {
        flags |= AGENT_EXEC_F_TTY;
        ok = AGENT_HDR_SIZE + AGENT_MAX_PAYLOAD - off >= 4;
        if (ok) {
            agent_put_u16(buf + off, req->rows);
            agent_put_u16(buf + off + 2, req->cols);
            off += 4;
        }
    }
    if (!ok) {
        free(buf);
        return -E2BIG;
    }
    if (req->builtin)
        flags |= AGENT_EXEC_F_BUILTIN;
    agent_hdr_encode(buf, (uint32_t)(off - AGENT_HDR_SIZE), id, AGENT_EXEC, flags);
    *ret_buf = buf;
    *ret_len = off;
    return 0;
}

int
agent_frame_build_strv(uint32_t id, uint16_t type, char *const *strv, uint8_t **ret_buf,
                       size_t *ret_len)
{
    size_t off = AGENT_HDR_SIZE;
    uint8_t *buf;

    if (!strv)
        return -EINVAL;
    buf = xmalloc(AGENT_HDR_SIZE + AGENT_MAX_PAYLOAD);
    for (size_t i = 0; strv[i]; i++)
        if (!put_str(buf, &off, strv[i])) {
            free(buf);
            return -E2BIG;
        }
    agent_hdr_encode(buf, (uint32_t)(off - AGENT_HDR_SIZE), id, type, 0);
    *ret_buf = buf;
    *ret_len = off;
    return 0;
}
