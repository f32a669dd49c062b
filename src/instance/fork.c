/* `fork`: N children that start exactly where a Running or Standby instance is. The source's
 * snapshot becomes a frozen template that children load (and a Running source too, where the
 * driver says it must restart on it rather than only resume); how they map its memory is the
 * driver's business. All or nothing. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "instance/manager-internal.h"
#include "snapshot/snapshot.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define FORK_MAX_CHILDREN 64

struct child {
    struct inst_manager *m;
    struct inst *i;     /* locked by the fork until it ends */
    const char *tdir;   /* template dir to restore from */
    bool standby;       /* leave it in Standby */
    bool wait_identity; /* wait for the agent's acknowledgement */
    pthread_t thread;
    int r;
    struct tp_err err;
    struct trace t;
};

/* The fork's journal on the source (op "fork"): enough for a restarted daemon to undo the fork
 * completely, or to finish it once committed. */
enum fork_phase {
    FORK_BEGUN,     /* template id and child ids chosen: undo on a crash */
    FORK_COMMITTED, /* every child runs: only cleanup remains */
};

struct fork_journal {
    char tid[INST_ID_LEN + 1];
    char old_tid[INST_ID_LEN + 1]; /* "" when the source owned its memory */
    bool was_running;
    enum fork_phase phase;
    uint32_t n;
    char (*children)[INST_ID_LEN + 1];
};

static const char *const phase_names[] = {
    [FORK_BEGUN] = "begun",
    [FORK_COMMITTED] = "committed",
};

static char *
journal_json(const struct fork_journal *j)
{
    json_t *kids = json_array();
    for (uint32_t k = 0; k < j->n; k++)
        json_array_append_new(kids, json_string(j->children[k]));
    json_t *o =
        json_pack("{s:s, s:s, s:b, s:s, s:o}", "tid", j->tid, "old_tid", j->old_tid, "was_running",
                  j->was_running, "phase", phase_names[j->phase], "children", kids);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        abort();
    return text;
}

static int
journal_parse(const char *text, struct fork_journal *j)
{
    json_error_t jerr;
    json_t *o = text ? json_loads(text, 0, &jerr) : NULL, *kids = NULL;
    const char *tid, *old_tid, *phase;
    int was_running = 0, r = -EPROTO;

    *j = (struct fork_journal){ 0 };
    /* Journals of earlier versions also carry a memory flag: recovery reads what it needs from
     * the disk now (the template's files, the source's template ref), so it is ignored. */
    if (!o ||
        json_unpack(o, "{s:s, s:s, s:b, s:s, s:o}", "tid", &tid, "old_tid", &old_tid, "was_running",
                    &was_running, "phase", &phase, "children", &kids) < 0 ||
        !store_id_valid(tid) || (*old_tid && !store_id_valid(old_tid)) || !json_is_array(kids))
        goto out;
    memcpy(j->tid, tid, sizeof(j->tid));
    snprintf(j->old_tid, sizeof(j->old_tid), "%s", old_tid);
    j->was_running = was_running;
    j->phase = FORK_BEGUN;
    for (size_t k = 0; k < ELEMENTSOF(phase_names); k++)
        if (strcmp(phase, phase_names[k]) == 0)
            j->phase = (enum fork_phase)k;
    j->n = (uint32_t)json_array_size(kids);
    j->children = xzalloc((INST_ID_LEN + 1) * (j->n + 1));
    for (uint32_t k = 0; k < j->n; k++) {
        const char *id = json_string_value(json_array_get(kids, k));
        if (!store_id_valid(id))
            goto out;
        memcpy(j->children[k], id, INST_ID_LEN + 1);
    }
    r = 0;
out:
    json_decref(o);
    return r;
}

static int
journal_save(struct inst_manager *m, struct inst *src, struct fork_journal *j, enum fork_phase ph,
             struct tp_err *err)
{
    j->phase = ph;
    _cleanup_free_ char *text = journal_json(j);
    return inst_op_progress(m, src, text, err);
}

