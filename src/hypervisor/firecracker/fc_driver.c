/* The Firecracker driver: spawns `firecracker --api-sock` and drives it over its HTTP API
 * (fc_http), with request bodies from fc_body and the guest agent over vsock (fc_vsock).
 * Guest memory is Firecracker's: anonymous after a boot; after a restore, the snapshot's memory
 * file mapped MAP_PRIVATE. A Full snapshot writes a new memory file, a Diff writes the pages
 * dirtied since the last one into the file it is given (the promoted retained base). With
 * spec->mem_uffd a restore's memory is anonymous instead, its pages served on fault by a handler
 * process of torpor's own (fc_uffd). */
#include "hypervisor/firecracker/fc_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hypervisor/firecracker/fc_body.h"
#include "hypervisor/firecracker/fc_http.h"
#include "hypervisor/firecracker/fc_uffd.h"
#include "hypervisor/firecracker/fc_vsock.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/sock.h"
#include "util/xalloc.h"

#define FC_START_TIMEOUT_MS 10000 /* the API socket appears; generous for loaded hosts */
#define FC_LOAD_TIMEOUT_MS  60000 /* a snapshot load or create */
#define FC_REAP_MS          5000
#define FC_GUEST_CID        3
#define FC_ROOT_DRIVE       "rootfs"
#define FC_NET_IFACE        "eth0" /* the guest's one NIC; its TAP is spec->nic->tap_name */

struct fc_vm {
    struct fc_http *api;
    char *uffd_dir; /* the instance dir, when a page-fault handler serves this VMM */
};

static struct fc_http *
vm_api(struct hv_vm *vm)
{
    return ((struct fc_vm *)vm->priv)->api;
}

const char *
fc_binary(void)
{
    const char *b = getenv(FC_BINARY_ENV);
    return b && *b ? b : FC_BINARY_DEFAULT;
}

static void fc_release(struct hv_vm *vm);

static struct hv_vm *
fc_vm_new(pid_t pid, uint64_t start_time, int pidfd, struct fc_http *api)
{
    struct hv_vm *vm = xnew(struct hv_vm, 1);
    struct fc_vm *fv = xnew(struct fc_vm, 1);
    fv->api = api;
    *vm = (struct hv_vm){
        .drv = &fc_driver,
        .pid = pid,
        .start_time = start_time,
        .pidfd = pidfd,
        .priv = fv,
    };
    return vm;
}

