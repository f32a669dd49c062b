/* fc-double: API semantics of Firecracker 1.16.1 on a fake guest (FIRECRACKER.md §3-§7). */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "snapfile.h"

#define NOT_AFTER  "The requested operation is not supported after starting the microVM."
#define NOT_BEFORE "The requested operation is not supported before starting the microVM."
#define DESER      "An error occurred when deserializing the json body of a request: "

#define GUEST_MAGIC        "FCDOUBLE-GUEST\n"
#define GUEST_HEADER_PAGE  0
#define GUEST_COUNTER_PAGE 1

enum gate {
    GATE_ANY,
    GATE_PRE_BOOT,  /* refused once started (also after a snapshot load) */
    GATE_POST_BOOT, /* refused before start */
};

typedef int (*handler_fn)(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                          struct fcd_err *err);

struct route {
    const char *tmpl;
    const char *method;
    enum gate gate;
    handler_fn fn;
};

void
vm_init(struct vm *vm, const struct spec *spec, const char *id)
{
    *vm = (struct vm){ .spec = spec, .state = VM_NOT_STARTED };
    snprintf(vm->id, sizeof(vm->id), "%s", id);
    vm->machine = json_pack("{s:i,s:i,s:b,s:b,s:s}", "vcpu_count", 1, "mem_size_mib", 128, "smt", 0,
                            "track_dirty_pages", 0, "huge_pages", "None");
    vm->drives = json_object();
    vm->net = json_object();
    vm->pmem = json_object();
    vm->mmds = json_object();
    vm->mem = (struct mem){ .fd = -1, .uffd = -1, .uffd_sock = -1 };
    vm->vsock.listen_fd = -1;
}

void
vm_release(struct vm *vm)
{
    json_t **all[] = { &vm->boot_source, &vm->machine,    &vm->drives,  &vm->net,
                       &vm->pmem,        &vm->vsock_cfg,  &vm->balloon, &vm->entropy,
                       &vm->mmds_config, &vm->cpu_config, &vm->hotplug, &vm->logger,
                       &vm->metrics,     &vm->serial,     &vm->mmds };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        json_decref(*all[i]);
        *all[i] = NULL;
    }
    if (vm->metrics_file)
        fclose(vm->metrics_file);
    vsock_close(&vm->vsock);
    mem_release(&vm->mem);
}

void
vm_reply_clear(struct vm_reply *reply)
{
    free(reply->body);
    reply->body = NULL;
}

static void
set_cfg(json_t **slot, json_t *value)
{
    json_decref(*slot);
    *slot = json_deep_copy(value);
}

static int
check_readable(const char *what, const char *path, struct fcd_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fcd_fail(err, -errno, "%s '%s' cannot be opened: %s (os error %d)", what, path,
                        strerror(errno), errno);
    close(fd);
    return 0;
}

static const char *
jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool
jbool(json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

/* ---- the fake guest ---- */

static void
guest_write_header(struct vm *vm)
{
    char page[MEM_PAGE] = { 0 };
    json_t *h = json_pack("{s:s,s:s,s:s?,s:s?}", "boot_id", vm->boot_id, "id", vm->id, "kernel",
                          jstr(vm->boot_source, "kernel_image_path"), "boot_args",
                          jstr(vm->boot_source, "boot_args"));
    char *text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(page, sizeof(page), "%s%s", GUEST_MAGIC, text);
    free(text);
    json_decref(h);
    mem_write(&vm->mem, GUEST_HEADER_PAGE * MEM_PAGE, page, sizeof(page));
}

void
vm_guest_tick(struct vm *vm)
{
    uint8_t buf[16];
    vm->counter++;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(vm->counter >> (8 * i));
    memcpy(buf + 8, "tick\0\0\0\0", 8);
    mem_write(&vm->mem, GUEST_COUNTER_PAGE * MEM_PAGE, buf, sizeof(buf));
}

/* What a restored guest's memory must hold: this snapshot's header and counter. */
static int
guest_verify(struct vm *vm, json_t *guest, struct fcd_err *err)
{
    char page[MEM_PAGE];
    uint8_t cnt[8];
    uint64_t want = (uint64_t)json_integer_value(json_object_get(guest, "counter")), have = 0;
    json_t *h;

    mem_read(&vm->mem, GUEST_HEADER_PAGE * MEM_PAGE, page, sizeof(page));
    page[sizeof(page) - 1] = '\0';
    if (strncmp(page, GUEST_MAGIC, strlen(GUEST_MAGIC)) != 0)
        return fcd_fail(err, -EINVAL,
                        "guest memory holds no guest (page 0 is not this VM's; "
                        "a diff-only or foreign memory file?)");
    h = json_loads(page + strlen(GUEST_MAGIC), 0, NULL);
    if (!json_equal(json_object_get(h, "boot_id"), json_object_get(guest, "boot_id"))) {
        json_decref(h);
        return fcd_fail(err, -EINVAL, "guest memory belongs to another VM (boot_id differs)");
    }
    json_decref(h);
    mem_read(&vm->mem, GUEST_COUNTER_PAGE * MEM_PAGE, cnt, sizeof(cnt));
    for (int i = 0; i < 8; i++)
        have |= (uint64_t)cnt[i] << (8 * i);
    if (have != want)
        return fcd_fail(err, -EINVAL,
                        "guest memory does not match the snapshot state: counter page holds %llu, "
                        "the state was saved at %llu (stale or unmerged memory file?)",
                        (unsigned long long)have, (unsigned long long)want);
    snprintf(vm->boot_id, sizeof(vm->boot_id), "%s", jstr(guest, "boot_id"));
    vm->counter = want;
    return 0;
}

static void
new_boot_id(struct vm *vm)
{
    unsigned char raw[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof(raw)) != (ssize_t)sizeof(raw))
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (unsigned char)(rand() ^ (int)getpid());
    if (fd >= 0)
        close(fd);
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(vm->boot_id + 2 * i, 3, "%02x", raw[i]);
}

