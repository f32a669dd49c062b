/* A fake hypervisor driver: a real `sleep` process stands in for the VMM, so kills, pidfds and
 * the manager's exit monitor behave as with a real one; snapshots are a few files on disk.
 * This file holds the process side and QEMU's memory semantics (a shared RAM file in the
 * instance dir, linked into snapshots; a fork template mapped copy-on-write, its guests'
 * memory then carried in their state); fake_fc.c holds Firecracker's. */
#include "fake_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_internal.h"
#include "hypervisor/hv.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/xalloc.h"

#define FAKE_REAP_MS  5000
#define FAKE_MEM_FILE "mem" /* the QEMU-like model's guest RAM file in the instance dir */

pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fake_inst *fake_insts;
static void (*fake_restore_hook)(const char *id, void *ctx); /* under fake_lock */
static void *fake_restore_ctx;
static enum fake_model fake_model; /* set before any driver runs */
static unsigned fake_violations;   /* under fake_lock */
static char fake_violation_msg[512];

struct fake_inst *
fake_inst_get(const char *id)
{
    struct fake_inst *fi;

    for (fi = fake_insts; fi; fi = fi->next)
        if (strcmp(fi->id, id) == 0)
            return fi;
    fi = xnew(struct fake_inst, 1);
    snprintf(fi->id, sizeof(fi->id), "%s", id);
    fi->mapped_fd = -EBADF;
    fi->next = fake_insts;
    fake_insts = fi;
    return fi;
}

struct fake_inst *
fake_inst_first(void)
{
    return fake_insts;
}

struct fake_inst *
fake_vm_enter(struct hv_vm *vm)
{
    struct fake_inst *fi = vm->priv;
    snprintf(fi->calls.last_driver, sizeof(fi->calls.last_driver), "%s",
             vm->drv ? vm->drv->name : "");
    return fi;
}

static void
fake_abort_child(pid_t pid, int pidfd)
{
    if (pidfd >= 0) {
        (void)proc_pidfd_signal(pidfd, SIGKILL);
        (void)proc_pidfd_wait(pidfd, pid, FAKE_REAP_MS);
    }
}

/* Start the stand-in VMM: a process in its own session, as a real VMM would be. */
static int
fake_spawn(struct fake_inst *fi, const struct hv_vm_spec *spec, struct hv_vm **ret_vm,
           struct tp_err *err)
{
    static char *const argv[] = { (char *)"sleep", (char *)"100000", NULL };
    const struct proc_spawn_opts so = {
        .argv = argv,
        .stdin_fd = -1,
        .stdout_fd = -1,
        .stderr_fd = -1,
        .new_session = true,
        .before_exec = spec->vmm_spawned ? hv_spawn_report : NULL,
        .before_exec_ctx = (void *)spec,
    };
    _cleanup_close_ int pidfd = -EBADF;
    uint64_t start_time = 0;
    struct hv_vm *vm;
    pid_t pid;
    int r;

    r = proc_spawn(&so, &pid, err);
    if (r < 0)
        return tp_err_wrap(err, "start fake VMM");
    pidfd = proc_pidfd_open(pid);
    if (pidfd < 0) {
        kill(pid, SIGKILL);
        return tp_err_errno(err, pidfd, "open pidfd of fake VMM %d", (int)pid);
    }
    r = proc_start_time(pid, &start_time);
    if (r < 0) {
        fake_abort_child(pid, pidfd);
        return tp_err_errno(err, r, "read start time of fake VMM %d", (int)pid);
    }

    vm = xnew(struct hv_vm, 1);
    vm->pid = pid;
    vm->start_time = start_time;
    vm->pidfd = TAKE_FD(pidfd);
    vm->priv = fi;
    pthread_mutex_lock(&fake_lock);
    fi->calls.pid = pid;
    fi->calls.start_time = start_time;
    pthread_mutex_unlock(&fake_lock);
    *ret_vm = vm;
    return 0;
}

