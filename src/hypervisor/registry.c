/* The driver registry: static capability facts by driver name, answered without any VM. */
#include <errno.h>
#include <string.h>

#include "hypervisor/driver.h"
#include "hypervisor/firecracker/fc_driver.h"
#include "hypervisor/qemu/qemu.h"
#include "util/macro.h"
#include "util/proc.h"

static const char *const hv_cap_names[_HV_CAP_MAX] = {
    [HV_CAP_PAUSE] = "pause",
    [HV_CAP_SNAPSHOT] = "snapshot",
    [HV_CAP_RESTORE] = "restore",
    [HV_CAP_FORK] = "fork",
    [HV_CAP_SNAPSHOT_BASE_REUSE] = "snapshot_base_reuse",
    [HV_CAP_GRACEFUL_VMM_SHUTDOWN] = "graceful_vmm_shutdown",
    [HV_CAP_RESUME_ON_LOAD] = "resume_on_load",
    [HV_CAP_EXEC_AGENT] = "exec_agent",
    [HV_CAP_MEM_UFFD] = "mem_uffd",
    [HV_CAP_NET] = "network",
}; /* a unit test checks no entry is NULL */

#define HV_REGISTRY_EXTRA 16 /* room for drivers registered at run time */

/* Adding a built-in driver is one line here; the first is the default. Run-time additions go
 * after them; the table stays NULL-terminated for hv_driver_all(). */
static const struct hv_driver *hv_drivers[] = {
    &qemu_driver,
    &fc_driver,
    [2 + HV_REGISTRY_EXTRA] = NULL,
};

const char *
hv_cap_to_string(enum hv_cap c)
{
    if ((int)c < 0 || c >= _HV_CAP_MAX)
        return NULL;
    return hv_cap_names[c];
}

const struct hv_driver *
hv_driver_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; hv_drivers[i]; i++)
        if (strcmp(hv_drivers[i]->name, name) == 0)
            return hv_drivers[i];
    return NULL;
}

const struct hv_driver *const *
hv_driver_all(void)
{
    return hv_drivers;
}

const char *
hv_driver_default(void)
{
    return hv_drivers[0]->name;
}

int
hv_registry_add(const struct hv_driver *drv)
{
    size_t n = 0;

    if (!drv || !drv->name || !drv->name[0])
        return -EINVAL;
    if (hv_driver_find(drv->name))
        return -EEXIST;
    while (hv_drivers[n])
        n++;
    /* The last slot is the terminator and stays NULL. */
    if (n >= ELEMENTSOF(hv_drivers) - 1)
        return -ENOSPC;
    hv_drivers[n] = drv;
    return 0;
}

int
hv_spawn_report(void *ctx, pid_t pid, struct tp_err *err)
{
    const struct hv_vm_spec *spec = ctx;
    uint64_t start_time;
    int r = proc_start_time(pid, &start_time);
    if (r < 0)
        return tp_err_errno(err, r, "read start time of VMM %d", (int)pid);
    return spec->vmm_spawned(spec->vmm_spawned_ctx, pid, start_time, err);
}

bool
hv_has_cap(const struct hv_driver *drv, enum hv_cap c)
{
    if (!drv || (int)c < 0 || c >= _HV_CAP_MAX)
        return false;
    return drv->caps[c];
}