/* ---- pre-boot configuration ---- */

static int
h_boot_source(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    if (check_readable("The kernel file", jstr(body, "kernel_image_path"), err) < 0)
        return -EINVAL;
    if (jstr(body, "initrd_path") &&
        check_readable("The initrd file", jstr(body, "initrd_path"), err) < 0)
        return -EINVAL;
    set_cfg(&vm->boot_source, body);
    vm->boot_path = true;
    return 0;
}

static int
machine_check(json_t *m, struct fcd_err *err)
{
    json_int_t vcpus = json_integer_value(json_object_get(m, "vcpu_count"));
    json_int_t mib = json_integer_value(json_object_get(m, "mem_size_mib"));
    if (jbool(m, "smt") && vcpus > 1 && vcpus % 2)
        return fcd_fail(err, -EINVAL,
                        "The vCPU number is invalid! The vCPU number can only be 1 "
                        "or an even number when SMT is enabled.");
    if (mib == 0)
        return fcd_fail(err, -EINVAL, "The memory size (MiB) is invalid.");
    if (mib > 64 * 1024)
        return fcd_fail(err, -EINVAL,
                        "The memory size (MiB) is invalid (the double stops at "
                        "64 GiB).");
    if (jstr(m, "huge_pages") && strcmp(jstr(m, "huge_pages"), "2M") == 0 && mib % 2)
        return fcd_fail(err, -EINVAL,
                        "The memory size (MiB) is invalid: 2M huge pages need an "
                        "even size.");
    return 0;
}

static int
h_machine_put(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    /* PUT resets what it omits. */
    json_t *m = json_pack("{s:b,s:b,s:s}", "smt", 0, "track_dirty_pages", 0, "huge_pages", "None");
    json_object_update(m, body);
    if (machine_check(m, err) < 0) {
        json_decref(m);
        return -EINVAL;
    }
    json_decref(vm->machine);
    vm->machine = m;
    vm->boot_path = true;
    return 0;
}

static int
h_machine_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                struct fcd_err *err)
{
    json_t *m = json_deep_copy(vm->machine);
    json_object_update(m, body);
    if (machine_check(m, err) < 0) {
        json_decref(m);
        return -EINVAL;
    }
    json_decref(vm->machine);
    vm->machine = m;
    vm->boot_path = true;
    return 0;
}

static int
h_machine_get(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    rep->body = json_dumps(vm->machine, JSON_COMPACT);
    return 0;
}

static int
id_check(const char *what, const char *param, json_t *body, const char *key, struct fcd_err *err)
{
    for (const char *p = param; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return fcd_fail(err, -EINVAL,
                            "Invalid %s ID: '%s' must contain only alphanumeric "
                            "characters and underscores.",
                            what, param);
    if (body && strcmp(jstr(body, key), param) != 0)
        return fcd_fail(err, -EINVAL, "The id from the path does not match the id from the body!");
    return 0;
}

static int
h_drive_put(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
            struct fcd_err *err)
{
    const char *id, *key;
    json_t *d;

    if (id_check("drive", param, body, "drive_id", err) < 0)
        return -EINVAL;
    if (jstr(body, "socket") && jstr(body, "path_on_host"))
        return fcd_fail(err, -EINVAL,
                        "Unable to create the block device: path_on_host and "
                        "socket are mutually exclusive");
    if (!jstr(body, "socket")) {
        if (!jstr(body, "path_on_host") || !json_object_get(body, "is_read_only"))
            return fcd_fail(err, -EINVAL,
                            "Unable to create the block device: a virtio-block "
                            "drive needs path_on_host and is_read_only");
        if (check_readable("Unable to create the block device: the file",
                           jstr(body, "path_on_host"), err) < 0)
            return -EINVAL;
    }
    if (jbool(body, "is_root_device")) {
        json_object_foreach(vm->drives, key, d)
        {
            if (strcmp(key, param) != 0 && jbool(d, "is_root_device"))
                return fcd_fail(err, -EINVAL, "A root block device already exists!");
        }
    }
    id = param;
    json_object_set_new(vm->drives, id, json_deep_copy(body));
    vm->boot_path = true;
    return 0;
}

static int
h_drive_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    json_t *d = json_object_get(vm->drives, param);
    if (id_check("drive", param, body, "drive_id", err) < 0)
        return -EINVAL;
    if (!d)
        return fcd_fail(err, -EINVAL,
                        "Unable to patch the block device: drive ID '%s' not "
                        "found.",
                        param);
    if (jstr(body, "path_on_host") && check_readable("Unable to patch the block device: the file",
                                                     jstr(body, "path_on_host"), err) < 0)
        return -EINVAL;
    json_object_update(d, body);
    return 0;
}

