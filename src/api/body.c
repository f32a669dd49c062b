/* Request and response bodies: strict JSON -> request structs, records -> instance objects,
 * the capabilities object and the exec-stream frame header. Pure functions (no I/O). */
#include "api/body.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hypervisor/hv.h"
#include "net/net.h"
#include "util/cleanup.h"
#include "util/macro.h"
#include "util/name.h"
#include "util/xalloc.h"

#define streq(a, b) (strcmp((a), (b)) == 0)

/* jansson reports OOM as NULL/-1; like xmalloc, treat it as fatal. */
static json_t *
jcheck(json_t *j)
{
    if (!j)
        abort();
    return j;
}

static void
jset(json_t *o, const char *key, json_t *v)
{
    if (json_object_set_new(o, key, jcheck(v)) < 0)
        abort();
}

static json_t *
jstr_or_null(const char *s)
{
    json_t *j;

    if (!s)
        return json_null();
    j = json_string(s);
    /* Only invalid UTF-8 makes this fail; such a value cannot be shown as JSON text. */
    return j ? j : json_null();
}

static const char *
json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

static int
load_object(const char *data, size_t len, json_t **ret, struct tp_err *err)
{
    json_error_t jerr;
    json_t *root;

    /* Duplicate keys are ambiguous: reject them like any other malformed input. jansson
     * already rejects trailing garbage and NUL bytes inside strings by default. */
    root = json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return tp_err_set(err, -EINVAL, "parse JSON body at line %d column %d: %s", jerr.line,
                          jerr.column, jerr.text);
    if (!json_is_object(root)) {
        const char *t = json_type_name(root);
        json_decref(root);
        return tp_err_set(err, -EINVAL, "request body must be a JSON object, got %s", t);
    }
    *ret = root;
    return 0;
}

/* A request body's fields: known keys, and whether null stands for "the default". */
struct body_field {
    const char *key;
    bool nullable;
};

typedef int (*body_field_fn)(void *target, const char *key, const json_t *v, struct tp_err *err);

/* Load a JSON object and hand each known, non-null (or non-nullable) field to fn. An unknown
 * key fails whatever its value. */
static int
parse_fields(const char *data, size_t len, const struct body_field *fields, size_t n_fields,
             body_field_fn fn, void *target, struct tp_err *err)
{
    json_t *root = NULL;
    const char *key;
    json_t *v;
    int r;

    r = load_object(data, len, &root, err);
    if (r < 0)
        return r;
    json_object_foreach(root, key, v)
    {
        size_t i = 0;

        while (i < n_fields && !streq(key, fields[i].key))
            i++;
        if (i == n_fields) {
            r = tp_err_set(err, -EINVAL, "unknown field '%.64s'", key);
            break;
        }
        if (fields[i].nullable && json_is_null(v))
            continue;
        r = fn(target, key, v, err);
        if (r < 0)
            break;
    }
    json_decref(root);
    return r;
}

static int
want_type(const char *key, const json_t *v, json_type type, const char *name, struct tp_err *err)
{
    bool ok = type == JSON_TRUE ? json_is_boolean(v) : json_typeof(v) == type;

    if (!ok)
        return tp_err_set(err, -EINVAL, "field '%s' must be %s, got %s", key, name,
                          json_type_name(v));
    return 0;
}

/* Vets a string field's value: 0, or -EINVAL with a message naming key. */
typedef int (*string_check_fn)(const char *key, const char *s, struct tp_err *err);

/* A string field, vetted by check (may be NULL), copied into *ret. */
static int
get_string(const char *key, const json_t *v, string_check_fn check, char **ret, struct tp_err *err)
{
    int r = want_type(key, v, JSON_STRING, "a string", err);
    if (r < 0)
        return r;
    if (check) {
        r = check(key, json_string_value(v), err);
        if (r < 0)
            return r;
    }
    *ret = xstrdup(json_string_value(v));
    return 0;
}

static int
get_bool(const char *key, const json_t *v, bool *ret, struct tp_err *err)
{
    int r = want_type(key, v, JSON_TRUE, "a boolean", err);
    if (r < 0)
        return r;
    *ret = json_is_true(v);
    return 0;
}

