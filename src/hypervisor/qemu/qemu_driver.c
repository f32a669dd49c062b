/* The QEMU driver: spawns qemu-system-x86_64 -M microvm and drives it over QMP.
 * Guest memory is a file QEMU maps shared, "mem" in the instance dir: the RAM itself. A
 * snapshot hard-links it as its memory image and streams only device state (x-ignore-shared),
 * so a standby writes just the dirty pages and a restore maps the same inode again. A fork
 * template's image is mapped copy-on-write (share=off) by its children and by the restarted
 * source; such a guest's own RAM exists only in its process, so its snapshots carry it in the
 * state stream (no memory image), and its restore loads it into a fresh file of its own. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hypervisor/qemu/qemu.h"
#include "hypervisor/qemu/qmp.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/sock.h"
#include "util/xalloc.h"

#define QEMU_QMP_FD             3
#define QEMU_AGENT_FD           4
#define QEMU_NET_FD             5
#define QEMU_LOG_TAIL           2048
#define QEMU_REAP_MS            5000
#define QEMU_LISTEN_QUEUE       8
#define QEMU_MIGRATE_TIMEOUT_MS 60000 /* device state is ~100 KB; generous for loaded hosts */
#define QEMU_MIGRATE_FD_NAME    "torpor-mig"
#define QEMU_MIGRATE_BANDWIDTH  (64ull << 30) /* bytes/s: effectively unthrottled */
#define QEMU_MEM_FILE           "mem"         /* the guest RAM file in the instance dir */

struct qemu_vm {
    struct qmp_conn *qmp;
};

static void qemu_release(struct hv_vm *vm);

static struct qmp_conn *
vm_qmp(struct hv_vm *vm)
{
    return ((struct qemu_vm *)vm->priv)->qmp;
}

/* The file the guest RAM of spec is: its own, or (copy-on-write) its template's image. */
static char *
qemu_mem_path(const struct hv_vm_spec *spec)
{
    if (spec->template_dir)
        return fs_path_join(spec->template_dir, HV_SNAP_MEMORY);
    return fs_path_join(spec->dir, QEMU_MEM_FILE);
}

static int
qemu_prepare_mem(const char *path, uint32_t memory_mib, struct tp_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    off_t want = (off_t)memory_mib << 20;
    bool created = fd >= 0;
    struct stat st;
    int r;

    if (fd < 0 && errno == EEXIST)
        fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open memory file '%s'", path);
    if (fstat(fd, &st) < 0) {
        r = tp_err_errno(err, -errno, "stat memory file '%s'", path);
        if (created)
            (void)unlink(path);
        return r;
    }
    if (st.st_size >= want)
        return 0;
    /* Allocated blocks up front: a sparse file makes every first guest touch allocate, and boot
     * measurably slower. */
    r = posix_fallocate(fd, 0, want);
    if (r != 0) {
        /* A full disk must not keep a half-allocated file: remove one made here; an existing
         * one (a restore's guest RAM) gives back only what was added to it. */
        if (created)
            (void)unlink(path);
        else
            (void)ftruncate(fd, st.st_size);
        return tp_err_errno(err, -r, "allocate %" PRIu32 " MiB for '%s'", memory_mib, path);
    }
    return 0;
}

/* The last QEMU_LOG_TAIL bytes QEMU wrote since offset `from`, whole lines joined by "; ". */
static char *
qemu_log_tail(const char *path, off_t from)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    char buf[QEMU_LOG_TAIL + 1];
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= from)
        return NULL;
    off_t start = MAX(from, st.st_size - QEMU_LOG_TAIL);
    ssize_t n = pread(fd, buf, QEMU_LOG_TAIL, start);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';

    char *p = buf;
    if (start > from) {
        char *nl = strchr(p, '\n');
        if (nl)
            p = nl + 1;
    }
    size_t len = strlen(p);
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r' || p[len - 1] == ' '))
        p[--len] = '\0';
    if (len == 0)
        return NULL;

    char *out = xmalloc(len * 2 + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            *o++ = ';';
            *o++ = ' ';
        } else if (p[i] != '\r')
            *o++ = p[i];
    }
    *o = '\0';
    return out;
}

