/* The lifecycle manager: owns instances, composes multi-step flows from single-hop state
 * transitions, one lock per instance, decides from hypervisor capabilities. The API layer's
 * only entry point. References (ref) are names, ids or unique id prefixes. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "guest/agent_client.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/name.h"

struct inst_manager;

struct inst_manager_opts {
    const char *data_dir;
    const char *cache_dir;
    const char *agent_path;   /* static guest agent binary */
    const char *accel;        /* default accelerator override; NULL = auto */
    uint64_t console_log_max; /* bytes kept per console log; 0 = CONSOLE_LOG_MAX_DEFAULT */
    bool no_warm_runs;        /* every run boots (as with cold): no templates (warm.h) */
    /* Guest networks: the bridge's subnet (net/net.h), set up at open. NULL: torpord leaves
     * the host's network alone and instances get none (`network` "default" is refused). */
    const struct net_subnet *subnet;
};

/* Open the store, then re-derive every instance's state from what is really there. */
int inst_manager_open(const struct inst_manager_opts *o, struct inst_manager **ret,
                      struct tp_err *err);
/* The daemon is shutting down: every inst_wait_state() returns -ESHUTDOWN now, and later ones
 * at once (their clients must not hold up the shutdown). */
void inst_manager_quiesce(struct inst_manager *m);
/* Disconnects from VMMs without stopping them (they outlive the daemon). NULL-safe. */
struct inst_manager *inst_manager_free(struct inst_manager *m);
DEFINE_CLEANUP(struct inst_manager, inst_manager_free)

struct inst_create_req {
    const char *name;             /* NULL = generated */
    uint32_t memory_mib;          /* 0 = default 256 */
    uint32_t vcpus;               /* 0 = default 1 */
    const char *hypervisor;       /* NULL = the registry's default driver */
    const char *kernel;           /* NULL = default guest kernel */
    const char *initrd;           /* NULL = built by torpor */
    const char *rootfs;           /* NULL = default busybox disk; a dir or an ext4 image */
    char *const *cmd;             /* NULL-terminated or NULL */
    bool no_agent;                /* return once the VMM runs */
    const char *accel;            /* NULL = manager default */
    const char *mem_backend;      /* "file" | "uffd" (HV_CAP_MEM_UFFD); NULL = "file" */
    uint32_t disk_mib;            /* 0 = default */
    const char *network;          /* "default" (an address on torpord's bridge) | "none"; NULL =
                                     "default" where torpord has networking, else "none" */
    const char *network_mode;     /* "isolated" | "shared"; NULL = isolated */
    const struct net_port *ports; /* published on the host; need a network */
    size_t n_ports;
    bool cold; /* boot, even where a template of this boot is kept (warm.h), and keep none */
    /* An OCI image from the store (DATA_DIR/images) instead of rootfs; cmd then replaces the
     * image's Cmd and the fields below override its config as docker run's options do. */
    const char *image;
    char *const *entrypoint; /* {"", NULL} clears the image's */
    char *const *env;        /* "K=V" */
    const char *workdir;
    const char *user;
    bool attach; /* the workload is not started at boot: the client execs it (run -it) */
};

/* Validate, create and boot; returns once the agent is ready (or the VMM runs, no_agent).
 * Bad input (-EINVAL, -EEXIST, -ENOENT for missing files) changes nothing. Ports: -EINVAL
 * without a network, -EOPNOTSUPP when torpord has none, -EEXIST when another instance
 * published one of them, -EADDRINUSE when a socket of the host is bound to one
 * (-EINVAL when its address is not one of this host's). */
int inst_run(struct inst_manager *m, const struct inst_create_req *req, struct inst_record **ret,
             struct tp_err *err);
int inst_list(struct inst_manager *m, struct inst_record ***ret, size_t *ret_n, struct tp_err *err);
int inst_get(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err);
/* Running, Paused or Unknown -> Stopped. Stopped already: nothing to do (success, as docker's
 * stop). Standby only with force: its snapshot is the guest's memory and goes. */
int inst_stop(struct inst_manager *m, const char *ref, bool force, struct inst_record **ret,
              struct tp_err *err);
/* Running, Paused or Unknown -> Stopped at once: the VMM is killed, without the guest's sync
 * or a graceful VMM exit (docker kill). -EBUSY when no VMM runs (Created, Standby, Stopped). */
int inst_kill(struct inst_manager *m, const char *ref, struct inst_record **ret,
              struct tp_err *err);
/* Running -> Paused: the VMM stops the guest's vCPUs; it stays Paused across a daemon restart.
 * -EBUSY "already paused" for a Paused one, -EBUSY from any other state, -EOPNOTSUPP when the
 * hypervisor cannot pause. */
