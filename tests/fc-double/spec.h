/* fc-double: the OpenAPI file as the contract: operations by method + path, body validation. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "fcd.h"

struct spec;

/* One operation of the spec matched against a request. Pointers borrow from the spec. */
struct spec_op {
    const char *tmpl;    /* the spec's path, e.g. "/drives/{drive_id}" */
    const char *method;  /* lowercase: get, put, patch */
    json_t *body_schema; /* the body parameter's schema, NULL when the operation has none */
    bool body_required;
    char param[256]; /* the path parameter's value, "" when the path has none */
};

/* Parse the Swagger 2.0 YAML at path (libyaml) into a JSON tree. -errno with err filled. */
int spec_load(const char *path, struct spec **ret_spec, struct fcd_err *err);
struct spec *spec_free(struct spec *s); /* NULL-safe, returns NULL */

/* info.version of the file. */
const char *spec_version(const struct spec *s);

/* The operation for method (any case) and path: 0, or -ENOENT when the spec has no such path
 * and method (Firecracker's "Invalid request method and/or path"). */
int spec_find_op(const struct spec *s, const char *method, const char *path,
                 struct spec_op *ret_op);

/* Check value against schema as Firecracker's deserialisers do: types, required fields, enums,
 * no unknown fields unless additionalProperties is true, minimum/maximum, no nulls, integers
 * non-negative (every integer of the 1.16.1 API is unsigned). -EINVAL with a serde-like
 * message naming the field. */
int spec_validate(const struct spec *s, json_t *schema, json_t *value, struct fcd_err *err);
