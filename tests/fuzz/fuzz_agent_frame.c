/* libFuzzer target: agent frames from a hostile guest through the parser and payload decoders. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "guest/agent_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    /* Walk the input as a stream, the way the client's reader does. */
    while (off < size) {
        struct agent_frame f;
        int r = agent_frame_parse(data + off, size - off, &f);
        if (r <= 0)
            break;
        off += (size_t)r;

        struct agent_hello h;
        const char *msg;
        uint32_t u;
        int e;
        switch (f.hdr.type) {
        case AGENT_HELLO_OK:
            if (agent_frame_hello(&f, &h) == 0 &&
                (strlen(h.version) >= sizeof(h.version) || strlen(h.boot_id) >= sizeof(h.boot_id)))
                __builtin_trap();
            break;
        case AGENT_ERROR:
        case AGENT_EXEC_ERROR:
            if (agent_frame_errmsg(&f, &e, &msg) == 0 &&
                (e <= 0 ||
                 (f.hdr.len > 4 && msg + strlen(msg) >= (const char *)f.payload + f.hdr.len)))
                __builtin_trap();
            break;
        default:
            (void)agent_frame_u32(&f, &u);
            break;
        }
    }
    return 0;
}
