/* Image manifests and indexes (OCI and Docker v2 schema 2) parsed from their JSON blobs. */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "oci.h"
#include "util/xalloc.h"

#define MAX_ENTRIES 4096

static void
json_decref_p(json_t **j)
{
    if (*j)
        json_decref(*j);
}
#define _cleanup_json_ _cleanup_(json_decref_p)

void
oci_desc_done(struct oci_desc *d)
{
    if (!d)
        return;
    free(d->media_type);
    free(d->digest);
    *d = (struct oci_desc){ 0 };
}

void
oci_desc_copy(struct oci_desc *dst, const struct oci_desc *src)
{
    *dst = (struct oci_desc){
        .media_type = src->media_type ? xstrdup(src->media_type) : NULL,
        .digest = src->digest ? xstrdup(src->digest) : NULL,
        .size = src->size,
    };
}

enum oci_kind
oci_media_kind(const char *mt)
{
    if (!mt)
        return _OCI_KIND_INVALID;
    if (strcmp(mt, OCI_MT_MANIFEST) == 0 || strcmp(mt, DOCKER_MT_MANIFEST) == 0)
        return OCI_KIND_MANIFEST;
    if (strcmp(mt, OCI_MT_INDEX) == 0 || strcmp(mt, DOCKER_MT_LIST) == 0)
        return OCI_KIND_INDEX;
    if (strcmp(mt, DOCKER_MT_SCHEMA1) == 0 || strcmp(mt, DOCKER_MT_SCHEMA1_S) == 0)
        return OCI_KIND_SCHEMA1;
    return _OCI_KIND_INVALID;
}

bool
oci_layer_media_type_known(const char *mt)
{
    static const char *const known[] = {
        OCI_MT_LAYER_TAR,
        OCI_MT_LAYER_GZIP,
        OCI_MT_LAYER_ZSTD,
        DOCKER_MT_LAYER,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    };
    for (size_t i = 0; mt && i < ELEMENTSOF(known); i++)
        if (strcmp(mt, known[i]) == 0)
            return true;
    return false;
}

static int
load_json(const char *buf, size_t len, json_t **ret, struct tp_err *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return tp_err_set(err, -EINVAL, "parse manifest JSON: %s (line %d)", jerr.text, jerr.line);
    if (!json_is_object(j)) {
        json_decref(j);
        return tp_err_set(err, -EINVAL, "parse manifest JSON: not an object");
    }
    *ret = j;
    return 0;
}

static int
kind_of(json_t *j, enum oci_kind *ret, char **ret_mt, struct tp_err *err)
{
    json_t *mt = json_object_get(j, "mediaType");
    json_t *sv = json_object_get(j, "schemaVersion");
    enum oci_kind k;
    const char *implied;

    if (json_is_integer(sv) && json_integer_value(sv) == 1)
        return tp_err_set(err, -EOPNOTSUPP,
                          "unsupported manifest: Docker image manifest schema 1 (deprecated; "
                          "push the image again with a current client)");
    if (!json_is_integer(sv) || json_integer_value(sv) != 2)
        return tp_err_set(err, -EINVAL, "unsupported manifest: schemaVersion is not 2");
    if (mt) {
        if (!json_is_string(mt))
            return tp_err_set(err, -EINVAL, "invalid manifest: mediaType is not a string");
        k = oci_media_kind(json_string_value(mt));
        if (k < 0 || k == OCI_KIND_SCHEMA1)
            return tp_err_set(err, -EOPNOTSUPP, "unsupported manifest media type '%s'",
                              json_string_value(mt));
        implied = json_string_value(mt);
    } else if (json_object_get(j, "manifests")) {
        k = OCI_KIND_INDEX;
        implied = OCI_MT_INDEX;
    } else if (json_object_get(j, "config") && json_object_get(j, "layers")) {
        k = OCI_KIND_MANIFEST;
        implied = OCI_MT_MANIFEST;
    } else {
        return tp_err_set(err, -EINVAL, "invalid manifest: no mediaType, config or manifests");
    }
    if (ret_mt)
        *ret_mt = xstrdup(implied);
    *ret = k;
    return 0;
}