static int
get_u32_range(const char *key, const json_t *v, json_int_t min, json_int_t max, uint32_t *ret,
              struct tp_err *err)
{
    int r = want_type(key, v, JSON_INTEGER, "an integer", err);
    if (r < 0)
        return r;
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return tp_err_set(err, -EINVAL, "field '%s' must be between %lld and %lld, got %lld", key,
                          (long long)min, (long long)max, (long long)n);
    *ret = (uint32_t)n;
    return 0;
}

/* A JSON array of strings -> NULL-terminated vector. check (may be NULL) vets each element. */
static int
get_strv(const char *key, const json_t *v, bool allow_empty, int (*check)(const char *s),
         const char *check_what, char ***ret, struct tp_err *err)
{
    _cleanup_strv_free_ char **out = NULL;
    size_t i, n;
    json_t *e;
    int r;

    r = want_type(key, v, JSON_ARRAY, "an array of strings", err);
    if (r < 0)
        return r;
    n = json_array_size(v);
    if (n == 0 && !allow_empty)
        return tp_err_set(err, -EINVAL, "field '%s' must not be empty", key);
    out = xnew(char *, n + 1);
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e))
            return tp_err_set(err, -EINVAL,
                              "field '%s' must be an array of strings, element %zu is %s", key, i,
                              json_type_name(e));
        if (check && check(json_string_value(e)) < 0)
            return tp_err_set(err, -EINVAL, "field '%s' element %zu must be %s, got '%s'", key, i,
                              check_what, json_string_value(e));
        out[i] = xstrdup(json_string_value(e));
    }
    *ret = TAKE_PTR(out);
    return 0;
}

static int
check_env_entry(const char *s)
{
    const char *eq = strchr(s, '=');
    return eq && eq != s ? 0 : -EINVAL;
}

/* The name rule (util/name.h), with max for a fork's prefix: bad names fail before the manager
 * runs. */
static int
check_name_max(const char *key, const char *s, size_t max, struct tp_err *err)
{
    if (!name_valid(s, max))
        return tp_err_set(err, -EINVAL, "field '%s' must match [a-z0-9][a-z0-9-]{0,%zu}, got '%s'",
                          key, max - 1, s);
    return 0;
}

static int
check_name(const char *key, const char *s, struct tp_err *err)
{
    return check_name_max(key, s, NAME_MAX_LEN, err);
}

static int
check_prefix(const char *key, const char *s, struct tp_err *err)
{
    return check_name_max(key, s, API_FORK_PREFIX_MAX, err);
}

static int
check_path(const char *key, const char *s, struct tp_err *err)
{
    if (s[0] != '/')
        return tp_err_set(err, -EINVAL, "field '%s' must be an absolute path, got '%s'", key, s);
    return 0;
}

static int
check_not_empty(const char *key, const char *s, struct tp_err *err)
{
    if (!s[0])
        return tp_err_set(err, -EINVAL, "field '%s' must not be empty", key);
    return 0;
}