static bool
name_taken(struct inst_manager *m, const char *name)
{
    char id[INST_ID_LEN + 1];
    return store_resolve(m->store, name, id, NULL) != -ENOENT;
}

/* Child names: the one given, or <prefix>-<n> with the lowest free n. */
static int
child_names(struct inst_manager *m, const struct inst_fork_req *q, const char *source,
            uint32_t count, char ***ret, struct tp_err *err)
{
    char **names = xnew(char *, count + 1);
    const char *prefix = q->prefix ? q->prefix : source;
    unsigned n = 1;

    for (uint32_t k = 0; k < count; k++) {
        if (q->name)
            names[k] = xstrdup(q->name);
        else {
            for (;; n++) {
                names[k] = xasprintf("%s-%u", prefix, n);
                if (!name_taken(m, names[k]))
                    break;
                free(names[k]);
            }
            n++;
        }
        if (!store_name_valid(names[k])) {
            tp_err_set(err, -EINVAL, "invalid child name '%s': names match [a-z0-9][a-z0-9-]{0,62}",
                       names[k]);
            strv_free(names);
            return -EINVAL;
        }
        if (name_taken(m, names[k])) {
            tp_err_set(err, -EEXIST, "name '%s' is taken", names[k]);
            strv_free(names);
            return -EEXIST;
        }
    }
    *ret = names;
    return 0;
}

static void
mark_phase(void *ctx, const char *phase)
{
    trace_phase(ctx, phase);
}

/* Bring one child up from the template: its own VMM loading it. */
static void *
child_start(void *arg)
{
    struct child *c = arg;
    struct inst *i = c->i;
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);

    trace_phase(&c->t, "wait_source"); /* siblings' disks and the source's restart */
    if (c->standby) {
        /* Born as a snapshot: the template's, linked (it is never written). */
        c->r = snap_link(c->tdir, i->paths.snap_latest, &c->err);
        /* It learns its name when it first runs (restore): identity-pending stays. */
        if (c->r >= 0)
            c->r = inst_transition(c->m, i, INST_STANDBY, &c->err);
        trace_phase(&c->t, "prepare_child");
        return NULL;
    }

    c->r = inst_cmdline(i, &i->cmdline, &c->err);
    if (c->r >= 0)
        c->r = inst_failpoint(i, "fork.child", &c->err);
    if (c->r < 0)
        return NULL;
    /* The child's own TAP and MAC; the guest still has its parent's address and MAC (they
     * are in the device state) until it applies its identity. */
    const struct hv_phase_sink marks = { .mark = mark_phase, .ctx = &c->t };
    c->r = inst_vmm_from_snapshot(c->m, i, c->tdir, marks, &c->t, &c->err);
    if (c->r < 0)
        return NULL;
    c->r = inst_transition(c->m, i, INST_RUNNING, &c->err);
    if (c->r < 0)
        return NULL;
    inst_crashpoint(i, "fork.child_started");
    if (c->wait_identity && i->rec->cfg.agent && hv_has_cap(drv, HV_CAP_EXEC_AGENT)) {
        c->r = inst_apply_identity(c->m, i, &c->t, &c->err);
        if (c->r >= 0)
            unlink(i->paths.identity_pending);
    }
    return NULL;
}

/* --no-wait: the identity still has to reach the guest, just not on the caller's time. */
struct identity_job {
    struct inst_manager *m;
    char id[INST_ID_LEN + 1];
};

static void *
identity_worker(void *arg)
{
    struct identity_job *job = arg;
    struct inst_manager *m = job->m;
    struct inst *i;
    struct tp_err err = { 0 };

    if (inst_acquire_id(m, job->id, &i) >= 0) {
        if (i->vm && fs_exists(i->paths.identity_pending)) {
            if (inst_apply_identity(m, i, NULL, &err) < 0)
                log_warn("instance=%s op=fork: identity not applied: %s", i->id, tp_err_msg(&err));
            else
                unlink(i->paths.identity_pending);
        }
        tp_err_clear(&err);
        inst_release(m, i);
    }
    free(job);
    pthread_mutex_lock(&m->workers_lock);
    if (--m->workers == 0)
        pthread_cond_broadcast(&m->workers_cv);
    pthread_mutex_unlock(&m->workers_lock);
    return NULL;
}