static bool
mac_valid(const char *mac)
{
    unsigned v[6];
    char tail;
    return strlen(mac) == 17 && sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
                                       &v[4], &v[5], &tail) == 6;
}

static int
h_net_put(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep, struct fcd_err *err)
{
    const char *key;
    json_t *n;

    if (id_check("network interface", param, body, "iface_id", err) < 0)
        return -EINVAL;
    if (jstr(body, "guest_mac") && !mac_valid(jstr(body, "guest_mac")))
        return fcd_fail(err, -EINVAL, DESER "invalid MAC address '%s'", jstr(body, "guest_mac"));
    json_object_foreach(vm->net, key, n)
    {
        if (strcmp(key, param) == 0)
            continue;
        if (strcmp(jstr(n, "host_dev_name"), jstr(body, "host_dev_name")) == 0)
            return fcd_fail(err, -EINVAL, "The host device name '%s' is already in use.",
                            jstr(body, "host_dev_name"));
        if (jstr(n, "guest_mac") && jstr(body, "guest_mac") &&
            strcasecmp(jstr(n, "guest_mac"), jstr(body, "guest_mac")) == 0)
            return fcd_fail(err, -EINVAL, "The MAC address '%s' is already in use.",
                            jstr(body, "guest_mac"));
    }
    json_object_set_new(vm->net, param, json_deep_copy(body));
    vm->boot_path = true;
    return 0;
}

static int
h_net_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
            struct fcd_err *err)
{
    if (id_check("network interface", param, body, "iface_id", err) < 0)
        return -EINVAL;
    if (!json_object_get(vm->net, param))
        return fcd_fail(err, -EINVAL, "Unknown Network Device: '%s'", param);
    json_object_update(json_object_get(vm->net, param), body);
    return 0;
}

static int
h_pmem_put(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
           struct fcd_err *err)
{
    if (id_check("pmem", param, body, "id", err) < 0 ||
        check_readable("The pmem backing file", jstr(body, "path_on_host"), err) < 0)
        return -EINVAL;
    json_object_set_new(vm->pmem, param, json_deep_copy(body));
    vm->boot_path = true;
    return 0;
}

static int
h_pmem_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
             struct fcd_err *err)
{
    if (id_check("pmem", param, body, "id", err) < 0)
        return -EINVAL;
    if (!json_object_get(vm->pmem, param))
        return fcd_fail(err, -EINVAL, "Unknown pmem device: '%s'", param);
    json_object_update(json_object_get(vm->pmem, param), body);
    return 0;
}

static int
h_vsock_put(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
            struct fcd_err *err)
{
    struct vsock_dev fresh = { .listen_fd = -1,
                               .agent_path = vm->vsock.agent_path,
                               .agent_port = vm->vsock.agent_port };
    /* The UDS is bound now, so the path must not exist. */
    if (vsock_open(&fresh, jstr(body, "uds_path"),
                   (uint32_t)json_integer_value(json_object_get(body, "guest_cid")), err) < 0)
        return -EINVAL;
    vsock_close(&vm->vsock);
    vm->vsock = fresh;
    set_cfg(&vm->vsock_cfg, body);
    vm->boot_path = true;
    return 0;
}

static int
h_logger(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep, struct fcd_err *err)
{
    const char *level = jstr(body, "level");
    if (jstr(body, "log_path") &&
        fcd_log_open(jstr(body, "log_path"), level ? level : "Info", jbool(body, "show_level"),
                     jbool(body, "show_log_origin")) < 0)
        return fcd_fail(err, -EINVAL, "Logger error: cannot open '%s': %s", jstr(body, "log_path"),
                        strerror(errno));
    set_cfg(&vm->logger, body);
    return 0;
}

static int
h_metrics(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep, struct fcd_err *err)
{
    if (vm->metrics)
        return fcd_fail(err, -EINVAL, "Reinitialization of metrics not allowed.");
    vm->metrics_file = fopen(jstr(body, "metrics_path"), "ae");
    if (!vm->metrics_file)
        return fcd_fail(err, -EINVAL, "Cannot initialize the metrics system: '%s': %s",
                        jstr(body, "metrics_path"), strerror(errno));
    set_cfg(&vm->metrics, body);
    return 0;
}

