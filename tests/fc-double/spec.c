/* fc-double: the OpenAPI file loaded with libyaml, matched against requests, bodies validated. */
#include "spec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

struct spec {
    json_t *root;
};

/* Every YAML scalar becomes a JSON string; the validator parses the few numbers it needs. */
static json_t *
yaml_node_to_json(yaml_document_t *doc, yaml_node_t *node, int depth)
{
    if (!node || depth > 64)
        return NULL;
    switch (node->type) {
    case YAML_SCALAR_NODE:
        return json_stringn((const char *)node->data.scalar.value, node->data.scalar.length);
    case YAML_SEQUENCE_NODE: {
        json_t *arr = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            json_t *v = yaml_node_to_json(doc, yaml_document_get_node(doc, *it), depth + 1);
            if (!v) {
                json_decref(arr);
                return NULL;
            }
            json_array_append_new(arr, v);
        }
        return arr;
    }
    case YAML_MAPPING_NODE: {
        json_t *obj = json_object();
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            json_t *v = yaml_node_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1);
            if (!k || k->type != YAML_SCALAR_NODE || !v) {
                json_decref(v);
                json_decref(obj);
                return NULL;
            }
            json_object_set_new(obj, (const char *)k->data.scalar.value, v);
        }
        return obj;
    }
    default:
        return NULL;
    }
}

int
spec_load(const char *path, struct spec **ret_spec, struct fcd_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    FILE *f = fopen(path, "re");
    json_t *root;

    if (!f)
        return fcd_fail(err, -errno, "open API spec '%s': %s", path, strerror(errno));
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return fcd_fail(err, -ENOMEM, "initialise YAML parser");
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        int line = (int)parser.problem_mark.line + 1;
        fcd_fail(err, -EINVAL, "parse API spec '%s' line %d: %s", path, line,
                 parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        fclose(f);
        return -EINVAL;
    }
    root = yaml_node_to_json(&doc, yaml_document_get_root_node(&doc), 0);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "paths")) ||
        !json_is_object(json_object_get(root, "definitions")) ||
        !json_is_string(json_object_get(json_object_get(root, "info"), "version"))) {
        json_decref(root);
        return fcd_fail(err, -EINVAL,
                        "API spec '%s' is not a Swagger file with paths, "
                        "definitions and info.version",
                        path);
    }
    *ret_spec = calloc(1, sizeof(**ret_spec));
    if (!*ret_spec)
        abort();
    (*ret_spec)->root = root;
    return 0;
}

struct spec *
spec_free(struct spec *s)
{
    if (s) {
        json_decref(s->root);
        free(s);
    }
    return NULL;
}

const char *
spec_version(const struct spec *s)
{
    return json_string_value(json_object_get(json_object_get(s->root, "info"), "version"));
}

/* Match path against a template segment by segment; "{name}" takes one non-empty segment. */
static bool
path_match(const char *tmpl, const char *path, char *param, size_t param_size)
{
    param[0] = '\0';
    while (*tmpl && *path) {
        if (*tmpl != '/' || *path != '/')
            return false;
        tmpl++;
        path++;
        size_t tl = strcspn(tmpl, "/"), pl = strcspn(path, "/");
        if (tl > 1 && tmpl[0] == '{' && tmpl[tl - 1] == '}') {
            if (pl == 0 || pl >= param_size)
                return false;
            memcpy(param, path, pl);
            param[pl] = '\0';
        } else if (tl != pl || strncmp(tmpl, path, tl) != 0) {
            return false;
        }
        tmpl += tl;
        path += pl;
    }
    return *tmpl == '\0' && *path == '\0';
}

int
spec_find_op(const struct spec *s, const char *method, const char *path, struct spec_op *ret_op)
{
    json_t *paths = json_object_get(s->root, "paths");
    const char *tmpl;
    json_t *item;
    char lower[16];
    size_t i;

    for (i = 0; method[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)(method[i] >= 'A' && method[i] <= 'Z' ? method[i] + 32 : method[i]);
    lower[i] = '\0';

    json_object_foreach(paths, tmpl, item)
    {
        struct spec_op op = { 0 };
        json_t *opj, *params, *p;
        size_t idx;
        const char *mkey;

        if (!path_match(tmpl, path, op.param, sizeof(op.param)))
            continue;
        opj = NULL;
        json_object_foreach(item, mkey, p)
        {
            if (strcmp(mkey, lower) == 0) {
                opj = p;
                op.method = mkey;
            }
        }
        if (!opj)
            return -ENOENT;
        op.tmpl = tmpl;
        params = json_object_get(opj, "parameters");
        json_array_foreach(params, idx, p)
        {
            const char *in = json_string_value(json_object_get(p, "in"));
            const char *req = json_string_value(json_object_get(p, "required"));
            if (in && strcmp(in, "body") == 0) {
                op.body_schema = json_object_get(p, "schema");
                op.body_required = req && strcmp(req, "true") == 0;
            }
        }
        *ret_op = op;
        return 0;
    }
    return -ENOENT;
}

/* Follow "$ref": "#/definitions/Name" (a property may carry a $ref next to a description). */
static json_t *
schema_resolve(const struct spec *s, json_t *schema)
{
    for (int i = 0; i < 8 && schema; i++) {
        const char *ref = json_string_value(json_object_get(schema, "$ref"));
        if (!ref)
            return schema;
        if (strncmp(ref, "#/definitions/", 14) != 0)
            return NULL;
        schema = json_object_get(json_object_get(s->root, "definitions"), ref + 14);
    }
    return schema;
}

static const char *
json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "map";
    case JSON_ARRAY:
        return "sequence";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return json_integer_value(v) < 0 ? "integer (negative)" : "integer";
    case JSON_REAL:
        return "floating point";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* "`a`, `b`, `c`" from an array of strings or an object's keys. */
static void
list_names(json_t *names, char *buf, size_t size)
{
    size_t n = 0, idx;
    const char *key;
    json_t *v;

    buf[0] = '\0';
    if (json_is_array(names)) {
        json_array_foreach(names, idx, v)
        {
            n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s`%s`", idx ? ", " : "",
                                  json_string_value(v));
        }
    } else {
        idx = 0;
        json_object_foreach(names, key, v)
        {
            n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s`%s`", idx++ ? ", " : "",
                                  key);
        }
    }
}

