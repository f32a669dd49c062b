/* Instance records in SQLite (WAL) inside the data dir. Thread-safe: one connection guarded by
 * a mutex; every call is a short transaction. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "instance/state.h"
#include "net/net.h"
#include "util/cleanup.h"
#include "util/err.h"

#define INST_ID_LEN 16 /* lowercase hex chars */

/* What the user asked for at create time; immutable afterwards. */
struct inst_config {
    char *hypervisor; /* driver name, e.g. "qemu" */
    uint32_t memory_mib;
    uint32_t vcpus;
    char *kernel;        /* absolute path */
    char *initrd;        /* absolute path; NULL = built by torpor */
    char *rootfs;        /* what the user gave (dir or image); NULL = default guest */
    char *root_disk_src; /* the ext4 image the instance's disk was cloned from */
    char **cmd;          /* NULL-terminated; NULL = none (agent only) */
    bool agent;          /* false: --no-agent */
    char *accel;         /* NULL = auto */
    bool net_shared;     /* network mode "shared": its bridge port is not isolated */
    bool mem_uffd;       /* mem_backend "uffd": restores serve guest memory on demand */
    /* An instance of an OCI image (torpor run IMAGE): cmd is then the workload's argv as docker
     * computes it (entrypoint + cmd, run's overrides applied), which runs with env, workdir
     * and user; its end stops the instance and its exit code is the instance's. NULL/0 for
     * other instances. */
    char *image;        /* the reference as normalized, e.g. docker.io/library/busybox:latest */
    char *image_digest; /* the manifest digest it resolved to */
    char **env;         /* "K=V", NULL-terminated */
    char *workdir;
    char *user;
    int stop_signal; /* the image's StopSignal, sent by stop first */
};

struct inst_record {
    char id[INST_ID_LEN + 1];
    char *name;
    struct inst_config cfg;
    enum inst_state state;
    pid_t vmm_pid; /* 0 when none */
    uint64_t vmm_start_time;
    int64_t created_ms; /* wall clock */
    int64_t state_changed_ms;
    char *last_op;    /* JSON text of the last operation's trace; may be NULL */
    char *last_error; /* message of the last failure; may be NULL */
    /* The operation journal: the lifecycle operation in flight ("standby", "fork", ...; NULL
     * when none) and its recovery data (JSON; may be NULL). Written before the operation does
     * anything a crash could leave half-done; cleared when it ends. */
    char *op;
    char *op_data;
    /* How the VMM last ended, as docker's exit code (`torpor wait`): 0 a clean stop or a guest
     * that powered off, 137 killed (kill, or a VMM that died of a signal), else the VMM's exit
     * status. Meaningful once Stopped. */
    int exit_code;
    /* The guest's network, allocated with the record (one row: a crash can never leave an
     * address without its instance) and immutable afterwards. ip 0: no network. Addresses in
     * host byte order; the gateway is the subnet's first address. */
    struct inst_net {
        uint32_t ip;
        uint8_t prefix;
        uint8_t mac[6];
    } net;
    /* Ports published on the host (only with a network), in the order given; rows of their
     * own table, inserted with the record and deleted with it. A host port (address, port,
     * proto; 0.0.0.0 overlapping every address) belongs to one instance at a time. */
    struct net_port *ports;
    size_t n_ports;
};

/* NULL-safe; returns NULL. */
struct inst_record *inst_record_free(struct inst_record *r);
DEFINE_CLEANUP(struct inst_record, inst_record_free)
/* Deep copy (never NULL: OOM aborts). */
struct inst_record *inst_record_dup(const struct inst_record *r);
/* Free the strings of c and zero it. */
void inst_config_clear(struct inst_config *c);

struct store;

#define STORE_SCHEMA_VERSION 5 /* PRAGMA user_version of a current database */

/* Open (creating DIR and DIR/torpor.db if needed) with WAL, and bring the schema to
 * STORE_SCHEMA_VERSION. -EPROTONOSUPPORT when the database is newer than this build. */
int store_open(const char *data_dir, struct store **ret, struct tp_err *err);
/* NULL-safe; returns NULL. */
struct store *store_close(struct store *s);
DEFINE_CLEANUP(struct store, store_close)

/* -EINVAL for a malformed id/name/state, -EEXIST when the name or id is taken (the name is
 * checked first; the message says which) or when one of r->ports overlaps a port another
 * instance published ("port 127.0.0.1:8080/tcp is already published by instance 'web'"),
 * -EADDRINUSE when r->net's address or MAC is another
 * instance's (the caller picks again: store_net_used). Names and ids share the namespace of refs: a
 * name equal to another instance's id, or an id equal to another instance's name, is taken too. */
int store_insert(struct store *s, const struct inst_record *r, struct tp_err *err);
/* Replace the mutable fields (state, vmm_pid, vmm_start_time, state_changed_ms, last_op,
 * last_error, op, op_data, exit_code) of r->id; id, name, cfg and created_ms never change. -ENOENT
 * when absent. A new record starts with no operation journal (op NULL). */
int store_update(struct store *s, const struct inst_record *r, struct tp_err *err);
/* -ENOENT when absent. Frees its network address and MAC with it. */
int store_delete(struct store *s, const char *id, struct tp_err *err);

/* Every instance's guest address (net.ip != 0), in no order: *ret has *ret_n entries (free()). */
int store_net_used(struct store *s, uint32_t **ret, size_t *ret_n, struct tp_err *err);

/* Reading a corrupt row (config that is not valid JSON of an inst_config, or an unknown state
 * string) is not an error: the record comes back with state INST_UNKNOWN, last_error starting
 * with "corrupt record: ", and, when the config is what is broken, a zeroed cfg
 * (cfg.hypervisor == NULL). That way a listing still works and the user can delete it. */

/* -ENOENT "no such instance '<id>'". *ret is owned by the caller. */
int store_get(struct store *s, const char *id, struct inst_record **ret, struct tp_err *err);
/* All records, ordered by created_ms then id. *ret has *ret_n entries plus a NULL terminator;
 * free it with inst_record_array_free(). */
int store_list(struct store *s, struct inst_record ***ret, size_t *ret_n, struct tp_err *err);
/* NULL-safe. */
void inst_record_array_free(struct inst_record **v, size_t n);

/* Resolve a user reference: exact id, then exact name, then unique id prefix (a ref made only of
 * lowercase hex digits). -ENOENT: nothing matches. -ENOTUNIQ: several match; the message lists
 * them as "<id> (<name>)". */
int store_resolve(struct store *s, const char *ref, char ret_id[INST_ID_LEN + 1],
                  struct tp_err *err);

/* Names users may give: [a-z0-9][a-z0-9-]{0,62}. */
bool store_name_valid(const char *name);
/* Ids: exactly INST_ID_LEN lowercase hex digits. */
bool store_id_valid(const char *id);
/* A fresh random id (getrandom). It cannot see the store: store_insert() refuses the (2^-64)
 * chance of an id equal to an existing id or name. */
void store_new_id(char ret_id[INST_ID_LEN + 1]);
