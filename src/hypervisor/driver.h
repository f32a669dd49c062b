/* Hypervisor driver interface: a vtable per VMM and static capabilities keyed by type.
 * Only hv.c calls the slots; lifecycle code asks capabilities, never names. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

enum hv_cap {
    HV_CAP_PAUSE,                 /* pause/resume vCPUs */
    HV_CAP_SNAPSHOT,              /* save a restorable snapshot (standby) */
    HV_CAP_RESTORE,               /* load one */
    HV_CAP_FORK,                  /* start children from a frozen snapshot */
    HV_CAP_SNAPSHOT_BASE_REUSE,   /* a retained base makes later snapshots write only changes */
    HV_CAP_GRACEFUL_VMM_SHUTDOWN, /* the VMM can be asked to exit cleanly (QMP quit) */
    HV_CAP_RESUME_ON_LOAD,        /* restore can resume as part of loading */
    HV_CAP_EXEC_AGENT,            /* a host<->guest agent channel exists */
    HV_CAP_NET,                   /* a virtio-net NIC on a host TAP (hv_vm_spec.nic) */
    HV_CAP_MEM_UFFD,              /* a restore can serve guest memory on demand through a
                                     userfaultfd page-fault handler (hv_vm_spec.mem_uffd) */
    _HV_CAP_MAX,
    _HV_CAP_INVALID = -22,
};

const char *hv_cap_to_string(enum hv_cap c);

/* The guest's NIC: a TAP the manager created (attached to its bridge) and the guest's MAC. */
struct hv_nic {
    int tap_fd;           /* the TAP's /dev/net/tun fd (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR):
                             borrowed, the VMM gets a copy; the TAP lives while the VMM does.
                             -EBADF for a driver with net_tap_by_name */
    const char *tap_name; /* its interface name, for VMMs that open a TAP by name */
    const char *mac;      /* "xx:xx:xx:xx:xx:xx" */
};

/* Everything a driver needs to start a VM; all paths absolute, owned by the caller. */
struct hv_vm_spec {
    const char *id;  /* instance id */
    const char *dir; /* instance directory */
    uint32_t memory_mib;
    uint32_t vcpus;
    const char *kernel;
    const char *initrd;    /* may be NULL */
    const char *cmdline;   /* kernel command line from the manager; drivers append their own */
    const char *root_disk; /* raw ext4 image, attached read-write as the first disk; may be NULL */
    /* A fork template (a complete snapshot dir, frozen: never written while any VM uses it)
     * whose memory image this VM is backed by, as its children are; NULL: the VM's memory is
     * its own. How it is mapped is the driver's business. */
    const char *template_dir;
    const char *api_sock;    /* VMM control socket (QMP / Firecracker API) */
    const char *agent_sock;  /* host end of the guest agent channel */
    const char *console_log; /* serial console output, appended */
    /* The guest kernel's console on a serial port of its own, appended; the first port
     * (console_log) then carries only what the guest writes to it (an image's workload).
     * NULL: the kernel's console is the first port. Part of the device set: a restore must
     * be given the value its snapshot was taken with. The driver appends the console= and
     * UART count it needs to the command line (one that has a single port ignores this). */
    const char *kernel_log;
    const char *vmm_log; /* VMM stdout/stderr, appended */
    const char *accel;   /* "kvm" | "tcg"; NULL = driver decides */
    /* HV_CAP_MEM_UFFD: restores load guest memory lazily, each page copied in by a page-fault
     * handler on first touch, instead of mapping the snapshot's memory file. */
    bool mem_uffd;
    /* Set only when the VM is launched or restored (HV_CAP_NET); NULL: no NIC. A restore gets
     * the NIC its snapshot was taken with (the device set must match). */
    const struct hv_nic *nic;
    /* Told the new VMM's pid and start time before the VMM runs, i.e. before it can touch
     * guest memory: the manager makes them durable here. A negative return aborts the start.
     * NULL = nobody needs to know. */
    int (*vmm_spawned)(void *ctx, pid_t pid, uint64_t start_time, struct tp_err *err);
    void *vmm_spawned_ctx;
};

