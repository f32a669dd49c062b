/* Instance records in memory: copies, frees, and the JSON form of their config. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-internal.h"
#include "store/store.h"
#include "util/xalloc.h"

static char *
xstrdup_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void
inst_config_clear(struct inst_config *c)
{
    if (!c)
        return;
    free(c->hypervisor);
    free(c->kernel);
    free(c->initrd);
    free(c->rootfs);
    free(c->root_disk_src);
    strv_free(c->cmd);
    free(c->accel);
    free(c->image);
    free(c->image_digest);
    strv_free(c->env);
    free(c->workdir);
    free(c->user);
    *c = (struct inst_config){ 0 };
}

struct inst_record *
inst_record_free(struct inst_record *r)
{
    if (!r)
        return NULL;
    free(r->name);
    inst_config_clear(&r->cfg);
    free(r->last_op);
    free(r->last_error);
    free(r->op);
    free(r->op_data);
    free(r->ports);
    free(r);
    return NULL;
}

struct inst_record *
inst_record_dup(const struct inst_record *r)
{
    struct inst_record *d = xnew(struct inst_record, 1);

    *d = *r; /* scalars and id; every pointer is replaced below */
    d->name = xstrdup_null(r->name);
    d->cfg.hypervisor = xstrdup_null(r->cfg.hypervisor);
    d->cfg.kernel = xstrdup_null(r->cfg.kernel);
    d->cfg.initrd = xstrdup_null(r->cfg.initrd);
    d->cfg.rootfs = xstrdup_null(r->cfg.rootfs);
    d->cfg.root_disk_src = xstrdup_null(r->cfg.root_disk_src);
    d->cfg.cmd = xstrv_dup(r->cfg.cmd);
    d->cfg.accel = xstrdup_null(r->cfg.accel);
    d->cfg.image = xstrdup_null(r->cfg.image);
    d->cfg.image_digest = xstrdup_null(r->cfg.image_digest);
    d->cfg.env = xstrv_dup(r->cfg.env);
    d->cfg.workdir = xstrdup_null(r->cfg.workdir);
    d->cfg.user = xstrdup_null(r->cfg.user);
    d->last_op = xstrdup_null(r->last_op);
    d->last_error = xstrdup_null(r->last_error);
    d->op = xstrdup_null(r->op);
    d->op_data = xstrdup_null(r->op_data);
    d->ports = NULL;
    if (r->n_ports) {
        d->ports = xnew(struct net_port, r->n_ports);
        memcpy(d->ports, r->ports, r->n_ports * sizeof(*r->ports));
    }
    return d;
}

void
inst_record_array_free(struct inst_record **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        inst_record_free(v[i]);
    free(v);
}

/* Sets key to the string or null; false when s is not UTF-8 (json_string refuses it). */
static bool
put_str(json_t *o, const char *key, const char *s)
{
    json_t *v = s ? json_string(s) : json_null();
    if (!v)
        return false;
    json_object_set_new(o, key, v);
    return true;
}

static bool
put_strv(json_t *o, const char *key, char *const *v)
{
    if (!v) {
        json_object_set_new(o, key, json_null());
        return true;
    }
    json_t *a = json_array();
    json_object_set_new(o, key, a);
    strv_foreach (s, (char **)v) {
        json_t *e = json_string(*s);
        if (!e)
            return false;
        json_array_append_new(a, e);
    }
    return true;
}

int
inst_config_to_json(const struct inst_config *c, char **ret_json, struct tp_err *err)
{
    json_auto_t *o = json_object();
    const char *bad = NULL;

    if (!put_str(o, "hypervisor", c->hypervisor))
        bad = "hypervisor";
    json_object_set_new(o, "memory_mib", json_integer(c->memory_mib));
    json_object_set_new(o, "vcpus", json_integer(c->vcpus));
    if (!put_str(o, "kernel", c->kernel))
        bad = "kernel";
    if (!put_str(o, "initrd", c->initrd))
        bad = "initrd";
    if (!put_str(o, "rootfs", c->rootfs))
        bad = "rootfs";
    if (!put_str(o, "root_disk_src", c->root_disk_src))
        bad = "root_disk_src";
    if (!put_strv(o, "cmd", c->cmd))
        bad = "cmd";
    if (c->image) { /* absent for instances not made from an image */
        if (!put_str(o, "image", c->image) || !put_str(o, "image_digest", c->image_digest) ||
            !put_strv(o, "env", c->env) || !put_str(o, "workdir", c->workdir) ||
            !put_str(o, "user", c->user))
            bad = "image";
        json_object_set_new(o, "stop_signal", json_integer(c->stop_signal));
    }
    json_object_set_new(o, "agent", json_boolean(c->agent));
    if (c->net_shared) /* absent: isolated, as every instance before network modes */
        json_object_set_new(o, "net_shared", json_true());
    if (c->mem_uffd) /* absent: the file backend, as every instance before it */
        json_object_set_new(o, "mem_backend", json_string("uffd"));
    if (!put_str(o, "accel", c->accel))
        bad = "accel";
    if (bad)
        return tp_err_set(err, -EINVAL, "encode config: '%s' is not valid UTF-8", bad);

    char *s = json_dumps(o, JSON_COMPACT);
    if (!s) /* only on allocation failure */
        abort();
    *ret_json = s;
    return 0;
}