void
inst_identity_later(struct inst_manager *m, const char *id)
{
    struct identity_job *job = xnew(struct identity_job, 1);
    pthread_attr_t a;
    pthread_t t;

    job->m = m;
    memcpy(job->id, id, sizeof(job->id));
    pthread_mutex_lock(&m->workers_lock);
    m->workers++;
    pthread_mutex_unlock(&m->workers_lock);
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, identity_worker, job) != 0) {
        log_warn("instance=%s op=fork: cannot start identity worker", id);
        job->m = m;
        identity_worker(job); /* do it inline instead */
    }
    pthread_attr_destroy(&a);
}

/* Create the child's record, directory and disk (a reflink or sparse copy of the source's). */
static int
child_create(struct inst_manager *m, struct inst *src, const char *id, const char *name,
             const char *tid, bool standby, const struct inst_fork_req *q, struct inst **ret,
             struct tp_err *err)
{
    struct inst_record *rec = xnew(struct inst_record, 1);
    const struct inst_config *sc = &src->rec->cfg;
    struct inst *i;
    int r;

    memcpy(rec->id, id, INST_ID_LEN + 1);
    rec->name = xstrdup(name);
    rec->cfg.hypervisor = xstrdup(sc->hypervisor);
    rec->cfg.memory_mib = sc->memory_mib;
    rec->cfg.vcpus = sc->vcpus;
    rec->cfg.kernel = xstrdup(sc->kernel);
    rec->cfg.initrd = sc->initrd ? xstrdup(sc->initrd) : NULL;
    rec->cfg.rootfs = sc->rootfs ? xstrdup(sc->rootfs) : NULL;
    rec->cfg.root_disk_src = sc->root_disk_src ? xstrdup(sc->root_disk_src) : NULL;
    rec->cfg.agent = sc->agent;
    rec->cfg.accel = sc->accel ? xstrdup(sc->accel) : NULL;
    rec->cfg.mem_uffd = sc->mem_uffd; /* children load their memory the parent's way */
    if (sc->image) {
        /* The same workload, running on in the child: its end stops the child, its code is
         * the child's, stop signals it; a later start boots it afresh from the spec. */
        rec->cfg.image = xstrdup(sc->image);
        rec->cfg.image_digest = sc->image_digest ? xstrdup(sc->image_digest) : NULL;
        rec->cfg.cmd = xstrv_dup(sc->cmd);
        rec->cfg.env = xstrv_dup(sc->env);
        rec->cfg.workdir = sc->workdir ? xstrdup(sc->workdir) : NULL;
        rec->cfg.user = sc->user ? xstrdup(sc->user) : NULL;
        rec->cfg.stop_signal = sc->stop_signal;
    }
    /* The same network mode; published ports are the source's alone (a host port is one
     * instance's), as a new docker container does not get another's: a child publishes only
     * what the fork asked for (its record's insert refuses a host port in use). */
    rec->cfg.net_shared = sc->net_shared;
    if (q->n_ports) {
        rec->ports = xnew(struct net_port, q->n_ports);
        memcpy(rec->ports, q->ports, q->n_ports * sizeof(*q->ports));
        rec->n_ports = q->n_ports;
    }
    rec->state = INST_CREATED;
    rec->created_ms = rec->state_changed_ms = wall_ms();

