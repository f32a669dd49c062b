/* The table of torpor's verbs, for main() and for tests that walk every verb. */
#include <string.h>

#include "cli.h"
#include "util/macro.h"

/* stop, start, restart, standby, restore, pause, unpause and rm share cli_verb_lifecycle(), which
 * reads argv[0]. */
const struct cli_verb cli_verbs[] = {
    { "run", cli_verb_run, "create and start a microVM", cli_syntax_run },
    { "ps", cli_verb_ps, "list instances", cli_syntax_ps },
    { "inspect", cli_verb_inspect, "print instances as JSON", cli_syntax_inspect },
    { "exec", cli_verb_exec, "run a command in a guest", cli_syntax_exec },
    { "logs", cli_verb_logs, "print a guest's serial console", cli_syntax_logs },
    { "cp", cli_verb_cp, "copy files between an instance and the host", cli_syntax_cp },
    { "events", cli_verb_events, "print lifecycle events as they happen", cli_syntax_events },
    { "stats", cli_verb_stats, "show instances' host CPU and memory usage", cli_syntax_stats },
    { "stop", cli_verb_lifecycle, "stop instances", cli_syntax_lifecycle },
    { "start", cli_verb_lifecycle, "start stopped instances", cli_syntax_lifecycle },
    { "restart", cli_verb_lifecycle, "stop and start instances", cli_syntax_lifecycle },
    { "standby", cli_verb_lifecycle, "snapshot instances and release their memory",
      cli_syntax_lifecycle },
    { "restore", cli_verb_lifecycle, "resume instances from standby", cli_syntax_lifecycle },
    { "pause", cli_verb_lifecycle, "pause instances' vCPUs", cli_syntax_lifecycle },
    { "unpause", cli_verb_lifecycle, "resume paused instances", cli_syntax_lifecycle },
    { "kill", cli_verb_kill, "power instances off at once", cli_syntax_kill },
    { "wait", cli_verb_wait, "block until instances stop, print their exit codes",
      cli_syntax_wait },
    { "port", cli_verb_port, "list an instance's published ports", cli_syntax_port },
    { "fork", cli_verb_fork, "fork an instance into children", cli_syntax_fork },
    { "rm", cli_verb_lifecycle, "remove instances", cli_syntax_lifecycle },
    { "pull", cli_verb_pull, "pull an image from a registry", cli_syntax_pull },
    { "images", cli_verb_images, "list images", cli_syntax_images },
    { "rmi", cli_verb_rmi, "remove images", cli_syntax_rmi },
    { "load", cli_verb_load, "load images from a tar archive or an OCI layout", cli_syntax_load },
    { "image", cli_verb_image, "manage images (ls, rm, pull, load, inspect, prune)",
      cli_syntax_image },
    { "capabilities", cli_verb_caps, "print what each hypervisor supports", cli_syntax_caps },
    { "version", cli_verb_version, "print client and daemon versions", cli_syntax_version },
    { "completion", cli_verb_completion, NULL, cli_syntax_completion }, /* hidden */
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
