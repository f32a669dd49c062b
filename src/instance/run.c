/* `run`: validate a create request, prepare the guest's files, record it, boot it. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "image/image.h"
#include "image/oci/config.h"
#include "image/oci/oci.h"
#include "image/oci/rootfs.h"
#include "instance/manager-internal.h"
#include "instance/observe.h"
#include "instance/warm.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define DEFAULT_MEMORY_MIB 256
#define DEFAULT_VCPUS      1

static int
check_file(const char *what, const char *path, struct tp_err *err)
{
    if (!path)
        return 0;
    if (path[0] != '/')
        return tp_err_set(err, -EINVAL, "%s path '%s' is not absolute", what, path);
    if (access(path, R_OK) < 0)
        return tp_err_errno(err, -errno, "%s '%s'", what, path);
    return 0;
}

static int
validate(const struct inst_create_req *q, struct tp_err *err)
{
    int r;
    if (q->name && !store_name_valid(q->name))
        return tp_err_set(err, -EINVAL, "invalid name '%s': names match [a-z0-9][a-z0-9-]{0,62}",
                          q->name);
    if (q->memory_mib && (q->memory_mib < 64 || q->memory_mib > 65536))
        return tp_err_set(err, -EINVAL, "memory_mib %u is outside 64..65536", q->memory_mib);
    if (q->vcpus && q->vcpus > 64)
        return tp_err_set(err, -EINVAL, "vcpus %u is outside 1..64", q->vcpus);
    if (q->hypervisor && !hv_driver_find(q->hypervisor))
        return tp_err_set(err, -EINVAL, "unknown hypervisor '%s'", q->hypervisor);
    {
        /* Known, but its VMM binary must answer here (GET /v1/capabilities says the same). */
        const struct hv_driver *drv =
            hv_driver_find(q->hypervisor ? q->hypervisor : hv_driver_default());
        struct tp_err perr = { 0 };
        if (drv && drv->probe && !hv_version(drv, &perr)) {
            r = tp_err_set(err, -EOPNOTSUPP, "%s is not available on this host: %s", drv->name,
                           tp_err_msg(&perr));
            tp_err_clear(&perr);
            return r;
        }
    }
    if (q->accel && strcmp(q->accel, "kvm") != 0 && strcmp(q->accel, "tcg") != 0)
        return tp_err_set(err, -EINVAL, "unknown accelerator '%s' (kvm or tcg)", q->accel);
    if (q->mem_backend && strcmp(q->mem_backend, "file") != 0 &&
        strcmp(q->mem_backend, "uffd") != 0)
        return tp_err_set(err, -EINVAL, "unknown memory backend '%s' (file or uffd)",
                          q->mem_backend);
    if (q->mem_backend && strcmp(q->mem_backend, "uffd") == 0) {
        const struct hv_driver *drv =
            hv_driver_find(q->hypervisor ? q->hypervisor : hv_driver_default());
        if (drv && !hv_has_cap(drv, HV_CAP_MEM_UFFD))
            return tp_err_set(err, -EINVAL,
                              "hypervisor '%s' has no userfaultfd memory backend (mem_backend "
                              "'uffd')",
                              drv->name);
    }
    if (q->network && strcmp(q->network, "default") != 0 && strcmp(q->network, "none") != 0)
        return tp_err_set(err, -EINVAL, "unknown network '%s' (default or none)", q->network);
    if (q->network_mode && strcmp(q->network_mode, "isolated") != 0 &&
        strcmp(q->network_mode, "shared") != 0)
        return tp_err_set(err, -EINVAL, "unknown network mode '%s' (isolated or shared)",
                          q->network_mode);
    if ((r = net_ports_check(q->ports, q->n_ports, err)) < 0)
        return r;
    if (q->cmd && !q->cmd[0] && !q->image)
        return tp_err_set(err, -EINVAL, "cmd must not be empty");
    if (q->image && q->rootfs)
        return tp_err_set(err, -EINVAL, "an image and a rootfs exclude each other");
    if (!q->image && (q->entrypoint || q->env || q->workdir || q->user || q->attach))
        return tp_err_set(err, -EINVAL, "entrypoint, env, workdir and user need an image");
    if ((r = check_file("kernel", q->kernel, err)) < 0 ||
        (r = check_file("initrd", q->initrd, err)) < 0 ||
        (r = check_file("rootfs", q->rootfs, err)) < 0)
        return r;
    return 0;
}

