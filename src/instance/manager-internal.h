/* Shared by the manager's verb files only: the in-memory instance table and its helpers. */
#pragma once

#include <pthread.h>

#include "hypervisor/hv.h"
#include "instance/manager.h"
#include "instance/trace.h"
#include "net/net.h"
#include "snapshot/workingset.h"
#include "store/paths.h"

#define AGENT_READY_TIMEOUT_MS     90000 /* first boot under TCG with sanitizers on a busy host */
#define AGENT_RECONNECT_TIMEOUT_MS 30000 /* a restored guest under TCG on a loaded host */
#define VMM_SHUTDOWN_TIMEOUT_MS    5000
#define VMM_KILL_TIMEOUT_MS        5000

struct monitor;

/* One per instance. `lock` serialises operations; reads go to the store instead. */
struct inst {
    struct inst_manager *m;
    char id[INST_ID_LEN + 1];
    pthread_mutex_t lock;
    struct inst_record *rec; /* under lock */
    struct inst_paths paths;
    struct hv_vm *vm;   /* live VMM or NULL; under lock */
    char *cmdline;      /* kernel command line the VMM was started with */
    char *template_dir; /* the fork template backing the guest's memory (last spec), or NULL */
    char *api_sock;     /* the driver's control socket in the instance dir (last spec) */
    char *agent_sock;   /* the host end of the agent channel (last spec) */
    struct agent_conn *agent; /* under lock; may be NULL (connected lazily) */
    /* Under lock: the VMM was started by a restore, so its next standby records the pages its
     * guest touched since (the working set the restore after it prefetches). */
    bool record_working_set;
    /* Under lock: the pages the guest touched in the run before, as the last standby read
     * them from its VMM (not merged); NULL until then and after a boot or a daemon restart. */
    struct snap_ws *ws_prev;
    /* Under lock: this boot of an image instance does not start the workload: the client runs
     * it attached through exec (run -it IMAGE). Only for the run's own boot. */
    bool workload_deferred;
    bool removed;  /* under lock */
    unsigned refs; /* under manager lock */
    /* Under the manager lock: a boot in progress and its VMM, which rm -f may cancel. */
    bool booting, boot_cancelled;
    int boot_pidfd;
    /* Under lock: what the event stream was last told (observe.c). */
    enum inst_state obs_state;
    char obs_op[24];
};

struct inst_manager {
    char *data_dir;
    char *cache_dir;
    char *agent_path;
    char *accel;
    uint64_t console_log_max;
    bool no_warm_runs; /* warm.h: every run boots */
    struct store *store;
    pthread_mutex_t lock; /* guards tab/n */
    struct inst **tab;
    size_t n, cap;
    struct monitor *mon;
    pthread_mutex_t template_lock;   /* template creation vs. garbage collection */
    char (*pinned)[INST_ID_LEN + 1]; /* under template_lock: templates a fork is still using */
    size_t n_pinned, cap_pinned;
    pthread_mutex_t workers_lock; /* with workers_cv: detached fork helpers still running */
    pthread_cond_t workers_cv;
    unsigned workers;
    pthread_mutex_t change_lock; /* with change_cv: wakes inst_wait_state on every save */
    pthread_cond_t change_cv;
    uint64_t change_gen;
    bool quiescing; /* under change_lock: inst_manager_quiesce() was called */
    bool net_on;    /* torpord owns a bridge on subnet */
    char *net_dns;  /* name servers for guests ("IP[,IP...]"), NULL: the gateway */
    struct net_subnet subnet;
    pthread_mutex_t net_lock; /* address choice + insert: one allocation at a time */
};

/* Resolve ref and lock the instance for an operation. -ENOENT / -ENOTUNIQ from the store. */
int inst_acquire(struct inst_manager *m, const char *ref, struct inst **ret, struct tp_err *err);
/* The same by exact id (monitor); -ENOENT when gone. */
int inst_acquire_id(struct inst_manager *m, const char *id, struct inst **ret);
void inst_release(struct inst_manager *m, struct inst *i);
/* Boots are long (the guest boots while the instance is locked): rm -f must not wait for one.
 * inst_boot_track publishes whether i boots and its VMM once there is one; inst_cancel_boot,
 * without the instance lock, kills that VMM (now, or as soon as it is published), so the boot
 * fails at once. -ESRCH when no boot runs. */
void inst_boot_track(struct inst_manager *m, struct inst *i, bool booting, const struct hv_vm *vm);
int inst_cancel_boot(struct inst_manager *m, const char *id);
/* Add a new instance for rec (takes rec); the caller then acquires it by id. */
struct inst *inst_table_add(struct inst_manager *m, struct inst_record *rec);
/* Mark removed and drop from the table (caller holds i->lock). */
void inst_table_remove(struct inst_manager *m, struct inst *i);