/* docker's -u: NAME|UID, optionally ":GROUP|GID"; each part a portable user/group name. */
static int
check_user(const char *key, const char *s, struct tp_err *err)
{
    const char *colon = strchr(s, ':');
    size_t n1 = colon ? (size_t)(colon - s) : strlen(s);
    size_t n2 = colon ? strlen(colon + 1) : 1;
    bool ok = n1 >= 1 && n1 <= 64 && n2 >= 1 && n2 <= 64 && !strchr(colon ? colon + 1 : s, ':');

    for (const char *c = s; ok && *c; c++)
        ok = *c == ':' || *c == '.' || *c == '_' || *c == '-' || (*c >= '0' && *c <= '9') ||
             (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z');
    if (!ok)
        return tp_err_set(err, -EINVAL,
                          "field '%s' must be USER or UID, optionally followed by :GROUP or :GID "
                          "(letters, digits, '.', '_', '-'; at most 64 each), not '%.64s'",
                          key, s);
    return 0;
}

static int
check_network(const char *key, const char *s, struct tp_err *err)
{
    if (!streq(s, "default") && !streq(s, "none"))
        return tp_err_set(err, -EINVAL, "field '%s' must be \"default\" or \"none\", got '%.64s'",
                          key, s);
    return 0;
}

static int
check_network_mode(const char *key, const char *s, struct tp_err *err)
{
    if (!streq(s, "isolated") && !streq(s, "shared"))
        return tp_err_set(err, -EINVAL,
                          "field '%s' must be \"isolated\" or \"shared\", got '%.64s'", key, s);
    return 0;
}

/* One element of "ports": {"host_ip"?, "host_port", "guest_port", "proto"?}; host_ip defaults
 * to 127.0.0.1 and proto to tcp (null too), the ports are required. */
static int
get_port(size_t idx, const json_t *o, struct net_port *ret, struct tp_err *err)
{
    struct net_port p = { .host_ip = NET_PORT_HOST_IP_DEF, .proto = NET_PROTO_TCP };
    bool have_host = false, have_guest = false;
    char key[32];
    const char *k;
    json_t *v;
    int r;

    if (!json_is_object(o))
        return tp_err_set(err, -EINVAL, "field 'ports[%zu]' must be an object, got %s", idx,
                          json_type_name(o));
    json_object_foreach((json_t *)o, k, v)
    {
        uint32_t n;
        snprintf(key, sizeof(key), "ports[%zu].%.12s", idx, k);
        if (streq(k, "host_port") || streq(k, "guest_port")) {
            r = get_u32_range(key, v, 1, 65535, &n, err);
            if (r < 0)
                return r;
            if (streq(k, "host_port")) {
                p.host_port = (uint16_t)n;
                have_host = true;
            } else {
                p.guest_port = (uint16_t)n;
                have_guest = true;
            }
        } else if (streq(k, "host_ip")) {
            if (json_is_null(v))
                continue;
            r = want_type(key, v, JSON_STRING, "a string", err);
            if (r < 0)
                return r;
            if (net_ip_parse(json_string_value(v), &p.host_ip) < 0)
                return tp_err_set(err, -EINVAL, "field '%s' must be an IPv4 address, got '%.64s'",
                                  key, json_string_value(v));
        } else if (streq(k, "proto")) {
            if (json_is_null(v))
                continue;
            r = want_type(key, v, JSON_STRING, "a string", err);
            if (r < 0)
                return r;
            p.proto = net_proto_from_string(json_string_value(v));
            if (p.proto < 0)
                return tp_err_set(err, -EINVAL,
                                  "field '%s' must be \"tcp\" or \"udp\", got '%.64s'", key,
                                  json_string_value(v));
        } else
            return tp_err_set(err, -EINVAL, "unknown field 'ports[%zu].%.64s'", idx, k);
    }
    if (!have_host || !have_guest)
        return tp_err_set(err, -EINVAL, "field 'ports[%zu]' needs '%s'", idx,
                          have_host ? "guest_port" : "host_port");
    *ret = p;
    return 0;
}

static int
get_ports(const char *key, const json_t *v, struct net_port **ret, size_t *ret_n,
          struct tp_err *err)
{
    _cleanup_free_ struct net_port *out = NULL;
    int r = want_type(key, v, JSON_ARRAY, "an array", err);
    if (r < 0)
        return r;
    size_t n = json_array_size(v);
    if (n > NET_PORTS_MAX)
        return tp_err_set(err, -EINVAL, "field '%s' has %zu entries: at most %d", key, n,
                          NET_PORTS_MAX);
    out = xnew(struct net_port, n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        r = get_port(i, json_array_get(v, i), &out[i], err);
        if (r < 0)
            return r;
    }
    r = net_ports_check(out, n, err);
    if (r < 0)
        return r;
    free(*ret);
    *ret = TAKE_PTR(out);
    *ret_n = n;
    return 0;
}

static int
check_accel(const char *key, const char *s, struct tp_err *err)
{
    if (!streq(s, "kvm") && !streq(s, "tcg"))
        return tp_err_set(err, -EINVAL, "field '%s' must be \"kvm\" or \"tcg\", got '%s'", key, s);
    return 0;
}

static int
check_mem_backend(const char *key, const char *s, struct tp_err *err)
{
    if (!streq(s, "file") && !streq(s, "uffd"))
        return tp_err_set(err, -EINVAL, "field '%s' must be \"file\" or \"uffd\", got '%s'", key,
                          s);
    return 0;
}

void
api_create_body_clear(struct api_create_body *b)
{
    if (!b)
        return;
    free(b->name);
    free(b->hypervisor);
    free(b->kernel);
    free(b->initrd);
    free(b->rootfs);
    free(b->accel);
    free(b->mem_backend);
    free(b->network);
    free(b->network_mode);
    free(b->ports);
    strv_free(b->cmd);
    free(b->image);
    strv_free(b->entrypoint);
    strv_free(b->env);
    free(b->workdir);
    free(b->user);
    *b = (struct api_create_body){ 0 };
}

static void
create_body_link(struct api_create_body *b)
{
    b->req.name = b->name;
    b->req.hypervisor = b->hypervisor;
    b->req.kernel = b->kernel;
    b->req.initrd = b->initrd;
    b->req.rootfs = b->rootfs;
    b->req.accel = b->accel;
    b->req.mem_backend = b->mem_backend;
    b->req.network = b->network;
    b->req.network_mode = b->network_mode;
    b->req.ports = b->ports;
    b->req.n_ports = b->n_ports;
    b->req.cmd = b->cmd;
    b->req.image = b->image;
    b->req.entrypoint = b->entrypoint;
    b->req.env = b->env;
    b->req.workdir = b->workdir;
    b->req.user = b->user;
}

static int
create_field(void *target, const char *key, const json_t *v, struct tp_err *err)
{
    struct api_create_body *b = target;

    if (streq(key, "name"))
        return get_string(key, v, check_name, &b->name, err);
    if (streq(key, "memory_mib"))
        return get_u32_range(key, v, API_MEMORY_MIB_MIN, API_MEMORY_MIB_MAX, &b->req.memory_mib,
                             err);
    if (streq(key, "vcpus"))
        return get_u32_range(key, v, API_VCPUS_MIN, API_VCPUS_MAX, &b->req.vcpus, err);
    if (streq(key, "disk_mib"))
        return get_u32_range(key, v, API_DISK_MIB_MIN, API_DISK_MIB_MAX, &b->req.disk_mib, err);
    if (streq(key, "hypervisor"))
        return get_string(key, v, check_not_empty, &b->hypervisor, err);
    if (streq(key, "kernel"))
        return get_string(key, v, check_path, &b->kernel, err);
    if (streq(key, "initrd"))
        return get_string(key, v, check_path, &b->initrd, err);
    if (streq(key, "rootfs"))
        return get_string(key, v, check_path, &b->rootfs, err);
    if (streq(key, "cmd"))
        return get_strv(key, v, false, NULL, NULL, &b->cmd, err);
    if (streq(key, "no_agent"))
        return get_bool(key, v, &b->req.no_agent, err);
    if (streq(key, "cold"))
        return get_bool(key, v, &b->req.cold, err);
    if (streq(key, "accel"))
        return get_string(key, v, check_accel, &b->accel, err);
    if (streq(key, "mem_backend"))
        return get_string(key, v, check_mem_backend, &b->mem_backend, err);
    if (streq(key, "network"))
        return get_string(key, v, check_network, &b->network, err);
    if (streq(key, "network_mode"))
        return get_string(key, v, check_network_mode, &b->network_mode, err);
    if (streq(key, "ports"))
        return get_ports(key, v, &b->ports, &b->n_ports, err);
    if (streq(key, "image"))
        return get_string(key, v, check_not_empty, &b->image, err);
    if (streq(key, "entrypoint"))
        return get_strv(key, v, true, NULL, NULL, &b->entrypoint, err);
    if (streq(key, "env"))
        return get_strv(key, v, true, check_env_entry, "\"KEY=VALUE\"", &b->env, err);
    if (streq(key, "workdir"))
        return get_string(key, v, check_path, &b->workdir, err);
    if (streq(key, "user"))
        return get_string(key, v, check_user, &b->user, err);
    if (streq(key, "attach"))
        return get_bool(key, v, &b->req.attach, err);
    return tp_err_set(err, -EINVAL, "unknown field '%.64s'", key);
}

int
api_parse_create(const char *data, size_t len, struct api_create_body *ret, struct tp_err *err)
{
    /* null = the field's default, so an instance object's nulls can be sent back. */
    static const struct body_field fields[] = {
        { "name", true },         { "memory_mib", true }, { "vcpus", true },
        { "hypervisor", true },   { "kernel", true },     { "initrd", true },
        { "rootfs", true },       { "cmd", true },        { "no_agent", true },
        { "accel", true },        { "disk_mib", true },   { "network", true },
        { "network_mode", true }, { "ports", true },      { "mem_backend", true },
        { "cold", true },         { "image", true },      { "entrypoint", true },
        { "env", true },          { "workdir", true },    { "user", true },
        { "attach", true },
    };
    struct api_create_body b = { 0 };
    int r = parse_fields(data, len, fields, ELEMENTSOF(fields), create_field, &b, err);

    /* What only an image's workload takes. */
    if (r == 0 && !b.image && (b.entrypoint || b.env || b.workdir || b.user || b.req.attach))
        r = tp_err_set(
            err, -EINVAL,
            "fields 'entrypoint', 'env', 'workdir', 'user' and 'attach' need an 'image'");
    if (r == 0 && b.image && b.rootfs)
        r = tp_err_set(err, -EINVAL, "fields 'image' and 'rootfs' exclude each other");

    if (r < 0) {
        api_create_body_clear(&b);
        return r;
    }
    *ret = b;
    create_body_link(ret);
    return 0;
}

void
api_exec_body_clear(struct api_exec_body *b)
{
    if (!b)
        return;
    strv_free(b->argv);
    strv_free(b->env);
    free(b->cwd);
    free(b->user);
    *b = (struct api_exec_body){ 0 };
}

static int
exec_field(void *target, const char *key, const json_t *v, struct tp_err *err)
{
    struct api_exec_body *b = target;

    if (streq(key, "cmd"))
        return get_strv(key, v, false, NULL, NULL, &b->argv, err);
    if (streq(key, "env"))
        return get_strv(key, v, true, check_env_entry, "\"KEY=VALUE\"", &b->env, err);
    if (streq(key, "cwd"))
        return get_string(key, v, check_path, &b->cwd, err);
    if (streq(key, "user"))
        return get_string(key, v, check_user, &b->user, err);
    if (streq(key, "stdin"))
        return get_bool(key, v, &b->stdin_open, err);
    if (streq(key, "tty"))
        return get_bool(key, v, &b->req.tty, err);
    if (streq(key, "detach"))
        return get_bool(key, v, &b->detach, err);
    if (streq(key, "rows") || streq(key, "cols")) {
        uint32_t n;
        int r = get_u32_range(key, v, 0, UINT16_MAX, &n, err);
        if (r >= 0)
            *(streq(key, "rows") ? &b->req.rows : &b->req.cols) = (uint16_t)n;
        return r;
    }
    return tp_err_set(err, -EINVAL, "unknown field '%.64s'", key);
}

int
api_parse_exec(const char *data, size_t len, struct api_exec_body *ret, struct tp_err *err)
{
    static const struct body_field fields[] = {
        { "cmd", false }, { "env", true },  { "cwd", true },  { "user", true },   { "stdin", true },
        { "tty", true },  { "rows", true }, { "cols", true }, { "detach", true },
    };
    struct api_exec_body b = { 0 };
    int r = parse_fields(data, len, fields, ELEMENTSOF(fields), exec_field, &b, err);

    if (r == 0 && !b.argv)
        r = tp_err_set(err, -EINVAL, "field 'cmd' is required");
    /* Checked once every field is read: JSON objects have no order. */
    if (r == 0 && (b.req.rows || b.req.cols) && !b.req.tty)
        r = tp_err_set(err, -EINVAL, "fields 'rows' and 'cols' size a terminal: they need 'tty'");
    if (r == 0 && b.detach && (b.stdin_open || b.req.tty))
        r = tp_err_set(err, -EINVAL,
                       "field 'detach' excludes 'stdin' and 'tty': nobody is attached to them");
    if (r < 0) {
        api_exec_body_clear(&b);
        return r;
    }
    *ret = b;
    ret->req.argv = ret->argv;
    ret->req.env = ret->env;
    ret->req.cwd = ret->cwd;
    ret->req.user = ret->user;
    ret->req.stdin_open = ret->stdin_open;
    return 0;
}

void
api_fork_body_clear(struct api_fork_body *b)
{
    if (!b)
        return;
    free(b->name);
    free(b->prefix);
    free(b->ports);
    *b = (struct api_fork_body){ 0 };
}

static int
fork_field(void *target, const char *key, const json_t *v, struct tp_err *err)
{
    struct api_fork_body *b = target;

    if (streq(key, "count"))
        return get_u32_range(key, v, 1, API_FORK_COUNT_MAX, &b->req.count, err);
    if (streq(key, "name"))
        return get_string(key, v, check_name, &b->name, err);
    if (streq(key, "prefix"))
        return get_string(key, v, check_prefix, &b->prefix, err);
    if (streq(key, "standby"))
        return get_bool(key, v, &b->req.standby, err);
    if (streq(key, "no_wait"))
        return get_bool(key, v, &b->req.no_wait, err);
    if (streq(key, "ports"))
        return get_ports(key, v, &b->ports, &b->n_ports, err);
    return tp_err_set(err, -EINVAL, "unknown field '%.64s'", key);
}

int
api_parse_fork(const char *data, size_t len, struct api_fork_body *ret, struct tp_err *err)
{
    static const struct body_field fields[] = {
        { "count", false },   { "name", false },    { "prefix", false },
        { "standby", false }, { "no_wait", false }, { "ports", true },
    };
    struct api_fork_body b = { .req.count = 1 };
    int r = 0;

    /* Like stop or standby, fork may be sent without a body: one child, all defaults. */
    if (len > 0)
        r = parse_fields(data, len, fields, ELEMENTSOF(fields), fork_field, &b, err);
    /* Checked once every field is read: JSON objects have no order. */
    if (r == 0 && b.name && b.req.count > 1)
        r = tp_err_set(err, -EINVAL, "field 'name' names one child; it cannot go with count %u",
                       b.req.count);
    if (r == 0 && b.name && b.prefix)
        r = tp_err_set(err, -EINVAL, "fields 'name' and 'prefix' exclude each other");
    if (r == 0 && b.n_ports && b.req.count > 1)
        r = tp_err_set(err, -EINVAL,
                       "field 'ports' publishes one child's ports; it cannot go with count %u",
                       b.req.count);
    if (r < 0) {
        api_fork_body_clear(&b);
        return r;
    }
    *ret = b;
    ret->req.name = ret->name;
    ret->req.prefix = ret->prefix;
    ret->req.ports = ret->ports;
    ret->req.n_ports = ret->n_ports;
    return 0;
}

int
api_parse_empty(const char *data, size_t len, struct tp_err *err)
{
    if (len == 0)
        return 0;
    return parse_fields(data, len, NULL, 0, NULL, NULL, err);
}

struct wait_body {
    enum inst_state state;
    uint32_t timeout_ms;
};

static int
wait_field(void *target, const char *key, const json_t *v, struct tp_err *err)
{
    struct wait_body *b = target;
    int r;

    if (streq(key, "timeout_ms"))
        return get_u32_range(key, v, 1, 600000, &b->timeout_ms, err);
    /* "state" */
    r = want_type(key, v, JSON_STRING, "a string", err);
    if (r < 0)
        return r;
    b->state = inst_state_from_string(json_string_value(v));
    if (b->state < 0)
        return tp_err_set(err, -EINVAL, "field 'state': unknown state '%.64s'",
                          json_string_value(v));
    return 0;
}

int
api_parse_wait(const char *data, size_t len, enum inst_state *ret_state, int *ret_timeout_ms,
               struct tp_err *err)
{
    static const struct body_field fields[] = {
        { "state", false },
        { "timeout_ms", false },
    };
    struct wait_body b = { .state = _INST_STATE_INVALID, .timeout_ms = 30000 };
    int r = parse_fields(data, len, fields, ELEMENTSOF(fields), wait_field, &b, err);

    if (r < 0)
        return r;
    if (b.state < 0)
        return tp_err_set(err, -EINVAL, "field 'state' is required");
    *ret_state = b.state;
    *ret_timeout_ms = (int)b.timeout_ms;
    return 0;
}

int
api_format_time(int64_t ms, char out[32])
{
    struct tm tm;
    /* Floor division so times before 1970 still get a 0..999 millisecond part. */
    int64_t sec = ms / 1000, rem = ms % 1000;
    time_t t;
    size_t n;

    if (rem < 0) {
        rem += 1000;
        sec -= 1;
    }
    t = (time_t)sec;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return -EINVAL;
    n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n != 19)
        return -EINVAL;
    out[n++] = '.';
    out[n++] = (char)('0' + rem / 100);
    out[n++] = (char)('0' + rem / 10 % 10);
    out[n++] = (char)('0' + rem % 10);
    out[n++] = 'Z';
    out[n] = '\0';
    return 0;
}