static char **
strv_copy(char *const *v)
{
    size_t n = 0;
    while (v[n])
        n++;
    char **c = xnew(char *, n + 1);
    for (size_t k = 0; k < n; k++)
        c[k] = xstrdup(v[k]);
    return c;
}

/* Refuse what the host cannot back: guest memory beyond its RAM, or a memory file (allocated in
 * full at start) and root disk that the data dir has no room for. */
static int
check_host(struct inst_manager *m, uint32_t memory_mib, uint32_t disk_mib, struct tp_err *err)
{
    struct sysinfo si;
    struct statvfs vfs;

    if (sysinfo(&si) == 0) {
        uint64_t ram_mib = (uint64_t)si.totalram * si.mem_unit >> 20;
        if (memory_mib > ram_mib)
            return tp_err_set(err, -EINVAL,
                              "memory %" PRIu32 " MiB is more than this host has (%" PRIu64 " MiB)",
                              memory_mib, ram_mib);
    }
    if (statvfs(m->data_dir, &vfs) == 0) {
        uint64_t free_mib = (uint64_t)vfs.f_bavail * vfs.f_frsize >> 20;
        uint64_t need = (uint64_t)memory_mib + disk_mib;
        if (need > free_mib)
            return tp_err_set(err, -ENOSPC,
                              "not enough space in '%s' for %" PRIu64
                              " MiB of guest memory and disk (%" PRIu64 " MiB free)",
                              m->data_dir, need, free_mib);
    }
    return 0;
}

static bool
strv_contains(char **v, const char *s)
{
    strv_foreach (e, v)
        if (strcmp(*e, s) == 0)
            return true;
    return false;
}

/* An OCI image from the store: its cached root disk (built on first use) and its workload. */
static int
prepare_image(struct inst_manager *m, const struct inst_create_req *q, struct inst_config *c,
              struct trace *t, struct tp_err *err)
{
    _cleanup_free_ char *layout = fs_path_join(m->data_dir, "images");
    _cleanup_(oci_rootfs_done) struct oci_rootfs rf = { 0 };
    struct oci_desc man = { 0 };
    struct oci_ref ref = { 0 };
    struct oci_workload w;
    int r;

    _cleanup_strv_free_ char **names = NULL;
    r = oci_layout_resolve_full(layout, q->image, &man, NULL, &names, err);
    if (r < 0)
        return r;
    r = oci_rootfs_get(layout, &man, &rf, err);
    if (r < 0) {
        oci_desc_done(&man);
        return r;
    }
    trace_phase(t, rf.cache_hit ? "image_rootfs_cached" : "image_rootfs_built");
    const struct oci_run_overrides o = {
        .entrypoint = q->entrypoint,
        .cmd = q->cmd && q->cmd[0] ? q->cmd : NULL,
        .env = q->env,
        .working_dir = q->workdir,
        .user = q->user,
    };
    r = oci_workload_build(rf.config, &o, &w, err);
    if (r < 0) {
        oci_desc_done(&man);
        return r;
    }
    /* Recorded as docker shows it: the normalized reference, or what was given (an id). */
    bool named = oci_ref_parse(q->image, &ref, NULL) == 0 && strv_contains(names, ref.full);
    c->image = xstrdup(named ? ref.full : names && names[0] ? names[0] : q->image);
    oci_ref_free(&ref);
    c->image_digest = TAKE_PTR(man.digest);
    oci_desc_done(&man);
    c->root_disk_src = TAKE_PTR(rf.disk);
    strv_free(c->cmd);
    c->cmd = TAKE_PTR(w.argv);
    c->env = TAKE_PTR(w.env);
    c->workdir = TAKE_PTR(w.working_dir);
    c->user = TAKE_PTR(w.user);
    c->stop_signal = w.stop_signal;
    oci_workload_done(&w);
    return 0;
}

/* Kernel, initrd and root disk image: the user's or the cached defaults. */
static int
prepare_images(struct inst_manager *m, const struct inst_create_req *q, struct inst_config *c,
               struct trace *t, struct tp_err *err)
{
    const struct image_env env = { .cache_dir = m->cache_dir, .agent_path = m->agent_path };
    int r;

