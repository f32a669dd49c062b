/* OCI images: references, manifests and indexes, and the image store (an OCI image layout). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/cleanup.h"
#include "util/err.h"

/* Media types torpor knows. */
#define OCI_MT_MANIFEST     "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX        "application/vnd.oci.image.index.v1+json"
#define OCI_MT_CONFIG       "application/vnd.oci.image.config.v1+json"
#define OCI_MT_LAYER_TAR    "application/vnd.oci.image.layer.v1.tar"
#define OCI_MT_LAYER_GZIP   "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_MT_LAYER_ZSTD   "application/vnd.oci.image.layer.v1.tar+zstd"
#define DOCKER_MT_MANIFEST  "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_MT_LIST      "application/vnd.docker.distribution.manifest.list.v2+json"
#define DOCKER_MT_CONFIG    "application/vnd.docker.container.image.v1+json"
#define DOCKER_MT_LAYER     "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define DOCKER_MT_SCHEMA1   "application/vnd.docker.distribution.manifest.v1+json"
#define DOCKER_MT_SCHEMA1_S "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* Annotations torpor writes on index.json entries. */
#define OCI_ANNOT_REF_NAME     "org.opencontainers.image.ref.name"
#define OCI_ANNOT_INDEX_DIGEST "io.torpor.index.digest"

/* ------------------------------------------------------------------ descriptors, manifests */

struct oci_desc {
    char *media_type;
    char *digest; /* "sha256:<64 hex>" */
    int64_t size;
};
void oci_desc_done(struct oci_desc *d); /* frees the fields; NULL-safe */
void oci_desc_copy(struct oci_desc *dst, const struct oci_desc *src);

struct oci_manifest {
    struct oci_desc config;
    struct oci_desc *layers;
    size_t n_layers;
};

/* A docker reference parsed and normalized as docker does: docker.io default registry, library/
 * for single-component repos on docker.io, "latest" when neither tag nor digest. */
struct oci_ref {
    char *registry;
    char *repository;
    char *tag;    /* NULL for a by-digest reference without a tag */
    char *digest; /* NULL unless "@sha256:..." was given */
    char *full;   /* normalized: registry/repository[:tag][@digest] */
};

/* -EINVAL with docker's wording ("invalid reference format: ...") on bad input. */
int oci_ref_parse(const char *s, struct oci_ref *ret, struct tp_err *err);
void oci_ref_free(struct oci_ref *r); /* frees the fields, NULL-safe */
/* "registry/repository" (no tag or digest); caller frees. */
char *oci_ref_name(const struct oci_ref *r);
/* The name docker shows in REPOSITORY: "busybox" for docker.io/library/busybox, "user/app" for
 * docker.io/user/app, else registry/repository. Caller frees. */
char *oci_ref_familiar_name(const struct oci_ref *r);

bool oci_digest_valid(const char *digest); /* sha256:<64 lowercase hex> */
/* The hex part of a valid digest (a pointer into digest), NULL when invalid. */
const char *oci_digest_hex(const char *digest);
/* "sha256:<hex>" of data. Caller frees. */
char *oci_digest_of(const void *data, size_t len);

enum oci_kind {
    OCI_KIND_MANIFEST, /* OCI or Docker v2s2 image manifest */
    OCI_KIND_INDEX,    /* OCI index or Docker manifest list */
    OCI_KIND_SCHEMA1,  /* refused: Docker schema 1 */
    _OCI_KIND_MAX,
    _OCI_KIND_INVALID = -22,
};
/* Kind of a manifest media type; _OCI_KIND_INVALID for unknown ones. */
enum oci_kind oci_media_kind(const char *media_type);
/* Kind of a manifest blob: its mediaType field, else its shape (OCI allows it to be absent).
 * ret_media_type (may be NULL) gets the media type the blob declares or implies; caller frees. */
int oci_blob_kind(const char *buf, size_t len, enum oci_kind *ret, char **ret_media_type,
                  struct tp_err *err);
/* Whether a layer media type is one torpor can unpack. */
bool oci_layer_media_type_known(const char *media_type);