static int
h_serial(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep, struct fcd_err *err)
{
    const char *path = jstr(body, "serial_out_path");
    if (path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return fcd_fail(err, -EINVAL, "Cannot open the serial output '%s': %s", path,
                            strerror(errno));
        fflush(stdout);
        dup2(fd, STDOUT_FILENO);
        close(fd);
    }
    set_cfg(&vm->serial, body);
    return 0;
}

static int
h_boot_resource(json_t **slot, struct vm *vm, json_t *body)
{
    set_cfg(slot, body);
    vm->boot_path = true;
    return 0;
}

static int
h_balloon_put(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    return h_boot_resource(&vm->balloon, vm, body);
}

static int
h_entropy(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep, struct fcd_err *err)
{
    return h_boot_resource(&vm->entropy, vm, body);
}

static int
h_cpu_config(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
             struct fcd_err *err)
{
    /* Tolerated before a snapshot load: not a boot-specific resource. */
    set_cfg(&vm->cpu_config, body);
    return 0;
}

static int
h_hotplug_put(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    return h_boot_resource(&vm->hotplug, vm, body);
}

static int
h_mmds_config(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    size_t i;
    json_t *id;
    json_t *ifs = json_object_get(body, "network_interfaces");
    if (json_array_size(ifs) == 0)
        return fcd_fail(err, -EINVAL,
                        "The list of network interface IDs that allow forwarding "
                        "MMDS requests is empty.");
    json_array_foreach(ifs, i, id)
    {
        if (!json_object_get(vm->net, json_string_value(id)))
            return fcd_fail(err, -EINVAL,
                            "The list of network interface IDs provided contains "
                            "at least one ID that does not correspond to any "
                            "existing network interface: '%s'.",
                            json_string_value(id));
    }
    return h_boot_resource(&vm->mmds_config, vm, body);
}

/* ---- always allowed ---- */

static int
h_mmds_put(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
           struct fcd_err *err)
{
    set_cfg(&vm->mmds, body);
    return 0;
}

/* RFC 7396 merge patch. */
static void
merge_patch(json_t *target, json_t *patch)
{
    const char *key;
    json_t *v;
    json_object_foreach(patch, key, v)
    {
        json_t *t = json_object_get(target, key);
        if (json_is_null(v))
            json_object_del(target, key);
        else if (json_is_object(v) && json_is_object(t))
            merge_patch(t, v);
        else
            json_object_set_new(target, key, json_deep_copy(v));
    }
}

static int
h_mmds_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
             struct fcd_err *err)
{
    merge_patch(vm->mmds, body);
    return 0;
}

static int
h_mmds_get(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
           struct fcd_err *err)
{
    rep->body = json_dumps(vm->mmds, JSON_COMPACT | JSON_ENCODE_ANY);
    return 0;
}

static const char *
state_name(enum vm_state s)
{
    return s == VM_RUNNING ? "Running" : s == VM_PAUSED ? "Paused" : "Not started";
}

static int
h_describe(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
           struct fcd_err *err)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "id", vm->id, "state", state_name(vm->state),
                          "vmm_version", FCD_VERSION, "app_name", FCD_APP_NAME);
    rep->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return 0;
}

static int
h_version(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep, struct fcd_err *err)
{
    json_t *o = json_pack("{s:s}", "firecracker_version", FCD_VERSION);
    rep->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return 0;
}

static json_t *
values_of(json_t *obj)
{
    json_t *arr = json_array(), *v;
    const char *key;
    json_object_foreach(obj, key, v)
    {
        json_array_append(arr, v);
    }
    return arr;
}

/* The configuration as GET /vm/config shows it (FullVmConfiguration); also what a snapshot's
 * state file records (minus logger, metrics and serial, which snapshots do not keep). */
static json_t *
vm_config(struct vm *vm, bool for_snapshot)
{
    json_t *o = json_object();
    json_object_set_new(o, "drives", values_of(vm->drives));
    json_object_set_new(o, "network-interfaces", values_of(vm->net));
    json_object_set_new(o, "pmem", values_of(vm->pmem));
    json_object_set(o, "machine-config", vm->machine);
    struct {
        const char *key;
        json_t *v;
        bool saved;
    } opt[] = {
        { "boot-source", vm->boot_source, true }, { "vsock", vm->vsock_cfg, true },
        { "balloon", vm->balloon, true },         { "entropy", vm->entropy, true },
        { "mmds-config", vm->mmds_config, true }, { "cpu-config", vm->cpu_config, true },
        { "memory-hotplug", vm->hotplug, true },  { "logger", vm->logger, false },
        { "metrics", vm->metrics, false },
    };
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        if (opt[i].v && (opt[i].saved || !for_snapshot))
            json_object_set(o, opt[i].key, opt[i].v);
    return o;
}

static int
h_vm_config(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
            struct fcd_err *err)
{
    json_t *o = vm_config(vm, false);
    rep->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return 0;
}

static int
h_balloon_get(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    if (!vm->balloon)
        return fcd_fail(err, -EINVAL, "Balloon device not configured.");
    rep->body = json_dumps(vm->balloon, JSON_COMPACT);
    return 0;
}

