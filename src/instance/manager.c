/* The lifecycle manager's core: the instance table, per-instance locks, persistence helpers. */
#include "instance/manager.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "instance/console.h"
#include "instance/console_index.h"
#include "instance/manager-internal.h"
#include "instance/observe.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

static struct inst *
inst_free(struct inst *i)
{
    if (!i)
        return NULL;
    hv_vm_release(i->vm);
    agent_conn_free(i->agent);
    inst_record_free(i->rec);
    inst_paths_clear(&i->paths);
    free(i->cmdline);
    snap_ws_free(i->ws_prev);
    free(i->template_dir);
    free(i->api_sock);
    free(i->agent_sock);
    safe_close(i->boot_pidfd);
    pthread_mutex_destroy(&i->lock);
    free(i);
    return NULL;
}

struct inst *
inst_table_add(struct inst_manager *m, struct inst_record *rec)
{
    struct inst *i = xnew(struct inst, 1);
    i->m = m;
    i->boot_pidfd = -1;
    memcpy(i->id, rec->id, sizeof(i->id));
    pthread_mutex_init(&i->lock, NULL);
    i->rec = rec;
    i->obs_state = rec->state;
    inst_paths_init(&i->paths, m->data_dir, rec->id);

    pthread_mutex_lock(&m->lock);
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->tab = xrealloc(m->tab, m->cap * sizeof(*m->tab));
    }
    m->tab[m->n++] = i;
    pthread_mutex_unlock(&m->lock);
    return i;
}

void
inst_table_remove(struct inst_manager *m, struct inst *i)
{
    pthread_mutex_lock(&m->lock);
    i->removed = true; /* under m->lock: the last inst_release() must see it */
    for (size_t k = 0; k < m->n; k++)
        if (m->tab[k] == i) {
            m->tab[k] = m->tab[--m->n];
            break;
        }
    pthread_mutex_unlock(&m->lock);
}

int
inst_acquire_id(struct inst_manager *m, const char *id, struct inst **ret)
{
    struct inst *found = NULL;

    pthread_mutex_lock(&m->lock);
    for (size_t k = 0; k < m->n; k++)
        if (strcmp(m->tab[k]->id, id) == 0) {
            found = m->tab[k];
            found->refs++;
            break;
        }
    pthread_mutex_unlock(&m->lock);
    if (!found)
        return -ENOENT;

    pthread_mutex_lock(&found->lock);
    if (found->removed) {
        inst_release(m, found);
        return -ENOENT;
    }
    *ret = found;
    return 0;
}

int
inst_acquire(struct inst_manager *m, const char *ref, struct inst **ret, struct tp_err *err)
{
    char id[INST_ID_LEN + 1];
    int r = store_resolve(m->store, ref, id, err);
    if (r < 0)
        return r;
    r = inst_acquire_id(m, id, ret);
    if (r < 0)
        return tp_err_set(err, r, "no such instance '%s'", ref);
    return 0;
}

