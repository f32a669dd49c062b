/* Image config blobs: parsing the fields that define the workload, and docker's rules for how
 * `run` options combine with them. */
#include "image/oci/config.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/macro.h"
#include "util/xalloc.h"

#define CONFIG_MAX_STRV 65536 /* entries in one list: generous, but bounded */
#define DEFAULT_PATH    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct oci_image_config *
oci_config_free(struct oci_image_config *c)
{
    if (!c)
        return NULL;
    free(c->os);
    free(c->architecture);
    strv_free(c->entrypoint);
    strv_free(c->cmd);
    strv_free(c->env);
    free(c->working_dir);
    free(c->user);
    free(c->stop_signal);
    free(c);
    return NULL;
}
DEFINE_CLEANUP(struct oci_image_config, oci_config_free)

static int
get_str(json_t *o, const char *key, char **ret, struct tp_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return tp_err_set(err, -EBADMSG, "image config: '%s' is not a string", key);
    *ret = xstrndup(json_string_value(v), json_string_length(v));
    return 0;
}

/* An array of strings; null stays NULL. Strings with NUL inside are refused: they could not
 * reach an argv. */
static int
get_strv(json_t *o, const char *key, char ***ret, struct tp_err *err)
{
    json_t *v = json_object_get(o, key), *e;
    size_t i;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) > CONFIG_MAX_STRV)
        return tp_err_set(err, -EBADMSG, "image config: '%s' is not an array of strings", key);
    char **s = xnew(char *, json_array_size(v) + 1);
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e)) {
            strv_free(s);
            return tp_err_set(err, -EBADMSG, "image config: '%s' is not an array of strings", key);
        }
        s[i] = xstrdup(json_string_value(e));
    }
    *ret = s;
    return 0;
}

int
oci_config_parse(const char *buf, size_t len, struct oci_image_config **ret, struct tp_err *err)
{
    _cleanup_(oci_config_freep) struct oci_image_config *c = xnew(struct oci_image_config, 1);
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr), *cfg;
    int r;

    if (!root)
        return tp_err_set(err, -EBADMSG, "image config is not JSON: %s", jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return tp_err_set(err, -EBADMSG, "image config is not a JSON object");
    }
    if ((r = get_str(root, "os", &c->os, err)) < 0 ||
        (r = get_str(root, "architecture", &c->architecture, err)) < 0)
        goto out;
    cfg = json_object_get(root, "config");
    if (cfg && !json_is_null(cfg)) {
        if (!json_is_object(cfg)) {
            r = tp_err_set(err, -EBADMSG, "image config: 'config' is not an object");
            goto out;
        }
        if ((r = get_strv(cfg, "Entrypoint", &c->entrypoint, err)) < 0 ||
            (r = get_strv(cfg, "Cmd", &c->cmd, err)) < 0 ||
            (r = get_strv(cfg, "Env", &c->env, err)) < 0 ||
            (r = get_str(cfg, "WorkingDir", &c->working_dir, err)) < 0 ||
            (r = get_str(cfg, "User", &c->user, err)) < 0 ||
            (r = get_str(cfg, "StopSignal", &c->stop_signal, err)) < 0)
            goto out;
    }
    *ret = TAKE_PTR(c);
    r = 0;
out:
    json_decref(root);
    return r;
}

int
oci_signal_parse(const char *s, int *ret_sig)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {
        { "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT },   { "KILL", SIGKILL },
        { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "TERM", SIGTERM },   { "STOP", SIGSTOP },
        { "CONT", SIGCONT }, { "PWR", SIGPWR },   { "WINCH", SIGWINCH },
    };
    char *end;

    if (!s || !*s)
        return -EINVAL;
    if (s[0] >= '0' && s[0] <= '9') {
        long v = strtol(s, &end, 10);
        if (*end || v < 1 || v > 64)
            return -EINVAL;
        *ret_sig = (int)v;
        return 0;
    }
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    if (strncmp(s, "RTMIN+", 6) == 0) {
        long v = strtol(s + 6, &end, 10);
        if (*end || v < 0 || SIGRTMIN + v > SIGRTMAX || s[6] < '0' || s[6] > '9')
            return -EINVAL;
        *ret_sig = SIGRTMIN + (int)v;
        return 0;
    }
    for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
        if (strcmp(s, sigs[i].name) == 0) {
            *ret_sig = sigs[i].sig;
            return 0;
        }
    return -EINVAL;
}

