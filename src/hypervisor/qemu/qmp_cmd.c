/* One function per QMP command torpor uses: arguments in, typed result out. */
#include <errno.h>
#include <string.h>

#include "hypervisor/qemu/qmp.h"
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

int
qmp_query_migrate(struct qmp_conn *c, char **ret_status, struct tp_err *err)
{
    json_auto_t *ret = NULL;
    json_t *st;
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
    *ret_status = xstrdup(st ? json_string_value(st) : "none");
    return 0;
}