    /* A child of a guest with a network gets an address and MAC of its own, with its record. */
    r = inst_insert_record(m, rec, src->rec->net.ip != 0, err);
    if (r < 0) {
        inst_record_free(rec);
        return r;
    }
    inst_table_add(m, rec);
    r = inst_acquire_id(m, id, &i);
    if (r < 0)
        return tp_err_set(err, r, "child '%s' vanished", name);
    *ret = i; /* from here the caller rolls back through the instance */
    r = fs_mkdir_p(i->paths.logs_dir, 0700, err);
    /* Until the guest acknowledges its own identity it is its parent's (crash-safe: recovery
     * applies a pending identity). Durable for a child born in Standby, whose snapshot outlives
     * a power cut; a running child's VMM does not, so its file need not either. */
    if (r >= 0 && standby)
        r = fs_write_atomic(i->paths.identity_pending, "", 0, 0600, err);
    else if (r >= 0) {
        int fd = open(i->paths.identity_pending, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            r = tp_err_errno(err, -errno, "create '%s'", i->paths.identity_pending);
        else
            close(fd);
    }
    if (r >= 0 && sc->root_disk_src)
        r = fs_clone_file(src->paths.root_disk, i->paths.root_disk, 0600, err);
    /* A child born in Standby: its disk goes with its durable snapshot (the clone's data and
     * its name are in the page cache only). */
    if (r >= 0 && sc->root_disk_src && standby) {
        r = fs_fsync_file(i->paths.root_disk, err);
        if (r >= 0)
            r = fs_fsync_dir(i->paths.dir, err);
    }
    /* No tid: the template has no memory image (its memory is in its state), and the child
     * loads it into memory of its own. */
    if (r >= 0 && tid)
        r = inst_template_set(i, tid, err);
    return r;
}

/* Freeze a Running source into the template: pause, then the driver writes the template
 * (*ret_restart: the source's VMM must then exit, and the source restarts on it, so the
 * template can never change again; else the source only resumes). */
static int
freeze_running(struct inst_manager *m, struct inst *src, const char *tdir, bool durable,
               struct snap_manifest *man, bool *ret_restart, struct trace *t, struct tp_err *err)
{
    uint64_t written = 0;
    struct hv_vm_spec spec;
    int r = hv_pause(src->vm, err);
    if (r < 0)
        return r;
    trace_phase(t, "freeze_source");
    inst_spec(m, src, &spec);
    /* A fork's source may restart on the template: copying its memory would cost more. */
    r = hv_prepare_fork(src->vm, &spec, tdir, false, ret_restart, err);
    /* Children born in Standby keep this as their snapshot: it must survive a power cut like a
     * standby's. Running children share the page cache and die with the host anyway. */
    if (r >= 0)
        r = durable ? snap_commit(tdir, man, &written, err) : snap_write_manifest(tdir, man, err);
    if (r < 0) {
        hv_resume(src->vm, NULL);
        return tp_err_wrap(err, "snapshot source");
    }
    trace_phase(t, "snapshot_source");
    return 0;
}

/* A Standby source's snapshot is already frozen: the template links it. */
static int
freeze_standby(struct inst *src, const struct hv_driver *drv, const char *tdir,
               struct snap_manifest *man, struct tp_err *err)
{
    int r = snap_validate(src->paths.snap_latest, man, err);
    if (r >= 0)
        r = hv_check_snapshot_version(drv, man->vmm_version, err);
    if (r >= 0)
        r = snap_link(src->paths.snap_latest, tdir, err);
    return r < 0 ? tp_err_wrap(err, "template") : 0;
}

/* (Re)start the source's VMM from tdir on whatever memory its template ref now says: the new
 * template (like its children) or, rolling back, its previous memory. Once its old VMM is
 * gone only tdir holds the guest. */
static int
restore_source(struct inst_manager *m, struct inst *src, const char *tdir, struct tp_err *err)
{
    inst_end_vmm(src);
    /* No journal write: recovery reads which memory a source VMM maps from its template
     * ref, and restores from tdir when it finds none. */
    inst_crashpoint(src, "fork.source_stopped");
    /* A base only serves the VMM that loaded it (and the template's snapshot reset what a
     * diff onto it would rely on): this one loads the template. */
    fs_rm_rf(src->paths.snap_base, NULL);
    /* Running throughout, so no transition records the new VMM: the start does. */
    return inst_vmm_from_snapshot(m, src, tdir, (struct hv_phase_sink){ 0 }, NULL, err);
}

/* Put the source back onto the memory it had before the fork (its template ref). */
static void
source_memory_back(struct inst *src, const struct fork_journal *j)
{
    if (*j->old_tid)
        inst_template_set(src, j->old_tid, NULL);
    else
        inst_template_clear(src);
}

/* Committed: the source's retained base belonged to the old image (stale after the
 * template's snapshot), and the driver drops memory files the source no longer uses (its
 * memory may live in the template now). Idempotent: recovery repeats it. */
static void
source_cleanup(struct inst_manager *m, struct inst *src, const struct hv_driver *drv)
{
    struct hv_vm_spec spec;
    struct tp_err e = { 0 };

    if (drv) {
        inst_spec(m, src, &spec);
        if (hv_drop_memory(drv, &spec, true, &e) < 0)
            log_warn("instance=%s op=fork: %s", src->id, tp_err_msg(&e));
        tp_err_clear(&e);
    }
    fs_rm_rf(src->paths.snap_base, NULL);
}

int
inst_fork(struct inst_manager *m, const char *ref, const struct inst_fork_req *q,
          struct inst_record ***ret, size_t *ret_n, struct tp_err *err)
{
    uint32_t count = q->count ? q->count : 1;
    _cleanup_strv_free_ char **names = NULL;
    _cleanup_free_ char *tdir = NULL;
    struct fork_journal j = { 0 };
    struct child *kids = NULL;
    struct snap_prefetch *pf = NULL;
    struct inst *src;
    struct trace t;
    bool templated, source_moved = false, source_restored = false, gc = false, restart = false;
    bool children_map = false; /* the children's memory is the template's: they name it */
    struct snap_manifest man = { .version = SNAP_MANIFEST_VERSION };
    uint32_t made = 0;
    int r;