static int
get_str(json_t *o, const char *key, char **ret, struct tp_err *err)
{
    json_t *v = json_object_get(o, key);

    if (!v || json_is_null(v)) {
        *ret = NULL;
        return 0;
    }
    if (!json_is_string(v))
        return tp_err_set(err, -EBADMSG, "config field '%s' is not a string", key);
    *ret = xstrdup(json_string_value(v));
    return 0;
}

static int
get_u32(json_t *o, const char *key, uint32_t *ret, struct tp_err *err)
{
    json_t *v = json_object_get(o, key);

    if (!v || json_is_null(v)) {
        *ret = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
        return tp_err_set(err, -EBADMSG, "config field '%s' is not a 32-bit unsigned integer", key);
    *ret = (uint32_t)json_integer_value(v);
    return 0;
}

static int
get_strv(json_t *o, const char *key, char ***ret, struct tp_err *err)
{
    json_t *v = json_object_get(o, key);

    if (!v || json_is_null(v)) {
        *ret = NULL;
        return 0;
    }
    if (!json_is_array(v))
        return tp_err_set(err, -EBADMSG, "config field '%s' is not an array", key);

    size_t n = json_array_size(v);
    _cleanup_strv_free_ char **l = xnew(char *, n + 1);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return tp_err_set(err, -EBADMSG, "config field '%s[%zu]' is not a string", key, i);
        l[i] = xstrdup(json_string_value(e));
    }
    *ret = TAKE_PTR(l);
    return 0;
}

int
inst_config_from_json(const char *text, struct inst_config *ret, struct tp_err *err)
{
    json_auto_t *o = NULL;
    json_error_t jerr;
    struct inst_config c = { 0 };
    uint32_t sig = 0;
    int r;

    o = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return tp_err_set(err, -EBADMSG, "config is not JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
    if (!json_is_object(o))
        return tp_err_set(err, -EBADMSG, "config is not a JSON object");

    json_t *agent = json_object_get(o, "agent");
    if (agent && !json_is_null(agent) && !json_is_boolean(agent))
        return tp_err_set(err, -EBADMSG, "config field 'agent' is not a boolean");
    /* The agent is on unless explicitly disabled: an older row without the key had one. */
    c.agent = !agent || json_is_null(agent) || json_is_true(agent);
    json_t *shared = json_object_get(o, "net_shared");
    if (shared && !json_is_null(shared) && !json_is_boolean(shared))
        return tp_err_set(err, -EBADMSG, "config field 'net_shared' is not a boolean");
    c.net_shared = shared && json_is_true(shared);
    json_t *mb = json_object_get(o, "mem_backend");
    if (mb && !json_is_null(mb) && !json_is_string(mb))
        return tp_err_set(err, -EBADMSG, "config field 'mem_backend' is not a string");
    c.mem_uffd = mb && json_is_string(mb) && strcmp(json_string_value(mb), "uffd") == 0;

    if ((r = get_str(o, "hypervisor", &c.hypervisor, err)) < 0 ||
        (r = get_u32(o, "memory_mib", &c.memory_mib, err)) < 0 ||
        (r = get_u32(o, "vcpus", &c.vcpus, err)) < 0 ||
        (r = get_str(o, "kernel", &c.kernel, err)) < 0 ||
        (r = get_str(o, "initrd", &c.initrd, err)) < 0 ||
        (r = get_str(o, "rootfs", &c.rootfs, err)) < 0 ||
        (r = get_str(o, "root_disk_src", &c.root_disk_src, err)) < 0 ||
        (r = get_strv(o, "cmd", &c.cmd, err)) < 0 || (r = get_str(o, "accel", &c.accel, err)) < 0 ||
        (r = get_str(o, "image", &c.image, err)) < 0 ||
        (r = get_str(o, "image_digest", &c.image_digest, err)) < 0 ||
        (r = get_strv(o, "env", &c.env, err)) < 0 ||
        (r = get_str(o, "workdir", &c.workdir, err)) < 0 ||
        (r = get_str(o, "user", &c.user, err)) < 0 ||
        (r = get_u32(o, "stop_signal", &sig, err)) < 0) {
        inst_config_clear(&c);
        return r;
    }
    c.stop_signal = (int)sig;
    *ret = c;
    return 0;
}