/* ---- post-boot ---- */

static int
h_balloon_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                struct fcd_err *err)
{
    if (!vm->balloon)
        return fcd_fail(err, -EINVAL, "Balloon device not configured.");
    json_object_update(vm->balloon, body);
    return 0;
}

static int
h_balloon_stats_get(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                    struct fcd_err *err)
{
    json_int_t mib;
    if (!vm->balloon)
        return fcd_fail(err, -EINVAL, "Balloon device not configured.");
    if (json_integer_value(json_object_get(vm->balloon, "stats_polling_interval_s")) == 0)
        return fcd_fail(err, -EINVAL, "Statistics for the balloon device are not enabled");
    mib = json_integer_value(json_object_get(vm->balloon, "amount_mib"));
    json_t *o = json_pack("{s:I,s:I,s:I,s:I}", "target_pages", mib * 256, "actual_pages", mib * 256,
                          "target_mib", mib, "actual_mib", mib);
    rep->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return 0;
}

static int
h_balloon_stats_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                      struct fcd_err *err)
{
    if (!vm->balloon)
        return fcd_fail(err, -EINVAL, "Balloon device not configured.");
    if (json_integer_value(json_object_get(vm->balloon, "stats_polling_interval_s")) == 0)
        return fcd_fail(err, -EINVAL, "Cannot enable or disable statistics after boot.");
    json_object_update(vm->balloon, body);
    return 0;
}

static int
h_balloon_hinting(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                  struct fcd_err *err)
{
    if (!vm->balloon || !jbool(vm->balloon, "free_page_hinting"))
        return fcd_fail(err, -EINVAL, "Free page hinting is not enabled on the balloon device.");
    return 0;
}

static int
h_balloon_hinting_status(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                         struct fcd_err *err)
{
    if (h_balloon_hinting(vm, param, body, rep, err) < 0)
        return -EINVAL;
    rep->body = strdup("{\"host_cmd\":0,\"guest_cmd\":0}");
    return 0;
}

static int
h_hotplug_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                struct fcd_err *err)
{
    if (!vm->hotplug)
        return fcd_fail(err, -EINVAL, "Memory hotplug device not configured.");
    json_object_update(vm->hotplug, body);
    return 0;
}

static int
h_hotplug_get(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
              struct fcd_err *err)
{
    if (!vm->hotplug)
        return fcd_fail(err, -EINVAL, "Memory hotplug device not configured.");
    rep->body = json_dumps(vm->hotplug, JSON_COMPACT);
    return 0;
}

static int
instance_start(struct vm *vm, struct fcd_err *err)
{
    const char *kernel = jstr(vm->boot_source, "kernel_image_path");
    char magic[4] = { 0 };
    size_t mib = (size_t)json_integer_value(json_object_get(vm->machine, "mem_size_mib"));
    int fd;

    if (vm->state != VM_NOT_STARTED)
        return fcd_fail(err, -EINVAL, NOT_AFTER);
    if (!kernel)
        return fcd_fail(err, -EINVAL,
                        "Start microvm error: Cannot start microvm without "
                        "kernel configuration.");
    /* x86_64 1.16.1 boots an uncompressed ELF vmlinux only (bzImage is main/1.17). */
    fd = open(kernel, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, magic, 4) != 4 || memcmp(magic, "\177ELF", 4) != 0) {
        if (fd >= 0)
            close(fd);
        return fcd_fail(err, -EINVAL,
                        "Start microvm error: Cannot load kernel due to invalid "
                        "memory configuration or invalid kernel image: Kernel "
                        "Loader: failed to load ELF kernel image ('%s')",
                        kernel);
    }
    close(fd);
    if (mem_boot(&vm->mem, mib << 20, err) < 0)
        return fcd_wrap(err, -EINVAL, "Start microvm error");
    vm->track_dirty = jbool(vm->machine, "track_dirty_pages");
    new_boot_id(vm);
    guest_write_header(vm);
    vm->state = VM_RUNNING;
    vm_guest_tick(vm);
    fcd_console("[    0.000000] Linux version fc-double (torpor Firecracker double) #1 SMP");
    fcd_console("[    0.000000] Command line: %s", jstr(vm->boot_source, "boot_args")
                                                       ? jstr(vm->boot_source, "boot_args")
                                                       : "reboot=k panic=1 nomodule");
    fcd_console("[    0.010000] fc-double: guest %s up, %zu MiB, boot_id %s", vm->id, mib,
                vm->boot_id);
    fcd_log("Info", "Successfully started microvm that was configured from one single json");
    return 0;
}