enum hv_run_state {
    HV_RUN_RUNNING,
    HV_RUN_PAUSED,
    HV_RUN_LOADING, /* started to restore a snapshot: the guest has not run yet */
    HV_RUN_OTHER,   /* shutdown, internal-error, ... */
};

/* A live VMM process. Owned by whoever launched or attached it; freed by hv_vm_release(). */
struct hv_vm {
    const struct hv_driver *drv;
    pid_t pid;
    uint64_t start_time; /* /proc start time: with pid, the process's identity */
    int pidfd;           /* readable when the VMM exits */
    void *priv;          /* driver state (QMP connection, ...) */
};

/* A byte range of the guest memory image (file offsets). */
struct hv_mem_range {
    uint64_t off, len;
};

/* Snapshot directory layout, the same for every hypervisor. */
#define HV_SNAP_STATE  "state"  /* device/vCPU state */
#define HV_SNAP_MEMORY "memory" /* guest memory image */

/* Where a restore puts its phase marks (the manager's trace); may be NULL. */
struct hv_phase_sink {
    void (*mark)(void *ctx, const char *phase);
    void *ctx;
};

struct hv_restore_opts {
    const char *snap_dir;        /* snapshots/snapshot-latest: what snapshot() wrote */
    bool resume_on_load;         /* ask the VMM to start the guest as part of loading */
    struct hv_phase_sink phases; /* marks "start_process" and "load_snapshot" */
};

