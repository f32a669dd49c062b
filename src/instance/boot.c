/* Booting and halting an instance's VMM, and its guest agent connection: shared by run, start,
 * stop, remove and the exit monitor. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "instance/manager-internal.h"
#include "util/failpoint.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

/* Guest kernel flags measured to cut TCG boot time (RECIPES.md §1) plus torpor's own; the
 * console= and 8250.nr_uarts= are the driver's (hv_vm_spec.kernel_log). */
#define CMDLINE_BASE                                                               \
    "quiet panic=-1 init_on_alloc=0 cryptomgr.notests mitigations=off apparmor=0 " \
    "security=none audit=0 nokaslr no_timer_check"
#define CMDLINE_MAX 2000 /* x86 COMMAND_LINE_SIZE is 2048; leave room for the driver's flags */

static char *
hex_argv(char *const *argv)
{
    size_t cap = 1;
    for (char *const *a = argv; *a; a++)
        cap += 2 * (strlen(*a) + 1);
    char *out = xmalloc(cap), *p = out;
    for (char *const *a = argv; *a; a++)
        for (const char *c = *a;; c++) {
            p += sprintf(p, "%02x", (unsigned char)*c);
            if (!*c)
                break;
        }
    *p = '\0';
    return out;
}

void
inst_machine_id(const char *id, char ret[INST_MACHINE_ID_LEN + 1])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(ret, INST_MACHINE_ID_LEN + 1, "%.16s%016" PRIx64, id, h);
}

int
inst_cmdline(struct inst *i, char **ret, struct tp_err *err)
{
    const struct inst_config *c = &i->rec->cfg;
    char mid[INST_MACHINE_ID_LEN + 1];
    inst_machine_id(i->id[0] ? i->id : i->rec->id, mid);
    char *s = xasprintf("%s torpor.hostname=%s torpor.machine_id=%s%s%s", CMDLINE_BASE,
                        i->rec->name, mid, c->root_disk_src ? " torpor.root=/dev/vda" : "",
                        !c->image              ? ""
                        : i->workload_deferred ? " torpor.workload=" INST_WORKLOAD_SPEC
                                                 " torpor.workload_defer=1"
                                               : " torpor.workload=" INST_WORKLOAD_SPEC);
    _cleanup_free_ char *net = inst_net_cmdline(i->rec);
    if (net) {
        char *t = xasprintf("%s %s%s%s", s, net, i->m->net_dns ? " torpor.dns=" : "",
                            i->m->net_dns ? i->m->net_dns : "");
        free(s);
        s = t;
    }
    if (c->cmd && c->cmd[0] && !c->image) { /* an image's workload goes by its disk */
        _cleanup_free_ char *hex = hex_argv(c->cmd);
        char *t = xasprintf("%s torpor.cmd=%s", s, hex);
        free(s);
        s = t;
    }
    if (strlen(s) > CMDLINE_MAX) {
        free(s);
        return tp_err_set(err, -EINVAL, "command too long for the kernel command line (%d bytes)",
                          CMDLINE_MAX);
    }
    *ret = s;
    return 0;
}

/* The driver tells us the new VMM's pid before it runs: durable first, so that a daemon that
 * dies from here on finds it (reconcile) instead of leaving it unowned. */
static int
record_vmm(void *ctx, pid_t pid, uint64_t start_time, struct tp_err *err)
{
    struct inst *i = ctx;
    pid_t old_pid = i->rec->vmm_pid;
    uint64_t old_start = i->rec->vmm_start_time;
    i->rec->vmm_pid = pid;
    i->rec->vmm_start_time = start_time;
    int r = inst_save(i->m, i, err);
    if (r < 0) {
        /* The VMM never runs: the record keeps naming what it named. */
        i->rec->vmm_pid = old_pid;
        i->rec->vmm_start_time = old_start;
        return tp_err_wrap(err, "record VMM pid %d", (int)pid);
    }
    inst_crashpoint(i, "vmm.recorded"); /* the VMM is held before exec here */
    return 0;
}

int
inst_vmm_recorded(struct inst_manager *m, struct inst *i, struct tp_err *err)
{
    if (i->rec->vmm_pid == i->vm->pid && i->rec->vmm_start_time == i->vm->start_time)
        return 0;
    i->rec->vmm_pid = i->vm->pid;
    i->rec->vmm_start_time = i->vm->start_time;
    return inst_save(m, i, err);
}