int inst_pause(struct inst_manager *m, const char *ref, struct inst_record **ret,
               struct tp_err *err);
/* Paused -> Running, then the guest's clock is set (it lagged while frozen). -EBUSY "not
 * paused" from any other state. */
int inst_unpause(struct inst_manager *m, const char *ref, struct inst_record **ret,
                 struct tp_err *err);
/* Stopped -> Running. Running already: nothing to do (success, as docker's start). */
int inst_start(struct inst_manager *m, const char *ref, struct inst_record **ret,
               struct tp_err *err);
/* force: stop first if running; else -EBUSY for a live instance. */
int inst_remove(struct inst_manager *m, const char *ref, bool force, struct tp_err *err);

/* Standby: pause, snapshot into snapshots/snapshot-latest, stop the VMM, give its memory back
 * to the host. Needs the hypervisor's snapshot capability (-EOPNOTSUPP) and state Running
 * (-EBUSY). A failure leaves a running VM or a valid snapshot, never neither. */
int inst_standby(struct inst_manager *m, const char *ref, struct inst_record **ret,
                 struct tp_err *err);
/* Restore a Standby instance: start the VMM, load the snapshot (resuming during the load where
 * the hypervisor can), wait for the agent. A failure before the guest resumes leaves the
 * instance in Standby with its snapshot intact. */
int inst_restore(struct inst_manager *m, const char *ref, struct inst_record **ret,
                 struct tp_err *err);

struct net_port;

struct inst_fork_req {
    uint32_t count;     /* 1..64; 0 = 1 */
    const char *name;   /* the child's name (count 1 only); NULL = generated */
    const char *prefix; /* children are <prefix>-<n>; NULL = "<source name>" */
    bool standby;       /* leave the children in Standby instead of Running */
    bool no_wait;       /* do not wait for each child's agent to acknowledge its identity */
    const struct net_port *ports; /* the child's own published ports (count 1 only) */
    size_t n_ports;
};

/* Fork a Running or Standby instance into count children that start exactly where it was.
 * A Standby source stays Standby; a Running one is frozen briefly and keeps running. Guest
 * memory is never copied: children map the source's frozen image copy-on-write. All or
 * nothing: on failure no child remains and the source is as it was. Needs the hypervisor's
 * fork capability (-EOPNOTSUPP). *ret gets the children's records (NULL-terminated array). */
int inst_fork(struct inst_manager *m, const char *ref, const struct inst_fork_req *req,
              struct inst_record ***ret, size_t *ret_n, struct tp_err *err);

/* Start a command through the agent; the caller pulls events with agent_exec_next(). */
int inst_exec_start(struct inst_manager *m, const char *ref, const struct agent_exec_req *req,
                    struct agent_exec **ret, struct tp_err *err);
/* Block until ref reaches state (bounded): 0 with the record, -ETIMEDOUT, -ENOENT if it is
 * removed meanwhile, -ESHUTDOWN once inst_manager_quiesce() was called. Event-driven: woken by
 * every persisted change. */
int inst_wait_state(struct inst_manager *m, const char *ref, enum inst_state state, int timeout_ms,
                    struct inst_record **ret, struct tp_err *err);
/* What a Running or Paused instance's VMM costs the host, sampled now (stats). */
struct inst_stats {
    char id[INST_ID_LEN + 1];
    char name[NAME_MAX_LEN + 1];
    enum inst_state state;
    pid_t pid;              /* the VMM */
    uint64_t cpu_ns;        /* the VMM's CPU time so far, user + system, all its threads */
    uint32_t threads;       /* the VMM's threads */
    uint64_t rss_bytes;     /* resident memory of the VMM (guest memory it touched included) */
    uint64_t pss_bytes;     /* the same, pages shared with others (fork children) divided */
    uint64_t memory_bytes;  /* the guest memory it was configured with */
    uint64_t console_bytes; /* the console log's size */
    int64_t timestamp_ms;   /* wall clock of the sample */
};
/* Sample ref's VMM from /proc. -EBUSY when no VMM runs (any state but Running and Paused, or
 * a VMM that exited just now), -ENOENT for an unknown ref. */
int inst_stats(struct inst_manager *m, const char *ref, struct inst_stats *ret, struct tp_err *err);
/* The console log file of ref (for logs / logs -f) and its arrival-time index
 * (console_index.h; ret_idx may be NULL). Caller frees. */
int inst_console_log(struct inst_manager *m, const char *ref, char **ret_path, char **ret_idx,
                     struct tp_err *err);

/* Metrics of one exec as its stream ends: its duration, r < 0 when it did not end with an exit
 * (it did not start, or the session was cut), counted by reason. */
void inst_obs_exec(double seconds, int r);
