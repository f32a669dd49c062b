/* One function per QMP command torpor uses: arguments in, typed result out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/qemu/qmp.h"
#include "util/cleanup.h"
#include "util/xalloc.h"

static int
qmp_simple(struct qmp_conn *c, const char *cmd, json_t *args, struct tp_err *err)
{
    return qmp_execute(c, cmd, args, -1, NULL, err);
}

static enum hv_run_state
run_state_from_status(const char *s)
{
    if (strcmp(s, "running") == 0)
        return HV_RUN_RUNNING;
    /* vCPUs stopped and `cont` would start them again. */
    if (strcmp(s, "paused") == 0 || strcmp(s, "prelaunch") == 0 || strcmp(s, "postmigrate") == 0)
        return HV_RUN_PAUSED;
    /* -incoming: waiting for or loading the migration stream. */
    if (strcmp(s, "inmigrate") == 0)
        return HV_RUN_LOADING;
    return HV_RUN_OTHER;
}

int
qmp_query_status(struct qmp_conn *c, enum hv_run_state *ret_state, char **ret_status,
                 struct tp_err *err)
{
    json_auto_t *ret = NULL;
    const char *s;
    int r;

    r = qmp_execute(c, "query-status", NULL, -1, &ret, err);
    if (r < 0)
        return r;
    s = json_string_value(json_object_get(ret, "status"));
    if (!s)
        return tp_err_set(err, -EPROTO, "QMP 'query-status': reply has no status");
    *ret_state = run_state_from_status(s);
    if (ret_status)
        *ret_status = xstrdup(s);
    return 0;
}

int
qmp_stop(struct qmp_conn *c, struct tp_err *err)
{
    return qmp_simple(c, "stop", NULL, err);
}

int
qmp_cont(struct qmp_conn *c, struct tp_err *err)
{
    return qmp_simple(c, "cont", NULL, err);
}

int
qmp_quit(struct qmp_conn *c, struct tp_err *err)
{
    return qmp_simple(c, "quit", NULL, err);
}

int
qmp_migrate_set_capability(struct qmp_conn *c, const char *name, bool state, struct tp_err *err)
{
    json_t *args =
        json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", name, "state", state);

    if (!args)
        return tp_err_set(err, -EINVAL, "build migrate-set-capabilities arguments");
    return qmp_simple(c, "migrate-set-capabilities", args, err);
}

int
qmp_migrate_set_max_bandwidth(struct qmp_conn *c, uint64_t bytes_per_sec, struct tp_err *err)
{
    if (bytes_per_sec > INT64_MAX)
        return tp_err_set(err, -EINVAL, "max-bandwidth %llu is out of range",
                          (unsigned long long)bytes_per_sec);
    json_t *args = json_pack("{s:I}", "max-bandwidth", (json_int_t)bytes_per_sec);
    if (!args)
        return tp_err_set(err, -ENOMEM, "build migrate-set-parameters arguments");
    return qmp_simple(c, "migrate-set-parameters", args, err);
}

int
qmp_getfd(struct qmp_conn *c, const char *name, int fd, struct tp_err *err)
{
    if (fd < 0)
        return tp_err_set(err, -EBADF, "getfd '%s': no fd to pass", name);
    json_t *args = json_pack("{s:s}", "fdname", name);
    if (!args)
        return tp_err_set(err, -EINVAL, "build getfd arguments");
    return qmp_execute(c, "getfd", args, fd, NULL, err);
}

int
qmp_migrate(struct qmp_conn *c, const char *uri, struct tp_err *err)
{
    json_t *args = json_pack("{s:s}", "uri", uri);

    if (!args)
        return tp_err_set(err, -EINVAL, "build migrate arguments");
    return qmp_simple(c, "migrate", args, err);
}

int
qmp_migrate_cancel(struct qmp_conn *c, struct tp_err *err)
{
    return qmp_simple(c, "migrate_cancel", NULL, err);
}

int
qmp_migrate_incoming(struct qmp_conn *c, const char *uri, struct tp_err *err)
{
    json_t *args = json_pack("{s:s}", "uri", uri);

    if (!args)
        return tp_err_set(err, -EINVAL, "build migrate-incoming arguments");
    return qmp_simple(c, "migrate-incoming", args, err);
}

void
qmp_migrate_info_clear(struct qmp_migrate_info *info)
{
    if (!info)
        return;
    free(info->status);
    free(info->error_desc);
    *info = (struct qmp_migrate_info){ 0 };
}

/* QEMU reports a failed write by its strerror() text: recover the errno, so a full disk reaches
 * the API as insufficient storage and not as a generic failure. */
static int
errno_from_desc(const char *desc)
{
    /* glibc's texts (QEMU does not localise LC_MESSAGES). */
    static const struct {
        int code;
        const char *text;
    } known[] = {
        { ENOSPC, "No space left on device" },
        { EDQUOT, "Disk quota exceeded" },
    };

    for (size_t i = 0; i < ELEMENTSOF(known); i++)
        if (strstr(desc, known[i].text))
            return -known[i].code;
    return -EIO;
}

int
qmp_query_migrate_info(struct qmp_conn *c, struct qmp_migrate_info *ret_info, struct tp_err *err)
{
    json_auto_t *ret = NULL;
    json_t *st, *desc;
    int r;

    r = qmp_execute(c, "query-migrate", NULL, -1, &ret, err);
    if (r < 0)
        return r;
    if (!json_is_object(ret))
        return tp_err_set(err, -EPROTO, "QMP 'query-migrate': reply is not an object");
    /* QEMU answers {} until a migration has been started. */
    st = json_object_get(ret, "status");
    if (st && !json_is_string(st))
        return tp_err_set(err, -EPROTO, "QMP 'query-migrate': status is not a string");
    desc = json_object_get(ret, "error-desc");
    if (desc && !json_is_string(desc))
        return tp_err_set(err, -EPROTO, "QMP 'query-migrate': error-desc is not a string");
    *ret_info = (struct qmp_migrate_info){
        .status = xstrdup(st ? json_string_value(st) : "none"),
        .error_desc = desc ? xstrdup(json_string_value(desc)) : NULL,
        .error_code = desc ? errno_from_desc(json_string_value(desc)) : 0,
    };
    return 0;
}

int
qmp_query_migrate(struct qmp_conn *c, char **ret_status, struct tp_err *err)
{
    struct qmp_migrate_info info;
    int r = qmp_query_migrate_info(c, &info, err);

    if (r < 0)
        return r;
    *ret_status = TAKE_PTR(info.status);
    qmp_migrate_info_clear(&info);
    return 0;
}