static void
fc_abort_child(pid_t pid, int pidfd)
{
    if (pidfd >= 0) {
        (void)proc_pidfd_signal(pidfd, SIGKILL);
        if (proc_pidfd_wait(pidfd, pid, FC_REAP_MS) == 0)
            return;
    } else
        (void)kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Start a Firecracker process with nothing configured and connect to its API. */
static int
fc_spawn(const struct hv_vm_spec *spec, struct hv_vm **ret_vm, struct tp_err *err)
{
    _cleanup_close_ int console_fd = -EBADF, log_fd = -EBADF, pidfd = -EBADF;
    struct fc_http *api = NULL;
    uint64_t start_time = 0;
    pid_t pid;
    int r;

    if (!spec->api_sock || !spec->agent_sock || !spec->vmm_log || !spec->console_log)
        return tp_err_set(err, -EINVAL, "VM spec needs API and vsock sockets and log files");
    if (!fc_id_valid(spec->id))
        return tp_err_set(err, -EINVAL, "instance id '%s' is not a Firecracker id", spec->id);
    /* Firecracker binds both sockets itself and refuses a path that exists. */
    (void)unlink(spec->api_sock);
    (void)unlink(spec->agent_sock);

    /* Its serial console is its stdout; its own messages go to stderr. */
    console_fd = open(spec->console_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    log_fd = open(spec->vmm_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (console_fd < 0 || log_fd < 0)
        return tp_err_errno(err, -errno, "open the logs of '%s'", spec->id);
    char *const argv[] = {
        (char *)fc_binary(), (char *)"--api-sock", (char *)spec->api_sock,
        (char *)"--id",      (char *)spec->id,     NULL,
    };
    const struct proc_spawn_opts so = {
        .argv = argv,
        .cwd = spec->dir,
        .stdin_fd = -1,
        .stdout_fd = console_fd,
        .stderr_fd = log_fd,
        .new_session = true,
        .no_new_privs = true,
        .drop_caps = true,
        .before_exec = spec->vmm_spawned ? hv_spawn_report : NULL,
        .before_exec_ctx = (void *)spec,
    };
    r = proc_spawn(&so, &pid, err);
    if (r < 0)
        return tp_err_wrap(err, "start firecracker ('%s')", argv[0]);
    pidfd = proc_pidfd_open(pid);
    if (pidfd < 0) {
        r = tp_err_errno(err, pidfd, "open pidfd of firecracker %d", (int)pid);
        goto fail;
    }
    r = proc_start_time(pid, &start_time);
    if (r < 0) {
        r = tp_err_errno(err, r, "read start time of firecracker %d", (int)pid);
        goto fail;
    }
    /* The socket appears when Firecracker is ready: awaited with inotify, no polling. */
    r = fc_http_open(spec->api_sock, FC_START_TIMEOUT_MS, pidfd, &api, err);
    if (r < 0)
        goto fail;

    struct hv_vm *vm = fc_vm_new(pid, start_time, TAKE_FD(pidfd), api);
    *ret_vm = vm;
    return 0;
fail:
    fc_abort_child(pid, pidfd);
    (void)unlink(spec->api_sock);
    return tp_err_wrap(err, "start firecracker");
}

/* PUT/PATCH a body built by one of fc_body's builders (freed here). */
static int
fc_put(struct hv_vm *vm, const char *method, const char *path, json_t *body, int timeout_ms,
       struct tp_err *err)
{
    int r = fc_http_call(vm_api(vm), method, path, body, timeout_ms, NULL, err);
    json_decref(body);
    return r;
}

static void
fc_kill(struct hv_vm *vm)
{
    fc_abort_child(vm->pid, vm->pidfd);
    close(vm->pidfd);
    fc_release(vm);
    free(vm);
}

static int
fc_launch(const struct hv_vm_spec *spec, struct hv_vm **ret_vm, struct tp_err *err)
{
    struct hv_vm *vm = NULL;
    json_t *b = NULL;
    int r;

    fc_uffd_forget(spec->dir); /* a booted VM has no page-fault handler */
    r = fc_spawn(spec, &vm, err);
    if (r < 0)
        return r;

    const struct fc_machine_config mc = {
        .vcpu_count = spec->vcpus,
        .mem_size_mib = spec->memory_mib,
        .track_dirty_pages = true, /* Diff snapshots write exactly the dirty pages */
    };
    /* Firecracker has one serial port: the kernel's console shares it with whatever the guest
     * writes there, whatever spec->kernel_log says (no second log). */
    _cleanup_free_ char *args =
        xasprintf("%s%sconsole=ttyS0 8250.nr_uarts=1", spec->cmdline ? spec->cmdline : "",
                  spec->cmdline && *spec->cmdline ? " " : "");
    const struct fc_boot_source bs = {
        .kernel_image_path = spec->kernel,
        .boot_args = args,
        .initrd_path = spec->initrd,
    };
    const struct fc_vsock_dev vs = { .guest_cid = FC_GUEST_CID, .uds_path = spec->agent_sock };
    if ((r = fc_body_machine_config(&mc, &b, err)) >= 0)
        r = fc_put(vm, "PUT", "/machine-config", b, 0, err);
    if (r >= 0 && (r = fc_body_boot_source(&bs, &b, err)) >= 0)
        r = fc_put(vm, "PUT", "/boot-source", b, 0, err);
    if (r >= 0 && spec->root_disk) {
        /* Relative to the instance dir (Firecracker's cwd): the path is recorded in the
         * snapshot, and a fork child restored from it must open its own disk, not its
         * parent's. */
        const char *disk = spec->root_disk;
        size_t dl = strlen(spec->dir);
        if (strncmp(disk, spec->dir, dl) == 0 && disk[dl] == '/')
            disk += dl + 1;
        const struct fc_drive d = {
            .drive_id = FC_ROOT_DRIVE,
            .path_on_host = disk,
            .is_root_device = false, /* the guest agent mounts it (torpor.root=/dev/vda) */
        };
        if ((r = fc_body_drive(&d, &b, err)) >= 0)
            r = fc_put(vm, "PUT", "/drives/" FC_ROOT_DRIVE, b, 0, err);
    }
    if (r >= 0 && spec->nic) {
        /* Firecracker opens the TAP by name (the manager made it persistent). */
        const struct fc_net_iface n = {
            .iface_id = FC_NET_IFACE,
            .host_dev_name = spec->nic->tap_name,
            .guest_mac = spec->nic->mac,
        };
        if ((r = fc_body_net_iface(&n, &b, err)) >= 0)
            r = fc_put(vm, "PUT", "/network-interfaces/" FC_NET_IFACE, b, 0, err);
    }
    if (r >= 0 && (r = fc_body_vsock(&vs, &b, err)) >= 0)
        r = fc_put(vm, "PUT", "/vsock", b, 0, err);
    if (r >= 0 && (r = fc_body_action(FC_ACTION_INSTANCE_START, &b, err)) >= 0)
        r = fc_put(vm, "PUT", "/actions", b, FC_LOAD_TIMEOUT_MS, err);
    if (r < 0) {
        fc_kill(vm);
        return tp_err_wrap(err, "boot");
    }
    *ret_vm = vm;
    return 0;
}

/* GET /. Firecracker serves one request at a time: while it loads a snapshot, this waits for
 * the load (timeout_ms <= 0: the connection's default). */
static int
fc_info(struct hv_vm *vm, int timeout_ms, enum fc_instance_state *ret, struct tp_err *err)
{
    _cleanup_(fc_instance_info_clear) struct fc_instance_info info = { 0 };
    json_t *j = NULL;
    int r = fc_http_call(vm_api(vm), "GET", "/", NULL, timeout_ms, &j, err);
    if (r >= 0)
        r = fc_parse_instance_info_json(j, &info, err);
    json_decref(j);
    if (r >= 0)
        *ret = info.state;
    return r;
}

static int
fc_query(struct hv_vm *vm, enum hv_run_state *ret, struct tp_err *err)
{
    enum fc_instance_state st;
    int r = fc_info(vm, FC_LOAD_TIMEOUT_MS, &st, err);
    if (r < 0)
        return r;
    /* A process that was never configured nor loaded: for a restore, its load never began. */
    *ret = st == FC_INSTANCE_RUNNING  ? HV_RUN_RUNNING
           : st == FC_INSTANCE_PAUSED ? HV_RUN_PAUSED
                                      : HV_RUN_LOADING;
    return 0;
}

static int
fc_vm_state(struct hv_vm *vm, enum fc_vm_target t, struct tp_err *err)
{
    json_t *b = NULL;
    int r = fc_body_vm_state(t, &b, err);
    return r < 0 ? r : fc_put(vm, "PATCH", "/vm", b, 0, err);
}

static int
fc_pause(struct hv_vm *vm, struct tp_err *err)
{
    return fc_vm_state(vm, FC_VM_PAUSED, err);
}

static int
fc_resume(struct hv_vm *vm, struct tp_err *err)
{
    return fc_vm_state(vm, FC_VM_RESUMED, err);
}

static int
fc_snapshot(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *snap_dir, bool diff,
            struct tp_err *err)
{
    _cleanup_free_ char *state = xasprintf("%s/" HV_SNAP_STATE, snap_dir);
    _cleanup_free_ char *memory = xasprintf("%s/" HV_SNAP_MEMORY, snap_dir);
    const struct fc_snapshot_create c = {
        .type = diff ? FC_SNAPSHOT_DIFF : FC_SNAPSHOT_FULL,
        .snapshot_path = state,
        .mem_file_path = memory,
    };
    json_t *b = NULL;
    (void)spec;
    /* Any guest can write its memory into a file of its own: it never travels in the state. */
    int r = fc_body_snapshot_create(&c, &b, err);
    return r < 0 ? r : fc_put(vm, "PUT", "/snapshot/create", b, FC_LOAD_TIMEOUT_MS, err);
}

/* A Diff writes the base's memory file in place: never one with other names (a fork
 * template's, which its children map; hypeman #298), nor a template the VM itself maps. */
static bool
fc_base_reusable(const struct hv_vm_spec *spec, const char *base_dir)
{
    _cleanup_free_ char *memory = xasprintf("%s/" HV_SNAP_MEMORY, base_dir);
    struct stat st;
    return !spec->template_dir && stat(memory, &st) == 0 && st.st_nlink == 1;
}

/* The template is a Full snapshot, a new memory file: the source runs on, on its own memory,
 * and only needs resuming (its dirty tracking restarted, so any retained base is stale). */
static int
fc_prepare_fork(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *tdir, bool keep_source,
                bool *ret_restart, struct tp_err *err)
{
    (void)keep_source; /* it always does */
    int r = fc_snapshot(vm, spec, tdir, false, err);
    if (r < 0)
        return r;
    *ret_restart = false;
    return 0;
}

static int
fc_restore(const struct hv_vm_spec *spec, const struct hv_restore_opts *o, struct hv_vm **ret_vm,
           bool *ret_resumed, struct tp_err *err)
{
    _cleanup_free_ char *state = xasprintf("%s/" HV_SNAP_STATE, o->snap_dir);
    _cleanup_free_ char *memory = xasprintf("%s/" HV_SNAP_MEMORY, o->snap_dir);
    _cleanup_free_ char *uffd_sock = NULL;
    struct hv_vm *vm = NULL;
    json_t *b = NULL;
    int r;

    if (access(memory, F_OK) < 0)
        return tp_err_set(err, -EOPNOTSUPP,
                          "firecracker cannot load guest memory from a state file");
    /* Uffd: the handler's socket listens before the load and it serves while the load is in
     * flight. Handler and VMM start side by side; the handler need be recorded only before the
     * load. */
    pid_t starter = 0;
    if (spec->mem_uffd)
        r = fc_uffd_start(spec->dir, memory, spec->vmm_log, &starter, &uffd_sock, err);
    else {
        fc_uffd_forget(spec->dir);
        r = 0;
    }
    if (r >= 0)
        r = fc_spawn(spec, &vm, err);
    if (r < 0) {
        if (uffd_sock)
            fc_uffd_abort(spec->dir, starter);
        return r;
    }
    if (o->phases.mark)
        o->phases.mark(o->phases.ctx, "start_process");
    if (uffd_sock) {
        r = fc_uffd_started(spec->dir, starter, spec->vmm_log, err);
        if (r < 0) {
            fc_kill(vm);
            return tp_err_wrap(err, "restore from '%s'", o->snap_dir);
        }
        if (o->phases.mark)
            o->phases.mark(o->phases.ctx, "start_uffd_handler");
    }
    /* The memory file is mapped MAP_PRIVATE and must not change while the VM lives; the vsock
     * socket and the TAP are this instance's (a fork child's are not its parent's; the guest
     * keeps its parent's MAC until the agent applies the child's). */
    const struct fc_net_override no = {
        .iface_id = FC_NET_IFACE,
        .host_dev_name = spec->nic ? spec->nic->tap_name : NULL,
    };
    const struct fc_snapshot_load l = {
        .snapshot_path = state,
        .backend = uffd_sock ? FC_MEM_BACKEND_UFFD : FC_MEM_BACKEND_FILE,
        .backend_path = uffd_sock ? uffd_sock : memory,
        .track_dirty_pages = true,
        .resume_vm = o->resume_on_load,
        .net_overrides = spec->nic ? &no : NULL,
        .n_net_overrides = spec->nic ? 1 : 0,
        .vsock_uds_path = spec->agent_sock,
    };
    r = fc_body_snapshot_load(&l, &b, err);
    if (r >= 0)
        r = fc_put(vm, "PUT", "/snapshot/load", b, FC_LOAD_TIMEOUT_MS, err);
    if (r < 0) {
        fc_kill(vm); /* a failed load leaves Firecracker tainted: it exits anyway */
        if (uffd_sock)
            fc_uffd_stop(spec->dir);
        return tp_err_wrap(err, "restore from '%s'", o->snap_dir);
    }
    if (o->phases.mark)
        o->phases.mark(o->phases.ctx, "load_snapshot");
    if (uffd_sock)
        ((struct fc_vm *)vm->priv)->uffd_dir = xstrdup(spec->dir);
    *ret_vm = vm;
    *ret_resumed = o->resume_on_load;
    return 0;
}

static int
fc_finish_load(struct hv_vm *vm, int timeout_ms, struct tp_err *err)
{
    enum fc_instance_state st;
    int r = fc_info(vm, timeout_ms, &st, err);
    if (r < 0)
        return r;
    /* A load is one request: a process still "Not started" never received it. */
    if (st == FC_INSTANCE_NOT_STARTED)
        return tp_err_set(err, -ENODATA, "firecracker %d never started loading", (int)vm->pid);
    return 0;
}

static int
fc_attach(const struct hv_vm_spec *spec, pid_t pid, uint64_t start_time, struct hv_vm **ret_vm,
          struct tp_err *err)
{
    _cleanup_close_ int pidfd = -EBADF;
    struct fc_http *api = NULL;
    int r;

    if (!spec->api_sock)
        return tp_err_set(err, -EINVAL, "VM spec needs an API socket");
    if (!proc_is_alive(pid, start_time))
        return tp_err_set(err, -ESRCH, "process %d is gone", (int)pid);
    pidfd = proc_pidfd_open(pid);
    if (pidfd < 0 || !proc_is_alive(pid, start_time))
        return tp_err_set(err, -ESRCH, "process %d is gone", (int)pid);
    /* A VMM whose page-fault handler died hangs at its next fault: it is as good as dead. */
    if (fc_uffd_check(spec->dir) < 0) {
        if (proc_pidfd_signal(pidfd, SIGKILL) >= 0)
            (void)proc_pidfd_wait(pidfd, pid, FC_REAP_MS);
        fc_uffd_forget(spec->dir);
        return tp_err_set(err, -ESRCH, "page-fault handler of firecracker %d is gone; killed it",
                          (int)pid);
    }
    r = fc_http_open(spec->api_sock, FC_START_TIMEOUT_MS, pidfd, &api, err);
    if (r < 0)
        return r;
    struct hv_vm *vm = fc_vm_new(pid, start_time, TAKE_FD(pidfd), api);
    if (fc_uffd_recorded(spec->dir))
        ((struct fc_vm *)vm->priv)->uffd_dir = xstrdup(spec->dir);
    *ret_vm = vm;
    return 0;
}

static int
fc_agent_connect(struct hv_vm *vm, const struct hv_vm_spec *spec, struct tp_err *err)
{
    (void)vm;
    return fc_vsock_connect(spec->agent_sock, FC_AGENT_VSOCK_PORT, 0, err);
}

static void
fc_release(struct hv_vm *vm)
{
    struct fc_vm *fv = vm ? vm->priv : NULL;
    if (!fv)
        return;
    /* A VMM that is gone takes its handler along: wait for it, so that nothing writes in the
     * instance dir once the VMM's owner moves on (rm removes the dir). */
    if (fv->uffd_dir && vm->pidfd >= 0 && sock_wait(vm->pidfd, POLLIN, 0) == 1)
        fc_uffd_wait(fv->uffd_dir, FC_REAP_MS);
    free(fv->uffd_dir);
    fc_http_free(fv->api);
    free(fv);
    vm->priv = NULL;
}

int
fc_version_parse(const char *text, char **ret)
{
    /* "Firecracker v1.16.1" */
    const char *p = text ? strstr(text, "Firecracker v") : NULL;
    unsigned a, b, c;
    if (!p || sscanf(p + 13, "%u.%u.%u", &a, &b, &c) != 3)
        return -EPROTO;
    *ret = xasprintf("%u.%u.%u", a, b, c);
    return 0;
}

static int
fc_probe(char **ret_version, struct tp_err *err)
{
    char *const argv[] = { (char *)fc_binary(), (char *)"--version", NULL };
    char buf[512];
    int r = proc_run_capture(argv, buf, sizeof(buf), 5000, err);
    if (r < 0)
        return r;
    if (fc_version_parse(buf, ret_version) < 0)
        return tp_err_set(err, -EPROTO, "'%s --version' printed no version", argv[0]);
    return 0;
}

/* Snapshots load only with the same minor release (FIRECRACKER.md: the state format's major
 * changes with nearly every minor release). */
static bool
fc_version_compatible(const char *snap, const char *now)
{
    unsigned a1, b1, a2, b2;
    return sscanf(snap, "%u.%u", &a1, &b1) == 2 && sscanf(now, "%u.%u", &a2, &b2) == 2 &&
           a1 == a2 && b1 == b2;
}

const struct hv_driver fc_driver = {
    .name = "firecracker",
    .caps = {
        [HV_CAP_PAUSE] = true,
        [HV_CAP_SNAPSHOT] = true,
        [HV_CAP_RESTORE] = true,
        [HV_CAP_FORK] = true,
        /* Diff snapshots write into the retained base's memory file in place. */
        [HV_CAP_SNAPSHOT_BASE_REUSE] = true,
        /* No clean exit that keeps a snapshot usable is worth waiting for: killed at once. */
        [HV_CAP_GRACEFUL_VMM_SHUTDOWN] = false,
        [HV_CAP_RESUME_ON_LOAD] = true,
        [HV_CAP_EXEC_AGENT] = true,
        [HV_CAP_NET] = true,
        /* mem_backend Uffd, served by torpor's own handler process (fc_uffd). */
        [HV_CAP_MEM_UFFD] = true,
    },
    .api_sock_name = "fc.sock",
    /* x86_64 Firecracker 1.16 loads ELF only (bzImage support is newer). */
    .boots_elf_only = true,
    /* PUT /network-interfaces and network_overrides name the TAP; no fd can be passed. */
    .net_tap_by_name = true,
    .agent_sock_name = "vsock.sock",
    .probe = fc_probe,
    .version_compatible = fc_version_compatible,
    .launch = fc_launch,
    .attach = fc_attach,
    .query = fc_query,
    .pause = fc_pause,
    .resume = fc_resume,
    .snapshot = fc_snapshot,
    .base_reusable = fc_base_reusable,
    .prepare_fork = fc_prepare_fork,
    .restore = fc_restore,
    .finish_load = fc_finish_load,
    .agent_connect = fc_agent_connect,
    .release = fc_release,
};