    if (q->kernel)
        c->kernel = xstrdup(q->kernel);
    else if ((r = image_default_kernel(&env, &c->kernel, err)) < 0)
        return r;
    if (q->initrd)
        c->initrd = xstrdup(q->initrd);
    else if ((r = image_initrd(&env, c->kernel, &c->initrd, err)) < 0)
        return tp_err_wrap(err, "build initramfs");
    trace_phase(t, "prepare_initrd");
    /* The initramfs came from the bzImage (its modules); a VMM that boots ELF only gets the
     * vmlinux inside it. */
    const struct hv_driver *drv = hv_driver_find(c->hypervisor);
    if (drv && drv->boots_elf_only) {
        char *elf = NULL;
        if ((r = image_vmlinux(&env, c->kernel, &elf, err)) < 0)
            return r;
        free(c->kernel);
        c->kernel = elf;
        trace_phase(t, "prepare_kernel");
    }
    if (q->image)
        return prepare_image(m, q, c, t, err);
    r = image_root_disk(&env, q->rootfs, q->disk_mib, &c->root_disk_src, err);
    if (r < 0)
        return tp_err_wrap(err, "prepare root disk");
    trace_phase(t, "prepare_rootfs");
    return 0;
}

int
inst_run(struct inst_manager *m, const struct inst_create_req *q, struct inst_record **ret,
         struct tp_err *err)
{
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;
    struct trace t;
    struct inst *i;
    int r;

    r = validate(q, err);
    if (r >= 0)
        r = check_host(m, q->memory_mib ? q->memory_mib : DEFAULT_MEMORY_MIB, q->disk_mib, err);
    if (r < 0)
        return r;
    /* Unasked, a guest gets a network where torpord has one; asked, it must be possible. */
    bool want_net = q->network ? strcmp(q->network, "default") == 0 : m->net_on;
    if (want_net) {
        const struct hv_driver *drv =
            hv_driver_find(q->hypervisor ? q->hypervisor : hv_driver_default());
        if (!m->net_on)
            return tp_err_set(err, -EOPNOTSUPP,
                              "network 'default' needs torpord started with --network or "
                              "--subnet CIDR (or ask for network 'none')");
        if (drv && !hv_has_cap(drv, HV_CAP_NET))
            return tp_err_set(err, -EOPNOTSUPP,
                              "%s cannot give a guest a network interface yet: use network 'none'",
                              drv->name);
    }
    if ((q->n_ports > 0 || q->network_mode) && !want_net) {
        if (q->network) /* "none", asked for */
            return tp_err_set(err, -EINVAL, "%s need%s a network: not with network 'none'",
                              q->n_ports ? "published ports" : "a network mode",
                              q->n_ports ? "" : "s");
        return tp_err_set(err, -EOPNOTSUPP,
                          "%s need%s a network: start torpord with --network or --subnet CIDR",
                          q->n_ports ? "published ports" : "a network mode", q->n_ports ? "" : "s");
    }
    /* DNAT takes the traffic before any socket sees it: a host socket already bound there would
     * silently lose it, so such a port is refused (a bind probe; one bound later loses out). */
    for (size_t k = 0; k < q->n_ports; k++)
        if ((r = net_port_probe(&q->ports[k], err)) < 0)
            return r;
    trace_begin(&t, "run");

    rec = xnew(struct inst_record, 1);
    store_new_id(rec->id);
    rec->name = q->name ? xstrdup(q->name) : xasprintf("vm-%.8s", rec->id);
    rec->cfg.hypervisor = xstrdup(q->hypervisor ? q->hypervisor : hv_driver_default());
    rec->cfg.memory_mib = q->memory_mib ? q->memory_mib : DEFAULT_MEMORY_MIB;
    rec->cfg.vcpus = q->vcpus ? q->vcpus : DEFAULT_VCPUS;
    rec->cfg.rootfs = q->rootfs ? xstrdup(q->rootfs) : NULL;
    rec->cfg.cmd = q->cmd ? strv_copy(q->cmd) : NULL;
    rec->cfg.agent = !q->no_agent;
    rec->cfg.accel = q->accel ? xstrdup(q->accel) : NULL;
    rec->cfg.mem_uffd = q->mem_backend && strcmp(q->mem_backend, "uffd") == 0;
    rec->cfg.net_shared = q->network_mode && strcmp(q->network_mode, "shared") == 0;
    if (q->n_ports) {
        rec->ports = xnew(struct net_port, q->n_ports);
        memcpy(rec->ports, q->ports, q->n_ports * sizeof(*q->ports));
        rec->n_ports = q->n_ports;
    }
    rec->state = INST_CREATED;
    rec->created_ms = rec->state_changed_ms = wall_ms();

