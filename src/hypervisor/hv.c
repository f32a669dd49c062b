/* The hypervisor facade: the only caller of driver slots, plus generic VMM process control. */
#include "hypervisor/hv.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "util/proc.h"
#include "util/sock.h"
#include "util/xalloc.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Names the driver and the capability or slot it lacks. */
static int
hv_unsupported(const struct hv_driver *drv, const char *what, struct tp_err *err)
{
    return tp_err_set(err, -EOPNOTSUPP, "%s: '%s' not supported", drv->name, what);
}

static int
hv_require(const struct hv_driver *drv, enum hv_cap cap, bool have_slot, struct tp_err *err)
{
    if (!hv_has_cap(drv, cap) || !have_slot)
        return hv_unsupported(drv, hv_cap_to_string(cap), err);
    return 0;
}

int
hv_launch(const struct hv_driver *drv, const struct hv_vm_spec *spec, struct hv_vm **ret_vm,
          struct tp_err *err)
{
    struct hv_vm *vm = NULL;
    int r;

    if (!drv->launch)
        return hv_unsupported(drv, "launch", err);
    r = drv->launch(spec, &vm, err);
    if (r < 0)
        return r;
    vm->drv = drv;
    *ret_vm = vm;
    return 0;
}

int
hv_attach(const struct hv_driver *drv, const struct hv_vm_spec *spec, pid_t pid,
          uint64_t start_time, struct hv_vm **ret_vm, struct tp_err *err)
{
    struct hv_vm *vm = NULL;
    int r;

    if (!drv->attach)
        return hv_unsupported(drv, "attach", err);
    r = drv->attach(spec, pid, start_time, &vm, err);
    if (r < 0)
        return r;
    vm->drv = drv;
    *ret_vm = vm;
    return 0;
}

int
hv_query(struct hv_vm *vm, enum hv_run_state *ret, struct tp_err *err)
{
    if (!vm->drv->query)
        return hv_unsupported(vm->drv, "query", err);
    return vm->drv->query(vm, ret, err);
}

const char *
hv_api_sock_name(const struct hv_driver *drv)
{
    return drv->api_sock_name ? drv->api_sock_name : "api.sock";
}

const char *
hv_agent_sock_name(const struct hv_driver *drv)
{
    return drv->agent_sock_name ? drv->agent_sock_name : "agent.sock";
}

/* Probed versions: a few drivers, each answered once per daemon. A failed probe is not
 * remembered (the binary may be installed later); probes run outside the lock. */
#define HV_VERSIONS_MAX 16
static pthread_mutex_t versions_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const struct hv_driver *drv;
    char *version;
} versions[HV_VERSIONS_MAX];

const char *
hv_version(const struct hv_driver *drv, struct tp_err *err)
{
    const char *v = NULL;
    char *probed = NULL;
    size_t k;

    if (!drv->probe)
        return NULL;
    pthread_mutex_lock(&versions_lock);
    for (k = 0; k < HV_VERSIONS_MAX && versions[k].drv; k++)
        if (versions[k].drv == drv) {
            v = versions[k].version;
            break;
        }
    pthread_mutex_unlock(&versions_lock);
    if (v)
        return v;
    if (drv->probe(&probed, err) < 0)
        return NULL;
    pthread_mutex_lock(&versions_lock);
    for (k = 0; k < HV_VERSIONS_MAX && versions[k].drv; k++)
        if (versions[k].drv == drv)
            break;
    if (k < HV_VERSIONS_MAX && !versions[k].drv) {
        versions[k].drv = drv;
        versions[k].version = probed; /* kept for the daemon's life: borrowed by callers */
        probed = NULL;
    }
    v = k < HV_VERSIONS_MAX ? versions[k].version : NULL;
    pthread_mutex_unlock(&versions_lock);
    free(probed); /* a concurrent probe got there first */
    return v;
}

int
hv_check_snapshot_version(const struct hv_driver *drv, const char *snap, struct tp_err *err)
{
    const char *now = hv_version(drv, NULL);

    if (!snap || !*snap || !now)
        return 0; /* nothing recorded, or nothing to compare with */
    bool ok = drv->version_compatible ? drv->version_compatible(snap, now) : strcmp(snap, now) == 0;
    if (ok)
        return 0;
    return tp_err_set(err, -EPROTONOSUPPORT, "snapshot was taken by %s %s, which %s %s cannot load",
                      drv->name, snap, drv->name, now);
}

int
hv_finish_load(struct hv_vm *vm, int timeout_ms, struct tp_err *err)
{
    int r = hv_require(vm->drv, HV_CAP_RESTORE, vm->drv->finish_load, err);
    if (r < 0)
        return r;
    return vm->drv->finish_load(vm, timeout_ms, err);
}

int
hv_pause(struct hv_vm *vm, struct tp_err *err)
{
    int r = hv_require(vm->drv, HV_CAP_PAUSE, vm->drv->pause, err);
    if (r < 0)
        return r;
    return vm->drv->pause(vm, err);
}

int
hv_resume(struct hv_vm *vm, struct tp_err *err)
{
    int r = hv_require(vm->drv, HV_CAP_PAUSE, vm->drv->resume, err);
    if (r < 0)
        return r;
    return vm->drv->resume(vm, err);
}

int
hv_shutdown(struct hv_vm *vm, int timeout_ms, struct tp_err *err)
{
    int r = hv_require(vm->drv, HV_CAP_GRACEFUL_VMM_SHUTDOWN, vm->drv->shutdown, err);
    if (r < 0)
        return r;
    return vm->drv->shutdown(vm, timeout_ms, err);
}

