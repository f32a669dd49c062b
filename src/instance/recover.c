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
        /* A VMM killed a moment ago is still dying: its socket is gone, its process not yet.
         * Give it that moment before calling it alive but silent. */
        int pidfd = proc_pidfd_open(rec->vmm_pid);
        bool gone = pidfd < 0 || proc_pidfd_wait(pidfd, rec->vmm_pid, 500) == 0;
        if (pidfd >= 0)
            close(pidfd);
        if (gone || !proc_is_alive(rec->vmm_pid, rec->vmm_start_time)) {
            tp_err_clear(&err);
            return 0;
        }
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
 * decides. A live VMM runs the guest (resumed if paused, unless user_paused: the record says
 * Paused with no operation in flight, so `pause` left it so and only `unpause` resumes it);
 * else a complete snapshot means Standby; else nothing survived. A VMM that does not answer is
 * kept and said Unknown, never killed on a guess. */
static void
derive(struct inst *i, bool user_paused)
{
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    struct tp_err err = { 0 };
    enum hv_run_state rs;

    if (user_paused && i->vm) {
        if (hv_query(i->vm, &rs, &err) >= 0 && rs == HV_RUN_PAUSED) {
            i->rec->state = INST_PAUSED;
            return;
        }
        tp_err_clear(&err); /* inst_recover_vmm asks again, and decides */
    }
    int v = inst_recover_vmm(i);
    if (v < 0)
        return; /* Unknown */
    if (v > 0) {
        /* A live VMM consumed snapshot-latest: it is the retained base now. */
        if (fs_exists(i->paths.snap_latest) &&
            snap_retire_latest(i->paths.snap_latest, i->paths.snap_base,
                               inst_base_worth_keeping(i, drv, i->paths.snap_latest), &err) < 0)
            log_warn("instance=%s: %s", i->id, tp_err_msg(&err));
        tp_err_clear(&err);
        i->rec->state = INST_RUNNING;
        return;
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
    /* A guest that ran died while no daemon watched: how, nobody saw (wait says killed),
     * unless it was an image's workload that ended and left its code on the disk. */
    if (i->rec->state != INST_STOPPED) {
        int code = i->rec->cfg.image ? inst_workload_exit_code(i) : -ENOENT;
        i->rec->exit_code = code >= 0 ? code : 128 + SIGKILL;
    }
    i->rec->state = INST_STOPPED;
}

int
inst_recover_vmm(struct inst *i)
{
    struct tp_err err = { 0 };
    enum hv_run_state rs = HV_RUN_OTHER;
    int r;

    if (!i->vm)
        return 0;
    r = hv_query(i->vm, &rs, &err);
    if (r >= 0 && rs == HV_RUN_LOADING) {
        /* Never told to load (-ENODATA), or the load failed: it holds nothing of the guest. */
        if (hv_finish_load(i->vm, AGENT_RECONNECT_TIMEOUT_MS, &err) < 0) {
            log_info("instance=%s recovery: VMM did not load: %s", i->id, tp_err_msg(&err));
            tp_err_clear(&err);
            rs = HV_RUN_OTHER;
        } else
            r = hv_query(i->vm, &rs, &err);
    }
    if (r >= 0 && rs == HV_RUN_PAUSED && (r = hv_resume(i->vm, &err)) >= 0)
        rs = HV_RUN_RUNNING;
    if (r < 0) {
        inst_recover_unknown(i, &err);
        return -1;
    }
    if (rs == HV_RUN_RUNNING)
        return 1;
    /* Shut down, failed inside, or never loaded: nothing to keep. */
    hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
    inst_drop_vmm(i);
    return 0;
}

void
inst_recover_unknown(struct inst *i, struct tp_err *err)
{
    log_warn("instance=%s recovery: VMM pid %d does not answer: %s", i->id, (int)i->rec->vmm_pid,
             tp_err_msg(err));
    free(i->rec->last_error);
    i->rec->last_error =
        xasprintf("VMM pid %d does not answer: %s", (int)i->rec->vmm_pid, tp_err_msg(err));
    tp_err_clear(err);
    /* Keep the recorded pid (stop and rm kill by it); drop the handle. */
    inst_drop_vmm(i);
    i->rec->state = INST_UNKNOWN;
}

/* Settle one instance (locked). Returns 1 when it was removed (i released and gone). */
static int recover_settle(struct inst *i);

static int
recover_one(struct inst_manager *m, struct inst *i, int attached)
{
    const char *op = i->rec->op;
    struct tp_err err = { 0 };

    if (op)
        log_info("instance=%s name=%s recovery: '%s' was in flight (%s)", i->id, i->rec->name, op,
                 inst_state_to_string(i->rec->state));
    if (op && strcmp(op, "rm") == 0) {
        /* The user asked for it to go: finish. */
        inst_kill_vmm(i);
        if (fs_rm_rf(i->paths.dir, &err) >= 0 && store_delete(m->store, i->id, &err) >= 0) {
            inst_table_remove(m, i);
            inst_release(m, i);
            return 1;
        }
        log_error("instance=%s recovery: rm: %s", i->id, tp_err_msg(&err));
        tp_err_clear(&err);
        i->rec->state = INST_STOPPED;
    } else if (op && (strcmp(op, "stop") == 0 || strcmp(op, "kill") == 0)) {
        /* The user asked for it to stop: finish, by killing (the graceful part is moot). */
        inst_kill_vmm(i);
        if (inst_discard_runtime_files(i, &err) < 0)
            log_error("instance=%s recovery: %s: %s", i->id, op, tp_err_msg(&err));
        tp_err_clear(&err);
        i->rec->exit_code = strcmp(op, "kill") == 0 ? 128 + SIGKILL : 0;
        i->rec->state = INST_STOPPED;
    } else if (i->rec->state == INST_CREATED && !op && attached >= 0) {
        /* A run in flight: a VMM that boots the guest is adopted; else the run never was. */
        if (!i->vm) {
            log_info("instance=%s name=%s recovery: interrupted run removed", i->id, i->rec->name);
            inst_discard_new(m, i);
            return 1;
        }
        derive(i, false);
    } else if (attached < 0) {
        /* Alive but silent: say so rather than guess. A fork it was the source of still loses
         * its children, and keeps its journal to be finished once the source answers. */
        i->rec->state = INST_UNKNOWN;
        if (op && strcmp(op, "fork") == 0) {
            fork_recover_children(m, i);
            return recover_settle(i);
        }
    } else if (op && strcmp(op, "standby") == 0) {
        standby_recover(m, i);
    } else if (op && strcmp(op, "restore") == 0) {
        restore_recover(m, i);
    } else {
        if (op && strcmp(op, "fork") == 0)
            fork_recover(m, i);
        if (i->rec->state != INST_UNKNOWN)
            derive(i, !op && i->rec->state == INST_PAUSED);
    }

    i->rec->op = mfree(i->rec->op);
    i->rec->op_data = mfree(i->rec->op_data);
    return recover_settle(i);
}

/* Whatever the state, the record names exactly the VMM that runs (or, Unknown, the one that
 * does not answer). */
static int
recover_settle(struct inst *i)
{
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
        /* A whole path: at the start of an argument or of an option's value, so that
         * /srv/data/instances never matches for a data dir /data. */
        while (hit && !(hit == p || hit[-1] == '=' || hit[-1] == ','))
            hit = strstr(hit + 1, instances);
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
    struct inst *i;
    if (inst_acquire_id(m, id, &i) < 0)
        return false;
    bool yes = i->rec->vmm_pid == pid;
    inst_release(m, i);
    return yes;
}

/* VMMs run in sessions of their own (proc_spawn new_session): a user's `tail -f` of a console
 * log names the same paths but is no VMM. */
static bool
session_leader(long pid)
{
    _cleanup_free_ char *path = xasprintf("/proc/%ld/stat", pid);
    _cleanup_free_ char *stat = NULL;
    long sid = 0;

    if (fs_read_file(path, 4096, &stat, NULL, NULL) < 0)
        return false;
    const char *p = strrchr(stat, ')');
    /* After "pid (comm)": state ppid pgrp session */
    return p && sscanf(p + 2, "%*c %*d %*d %ld", &sid) == 1 && sid == pid;
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
            !cmdline_instance(instances, cmd, len, id) || !session_leader(pid) ||
            owned(m, id, (pid_t)pid))
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

    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        /* Only what is certainly no instance's: the table recovery just loaded. */
        struct inst *i;
        if (!store_id_valid(de->d_name))
            continue;
        if (inst_acquire_id(m, de->d_name, &i) >= 0) {
            inst_release(m, i);
            continue;
        }
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
    /* Strays next: one holding a guest's disk or sockets must be gone before anything is
     * restored. */
    kill_strays(m);
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
    remove_orphan_dirs(m);
    manager_template_gc(m);
    free(ids);
    free(attached);
    inst_record_array_free(recs, n);
    return 0;
}