int
oci_blob_kind(const char *buf, size_t len, enum oci_kind *ret, char **ret_media_type,
              struct tp_err *err)
{
    _cleanup_json_ json_t *j = NULL;
    int r = load_json(buf, len, &j, err);
    if (r < 0)
        return r;
    return kind_of(j, ret, ret_media_type, err);
}

static int
desc_parse(json_t *o, const char *what, struct oci_desc *ret, struct tp_err *err)
{
    json_t *mt = json_object_get(o, "mediaType");
    json_t *dg = json_object_get(o, "digest");
    json_t *sz = json_object_get(o, "size");

    if (!json_is_object(o))
        return tp_err_set(err, -EINVAL, "invalid manifest: %s is not an object", what);
    if (!json_is_string(mt))
        return tp_err_set(err, -EINVAL, "invalid manifest: %s has no mediaType", what);
    if (!json_is_string(dg))
        return tp_err_set(err, -EINVAL, "invalid manifest: %s has no digest", what);
    if (!oci_digest_valid(json_string_value(dg))) {
        const char *d = json_string_value(dg);
        if (strncmp(d, "sha256:", 7) != 0 && strchr(d, ':'))
            return tp_err_set(err, -EOPNOTSUPP,
                              "unsupported digest algorithm in %s: '%.80s' (only sha256)", what, d);
        return tp_err_set(err, -EINVAL, "invalid manifest: %s digest '%.80s' is not sha256:<hex>",
                          what, d);
    }
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return tp_err_set(err, -EINVAL, "invalid manifest: %s has no valid size", what);
    *ret = (struct oci_desc){
        .media_type = xstrdup(json_string_value(mt)),
        .digest = xstrdup(json_string_value(dg)),
        .size = json_integer_value(sz),
    };
    return 0;
}

void
oci_manifest_free(struct oci_manifest *m)
{
    if (!m)
        return;
    oci_desc_done(&m->config);
    for (size_t i = 0; i < m->n_layers; i++)
        oci_desc_done(&m->layers[i]);
    free(m->layers);
    *m = (struct oci_manifest){ 0 };
}

int
oci_manifest_parse(const char *buf, size_t len, struct oci_manifest *ret, struct tp_err *err)
{
    _cleanup_json_ json_t *j = NULL;
    _cleanup_free_ char *mt = NULL;
    struct oci_manifest m = { 0 };
    enum oci_kind k;
    json_t *layers;
    int r;

    r = load_json(buf, len, &j, err);
    if (r < 0)
        return r;
    r = kind_of(j, &k, &mt, err);
    if (r < 0)
        return r;
    if (k != OCI_KIND_MANIFEST)
        return tp_err_set(err, -EINVAL, "expected an image manifest, got '%s'", mt);

    r = desc_parse(json_object_get(j, "config"), "config", &m.config, err);
    if (r < 0)
        return r;
    if (strcmp(m.config.media_type, OCI_MT_CONFIG) != 0 &&
        strcmp(m.config.media_type, DOCKER_MT_CONFIG) != 0) {
        r = tp_err_set(err, -EOPNOTSUPP, "unsupported config media type '%s'", m.config.media_type);
        goto fail;
    }
    layers = json_object_get(j, "layers");
    if (!json_is_array(layers) || json_array_size(layers) > MAX_ENTRIES) {
        r = tp_err_set(err, -EINVAL, "invalid manifest: layers is not an array (of at most %d)",
                       MAX_ENTRIES);
        goto fail;
    }
    m.layers = xnew(struct oci_desc, json_array_size(layers) + 1);
    for (size_t i = 0; i < json_array_size(layers); i++) {
        char what[32];
        snprintf(what, sizeof(what), "layer %zu", i);
        r = desc_parse(json_array_get(layers, i), what, &m.layers[i], err);
        if (r < 0)
            goto fail;
        m.n_layers++;
        if (!oci_layer_media_type_known(m.layers[i].media_type)) {
            r = tp_err_set(err, -EOPNOTSUPP, "unsupported layer media type '%s'",
                           m.layers[i].media_type);
            goto fail;
        }
    }
    *ret = m;
    return 0;
fail:
    oci_manifest_free(&m);
    return r;
}