void
inst_sock_paths(struct inst *i)
{
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    free(i->api_sock);
    free(i->agent_sock);
    i->api_sock = paths_instance_file(&i->paths, drv ? hv_api_sock_name(drv) : "api.sock");
    i->agent_sock = paths_instance_file(&i->paths, drv ? hv_agent_sock_name(drv) : "agent.sock");
}

void
inst_spec(struct inst_manager *m, struct inst *i, struct hv_vm_spec *spec)
{
    const struct inst_config *c = &i->rec->cfg;
    char tid[INST_ID_LEN + 1];
    bool templated = inst_template_get(i, tid) > 0;

    /* A daemon that adopted a running VMM never built its command line: the same one. */
    if (!i->cmdline && i->rec && i->rec->name)
        (void)inst_cmdline(i, &i->cmdline, NULL);
    inst_sock_paths(i);
    free(i->template_dir);
    i->template_dir = templated ? paths_template_dir(m->data_dir, tid) : NULL;
    *spec = (struct hv_vm_spec){
        .id = i->id,
        .dir = i->paths.dir,
        .memory_mib = c->memory_mib,
        .vcpus = c->vcpus,
        .kernel = c->kernel,
        .initrd = c->initrd,
        .cmdline = i->cmdline,
        .root_disk = c->root_disk_src ? i->paths.root_disk : NULL,
        .template_dir = i->template_dir,
        .api_sock = i->api_sock,
        .agent_sock = i->agent_sock,
        .console_log = i->paths.console_log,
        /* An image's console carries only its workload's bytes (docker logs). */
        .kernel_log = c->image ? i->paths.kernel_log : NULL,
        .vmm_log = i->paths.vmm_log,
        .accel = c->accel ? c->accel : m->accel,
        .mem_uffd = c->mem_uffd,
        .vmm_spawned = record_vmm,
        .vmm_spawned_ctx = i,
    };
}

void
inst_drop_vmm(struct inst *i)
{
    i->agent = agent_conn_free(i->agent);
    i->vm = hv_vm_release(i->vm);
    i->record_working_set = false;
    i->ws_prev = snap_ws_free(i->ws_prev); /* another guest's pages */
    inst_net_detach(i->m, i);
}

void
inst_end_vmm(struct inst *i)
{
    if (!i->vm)
        return;
    if (!hv_exited(i->vm) && hv_has_cap(i->vm->drv, HV_CAP_GRACEFUL_VMM_SHUTDOWN))
        hv_shutdown(i->vm, VMM_SHUTDOWN_TIMEOUT_MS, NULL);
    if (!hv_exited(i->vm))
        hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
    inst_drop_vmm(i);
}

int
inst_vmm_from_snapshot(struct inst_manager *m, struct inst *i, const char *snap_dir,
                       struct hv_phase_sink phases, struct trace *t, struct tp_err *err)
{
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    const struct hv_restore_opts ro = {
        .snap_dir = snap_dir,
        .resume_on_load = true,
        .phases = phases,
    };
    struct hv_vm_spec spec;
    bool resumed = false;

    inst_spec(m, i, &spec);
    _cleanup_(inst_nic_close) struct inst_nic nic = INST_NIC_INIT;
    int r = inst_nic_open(m, i, &spec, &nic, err);
    if (r < 0)
        return r;
    r = hv_restore(drv, &spec, &ro, &i->vm, &resumed, err);
    if (r < 0)
        return r;
    monitor_watch(m->mon, i->id, i->vm);
    /* The driver recorded the new VMM before it ran (one that cannot is recorded here). */
    r = inst_vmm_recorded(m, i, err);
    if (r >= 0 && !resumed) {
        r = hv_resume(i->vm, err);
        if (r >= 0 && t)
            trace_phase(t, "resume_vm");
    }
    return r;
}

int
inst_agent_connect(struct inst_manager *m, struct inst *i, int timeout_ms, struct tp_err *err)
{
    struct hv_vm_spec spec;
    _cleanup_(agent_conn_freep) struct agent_conn *c = NULL;
    struct agent_hello hello;
    int fd, r;

    if (i->agent && agent_conn_alive(i->agent))
        return 0;
    i->agent = agent_conn_free(i->agent);
    inst_spec(m, i, &spec);
    fd = hv_agent_connect(i->vm, &spec, err);
    if (fd < 0)
        return tp_err_wrap(err, "connect to the guest agent");
    r = agent_conn_open(fd, &c, err);
    if (r < 0)
        return tp_err_wrap(err, "connect to the guest agent");
    r = agent_conn_hello(c, timeout_ms, &hello, err);
    if (r < 0)
        return tp_err_wrap(err, "wait for the guest agent");
    log_debug("instance=%s agent ready: version %s uptime %llu ms", i->id, hello.version,
              (unsigned long long)hello.uptime_ms);
    i->agent = TAKE_PTR(c);
    return 0;
}

