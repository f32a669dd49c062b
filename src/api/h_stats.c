/* GET /v1/instances/{ref}/stats: one sample of what the instance's VMM costs the host. A client
 * takes two and divides the CPU time between them by the time between them (torpor stats). */
#include <jansson.h>

#include "api/api-internal.h"
#include "instance/state.h"

enum MHD_Result
api_h_stats(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inst_stats st;
    json_t *j;

    if (inst_stats(req->m, req->match.ref, &st, &err) < 0)
        return api_reply_tp_err(req, &err);
    /* json_int_t is 64-bit: byte and nanosecond counts stay exact. */
    j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "id", st.id, "name",
                  st.name, "state", inst_state_to_string(st.state), "pid", (json_int_t)st.pid,
                  "cpu_ns", (json_int_t)st.cpu_ns, "threads", (json_int_t)st.threads, "rss_bytes",
                  (json_int_t)st.rss_bytes, "pss_bytes", (json_int_t)st.pss_bytes, "memory_bytes",
                  (json_int_t)st.memory_bytes, "console_bytes", (json_int_t)st.console_bytes,
                  "timestamp_ms", (json_int_t)st.timestamp_ms);
    if (!j)
        return api_reply_error(req, -ENOMEM, "build the stats reply");
    return api_reply_json(req, 200, j);
}
