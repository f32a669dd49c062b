/* Handlers of warm-run templates: GET /v1/templates, POST /v1/templates/prune and
 * DELETE /v1/templates/{id}. */
#include <errno.h>
#include <jansson.h>

#include "api/api-internal.h"
#include "instance/warm.h"

enum MHD_Result
api_h_templates(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *arr = NULL;

    if (inst_templates_list(req->m, &arr, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 200, arr);
}

enum MHD_Result
api_h_templates_prune(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    size_t n = 0;

    if (inst_templates_prune(req->m, &n, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 200, json_pack("{s:I}", "removed", (json_int_t)n));
}

enum MHD_Result
api_h_template_delete(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    if (req->body_len > 0)
        return api_reply_error(req, -EINVAL, "DELETE takes no request body");
    if (inst_template_remove(req->m, req->match.ref, &err) < 0)
        return api_reply_tp_err(req, &err);
    return api_reply_json(req, 204, NULL);
}