static int
h_actions(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep, struct fcd_err *err)
{
    const char *action = jstr(body, "action_type");

    if (strcmp(action, "InstanceStart") == 0)
        return instance_start(vm, err);
    if (vm->state == VM_NOT_STARTED)
        return fcd_fail(err, -EINVAL, NOT_BEFORE);
    if (strcmp(action, "SendCtrlAltDel") == 0) {
        /* 204 means the keys were queued; the guest reboots (and the VMM exits 0) once it runs. */
        if (!vm->ignore_ctrlaltdel)
            vm->reboot_pending = true;
        return 0;
    }
    /* FlushMetrics */
    if (vm->metrics_file) {
        fprintf(vm->metrics_file, "{\"utc_timestamp_ms\":%lld,\"vmm\":{\"panic_count\":0}}\n",
                (long long)time(NULL) * 1000);
        fflush(vm->metrics_file);
    }
    return 0;
}

static int
h_vm_patch(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
           struct fcd_err *err)
{
    bool pause = strcmp(jstr(body, "state"), "Paused") == 0;
    if (pause) {
        vm->state = VM_PAUSED;
        return 0;
    }
    if (vm->state == VM_PAUSED) {
        vm->state = VM_RUNNING;
        /* Connections open at snapshot time die when the guest runs again. */
        vsock_apply_reset(&vm->vsock);
        /* The guest runs at once: a resumed guest always writes its counter page. */
        vm_guest_tick(vm);
    }
    return 0;
}

static int
h_snapshot_create(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                  struct fcd_err *err)
{
    const char *type = jstr(body, "snapshot_type");
    bool diff = type && strcmp(type, "Diff") == 0;
    json_t *state;
    int r;

    if (vm->state != VM_PAUSED)
        return fcd_fail(err, -EINVAL,
                        "Create snapshot error: Cannot save the microVM state: "
                        "save/restore unavailable while running");
    if (diff && !vm->track_dirty)
        return fcd_fail(err, -EINVAL,
                        "Create snapshot error: Diff snapshots need dirty page "
                        "tracking: enable track_dirty_pages in /machine-config "
                        "or on /snapshot/load (the double refuses the mincore "
                        "fallback of 1.13+)");
    state =
        json_pack("{s:s,s:s,s:s,s:o,s:{s:I,s:i},s:{s:s,s:I}}", "vmm_version", FCD_VERSION, "id",
                  vm->id, "snapshot_type", diff ? "Diff" : "Full", "config", vm_config(vm, true),
                  "memory", "size", (json_int_t)vm->mem.size, "page_size", (int)MEM_PAGE, "guest",
                  "boot_id", vm->boot_id, "counter", (json_int_t)vm->counter);
    r = mem_write_snapshot(&vm->mem, jstr(body, "mem_file_path"), diff, err);
    if (r == 0)
        r = snapfile_write(jstr(body, "snapshot_path"), state, err);
    json_decref(state);
    if (r < 0)
        return fcd_wrap(err, r, "Create snapshot error");
    fcd_log("Info", "%s snapshot: %zu dirty pages written", diff ? "Diff" : "Full",
            diff ? mem_dirty_count(&vm->mem) : vm->mem.npages);
    mem_clear_dirty(&vm->mem);
    vsock_mark_reset(&vm->vsock);
    return 0;
}