int
fake_violation(struct tp_err *err, const char *fmt, ...)
{
    char msg[sizeof(fake_violation_msg)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&fake_lock);
    fake_violations++;
    snprintf(fake_violation_msg, sizeof(fake_violation_msg), "%s", msg);
    pthread_mutex_unlock(&fake_lock);
    return tp_err_set(err, -EPERM, "memory rule broken: %s", msg);
}

/* The QEMU-like guest RAM file, sized like the VM (sparse): its own, or the template's image
 * it maps copy-on-write (which must exist: nothing creates it). */
static int
fake_mem_file(const struct hv_vm_spec *spec, struct tp_err *err)
{
    if (spec->template_dir) {
        _cleanup_free_ char *image = fs_path_join(spec->template_dir, HV_SNAP_MEMORY);
        if (!fs_exists(image))
            return tp_err_set(err, -ENOENT, "template memory '%s' is missing", image);
        return 0;
    }
    _cleanup_free_ char *path = fs_path_join(spec->dir, FAKE_MEM_FILE);
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;

    if (fd < 0)
        return tp_err_errno(err, -errno, "create guest memory '%s'", path);
    if (fstat(fd, &st) < 0)
        return tp_err_errno(err, -errno, "stat guest memory '%s'", path);
    if (st.st_size == 0 && ftruncate(fd, (off_t)(spec->memory_mib * FAKE_MIB)) < 0)
        return tp_err_errno(err, -errno, "size guest memory '%s'", path);
    return 0;
}

static int
fake_launch(const struct hv_vm_spec *spec, struct hv_vm **ret_vm, struct tp_err *err)
{
    struct fake_inst *fi;
    int r;

    fake_fc_check_mapped();
    pthread_mutex_lock(&fake_lock);
    fi = fake_inst_get(spec->id);
    fi->calls.launch++;
    fi->paused = false;
    pthread_mutex_unlock(&fake_lock);

    /* Firecracker's guest memory is anonymous after a boot. */
    if (fake_model == FAKE_MODEL_QEMU) {
        r = fake_mem_file(spec, err);
        if (r < 0)
            return r;
    }
    return fake_spawn(fi, spec, ret_vm, err);
}

static int
fake_attach(const struct hv_vm_spec *spec, pid_t pid, uint64_t start_time, struct hv_vm **ret_vm,
            struct tp_err *err)
{
    struct fake_inst *fi;
    struct hv_vm *vm;
    bool fail;
    int pidfd;

    pthread_mutex_lock(&fake_lock);
    fi = fake_inst_get(spec->id);
    fi->calls.attach++;
    fail = fi->fail_attach;
    pthread_mutex_unlock(&fake_lock);

    if (fail)
        return tp_err_set(err, -ETIMEDOUT, "fake VMM %d does not answer (injected)", (int)pid);
    if (!proc_is_alive(pid, start_time))
        return tp_err_set(err, -ESRCH, "fake VMM %d is gone", (int)pid);
    pidfd = proc_pidfd_open(pid);
    if (pidfd < 0)
        return tp_err_errno(err, pidfd, "open pidfd of fake VMM %d", (int)pid);
    vm = xnew(struct hv_vm, 1);
    vm->pid = pid;
    vm->start_time = start_time;
    vm->pidfd = pidfd;
    vm->priv = fi;
    *ret_vm = vm;
    return 0;
}

static int
fake_query(struct hv_vm *vm, enum hv_run_state *ret, struct tp_err *err)
{
    struct fake_inst *fi;
    bool paused;

    if (hv_exited(vm))
        return tp_err_set(err, -ESRCH, "fake VMM %d is gone", (int)vm->pid);
    pthread_mutex_lock(&fake_lock);
    fi = fake_vm_enter(vm);
    paused = fi->paused;
    pthread_mutex_unlock(&fake_lock);
    *ret = paused ? HV_RUN_PAUSED : HV_RUN_RUNNING;
    return 0;
}