    if (count > FORK_MAX_CHILDREN)
        return tp_err_set(err, -EINVAL, "count %u is outside 1..%d", count, FORK_MAX_CHILDREN);
    if (q->name && count != 1)
        return tp_err_set(err, -EINVAL, "a child name needs count 1");
    if (q->n_ports && count != 1)
        return tp_err_set(err, -EINVAL, "published ports are one child's: they need count 1");
    /* As run does: DNAT would take the traffic from a socket already bound there. */
    for (size_t k = 0; k < q->n_ports; k++)
        if ((r = net_port_probe(&q->ports[k], err)) < 0)
            return r;
    r = inst_acquire(m, ref, &src, err);
    if (r < 0)
        return r;
    r = inst_require_state(src, "fork", STATE_BIT(INST_RUNNING) | STATE_BIT(INST_STANDBY), err);
    if (r < 0)
        goto out;
    if (q->n_ports && !src->rec->net.ip) {
        r = tp_err_set(err, -EINVAL, "published ports need a network: '%s' has none",
                       src->rec->name);
        goto out;
    }
    const struct hv_driver *drv = hv_driver_find(src->rec->cfg.hypervisor);
    if (!hv_has_cap(drv, HV_CAP_FORK) || !hv_has_cap(drv, HV_CAP_SNAPSHOT) ||
        !hv_has_cap(drv, HV_CAP_RESTORE)) {
        r = tp_err_set(err, -EOPNOTSUPP, "%s cannot fork", drv ? drv->name : "hypervisor");
        goto out;
    }
    r = child_names(m, q, src->rec->name, count, &names, err);
    if (r < 0)
        goto out;
    j.was_running = src->rec->state == INST_RUNNING;
    templated = inst_template_get(src, j.old_tid) > 0;
    if (!templated)
        j.old_tid[0] = '\0';
    j.n = count;
    j.children = xzalloc((INST_ID_LEN + 1) * (count + 1));
    for (uint32_t k = 0; k < count; k++)
        store_new_id(j.children[k]);
    trace_begin(&t, "fork");