static bool
schema_bool(json_t *schema, const char *key)
{
    const char *v = json_string_value(json_object_get(schema, key));
    return v && strcmp(v, "true") == 0;
}

static int
validate_at(const struct spec *s, json_t *schema, json_t *value, const char *where, int depth,
            struct fcd_err *err)
{
    char names[768], sub[256];
    const char *type, *key;
    json_t *v;
    size_t idx;

    schema = schema_resolve(s, schema);
    if (!schema || depth > 32)
        return fcd_fail(err, -EINVAL, "unresolvable schema at `%s`", where);
    type = json_string_value(json_object_get(schema, "type"));
    if (!type)
        type = json_object_get(schema, "properties") ? "object" : "";

    if (json_is_null(value))
        return fcd_fail(err, -EINVAL, "invalid type: null, expected %s at `%s`", type, where);

    if (strcmp(type, "object") == 0) {
        json_t *props = json_object_get(schema, "properties");
        json_t *req = json_object_get(schema, "required");

        if (!json_is_object(value))
            return fcd_fail(err, -EINVAL, "invalid type: %s, expected a map at `%s`",
                            json_kind(value), where);
        json_object_foreach(value, key, v)
        {
            json_t *ps = json_object_get(props, key);
            snprintf(sub, sizeof(sub), "%s%s%s", where, *where ? "." : "", key);
            if (!ps) {
                if (schema_bool(schema, "additionalProperties"))
                    continue;
                list_names(props, names, sizeof(names));
                return fcd_fail(err, -EINVAL, "unknown field `%s`, expected one of %s%s%s", key,
                                names, *where ? " in " : "", where);
            }
            if (validate_at(s, ps, v, sub, depth + 1, err) < 0)
                return -EINVAL;
        }
        json_array_foreach(req, idx, v)
        {
            if (!json_object_get(value, json_string_value(v)))
                return fcd_fail(err, -EINVAL, "missing field `%s`%s%s", json_string_value(v),
                                *where ? " in " : "", where);
        }
        return 0;
    }
    if (strcmp(type, "array") == 0) {
        if (!json_is_array(value))
            return fcd_fail(err, -EINVAL, "invalid type: %s, expected a sequence at `%s`",
                            json_kind(value), where);
        json_array_foreach(value, idx, v)
        {
            snprintf(sub, sizeof(sub), "%s[%zu]", where, idx);
            if (validate_at(s, json_object_get(schema, "items"), v, sub, depth + 1, err) < 0)
                return -EINVAL;
        }
        return 0;
    }
    if (strcmp(type, "string") == 0) {
        json_t *en = json_object_get(schema, "enum");
        if (!json_is_string(value))
            return fcd_fail(err, -EINVAL, "invalid type: %s, expected a string at `%s`",
                            json_kind(value), where);
        if (en) {
            json_t *e;
            json_array_foreach(en, idx, e)
            {
                if (json_equal(e, value))
                    return 0;
            }
            list_names(en, names, sizeof(names));
            return fcd_fail(err, -EINVAL, "unknown variant `%s`, expected one of %s at `%s`",
                            json_string_value(value), names, where);
        }
        return 0;
    }
    if (strcmp(type, "boolean") == 0) {
        if (!json_is_boolean(value))
            return fcd_fail(err, -EINVAL, "invalid type: %s, expected a boolean at `%s`",
                            json_kind(value), where);
        return 0;
    }
    if (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0) {
        const char *fmt = json_string_value(json_object_get(schema, "format"));
        const char *min = json_string_value(json_object_get(schema, "minimum"));
        const char *max = json_string_value(json_object_get(schema, "maximum"));
        json_int_t n;

        if (!json_is_integer(value))
            return fcd_fail(err, -EINVAL, "invalid type: %s, expected an unsigned integer at `%s`",
                            json_kind(value), where);
        n = json_integer_value(value);
        if (n < 0)
            return fcd_fail(err, -EINVAL,
                            "invalid value: integer `%lld`, expected an unsigned integer at `%s`",
                            (long long)n, where);
        if (fmt && strcmp(fmt, "int32") == 0 && n > 0xffffffffLL)
            return fcd_fail(err, -EINVAL, "invalid value: integer `%lld`, expected u32 at `%s`",
                            (long long)n, where);
        if (min && n < strtoll(min, NULL, 10))
            return fcd_fail(err, -EINVAL, "invalid value: %lld at `%s` is below the minimum %s",
                            (long long)n, where, min);
        if (max && n > strtoll(max, NULL, 10))
            return fcd_fail(err, -EINVAL, "invalid value: %lld at `%s` is above the maximum %s",
                            (long long)n, where, max);
        return 0;
    }
    return fcd_fail(err, -EINVAL, "schema type '%s' at `%s` is not supported by the double", type,
                    where);
}

int
spec_validate(const struct spec *s, json_t *schema, json_t *value, struct fcd_err *err)
{
    return validate_at(s, schema, value, "", 0, err);
}