/* The last bytes of a log file, for error messages about a VMM that died. */
static char *
log_tail(const char *path, size_t max)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    if (fs_read_file(path, 16u << 20, &data, &len, NULL) < 0 || len == 0)
        return NULL;
    const char *start = len > max ? data + len - max : data;
    char *s = xstrdup(start);
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    return s;
}

/* The console's last "Kernel panic" line, if the guest's kernel wrote one. */
static char *
console_panic(const char *path)
{
    _cleanup_free_ char *tail = log_tail(path, 64u << 10);
    char *hit = NULL, *p;

    for (p = tail; p && (p = strstr(p, "Kernel panic")); p++)
        hit = p;
    if (!hit)
        return NULL;
    hit[strcspn(hit, "\r\n")] = '\0';
    return xstrdup(hit);
}

/* The agent never answered: say why in the guest's and the VMM's own words. The connection
 * drops a moment before the VMM is gone, so give it that moment (a guest that panics makes
 * QEMU exit: -no-reboot). */
static void
explain_boot_failure(struct inst *i, struct tp_err *err)
{
    if (!hv_exited(i->vm))
        (void)proc_pidfd_wait(i->vm->pidfd, i->vm->pid, 2000);
    if (!hv_exited(i->vm))
        return;
    /* An image VM's kernel has its own console (inst_spec: kernel_log). */
    _cleanup_free_ char *panic =
        console_panic(i->rec->cfg.image ? i->paths.kernel_log : i->paths.console_log);
    _cleanup_free_ char *tail = log_tail(i->paths.vmm_log, 1024);
    if (panic)
        tp_err_wrap(err, "the guest kernel panicked (%s)", panic);
    tp_err_wrap(err, "VMM exited%s%s%s", tail ? " (" : "", tail ? tail : "", tail ? ")" : "");
}

/* The VMM of an image instance went down after its workload left an exit code. */
static bool
workload_ended_at_boot(struct inst *i)
{
    if (!i->vm || !hv_wait_exited(i->vm, VMM_KILL_TIMEOUT_MS))
        return false;
    int code = inst_workload_exit_code(i);
    if (code < 0)
        return false;
    hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL); /* reaps it */
    inst_drop_vmm(i);
    i->rec->vmm_pid = 0;
    i->rec->vmm_start_time = 0;
    i->rec->exit_code = code;
    return true;
}

