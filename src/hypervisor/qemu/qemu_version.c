/* The QEMU binary's version, for snapshot manifests: `qemu-system-x86_64 --version`. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hypervisor/qemu/qemu.h"
#include "util/cleanup.h"
#include "util/proc.h"
#include "util/xalloc.h"

int
qemu_version_parse(const char *text, char **ret)
{
    /* "QEMU emulator version 7.2.22 (Debian ...)" */
    const char *p = text ? strstr(text, "version ") : NULL;
    unsigned a, b, c;
    int n = 0;

    if (!p || sscanf(p + 8, "%u.%u.%u%n", &a, &b, &c, &n) != 3 || n == 0)
        return -EPROTO;
    *ret = xasprintf("%u.%u.%u", a, b, c);
    return 0;
}

int
qemu_probe(char **ret_version, struct tp_err *err)
{
    const char *binary = getenv(QEMU_BINARY_ENV);
    char *const argv[] = { (char *)(binary && *binary ? binary : QEMU_BINARY_DEFAULT),
                           (char *)"--version", NULL };
    char buf[512];
    int r = proc_run_capture(argv, buf, sizeof(buf), 5000, err);
    if (r < 0)
        return r;
    if (qemu_version_parse(buf, ret_version) < 0)
        return tp_err_set(err, -EPROTO, "'%s --version' printed no version", argv[0]);
    return 0;
}

bool
qemu_version_compatible(const char *snap, const char *now)
{
    /* The microvm machine type is not versioned; QEMU keeps migration streams compatible
     * within a release series. Same major.minor. */
    unsigned a1, b1, a2, b2;
    return sscanf(snap, "%u.%u", &a1, &b1) == 2 && sscanf(now, "%u.%u", &a2, &b2) == 2 &&
           a1 == a2 && b1 == b2;
}
