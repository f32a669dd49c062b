/* Handlers about the daemon itself: GET /v1/version and GET /v1/capabilities. */
#include <jansson.h>

#include "api/api-internal.h"
#include "api/body.h"
#include "hypervisor/driver.h"

#ifndef TORPOR_VERSION
#error "TORPOR_VERSION must come from the build"
#endif

enum MHD_Result
api_h_version(struct api_req *req)
{
    return api_reply_json(req, 200,
                          json_pack("{s:s, s:s}", "version", TORPOR_VERSION, "api", "v1"));
}

enum MHD_Result
api_h_capabilities(struct api_req *req)
{
    /* Static facts of the registry: what each driver implements, no VM needed. */
    return api_reply_json(req, 200, api_caps_to_json(hv_driver_all()));
}