static size_t
strv_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static void
strv_append(char ***v, size_t *n, const char *s)
{
    *v = xrealloc(*v, (*n + 2) * sizeof(char *));
    (*v)[(*n)++] = xstrdup(s);
    (*v)[*n] = NULL;
}

/* Set "K=V" in env, replacing an entry with the same key; "K" alone (docker's -e K, taken from
 * the client's environment) must have been expanded by the client. */
static void
env_set(char ***env, size_t *n, const char *kv)
{
    size_t klen = strcspn(kv, "=");
    for (size_t i = 0; i < *n; i++)
        if (strncmp((*env)[i], kv, klen) == 0 && (*env)[i][klen] == '=') {
            free((*env)[i]);
            (*env)[i] = xstrdup(kv);
            return;
        }
    strv_append(env, n, kv);
}

void
oci_workload_done(struct oci_workload *w)
{
    w->argv = strv_free(w->argv);
    w->env = strv_free(w->env);
    free(w->working_dir);
    free(w->user);
    *w = (struct oci_workload){ 0 };
}

int
oci_workload_build(const struct oci_image_config *c, const struct oci_run_overrides *o,
                   struct oci_workload *ret, struct tp_err *err)
{
    struct oci_workload w = { .stop_signal = SIGTERM };
    size_t n = 0, ne = 0;
    char *const *ep = c->entrypoint, *const *cmd = c->cmd;

    if (o && o->entrypoint) {
        /* docker: --entrypoint resets the image's Cmd; --entrypoint "" clears both. */
        ep = o->entrypoint[0] && o->entrypoint[0][0] ? o->entrypoint : NULL;
        cmd = NULL;
    }
    if (o && o->cmd)
        cmd = o->cmd;
    for (size_t i = 0; i < strv_len(ep); i++)
        strv_append(&w.argv, &n, ep[i]);
    for (size_t i = 0; i < strv_len(cmd); i++)
        strv_append(&w.argv, &n, cmd[i]);
    if (n == 0)
        return tp_err_set(err, -EINVAL,
                          "no command specified: the image has no Entrypoint or Cmd (give one)");

    for (size_t i = 0; i < strv_len(c->env); i++)
        if (strchr(c->env[i], '=') && c->env[i][0] != '=')
            env_set(&w.env, &ne, c->env[i]);
    for (size_t i = 0; o && i < strv_len(o->env); i++) {
        if (!strchr(o->env[i], '=') || o->env[i][0] == '=') {
            oci_workload_done(&w);
            return tp_err_set(err, -EINVAL, "invalid environment '%s': want KEY=VALUE", o->env[i]);
        }
        env_set(&w.env, &ne, o->env[i]);
    }
    bool has_path = false;
    for (size_t i = 0; i < ne; i++)
        has_path |= strncmp(w.env[i], "PATH=", 5) == 0;
    if (!has_path) {
        /* First, as docker puts it. */
        w.env = xrealloc(w.env, (ne + 2) * sizeof(char *));
        w.env[ne] = NULL; /* a NULL env had no terminator to move */
        memmove(w.env + 1, w.env, (ne + 1) * sizeof(char *));
        w.env[0] = xstrdup(DEFAULT_PATH);
        ne++;
    }

    const char *wd = o && o->working_dir ? o->working_dir : c->working_dir;
    if (wd && *wd) {
        if (wd[0] != '/') {
            oci_workload_done(&w);
            return tp_err_set(err, -EINVAL, "working directory '%s' is not absolute", wd);
        }
        w.working_dir = xstrdup(wd);
    }
    const char *user = o && o->user ? o->user : c->user;
    if (user && *user)
        w.user = xstrdup(user);
    if (c->stop_signal && *c->stop_signal && oci_signal_parse(c->stop_signal, &w.stop_signal) < 0) {
        oci_workload_done(&w);
        return tp_err_set(err, -EINVAL, "image StopSignal '%s' is not a signal", c->stop_signal);
    }
    *ret = w;
    return 0;
}