/* Parse an image manifest blob (OCI or Docker v2s2; refuses indexes, schema1, unknown media types).
 */
int oci_manifest_parse(const char *buf, size_t len, struct oci_manifest *ret, struct tp_err *err);
void oci_manifest_free(struct oci_manifest *m); /* frees the fields, NULL-safe */

struct oci_platform {
    char *os, *architecture, *variant; /* variant may be NULL */
};
struct oci_index {
    struct oci_desc *manifests;
    struct oci_platform *platforms; /* parallel to manifests; fields NULL when absent */
    size_t n;
};
/* Parse an OCI index or Docker manifest list. */
int oci_index_parse(const char *buf, size_t len, struct oci_index *ret, struct tp_err *err);
void oci_index_free(struct oci_index *ix);
/* The image manifest for os/arch (first match; attestation entries with platform unknown/unknown
 * are never chosen). -ENOENT "no matching manifest for linux/amd64 in the manifest list entries
 * (available: linux/arm64, ...)". */
int oci_index_select(const struct oci_index *ix, const char *os, const char *arch,
                     struct oci_desc *ret, struct tp_err *err);

/* ------------------------------------------------------------------ the layout store */

/* An entry of index.json. */
struct oci_image {
    struct oci_desc manifest;
    char *ref_name;     /* normalized full reference; NULL for an entry without one */
    char *index_digest; /* the index/manifest list it was chosen from, or NULL */
};
void oci_image_done(struct oci_image *im);
void oci_images_free(struct oci_image *v, size_t n);

char *oci_blob_path(const char *layout_dir, const char *digest); /* NULL when digest is invalid */
bool oci_blob_exists(const char *layout_dir, const char *digest);
/* Read a blob (at most max bytes, else -EFBIG) and check it hashes to its name (-EIO). */
int oci_blob_read(const char *layout_dir, const char *digest, size_t max, char **ret_data,
                  size_t *ret_len, struct tp_err *err);
/* Store a small in-memory blob (manifests, configs): verified, written atomically, mode 0600. */
int oci_blob_put(const char *layout_dir, const char *digest, const void *data, size_t len,
                 struct tp_err *err);

/* Create the layout (oci-layout, index.json, blobs/sha256, ingest/) where missing. */
int oci_layout_init(const char *layout_dir, struct tp_err *err);
/* All entries of index.json, in file order. */
int oci_layout_list(const char *layout_dir, struct oci_image **ret, size_t *ret_n,
                    struct tp_err *err);
/* Point ref_name (a normalized full reference) at manifest, replacing an entry of the same name.
 * ref_name NULL: list the image without a name (docker's <none>) unless it is listed already.
 * index_digest may be NULL. index.json is rewritten atomically. */
int oci_layout_tag(const char *layout_dir, const char *ref_name, const struct oci_desc *manifest,
                   const char *index_digest, struct tp_err *err);
/* Remove the entry named ref_name: -ENOENT when none. */
int oci_layout_untag(const char *layout_dir, const char *ref_name, struct tp_err *err);
/* Remove every entry of manifest digest (named or not): -ENOENT when none. */
int oci_layout_untag_digest(const char *layout_dir, const char *digest, struct tp_err *err);

/* Find an image in the layout: by reference (any form oci_ref_parse takes, normalized before
 * lookup), by manifest digest, or by a unique image-id prefix (image id = the config digest's
 * hex, as docker shows it). -ENOENT "No such image: REF". */
int oci_layout_resolve(const char *layout_dir, const char *ref, struct oci_desc *ret_manifest,
                       struct tp_err *err);
/* Like oci_layout_resolve(), also giving the parsed manifest and the names that point at it
 * (NULL-terminated, possibly empty). Any out-parameter may be NULL. */
int oci_layout_resolve_full(const char *layout_dir, const char *ref, struct oci_desc *ret_manifest,
                            struct oci_manifest *ret_parsed, char ***ret_names, struct tp_err *err);

/* Remove every blob no index.json entry references (manifests, their configs and layers, the
 * indexes named by io.torpor.index.digest). ret_freed (may be NULL) gets the bytes removed. Holds
 * the layout's lock; -EBUSY while a pull holds oci_layout_pull_lock(). */