    /* Images first: a bad rootfs or kernel must leave no record behind. */
    r = prepare_images(m, q, &rec->cfg, &t, err);
    if (r < 0)
        return r;
    /* A cmd too long for the kernel command line is bad input too: refuse it before the
     * record exists, not at boot (which would leave a Stopped instance behind). */
    {
        struct inst probe = { .rec = rec };
        _cleanup_free_ char *cmdline = NULL;
        r = inst_cmdline(&probe, &cmdline, err);
        if (r < 0)
            return r;
    }
    /* warm.c: a frozen template of this very boot is forked instead of booting, and the first
     * boot of a key leaves one. */
    _cleanup_free_ char *key = q->cold || m->no_warm_runs ? NULL : warm_key(m, rec, want_net);
    char tid[INST_ID_LEN + 1];
    bool warm = key && warm_lookup(m, key, tid) > 0;
    if (key)
        trace_phase(&t, "template_lookup");
    /* The address is part of the record: a crash after this finds it with its instance. */
    r = inst_insert_record(m, rec, want_net, err);
    if (r < 0) {
        if (warm)
            warm_unpin(m, tid);
        return r;
    }
    char id[INST_ID_LEN + 1];
    memcpy(id, rec->id, sizeof(id));
    inst_table_add(m, TAKE_PTR(rec));
    r = inst_acquire_id(m, id, &i);
    if (r < 0) {
        if (warm)
            warm_unpin(m, tid);
        return tp_err_set(err, r, "instance '%s' vanished", id);
    }
    inst_obs_op_start(i, "run");
    /* A Created record is a run in flight: a crash from here on is finished (its VMM adopted)
     * or undone by recovery. */
    inst_crashpoint(i, "run.recorded");

    r = fs_mkdir_p(i->paths.dir, 0700, err);
    if (r >= 0 && warm)
        r = warm_prepare(m, i, tid, err);
    else if (r >= 0)
        r = fs_clone_file(i->rec->cfg.root_disk_src, i->paths.root_disk, 0600, err);
    else if (warm)
        warm_unpin(m, tid);
    warm = warm && r >= 0;
    /* An image's cached disk is sized for the image; --disk-size grows this instance's copy. */
    if (r >= 0 && q->image && q->disk_mib)
        r = image_ext4_grow(i->paths.root_disk, q->disk_mib, err);
    if (r < 0) {
        tp_err_wrap(err, "create instance directory");
        goto fail;
    }
    trace_phase(&t, "clone_disk");
    inst_crashpoint(i, "run.disk");

    if (warm) {
        struct tp_err werr = { 0 };
        r = warm_start(m, i, &t, &werr);
        if (r < 0) {
            log_warn("instance=%s op=run: template %s unusable, booting: %s", i->id, tid,
                     tp_err_msg(&werr));
            warm = false;
            r = warm_fallback(m, i, key, tid, err);
        }
        tp_err_clear(&werr);
        if (r < 0)
            goto fail;
        trace_counter(&t, warm ? "warm" : "warm_fallback", 1);
    }
    bool ended = false;
    if (!warm) {
        i->workload_deferred = q->image && q->attach;
        r = inst_boot(m, i, &t, err);
        i->workload_deferred = false; /* a later start boots the workload */
        if (r < 0)
            goto fail;
        ended = r == 1; /* an image's workload already ran to its end: Stopped, with its code */
    }
    inst_crashpoint(i, "run.booted");
    if (!warm && key && !ended) {
        r = warm_capture(m, i, key, &t, err);
        if (r < 0)
            goto fail;
    }
    r = inst_transition(m, i, ended ? INST_STOPPED : INST_RUNNING, err);
    inst_finish_op(m, i, &t, r < 0 ? err : NULL);
    if (r >= 0)
        *ret = inst_record_dup(i->rec);
    inst_release(m, i);
    return r;

fail:
    /* A failed run leaves nothing: no VMM (inst_boot killed it), no files, no record. */
    trace_end(&t, false);
    inst_obs_op_end(i, &t, err);
    inst_discard_new(m, i);
    return r;
}
