/* GET /v1/instances/{ref}/stats: one sample of what the instance's VMM costs the host. A client
 * takes two and divides the CPU time between them by the time between them (torpor stats). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api-internal.h"
#include "instance/state.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define GUEST_MEMINFO_MS 2000

int
api_guest_memory(struct inst_manager *m, const char *id, int timeout_ms, uint64_t *total,
                 uint64_t *avail)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    char *argv[] = { (char *)"meminfo", NULL };
    struct agent_exec_req er = { .argv = argv, .builtin = true };
    struct agent_exec *x = NULL;
    char out[128];
    size_t len = 0;
    int code = -1, r = inst_exec_start(m, id, &er, &x, &err);

    /* One deadline for the whole exchange: a guest trickling output cannot stretch it. */
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (r >= 0 && code < 0) {
        struct agent_event ev = { 0 };
        uint64_t now = now_ms();
        r = now < deadline ? agent_exec_next(x, &ev, (int)(deadline - now), &err) : -ETIMEDOUT;
        if (r >= 0 && ev.type == AGENT_EV_EXIT)
            code = ev.exit_code;
        else if (r >= 0 && ev.type == AGENT_EV_STDOUT && len + ev.len < sizeof(out)) {
            memcpy(out + len, ev.data, ev.len);
            len += ev.len;
        }
        free(ev.data);
    }
    if (x && code < 0)
        api_exec_hangup(x);
    agent_exec_free(x);
    out[len] = '\0';
    unsigned long long t, a;
    if (code != 0 || sscanf(out, "%llu %llu", &t, &a) != 2)
        return -EIO;
    *total = t;
    *avail = a;
    return 0;
}

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
    uint64_t total, avail;
    if (st.state == INST_RUNNING &&
        api_guest_memory(req->m, st.id, GUEST_MEMINFO_MS, &total, &avail) == 0) {
        json_object_set_new(j, "guest_memory_total_bytes", json_integer((json_int_t)total));
        json_object_set_new(j, "guest_memory_used_bytes",
                            json_integer((json_int_t)(total > avail ? total - avail : 0)));
    }
    return api_reply_json(req, 200, j);
}
