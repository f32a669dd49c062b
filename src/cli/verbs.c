/* The table of torpor's verbs, for main() and for tests that walk every verb. */
#include <string.h>

#include "cli.h"
#include "util/macro.h"

/* stop, start, restart, standby, restore, pause, unpause and rm share cli_verb_lifecycle(), which
 * reads argv[0]. */
const struct cli_verb cli_verbs[] = {
    { "run", cli_verb_run, "create and start a microVM" },
    { "ps", cli_verb_ps, "list instances" },
    { "inspect", cli_verb_inspect, "print instances as JSON" },
    { "exec", cli_verb_exec, "run a command in a guest" },
    { "logs", cli_verb_logs, "print a guest's serial console" },
    { "stats", cli_verb_stats, "show instances' host CPU and memory usage" },
    { "stop", cli_verb_lifecycle, "stop instances" },
    { "start", cli_verb_lifecycle, "start stopped instances" },
    { "restart", cli_verb_lifecycle, "stop and start instances" },
    { "standby", cli_verb_lifecycle, "snapshot instances and release their memory" },
    { "restore", cli_verb_lifecycle, "resume instances from standby" },
    { "pause", cli_verb_lifecycle, "pause instances' vCPUs" },
    { "unpause", cli_verb_lifecycle, "resume paused instances" },
    { "kill", cli_verb_kill, "power instances off at once" },
    { "wait", cli_verb_wait, "block until instances stop, print their exit codes" },
    { "fork", cli_verb_fork, "fork an instance into children" },
    { "rm", cli_verb_lifecycle, "remove instances" },
    { "capabilities", cli_verb_caps, "print what each hypervisor supports" },
    { "version", cli_verb_version, "print client and daemon versions" },
};

const size_t cli_n_verbs = ELEMENTSOF(cli_verbs);

const struct cli_verb *
cli_verb_find(const char *name)
{
    for (size_t i = 0; i < cli_n_verbs; i++)
        if (strcmp(cli_verbs[i].name, name) == 0)
            return &cli_verbs[i];
    return NULL;
}
