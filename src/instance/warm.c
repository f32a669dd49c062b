/* Warm `run`: the first boot of a key is frozen into a fork template (its VMM restarted on it
 * copy-on-write); later runs of the key fork from it and get their own identity. Kept templates
 * are DATA/warm/<key id>.json entries naming DATA/templates/<tid>/ (state, memory, manifest and
 * a copy of the root disk as it was at the freeze). */
#include "instance/warm.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "instance/manager-internal.h"
#include "snapshot/snapshot.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define WARM_ENTRY_VERSION 1
#define WARM_ENTRY_MAX     (64 * 1024)

static void
closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static char *
warm_dir(struct inst_manager *m)
{
    return fs_path_join(m->data_dir, "warm");
}

static char *
entry_path(struct inst_manager *m, const char *kid)
{
    _cleanup_free_ char *dir = warm_dir(m);
    return xasprintf("%s/%s.json", dir, kid);
}

/* A file's identity: a changed file (rewritten, replaced) gets another. Images torpor builds
 * are cached under their content's hash, so for them the path alone names the content. */
static char *
file_stamp(const char *path)
{
    struct stat st;
    if (!path)
        return xstrdup("-");
    if (stat(path, &st) < 0)
        return xasprintf("%s missing", path);
    return xasprintf("%s %ju:%ju:%jd:%jd.%09ld", path, (uintmax_t)st.st_dev, (uintmax_t)st.st_ino,
                     (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

/* The kernel command line without what each instance has of its own (name, address). */
static char *
shared_cmdline(struct inst_manager *m, const struct inst_record *rec)
{
    struct inst probe = { .rec = (struct inst_record *)rec, .m = m };
    _cleanup_free_ char *full = NULL;
    char *out = xstrdup(""), *save = NULL;

    if (inst_cmdline(&probe, &full, NULL) < 0)
        return out;
    for (char *w = strtok_r(full, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (strncmp(w, "torpor.hostname=", 16) == 0 || strncmp(w, "torpor.net=", 11) == 0 ||
            strncmp(w, "torpor.machine_id=", 18) == 0)
            continue;
        char *t = xasprintf("%s%s%s", out, *out ? " " : "", w);
        free(out);
        out = t;
    }
    return out;
}

char *
warm_key(struct inst_manager *m, const struct inst_record *rec, bool want_net)
{
    const struct inst_config *c = &rec->cfg;
    const struct hv_driver *drv = hv_driver_find(c->hypervisor);

    /* A command at boot (run -- CMD, an image's workload) would be part of the template. */
    if (!c->agent || (c->cmd && c->cmd[0]) || c->image || !drv)
        return NULL;
    /* Kept as a fork template: the driver must be able to make one of a running VM. */
    if (!hv_has_cap(drv, HV_CAP_FORK) || !hv_has_cap(drv, HV_CAP_SNAPSHOT) ||
        !hv_has_cap(drv, HV_CAP_RESTORE) || !hv_has_cap(drv, HV_CAP_PAUSE) ||
        !hv_has_cap(drv, HV_CAP_EXEC_AGENT))
        return NULL;
    const char *vmm = hv_version(drv, NULL);
    _cleanup_free_ char *kernel = file_stamp(c->kernel);
    _cleanup_free_ char *initrd = file_stamp(c->initrd);
    _cleanup_free_ char *disk = file_stamp(c->root_disk_src);
    _cleanup_free_ char *agent = file_stamp(m->agent_path);
    _cleanup_free_ char *cmdline = shared_cmdline(m, rec);
    char subnet[40] = "-";
    if (want_net)
        net_subnet_format(&m->subnet, subnet, sizeof(subnet));
    return xasprintf("v%d\nhypervisor=%s\nvmm=%s\naccel=%s\nmemory_mib=%" PRIu32 "\nvcpus=%" PRIu32
                     "\nkernel=%s\ninitrd=%s\nroot_disk=%s\nagent=%s\n"
                     "cmdline=%s\nnet=%s\n",
                     WARM_ENTRY_VERSION, c->hypervisor, vmm ? vmm : "",
                     c->accel ? c->accel : (m->accel ? m->accel : "auto"), c->memory_mib, c->vcpus,
                     kernel, initrd, disk, agent, cmdline, subnet);
}

/* Two 64-bit FNV-1a hashes of key: a name for its entry. The entry holds the whole key, which
 * is what a lookup compares. */
static void
key_id(const char *key, char ret[WARM_KEY_ID_LEN + 1])
{
    uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        a = (a ^ *p) * 0x100000001b3ull;
        b = (b ^ (unsigned char)(*p + 0x5b)) * 0x100000001b3ull;
    }
    snprintf(ret, WARM_KEY_ID_LEN + 1, "%016" PRIx64 "%016" PRIx64, a, b);
}

static bool
key_id_valid(const char *s)
{
    if (strlen(s) != WARM_KEY_ID_LEN)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* The entry of key id kid, parsed; NULL when missing or malformed. */
static json_t *
entry_load(struct inst_manager *m, const char *kid)
{
    _cleanup_free_ char *path = entry_path(m, kid);
    _cleanup_free_ char *text = NULL;
    const char *key, *tid;
    int version;

    if (fs_read_file(path, WARM_ENTRY_MAX, &text, NULL, NULL) < 0)
        return NULL;
    json_t *o = json_loads(text, 0, NULL);
    if (!o ||
        json_unpack(o, "{s:i, s:s, s:s}", "version", &version, "key", &key, "tid", &tid) < 0 ||
        version != WARM_ENTRY_VERSION || !store_id_valid(tid)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void
entry_forget(struct inst_manager *m, const char *kid, const char *why)
{
    _cleanup_free_ char *path = entry_path(m, kid);
    if (unlink(path) == 0)
        log_info("template %.12s forgotten: %s", kid, why);
}

/* Whether tdir holds a complete template of this host's VMM. */
static int
template_check(struct inst_manager *m, const char *hypervisor, const char *tid, struct tp_err *err)
{
    const struct hv_driver *drv = hv_driver_find(hypervisor);
    _cleanup_free_ char *tdir = paths_template_dir(m->data_dir, tid);
    _cleanup_free_ char *disk = fs_path_join(tdir, WARM_DISK);
    struct snap_manifest man;
    int r;

    if (!drv)
        return tp_err_set(err, -EINVAL, "unknown hypervisor '%s'", hypervisor);
    r = snap_validate(tdir, &man, err);
    if (r >= 0)
        r = hv_check_snapshot_version(drv, man.vmm_version, err);
    if (r < 0)
        return r;
    if (!snap_has_memory(tdir))
        return tp_err_set(err, -EPROTO, "no memory image in '%s'", tdir);
    if (!fs_exists(disk))
        return tp_err_set(err, -ENOENT, "no root disk in '%s'", tdir);
    return 0;
}

int
warm_lookup(struct inst_manager *m, const char *key, char ret_tid[INST_ID_LEN + 1])
{
    char kid[WARM_KEY_ID_LEN + 1];
    struct tp_err e = { 0 };
    const char *hv = NULL;
    int found = 0;

    key_id(key, kid);
    pthread_mutex_lock(&m->template_lock);
    json_t *o = entry_load(m, kid);
    _cleanup_free_ char *entry = entry_path(m, kid);
    if (!o) {
        if (fs_exists(entry))
            entry_forget(m, kid, "unreadable entry");
    } else if (strcmp(json_string_value(json_object_get(o, "key")), key) != 0) {
        entry_forget(m, kid, "its key differs");
    } else if (!(hv = json_string_value(json_object_get(o, "hypervisor")))) {
        entry_forget(m, kid, "no hypervisor recorded");
    } else {
        const char *tid = json_string_value(json_object_get(o, "tid"));
        if (template_check(m, hv, tid, &e) < 0) {
            log_warn("template %.12s is unusable: %s", kid, tp_err_msg(&e));
            entry_forget(m, kid, "stale or corrupt");
        } else {
            memcpy(ret_tid, tid, INST_ID_LEN + 1);
            manager_template_pin(m, ret_tid);
            found = 1;
        }
    }
    pthread_mutex_unlock(&m->template_lock);
    json_decref(o);
    tp_err_clear(&e);
    return found;
}

void
warm_unpin(struct inst_manager *m, const char *tid)
{
    manager_template_unpin(m, tid);
}

int
warm_prepare(struct inst_manager *m, struct inst *i, const char *tid, struct tp_err *err)
{
    _cleanup_free_ char *tdir = paths_template_dir(m->data_dir, tid);
    _cleanup_free_ char *disk = fs_path_join(tdir, WARM_DISK);
    int r;

    /* Until the guest acknowledges its own identity it has the template's (recovery applies
     * a pending one). Its VMM does not outlive a power cut: no need to make it durable. */
    r = fs_write_atomic(i->paths.identity_pending, "", 0, 0600, err);
    if (r >= 0)
        r = fs_mkdir_p(i->paths.logs_dir, 0700, err);
    if (r >= 0)
        r = fs_clone_file(disk, i->paths.root_disk, 0600, err);
    if (r >= 0)
        r = inst_template_set(i, tid, err);
    manager_template_unpin(m, tid);
    return r;
}

static void
mark_phase(void *ctx, const char *phase)
{
    trace_phase(ctx, phase);
}

int
warm_start(struct inst_manager *m, struct inst *i, struct trace *t, struct tp_err *err)
{
    char tid[INST_ID_LEN + 1];
    int r;

    if (inst_template_get(i, tid) <= 0)
        return tp_err_set(err, -ENOENT, "no template for '%s'", i->rec->name);
    _cleanup_free_ char *tdir = paths_template_dir(m->data_dir, tid);
    r = inst_cmdline(i, &i->cmdline, err);
    if (r < 0)
        return r;
    r = inst_vmm_from_snapshot(m, i, tdir, (struct hv_phase_sink){ mark_phase, t }, NULL, err);
    if (r < 0 && !i->vm)
        return tp_err_wrap(err, "start from template %s", tid);
    if (r >= 0) {
        inst_crashpoint(i, "run.warm_started");
        /* Its own phase: the guest's agent answering again, apart from applying the identity. */
        r = inst_agent_connect(m, i, AGENT_RECONNECT_TIMEOUT_MS, err);
        trace_phase(t, "agent_reconnect");
    }
    if (r >= 0)
        r = inst_apply_identity(m, i, t, err);
    if (r >= 0) {
        unlink(i->paths.identity_pending);
        return 0;
    }
    inst_kill_vmm(i);
    inst_drop_vmm(i);
    return r;
}

int
warm_fallback(struct inst_manager *m, struct inst *i, const char *key, const char *tid,
              struct tp_err *err)
{
    char kid[WARM_KEY_ID_LEN + 1];

    key_id(key, kid);
    pthread_mutex_lock(&m->template_lock);
    json_t *o = entry_load(m, kid);
    const char *etid = o ? json_string_value(json_object_get(o, "tid")) : NULL;
    if (etid && strcmp(etid, tid) == 0)
        entry_forget(m, kid, "it did not start");
    pthread_mutex_unlock(&m->template_lock);
    json_decref(o);
    inst_template_clear(i);
    unlink(i->paths.identity_pending);
    unlink(i->paths.root_disk);
    return fs_clone_file(i->rec->cfg.root_disk_src, i->paths.root_disk, 0600, err);
}

/* Stop i's VMM and restart it from tdir, on the template when i's ref names it, else on its own
 * memory file. */
static int
restart_on(struct inst_manager *m, struct inst *i, const char *tdir, struct tp_err *err)
{
    inst_end_vmm(i);
    inst_crashpoint(i, "run.template_stopped");
    int r = inst_vmm_from_snapshot(m, i, tdir, (struct hv_phase_sink){ 0 }, NULL, err);
    if (r >= 0)
        r = inst_agent_connect(m, i, AGENT_RECONNECT_TIMEOUT_MS, err);
    return r;
}

static int
entry_write(struct inst_manager *m, struct inst *i, const char *key, const char *tid,
            int64_t created_ms, struct tp_err *err)
{
    const struct inst_config *c = &i->rec->cfg;
    char kid[WARM_KEY_ID_LEN + 1];
    _cleanup_free_ char *dir = warm_dir(m);
    int r;

    key_id(key, kid);
    json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:i, s:i, s:s, s:s?, s:s?}", "version",
                          WARM_ENTRY_VERSION, "id", kid, "key", key, "tid", tid, "created_ms",
                          (json_int_t)created_ms, "hypervisor", c->hypervisor, "memory_mib",
                          (int)c->memory_mib, "vcpus", (int)c->vcpus, "kernel", c->kernel,
                          "root_disk", c->rootfs, "initrd", c->initrd);
    _cleanup_free_ char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return tp_err_set(err, -ENOMEM, "build template entry");
    _cleanup_free_ char *path = entry_path(m, kid);
    r = fs_mkdir_p(dir, 0700, err);
    if (r >= 0)
        r = fs_write_atomic(path, text, strlen(text), 0600, err);
    return r;
}

int
warm_capture(struct inst_manager *m, struct inst *i, const char *key, struct trace *t,
             struct tp_err *err)
{
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    struct snap_manifest man = { .version = SNAP_MANIFEST_VERSION };
    struct tp_err e = { 0 };
    char tid[INST_ID_LEN + 1];
    uint64_t written = 0;
    struct hv_vm_spec spec;
    bool restart = false;
    int r;

    pthread_mutex_lock(&m->template_lock);
    store_new_id(tid);
    manager_template_pin(m, tid);
    pthread_mutex_unlock(&m->template_lock);
    _cleanup_free_ char *tdir = paths_template_dir(m->data_dir, tid);
    _cleanup_free_ char *disk = fs_path_join(tdir, WARM_DISK);

    snprintf(man.hypervisor, sizeof(man.hypervisor), "%s", drv->name);
    const char *vmm_version = hv_version(drv, NULL);
    snprintf(man.vmm_version, sizeof(man.vmm_version), "%s", vmm_version ? vmm_version : "");
    man.created_ms = wall_ms();
    man.memory_mib = i->rec->cfg.memory_mib;
    man.vcpus = i->rec->cfg.vcpus;

    /* Frozen as a fork freezes a running source: the driver's template (memory and device
     * state), and the disk as the guest left it, all of one instant. Durable, as templates
     * outlive the daemon and the host. */
    r = fs_mkdir_p(tdir, 0700, &e);
    if (r >= 0)
        r = hv_pause(i->vm, &e);
    if (r < 0)
        goto keep_running;
    inst_spec(m, i, &spec);
    /* The user's VM goes on on memory of its own where the driver can copy it out: on the
     * template, its own standbys would have to carry its RAM in their state. */
    r = hv_prepare_fork(i->vm, &spec, tdir, true, &restart, &e);
    if (r >= 0)
        r = fs_clone_file(i->paths.root_disk, disk, 0600, &e);
    if (r >= 0)
        r = fs_fsync_file(disk, &e); /* snap_commit: the rest, and the dir entry */
    if (r >= 0)
        r = snap_commit(tdir, &man, &written, &e);
    if (r >= 0 && !snap_has_memory(tdir))
        r = tp_err_set(&e, -EOPNOTSUPP, "the template carries guest memory in its state");
    if (r < 0 && restart && snap_validate(tdir, NULL, NULL) >= 0) {
        /* Its memory went into the template's state: it restarts from there on memory of its
         * own, as a forked source would, and the template goes. */
        log_warn("instance=%s op=run: no template kept: %s", i->id, tp_err_msg(&e));
        tp_err_clear(&e);
        goto restart_own;
    }
    if (r < 0) {
        hv_resume(i->vm, NULL);
        goto keep_running;
    }
    fs_rm_rf(i->paths.snap_base, NULL); /* any retained base is stale after a template */
    trace_phase(t, "freeze_template");
    trace_counter(t, "template_written_bytes", (int64_t)written);
    inst_crashpoint(i, "run.template_frozen");

    if (!restart) {
        /* The driver copied the memory out: the guest runs on, on its own. */
        r = hv_resume(i->vm, &e);
        if (r < 0) {
            log_warn("instance=%s op=run: resume after the template: %s", i->id, tp_err_msg(&e));
            tp_err_clear(&e);
            goto restart_own;
        }
        trace_phase(t, "resume_source");
        inst_crashpoint(i, "run.source_resumed");
    } else {
        /* From here the guest lives on in the template: its VMM restarts there. */
        r = inst_template_set(i, tid, &e);
        if (r < 0) {
            hv_resume(i->vm, NULL);
            goto keep_running;
        }
        r = restart_on(m, i, tdir, &e);
        if (r < 0) {
            log_warn("instance=%s op=run: restart on template: %s", i->id, tp_err_msg(&e));
            tp_err_clear(&e);
            goto restart_own;
        }
        inst_crashpoint(i, "run.template_restarted");
        /* Its memory is the template's now: the driver drops what it kept of its own. */
        inst_spec(m, i, &spec);
        if (hv_drop_memory(drv, &spec, true, &e) < 0)
            log_warn("instance=%s op=run: %s", i->id, tp_err_msg(&e));
        tp_err_clear(&e);
        trace_phase(t, "restart_on_template");
    }
    r = entry_write(m, i, key, tid, man.created_ms, &e);
    if (r < 0)
        log_warn("instance=%s op=run: keep template: %s", i->id, tp_err_msg(&e));
    else
        inst_crashpoint(i, "run.template_kept");
    tp_err_clear(&e);
    manager_template_unpin(m, tid);
    return 0;

restart_own:
    /* Back onto its own memory (untouched since the freeze), from the template's state. */
    inst_template_clear(i);
    if (i->vm) {
        inst_kill_vmm(i);
        inst_drop_vmm(i);
    }
    r = restart_on(m, i, tdir, err);
    fs_rm_rf(tdir, NULL);
    manager_template_unpin(m, tid);
    if (r < 0)
        return tp_err_wrap(err, "bring the guest back after a failed template");
    return 0;

keep_running:
    log_warn("instance=%s op=run: no template made: %s", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
    fs_rm_rf(tdir, NULL);
    manager_template_unpin(m, tid);
    return 0;
}

bool
warm_template_kept(struct inst_manager *m, const char *tid)
{
    _cleanup_free_ char *dir = warm_dir(m);
    _cleanup_(closedirp) DIR *d = opendir(dir);
    struct dirent *de;

    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n != WARM_KEY_ID_LEN + 5 || strcmp(de->d_name + WARM_KEY_ID_LEN, ".json") != 0)
            continue;
        char kid[WARM_KEY_ID_LEN + 1];
        memcpy(kid, de->d_name, WARM_KEY_ID_LEN);
        kid[WARM_KEY_ID_LEN] = '\0';
        json_t *o = entry_load(m, kid);
        const char *etid = o ? json_string_value(json_object_get(o, "tid")) : NULL;
        bool hit = etid && strcmp(etid, tid) == 0;
        json_decref(o);
        if (hit)
            return true;
    }
    return false;
}

/* Instances whose template ref names tid. */
static unsigned
template_users(struct inst_manager *m, const char *tid)
{
    _cleanup_free_ char *instances = paths_instances_dir(m->data_dir);
    _cleanup_(closedirp) DIR *d = opendir(instances);
    struct dirent *de;
    unsigned n = 0;

    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *ref = xasprintf("%s/%s/template", instances, de->d_name);
        _cleanup_free_ char *text = NULL;
        if (fs_read_file(ref, 64, &text, NULL, NULL) < 0)
            continue;
        text[strcspn(text, "\n")] = '\0';
        n += strcmp(text, tid) == 0;
    }
    return n;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Each entry's key id (sorted), for list and remove. */
static char **
entry_ids(struct inst_manager *m, size_t *ret_n)
{
    _cleanup_free_ char *dir = warm_dir(m);
    _cleanup_(closedirp) DIR *d = opendir(dir);
    struct dirent *de;
    char **ids = xnew(char *, 1);
    size_t n = 0;

    while (d && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len != WARM_KEY_ID_LEN + 5 || strcmp(de->d_name + WARM_KEY_ID_LEN, ".json") != 0)
            continue;
        ids = xrealloc(ids, (n + 2) * sizeof(*ids));
        ids[n] = xstrndup(de->d_name, WARM_KEY_ID_LEN);
        if (!key_id_valid(ids[n])) {
            free(ids[n]);
            continue;
        }
        n++;
    }
    ids[n] = NULL;
    qsort(ids, n, sizeof(*ids), cmp_str);
    *ret_n = n;
    return ids;
}

int
inst_templates_list(struct inst_manager *m, json_t **ret_array, struct tp_err *err)
{
    size_t n;
    _cleanup_strv_free_ char **ids = entry_ids(m, &n);
    json_t *arr = json_array();

    (void)err;
    for (size_t k = 0; k < n; k++) {
        json_t *o = entry_load(m, ids[k]);
        if (!o)
            continue;
        const char *tid = json_string_value(json_object_get(o, "tid"));
        json_object_set_new(o, "in_use", json_integer(template_users(m, tid)));
        json_object_del(o, "version");
        json_array_append_new(arr, o);
    }
    *ret_array = arr;
    return 0;
}

int
inst_template_remove(struct inst_manager *m, const char *ref, struct tp_err *err)
{
    size_t n, hits = 0, len = strlen(ref);
    _cleanup_strv_free_ char **ids = entry_ids(m, &n);
    const char *hit = NULL;

    if (len == 0 || len > WARM_KEY_ID_LEN)
        return tp_err_set(err, -EINVAL, "invalid template id '%s'", ref);
    for (size_t k = 0; k < n; k++)
        if (strncmp(ids[k], ref, len) == 0)
            hit = ids[k], hits++;
    if (hits == 0)
        return tp_err_set(err, -ENOENT, "no such template: '%s'", ref);
    if (hits > 1)
        return tp_err_set(err, -ENOTUNIQ, "template id '%s' is ambiguous", ref);
    pthread_mutex_lock(&m->template_lock);
    entry_forget(m, hit, "removed");
    pthread_mutex_unlock(&m->template_lock);
    manager_template_gc(m);
    return 0;
}

int
inst_templates_prune(struct inst_manager *m, size_t *ret_n, struct tp_err *err)
{
    size_t n;
    _cleanup_strv_free_ char **ids = entry_ids(m, &n);

    (void)err;
    pthread_mutex_lock(&m->template_lock);
    for (size_t k = 0; k < n; k++)
        entry_forget(m, ids[k], "pruned");
    pthread_mutex_unlock(&m->template_lock);
    manager_template_gc(m);
    *ret_n = n;
    return 0;
}
