/* The sole builder of on-disk paths under the data dir. Every string is owned by the struct. */
#pragma once

#include "util/cleanup.h"

struct inst_paths {
    char *dir;              /* DATA/instances/<id> */
    char *root_disk;        /* root.ext4 (the instance's own clone) */
    char *logs_dir;         /* logs/ */
    char *console_log;      /* logs/console.log */
    char *console_idx;      /* logs/console.idx: when its bytes arrived (console_index.h) */
    char *vmm_log;          /* logs/vmm.log */
    char *kernel_log;       /* logs/kernel.log: an image VM's kernel console (its own port) */
    char *snapshots;        /* snapshots/ */
    char *snap_latest;      /* snapshots/snapshot-latest (only while Standby) */
    char *snap_base;        /* snapshots/snapshot-base (hidden retained base) */
    char *template_ref;     /* "template": id of the fork template whose frozen memory backs
                               this instance (driver.h: template_dir); absent when it owns its
                               memory */
    char *identity_pending; /* a fork child born in Standby: apply its identity on restore */
};

/* Fill all paths for instance id under data_dir (no I/O). */
void inst_paths_init(struct inst_paths *p, const char *data_dir, const char *id);
void inst_paths_clear(struct inst_paths *p);
/* DATA/instances/<id>/<name>: files whose names the hypervisor driver chooses (its sockets;
 * a guest memory file it keeps is its own business, in hv_vm_spec.dir). */
char *paths_instance_file(const struct inst_paths *p, const char *name);

/* DATA/templates and DATA/templates/<tid>: frozen memory images that fork children map
 * copy-on-write, kept while any instance refers to them. */
char *paths_templates_dir(const char *data_dir);
char *paths_template_dir(const char *data_dir, const char *tid);

/* DATA/instances */
char *paths_instances_dir(const char *data_dir);