/* Remove an instance that never became one (a failed or interrupted run, a fork child undone):
 * its VMM, files and record. Releases i. */
void inst_discard_new(struct inst_manager *m, struct inst *i);
/* One hop of the state table, persisted. -EBUSY when the table forbids it. */
int inst_transition(struct inst_manager *m, struct inst *i, enum inst_state to, struct tp_err *err);
/* Wake state waiters after a persisted change (or a removal). */
void manager_notify_change(struct inst_manager *m);
/* Persist i->rec as it is. */
int inst_save(struct inst_manager *m, struct inst *i, struct tp_err *err);
/* The operation journal (store.h: op, op_data). Persist that op is in flight on i, with what
 * its recovery needs (data: JSON text or NULL), before the op changes anything. */
int inst_op_begin(struct inst_manager *m, struct inst *i, const char *op, const char *data,
                  struct tp_err *err);
/* The same in memory only, for an op whose next save comes before anything recovery would
 * have to undo (it is persisted then). */
void inst_op_set(struct inst *i, const char *op, const char *data);
/* Replace the journal's data as the op progresses (persisted). */
int inst_op_progress(struct inst_manager *m, struct inst *i, const char *data, struct tp_err *err);
/* Record an operation's trace (and error, if any) on the instance, end its journal, persist. */
void inst_finish_op(struct inst_manager *m, struct inst *i, struct trace *t,
                    const struct tp_err *err);
/* -EBUSY "instance 'x' is <State>: <what> needs <states>" unless state is one of allowed. */
int inst_require_state(struct inst *i, const char *what, unsigned allowed_mask, struct tp_err *err);
#define STATE_BIT(s) (1u << (s))

/* Boot the VMM for i (state Created or Stopped) and wait for the agent: the shared part of
 * run and start. On failure nothing is left running. */
int inst_boot(struct inst_manager *m, struct inst *i, struct trace *t, struct tp_err *err);
/* The guest's machine id (/etc/machine-id), derived from its instance id: its own, and the
 * same at every boot. */
#define INST_MACHINE_ID_LEN 32
void inst_machine_id(const char *id, char ret[INST_MACHINE_ID_LEN + 1]);
/* (inst_boot returns 1 instead of 0 when an image's workload ended before the agent was ready:
 * the VMM is gone, exit_code set; the caller records Stopped.) */
/* The guest kernel command line for i (the same at boot and at every restore). */
int inst_cmdline(struct inst *i, char **ret, struct tp_err *err);

/* workload.c: an image instance's workload. The agent reads its spec from INST_WORKLOAD_SPEC
 * ("arg=", "env=", "cwd=", "user=" lines, values hex) and, when the workload ends, writes its
 * exit code as decimal text to INST_WORKLOAD_EXIT, then powers the guest off. */
#define INST_WORKLOAD_SPEC "/.torpor-workload"
#define INST_WORKLOAD_EXIT "/.torpor-exit"
char *inst_workload_render(const struct inst_config *c);
/* Before a fresh boot: the spec into the instance's disk, any earlier exit code cleared. */
int inst_workload_prepare(struct inst *i, struct tp_err *err);
/* Once the guest is down: the workload's exit code, or -ENOENT when it left none (it still ran,
 * or the guest died first). */
int inst_workload_exit_code(struct inst *i);
/* Make sure the record names i->vm (drivers that do not call spec->vmm_spawned). */
int inst_vmm_recorded(struct inst_manager *m, struct inst *i, struct tp_err *err);
/* Fill spec from i; strings borrowed from i. */
void inst_spec(struct inst_manager *m, struct inst *i, struct hv_vm_spec *spec);
/* After a restore: whether the snapshot in dir, which the VM now runs from, is worth keeping as
 * its retained base (the driver's base_reusable; false for an unknown driver). */
bool inst_base_worth_keeping(struct inst *i, const struct hv_driver *drv, const char *dir);
/* Stop the VMM (graceful where the capability says so, else kill) and drop connections. */
int inst_halt_vmm(struct inst_manager *m, struct inst *i, struct trace *t, struct tp_err *err);
/* The instance's sockets as its driver names them (set in i, borrowed by the caller). */
void inst_sock_paths(struct inst *i);
/* Remove what means nothing once the VMM is gone (snapshots, guest RAM, sockets, template
 * ref): what stop leaves besides the disk. */