/* Pause or resume: only the recorded run state changes (the process keeps sleeping). */
static int
fake_set_paused(struct hv_vm *vm, bool pause, struct tp_err *err)
{
    struct fake_inst *fi;

    pthread_mutex_lock(&fake_lock);
    fi = fake_vm_enter(vm);
    if (pause)
        fi->calls.pause++;
    else
        fi->calls.resume++;
    pthread_mutex_unlock(&fake_lock);

    /* A dead VMM cannot answer, as with a real one. */
    if (hv_exited(vm))
        return tp_err_set(err, -ESRCH, "fake VMM %d is gone", (int)vm->pid);
    pthread_mutex_lock(&fake_lock);
    fi->paused = pause;
    pthread_mutex_unlock(&fake_lock);
    return 0;
}

static int
fake_pause(struct hv_vm *vm, struct tp_err *err)
{
    return fake_set_paused(vm, true, err);
}

static int
fake_resume(struct hv_vm *vm, struct tp_err *err)
{
    return fake_set_paused(vm, false, err);
}

static int
fake_shutdown(struct hv_vm *vm, int timeout_ms, struct tp_err *err)
{
    int r;

    pthread_mutex_lock(&fake_lock);
    fake_vm_enter(vm)->calls.shutdown++;
    pthread_mutex_unlock(&fake_lock);

    r = proc_pidfd_signal(vm->pidfd, SIGKILL);
    if (r < 0 && r != -ESRCH)
        return tp_err_errno(err, r, "stop fake VMM %d", (int)vm->pid);
    r = proc_pidfd_wait(vm->pidfd, vm->pid, timeout_ms);
    if (r < 0)
        return tp_err_errno(err, r, "wait for fake VMM %d", (int)vm->pid);
    return 0;
}

int
fake_write_state(const char *snap_dir, const char *text, struct tp_err *err)
{
    _cleanup_free_ char *state = fs_path_join(snap_dir, HV_SNAP_STATE);
    return fs_write_atomic(state, text, strlen(text), 0600, err);
}

int
fake_snapshot_enter(struct hv_vm *vm, const struct hv_vm_spec *spec, bool diff, struct tp_err *err)
{
    struct fake_inst *fi;
    bool fail, paused;

    pthread_mutex_lock(&fake_lock);
    fi = fake_vm_enter(vm);
    fi->calls.snapshot++;
    fi->calls.snapshot_diff += diff;
    fi->calls.last_snapshot_diff = diff;
    fail = fi->fail_snapshot;
    paused = fi->paused;
    pthread_mutex_unlock(&fake_lock);

    if (fail)
        return tp_err_set(err, -EIO, "fake snapshot of '%s' failed (injected)", spec->id);
    /* The slot's contract: the manager pauses first. */
    if (!paused)
        return tp_err_set(err, -EBUSY, "fake snapshot of '%s' while the guest runs", spec->id);
    return 0;
}

/* QEMU-like: the memory image is the guest RAM file itself, linked; a guest on a template has
 * its RAM only in its process, so it goes into the state. */
static int
fake_snapshot(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *snap_dir, bool diff,
              struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(snap_dir, HV_SNAP_MEMORY);
    _cleanup_free_ char *mem = fs_path_join(spec->dir, FAKE_MEM_FILE);
    int r = fake_snapshot_enter(vm, spec, diff, err);
    if (r < 0)
        return r;
    /* A diff writes onto the retained base, which must be there. */
    if (diff && !fs_exists(memory))
        return tp_err_set(err, -ENOENT, "diff snapshot into '%s' without a base", snap_dir);
    if (diff && spec->template_dir)
        return fake_violation(err, "diff snapshot of '%s', whose memory is a template's", spec->id);
    if (spec->template_dir)
        return fake_write_state(snap_dir, FAKE_STATE_RAM, err);
    r = fake_write_state(snap_dir, FAKE_STATE, err);
    if (r < 0)
        return r;
    if (unlink(memory) < 0 && errno != ENOENT)
        return tp_err_errno(err, -errno, "replace '%s'", memory);
    if (link(mem, memory) < 0)
        return tp_err_errno(err, -errno, "link '%s' to '%s'", mem, memory);
    return 0;
}

static bool
fake_base_reusable(const struct hv_vm_spec *spec, const char *base_dir)
{
    (void)base_dir;
    return !spec->template_dir;
}