    pthread_mutex_lock(&m->template_lock);
    store_new_id(j.tid);
    /* Until the fork ends, nothing may name the template (its memory in the state stream: no
     * child or source ever will), yet children and the source still load from it. */
    manager_template_pin(m, j.tid);
    /* The template the source maps now must outlive a rollback onto it, although the source's
     * ref stops naming it for a while. */
    if (templated)
        manager_template_pin(m, j.old_tid);
    tdir = paths_template_dir(m->data_dir, j.tid);
    /* The journal first: from here a crash is undone by fork_recover (or finished, once
     * committed). */
    {
        _cleanup_free_ char *text = journal_json(&j);
        r = inst_op_begin(m, src, "fork", text, err);
    }
    if (r < 0) {
        pthread_mutex_unlock(&m->template_lock);
        goto done;
    }
    inst_crashpoint(src, "fork.begin");
    snprintf(man.hypervisor, sizeof(man.hypervisor), "%s", drv->name);
    const char *vmm_version = hv_version(drv, NULL);
    snprintf(man.vmm_version, sizeof(man.vmm_version), "%s", vmm_version ? vmm_version : "");
    man.created_ms = wall_ms();
    man.memory_mib = src->rec->cfg.memory_mib;
    man.vcpus = src->rec->cfg.vcpus;
    r = fs_mkdir_p(tdir, 0700, err);
    if (r >= 0)
        r = j.was_running ? freeze_running(m, src, tdir, q->standby, &man, &restart, &t, err)
                          : freeze_standby(src, drv, tdir, &man, err);
    if (r < 0) {
        pthread_mutex_unlock(&m->template_lock);
        fs_rm_rf(tdir, NULL);
        /* Its snapshot may have happened (and reset the dirty tracking) before the failure. */
        if (j.was_running)
            fs_rm_rf(src->paths.snap_base, NULL);
        goto done;
    }
    children_map = snap_has_memory(tdir);
    /* Children of a Standby source load its snapshot (the template links the same memory file):
     * its working set, read in while they start, is theirs. */
    if (!j.was_running && children_map && !q->standby)
        pf = inst_prefetch_start(src, src->paths.snap_latest);
    r = journal_save(m, src, &j, FORK_BEGUN, err);
    if (r < 0) {
        pthread_mutex_unlock(&m->template_lock);
        goto rollback;
    }
    inst_crashpoint(src, "fork.frozen");

    /* Children's records, dirs and disks (the source's disk is quiescent: paused or Standby). */
    kids = xnew(struct child, count);
    for (made = 0; made < count; made++) {
        struct child *c = &kids[made];
        c->m = m;
        c->tdir = tdir;
        c->standby = q->standby;
        c->wait_identity = !q->no_wait;
        trace_begin(&c->t, "fork");
        snprintf(c->t.metrics_op, sizeof(c->t.metrics_op), "fork_child");
        r = child_create(m, src, j.children[made], names[made], children_map ? j.tid : NULL,
                         q->standby, q, &c->i, err);
        if (r < 0) {
            if (c->i)
                made++; /* half-made: destroyed with the others */
            break;
        }
        trace_phase(&c->t, "prepare_child");
    }
    pthread_mutex_unlock(&m->template_lock);
    if (r < 0)
        goto rollback;
    trace_phase(&t, "clone_disks");
    inst_crashpoint(src, "fork.children_created");