struct hv_driver {
    const char *name;
    bool caps[_HV_CAP_MAX];
    /* File names of the VMM's control socket and of the host end of the agent channel in the
     * instance dir (short: a socket path must fit sun_path's 108 bytes). NULL: "api.sock",
     * "agent.sock". */
    const char *api_sock_name;
    const char *agent_sock_name;
    /* The VMM boots only an uncompressed ELF kernel (vmlinux): a bzImage is converted. */
    bool boots_elf_only;
    /* HV_CAP_NET: the VMM opens its TAP itself, by hv_nic.tap_name (hv_nic.tap_fd is -EBADF).
     * The manager creates the TAP persistent and deletes it once the VMM is gone. */
    bool net_tap_by_name;
    /* The VMM binary's version, e.g. "7.2.22" (recorded in snapshot manifests, compared on
     * load). NULL slot: the driver cannot tell, and snapshots are not version-checked. */
    int (*probe)(char **ret_version, struct tp_err *err);
    /* Whether a snapshot written by VMM version snap can be loaded by version now. NULL: only
     * the same version. */
    bool (*version_compatible)(const char *snap, const char *now);
    /* Start a VMM and boot spec; returns once the VMM's control channel answers. */
    int (*launch)(const struct hv_vm_spec *spec, struct hv_vm **ret_vm, struct tp_err *err);
    /* Re-adopt a VMM started by an earlier daemon: -ESRCH if pid/start_time is not it. */
    int (*attach)(const struct hv_vm_spec *spec, pid_t pid, uint64_t start_time,
                  struct hv_vm **ret_vm, struct tp_err *err);
    int (*query)(struct hv_vm *vm, enum hv_run_state *ret, struct tp_err *err);
    int (*pause)(struct hv_vm *vm, struct tp_err *err);
    int (*resume)(struct hv_vm *vm, struct tp_err *err);
    /* Ask the VMM to exit and wait up to timeout_ms for it (graceful_vmm_shutdown). */
    int (*shutdown)(struct hv_vm *vm, int timeout_ms, struct tp_err *err);
    /* With the VM paused, write a complete snapshot into snap_dir: the device state file
     * "state" and, unless the driver carries guest memory inside "state", the memory image
     * "memory" (diff: snap_dir is the promoted retained base, and only what changed since it
     * needs writing). Does not make files durable. */
    int (*snapshot)(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *snap_dir,
                    bool diff, struct tp_err *err);
    /* Guest memory belongs to the driver; the lifecycle asks it these questions.
     * The retained base: whether base_dir (a complete earlier snapshot of this VM, the one
     * restore loaded) may be promoted and written in place by the next diff snapshot of the VM
     * spec describes. NULL: whenever HV_CAP_SNAPSHOT_BASE_REUSE is set. */
    bool (*base_reusable)(const struct hv_vm_spec *spec, const char *base_dir);
    /* HV_CAP_FORK: with the source VM paused, write a fork template (a complete snapshot no
     * VM ever writes) into tdir. *ret_restart: the source must leave its VMM and be restored
     * from tdir like its children (its memory is now the template's); false: it only resumes,
     * on memory of its own. keep_source asks for the latter even where it costs a copy of the
     * guest's memory (a source that should not end up mapping a template: its own later
     * snapshots stay cheap). Either way, any retained base of the source is stale after it. */
    int (*prepare_fork)(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *tdir,
                        bool keep_source, bool *ret_restart, struct tp_err *err);
    /* Remove the memory files the driver keeps in spec->dir that the VM no longer uses:
     * all of them when running is false (no VMM runs there), else those a VM now backed by
     * spec->template_dir does without. Idempotent. NULL: the driver keeps none. */
    int (*drop_memory)(const struct hv_vm_spec *spec, bool running, struct tp_err *err);
    /* Whether a guest run from snap_dir (loaded by restore for spec) changes snap_dir's
     * memory image, so that a used snapshot shows it (snap_validate). NULL: it does not, and
     * the lifecycle journals a load that began. */
    bool (*load_writes_snapshot)(const struct hv_vm_spec *spec, const char *snap_dir);
    /* Start a VMM from o->snap_dir. *ret_resumed says whether the guest already runs (resume
     * on load honoured); if not it is paused and needs resume(). On failure the VMM is gone. */
    int (*restore)(const struct hv_vm_spec *spec, const struct hv_restore_opts *o,
                   struct hv_vm **ret_vm, bool *ret_resumed, struct tp_err *err);
    /* A VMM found in HV_RUN_LOADING by a daemon that did not start its load (the one that did
     * died): wait up to timeout_ms for the load to end. 0: it completed (the guest now runs, or
     * is paused where resume on load was not asked). -ENODATA: no load was ever started, so
     * nothing of the snapshot is in use and the VMM may simply be killed. Other errors: the
     * load failed. */
    int (*finish_load)(struct hv_vm *vm, int timeout_ms, struct tp_err *err);
    /* Memory the VMM itself will write as soon as the guest runs again, e.g. the next
     * receive buffers the guest posted to its devices: ranges of the memory image, unsorted,
     * possibly overlapping (*ret owned by the caller). For a prefetch: the guest never touched
     * them, so no record of its page tables shows them. NULL: the driver cannot tell. */
    int (*posted_buffers)(struct hv_vm *vm, const struct hv_vm_spec *spec,
                          struct hv_mem_range **ret, size_t *ret_n, struct tp_err *err);
    /* Connect to the guest agent channel; returns a stream fd speaking agent_proto.h. */
    int (*agent_connect)(struct hv_vm *vm, const struct hv_vm_spec *spec, struct tp_err *err);
    /* Free driver state; does not stop the VMM. NULL-safe. */
    void (*release)(struct hv_vm *vm);
};

/* For drivers: a proc_spawn before_exec hook (ctx = the spec) that tells spec->vmm_spawned who
 * the held VMM is, with its start time, before it runs. */
int hv_spawn_report(void *ctx, pid_t pid, struct tp_err *err);

/* The registry: static facts by type, no VM needed. NULL when unknown. */
const struct hv_driver *hv_driver_find(const char *name);
/* NULL-terminated list of every registered driver: the built-in ones first. */
const struct hv_driver *const *hv_driver_all(void);
/* The name of the driver used when a request names none (the first built-in one). */
const char *hv_driver_default(void);
/* Register an extra driver, for tests and out-of-tree drivers. drv is borrowed and must outlive
 * every use of the registry; call before any lookup can run concurrently (not thread-safe).
 * -EINVAL without a name, -EEXIST when the name is taken, -ENOSPC when the table is full. */
int hv_registry_add(const struct hv_driver *drv);
bool hv_has_cap(const struct hv_driver *drv, enum hv_cap c);
