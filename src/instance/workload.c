/* The workload of an image instance: its spec written into the instance's disk before each fresh
 * boot (for the agent to start, as docker starts a container's process), its exit code read
 * back once the guest is down, and the image's stop signal sent first by stop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "instance/manager-internal.h"
#include "util/xalloc.h"

#define EXIT_FILE_MAX 64

static void
put_hex(char **buf, size_t *len, size_t *cap, const char *key, const char *val)
{
    size_t need = strlen(key) + 2 + 2 * strlen(val) + 1;
    if (*len + need + 1 > *cap) {
        *cap = (*len + need + 1) * 2;
        *buf = xrealloc(*buf, *cap);
    }
    *len += (size_t)sprintf(*buf + *len, "%s=", key);
    for (const unsigned char *c = (const unsigned char *)val; *c; c++)
        *len += (size_t)sprintf(*buf + *len, "%02x", *c);
    (*buf)[(*len)++] = '\n';
    (*buf)[*len] = '\0';
}

char *
inst_workload_render(const struct inst_config *c)
{
    size_t len = 0, cap = 256;
    char *buf = xmalloc(cap);
    buf[0] = '\0';
    strv_foreach (a, c->cmd)
        put_hex(&buf, &len, &cap, "arg", *a);
    strv_foreach (e, c->env)
        put_hex(&buf, &len, &cap, "env", *e);
    if (c->workdir)
        put_hex(&buf, &len, &cap, "cwd", c->workdir);
    if (c->user)
        put_hex(&buf, &len, &cap, "user", c->user);
    return buf;
}

int
inst_workload_prepare(struct inst *i, struct tp_err *err)
{
    _cleanup_free_ char *spec = inst_workload_render(&i->rec->cfg);
    int r = image_disk_put_file(i->paths.root_disk, INST_WORKLOAD_SPEC, spec, strlen(spec), err);
    /* An exit code of an earlier boot must not be taken for this one's. */
    if (r >= 0)
        r = image_disk_put_file(i->paths.root_disk, INST_WORKLOAD_EXIT, "", 0, err);
    if (r < 0)
        return tp_err_wrap(err, "prepare the workload of '%s'", i->rec->name);
    return 0;
}

int
inst_workload_exit_code(struct inst *i)
{
    _cleanup_free_ char *text = NULL;
    char *end;

    if (image_disk_get_file(i->paths.root_disk, INST_WORKLOAD_EXIT, EXIT_FILE_MAX, &text, NULL) < 0)
        return -ENOENT;
    long v = strtol(text, &end, 10);
    if (end == text || (*end && *end != '\n') || v < 0 || v > 255)
        return -ENOENT;
    return (int)v;
}
