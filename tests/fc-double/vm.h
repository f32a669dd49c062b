/* fc-double: the microVM behind the API: configuration, the phase rules, the fake guest,
 * snapshots. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "fcd.h"
#include "mem.h"
#include "spec.h"
#include "vsock.h"

enum vm_state {
    VM_NOT_STARTED,
    VM_RUNNING,
    VM_PAUSED,
};

struct vm {
    const struct spec *spec;
    char id[65];
    enum vm_state state;
    bool boot_path; /* a boot-specific resource is configured: no snapshot load any more */
    bool restored;
    bool track_dirty;
    bool enable_pci;
    /* Configuration as GET /vm/config reports it; drives/network-interfaces/pmem keyed by id. */
    json_t *boot_source, *machine, *drives, *net, *pmem, *vsock_cfg, *balloon, *entropy,
        *mmds_config, *cpu_config, *hotplug, *logger, *metrics, *serial;
    json_t *mmds; /* MMDS data store */
    FILE *metrics_file;
    struct mem mem;
    struct vsock_dev vsock;
    char boot_id[33];
    uint64_t counter;    /* the fake guest's tick counter, in guest page 1 */
    bool reboot_pending; /* Ctrl+Alt+Del delivered: the guest reboots once it runs */
    bool ignore_ctrlaltdel;
    bool exit_now; /* leave the loop after the current response */
    int exit_code;
};

/* A response: status, JSON body (owned) or NULL, Deprecation header, and whether the process
 * must exit once it is sent (a failed snapshot load). */
struct vm_reply {
    int status;
    char *body;
    bool deprecation;
    bool fatal;
};

void vm_init(struct vm *vm, const struct spec *spec, const char *id);
void vm_release(struct vm *vm);

/* One API request: route it through the spec, validate its body, apply the phase rules, act. */
void vm_api_call(struct vm *vm, const char *method, const char *path, const char *body,
                 size_t body_len, struct vm_reply *reply);
void vm_reply_clear(struct vm_reply *reply);

/* The fake guest runs one step: bumps its counter page (called periodically while Running). */
void vm_guest_tick(struct vm *vm);