int
inst_boot(struct inst_manager *m, struct inst *i, struct trace *t, struct tp_err *err)
{
    const struct hv_driver *drv = hv_driver_find(i->rec->cfg.hypervisor);
    struct hv_vm_spec spec;
    int r;

    if (!drv)
        return tp_err_set(err, -EINVAL, "unknown hypervisor '%s'", i->rec->cfg.hypervisor);
    free(i->cmdline);
    i->cmdline = NULL;
    r = inst_cmdline(i, &i->cmdline, err);
    if (r < 0)
        return r;
    r = fs_mkdir_p(i->paths.logs_dir, 0700, err);
    if (r < 0)
        return r;
    /* A fresh boot: no retained base describes this guest's memory (a Diff onto one would
     * keep pages of an earlier guest). */
    r = fs_rm_rf(i->paths.snap_base, err);
    if (r < 0)
        return r;
    inst_spec(m, i, &spec);
    _cleanup_(inst_nic_close) struct inst_nic nic = INST_NIC_INIT;
    r = inst_nic_open(m, i, &spec, &nic, err);
    if (r < 0)
        return r;
    if (i->rec->cfg.image) {
        r = inst_workload_prepare(i, err);
        if (r < 0)
            return r;
        trace_phase(t, "prepare_workload");
        inst_crashpoint(i, "boot.workload");
    }
    /* Sockets of an earlier run are stale: the VMM gets fresh ones. */
    unlink(spec.api_sock);
    unlink(spec.agent_sock);
    inst_boot_track(m, i, true, NULL);
    r = hv_launch(drv, &spec, &i->vm, err);
    if (r < 0) {
        /* The driver reaped a VMM that may have been recorded already. */
        inst_boot_track(m, i, false, NULL);
        i->rec->vmm_pid = 0;
        i->rec->vmm_start_time = 0;
        return tp_err_wrap(err, "start %s", drv->name);
    }
    trace_phase(t, "start_process");
    inst_boot_track(m, i, true, i->vm);
    monitor_watch(m->mon, i->id, i->vm);
    /* The pid was recorded before the VMM ran (record_vmm): a daemon that dies during the
     * (long) wait for the agent finds this VMM again on restart. */
    r = inst_vmm_recorded(m, i, err);
    if (r < 0)
        goto fail;
    inst_crashpoint(i, "boot.spawned");

    if (i->rec->cfg.agent && hv_has_cap(drv, HV_CAP_EXEC_AGENT)) {
        r = inst_agent_connect(m, i, AGENT_READY_TIMEOUT_MS, err);
        if (r < 0 && i->rec->cfg.image && workload_ended_at_boot(i)) {
            /* A workload quicker than the agent's readiness: it ran and ended (docker run of
             * a short command), which is not a failed boot. */
            tp_err_clear(err);
            inst_boot_track(m, i, false, NULL);
            return 1;
        }
        if (r < 0) {
            explain_boot_failure(i, err);
            goto fail;
        }
        trace_phase(t, "wait_agent");
    }
    inst_boot_track(m, i, false, NULL);
    return 0;
fail:
    pthread_mutex_lock(&m->lock);
    bool cancelled = i->boot_cancelled;
    pthread_mutex_unlock(&m->lock);
    inst_boot_track(m, i, false, NULL);
    if (cancelled)
        tp_err_set(err, -ECANCELED, "boot cancelled: instance '%s' is being removed", i->rec->name);
    hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
    inst_drop_vmm(i);
    i->rec->vmm_pid = 0;
    i->rec->vmm_start_time = 0;
    return r;
}

/* Flush the guest's page cache to its disk before the VMM goes: best effort, bounded. */
static void
sync_guest(struct inst *i)
{
    static char *const argv[] = { (char *)"sync", NULL };
    const struct agent_exec_req req = { .argv = argv };
    _cleanup_(agent_exec_freep) struct agent_exec *x = NULL;
    struct agent_event ev;

    if (!i->agent || agent_exec_start(i->agent, &req, 5000, &x, NULL) < 0)
        return;
    while (agent_exec_next(x, &ev, 10000, NULL) == 0) {
        free(ev.data);
        if (ev.type == AGENT_EV_EXIT)
            break;
    }
}

/* An image's workload gets its StopSignal first, as docker stop sends it to the container's
 * process, and STOP_GRACE_MS to end before SIGKILL; its end makes the agent record the exit
 * code, sync and power the guest off. */
#define STOP_GRACE_MS 10000
static void
stop_workload(struct inst *i)
{
    char sig[16], grace[16];
    snprintf(sig, sizeof(sig), "%d", i->rec->cfg.stop_signal ? i->rec->cfg.stop_signal : SIGTERM);
    snprintf(grace, sizeof(grace), "%d", STOP_GRACE_MS);
    char *const argv[] = { (char *)"stop-workload", sig, grace, NULL };
    const struct agent_exec_req req = { .argv = argv, .builtin = true };
    _cleanup_(agent_exec_freep) struct agent_exec *x = NULL;
    struct agent_event ev;

    if (!i->agent || agent_exec_start(i->agent, &req, 5000, &x, NULL) < 0) {
        sync_guest(i); /* an agent without the built-in: at least the disk */
        return;
    }
    /* It ends with the guest (the agent powers off): an error here is the expected end. */
    while (agent_exec_next(x, &ev, STOP_GRACE_MS + 5000, NULL) == 0) {
        free(ev.data);
        if (ev.type == AGENT_EV_EXIT)
            break;
    }
}

/* An Unknown instance's VMM lived on without answering its control channel: no handle, only
 * the recorded pid and start time (checked, so a recycled pid is never hit). */