    /* The driver left the source on memory of its own (the template is a copy): the Running
     * source simply runs on. Its retained base is stale now (the snapshot reset the dirty
     * tracking a diff onto it would rely on): the commit drops it. */
    if (j.was_running && !restart) {
        r = hv_resume(src->vm, err);
        if (r < 0)
            goto rollback;
        trace_phase(&t, "resume_source");
        goto children;
    }
    /* The source's memory is the template's from now on, as its children's is: a Running
     * source restarts on the template (its freeze ends here); a Standby one will restore
     * from it. */
    if (!children_map) {
        /* The template's memory is in its state: the source restarts on memory of its own,
         * like its children. */
        if (j.was_running)
            inst_template_clear(src);
    } else {
        r = inst_template_set(src, j.tid, err);
        if (r < 0)
            goto rollback;
    }
    source_moved = true;
    inst_crashpoint(src, "fork.source_moved");
    if (j.was_running) {
        r = restore_source(m, src, tdir, err);
        if (r < 0)
            goto rollback;
        source_restored = true;
        trace_phase(&t, "restore_source");
        inst_crashpoint(src, "fork.source_restored");
    }

children:
    for (uint32_t k = 0; k < count; k++)
        if (pthread_create(&kids[k].thread, NULL, child_start, &kids[k]) != 0)
            child_start(&kids[k]), kids[k].thread = 0;
    for (uint32_t k = 0; k < count; k++)
        if (kids[k].thread)
            pthread_join(kids[k].thread, NULL);
    for (uint32_t k = 0; k < count; k++)
        if (kids[k].r < 0) {
            r = kids[k].r;
            tp_err_move(err, &kids[k].err);
            tp_err_wrap(err, "fork child '%s'", kids[k].i->rec->name);
            goto rollback;
        }
    trace_phase(&t, "start_children");
    inst_crashpoint(src, "fork.children_started");

