/* Startup recovery. A daemon may die (kill -9, power) at any instant of any operation; the next
 * one finishes or undoes what was in flight, from the operation journal (store.h: op, op_data)
 * and what really exists: VMMs found by recorded pid + start time, complete snapshots. Then it
 * kills VMMs that no record owns and drops files nothing refers to. docs/design/recovery.md has
 * the table of crash points and what happens to each. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "instance/manager-internal.h"
#include "snapshot/snapshot.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/xalloc.h"

/* Attach to the VMM the record names, if it lives. 1 attached, 0 none, -1 alive but not
 * answering (it stays recorded so that stop and rm can kill it). */
static int
attach_recorded(struct inst_manager *m, struct inst *i)
{
    struct inst_record *rec = i->rec;
    const struct hv_driver *drv = hv_driver_find(rec->cfg.hypervisor);
    struct tp_err err = { 0 };
    struct hv_vm_spec spec;

    if (!drv || rec->vmm_pid <= 0 || !proc_is_alive(rec->vmm_pid, rec->vmm_start_time))
        return 0;
    inst_spec(m, i, &spec);
    if (hv_attach(drv, &spec, rec->vmm_pid, rec->vmm_start_time, &i->vm, &err) < 0) {
        free(rec->last_error);
        rec->last_error =
            xasprintf("VMM pid %d does not answer: %s", (int)rec->vmm_pid, tp_err_msg(&err));
        tp_err_clear(&err);
        return -1;
    }
    monitor_watch(m->mon, i->id, i->vm);
    return 1;
}

/* No operation in flight (or one whose own recovery left the rest to this): what exists
 * decides. A live VMM runs the guest (resumed unless a user paused it); else a complete
 * snapshot means Standby; else nothing survived. */
static void
derive(struct inst *i, bool had_op)
{
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    struct tp_err err = { 0 };
    enum hv_run_state rs = HV_RUN_OTHER;

    if (i->vm) {
        if (hv_query(i->vm, &rs, &err) < 0) {
            log_warn("instance=%s recovery: %s", i->id, tp_err_msg(&err));
            tp_err_clear(&err);
        }
        if (rs == HV_RUN_LOADING && hv_finish_load(i->vm, AGENT_RECONNECT_TIMEOUT_MS, &err) >= 0)
            hv_query(i->vm, &rs, &err);
        tp_err_clear(&err);
        bool user_paused = rs == HV_RUN_PAUSED && i->rec->state == INST_PAUSED && !had_op;
        if (rs == HV_RUN_PAUSED && !user_paused && hv_resume(i->vm, &err) >= 0)
            rs = HV_RUN_RUNNING;
        tp_err_clear(&err);
        if (rs == HV_RUN_RUNNING || rs == HV_RUN_PAUSED) {
            /* A live VMM consumed snapshot-latest: it is the retained base now. */
            if (fs_exists(i->paths.snap_latest) &&
                snap_retire_latest(i->paths.snap_latest, i->paths.snap_base,
                                   drv && hv_has_cap(drv, HV_CAP_SNAPSHOT_BASE_REUSE), &err) < 0)
                log_warn("instance=%s: %s", i->id, tp_err_msg(&err));
            tp_err_clear(&err);
            i->rec->state = rs == HV_RUN_PAUSED ? INST_PAUSED : INST_RUNNING;
            return;
        }
        /* Shut down or failed inside: nothing to keep. */
        hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
        inst_drop_vmm(i);
    }
    if (fs_exists(i->paths.snap_latest)) {
        if (snap_validate(i->paths.snap_latest, NULL, &err) >= 0) {
            i->rec->state = INST_STANDBY;
            return;
        }
        free(i->rec->last_error);
        i->rec->last_error = xasprintf("incomplete snapshot discarded: %s", tp_err_msg(&err));
        tp_err_clear(&err);
        snap_discard(i->paths.snap_latest, NULL);
    }
    i->rec->state = INST_STOPPED;
}

/* Kill whatever VMM i has, handle or recorded pid. */
static void
kill_vmm(struct inst *i)
{
    if (i->vm) {
        hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
        inst_drop_vmm(i);
    } else if (i->rec->vmm_pid > 0)
        inst_kill_recorded_vmm(i, NULL);
}

