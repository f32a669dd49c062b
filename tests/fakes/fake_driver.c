/* A fake hypervisor driver: a real `sleep` process stands in for the VMM, so kills, pidfds and
 * the manager's exit monitor behave as with a real one; snapshots are a few files on disk. */
#include "fake_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hypervisor/hv.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/xalloc.h"

#define FAKE_STATE   "fake-vm-state v1\n" /* what snapshot writes and restore expects */
#define FAKE_REAP_MS 5000
#define FAKE_ID_MAX  64
#define MIB          (1024ull * 1024ull)

/* One per instance id the fake has seen; lives until fake_driver_reset(). */
struct fake_inst {
    char id[FAKE_ID_MAX];
    struct fake_calls calls;
    bool fail_snapshot;
    bool fail_attach;
    bool paused;
    struct fake_inst *next;
};

/* The manager calls slots from its callers' threads and from its exit monitor. */
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fake_inst *fake_insts;
static void (*fake_restore_hook)(const char *id, void *ctx); /* under fake_lock */
static void *fake_restore_ctx;

/* Find or add the entry for id; caller holds fake_lock. */
static struct fake_inst *
fake_inst_get(const char *id)
{
    struct fake_inst *fi;

    for (fi = fake_insts; fi; fi = fi->next)
        if (strcmp(fi->id, id) == 0)
            return fi;
    fi = xnew(struct fake_inst, 1);
    snprintf(fi->id, sizeof(fi->id), "%s", id);
    fi->next = fake_insts;
    fake_insts = fi;
    return fi;
}

/* Count a call on a live VM: remembers which driver the manager went through. */
static struct fake_inst *
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

/* The guest RAM file, sized like the VM (sparse): what snapshots link as their memory image. */
static int
fake_mem_file(const struct hv_vm_spec *spec, struct tp_err *err)
{
    _cleanup_close_ int fd = open(spec->mem_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;

    if (fd < 0)
        return tp_err_errno(err, -errno, "create guest memory '%s'", spec->mem_path);
    if (fstat(fd, &st) < 0)
        return tp_err_errno(err, -errno, "stat guest memory '%s'", spec->mem_path);
    if (st.st_size == 0 && ftruncate(fd, (off_t)(spec->memory_mib * MIB)) < 0)
        return tp_err_errno(err, -errno, "size guest memory '%s'", spec->mem_path);
    return 0;
}

static int
fake_launch(const struct hv_vm_spec *spec, struct hv_vm **ret_vm, struct tp_err *err)
{
    struct fake_inst *fi;
    int r;

    pthread_mutex_lock(&fake_lock);
    fi = fake_inst_get(spec->id);
    fi->calls.launch++;
    fi->paused = false;
    pthread_mutex_unlock(&fake_lock);

    r = fake_mem_file(spec, err);
    if (r < 0)
        return r;
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

static int
fake_snapshot(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *snap_dir, bool diff,
              bool *ret_ram_in_state, struct tp_err *err)
{
    *ret_ram_in_state = false;
    _cleanup_free_ char *state = fs_path_join(snap_dir, HV_SNAP_STATE);
    _cleanup_free_ char *memory = fs_path_join(snap_dir, HV_SNAP_MEMORY);
    struct fake_inst *fi;
    bool fail, paused;
    int r;

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
    /* A diff writes onto the retained base, which must be there. */
    if (diff && !fs_exists(memory))
        return tp_err_set(err, -ENOENT, "diff snapshot into '%s' without a base", snap_dir);
    r = fs_write_atomic(state, FAKE_STATE, strlen(FAKE_STATE), 0600, err);
    if (r < 0)
        return r;
    /* A private (template) mapping is no file of the guest's own: memory goes in the state. */
    if (spec->mem_private) {
        *ret_ram_in_state = true;
        return 0;
    }
    /* The memory image is the guest RAM file itself, as with a file-backed VMM. */
    if (unlink(memory) < 0 && errno != ENOENT)
        return tp_err_errno(err, -errno, "replace '%s'", memory);
    if (link(spec->mem_path, memory) < 0)
        return tp_err_errno(err, -errno, "link '%s' to '%s'", spec->mem_path, memory);
    return 0;
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

    r = fake_spawn(fi, spec, &vm, err);
    if (r < 0)
        return r;
    if (o->phases.mark)
        o->phases.mark(o->phases.ctx, "start_process");
    r = fs_read_file(state, 4096, &text, NULL, err);
    if (r >= 0 && strcmp(text, FAKE_STATE) != 0)
        r = tp_err_set(err, -EPROTO, "snapshot state '%s' is not the fake's", state);
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
        .restore = fake_restore,
        .release = fake_release,
    };
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
fake_driver_reset(void)
{
    pthread_mutex_lock(&fake_lock);
    while (fake_insts) {
        struct fake_inst *fi = fake_insts;
        fake_insts = fi->next;
        free(fi);
    }
    fake_restore_hook = NULL;
    fake_restore_ctx = NULL;
    pthread_mutex_unlock(&fake_lock);
}