static int
fake_prepare_fork(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *tdir,
                  bool keep_source, bool *ret_restart, struct tp_err *err)
{
    pthread_mutex_lock(&fake_lock);
    fake_vm_enter(vm)->calls.prepare_fork++;
    pthread_mutex_unlock(&fake_lock);
    if (keep_source && !spec->template_dir) {
        /* As QEMU's: the template gets a copy of the RAM file, the source keeps its own. */
        int r = fake_snapshot(vm, spec, tdir, false, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *memory = fs_path_join(tdir, HV_SNAP_MEMORY);
        _cleanup_free_ char *copy = fs_path_join(tdir, HV_SNAP_MEMORY ".copy");
        r = fs_clone_file(memory, copy, 0600, err);
        if (r >= 0 && rename(copy, memory) < 0)
            r = tp_err_errno(err, -errno, "rename '%s'", copy);
        if (r < 0)
            return r;
        *ret_restart = false;
        return 0;
    }
    int r = fake_snapshot(vm, spec, tdir, false, err);
    if (r >= 0)
        *ret_restart = true; /* the source's RAM file is the template now */
    return r;
}

static int
fake_drop_memory(const struct hv_vm_spec *spec, bool running, struct tp_err *err)
{
    _cleanup_free_ char *mem = fs_path_join(spec->dir, FAKE_MEM_FILE);
    if (running && !spec->template_dir)
        return 0;
    if (unlink(mem) < 0 && errno != ENOENT)
        return tp_err_errno(err, -errno, "remove '%s'", mem);
    return 0;
}

static bool
fake_load_writes_snapshot(const struct hv_vm_spec *spec, const char *snap_dir)
{
    _cleanup_free_ char *memory = fs_path_join(snap_dir, HV_SNAP_MEMORY);
    return !spec->template_dir && fs_exists(memory);
}

/* QEMU-like restore: the snapshot's image becomes the RAM file again (same inode); without one
 * the memory comes from the state into a fresh file. */
static int
fake_load_memory(const struct hv_vm_spec *spec, const char *snap_dir, struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(snap_dir, HV_SNAP_MEMORY);
    _cleanup_free_ char *mem = fs_path_join(spec->dir, FAKE_MEM_FILE);
    if (fs_exists(memory) && !spec->template_dir && !fs_exists(mem) && link(memory, mem) < 0)
        return tp_err_errno(err, -errno, "link '%s'", memory);
    return fake_mem_file(spec, err);
}

static int
fake_restore(const struct hv_vm_spec *spec, const struct hv_restore_opts *o, struct hv_vm **ret_vm,
             bool *ret_resumed, struct tp_err *err)
{
    _cleanup_free_ char *state = fs_path_join(o->snap_dir, HV_SNAP_STATE);
    _cleanup_free_ char *text = NULL;
    struct hv_vm *vm = NULL;
    struct fake_inst *fi;
    void (*hook)(const char *id, void *ctx);
    void *hook_ctx;
    int r;

    pthread_mutex_lock(&fake_lock);
    fi = fake_inst_get(spec->id);
    fi->calls.restore++;
    fi->calls.restore_resume_on_load += o->resume_on_load;
    fi->calls.last_restore_resume_on_load = o->resume_on_load;
    hook = fake_restore_hook;
    hook_ctx = fake_restore_ctx;
    pthread_mutex_unlock(&fake_lock);
    if (hook)
        hook(spec->id, hook_ctx);
    fake_fc_check_mapped();

    r = fake_spawn(fi, spec, &vm, err);
    if (r < 0)
        return r;
    if (o->phases.mark)
        o->phases.mark(o->phases.ctx, "start_process");
    r = fs_read_file(state, 4096, &text, NULL, err);
    if (r >= 0 && strcmp(text, FAKE_STATE) != 0 && strcmp(text, FAKE_STATE_RAM) != 0)
        r = tp_err_set(err, -EPROTO, "snapshot state '%s' is not the fake's", state);
    if (r >= 0)
        r = fake_model == FAKE_MODEL_FC ? fake_fc_load(fi, spec, o->snap_dir, err)
                                        : fake_load_memory(spec, o->snap_dir, err);
    if (r < 0) {
        /* The contract: on failure the VMM is gone. */
        fake_abort_child(vm->pid, vm->pidfd);
        hv_vm_release(vm);
        return r;
    }
    if (o->phases.mark)
        o->phases.mark(o->phases.ctx, "load_snapshot");

    pthread_mutex_lock(&fake_lock);
    fi->paused = !o->resume_on_load;
    pthread_mutex_unlock(&fake_lock);
    *ret_vm = vm;
    *ret_resumed = o->resume_on_load;
    return 0;
}

static void
fake_release(struct hv_vm *vm)
{
    struct fake_inst *fi = vm->priv;
    if (!fi)
        return;
    pthread_mutex_lock(&fake_lock);
    fi->calls.release++;
    pthread_mutex_unlock(&fake_lock);
}

void
fake_driver_init(struct hv_driver *drv, const char *name, unsigned caps)
{
    *drv = (struct hv_driver){
        .name = name,
        .launch = fake_launch,
        .attach = fake_attach,
        .query = fake_query,
        .pause = fake_pause,
        .resume = fake_resume,
        .shutdown = fake_shutdown,
        .snapshot = fake_snapshot,
        .base_reusable = fake_base_reusable,
        .prepare_fork = fake_prepare_fork,
        .drop_memory = fake_drop_memory,
        .load_writes_snapshot = fake_load_writes_snapshot,
        .restore = fake_restore,
        .release = fake_release,
    };
    if (fake_model == FAKE_MODEL_FC)
        fake_fc_init(drv);
    for (int c = 0; c < _HV_CAP_MAX; c++)
        drv->caps[c] = caps & FAKE_CAP(c);
    /* No guest agent channel: the manager must not wait for one. */
    drv->caps[HV_CAP_EXEC_AGENT] = false;
}

int
fake_driver_calls(const char *id, struct fake_calls *ret)
{
    int r = -ENOENT;

    pthread_mutex_lock(&fake_lock);
    for (struct fake_inst *fi = fake_insts; fi; fi = fi->next)
        if (strcmp(fi->id, id) == 0) {
            *ret = fi->calls;
            r = 0;
            break;
        }
    pthread_mutex_unlock(&fake_lock);
    return r;
}

void
fake_driver_fail_snapshot(const char *id, bool fail)
{
    pthread_mutex_lock(&fake_lock);
    fake_inst_get(id)->fail_snapshot = fail;
    pthread_mutex_unlock(&fake_lock);
}

void
fake_driver_fail_attach(const char *id, bool fail)
{
    pthread_mutex_lock(&fake_lock);
    fake_inst_get(id)->fail_attach = fail;
    pthread_mutex_unlock(&fake_lock);
}

void
fake_driver_on_restore(void (*fn)(const char *id, void *ctx), void *ctx)
{
    pthread_mutex_lock(&fake_lock);
    fake_restore_hook = fn;
    fake_restore_ctx = ctx;
    pthread_mutex_unlock(&fake_lock);
}

void
fake_driver_set_model(enum fake_model model)
{
    fake_model = model;
}

enum fake_model
fake_driver_model(void)
{
    return fake_model;
}

unsigned
fake_driver_violations(char *ret_last, size_t size)
{
    pthread_mutex_lock(&fake_lock);
    unsigned n = fake_violations;
    if (ret_last && size)
        snprintf(ret_last, size, "%s", fake_violation_msg);
    pthread_mutex_unlock(&fake_lock);
    return n;
}

void
fake_driver_reset(void)
{
    pthread_mutex_lock(&fake_lock);
    while (fake_insts) {
        struct fake_inst *fi = fake_insts;
        fake_insts = fi->next;
        safe_close(fi->mapped_fd);
        free(fi);
    }
    fake_violations = 0;
    fake_violation_msg[0] = '\0';
    fake_restore_hook = NULL;
    fake_restore_ctx = NULL;
    pthread_mutex_unlock(&fake_lock);
}