/* Settle one instance (locked). Returns 1 when it was removed (i released and gone). */
static int
recover_one(struct inst_manager *m, struct inst *i, int attached)
{
    const char *op = i->rec->op;
    bool had_op = op != NULL;
    struct tp_err err = { 0 };

    if (op)
        log_info("instance=%s name=%s recovery: '%s' was in flight (%s)", i->id, i->rec->name, op,
                 inst_state_to_string(i->rec->state));
    if (op && strcmp(op, "rm") == 0) {
        /* The user asked for it to go: finish. */
        kill_vmm(i);
        if (fs_rm_rf(i->paths.dir, &err) >= 0 && store_delete(m->store, i->id, &err) >= 0) {
            inst_table_remove(m, i);
            inst_release(m, i);
            return 1;
        }
        log_error("instance=%s recovery: rm: %s", i->id, tp_err_msg(&err));
        tp_err_clear(&err);
        i->rec->state = INST_STOPPED;
    } else if (op && strcmp(op, "stop") == 0) {
        kill_vmm(i);
        if (inst_discard_runtime_files(i, &err) < 0)
            log_error("instance=%s recovery: stop: %s", i->id, tp_err_msg(&err));
        tp_err_clear(&err);
        i->rec->state = INST_STOPPED;
    } else if (i->rec->state == INST_CREATED && !op) {
        /* A run in flight: a VMM that boots the guest is adopted; else the run never was. */
        if (!i->vm) {
            log_info("instance=%s name=%s recovery: interrupted run removed", i->id, i->rec->name);
            inst_discard_new(m, i);
            return 1;
        }
        derive(i, true);
    } else if (attached < 0) {
        i->rec->state = INST_UNKNOWN; /* alive but silent: say so rather than guess */
    } else if (op && strcmp(op, "standby") == 0) {
        standby_recover(m, i);
    } else if (op && strcmp(op, "restore") == 0) {
        restore_recover(m, i);
    } else {
        if (op && strcmp(op, "fork") == 0)
            fork_recover(m, i);
        derive(i, had_op);
    }

    i->rec->op = mfree(i->rec->op);
    i->rec->op_data = mfree(i->rec->op_data);
    if (i->vm) {
        i->rec->vmm_pid = i->vm->pid;
        i->rec->vmm_start_time = i->vm->start_time;
    } else if (i->rec->state != INST_UNKNOWN) {
        i->rec->vmm_pid = 0;
        i->rec->vmm_start_time = 0;
    }
    return 0;
}

/* The instance id in a VMM's command line: it names files in DATA/instances/<id>/. */
static bool
cmdline_instance(const char *instances, const char *cmdline, size_t len,
                 char ret_id[INST_ID_LEN + 1])
{
    size_t n = strlen(instances);
    for (const char *p = cmdline; p < cmdline + len; p += strlen(p) + 1) {
        const char *hit = strstr(p, instances);
        if (!hit || hit[n] != '/')
            continue;
        const char *id = hit + n + 1;
        size_t k = 0;
        while (k < INST_ID_LEN && isxdigit((unsigned char)id[k]))
            k++;
        if (k == INST_ID_LEN && id[k] == '/') {
            memcpy(ret_id, id, INST_ID_LEN);
            ret_id[INST_ID_LEN] = '\0';
            return true;
        }
    }
    return false;
}

/* Whether pid is the VMM that instance id's record owns. */
static bool
owned(struct inst_manager *m, const char *id, pid_t pid)
{
    bool yes = false;
    pthread_mutex_lock(&m->lock);
    for (size_t k = 0; k < m->n; k++)
        if (strcmp(m->tab[k]->id, id) == 0)
            yes = m->tab[k]->rec->vmm_pid == pid;
    pthread_mutex_unlock(&m->lock);
    return yes;
}

/* Every process whose command line names an instance dir of this data dir is a VMM torpor
 * started; one its record does not name must not run a guest behind the records' back. */
