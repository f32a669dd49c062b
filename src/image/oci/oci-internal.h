/* image/oci's internals, shared by its files and its tests: challenges, credentials, the
 * registry client and blob ingest. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "oci.h"

struct oci_challenge {
    char *scheme; /* lowercased: "bearer", "basic" */
    char *realm, *service, *scope;
};
/* Parse one WWW-Authenticate challenge. -EPROTO when malformed, or Bearer without realm. */
int oci_challenge_parse(const char *header, struct oci_challenge *ret, struct tp_err *err);
void oci_challenge_done(struct oci_challenge *c);

/* The base64 "user:pass" for registry from a docker config.json ("auths"."host".auth, or
 * username + password); *ret_basic NULL when none or when the file does not exist. */
int oci_auth_lookup(const char *config_path, const char *registry, char **ret_basic,
                    struct tp_err *err);

/* A connection to one repository of one registry, authenticated. Usable from several threads. */
struct oci_reg;
/* Ping /v2/ (HTTPS; an insecure registry falls back to HTTP) and authenticate as it asks. */
int oci_reg_open(const struct oci_registry_conf *conf, const struct oci_ref *ref,
                 struct oci_reg **ret, struct tp_err *err);
struct oci_reg *oci_reg_free(struct oci_reg *g);
DEFINE_CLEANUP(struct oci_reg, oci_reg_free)
/* GET a manifest by tag or digest with every known Accept type; checks the body against a
 * digest reference and against Docker-Content-Digest. ret_digest: sha256 of the body. */
int oci_reg_manifest(struct oci_reg *g, const char *reference, char **ret_body, size_t *ret_len,
                     char **ret_media_type, char **ret_digest, struct tp_err *err);
/* Download blob d into the layout: ingest/<hex>.partial, hashed while it streams, resumed with
 * a Range request from what an earlier attempt left, renamed into blobs/ once verified. */
int oci_reg_blob(struct oci_reg *g, const struct oci_desc *d, const char *layout_dir,
                 oci_progress_fn cb, void *userdata, struct tp_err *err);

/* Ingest: a verified blob written from a stream. */
struct oci_ingest;
/* Start (or resume, when resume and a partial exists) ingest of digest/size; ret_have gets
 * the bytes already there (re-hashed). size < 0: unknown (load). */
int oci_ingest_open(const char *layout_dir, const char *digest, int64_t size, bool resume,
                    struct oci_ingest **ret, int64_t *ret_have, struct tp_err *err);
/* Start over from byte 0 (the server ignored a Range). */
int oci_ingest_reset(struct oci_ingest *in, struct tp_err *err);
int oci_ingest_write(struct oci_ingest *in, const void *buf, size_t len, struct tp_err *err);
int64_t oci_ingest_have(const struct oci_ingest *in);
/* Verify size and digest, fsync, rename into blobs/. On a mismatch the partial is removed. */
int oci_ingest_commit(struct oci_ingest *in, struct tp_err *err);
/* Close; discard removes the partial file (kept otherwise, for a resume). */
struct oci_ingest *oci_ingest_close(struct oci_ingest *in, bool discard);
/* An ingest of unknown digest (load): hashed into a temp file, committed under the digest its
 * content has. ret_digest gets it. */
int oci_ingest_open_anon(const char *layout_dir, struct oci_ingest **ret, struct tp_err *err);
int oci_ingest_commit_anon(struct oci_ingest *in, char **ret_digest, int64_t *ret_size,
                           struct tp_err *err);

/* One image of a `docker save` tarball's manifest.json: archive member names. */
struct oci_save_image {
    char *config;
    char **layers;    /* NULL-terminated */
    char **repo_tags; /* NULL-terminated, possibly empty */
};
/* Parse manifest.json (a non-empty array of {Config, Layers, RepoTags}). -EINVAL with the
 * reason on anything else. */
int oci_docker_save_parse(const char *text, size_t len, struct oci_save_image **ret, size_t *ret_n,
                          struct tp_err *err);
void oci_save_images_free(struct oci_save_image *v, size_t n);