int
inst_cancel_boot(struct inst_manager *m, const char *id)
{
    int r = -ESRCH;
    pthread_mutex_lock(&m->lock);
    for (size_t k = 0; k < m->n; k++) {
        struct inst *i = m->tab[k];
        if (strcmp(i->id, id) != 0 || !i->booting)
            continue;
        i->boot_cancelled = true;
        if (i->boot_pidfd >= 0)
            (void)proc_pidfd_signal(i->boot_pidfd, SIGKILL); /* ESRCH: it died already */
        r = 0;
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

void
inst_boot_track(struct inst_manager *m, struct inst *i, bool booting, const struct hv_vm *vm)
{
    pthread_mutex_lock(&m->lock);
    if (booting && !i->booting)
        i->boot_cancelled = false;
    i->booting = booting;
    i->boot_pidfd = safe_close(i->boot_pidfd);
    if (vm)
        i->boot_pidfd = fcntl(vm->pidfd, F_DUPFD_CLOEXEC, 3);
    if (i->boot_cancelled && i->boot_pidfd >= 0)
        (void)proc_pidfd_signal(i->boot_pidfd, SIGKILL);
    pthread_mutex_unlock(&m->lock);
}

void
inst_release(struct inst_manager *m, struct inst *i)
{
    bool last, removed;
    pthread_mutex_unlock(&i->lock);
    pthread_mutex_lock(&m->lock);
    last = --i->refs == 0;
    removed = i->removed;
    pthread_mutex_unlock(&m->lock);
    /* A removed instance is out of the table, so no new reference can appear. */
    if (last && removed)
        inst_free(i);
}

void
manager_notify_change(struct inst_manager *m)
{
    pthread_mutex_lock(&m->change_lock);
    m->change_gen++;
    pthread_cond_broadcast(&m->change_cv);
    pthread_mutex_unlock(&m->change_lock);
}

void
inst_manager_quiesce(struct inst_manager *m)
{
    pthread_mutex_lock(&m->change_lock);
    m->quiescing = true;
    m->change_gen++;
    pthread_cond_broadcast(&m->change_cv);
    pthread_mutex_unlock(&m->change_lock);
}

int
inst_wait_state(struct inst_manager *m, const char *ref, enum inst_state state, int timeout_ms,
                struct inst_record **ret, struct tp_err *err)
{
    char id[INST_ID_LEN + 1];
    struct timespec deadline;
    int r = store_resolve(m->store, ref, id, err);
    if (r < 0)
        return r;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    for (;;) {
        struct inst_record *rec = NULL;
        pthread_mutex_lock(&m->change_lock);
        uint64_t gen = m->change_gen;
        bool quiescing = m->quiescing;
        pthread_mutex_unlock(&m->change_lock);
        if (quiescing)
            return tp_err_set(err, -ESHUTDOWN, "torpord is shutting down");

        r = store_get(m->store, id, &rec, NULL);
        if (r == -ENOENT)
            return tp_err_set(err, r, "instance '%s' was removed", ref);
        if (r < 0)
            return tp_err_set(err, r, "read instance '%s'", ref);
        if (rec->state == state) {
            *ret = rec;
            return 0;
        }
        inst_record_free(rec);

        pthread_mutex_lock(&m->change_lock);
        r = 0;
        while (m->change_gen == gen && r != ETIMEDOUT)
            r = pthread_cond_timedwait(&m->change_cv, &m->change_lock, &deadline);
        pthread_mutex_unlock(&m->change_lock);
        if (r == ETIMEDOUT)
            return tp_err_set(err, -ETIMEDOUT, "instance '%s' did not reach %s within %d ms", ref,
                              inst_state_to_string(state), timeout_ms);
    }
}

int
inst_save(struct inst_manager *m, struct inst *i, struct tp_err *err)
{
    int r = store_update(m->store, i->rec, err);
    if (r < 0)
        return tp_err_wrap(err, "save instance '%s'", i->rec->name);
    inst_obs_saved(i);
    manager_notify_change(m);
    return 0;
}

int
inst_transition(struct inst_manager *m, struct inst *i, enum inst_state to, struct tp_err *err)
{
    enum inst_state from = i->rec->state;
    if (!inst_state_can(from, to))
        return tp_err_set(err, -EBUSY, "instance '%s': no transition from %s to %s", i->rec->name,
                          inst_state_to_string(from), inst_state_to_string(to));
    i->rec->state = to;
    i->rec->state_changed_ms = wall_ms();
    if (i->vm && (to == INST_RUNNING || to == INST_PAUSED)) {
        i->rec->vmm_pid = i->vm->pid;
        i->rec->vmm_start_time = i->vm->start_time;
    } else if (!i->vm) {
        i->rec->vmm_pid = 0;
        i->rec->vmm_start_time = 0;
    }
    return inst_save(m, i, err);
}

int
inst_require_state(struct inst *i, const char *what, unsigned allowed, struct tp_err *err)
{
    if (allowed & STATE_BIT(i->rec->state))
        return 0;
    return tp_err_set(err, -EBUSY, "cannot %s instance '%s': it is %s%s", what, i->rec->name,
                      inst_state_to_string(i->rec->state),
                      i->rec->state == INST_PAUSED ? " (unpause it first: torpor unpause)" : "");
}

void
inst_discard_new(struct inst_manager *m, struct inst *i)
{
    struct tp_err e = { 0 };
    inst_kill_vmm(i);
    inst_net_release(m, i);
    if (fs_rm_rf(i->paths.dir, &e) < 0)
        log_warn("instance=%s: %s", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
    if (store_delete(m->store, i->id, &e) < 0 && e.code != -ENOENT)
        log_warn("instance=%s: %s", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
    inst_table_remove(m, i);
    manager_notify_change(m);
    inst_release(m, i);
}

void
inst_op_set(struct inst *i, const char *op, const char *data)
{
    free(i->rec->op);
    free(i->rec->op_data);
    i->rec->op = xstrdup(op);
    i->rec->op_data = data ? xstrdup(data) : NULL;
}

int
inst_op_begin(struct inst_manager *m, struct inst *i, const char *op, const char *data,
              struct tp_err *err)
{
    inst_op_set(i, op, data);
    return inst_save(m, i, err);
}

int
inst_op_progress(struct inst_manager *m, struct inst *i, const char *data, struct tp_err *err)
{
    free(i->rec->op_data);
    i->rec->op_data = data ? xstrdup(data) : NULL;
    return inst_save(m, i, err);
}

void
inst_finish_op(struct inst_manager *m, struct inst *i, struct trace *t, const struct tp_err *err)
{
    struct tp_err serr = { 0 };
    _cleanup_free_ char *line = NULL;

    i->rec->op = mfree(i->rec->op);
    i->rec->op_data = mfree(i->rec->op_data);
    trace_end(t, !err || err->code == 0);
    free(i->rec->last_op);
    i->rec->last_op = trace_to_json(t);
    free(i->rec->last_error);
    i->rec->last_error = err && err->code ? xstrdup(tp_err_msg(err)) : NULL;
    if (inst_save(m, i, &serr) < 0)
        log_error("instance=%s op=%s: %s", i->id, t->op, tp_err_msg(&serr));
    tp_err_clear(&serr);

    inst_obs_op_end(i, t, err);
    line = trace_to_line(t);
    if (err && err->code)
        log_warn("instance=%s op=%s failed: %s [%s]", i->id, t->op, tp_err_msg(err), line);
    else
        log_info("instance=%s op=%s %s", i->id, t->op, line);
}

int
inst_manager_open(const struct inst_manager_opts *o, struct inst_manager **ret, struct tp_err *err)
{
    struct inst_manager *m = xnew(struct inst_manager, 1);
    _cleanup_free_ char *instances = NULL;
    int r;

    m->data_dir = xstrdup(o->data_dir);
    m->cache_dir = xstrdup(o->cache_dir);
    m->agent_path = xstrdup(o->agent_path);
    m->accel = o->accel ? xstrdup(o->accel) : NULL;
    m->console_log_max = o->console_log_max ? o->console_log_max : CONSOLE_LOG_MAX_DEFAULT;
    m->no_warm_runs = o->no_warm_runs;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->change_lock, NULL);
    pthread_mutex_init(&m->template_lock, NULL);
    pthread_mutex_init(&m->workers_lock, NULL);
    pthread_mutex_init(&m->net_lock, NULL);
    pthread_cond_init(&m->workers_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->change_cv, &ca);
    pthread_condattr_destroy(&ca);

    instances = paths_instances_dir(m->data_dir);
    r = fs_mkdir_p(instances, 0700, err);
    if (r < 0)
        goto fail;
    r = store_open(m->data_dir, &m->store, err);
    if (r < 0)
        goto fail;
    r = monitor_start(m, &m->mon, err);
    if (r < 0)
        goto fail;
    if (o->subnet) {
        /* Before recovery: it may restore guests, and they need their TAPs. */
        m->subnet = *o->subnet;
        r = net_host_setup(&m->subnet, err);
        if (r < 0)
            goto fail;
        m->net_on = true;
        m->net_dns = net_host_dns();
    }
    r = inst_reconcile(m, err);
    if (r < 0)
        goto fail;
    inst_net_reclaim(m);
    *ret = m;
    return 0;
fail:
    inst_manager_free(m);
    return r;
}

struct inst_manager *
inst_manager_free(struct inst_manager *m)
{
    if (!m)
        return NULL;
    /* Let detached fork helpers finish, then stop watching, so no handler runs against a
     * half-freed table. */
    pthread_mutex_lock(&m->workers_lock);
    while (m->workers > 0)
        pthread_cond_wait(&m->workers_cv, &m->workers_lock);
    pthread_mutex_unlock(&m->workers_lock);
    monitor_stop(m->mon);
    for (size_t k = 0; k < m->n; k++)
        inst_free(m->tab[k]);
    free(m->tab);
    free(m->pinned);
    store_close(m->store);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->change_lock);
    pthread_mutex_destroy(&m->template_lock);
    pthread_mutex_destroy(&m->workers_lock);
    pthread_mutex_destroy(&m->net_lock);
    pthread_cond_destroy(&m->workers_cv);
    pthread_cond_destroy(&m->change_cv);
    free(m->data_dir);
    free(m->cache_dir);
    free(m->agent_path);
    free(m->accel);
    free(m->net_dns);
    free(m);
    return NULL;
}

void
manager_tick(struct inst_manager *m)
{
    char **ids;
    size_t n = 0;

    /* Ids only, under the table lock: the trimming itself must not hold up operations. */
    pthread_mutex_lock(&m->lock);
    ids = xnew(char *, m->n + 1);
    for (size_t k = 0; k < m->n; k++)
        ids[n++] = xstrdup(m->tab[k]->id);
    pthread_mutex_unlock(&m->lock);
    for (size_t k = 0; k < n; k++) {
        struct inst_paths p;
        uint64_t cut = 0;

        inst_paths_init(&p, m->data_dir, ids[k]);
        monitor_watch_console(m->mon, ids[k]);
        /* Index first: bytes the cap is about to drop never need a time. */
        int r = console_index_note(p.console_log, p.console_idx, wall_ns());
        if (r < 0)
            log_debug("instance=%s: index console log: %s", ids[k], strerror(-r));
        r = console_log_trim(p.console_log, m->console_log_max, &cut);
        if (r < 0)
            log_warn_errno(r, "cap console log '%s'", p.console_log);
        else if (cut) {
            log_debug("console log '%s': dropped its oldest %llu bytes", p.console_log,
                      (unsigned long long)cut);
            r = console_index_compact(p.console_log, p.console_idx, CONSOLE_INDEX_MAX_RECORDS);
            if (r < 0)
                log_debug("instance=%s: compact console index: %s", ids[k], strerror(-r));
        }
        inst_paths_clear(&p);
    }
    strv_free(ids);
}

int
inst_list(struct inst_manager *m, struct inst_record ***ret, size_t *ret_n, struct tp_err *err)
{
    return store_list(m->store, ret, ret_n, err);
}

int
inst_get(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    char id[INST_ID_LEN + 1];
    int r = store_resolve(m->store, ref, id, err);
    if (r < 0)
        return r;
    return store_get(m->store, id, ret, err);
}

int
inst_console_log(struct inst_manager *m, const char *ref, char **ret_path, char **ret_idx,
                 struct tp_err *err)
{
    /* No instance lock: logs must be readable while a long operation (boot) holds it. */
    char id[INST_ID_LEN + 1];
    struct inst_paths p;
    int r = store_resolve(m->store, ref, id, err);
    if (r < 0)
        return r;
    inst_paths_init(&p, m->data_dir, id);
    *ret_path = xstrdup(p.console_log);
    if (ret_idx)
        *ret_idx = xstrdup(p.console_idx);
    inst_paths_clear(&p);
    return 0;
}