static void
kill_strays(struct inst_manager *m)
{
    _cleanup_free_ char *instances = paths_instances_dir(m->data_dir);
    DIR *d = opendir("/proc");
    struct dirent *de;

    while (d && (de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid())
            continue;
        _cleanup_free_ char *path = xasprintf("/proc/%ld/cmdline", pid);
        _cleanup_free_ char *cmd = NULL;
        size_t len = 0;
        char id[INST_ID_LEN + 1];
        if (fs_read_file(path, 1 << 20, &cmd, &len, NULL) < 0 ||
            !cmdline_instance(instances, cmd, len, id) || owned(m, id, (pid_t)pid))
            continue;
        int pidfd = proc_pidfd_open((pid_t)pid);
        if (pidfd < 0)
            continue;
        log_warn("recovery: killing VMM pid %ld of instance %s: no record owns it", pid, id);
        if (proc_pidfd_signal(pidfd, SIGKILL) >= 0)
            proc_pidfd_wait(pidfd, (pid_t)pid, VMM_KILL_TIMEOUT_MS);
        close(pidfd);
    }
    if (d)
        closedir(d);
}

/* Instance dirs without a record: a run or fork child that died before (or after) its record. */
static void
remove_orphan_dirs(struct inst_manager *m)
{
    _cleanup_free_ char *instances = paths_instances_dir(m->data_dir);
    DIR *d = opendir(instances);
    struct dirent *de;
    char id[INST_ID_LEN + 1];

    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (store_resolve(m->store, de->d_name, id, NULL) >= 0 && strcmp(id, de->d_name) == 0)
            continue;
        _cleanup_free_ char *dir = fs_path_join(instances, de->d_name);
        log_info("recovery: removing '%s': no instance record", dir);
        fs_rm_rf(dir, NULL);
    }
    if (d)
        closedir(d);
}

int
inst_reconcile(struct inst_manager *m, struct tp_err *err)
{
    struct inst_record **recs = NULL;
    size_t n = 0;
    int r = store_list(m->store, &recs, &n, err);
    if (r < 0)
        return r;
    int *attached = xnew(int, n + 1);
    char(*ids)[INST_ID_LEN + 1] = xzalloc((INST_ID_LEN + 1) * (n + 1));

    /* First every live VMM is found again, so that any recovery can act on any instance. */
    for (size_t k = 0; k < n; k++) {
        struct inst *i = inst_table_add(m, TAKE_PTR(recs[k]));
        memcpy(ids[k], i->id, sizeof(ids[k]));
        attached[k] = attach_recorded(m, i);
    }
    /* Forks first: undoing one removes its children before the ordinary rules see them. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t k = 0; k < n; k++) {
            struct inst *i;
            if (inst_acquire_id(m, ids[k], &i) < 0)
                continue; /* removed by an earlier recovery */
            bool fork = i->rec->op && strcmp(i->rec->op, "fork") == 0;
            if (fork != (pass == 0)) {
                inst_release(m, i);
                continue;
            }
            enum inst_state before = i->rec->state;
            if (recover_one(m, i, attached[k]) > 0)
                continue;
            struct tp_err serr = { 0 };
            if (inst_save(m, i, &serr) < 0)
                log_error("instance=%s: %s", i->id, tp_err_msg(&serr));
            tp_err_clear(&serr);
            log_info("instance=%s name=%s state=%s%s%s%s", i->id, i->rec->name,
                     inst_state_to_string(i->rec->state),
                     before != i->rec->state ? " (recorded " : "",
                     before != i->rec->state ? inst_state_to_string(before) : "",
                     before != i->rec->state ? ")" : "");
            bool identity = i->rec->state == INST_RUNNING && i->vm && i->rec->cfg.agent &&
                            fs_exists(i->paths.identity_pending);
            char id[INST_ID_LEN + 1];
            memcpy(id, i->id, sizeof(id));
            inst_release(m, i);
            if (identity)
                inst_identity_later(m, id); /* a fork child that ran before it knew its name */
        }
    kill_strays(m);
    remove_orphan_dirs(m);
    manager_template_gc(m);
    free(ids);
    free(attached);
    inst_record_array_free(recs, n);
    return 0;
}