    /* Every child runs (or is a complete snapshot): the fork happened. */
    r = journal_save(m, src, &j, FORK_COMMITTED, err);
    if (r < 0)
        goto rollback;
    inst_crashpoint(src, "fork.committed");
    source_cleanup(m, src, drv);
    if (templated)
        log_debug("instance=%s moved from template %s to %s", src->id, j.old_tid, j.tid);
    inst_crashpoint(src, "fork.cleaned");
    struct inst_record **recs = xnew(struct inst_record *, count + 1);
    for (uint32_t k = 0; k < count; k++) {
        struct inst *i = kids[k].i;
        inst_finish_op(m, i, &kids[k].t, NULL);
        recs[k] = inst_record_dup(i->rec);
        bool later = q->no_wait && !q->standby && i->rec->cfg.agent;
        char id[INST_ID_LEN + 1];
        memcpy(id, i->id, sizeof(id));
        inst_release(m, i);
        /* After the release: the worker (or its inline fallback) takes the child's lock. */
        if (later)
            inst_identity_later(m, id);
    }
    trace_counter(&t, "children", count);
    *ret = recs;
    *ret_n = count;
    r = 0;
    gc = !children_map || templated; /* a template may have lost its last user */
    goto done;

rollback:
    for (uint32_t k = 0; k < made; k++) {
        tp_err_clear(&kids[k].err);
        inst_discard_new(m, kids[k].i);
    }
    if (!source_moved) {
        /* Still on its own VMM, paused at most: it simply runs on. */
        if (j.was_running && src->vm && !hv_exited(src->vm))
            hv_resume(src->vm, NULL);
        fs_rm_rf(tdir, NULL);
        /* The template's snapshot reset the dirty tracking: no diff onto the old base. */
        if (j.was_running)
            fs_rm_rf(src->paths.snap_base, NULL);
    } else if (!j.was_running || !source_restored) {
        /* Back onto the memory it had; the template dies with this fork. */
        source_memory_back(src, &j);
        struct tp_err e = { 0 };
        if (j.was_running && restore_source(m, src, tdir, &e) < 0) {
            log_error("instance=%s op=fork: source lost during rollback: %s", src->id,
                      tp_err_msg(&e));
            if (src->vm)
                inst_drop_vmm(src);
            inst_transition(m, src, INST_STOPPED, NULL);
        }
        tp_err_clear(&e);
        fs_rm_rf(tdir, NULL);
    } else {
        /* The source already runs on the template, as the same guest: the template stays, and
         * its memory now lives only there. */
        source_cleanup(m, src, drv);
    }
    inst_crashpoint(src, "fork.rolled_back");
done:
    free(kids);
    free(j.children);
    manager_template_unpin(m, j.tid);
    if (templated)
        manager_template_unpin(m, j.old_tid);
    inst_prefetch_finish(src, pf, &t);
    inst_finish_op(m, src, &t, r < 0 ? err : NULL);
out:
    inst_release(m, src);
    if (r < 0 || gc)
        manager_template_gc(m);
    return r;
}

/* Undo one child completely at recovery: whatever of it exists goes. */
static void
recover_destroy_child(struct inst_manager *m, const char *id)
{
    struct inst *c;
    struct inst_paths p;

    if (inst_acquire_id(m, id, &c) >= 0) {
        inst_discard_new(m, c);
        return;
    }
    /* No record (the crash came before its insert): its directory may still exist. */
    inst_paths_init(&p, m->data_dir, id);
    fs_rm_rf(p.dir, NULL);
    inst_paths_clear(&p);
}

void
fork_recover_children(struct inst_manager *m, struct inst *i)
{
    struct fork_journal j;

    if (journal_parse(i->rec->op_data, &j) >= 0 && j.phase != FORK_COMMITTED)
        for (uint32_t k = 0; k < j.n; k++)
            recover_destroy_child(m, j.children[k]);
    free(j.children);
}

/* A daemon died during a fork of i (or during its rollback, or during an earlier recovery of
 * it). Committed → finish the cleanup. Not → undo it: every child goes; the source stays the
 * same guest. Which memory a live source VMM maps is read from the source's template ref, not
 * guessed from the journal: the new template (keep it, the source's memory lives there now) or
 * its own (resume it, the new template goes). No VMM: only the template holds the guest, so it
 * is restored from there onto the memory the source had. */
int
fork_recover(struct inst_manager *m, struct inst *i)
{
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    struct fork_journal j;
    struct tp_err e = { 0 };
    char ref[INST_ID_LEN + 1];
    _cleanup_free_ char *tdir = NULL;

    if (journal_parse(i->rec->op_data, &j) < 0) {
        free(j.children);
        log_error("instance=%s recovery: unreadable fork journal '%s'", i->id,
                  i->rec->op_data ? i->rec->op_data : "");
        return 0; /* the ordinary rules decide */
    }
    tdir = paths_template_dir(m->data_dir, j.tid);
    if (j.phase == FORK_COMMITTED) {
        source_cleanup(m, i, drv);
        log_info("instance=%s recovery: fork was committed: finished", i->id);
        free(j.children);
        return 0;
    }
    for (uint32_t k = 0; k < j.n; k++)
        recover_destroy_child(m, j.children[k]);
    bool on_template = inst_template_get(i, ref) > 0 && strcmp(ref, j.tid) == 0;

    if (!j.was_running) {
        source_memory_back(i, &j); /* its snapshot was only linked: Standby as before */
        fs_rm_rf(tdir, NULL);
    } else if (i->vm) {
        if (inst_recover_vmm(i) > 0) {
            if (on_template) {
                source_cleanup(m, i, drv); /* the source's memory lives in the template now */
            } else {
                fs_rm_rf(tdir, NULL);
                /* Its freeze may have reset the dirty tracking a diff onto its base needs. */
                fs_rm_rf(i->paths.snap_base, NULL);
            }
        }
    }
    if (j.was_running && !i->vm && i->rec->state != INST_UNKNOWN) {
        if (drv && fs_exists(tdir)) {
            source_memory_back(i, &j);
            if (restore_source(m, i, tdir, &e) < 0 && i->vm) {
                hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
                inst_drop_vmm(i);
            }
            if (i->vm)
                fs_rm_rf(tdir, NULL);
        }
        if (!i->vm) {
            free(i->rec->last_error);
            i->rec->last_error =
                xasprintf("fork interrupted and the source could not be brought back: %s",
                          e.code ? tp_err_msg(&e) : "no VMM and no template");
            i->rec->state = INST_STOPPED;
        }
    }
    log_info("instance=%s recovery: fork undone: %u children removed", i->id, j.n);
    tp_err_clear(&e);
    free(j.children);
    return 0;
}