static int
snapshot_load(struct vm *vm, json_t *body, struct vm_reply *rep, struct fcd_err *err)
{
    json_t *backend = json_object_get(body, "mem_backend");
    const char *mem_file = jstr(body, "mem_file_path");
    json_t *state = NULL, *cfg, *ovr, *o;
    const char *btype, *bpath, *uds;
    size_t i, size;
    int r = -EINVAL;

    rep->deprecation = mem_file || json_object_get(body, "enable_diff_snapshots");
    btype = backend ? jstr(backend, "backend_type") : "File";
    bpath = backend ? jstr(backend, "backend_path") : mem_file;

    if (snapfile_read(jstr(body, "snapshot_path"), &state, err) < 0)
        return -EINVAL;
    cfg = json_object_get(state, "config");
    size = (size_t)json_integer_value(json_object_get(json_object_get(state, "memory"), "size"));
    if (!json_is_object(cfg) || size == 0 || size % MEM_PAGE) {
        r = fcd_fail(err, -EINVAL, "Invalid snapshot state: no configuration or memory size");
        goto out;
    }
    set_cfg(&vm->boot_source, json_object_get(cfg, "boot-source"));
    set_cfg(&vm->machine, json_object_get(cfg, "machine-config"));
    json_array_foreach(json_object_get(cfg, "drives"), i, o)
    {
        /* Disks are not in the snapshot: the files must be where the state says. */
        if (jstr(o, "path_on_host") &&
            check_readable("Block device backing file", jstr(o, "path_on_host"), err) < 0)
            goto out;
        json_object_set(vm->drives, jstr(o, "drive_id"), o);
    }
    json_array_foreach(json_object_get(cfg, "network-interfaces"), i, o)
        json_object_set_new(vm->net, jstr(o, "iface_id"), json_deep_copy(o));
    json_array_foreach(json_object_get(body, "network_overrides"), i, ovr)
    {
        json_t *n = json_object_get(vm->net, jstr(ovr, "iface_id"));
        if (!n) {
            r = fcd_fail(err, -EINVAL, "Unknown Network Device: '%s' is not in the snapshot",
                         jstr(ovr, "iface_id"));
            goto out;
        }
        json_object_set(n, "host_dev_name", json_object_get(ovr, "host_dev_name"));
    }
    json_array_foreach(json_object_get(cfg, "pmem"), i, o)
        json_object_set(vm->pmem, jstr(o, "id"), o);
    set_cfg(&vm->balloon, json_object_get(cfg, "balloon"));
    set_cfg(&vm->entropy, json_object_get(cfg, "entropy"));
    set_cfg(&vm->mmds_config, json_object_get(cfg, "mmds-config"));
    set_cfg(&vm->hotplug, json_object_get(cfg, "memory-hotplug"));
    set_cfg(&vm->vsock_cfg, json_object_get(cfg, "vsock"));
    ovr = json_object_get(body, "vsock_override");
    if (ovr && !vm->vsock_cfg) {
        r = fcd_fail(err, -EINVAL, "vsock_override given but the snapshot has no vsock device");
        goto out;
    }
    if (vm->vsock_cfg) {
        /* A new reference first: setting the key frees the old string. */
        json_t *path = json_incref(json_object_get(ovr ? ovr : vm->vsock_cfg, "uds_path"));
        json_object_set_new(vm->vsock_cfg, "uds_path", path);
        uds = json_string_value(path);
        if (vsock_open(&vm->vsock, uds,
                       (uint32_t)json_integer_value(json_object_get(vm->vsock_cfg, "guest_cid")),
                       err) < 0)
            goto out;
    }
    if (strcmp(btype, "Uffd") == 0)
        r = mem_load_uffd(&vm->mem, bpath, size, err);
    else
        r = mem_load_file(&vm->mem, bpath, size, err);
    if (r < 0)
        goto out;
    /* Restoring devices touches guest memory: with Uffd these faults wait for the handler. */
    r = guest_verify(vm, json_object_get(state, "guest"), err);
    if (r < 0)
        goto out;
    mem_clear_dirty(&vm->mem);
    vm->track_dirty = jbool(body, "track_dirty_pages") || jbool(body, "enable_diff_snapshots");
    json_object_set_new(vm->machine, "track_dirty_pages", json_boolean(vm->track_dirty));
    vm->restored = true;
    vm->state = VM_PAUSED;
    if (jbool(body, "resume_vm")) {
        vm->state = VM_RUNNING;
        vm_guest_tick(vm);
    }
    fcd_console("[%8.6f] fc-double: guest %s restored (%s backend)", 0.0, vm->id, btype);
    r = 0;
out:
    json_decref(state);
    return r;
}

static int
h_snapshot_load(struct vm *vm, const char *param, json_t *body, struct vm_reply *rep,
                struct fcd_err *err)
{
    if (vm->state != VM_NOT_STARTED)
        return fcd_fail(err, -EINVAL, NOT_AFTER);
    if (vm->boot_path)
        return fcd_fail(err, -EINVAL,
                        "Load snapshot error: Loading a microVM snapshot not "
                        "allowed after configuring boot-specific resources.");
    /* Checked while parsing the request, before any restore work: not fatal. */
    if (json_object_get(body, "mem_backend") && json_object_get(body, "mem_file_path"))
        return fcd_fail(err, -EINVAL,
                        DESER "too many fields: mem_backend and mem_file_path "
                              "are mutually exclusive");
    if (!json_object_get(body, "mem_backend") && !json_object_get(body, "mem_file_path"))
        return fcd_fail(err, -EINVAL,
                        DESER "missing field: either `mem_backend` or "
                              "`mem_file_path` is required");
    if (snapshot_load(vm, body, rep, err) < 0) {
        /* Firecracker considers itself tainted after a failed load and exits. */
        rep->fatal = true;
        return fcd_wrap(err, -EINVAL, "Load snapshot error");
    }
    return 0;
}