/* Kill and reap a QEMU that failed to come up, so nothing is left running. */
static void
qemu_abort_child(pid_t pid, int pidfd)
{
    if (pidfd >= 0) {
        (void)proc_pidfd_signal(pidfd, SIGKILL);
        if (proc_pidfd_wait(pidfd, pid, QEMU_REAP_MS) == 0)
            return;
    } else
        (void)kill(pid, SIGKILL);
    /* Our own child: after SIGKILL this cannot block for long. */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static struct hv_vm *
qemu_vm_new(pid_t pid, uint64_t start_time, int pidfd, struct qmp_conn *qmp)
{
    struct hv_vm *vm = xnew(struct hv_vm, 1);
    struct qemu_vm *qv = xnew(struct qemu_vm, 1);

    qv->qmp = qmp;
    *vm = (struct hv_vm){
        .drv = &qemu_driver,
        .pid = pid,
        .start_time = start_time,
        .pidfd = pidfd,
        .priv = qv,
    };
    return vm;
}

/* Start QEMU for spec and complete the QMP handshake: the common part of launch and restore. */
static int
qemu_spawn(const struct hv_vm_spec *spec, bool incoming, bool start_paused, struct hv_vm **ret_vm,
           struct tp_err *err)
{
    _cleanup_close_ int log_fd = -EBADF, qmp_listen = -EBADF, agent_listen = -EBADF;
    _cleanup_close_ int qmp_fd = -EBADF, pidfd = -EBADF;
    _cleanup_strv_free_ char **argv = NULL;
    _cleanup_free_ char *mem = NULL;
    struct qmp_conn *qmp = NULL;
    const char *accel;
    uint64_t start_time = 0;
    off_t log_start;
    pid_t pid;
    int r;

    if (!spec->api_sock || !spec->agent_sock || !spec->vmm_log || !spec->dir)
        return tp_err_set(err, -EINVAL,
                          "VM spec needs a directory, QMP and agent sockets and a VMM log");
    mem = qemu_mem_path(spec);
    r = qemu_accel_pick(spec->accel, NULL, NULL, &accel, err);
    if (r < 0)
        return r;
    struct qemu_argv_opts o = {
        .accel = accel,
        .tsc_khz = qemu_tsc_khz(),
        .qmp_fd = QEMU_QMP_FD,
        .agent_fd = QEMU_AGENT_FD,
        .net_fd = QEMU_NET_FD,
        .incoming = incoming,
        .start_paused = start_paused,
        .mem_path = mem,
        .mem_private = spec->template_dir != NULL,
    };
    r = qemu_argv_build(spec, &o, &argv, err);
    if (r < 0)
        return r;
    if (!o.mem_private) {
        r = qemu_prepare_mem(mem, spec->memory_mib, err);
        if (r < 0)
            return r;
    }

    log_fd = open(spec->vmm_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (log_fd < 0)
        return tp_err_errno(err, -errno, "open VMM log '%s'", spec->vmm_log);
    log_start = lseek(log_fd, 0, SEEK_END);
    if (log_start < 0)
        log_start = 0;

    qmp_listen = sock_listen_unix(spec->api_sock, QEMU_LISTEN_QUEUE, err);
    if (qmp_listen < 0)
        return qmp_listen;
    agent_listen = sock_listen_unix(spec->agent_sock, QEMU_LISTEN_QUEUE, err);
    if (agent_listen < 0) {
        r = agent_listen;
        goto fail_sockets;
    }
    /* Connecting now lands in the listen backlog; QEMU accepts it once it runs: no polling. */
    qmp_fd = sock_connect_unix(spec->api_sock, err);
    if (qmp_fd < 0) {
        r = qmp_fd;
        goto fail_sockets;
    }

    const struct proc_fd_map fds[] = {
        { .from = qmp_listen, .to = QEMU_QMP_FD },
        { .from = agent_listen, .to = QEMU_AGENT_FD },
        { .from = spec->nic ? spec->nic->tap_fd : -1, .to = QEMU_NET_FD },
    };
    const struct proc_spawn_opts so = {
        .argv = argv,
        .cwd = spec->dir,
        .stdin_fd = -1,
        .stdout_fd = log_fd,
        .stderr_fd = log_fd,
        .fds = fds,
        .n_fds = ELEMENTSOF(fds) - (spec->nic ? 0 : 1),
        .new_session = true,
        /* QEMU needs no privilege: it opens only files its user owns (the instance's, the
         * image cache's; /dev/kvm is root's) and gets everything else as an fd. */
        .no_new_privs = true,
        .drop_caps = true,
        .before_exec = spec->vmm_spawned ? hv_spawn_report : NULL,
        .before_exec_ctx = (void *)spec,
    };
    r = proc_spawn(&so, &pid, err);
    if (r < 0)
        goto fail_sockets;
    /* Only QEMU may hold the listeners: if it dies, the last close resets our queued connection
     * and the handshake below ends at once instead of at the timeout. */
    qmp_listen = safe_close(qmp_listen);
    agent_listen = safe_close(agent_listen);

    pidfd = proc_pidfd_open(pid);
    if (pidfd < 0) {
        r = tp_err_errno(err, pidfd, "open pidfd of QEMU %d", (int)pid);
        goto fail_child;
    }
    r = proc_start_time(pid, &start_time);
    if (r < 0) {
        r = tp_err_errno(err, r, "read start time of QEMU %d", (int)pid);
        goto fail_child;
    }
    r = qmp_conn_adopt(TAKE_FD(qmp_fd), QMP_TIMEOUT_MS, pidfd, &qmp, err);
    if (r < 0)
        goto fail_child;

    *ret_vm = qemu_vm_new(pid, start_time, TAKE_FD(pidfd), qmp);
    log_debug("launched QEMU %d for '%s' (accel %s)", (int)pid, spec->id ? spec->id : "", accel);
    return 0;

fail_child:
    qemu_abort_child(pid, pidfd);
    {
        /* QEMU's own words on why it stopped are the most useful part: innermost frame. */
        _cleanup_free_ char *tail = qemu_log_tail(spec->vmm_log, log_start);
        if (tail && err) {
            _cleanup_free_ char *why = xstrdup(tp_err_msg(err));
            tp_err_set(err, r, "%s", tail);
            tp_err_wrap(err, "%s", why);
        }
    }
fail_sockets:
    /* Both paths are ours: sock_listen_unix() replaced whatever stale socket was there. */
    (void)unlink(spec->api_sock);
    (void)unlink(spec->agent_sock);
    tp_err_wrap(err, "start QEMU");
    return r;
}

static int
qemu_launch(const struct hv_vm_spec *spec, struct hv_vm **ret_vm, struct tp_err *err)
{
    return qemu_spawn(spec, false, false, ret_vm, err);
}

/* A failed migration logs nothing: QEMU keeps its reason for query-migrate. Its text is the
 * innermost frame, and its errno what the API maps (a full disk is ENOSPC). */
static int
qemu_migration_failed(struct hv_vm *vm, const char *what, struct tp_err *err)
{
    _cleanup_(qmp_migrate_info_clear) struct qmp_migrate_info info = { 0 };
    _cleanup_(tp_err_clear) struct tp_err qerr = { 0 };

    if (qmp_query_migrate_info(vm_qmp(vm), &info, &qerr) < 0)
        return tp_err_set(err, -EIO, "%s failed (its reason is unknown: %s)", what,
                          tp_err_msg(&qerr));
    if (!info.error_desc)
        return tp_err_set(err, -EIO, "%s failed (QEMU gave no reason)", what);
    tp_err_set(err, info.error_code, "%s", info.error_desc);
    return tp_err_wrap(err, "%s failed", what);
}

/* Wait for the MIGRATION event that ends a save or load: event-driven, bounded. */
static int
qemu_wait_migration(struct hv_vm *vm, const char *what, int timeout_ms, struct tp_err *err)
{
    for (;;) {
        json_auto_t *ev = NULL;
        int r = qmp_event_next(vm_qmp(vm), &ev, timeout_ms, err);
        if (r < 0)
            return tp_err_wrap(err, "wait for %s", what);
        if (strcmp(json_string_value(json_object_get(ev, "event")) ?: "", "MIGRATION") != 0)
            continue;
        const char *st = json_string_value(json_object_get(json_object_get(ev, "data"), "status"));
        if (!st)
            continue;
        if (strcmp(st, "completed") == 0)
            return 0;
        if (strcmp(st, "failed") == 0)
            return qemu_migration_failed(vm, what, err);
        if (strcmp(st, "cancelled") == 0)
            return tp_err_set(err, -ECANCELED, "%s cancelled", what);
    }
}

/* Both ends must agree. Normally RAM lives in the shared file and the stream carries device
 * state only; with ram_in_state (private, copy-on-write RAM) the stream carries RAM too, at full
 * speed (QEMU's default cap is 128 MiB/s). Events report completion. */
static int
qemu_migration_setup(struct hv_vm *vm, bool ram_in_state, struct tp_err *err)
{
    int r = qmp_migrate_set_capability(vm_qmp(vm), "x-ignore-shared", !ram_in_state, err);
    if (r >= 0)
        r = qmp_migrate_set_capability(vm_qmp(vm), "events", true, err);
    if (r >= 0 && ram_in_state)
        r = qmp_migrate_set_max_bandwidth(vm_qmp(vm), QEMU_MIGRATE_BANDWIDTH, err);
    return r;
}

static int
qemu_snapshot(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *snap_dir, bool diff,
              struct tp_err *err)
{
    _cleanup_free_ char *state = xasprintf("%s/" HV_SNAP_STATE, snap_dir);
    _cleanup_free_ char *tmp = xasprintf("%s/" HV_SNAP_STATE ".tmp", snap_dir);
    _cleanup_free_ char *memory = xasprintf("%s/" HV_SNAP_MEMORY, snap_dir);
    _cleanup_free_ char *mem = qemu_mem_path(spec);
    _cleanup_close_ int fd = -EBADF;
    int r;

    /* diff needs no telling: the shared memory file is the RAM, and the page cache knows which
     * pages changed since it was last made durable. */
    (void)diff;
    /* A copy-on-write guest has its RAM only in its own process: it must travel in the stream. */
    const bool ram_in_state = spec->template_dir != NULL;
    if (!ram_in_state && link(mem, memory) < 0 && errno != EEXIST)
        return tp_err_errno(err, -errno, "link memory file into '%s'", snap_dir);
    r = qemu_migration_setup(vm, ram_in_state, err);
    if (r < 0)
        return r;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return tp_err_errno(err, -errno, "create '%s'", tmp);
    /* Events of an earlier, failed save must not end this one's wait. */
    for (json_t *stale = NULL; qmp_event_next(vm_qmp(vm), &stale, 0, NULL) == 0;)
        json_decref(stale);
    r = qmp_getfd(vm_qmp(vm), QEMU_MIGRATE_FD_NAME, fd, err);
    if (r >= 0)
        r = qmp_migrate(vm_qmp(vm), "fd:" QEMU_MIGRATE_FD_NAME, err);
    if (r >= 0) {
        r = qemu_wait_migration(vm, "saving device state", QEMU_MIGRATE_TIMEOUT_MS, err);
        /* A save still running must not finish later and stop a VM the caller resumed. */
        if (r < 0)
            (void)qmp_migrate_cancel(vm_qmp(vm), NULL);
    }
    if (r >= 0 && fsync(fd) < 0)
        r = tp_err_errno(err, -errno, "fsync '%s'", tmp);
    if (r >= 0 && rename(tmp, state) < 0)
        r = tp_err_errno(err, -errno, "rename '%s'", tmp);
    if (r < 0)
        (void)unlink(tmp);
    return r;
}

static int
qemu_restore(const struct hv_vm_spec *spec, const struct hv_restore_opts *o, struct hv_vm **ret_vm,
             bool *ret_resumed, struct tp_err *err)
{
    _cleanup_free_ char *state = xasprintf("%s/" HV_SNAP_STATE, o->snap_dir);
    _cleanup_free_ char *memory = xasprintf("%s/" HV_SNAP_MEMORY, o->snap_dir);
    _cleanup_free_ char *mem = qemu_mem_path(spec);
    _cleanup_close_ int fd = open(state, O_RDONLY | O_CLOEXEC);
    struct hv_vm *vm = NULL;
    int r;

    if (fd < 0)
        return tp_err_errno(err, -errno, "open snapshot state '%s'", state);
    /* Without a memory image the RAM is in the stream (a copy-on-write guest's snapshot). */
    const bool ram_in_state = !fs_exists(memory);
    /* The snapshot's image is the guest RAM file again (the same inode), unless the guest maps
     * a template or still has its file (never unlinked since: the same inode too). */
    if (!ram_in_state && !spec->template_dir && !fs_exists(mem) && link(memory, mem) < 0)
        return tp_err_errno(err, -errno, "link '%s'", memory);
    /* RAM from the stream goes into a fresh file of its own: a "mem" left behind may still be
     * a link to a template's image (a crash before drop_memory), which the load would
     * overwrite under every VM that maps the template. */
    if (ram_in_state && !spec->template_dir && unlink(mem) < 0 && errno != ENOENT)
        return tp_err_errno(err, -errno, "remove '%s'", mem);
    /* Without -S QEMU starts the guest itself once the state is in: resume on load. */
    r = qemu_spawn(spec, true, !o->resume_on_load, &vm, err);
    if (r < 0)
        return r;
    if (o->phases.mark)
        o->phases.mark(o->phases.ctx, "start_process");

    r = qemu_migration_setup(vm, ram_in_state, err);
    if (r >= 0)
        r = qmp_getfd(vm_qmp(vm), QEMU_MIGRATE_FD_NAME, fd, err);
    if (r >= 0)
        r = qmp_migrate_incoming(vm_qmp(vm), "fd:" QEMU_MIGRATE_FD_NAME, err);
    if (r >= 0)
        r = qemu_wait_migration(vm, "loading device state", QEMU_MIGRATE_TIMEOUT_MS, err);
    if (r < 0) {
        qemu_abort_child(vm->pid, vm->pidfd);
        close(vm->pidfd);
        qemu_release(vm);
        free(vm);
        return tp_err_wrap(err, "restore from '%s'", o->snap_dir);
    }
    if (o->phases.mark)
        o->phases.mark(o->phases.ctx, "load_snapshot");
    *ret_vm = vm;
    *ret_resumed = o->resume_on_load;
    return 0;
}

/* microvm puts guest RAM at guest-physical 0, in one piece below 2 GiB (more is split around
 * the 4 GiB hole): there, an address is the memory image's offset. Beyond it, nothing is told. */
static int
qemu_posted(struct hv_vm *vm, const struct hv_vm_spec *spec, struct hv_mem_range **ret,
            size_t *ret_n, struct tp_err *err)
{
    const uint64_t lowmem = (uint64_t)spec->memory_mib << 20;
    const uint64_t limit = lowmem < (2ull << 30) ? lowmem : (2ull << 30);
    struct hv_mem_range *v = NULL;
    size_t n = 0, kept = 0;
    int r = qemu_posted_buffers(vm_qmp(vm), QEMU_POSTED_PER_QUEUE, &v, &n, err);

    if (r < 0)
        return r;
    for (size_t k = 0; k < n; k++)
        if (v[k].off < limit && v[k].len <= limit - v[k].off)
            v[kept++] = v[k];
    *ret = v;
    *ret_n = kept;
    return 0;
}

/* The RAM file is the retained base: a diff writes it in place, so never a template's. */
static bool
qemu_base_reusable(const struct hv_vm_spec *spec, const char *base_dir)
{
    (void)base_dir;
    return !spec->template_dir;
}

/* The template is a snapshot like a standby's (its image: the source's RAM file, linked).
 * QEMU cannot keep running on a file that children now map: the source restarts on it,
 * copy-on-write like them. */
static int
qemu_prepare_fork(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *tdir,
                  bool keep_source, bool *ret_restart, struct tp_err *err)
{
    int r;

    if (keep_source && !spec->template_dir) {
        /* The template gets a copy of the RAM file, taken while the guest is paused; the
         * source keeps mapping its own and only resumes. */
        _cleanup_free_ char *mem = qemu_mem_path(spec);
        _cleanup_free_ char *memory = xasprintf("%s/" HV_SNAP_MEMORY, tdir);
        r = fs_clone_file(mem, memory, 0600, err);
        if (r >= 0)
            r = qemu_snapshot(vm, spec, tdir, false, err); /* finds its memory in place */
        if (r < 0)
            return r;
        *ret_restart = false;
        return 0;
    }
    r = qemu_snapshot(vm, spec, tdir, false, err);
    if (r < 0)
        return r;
    *ret_restart = true;
    return 0;
}

static int
qemu_drop_memory(const struct hv_vm_spec *spec, bool running, struct tp_err *err)
{
    _cleanup_free_ char *mem = fs_path_join(spec->dir, QEMU_MEM_FILE);
    /* A guest on a template no longer uses its own file (the template holds that inode). */
    if (running && !spec->template_dir)
        return 0;
    if (unlink(mem) < 0 && errno != ENOENT)
        return tp_err_errno(err, -errno, "remove '%s'", mem);
    return 0;
}

/* A guest restored onto the image itself (shared) writes it: snap_validate sees a used
 * snapshot. One mapping a template, or loading its RAM from the stream, leaves no trace. */
static bool
qemu_load_writes_snapshot(const struct hv_vm_spec *spec, const char *snap_dir)
{
    _cleanup_free_ char *memory = fs_path_join(snap_dir, HV_SNAP_MEMORY);
    return !spec->template_dir && fs_exists(memory);
}

static int
qemu_finish_load(struct hv_vm *vm, int timeout_ms, struct tp_err *err)
{
    _cleanup_free_ char *status = NULL;
    int r = qmp_query_migrate(vm_qmp(vm), &status, err);

    if (r < 0)
        return r;
    /* The destination reports its incoming stream here once migrate-incoming was issued. */
    if (strcmp(status, "none") == 0)
        return tp_err_set(err, -ENODATA, "QEMU %d never started loading", (int)vm->pid);
    if (strcmp(status, "completed") == 0)
        return 0;
    if (strcmp(status, "failed") == 0)
        return qemu_migration_failed(vm, "loading device state", err);
    if (strcmp(status, "cancelled") == 0)
        return tp_err_set(err, -ECANCELED, "loading device state cancelled");
    /* Still loading: the events capability the dead daemon set is global, so this monitor
     * gets the MIGRATION event too. */
    return qemu_wait_migration(vm, "loading device state", timeout_ms, err);
}

static int
qemu_attach(const struct hv_vm_spec *spec, pid_t pid, uint64_t start_time, struct hv_vm **ret_vm,
            struct tp_err *err)
{
    _cleanup_close_ int pidfd = -EBADF;
    struct qmp_conn *qmp = NULL;
    int r;

    if (!spec->api_sock)
        return tp_err_set(err, -EINVAL, "VM spec needs a QMP socket");
    if (!proc_is_alive(pid, start_time))
        return tp_err_set(err, -ESRCH, "process %d started at %" PRIu64 " is gone", (int)pid,
                          start_time);
    pidfd = proc_pidfd_open(pid);
    if (pidfd < 0)
        return tp_err_errno(err, pidfd == -ESRCH ? -ESRCH : pidfd, "open pidfd of %d", (int)pid);
    /* The pid may have been recycled between the first check and pidfd_open. */
    if (!proc_is_alive(pid, start_time))
        return tp_err_set(err, -ESRCH, "process %d started at %" PRIu64 " is gone", (int)pid,
                          start_time);
    /* A dead daemon's QMP connection closed with it, so QEMU accepts this one. */
    r = qmp_conn_open(spec->api_sock, QMP_TIMEOUT_MS, pidfd, &qmp, err);
    if (r < 0)
        return r;
    /* An earlier daemon's save has nobody left to wait for it: cancel it, so it cannot end
     * later and stop a VM this daemon resumes. An incoming load is left alone. */
    enum hv_run_state rs;
    _cleanup_free_ char *mig = NULL;
    struct hv_vm *vm = qemu_vm_new(pid, start_time, TAKE_FD(pidfd), qmp);
    if (qmp_query_status(qmp, &rs, NULL, NULL) >= 0 && rs != HV_RUN_LOADING &&
        qmp_query_migrate(qmp, &mig, NULL) >= 0 &&
        (strcmp(mig, "active") == 0 || strcmp(mig, "setup") == 0 || strcmp(mig, "device") == 0 ||
         strcmp(mig, "pre-switchover") == 0) &&
        qmp_migrate_cancel(qmp, NULL) >= 0) {
        /* Cancelling is asynchronous: wait for its end, or a late completion would pause the
         * VM again after the caller resumed it. Completed, failed or cancelled all do. */
        struct tp_err e = { 0 };
        int w = qemu_wait_migration(vm, "cancelling an abandoned save", QEMU_REAP_MS, &e);
        if (w < 0 && w != -ECANCELED)
            log_debug("QEMU %d: %s", (int)pid, tp_err_msg(&e));
        tp_err_clear(&e);
    }
    *ret_vm = vm;
    return 0;
}

static int
qemu_query(struct hv_vm *vm, enum hv_run_state *ret, struct tp_err *err)
{
    return qmp_query_status(vm_qmp(vm), ret, NULL, err);
}

static int
qemu_pause(struct hv_vm *vm, struct tp_err *err)
{
    return qmp_stop(vm_qmp(vm), err);
}

static int
qemu_resume(struct hv_vm *vm, struct tp_err *err)
{
    return qmp_cont(vm_qmp(vm), err);
}

static int
qemu_shutdown(struct hv_vm *vm, int timeout_ms, struct tp_err *err)
{
    int r;

    r = qmp_quit(vm_qmp(vm), err);
    /* QEMU may close the socket before its reply reaches us; the pidfd tells the truth. */
    if (r < 0 && r != -ECONNRESET)
        return r;
    if (r < 0)
        tp_err_clear(err);
    r = proc_pidfd_wait(vm->pidfd, vm->pid, timeout_ms);
    if (r == -ETIMEDOUT)
        return tp_err_set(err, r, "QEMU %d did not exit within %d ms of 'quit'", (int)vm->pid,
                          timeout_ms);
    if (r < 0)
        return tp_err_errno(err, r, "wait for QEMU %d", (int)vm->pid);
    return 0;
}

static int
qemu_agent_connect(struct hv_vm *vm, const struct hv_vm_spec *spec, struct tp_err *err)
{
    if (!spec->agent_sock)
        return tp_err_set(err, -EINVAL, "VM spec needs an agent socket");
    return sock_connect_unix(spec->agent_sock, err);
}

static void
qemu_release(struct hv_vm *vm)
{
    struct qemu_vm *qv = vm ? vm->priv : NULL;

    if (!qv)
        return;
    qmp_conn_free(qv->qmp);
    free(qv);
    vm->priv = NULL;
}

const struct hv_driver qemu_driver = {
    .name = "qemu",
    .api_sock_name = "qmp.sock",
    .agent_sock_name = "agent.sock",
    .probe = qemu_probe,
    .version_compatible = qemu_version_compatible,
    .caps = {
        [HV_CAP_PAUSE] = true,
        [HV_CAP_SNAPSHOT] = true,
        [HV_CAP_RESTORE] = true,
        /* The shared memory file is the retained base: later snapshots write only the pages
         * dirtied since it was last made durable. */
        [HV_CAP_SNAPSHOT_BASE_REUSE] = true,
        /* Children map a frozen memory image copy-on-write (share=off). */
        [HV_CAP_FORK] = true,
        [HV_CAP_GRACEFUL_VMM_SHUTDOWN] = true,
        [HV_CAP_RESUME_ON_LOAD] = true,
        [HV_CAP_EXEC_AGENT] = true,
        [HV_CAP_NET] = true,
    },
    .launch = qemu_launch,
    .attach = qemu_attach,
    .query = qemu_query,
    .pause = qemu_pause,
    .resume = qemu_resume,
    .shutdown = qemu_shutdown,
    .snapshot = qemu_snapshot,
    .base_reusable = qemu_base_reusable,
    .prepare_fork = qemu_prepare_fork,
    .drop_memory = qemu_drop_memory,
    .load_writes_snapshot = qemu_load_writes_snapshot,
    .restore = qemu_restore,
    .finish_load = qemu_finish_load,
    .agent_connect = qemu_agent_connect,
    .posted_buffers = qemu_posted,
    .release = qemu_release,
};