/* Zero means "never set" in a record; show it as null rather than 1970. */
static json_t *
time_or_null(int64_t ms)
{
    char buf[32];

    if (ms == 0 || api_format_time(ms, buf) < 0)
        return json_null();
    return json_string(buf);
}

static json_t *
strv_or_null(char *const *v)
{
    json_t *a;

    if (!v)
        return json_null();
    a = jcheck(json_array());
    for (size_t i = 0; v[i]; i++) {
        json_t *s = json_string(v[i]);
        /* Keep positions: an argument that is not UTF-8 shows as null. */
        if (json_array_append_new(a, s ? s : json_null()) < 0)
            abort();
    }
    return a;
}

static json_t *
last_op_or_null(const char *text)
{
    json_t *j;

    if (!text)
        return json_null();
    j = json_loads(text, 0, NULL);
    if (!j)
        return json_null();
    if (!json_is_object(j)) {
        json_decref(j);
        return json_null();
    }
    return j;
}

/* [{host_ip, host_port, guest_port, proto}], [] when none. */
static json_t *
ports_json(const struct net_port *v, size_t n)
{
    json_t *a = jcheck(json_array());

    for (size_t k = 0; k < n; k++) {
        char ip[NET_IP_LEN];
        const char *proto = net_proto_to_string(v[k].proto);
        json_t *o = jcheck(json_object());
        net_ip_format(v[k].host_ip, ip);
        jset(o, "host_ip", json_string(ip));
        jset(o, "host_port", json_integer(v[k].host_port));
        jset(o, "guest_port", json_integer(v[k].guest_port));
        jset(o, "proto", json_string(proto ? proto : "tcp"));
        json_array_append_new(a, o);
    }
    return a;
}

