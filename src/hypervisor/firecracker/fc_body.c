/* Request bodies and reply parsers for the Firecracker API, held to the v1.16.1 OpenAPI file. */
#include "hypervisor/firecracker/fc_body.h"

#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/macro.h"
#include "util/xalloc.h"

/* Enum spellings, exactly as the spec lists them. */
static const char *const huge_pages_names[_FC_HUGE_PAGES_MAX] = {
    [FC_HUGE_PAGES_NONE] = "None",
    [FC_HUGE_PAGES_2M] = "2M",
};
static const char *const cache_type_names[_FC_CACHE_MAX] = {
    [FC_CACHE_UNSAFE] = "Unsafe",
    [FC_CACHE_WRITEBACK] = "Writeback",
};
static const char *const io_engine_names[_FC_IO_ENGINE_MAX] = {
    [FC_IO_ENGINE_SYNC] = "Sync",
    [FC_IO_ENGINE_ASYNC] = "Async",
};
static const char *const log_level_names[_FC_LOG_MAX] = {
    [FC_LOG_ERROR] = "Error", [FC_LOG_WARNING] = "Warning", [FC_LOG_INFO] = "Info",
    [FC_LOG_DEBUG] = "Debug", [FC_LOG_TRACE] = "Trace",     [FC_LOG_OFF] = "Off",
};
static const char *const action_names[_FC_ACTION_MAX] = {
    [FC_ACTION_INSTANCE_START] = "InstanceStart",
    [FC_ACTION_SEND_CTRL_ALT_DEL] = "SendCtrlAltDel",
    [FC_ACTION_FLUSH_METRICS] = "FlushMetrics",
};
static const char *const vm_target_names[_FC_VM_MAX] = {
    [FC_VM_PAUSED] = "Paused",
    [FC_VM_RESUMED] = "Resumed",
};
static const char *const snapshot_type_names[_FC_SNAPSHOT_MAX] = {
    [FC_SNAPSHOT_FULL] = "Full",
    [FC_SNAPSHOT_DIFF] = "Diff",
};
static const char *const mem_backend_names[_FC_MEM_BACKEND_MAX] = {
    [FC_MEM_BACKEND_FILE] = "File",
    [FC_MEM_BACKEND_UFFD] = "Uffd",
};
static const char *const instance_state_names[_FC_INSTANCE_MAX] = {
    [FC_INSTANCE_NOT_STARTED] = "Not started",
    [FC_INSTANCE_RUNNING] = "Running",
    [FC_INSTANCE_PAUSED] = "Paused",
};

/* names[v] when v is in range, else NULL. */
static const char *
enum_name(const char *const *names, int max, int v)
{
    return v >= 0 && v < max ? names[v] : NULL;
}