static int
kill_recorded_vmm(struct inst *i, struct tp_err *err)
{
    pid_t pid = i->rec->vmm_pid;
    _cleanup_close_ int pidfd = proc_pidfd_open(pid);
    int r;

    if (pidfd == -ESRCH || (pidfd >= 0 && !proc_is_alive(pid, i->rec->vmm_start_time)))
        return 0;
    if (pidfd < 0)
        return tp_err_errno(err, pidfd, "open pidfd of VMM %d", (int)pid);
    r = proc_pidfd_signal(pidfd, SIGKILL);
    if (r < 0 && r != -ESRCH)
        return tp_err_errno(err, r, "kill VMM %d", (int)pid);
    r = proc_pidfd_wait(pidfd, pid, VMM_KILL_TIMEOUT_MS);
    if (r == -ETIMEDOUT)
        return tp_err_set(err, r, "VMM %d still running %d ms after SIGKILL", (int)pid,
                          VMM_KILL_TIMEOUT_MS);
    if (r < 0)
        return tp_err_errno(err, r, "wait for VMM %d", (int)pid);
    return 0;
}

int
inst_kill_recorded_vmm(struct inst *i, struct tp_err *err)
{
    int r = kill_recorded_vmm(i, err);
    if (r >= 0)
        inst_net_detach(i->m, i);
    return r;
}

void
inst_kill_vmm(struct inst *i)
{
    if (i->vm) {
        hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
        inst_drop_vmm(i);
    } else if (i->rec->vmm_pid > 0)
        inst_kill_recorded_vmm(i, NULL);
}

int
inst_halt_vmm(struct inst_manager *m, struct inst *i, struct trace *t, struct tp_err *err)
{
    int r = 0;

    if (!i->vm && i->rec->vmm_pid > 0) {
        r = inst_kill_recorded_vmm(i, err);
        trace_phase(t, "kill_vmm");
        return r;
    }
    if (!i->vm)
        return 0;
    /* A paused guest can neither sync nor answer its agent: let it run for its last moments
     * (the caller's journal has the VMM killed if the daemon dies meanwhile). */
    if (i->rec->state == INST_PAUSED && !hv_exited(i->vm)) {
        struct tp_err rerr = { 0 };
        if (hv_resume(i->vm, &rerr) < 0)
            log_warn("instance=%s cannot resume the paused guest before it stops: %s", i->id,
                     tp_err_msg(&rerr));
        tp_err_clear(&rerr);
    }
    if (!hv_exited(i->vm) && i->rec->cfg.image) {
        stop_workload(i);
        trace_phase(t, "stop_workload");
    } else if (!hv_exited(i->vm)) {
        sync_guest(i);
        trace_phase(t, "sync_guest");
    }
    i->agent = agent_conn_free(i->agent);
    /* Capabilities decide: a VMM that can exit cleanly gets a bounded chance, else SIGKILL. */
    if (!hv_exited(i->vm) && hv_has_cap(i->vm->drv, HV_CAP_GRACEFUL_VMM_SHUTDOWN)) {
        struct tp_err serr = { 0 };
        if (hv_shutdown(i->vm, VMM_SHUTDOWN_TIMEOUT_MS, &serr) < 0)
            log_warn("instance=%s graceful VMM shutdown failed, killing: %s", i->id,
                     tp_err_msg(&serr));
        tp_err_clear(&serr);
        trace_phase(t, "shutdown_vmm");
    }
    if (!hv_exited(i->vm)) {
        r = hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, err);
        trace_phase(t, "kill_vmm");
    }
    if (r == 0)
        inst_drop_vmm(i);
    return r;
}