/* {ip, prefix, mac, gateway, tap, mode}, or null without a network. */
static json_t *
network_or_null(const struct inst_net *net, bool shared)
{
    char ip[NET_IP_LEN], gw[NET_IP_LEN], mac[NET_MAC_LEN], tap[IFNAMSIZ];

    if (!net->ip)
        return json_null();
    const struct net_subnet sn = { .network = net->ip & net_prefix_mask(net->prefix),
                                   .prefix = net->prefix };
    net_ip_format(net->ip, ip);
    net_ip_format(net_subnet_gateway(&sn), gw);
    net_mac_format(net->mac, mac);
    net_tap_name(net->ip, tap);
    json_t *o = jcheck(json_object());
    jset(o, "ip", json_string(ip));
    jset(o, "prefix", json_integer(net->prefix));
    jset(o, "gateway", json_string(gw));
    jset(o, "mac", json_string(mac));
    jset(o, "tap", json_string(tap));
    jset(o, "mode", json_string(shared ? "shared" : "isolated"));
    return o;
}

json_t *
api_record_to_json(const struct inst_record *r)
{
    json_t *o = jcheck(json_object());
    const char *state = inst_state_to_string(r->state);

    jset(o, "id", jstr_or_null(r->id));
    jset(o, "name", jstr_or_null(r->name));
    jset(o, "state", json_string(state ? state : "Unknown"));
    jset(o, "hypervisor", jstr_or_null(r->cfg.hypervisor));
    jset(o, "memory_mib", json_integer(r->cfg.memory_mib));
    jset(o, "vcpus", json_integer(r->cfg.vcpus));
    jset(o, "kernel", jstr_or_null(r->cfg.kernel));
    jset(o, "initrd", jstr_or_null(r->cfg.initrd));
    jset(o, "rootfs", jstr_or_null(r->cfg.rootfs));
    jset(o, "cmd", strv_or_null(r->cfg.cmd));
    jset(o, "image", jstr_or_null(r->cfg.image));
    jset(o, "image_digest", jstr_or_null(r->cfg.image_digest));
    /* An image's workload settings (docker's Config.Env/WorkingDir/User); null otherwise. */
    jset(o, "env", strv_or_null(r->cfg.env));
    jset(o, "workdir", jstr_or_null(r->cfg.workdir));
    jset(o, "user", jstr_or_null(r->cfg.user));
    jset(o, "stop_signal", r->cfg.image ? json_integer(r->cfg.stop_signal) : json_null());
    jset(o, "agent", json_boolean(r->cfg.agent));
    jset(o, "accel", jstr_or_null(r->cfg.accel));
    jset(o, "mem_backend", json_string(r->cfg.mem_uffd ? "uffd" : "file"));
    jset(o, "pid", r->vmm_pid > 0 ? json_integer(r->vmm_pid) : json_null());
    jset(o, "created_at", time_or_null(r->created_ms));
    jset(o, "state_changed_at", time_or_null(r->state_changed_ms));
    jset(o, "last_operation", last_op_or_null(r->last_op));
    jset(o, "last_error", jstr_or_null(r->last_error));
    jset(o, "exit_code", r->state == INST_STOPPED ? json_integer(r->exit_code) : json_null());
    jset(o, "network", network_or_null(&r->net, r->cfg.net_shared));
    jset(o, "ports", ports_json(r->ports, r->n_ports));
    return o;
}