int inst_discard_runtime_files(struct inst *i, struct tp_err *err);
/* Connect to the guest agent and wait for its HELLO within timeout_ms. */
int inst_agent_connect(struct inst_manager *m, struct inst *i, int timeout_ms, struct tp_err *err);
/* Tell the guest who it is (hostname = the instance's name, a fresh RNG seed, the clock) and
 * wait for its acknowledgement: fork children share their parent's identity until then. */
#define IDENTITY_TIMEOUT_MS 10000
/* Hostname, seed and clock, then a fork child's network (when it has one): phases
 * apply_identity and apply_network are closed on t (may be NULL). */
int inst_apply_identity(struct inst_manager *m, struct inst *i, struct trace *t,
                        struct tp_err *err);
/* Hand the guest the host's wall clock (it lags by any time spent frozen); logs failures. */
void inst_sync_clock(struct inst *i);
/* SIGKILL the VMM the record names (pid + start time; a recycled pid is never hit) when there
 * is no handle to it, and wait until it is gone. 0 when it is gone or was never there. */
int inst_kill_recorded_vmm(struct inst *i, struct tp_err *err);
/* Kill whatever VMM i has, by handle or by recorded pid; no grace (recovery, discarding). */
void inst_kill_vmm(struct inst *i);
/* Drop the VMM handle and agent connection (the process must be gone or abandoned). */
void inst_drop_vmm(struct inst *i);
/* End i's VMM now to restart it elsewhere: a bounded clean exit where the VMM has one, else
 * SIGKILL; then drop it. No guest sync: its state lives on in a snapshot or template. */
void inst_end_vmm(struct inst *i);
/* Start i's VMM from snap_dir (a snapshot or fork template), with its NIC, watched and
 * recorded, its guest running. phases gets the restore's marks; a resume the load did not do
 * is marked "resume_vm" in t (NULL: not marked). On failure no VMM of this start runs. */
int inst_vmm_from_snapshot(struct inst_manager *m, struct inst *i, const char *snap_dir,
                           struct hv_phase_sink phases, struct trace *t, struct tp_err *err);
/* Start reading the working set recorded in snap_dir into the page cache (restore.c); NULL when
 * there is none to use (missing, stale or corrupt: logged at debug). */
struct snap_prefetch *inst_prefetch_start(struct inst *i, const char *snap_dir);
/* Wait for it and trace it: a "prefetch" span with prefetch_bytes and prefetch_ranges.
 * NULL-safe. */
void inst_prefetch_finish(struct inst *i, struct snap_prefetch *p, struct trace *t);

/* Fault injection (tests only; see util/failpoint.h): "error" fails with -EIO, "kill-vmm" kills
 * i's VMM and waits until it is gone, then lets the step run into that, "crash-daemon" kills
 * torpord itself. Crash points sit at every phase boundary of every operation (named
 * "<op>.<phase>"; docs/design/recovery.md lists them). */
int inst_failpoint(struct inst *i, const char *name, struct tp_err *err);
#define inst_crashpoint(i, name) ((void)inst_failpoint((i), (name), NULL))

/* Fork templates (template.c): an instance in template mode maps DATA/templates/<tid>/memory
 * copy-on-write; the template lives while any instance's "template" file names it. */
/* 1 and the id when i is template-backed, 0 when it owns its memory. */
int inst_template_get(struct inst *i, char ret_tid[INST_ID_LEN + 1]);
int inst_template_set(struct inst *i, const char *tid, struct tp_err *err);
void inst_template_clear(struct inst *i);
/* Remove templates no instance refers to any more, unless pinned. */
void manager_template_gc(struct inst_manager *m);
/* Keep tid from the garbage collector while a fork uses it, though no instance may name it yet
 * (or ever: a template whose memory travels in its state stream). Caller holds template_lock. */
void manager_template_pin(struct inst_manager *m, const char *tid);
/* Undo manager_template_pin; takes template_lock. */
void manager_template_unpin(struct inst_manager *m, const char *tid);

/* Guest networks (network.c). */
/* Insert rec, with a free address and its MAC in rec->net when want_net (-EADDRNOTAVAIL when
 * the subnet is full; -EOPNOTSUPP when torpord has no network). */
int inst_insert_record(struct inst_manager *m, struct inst_record *rec, bool want_net,
                       struct tp_err *err);
/* A VMM's NIC: a fresh TAP for i's address (nothing without one). _cleanup_(inst_nic_close). */
struct inst_nic {
    struct hv_nic hv; /* hv.tap_fd -EBADF when none */
    char tap[IFNAMSIZ];
    char mac[NET_MAC_LEN];
    /* Set once owner's TAP exists: closed while owner has no VMM (the launch or restore
     * failed), the nic unpublishes its ports and deletes a persistent TAP (inst_net_detach). */
    struct inst_manager *m;
    struct inst *owner;
};
#define INST_NIC_INIT             \
    {                             \
        .hv = {.tap_fd = -EBADF } \
    }