int
hv_snapshot(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *snap_dir, bool diff,
            struct tp_err *err)
{
    int r = hv_require(vm->drv, HV_CAP_SNAPSHOT, vm->drv->snapshot, err);
    if (r < 0)
        return r;
    return vm->drv->snapshot(vm, spec, snap_dir, diff, err);
}

int
hv_posted_buffers(struct hv_vm *vm, const struct hv_vm_spec *spec, struct hv_mem_range **ret,
                  size_t *ret_n, struct tp_err *err)
{
    if (!vm->drv->posted_buffers)
        return tp_err_set(err, -EOPNOTSUPP, "%s cannot tell posted buffers", vm->drv->name);
    return vm->drv->posted_buffers(vm, spec, ret, ret_n, err);
}

bool
hv_base_reusable(const struct hv_driver *drv, const struct hv_vm_spec *spec, const char *base_dir)
{
    if (!hv_has_cap(drv, HV_CAP_SNAPSHOT_BASE_REUSE))
        return false;
    return !drv->base_reusable || drv->base_reusable(spec, base_dir);
}

int
hv_prepare_fork(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *tdir, bool keep_source,
                bool *ret_restart, struct tp_err *err)
{
    bool restart = false;
    int r = hv_require(vm->drv, HV_CAP_FORK, vm->drv->prepare_fork, err);
    if (r < 0)
        return r;
    r = vm->drv->prepare_fork(vm, spec, tdir, keep_source, &restart, err);
    if (r >= 0)
        *ret_restart = restart;
    return r;
}

int
hv_drop_memory(const struct hv_driver *drv, const struct hv_vm_spec *spec, bool running,
               struct tp_err *err)
{
    return drv->drop_memory ? drv->drop_memory(spec, running, err) : 0;
}

bool
hv_load_writes_snapshot(const struct hv_driver *drv, const struct hv_vm_spec *spec,
                        const char *snap_dir)
{
    return drv->load_writes_snapshot && drv->load_writes_snapshot(spec, snap_dir);
}

int
hv_restore(const struct hv_driver *drv, const struct hv_vm_spec *spec,
           const struct hv_restore_opts *o, struct hv_vm **ret_vm, bool *ret_resumed,
           struct tp_err *err)
{
    struct hv_restore_opts opts = *o;
    int r = hv_require(drv, HV_CAP_RESTORE, drv->restore, err);
    if (r < 0)
        return r;
    /* Only ask for what the driver can do; it reports what really happened. */
    opts.resume_on_load = o->resume_on_load && hv_has_cap(drv, HV_CAP_RESUME_ON_LOAD);
    r = drv->restore(spec, &opts, ret_vm, ret_resumed, err);
    if (r < 0)
        return r;
    (*ret_vm)->drv = drv;
    return 0;
}

int
hv_agent_connect(struct hv_vm *vm, const struct hv_vm_spec *spec, struct tp_err *err)
{
    int r = hv_require(vm->drv, HV_CAP_EXEC_AGENT, vm->drv->agent_connect, err);
    if (r < 0)
        return r;
    return vm->drv->agent_connect(vm, spec, err);
}

/* Collect the exit status if the VMM is our child, so it leaves no zombie; others are no-ops. */
static void
hv_reap(const struct hv_vm *vm)
{
    siginfo_t si;

    while (waitid((idtype_t)P_PIDFD, (id_t)vm->pidfd, &si, WEXITED | WNOHANG) < 0 && errno == EINTR)
        ;
}

int
hv_exit_code(const struct hv_vm *vm)
{
    siginfo_t si = { 0 };

    while (waitid((idtype_t)P_PIDFD, (id_t)vm->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        if (errno != EINTR)
            return -errno; /* ECHILD: not our child (adopted), or reaped already */
    if (si.si_pid == 0)
        return -EAGAIN;
    if (si.si_code == CLD_EXITED)
        return si.si_status & 0xff;
    return 128 + si.si_status; /* killed or dumped by signal si_status */
}

int
hv_kill(struct hv_vm *vm, int timeout_ms, struct tp_err *err)
{
    int r;

    if (hv_exited(vm))
        return 0;
    r = proc_pidfd_signal(vm->pidfd, SIGKILL);
    if (r < 0 && r != -ESRCH)
        return tp_err_errno(err, r, "kill %s VMM %d", vm->drv->name, (int)vm->pid);
    r = proc_pidfd_wait(vm->pidfd, vm->pid, timeout_ms);
    if (r == -ETIMEDOUT)
        return tp_err_set(err, r, "%s VMM %d still running %d ms after SIGKILL", vm->drv->name,
                          (int)vm->pid, timeout_ms);
    if (r < 0)
        return tp_err_errno(err, r, "wait for %s VMM %d", vm->drv->name, (int)vm->pid);
    hv_reap(vm);
    return 0;
}

bool
hv_exited(const struct hv_vm *vm)
{
    if (vm->pidfd < 0)
        return true;
    if (sock_wait(vm->pidfd, POLLIN, 0) != 1)
        return false;
    hv_reap(vm);
    return true;
}

bool
hv_wait_exited(const struct hv_vm *vm, int timeout_ms)
{
    if (vm->pidfd < 0)
        return true;
    if (sock_wait(vm->pidfd, POLLIN, timeout_ms) != 1)
        return false;
    hv_reap(vm);
    return true;
}

struct hv_vm *
hv_vm_release(struct hv_vm *vm)
{
    if (!vm)
        return NULL;
    if (vm->drv && vm->drv->release)
        vm->drv->release(vm);
    safe_close(vm->pidfd);
    free(vm);
    return NULL;
}