json_t *
api_caps_to_json(const struct hv_driver *const *drivers)
{
    json_t *hvs = jcheck(json_object());
    json_t *o = jcheck(json_object());

    for (size_t i = 0; drivers && drivers[i]; i++) {
        json_t *caps = jcheck(json_object());
        for (int c = 0; c < _HV_CAP_MAX; c++) {
            const char *n = hv_cap_to_string((enum hv_cap)c);
            if (n)
                jset(caps, n, json_boolean(drivers[i]->caps[c]));
        }
        /* A driver without a probe cannot tell: it is taken as there. */
        const char *version = hv_version(drivers[i], NULL);
        jset(caps, "available", json_boolean(version || !drivers[i]->probe));
        if (version)
            jset(caps, "vmm_version", json_string(version));
        jset(hvs, drivers[i]->name, caps);
    }
    jset(o, "hypervisors", hvs);
    return o;
}

size_t
api_frame_header(uint8_t out[8], int kind, uint32_t len)
{
    out[0] = (uint8_t)kind;
    out[1] = out[2] = out[3] = 0;
    out[4] = (uint8_t)(len >> 24);
    out[5] = (uint8_t)(len >> 16);
    out[6] = (uint8_t)(len >> 8);
    out[7] = (uint8_t)len;
    return API_FRAME_HEADER_SIZE;
}

