/* The one mapping from -errno to an HTTP status and error code slug, and the error body. */
#pragma once

#include <jansson.h>

/* What a failure looks like on the wire. code is a static string. */
struct api_status {
    unsigned status;
    const char *code;
};

/* 405 is about the route, not an errno: the router asks for it by this code. */
#define API_CODE_METHOD_NOT_ALLOWED "method_not_allowed"

/* Status and slug for a negative errno (api.md's table). Anything unlisted, including 0 or a
 * positive value, is 500 "internal". */
struct api_status api_errmap(int r);

/* {"code": code, "message": message}; message NULL is "". Never NULL (OOM aborts). */
json_t *api_error_json(const char *code, const char *message);

/* The same object as compact JSON text, newline-terminated; caller frees. */
char *api_error_text(const char *code, const char *message);
