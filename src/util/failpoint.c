/* Failpoints: parsed from the environment on each check (only tests set it). */
#include "failpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum failpoint_action
lookup(const char *spec, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = spec; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *a = p + n + 1;
            size_t alen = len - n - 1;
            if (alen == 5 && strncmp(a, "error", 5) == 0)
                return FAILPOINT_ERROR;
            if (alen == 8 && strncmp(a, "kill-vmm", 8) == 0)
                return FAILPOINT_KILL_VMM;
            if (alen == 12 && strncmp(a, "crash-daemon", 12) == 0)
                return FAILPOINT_CRASH;
        }
        p = end ? end + 1 : NULL;
    }
    return FAILPOINT_OFF;
}

enum failpoint_action
failpoint(const char *name)
{
    const char *path = getenv("TORPOR_FAILPOINTS_FILE");
    char buf[512];

    if (path) {
        FILE *f = fopen(path, "re");
        size_t len = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[len] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        return lookup(buf, name);
    }
    return lookup(getenv("TORPOR_FAILPOINTS"), name);
}