static const struct route routes[] = {
    { "/", "get", GATE_ANY, h_describe },
    { "/version", "get", GATE_ANY, h_version },
    { "/vm/config", "get", GATE_ANY, h_vm_config },
    { "/machine-config", "get", GATE_ANY, h_machine_get },
    { "/machine-config", "put", GATE_PRE_BOOT, h_machine_put },
    { "/machine-config", "patch", GATE_PRE_BOOT, h_machine_patch },
    { "/boot-source", "put", GATE_PRE_BOOT, h_boot_source },
    { "/drives/{drive_id}", "put", GATE_PRE_BOOT, h_drive_put },
    { "/drives/{drive_id}", "patch", GATE_POST_BOOT, h_drive_patch },
    { "/network-interfaces/{iface_id}", "put", GATE_PRE_BOOT, h_net_put },
    { "/network-interfaces/{iface_id}", "patch", GATE_POST_BOOT, h_net_patch },
    { "/pmem/{id}", "put", GATE_PRE_BOOT, h_pmem_put },
    { "/pmem/{id}", "patch", GATE_POST_BOOT, h_pmem_patch },
    { "/vsock", "put", GATE_PRE_BOOT, h_vsock_put },
    { "/logger", "put", GATE_PRE_BOOT, h_logger },
    { "/metrics", "put", GATE_PRE_BOOT, h_metrics },
    { "/serial", "put", GATE_PRE_BOOT, h_serial },
    { "/balloon", "put", GATE_PRE_BOOT, h_balloon_put },
    { "/balloon", "get", GATE_ANY, h_balloon_get },
    { "/balloon", "patch", GATE_POST_BOOT, h_balloon_patch },
    { "/balloon/statistics", "get", GATE_POST_BOOT, h_balloon_stats_get },
    { "/balloon/statistics", "patch", GATE_POST_BOOT, h_balloon_stats_patch },
    { "/balloon/hinting/start", "patch", GATE_POST_BOOT, h_balloon_hinting },
    { "/balloon/hinting/stop", "patch", GATE_POST_BOOT, h_balloon_hinting },
    { "/balloon/hinting/status", "get", GATE_POST_BOOT, h_balloon_hinting_status },
    { "/entropy", "put", GATE_PRE_BOOT, h_entropy },
    { "/cpu-config", "put", GATE_PRE_BOOT, h_cpu_config },
    { "/mmds/config", "put", GATE_PRE_BOOT, h_mmds_config },
    { "/mmds", "put", GATE_ANY, h_mmds_put },
    { "/mmds", "patch", GATE_ANY, h_mmds_patch },
    { "/mmds", "get", GATE_ANY, h_mmds_get },
    { "/hotplug/memory", "put", GATE_PRE_BOOT, h_hotplug_put },
    { "/hotplug/memory", "patch", GATE_POST_BOOT, h_hotplug_patch },
    { "/hotplug/memory", "get", GATE_POST_BOOT, h_hotplug_get },
    { "/actions", "put", GATE_ANY, h_actions },
    { "/vm", "patch", GATE_POST_BOOT, h_vm_patch },
    { "/snapshot/create", "put", GATE_POST_BOOT, h_snapshot_create },
    { "/snapshot/load", "put", GATE_ANY, h_snapshot_load },
};

void
vm_api_call(struct vm *vm, const char *method, const char *path, const char *body, size_t body_len,
            struct vm_reply *rep)
{
    struct fcd_err err = { { 0 } };
    struct spec_op op;
    const struct route *rt = NULL;
    json_t *json = NULL;
    json_error_t jerr;

    *rep = (struct vm_reply){ .status = 204 };
    fcd_log("Info", "The API server received a %s request on \"%s\".", method, path);
    if (spec_find_op(vm->spec, method, path, &op) < 0) {
        fcd_fail(&err, -EINVAL, "Invalid request method and/or path: %s %s.", method, path);
        goto fail;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(routes[i].tmpl, op.tmpl) == 0 && strcmp(routes[i].method, op.method) == 0)
            rt = &routes[i];
    if (!rt) {
        fcd_fail(&err, -EINVAL, "Invalid request method and/or path: %s %s.", method, path);
        goto fail;
    }
    if (strcmp(op.method, "get") == 0 && body_len > 0) {
        fcd_fail(&err, -EINVAL, "GET request cannot have a body.");
        goto fail;
    }
    if (op.body_schema && body_len == 0 && op.body_required) {
        fcd_fail(&err, -EINVAL, "Empty %s request.",
                 strcmp(op.method, "put") == 0 ? "PUT" : "PATCH");
        goto fail;
    }
    if (!op.body_schema && body_len > 0) {
        fcd_fail(&err, -EINVAL, "%s %s does not take a body.", method, path);
        goto fail;
    }
    if (body_len > 0) {
        json = json_loadb(body, body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (!json) {
            fcd_fail(&err, -EINVAL, DESER "%s at line %d column %d", jerr.text, jerr.line,
                     jerr.column);
            goto fail;
        }
        if (spec_validate(vm->spec, op.body_schema, json, &err) < 0) {
            char inner[sizeof(err.msg)];
            memcpy(inner, err.msg, sizeof(inner));
            fcd_fail(&err, -EINVAL, DESER "%s", inner);
            goto fail;
        }
    }
    if (rt->gate == GATE_PRE_BOOT && vm->state != VM_NOT_STARTED) {
        fcd_fail(&err, -EINVAL, NOT_AFTER);
        goto fail;
    }
    if (rt->gate == GATE_POST_BOOT && vm->state == VM_NOT_STARTED) {
        fcd_fail(&err, -EINVAL, NOT_BEFORE);
        goto fail;
    }
    if (rt->fn(vm, op.param, json, rep, &err) < 0)
        goto fail;
    if (rep->body)
        rep->status = 200;
    json_decref(json);
    return;
fail:
    json_decref(json);
    free(rep->body);
    rep->body = NULL;
    rep->status = 400;
    {
        json_t *o = json_pack("{s:s}", "fault_message", err.msg);
        rep->body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    fcd_log("Error", "%s %s: %s", method, path, err.msg);
}