void
oci_index_free(struct oci_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n; i++) {
        oci_desc_done(&ix->manifests[i]);
        free(ix->platforms[i].os);
        free(ix->platforms[i].architecture);
        free(ix->platforms[i].variant);
    }
    free(ix->manifests);
    free(ix->platforms);
    *ix = (struct oci_index){ 0 };
}

static char *
str_or_null(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

int
oci_index_parse(const char *buf, size_t len, struct oci_index *ret, struct tp_err *err)
{
    _cleanup_json_ json_t *j = NULL;
    _cleanup_free_ char *mt = NULL;
    struct oci_index ix = { 0 };
    enum oci_kind k;
    json_t *ms;
    int r;

    r = load_json(buf, len, &j, err);
    if (r < 0)
        return r;
    r = kind_of(j, &k, &mt, err);
    if (r < 0)
        return r;
    if (k != OCI_KIND_INDEX)
        return tp_err_set(err, -EINVAL, "expected an image index, got '%s'", mt);
    ms = json_object_get(j, "manifests");
    if (!json_is_array(ms) || json_array_size(ms) > MAX_ENTRIES)
        return tp_err_set(err, -EINVAL, "invalid index: manifests is not an array (of at most %d)",
                          MAX_ENTRIES);
    ix.manifests = xnew(struct oci_desc, json_array_size(ms) + 1);
    ix.platforms = xnew(struct oci_platform, json_array_size(ms) + 1);
    for (size_t i = 0; i < json_array_size(ms); i++) {
        json_t *e = json_array_get(ms, i);
        char what[40];
        snprintf(what, sizeof(what), "index entry %zu", i);
        r = desc_parse(e, what, &ix.manifests[i], err);
        if (r < 0)
            goto fail;
        json_t *p = json_object_get(e, "platform");
        if (json_is_object(p))
            ix.platforms[i] = (struct oci_platform){
                .os = str_or_null(p, "os"),
                .architecture = str_or_null(p, "architecture"),
                .variant = str_or_null(p, "variant"),
            };
        ix.n++;
    }
    *ret = ix;
    return 0;
fail:
    oci_index_free(&ix);
    return r;
}

int
oci_index_select(const struct oci_index *ix, const char *os, const char *arch, struct oci_desc *ret,
                 struct tp_err *err)
{
    size_t cap = 256, len = 0;
    _cleanup_free_ char *avail = xmalloc(cap);

    avail[0] = '\0';
    for (size_t i = 0; i < ix->n; i++) {
        const struct oci_platform *p = &ix->platforms[i];
        if (p->os && p->architecture && strcmp(p->os, os) == 0 &&
            strcmp(p->architecture, arch) == 0 &&
            oci_media_kind(ix->manifests[i].media_type) == OCI_KIND_MANIFEST) {
            oci_desc_copy(ret, &ix->manifests[i]);
            return 0;
        }
    }
    for (size_t i = 0; i < ix->n; i++) {
        const struct oci_platform *p = &ix->platforms[i];
        if (!p->os || !p->architecture || strcmp(p->os, "unknown") == 0)
            continue; /* attestations and the like */
        _cleanup_free_ char *one = xasprintf("%s%s/%s%s%s", len ? ", " : "", p->os, p->architecture,
                                             p->variant ? "/" : "", p->variant ? p->variant : "");
        size_t n = strlen(one);
        while (len + n + 1 > cap)
            avail = xrealloc(avail, cap *= 2);
        memcpy(avail + len, one, n + 1);
        len += n;
    }
    return tp_err_set(err, -ENOENT,
                      "no matching manifest for %s/%s in the manifest list entries (available: "
                      "%s)",
                      os, arch, len ? avail : "none");
}
