/* Instance handlers: list, create, get, delete, stop, start, standby, restore, fork, wait, pause,
 * unpause, kill. Each calls the manager once. */
#include <errno.h>
#include <stdlib.h>

#include "api/api-internal.h"
#include "api/body.h"
#include "store/store.h"

/* {"instances": [...]} from n records, which it frees; with stopped false, Stopped ones are left
 * out. */
static json_t *
instances_json(struct inst_record **v, size_t n, bool stopped)
{
    json_t *arr = json_array(), *o = json_object();

    if (!arr || !o)
        abort(); /* OOM, as in xmalloc */
    for (size_t i = 0; i < n; i++)
        if (stopped || v[i]->state != INST_STOPPED)
            if (json_array_append_new(arr, api_record_to_json(v[i])) < 0)
                abort();
    inst_record_array_free(v, n);
    if (json_object_set_new(o, "instances", arr) < 0)
        abort();
    return o;
}

enum MHD_Result
api_h_list(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inst_record **v = NULL;
    size_t n = 0;
    bool all;

    if (api_req_query_bool(req, "all", &all, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (inst_list(req->m, &v, &n, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 200, instances_json(v, n, all));
}

enum MHD_Result
api_h_create(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;
    struct api_create_body b;
    int r;

    if (api_parse_create(req->body, req->body_len, &b, &err) < 0)
        return api_reply_tp_err(req, &err);
    r = inst_run(req->m, &b.req, &rec, &err);
    api_create_body_clear(&b);
    if (r < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 201, api_record_to_json(rec));
}

enum MHD_Result
api_h_get(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;

    if (inst_get(req->m, req->match.ref, &rec, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 200, api_record_to_json(rec));
}

enum MHD_Result
api_h_delete(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    bool force;

    if (api_req_query_bool(req, "force", &force, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (req->body_len > 0)
        return api_reply_error(req, -EINVAL, "DELETE takes no request body");
    if (inst_remove(req->m, req->match.ref, force, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 204, NULL);
}

typedef int (*inst_verb_fn)(struct inst_manager *m, const char *ref, struct inst_record **ret,
                            struct tp_err *err);

static enum MHD_Result
simple_verb(struct api_req *req, inst_verb_fn fn)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;

    if (api_parse_empty(req->body, req->body_len, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (fn(req->m, req->match.ref, &rec, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 200, api_record_to_json(rec));
}

enum MHD_Result
api_h_stop(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;
    bool force;

    if (api_req_query_bool(req, "force", &force, &err) < 0 ||
        api_parse_empty(req->body, req->body_len, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (inst_stop(req->m, req->match.ref, force, &rec, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 200, api_record_to_json(rec));
}

enum MHD_Result
api_h_start(struct api_req *req)
{
    return simple_verb(req, inst_start);
}

enum MHD_Result
api_h_standby(struct api_req *req)
{
    return simple_verb(req, inst_standby);
}

enum MHD_Result
api_h_restore(struct api_req *req)
{
    return simple_verb(req, inst_restore);
}

enum MHD_Result
api_h_pause(struct api_req *req)
{
    return simple_verb(req, inst_pause);
}

enum MHD_Result
api_h_unpause(struct api_req *req)
{
    return simple_verb(req, inst_unpause);
}

enum MHD_Result
api_h_kill(struct api_req *req)
{
    return simple_verb(req, inst_kill);
}

enum MHD_Result
api_h_fork(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inst_record **v = NULL;
    struct api_fork_body b;
    size_t n = 0;
    int r;

    if (api_parse_fork(req->body, req->body_len, &b, &err) < 0)
        return api_reply_tp_err(req, &err);
    r = inst_fork(req->m, req->match.ref, &b.req, &v, &n, &err);
    api_fork_body_clear(&b);
    if (r < 0)
        return api_reply_tp_err(req, &err);
    /* Children may be Standby (standby: true) but never Stopped: keep every one. */
    return api_reply_json(req, 201, instances_json(v, n, true));
}

enum MHD_Result
api_h_wait(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;
    enum inst_state state;
    int timeout_ms;

    if (api_parse_wait(req->body, req->body_len, &state, &timeout_ms, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (inst_wait_state(req->m, req->match.ref, state, timeout_ms, &rec, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 200, api_record_to_json(rec));
}
