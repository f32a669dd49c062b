/* The snapshot layout every hypervisor shares, in an instance's snapshots/ dir:
 *   snapshot-latest/  exists only while the instance is in Standby: what restore loads;
 *   snapshot-base/    the hidden retained base (hypervisors with snapshot_base_reuse) that the
 *                     next standby promotes to latest and updates with only what changed.
 * Each holds "state", "memory" and "manifest.json" (and, once a restored guest went back to
 * Standby, "workingset": workingset.h); a driver that carries guest memory inside "state"
 * writes no "memory". A fork template (templates/<id>/) is such a directory too. This module
 * owns complete snapshot directories: it moves them between roles, links them, makes them
 * durable and gives their memory back to the host; what their memory means to a VM is the
 * driver's business (driver.h), and this module knows no hypervisor. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define SNAP_MANIFEST         "manifest.json"
#define SNAP_MANIFEST_VERSION 1

struct snap_manifest {
    int version;
    char hypervisor[32];
    bool diff;          /* written on top of a retained base */
    int64_t created_ms; /* wall clock */
    uint32_t memory_mib;
    uint32_t vcpus;
    uint64_t memory_written; /* bytes of guest memory this snapshot had to write */
    bool ram_in_state;       /* guest memory travels in "state": there is no "memory" image
                                (set by snap_commit / snap_write_manifest from the files) */
    char vmm_version[32];    /* the VMM that wrote it ("" when the driver cannot tell) */
};

/* Get the directory a standby writes into (latest). With reuse and a retained base, the base is
 * promoted (renamed) to latest and *ret_diff is true; otherwise latest starts empty (a full
 * snapshot). A stale latest is discarded first: only a completed standby may leave one. */
int snap_prepare_target(const char *base, const char *latest, bool reuse, bool *ret_diff,
                        struct tp_err *err);

/* Whether dir holds a memory image (else its memory, if any, travels in its state). */
bool snap_has_memory(const char *dir);

/* Give the complete snapshot in from a second name, to (created; a fork template from a
 * Standby snapshot, a child born in Standby from its template): its files are hard-linked,
 * never copied, so neither may be written in place afterwards. */
int snap_link(const char *from, const char *to, struct tp_err *err);

/* Discard a target after a failed snapshot. Never renamed back: a half-written base must not be
 * reused, so the next standby is a full one. */
int snap_discard(const char *dir, struct tp_err *err);

/* Make dir's memory image and state file durable: ret_written gets the bytes that were still dirty
 * in the page cache (what this snapshot wrote; 0 when the kernel cannot say) — or, without a memory
 * image, the size of the state file that carries the memory. Then write the manifest atomically and
 * fsync the directory. */
int snap_commit(const char *dir, struct snap_manifest *m, uint64_t *ret_written,
                struct tp_err *err);

/* Write dir's manifest atomically, without making the memory image durable (fork templates:
 * children share the page cache, and durability is not worth time on the fork path). */
int snap_write_manifest(const char *dir, struct snap_manifest *m, struct tp_err *err);

/* Drop dir's memory image from the page cache (after its VMM exited): the host gets the memory
 * back. ret_resident gets what stayed cached (bytes). */
int snap_release_memory(const char *dir, uint64_t *ret_resident, struct tp_err *err);

/* A complete snapshot: manifest (known version), state and memory present, memory not modified
 * since the manifest was written. -ENOENT/-EPROTO/-ESTALE. */
int snap_validate(const char *dir, struct snap_manifest *ret, struct tp_err *err);

/* After a successful restore: latest becomes the retained base (reuse: the driver says the VM
 * may build on it) or goes away. */
int snap_retire_latest(const char *latest, const char *base, bool reuse, struct tp_err *err);

/* cachestat(2) of a whole file: pages cached / dirty / under writeback. -ENOSYS before 6.5. */
struct snap_cachestat {
    uint64_t cache;
    uint64_t dirty;
    uint64_t writeback;
};
int snap_cachestat(int fd, struct snap_cachestat *ret);
