/* `stats`: what a running instance's VMM costs the host right now (CPU time, threads, RSS and
 * PSS) beside its configured guest memory and the size of its console log. A read: no lock, no
 * journal; the VMM is named by the record's pid and checked by its start time. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "instance/manager-internal.h"
#include "util/procstat.h"
#include "util/timeutil.h"

int
inst_stats(struct inst_manager *m, const char *ref, struct inst_stats *ret, struct tp_err *err)
{
    _cleanup_(inst_record_freep) struct inst_record *rec = NULL;
    struct inst_paths p;
    struct procstat ps;
    struct stat sb;
    int r;

    r = inst_get(m, ref, &rec, err);
    if (r < 0)
        return r;
    if ((rec->state != INST_RUNNING && rec->state != INST_PAUSED) || rec->vmm_pid <= 0)
        return tp_err_set(err, -EBUSY,
                          "instance '%s' is %s: stats need a running VMM (Running or Paused)",
                          rec->name, inst_state_to_string(rec->state));
    r = procstat_read(rec->vmm_pid, &ps, err);
    /* Another process with the VMM's pid is not the VMM: it is gone as much as a missing one. */
    if (r == 0 && ps.stat.start_time != rec->vmm_start_time)
        r = -ESRCH;
    if (r == -ESRCH) {
        tp_err_clear(err);
        return tp_err_set(err, -EBUSY, "instance '%s': its VMM (pid %d) has just exited", rec->name,
                          (int)rec->vmm_pid);
    }
    if (r < 0)
        return tp_err_wrap(err, "read the VMM's usage of instance '%s'", rec->name);

    *ret = (struct inst_stats){
        .state = rec->state,
        .pid = rec->vmm_pid,
        .cpu_ns = ps.cpu_ns,
        .threads = ps.stat.threads,
        .rss_bytes = ps.mem.rss,
        .pss_bytes = ps.mem.pss,
        .memory_bytes = (uint64_t)rec->cfg.memory_mib << 20,
        .timestamp_ms = wall_ms(),
    };
    inst_paths_init(&p, m->data_dir, rec->id);
    if (stat(p.console_log, &sb) == 0)
        ret->console_bytes = (uint64_t)sb.st_size;
    inst_paths_clear(&p);
    snprintf(ret->id, sizeof(ret->id), "%s", rec->id);
    snprintf(ret->name, sizeof(ret->name), "%s", rec->name);
    return 0;
}