static int
signal_field(void *target, const char *key, const json_t *v, struct tp_err *err)
{
    uint32_t n;
    int r;

    if (!streq(key, "signal"))
        return tp_err_set(err, -EINVAL, "unknown field '%.64s'", key);
    r = get_u32_range(key, v, 1, 64, &n, err);
    if (r >= 0)
        *(int *)target = (int)n;
    return r;
}

int
api_parse_session_signal(const char *data, size_t len, int *ret_sig, struct tp_err *err)
{
    static const struct body_field fields[] = { { "signal", false } };
    int sig = 0;
    int r = parse_fields(data, len, fields, ELEMENTSOF(fields), signal_field, &sig, err);

    if (r == 0 && !sig)
        r = tp_err_set(err, -EINVAL, "field 'signal' is required");
    if (r == 0)
        *ret_sig = sig;
    return r;
}

struct resize_body {
    uint32_t rows, cols;
    bool has_rows, has_cols;
};

static int
resize_field(void *target, const char *key, const json_t *v, struct tp_err *err)
{
    struct resize_body *b = target;

    if (streq(key, "rows")) {
        b->has_rows = true;
        return get_u32_range(key, v, 1, UINT16_MAX, &b->rows, err);
    }
    if (streq(key, "cols")) {
        b->has_cols = true;
        return get_u32_range(key, v, 1, UINT16_MAX, &b->cols, err);
    }
    return tp_err_set(err, -EINVAL, "unknown field '%.64s'", key);
}

int
api_parse_session_resize(const char *data, size_t len, uint16_t *ret_rows, uint16_t *ret_cols,
                         struct tp_err *err)
{
    static const struct body_field fields[] = { { "rows", false }, { "cols", false } };
    struct resize_body b = { 0 };
    int r = parse_fields(data, len, fields, ELEMENTSOF(fields), resize_field, &b, err);

    if (r == 0 && (!b.has_rows || !b.has_cols))
        r = tp_err_set(err, -EINVAL, "fields 'rows' and 'cols' are required");
    if (r == 0) {
        *ret_rows = (uint16_t)b.rows;
        *ret_cols = (uint16_t)b.cols;
    }
    return r;
}