/* Open i's TAP (isolated unless network mode shared), publish i's ports, and point spec->nic
 * at nic (call after inst_spec, right before launch or restore). 0 and spec->nic NULL when i
 * has no network. -EOPNOTSUPP when the hypervisor has no NIC or torpord runs without
 * networking. Failpoints "net.tap" (TAP made, no port published) and "net.rules" (ports
 * published, no VMM yet). */
int inst_nic_open(struct inst_manager *m, struct inst *i, struct hv_vm_spec *spec,
                  struct inst_nic *nic, struct tp_err *err);
/* Close the manager's copy of the TAP fd (the VMM keeps its own); when no VMM took the TAP,
 * inst_net_detach (ports unpublished, a persistent TAP deleted). */
void inst_nic_close(struct inst_nic *nic);
/* i's VMM is gone (or never came): remove its published ports from the nft maps. Idempotent,
 * best effort (logs). */
void inst_ports_unpublish(struct inst_manager *m, struct inst *i);
/* i's VMM is gone: its ports unpublished, and its TAP deleted when the driver opens TAPs by
 * name (persistent; a TAP handed over as an fd went with the VMM). Idempotent, best effort. */
void inst_net_detach(struct inst_manager *m, struct inst *i);
/* "torpor.net=IP/PREFIX,GATEWAY" for the guest's command line, or NULL without a network. */
char *inst_net_cmdline(const struct inst_record *rec);
/* "net=IP/PREFIX,GATEWAY,MAC" for the agent's identity (a fork child's new address), or NULL. */
char *inst_net_identity(const struct inst_record *rec);
/* i's VMM is gone: make sure its TAP is too (the kernel removes it with the VMM's fd; this
 * covers a TAP some other process still holds). Best effort. */
void inst_net_release(struct inst_manager *m, struct inst *i);
/* After recovery: publish exactly the ports of instances with a live VMM, and delete every TAP
 * of ours that no live VMM of a known instance uses. */
void inst_net_reclaim(struct inst_manager *m);

/* Startup recovery (recover.c): finish or undo every operation a dead daemon left in flight,
 * re-derive every instance's state, kill VMMs no record owns, drop unreferenced files. */
int inst_reconcile(struct inst_manager *m, struct tp_err *err);

/* Per-verb recovery, called by inst_reconcile with i locked and i->vm attached when its
 * recorded VMM is alive and answers (NULL otherwise). Each settles i (state saved, journal
 * cleared) or, for rm and a failed run, deletes it (returns 1: i is gone). */
int standby_recover(struct inst_manager *m, struct inst *i);
int restore_recover(struct inst_manager *m, struct inst *i);
/* Fork recovery acts on the source (i) and its journal's children; children are recovered
 * before anything else so that the ordinary rules never see them. */
int fork_recover(struct inst_manager *m, struct inst *i);
/* Only remove the children of an uncommitted fork (a source that does not answer). */
void fork_recover_children(struct inst_manager *m, struct inst *i);
/* Settle i's attached VMM at recovery: a loading one is waited for, a paused one resumed. 1: it
 * runs the guest; 0: there is none now (never attached, or killed: it held nothing of the
 * guest); -1: it does not answer (i is Unknown, see below). */
int inst_recover_vmm(struct inst *i);
/* i's VMM lives but does not answer (or failed a command): keep its pid, drop the handle,
 * say Unknown with the reason. */
void inst_recover_unknown(struct inst *i, struct tp_err *err);
/* Apply a pending identity (fork children) without holding up the caller. */
void inst_identity_later(struct inst_manager *m, const char *id);

/* The VMM exit monitor: an epoll thread over pidfds. */
int monitor_start(struct inst_manager *m, struct monitor **ret, struct tp_err *err);
struct monitor *monitor_stop(struct monitor *mon);
/* Watch vm; when it exits, the manager's exit handler runs for (id, pid, start_time). */
int monitor_watch(struct monitor *mon, const char *id, const struct hv_vm *vm);
/* Watch instance id's console log (once it exists), recording when its bytes arrive
 * (console_index.h). Idempotent. */
void monitor_watch_console(struct monitor *mon, const char *id);
void manager_on_vmm_exit(struct inst_manager *m, const char *id, pid_t pid, uint64_t start_time);
/* Periodic chores from the monitor thread (every MANAGER_TICK_MS): console log caps, and
 * console indexes (growth inotify did not report: the daemon was down, the watch failed). */
#define MANAGER_TICK_MS 1000
void manager_tick(struct inst_manager *m);