int oci_layout_gc(const char *layout_dir, uint64_t *ret_freed, struct tp_err *err);
/* Remove partial downloads in ingest/. ret_freed as above. -EBUSY while a pull runs. */
int oci_layout_clear_ingest(const char *layout_dir, uint64_t *ret_freed, struct tp_err *err);
/* Remove what no later pull can use: ingest/load-* and ingest/upload-* temp files of loads
 * a crash interrupted (a partial download, ingest/<hex>.partial, stays for its resume). For
 * torpord's start, before any pull or load. */
int oci_layout_clean_tmp(const char *layout_dir, struct tp_err *err);
/* A shared lock a pull/load holds for its whole run so gc does not remove blobs it has written
 * but not tagged yet. Returns an fd to close, or -errno. */
int oci_layout_pull_lock(const char *layout_dir, struct tp_err *err);

/* ------------------------------------------------------------------ registries and pulls */

struct oci_registry_conf {
    char **insecure;         /* NULL-terminated "host[:port]" list allowed over plain HTTP */
    const char *auth_config; /* docker-style config.json; NULL = oci_auth_default_config() */
};
/* $DOCKER_CONFIG/config.json, else ~/.docker/config.json (NULL without HOME). Caller frees. */
char *oci_auth_default_config(void);
/* Whether registry ("host[:port]") may be reached over plain HTTP: named in conf->insecure,
 * or on loopback (localhost, 127.0.0.0/8, ::1) as dockerd allows by default. */
bool oci_registry_insecure(const struct oci_registry_conf *conf, const char *registry);
/* The same for the host[:port] of an http(s) URL (a token realm); false when it does not parse. */
bool oci_registry_insecure_url(const struct oci_registry_conf *conf, const char *url);
/* Whether s is a valid --insecure-registry value (host[:port]). */
bool oci_registry_host_valid(const char *s);

enum oci_progress_kind {
    OCI_PROGRESS_EXISTS,      /* the blob is in the store already */
    OCI_PROGRESS_WAITING,     /* queued behind other downloads */
    OCI_PROGRESS_DOWNLOADING, /* current of total bytes (resumed: bytes kept from before) */
    OCI_PROGRESS_VERIFYING,
    OCI_PROGRESS_COMPLETE, /* verified and in blobs/ */
    _OCI_PROGRESS_MAX,
    _OCI_PROGRESS_INVALID = -22,
};
struct oci_progress {
    const char *digest; /* of the blob */
    enum oci_progress_kind kind;
    int64_t current, total, resumed;
};
/* Called from the pulling threads, one call at a time. */
typedef void (*oci_progress_fn)(const struct oci_progress *p, void *userdata);

struct oci_pull_result {
    char *ref;          /* normalized full reference */
    char *digest;       /* the image manifest's */
    char *index_digest; /* the index/list it was chosen from, or NULL */
    bool up_to_date;    /* every blob was there already */
};
void oci_pull_result_done(struct oci_pull_result *r);

/* Pull ref into the layout: manifest (an index resolved to linux/amd64), config and layers
 * (in parallel, each verified while it streams, a partial download resumed), then the tag.
 * Errors name what failed: "manifest unknown", "digest mismatch", "connect to registry". */
int oci_pull(const char *layout_dir, const struct oci_registry_conf *conf, const char *ref,
             oci_progress_fn cb, void *userdata, struct oci_pull_result *ret, struct tp_err *err);

/* ------------------------------------------------------------------ load */

struct oci_load_result {
    char **names;  /* normalized references tagged (NULL-terminated) */
    char **images; /* manifest digests of images loaded without a name (NULL-terminated) */
};
void oci_load_result_done(struct oci_load_result *r);
/* Load a tar stream (an OCI layout in a tar, or a `docker save` tarball) read from fd. */
int oci_load_tar_fd(const char *layout_dir, int fd, struct oci_load_result *ret,
                    struct tp_err *err);
/* Load every image of an OCI layout directory on the host. */
int oci_load_layout_dir(const char *layout_dir, const char *src_dir, struct oci_load_result *ret,
                        struct tp_err *err);
