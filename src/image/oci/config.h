/* An image's config blob (OCI image config or Docker container config): what the guest's
 * workload is, and how `run`'s options override it as docker's do. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

struct oci_image_config {
    char *os, *architecture;
    char **entrypoint; /* NULL-terminated; NULL when the image sets none */
    char **cmd;
    char **env; /* "KEY=VALUE" */
    char *working_dir;
    char *user;
    char *stop_signal; /* as written ("SIGTERM", "9"); NULL = SIGTERM */
};

/* Parse the config blob (config.* fields; also top-level os/architecture). Unknown fields are
 * ignored; a field of the wrong type is -EBADMSG. Pure: fuzzed. */
int oci_config_parse(const char *buf, size_t len, struct oci_image_config **ret,
                     struct tp_err *err);
struct oci_image_config *oci_config_free(struct oci_image_config *c);

/* What `run` asked for; NULL fields keep the image's. entrypoint {"" , NULL} clears it. */
struct oci_run_overrides {
    char *const *entrypoint;
    char *const *cmd; /* CMD after the image: replaces the image's Cmd */
    char *const *env; /* "K=V" (replace or add) */
    const char *working_dir;
    const char *user;
};

/* The workload, as docker computes it: argv = entrypoint + cmd (an --entrypoint drops the
 * image's Cmd), env = image env with overrides, PATH defaulted as docker does. All owned by the
 * caller (strv_free / free). -EINVAL "no command specified" when argv ends up empty. */
struct oci_workload {
    char **argv;
    char **env;
    char *working_dir; /* NULL = "/" */
    char *user;        /* NULL = root */
    int stop_signal;
};
int oci_workload_build(const struct oci_image_config *c, const struct oci_run_overrides *o,
                       struct oci_workload *ret, struct tp_err *err);
void oci_workload_done(struct oci_workload *w);

/* "SIGTERM", "TERM", "15" -> 15; -EINVAL otherwise. */
int oci_signal_parse(const char *s, int *ret_sig);