bool
fc_id_valid(const char *id)
{
    if (!id || !*id)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

static int
require_str(const char *v, const char *what, struct tp_err *err)
{
    if (!v || !*v)
        return tp_err_set(err, -EINVAL, "build %s: it is required", what);
    return 0;
}

static int
require_id(const char *id, const char *what, struct tp_err *err)
{
    if (!fc_id_valid(id))
        return tp_err_set(err, -EINVAL, "build %s: id '%s' is not letters, digits and '_'", what,
                          id ? id : "");
    return 0;
}

/* Hand a finished object out; jansson's only failure is allocation, which it reports as NULL. */
static int
body_done(json_t *j, json_t **ret_body, struct tp_err *err)
{
    if (!j)
        return tp_err_set(err, -ENOMEM, "build request body");
    *ret_body = j;
    return 0;
}

static void
set_opt_str(json_t *j, const char *key, const char *v)
{
    if (v)
        json_object_set_new(j, key, json_string(v));
}

int
fc_body_boot_source(const struct fc_boot_source *b, json_t **ret_body, struct tp_err *err)
{
    int r = require_str(b->kernel_image_path, "boot-source kernel_image_path", err);
    if (r < 0)
        return r;
    json_t *j = json_pack("{s:s}", "kernel_image_path", b->kernel_image_path);
    if (j) {
        set_opt_str(j, "boot_args", b->boot_args);
        set_opt_str(j, "initrd_path", b->initrd_path);
    }
    return body_done(j, ret_body, err);
}

int
fc_body_machine_config(const struct fc_machine_config *m, json_t **ret_body, struct tp_err *err)
{
    const char *huge = enum_name(huge_pages_names, _FC_HUGE_PAGES_MAX, m->huge_pages);

    if (m->vcpu_count < 1 || m->vcpu_count > 32)
        return tp_err_set(err, -EINVAL, "build machine-config: vcpu_count %u not in 1..32",
                          m->vcpu_count);
    if (m->smt && m->vcpu_count != 1 && m->vcpu_count % 2 != 0)
        return tp_err_set(err, -EINVAL,
                          "build machine-config: with SMT vcpu_count %u is not 1 "
                          "or even",
                          m->vcpu_count);
    if (m->mem_size_mib == 0 || m->mem_size_mib > INT64_MAX)
        return tp_err_set(err, -EINVAL, "build machine-config: mem_size_mib %llu out of range",
                          (unsigned long long)m->mem_size_mib);
    if (!huge)
        return tp_err_set(err, -EINVAL, "build machine-config: unknown huge_pages %d",
                          (int)m->huge_pages);
    if (m->huge_pages == FC_HUGE_PAGES_2M && m->mem_size_mib % 2 != 0)
        return tp_err_set(err, -EINVAL, "build machine-config: 2M pages need an even mem_size_mib");

    json_t *j = json_pack("{s:I, s:I, s:b, s:b}", "vcpu_count", (json_int_t)m->vcpu_count,
                          "mem_size_mib", (json_int_t)m->mem_size_mib, "smt", m->smt,
                          "track_dirty_pages", m->track_dirty_pages);
    if (j && m->huge_pages != FC_HUGE_PAGES_NONE)
        json_object_set_new(j, "huge_pages", json_string(huge));
    return body_done(j, ret_body, err);
}

int
fc_body_drive(const struct fc_drive *d, json_t **ret_body, struct tp_err *err)
{
    const char *cache = enum_name(cache_type_names, _FC_CACHE_MAX, d->cache_type);
    const char *engine = enum_name(io_engine_names, _FC_IO_ENGINE_MAX, d->io_engine);
    int r;

    r = require_id(d->drive_id, "drive", err);
    if (r < 0)
        return r;
    r = require_str(d->path_on_host, "drive path_on_host", err);
    if (r < 0)
        return r;
    if (!cache || !engine)
        return tp_err_set(err, -EINVAL, "build drive '%s': unknown %s", d->drive_id,
                          cache ? "io_engine" : "cache_type");
    json_t *j = json_pack("{s:s, s:s, s:b, s:b, s:s, s:s}", "drive_id", d->drive_id, "path_on_host",
                          d->path_on_host, "is_root_device", d->is_root_device, "is_read_only",
                          d->is_read_only, "cache_type", cache, "io_engine", engine);
    if (j)
        set_opt_str(j, "partuuid", d->partuuid);
    return body_done(j, ret_body, err);
}

int
fc_body_net_iface(const struct fc_net_iface *n, json_t **ret_body, struct tp_err *err)
{
    int r;

    r = require_id(n->iface_id, "network interface", err);
    if (r < 0)
        return r;
    r = require_str(n->host_dev_name, "network interface host_dev_name", err);
    if (r < 0)
        return r;
    if (n->mtu != 0 && (n->mtu < 68 || n->mtu > 65535))
        return tp_err_set(err, -EINVAL, "build network interface '%s': mtu %u not in 68..65535",
                          n->iface_id, n->mtu);
    json_t *j = json_pack("{s:s, s:s}", "iface_id", n->iface_id, "host_dev_name", n->host_dev_name);
    if (j) {
        set_opt_str(j, "guest_mac", n->guest_mac);
        if (n->mtu)
            json_object_set_new(j, "mtu", json_integer(n->mtu));
    }
    return body_done(j, ret_body, err);
}

int
fc_body_vsock(const struct fc_vsock_dev *v, json_t **ret_body, struct tp_err *err)
{
    int r = require_str(v->uds_path, "vsock uds_path", err);
    if (r < 0)
        return r;
    if (v->guest_cid < 3)
        return tp_err_set(err, -EINVAL, "build vsock: guest_cid %u is below 3", v->guest_cid);
    return body_done(
        json_pack("{s:I, s:s}", "guest_cid", (json_int_t)v->guest_cid, "uds_path", v->uds_path),
        ret_body, err);
}

int
fc_body_logger(const struct fc_logger *l, json_t **ret_body, struct tp_err *err)
{
    const char *level = enum_name(log_level_names, _FC_LOG_MAX, l->level);
    int r = require_str(l->log_path, "logger log_path", err);

    if (r < 0)
        return r;
    if (!level)
        return tp_err_set(err, -EINVAL, "build logger: unknown level %d", (int)l->level);
    return body_done(json_pack("{s:s, s:s, s:b, s:b}", "log_path", l->log_path, "level", level,
                               "show_level", l->show_level, "show_log_origin", l->show_log_origin),
                     ret_body, err);
}

int
fc_body_metrics(const char *metrics_path, json_t **ret_body, struct tp_err *err)
{
    int r = require_str(metrics_path, "metrics metrics_path", err);
    if (r < 0)
        return r;
    return body_done(json_pack("{s:s}", "metrics_path", metrics_path), ret_body, err);
}

int
fc_body_serial(const char *serial_out_path, json_t **ret_body, struct tp_err *err)
{
    int r = require_str(serial_out_path, "serial serial_out_path", err);
    if (r < 0)
        return r;
    return body_done(json_pack("{s:s}", "serial_out_path", serial_out_path), ret_body, err);
}

int
fc_body_action(enum fc_action a, json_t **ret_body, struct tp_err *err)
{
    const char *name = enum_name(action_names, _FC_ACTION_MAX, a);

    if (!name)
        return tp_err_set(err, -EINVAL, "build action: unknown action_type %d", (int)a);
    return body_done(json_pack("{s:s}", "action_type", name), ret_body, err);
}

int
fc_body_vm_state(enum fc_vm_target s, json_t **ret_body, struct tp_err *err)
{
    const char *name = enum_name(vm_target_names, _FC_VM_MAX, s);

    if (!name)
        return tp_err_set(err, -EINVAL, "build vm state: unknown state %d", (int)s);
    return body_done(json_pack("{s:s}", "state", name), ret_body, err);
}

int
fc_body_snapshot_create(const struct fc_snapshot_create *s, json_t **ret_body, struct tp_err *err)
{
    const char *type = enum_name(snapshot_type_names, _FC_SNAPSHOT_MAX, s->type);
    int r;

    r = require_str(s->snapshot_path, "snapshot create snapshot_path", err);
    if (r < 0)
        return r;
    r = require_str(s->mem_file_path, "snapshot create mem_file_path", err);
    if (r < 0)
        return r;
    if (!type)
        return tp_err_set(err, -EINVAL, "build snapshot create: unknown snapshot_type %d",
                          (int)s->type);
    return body_done(json_pack("{s:s, s:s, s:s}", "snapshot_type", type, "snapshot_path",
                               s->snapshot_path, "mem_file_path", s->mem_file_path),
                     ret_body, err);
}

int
fc_body_snapshot_load(const struct fc_snapshot_load *s, json_t **ret_body, struct tp_err *err)
{
    const char *backend = enum_name(mem_backend_names, _FC_MEM_BACKEND_MAX, s->backend);
    json_auto_t *j = NULL;
    int r;

    r = require_str(s->snapshot_path, "snapshot load snapshot_path", err);
    if (r < 0)
        return r;
    r = require_str(s->backend_path, "snapshot load mem_backend backend_path", err);
    if (r < 0)
        return r;
    if (!backend)
        return tp_err_set(err, -EINVAL, "build snapshot load: unknown backend_type %d",
                          (int)s->backend);
    if (s->vsock_uds_path && !*s->vsock_uds_path)
        return tp_err_set(err, -EINVAL, "build snapshot load: empty vsock_override uds_path");

    j = json_pack("{s:s, s:{s:s, s:s}, s:b, s:b}", "snapshot_path", s->snapshot_path, "mem_backend",
                  "backend_type", backend, "backend_path", s->backend_path, "track_dirty_pages",
                  s->track_dirty_pages, "resume_vm", s->resume_vm);
    if (!j)
        return tp_err_set(err, -ENOMEM, "build request body");
    if (s->clock_realtime)
        json_object_set_new(j, "clock_realtime", json_true());
    if (s->n_net_overrides > 0) {
        json_t *arr = json_array();
        json_object_set_new(j, "network_overrides", arr);
        for (size_t i = 0; i < s->n_net_overrides; i++) {
            const struct fc_net_override *o = &s->net_overrides[i];
            r = require_id(o->iface_id, "snapshot load network override", err);
            if (r < 0)
                return r;
            r = require_str(o->host_dev_name, "snapshot load network override host_dev_name", err);
            if (r < 0)
                return r;
            json_array_append_new(arr, json_pack("{s:s, s:s}", "iface_id", o->iface_id,
                                                 "host_dev_name", o->host_dev_name));
        }
    }
    if (s->vsock_uds_path)
        json_object_set_new(j, "vsock_override", json_pack("{s:s}", "uds_path", s->vsock_uds_path));
    return body_done(TAKE_PTR(j), ret_body, err);
}

const char *
fc_instance_state_to_string(enum fc_instance_state s)
{
    return enum_name(instance_state_names, _FC_INSTANCE_MAX, s);
}

void
fc_instance_info_clear(struct fc_instance_info *info)
{
    if (!info)
        return;
    free(info->id);
    free(info->app_name);
    free(info->vmm_version);
    *info = (struct fc_instance_info){ .state = _FC_INSTANCE_INVALID };
}

static int
load_object(const char *buf, size_t len, const char *what, json_t **ret_j, struct tp_err *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(buf, len, 0, &jerr);

    if (!j)
        return tp_err_set(err, -EPROTO, "parse %s: %s (column %d)", what, jerr.text, jerr.column);
    *ret_j = j;
    return 0;
}

/* A required string member, or -EPROTO. */
static int
get_str(const json_t *j, const char *key, const char *what, const char **ret, struct tp_err *err)
{
    const char *v = json_string_value(json_object_get(j, key));

    if (!v)
        return tp_err_set(err, -EPROTO, "parse %s: '%s' missing or not a string", what, key);
    *ret = v;
    return 0;
}

int
fc_parse_instance_info_json(const json_t *j, struct fc_instance_info *ret_info, struct tp_err *err)
{
    const char *id = NULL, *app = NULL, *version = NULL, *state = NULL;
    int s, r;

    if (!json_is_object(j))
        return tp_err_set(err, -EPROTO, "parse instance info: not a JSON object");
    if ((r = get_str(j, "id", "instance info", &id, err)) < 0 ||
        (r = get_str(j, "app_name", "instance info", &app, err)) < 0 ||
        (r = get_str(j, "vmm_version", "instance info", &version, err)) < 0 ||
        (r = get_str(j, "state", "instance info", &state, err)) < 0)
        return r;
    for (s = 0; s < _FC_INSTANCE_MAX; s++)
        if (strcmp(state, instance_state_names[s]) == 0)
            break;
    if (s == _FC_INSTANCE_MAX)
        return tp_err_set(err, -EPROTO, "parse instance info: unknown state '%s'", state);
    *ret_info = (struct fc_instance_info){
        .id = xstrdup(id),
        .app_name = xstrdup(app),
        .vmm_version = xstrdup(version),
        .state = (enum fc_instance_state)s,
    };
    return 0;
}

int
fc_parse_instance_info(const char *buf, size_t len, struct fc_instance_info *ret_info,
                       struct tp_err *err)
{
    json_auto_t *j = NULL;
    int r = load_object(buf, len, "instance info", &j, err);

    if (r < 0)
        return r;
    return fc_parse_instance_info_json(j, ret_info, err);
}

int
fc_parse_version_json(const json_t *j, char **ret_version, struct tp_err *err)
{
    const char *v = NULL;
    int r;

    if (!json_is_object(j))
        return tp_err_set(err, -EPROTO, "parse version: not a JSON object");
    r = get_str(j, "firecracker_version", "version", &v, err);
    if (r < 0)
        return r;
    if (!*v)
        return tp_err_set(err, -EPROTO, "parse version: empty firecracker_version");
    *ret_version = xstrdup(v);
    return 0;
}

int
fc_parse_version(const char *buf, size_t len, char **ret_version, struct tp_err *err)
{
    json_auto_t *j = NULL;
    int r = load_object(buf, len, "version", &j, err);

    if (r < 0)
        return r;
    return fc_parse_version_json(j, ret_version, err);
}

/* Copy at most FC_FAULT_MAX bytes of s, control characters as spaces, outer blanks trimmed. */
static char *
clean_text(const char *s, size_t n)
{
    while (n > 0 && (unsigned char)*s <= ' ') {
        s++;
        n--;
    }
    while (n > 0 && (unsigned char)s[n - 1] <= ' ')
        n--;
    n = MIN(n, (size_t)FC_FAULT_MAX);
    char *out = xstrndup(s, n);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            *p = ' ';
    return out;
}

/* fault_message, else error, from a JSON object; NULL if neither is a string. */
static char *
fault_from_json(const char *buf, size_t len)
{
    json_auto_t *j = json_loadb(buf, len, 0, NULL);
    json_t *m;

    if (!json_is_object(j))
        return NULL;
    m = json_object_get(j, "fault_message");
    if (!json_is_string(m))
        m = json_object_get(j, "error");
    if (!json_is_string(m))
        return NULL;
    return clean_text(json_string_value(m), json_string_length(m));
}

char *
fc_parse_fault(const char *buf, size_t len)
{
    _cleanup_free_ char *flat = NULL;
    char *msg;

    if (!buf || len == 0)
        return xstrdup("no error message in the reply");
    msg = fault_from_json(buf, len);
    if (msg)
        return msg;
    /* The HTTP layer's body has a raw newline inside its string; as spaces it is JSON. */
    flat = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        flat[i] = (unsigned char)buf[i] < ' ' ? ' ' : buf[i];
    msg = fault_from_json(flat, len);
    if (msg)
        return msg;
    msg = clean_text(buf, len);
    if (!*msg) {
        free(msg);
        return xstrdup("no error message in the reply");
    }
    return msg;
}
