/* Failpoints for fault-injection tests: TORPOR_FAILPOINTS="name=action[,name=action...]" in the
 * daemon's environment arms them; TORPOR_FAILPOINTS_FILE names a file holding the same text,
 * read at every check so a test can arm and disarm them while the daemon runs. With neither set
 * (production) every check is a cheap no-op. */
#pragma once

enum failpoint_action {
    FAILPOINT_OFF,
    FAILPOINT_ERROR,    /* "error": the step fails with -EIO */
    FAILPOINT_KILL_VMM, /* "kill-vmm": the VMM is SIGKILLed just before the step */
    FAILPOINT_CRASH,    /* "crash-daemon": the daemon SIGKILLs itself right there */
};

/* The action armed for name (e.g. "standby.snapshot"). */
enum failpoint_action failpoint(const char *name);