void
manager_on_vmm_exit(struct inst_manager *m, const char *id, pid_t pid, uint64_t start_time)
{
    struct inst *i;
    struct tp_err err = { 0 };

    if (inst_acquire_id(m, id, &i) < 0)
        return;
    /* Only the VMM this watch was for; an operation may have replaced or halted it. */
    if (i->vm && i->vm->pid == pid && i->vm->start_time == start_time && i->rec->cfg.image) {
        /* An image's workload ended and its agent powered the guest off, as a container
         * stops when its process exits: Stopped with the workload's exit code. */
        hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL); /* reaps it */
        inst_drop_vmm(i);
        int code = inst_workload_exit_code(i);
        if (code < 0) {
            _cleanup_free_ char *tail = log_tail(i->paths.vmm_log, 512);
            log_warn("instance=%s VMM pid %d exited before its workload did%s%s", id, (int)pid,
                     tail ? ": " : "", tail ? tail : "");
            free(i->rec->last_error);
            i->rec->last_error = xasprintf("VMM process %d exited unexpectedly", (int)pid);
        }
        i->rec->exit_code = code >= 0 ? code : 128 + SIGKILL;
        if (inst_transition(m, i, INST_STOPPED, &err) < 0)
            log_error("instance=%s: %s", id, tp_err_msg(&err));
        tp_err_clear(&err);
    } else if (i->vm && i->vm->pid == pid && i->vm->start_time == start_time) {
        _cleanup_free_ char *tail = log_tail(i->paths.vmm_log, 512);
        log_warn("instance=%s VMM pid %d exited unexpectedly%s%s", id, (int)pid, tail ? ": " : "",
                 tail ? tail : "");
        /* Its own exit status where it is our child (0: the guest powered off); one adopted
         * after a restart cannot tell: counted as killed. */
        int code = hv_exit_code(i->vm);
        i->rec->exit_code = code >= 0 ? code : 128 + SIGKILL;
        hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL); /* reaps it */
        inst_drop_vmm(i);
        free(i->rec->last_error);
        i->rec->last_error = xasprintf("VMM process %d exited unexpectedly", (int)pid);
        if (inst_transition(m, i, INST_STOPPED, &err) < 0)
            log_error("instance=%s: %s", id, tp_err_msg(&err));
        tp_err_clear(&err);
    }
    inst_release(m, i);
}

int
inst_failpoint(struct inst *i, const char *name, struct tp_err *err)
{
    switch (failpoint(name)) {
    case FAILPOINT_ERROR:
        return tp_err_set(err, -EIO, "failpoint '%s'", name);
    case FAILPOINT_KILL_VMM:
        log_warn("instance=%s failpoint '%s': killing the VMM", i->id, name);
        if (i->vm)
            hv_kill(i->vm, VMM_KILL_TIMEOUT_MS, NULL);
        return 0;
    case FAILPOINT_CRASH:
        log_warn("instance=%s failpoint '%s': crashing the daemon", i->id, name);
        raise(SIGKILL);
        return 0;
    default:
        return 0;
    }
}

/* The guest learns who it is now: hostname and fresh entropy (forks share the parent's RNG),
 * then, as a message of its own, a fork child's address and MAC in place of its parent's. The
 * network part is timed apart (phase apply_network): it is what peers wait for. */
int
inst_apply_identity(struct inst_manager *m, struct inst *i, struct trace *t, struct tp_err *err)
{
    uint8_t seed[32];
    char hex[2 * sizeof(seed) + 1];
    int r;

    if (getrandom(seed, sizeof(seed), 0) != sizeof(seed))
        return tp_err_errno(err, -errno, "read random seed");
    for (size_t k = 0; k < sizeof(seed); k++)
        sprintf(hex + 2 * k, "%02x", seed[k]);
    _cleanup_free_ char *host = xasprintf("hostname=%s", i->rec->name);
    _cleanup_free_ char *rnd = xasprintf("seed=%s", hex);
    char mid[INST_MACHINE_ID_LEN + 1];
    inst_machine_id(i->id, mid);
    _cleanup_free_ char *machine = xasprintf("machine_id=%s", mid);
    char *const kv[] = { host, rnd, machine, NULL };

    r = inst_agent_connect(m, i, IDENTITY_TIMEOUT_MS, err);
    if (r < 0)
        return r;
    r = agent_conn_identity(i->agent, kv, IDENTITY_TIMEOUT_MS, err);
    if (r < 0)
        return tp_err_wrap(err, "apply identity");
    inst_sync_clock(i);
    if (t)
        trace_phase(t, "apply_identity");

    _cleanup_free_ char *net = inst_net_identity(i->rec);
    if (net) {
        char *const nkv[] = { net, NULL };
        r = agent_conn_identity(i->agent, nkv, IDENTITY_TIMEOUT_MS, err);
        if (r < 0)
            return tp_err_wrap(err, "apply network");
        if (t)
            trace_phase(t, "apply_network");
    }
    return 0;
}

void
inst_sync_clock(struct inst *i)
{
    struct timespec ts;
    struct tp_err e = { 0 };

    clock_gettime(CLOCK_REALTIME, &ts);
    if (agent_conn_set_clock(i->agent, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec,
                             IDENTITY_TIMEOUT_MS, &e) < 0)
        log_warn("instance=%s: cannot set the guest clock: %s", i->id, tp_err_msg(&e));
    tp_err_clear(&e);
}
