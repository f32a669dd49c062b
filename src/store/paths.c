/* The one place that spells where an instance's files live under the data dir. */
#include "store/paths.h"

#include <stdlib.h>

#include "util/fs.h"
#include "util/xalloc.h"

char *
paths_instances_dir(const char *data_dir)
{
    return fs_path_join(data_dir, "instances");
}

char *
paths_templates_dir(const char *data_dir)
{
    return fs_path_join(data_dir, "templates");
}

char *
paths_template_dir(const char *data_dir, const char *tid)
{
    _cleanup_free_ char *templates = paths_templates_dir(data_dir);
    return fs_path_join(templates, tid);
}

void
inst_paths_init(struct inst_paths *p, const char *data_dir, const char *id)
{
    _cleanup_free_ char *instances = paths_instances_dir(data_dir);

    p->dir = fs_path_join(instances, id);
    p->root_disk = fs_path_join(p->dir, "root.ext4");
    p->logs_dir = fs_path_join(p->dir, "logs");
    p->console_log = fs_path_join(p->logs_dir, "console.log");
    p->console_idx = fs_path_join(p->logs_dir, "console.idx");
    p->vmm_log = fs_path_join(p->logs_dir, "vmm.log");
    p->kernel_log = fs_path_join(p->logs_dir, "kernel.log");
    p->snapshots = fs_path_join(p->dir, "snapshots");
    p->snap_latest = fs_path_join(p->snapshots, "snapshot-latest");
    p->snap_base = fs_path_join(p->snapshots, "snapshot-base");
    p->template_ref = fs_path_join(p->dir, "template");
    p->identity_pending = fs_path_join(p->dir, "identity-pending");
}

char *
paths_instance_file(const struct inst_paths *p, const char *name)
{
    return fs_path_join(p->dir, name);
}

void
inst_paths_clear(struct inst_paths *p)
{
    if (!p)
        return;
    free(p->dir);
    free(p->root_disk);
    free(p->logs_dir);
    free(p->console_log);
    free(p->console_idx);
    free(p->vmm_log);
    free(p->kernel_log);
    free(p->snapshots);
    free(p->snap_latest);
    free(p->snap_base);
    free(p->template_ref);
    free(p->identity_pending);
    *p = (struct inst_paths){ 0 };
}
