/* libFuzzer target: Firecracker HTTP reply framing and the reply-body parsers must never crash,
 * leak, read out of bounds or accept a reply they cannot account for. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/firecracker/fc_body.h"
#include "hypervisor/firecracker/fc_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
parse_bodies(const char *buf, size_t len)
{
    struct fc_instance_info info = { .id = NULL };
    struct tp_err err = { 0 };
    char *version = NULL, *fault;

    if (fc_parse_instance_info(buf, len, &info, &err) == 0) {
        if (!info.id || !info.app_name || !info.vmm_version ||
            !fc_instance_state_to_string(info.state))
            abort();
        fc_instance_info_clear(&info);
    } else if (err.code >= 0 || info.id)
        abort();
    tp_err_clear(&err);

    if (fc_parse_version(buf, len, &version, &err) == 0) {
        if (!version || !*version)
            abort();
        free(version);
    } else if (err.code >= 0 || version)
        abort();
    tp_err_clear(&err);

    fault = fc_parse_fault(buf, len);
    if (!fault || strlen(fault) > FC_FAULT_MAX)
        abort();
    for (const char *p = fault; *p; p++)
        if ((unsigned char)*p < ' ')
            abort();
    free(fault);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t off = 0;

    parse_bodies(buf, size);

    /* Replies back to back, as on a keep-alive connection. */
    while (off < size) {
        struct fc_reply rep = { .body = NULL };
        struct tp_err err = { 0 };
        size_t used = 0;
        int r = fc_http_parse_reply(buf + off, size - off, &rep, &used, &err);

        if (r < 0) {
            if (err.code != r || rep.body)
                abort();
            tp_err_clear(&err);
            break;
        }
        if (r == FC_PARSE_MORE) {
            if (rep.body || err.code)
                abort();
            break;
        }
        if (used == 0 || used > size - off || rep.status < 100 || rep.status > 599 || !rep.body ||
            rep.body_len > FC_HTTP_BODY_MAX || rep.body[rep.body_len] != '\0' ||
            memcmp(rep.body, buf + off + used - rep.body_len, rep.body_len) != 0)
            abort();
        /* One byte short of a complete reply is always "need more". */
        struct fc_reply shorter = { .body = NULL };
        size_t used2;
        if (fc_http_parse_reply(buf + off, used - 1, &shorter, &used2, NULL) != FC_PARSE_MORE)
            abort();
        parse_bodies(rep.body, rep.body_len);
        fc_reply_clear(&rep);
        off += used;
    }
    return 0;
}
