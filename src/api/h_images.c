/* Image handlers: pull (a stream of progress lines), list, inspect, remove, prune and load,
 * over the OCI layout store in DATA_DIR/images. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api-internal.h"
#include "api/body.h"
#include "api/errmap.h"
#include "image/oci/oci.h"
#include "image/oci/rootfs.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/xalloc.h"

#define CONFIG_MAX   (4u << 20)
#define MANIFEST_MAX (4u << 20)

static char *images_layout;                          /* DATA_DIR/images */
static struct oci_registry_conf images_conf = { 0 }; /* borrowed from torpord for its lifetime */

void
api_images_configure(const char *layout_dir, const struct oci_registry_conf *conf)
{
    free(images_layout);
    images_layout = xstrdup(layout_dir);
    if (conf)
        images_conf = *conf;
}

static const char *
layout(struct api_req *req)
{
    (void)req;
    return images_layout ? images_layout : "images";
}

/* The {ref} path segment with %2F turned back into '/' (the router keeps it escaped). */
static char *
path_ref(struct api_req *req)
{
    const char *s = req->match.ref;
    char *out = xmalloc(strlen(s) + 1), *o = out;
    while (*s) {
        if (s[0] == '%' && s[1] == '2' && (s[2] == 'F' || s[2] == 'f')) {
            *o++ = '/';
            s += 3;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* A ref the image routes accept: a reference, a digest, or an image-id prefix. */
static int
image_ref_check(const char *ref, struct tp_err *err)
{
    struct oci_ref r = { 0 };
    size_t n = strlen(ref);

    if (n == 0)
        return tp_err_set(err, -EINVAL, "empty image reference");
    if (strncmp(ref, "sha256:", 7) == 0) {
        for (const char *c = ref + 7; *c; c++)
            if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
                return tp_err_set(err, -EINVAL, "invalid image digest '%.80s'", ref);
        return n > 7 && n <= 71 ? 0 : tp_err_set(err, -EINVAL, "invalid image digest '%.80s'", ref);
    }
    if (strspn(ref, "0123456789abcdef") == n && n <= 64)
        return 0;
    if (oci_ref_parse(ref, &r, err) < 0)
        return err ? err->code : -EINVAL;
    oci_ref_free(&r);
    return 0;
}

/* ---- what VMs use --------------------------------------------------------------------- */

/* Names of the instances whose root disk comes from the image of manifest digest: the rootfs
 * they were created from names the image, or their disk was cloned from its cached root disk
 * (LAYOUT/rootfs/<hex>.ext4). NULL-terminated; caller frees. */
static char **
image_users(struct api_req *req, const char *digest)
{
    struct inst_record **recs = NULL;
    size_t n = 0;
    char **users = NULL;
    size_t k = 0;
    const char *hex = oci_digest_hex(digest);

    if (inst_list(req->m, &recs, &n, NULL) < 0)
        return xnew(char *, 1);
    users = xnew(char *, n + 1);
    for (size_t i = 0; i < n; i++) {
        const struct inst_record *r = recs[i];
        bool uses = r->cfg.image_digest && strcmp(r->cfg.image_digest, digest) == 0;
        if (!uses && hex && r->cfg.root_disk_src && strstr(r->cfg.root_disk_src, hex))
            uses = true;
        if (!uses && r->cfg.rootfs && r->cfg.rootfs[0] != '/' && r->cfg.rootfs[0] != '.') {
            struct oci_desc d = { 0 };
            if (oci_layout_resolve(layout(req), r->cfg.rootfs, &d, NULL) == 0 &&
                strcmp(d.digest, digest) == 0)
                uses = true;
            oci_desc_done(&d);
        }
        if (uses)
            users[k++] = xstrdup(r->name ? r->name : r->id);
        inst_record_free(recs[i]);
    }
    free(recs);
    return users;
}

/* ---- list, inspect ---------------------------------------------------------------------- */

struct image_info {
    char *config_digest;
    json_t *config; /* the config blob, parsed (NULL if unreadable) */
    int64_t size;   /* config + layers, as stored */
};

static void
image_info_done(struct image_info *ii)
{
    free(ii->config_digest);
    if (ii->config)
        json_decref(ii->config);
}

static void
image_info_get(const char *dir, const char *digest, struct image_info *ret)
{
    _cleanup_free_ char *data = NULL, *cdata = NULL;
    struct oci_manifest m = { 0 };
    size_t len, clen;

    *ret = (struct image_info){ 0 };
    if (oci_blob_read(dir, digest, MANIFEST_MAX, &data, &len, NULL) < 0 ||
        oci_manifest_parse(data, len, &m, NULL) < 0)
        return;
    ret->config_digest = xstrdup(m.config.digest);
    ret->size = m.config.size;
    for (size_t i = 0; i < m.n_layers; i++)
        ret->size += m.layers[i].size;
    if (oci_blob_read(dir, m.config.digest, CONFIG_MAX, &cdata, &clen, NULL) == 0)
        ret->config = json_loadb(cdata, clen, 0, NULL);
    oci_manifest_free(&m);
}

/* json_string taking ownership of s. */
#define json_string_nocheck(s)                  \
    ({                                          \
        char *_s = (s);                         \
        json_t *_j = json_string(_s ? _s : ""); \
        free(_s);                               \
        _j;                                     \
    })

static json_t *
image_row(const struct oci_image *im, const struct image_info *ii)
{
    struct oci_ref r = { 0 };
    json_t *o = json_object();
    json_t *created = json_object_get(ii->config, "created");

    if (im->ref_name && oci_ref_parse(im->ref_name, &r, NULL) == 0) {
        json_object_set_new(o, "repository", json_string_nocheck(oci_ref_familiar_name(&r)));
        json_object_set_new(o, "tag", json_string(r.tag ? r.tag : "<none>"));
        json_object_set_new(o, "ref", json_string(im->ref_name));
        oci_ref_free(&r);
    } else {
        json_object_set_new(o, "repository", json_string("<none>"));
        json_object_set_new(o, "tag", json_string("<none>"));
        json_object_set_new(o, "ref", json_null());
    }
    json_object_set_new(o, "id", ii->config_digest ? json_string(ii->config_digest) : json_null());
    json_object_set_new(o, "digest", json_string(im->manifest.digest));
    json_object_set_new(o, "media_type", json_string(im->manifest.media_type));
    json_object_set_new(o, "created", json_is_string(created) ? json_incref(created) : json_null());
    json_object_set_new(o, "size", json_integer(ii->size));
    return o;
}

enum MHD_Result
api_h_images_list(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct oci_image *v = NULL;
    size_t n = 0;
    json_t *arr;

    if (oci_layout_init(layout(req), &err) < 0 || oci_layout_list(layout(req), &v, &n, &err) < 0)
        return api_reply_tp_err(req, &err);
    arr = json_array();
    for (size_t i = 0; i < n; i++) {
        struct image_info ii;
        image_info_get(layout(req), v[i].manifest.digest, &ii);
        json_array_append_new(arr, image_row(&v[i], &ii));
        image_info_done(&ii);
    }
    oci_images_free(v, n);
    return api_reply_json(req, 200, arr);
}

enum MHD_Result
api_h_image_get(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *ref = path_ref(req);
    struct oci_desc d = { 0 };
    struct oci_manifest m = { 0 };
    char **names = NULL;
    struct image_info ii;
    json_t *o, *tags, *digests, *layers;

    if (image_ref_check(ref, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (oci_layout_resolve_full(layout(req), ref, &d, &m, &names, &err) < 0)
        return api_reply_tp_err(req, &err);
    image_info_get(layout(req), d.digest, &ii);
    tags = json_array();
    digests = json_array();
    strv_foreach (s, names) {
        struct oci_ref r = { 0 };
        if (oci_ref_parse(*s, &r, NULL) < 0)
            continue;
        _cleanup_free_ char *name = oci_ref_name(&r);
        if (r.tag && !r.digest)
            json_array_append_new(tags, json_string(*s));
        _cleanup_free_ char *rd = xasprintf("%s@%s", name, d.digest);
        json_array_append_new(digests, json_string(rd));
        oci_ref_free(&r);
    }
    layers = json_array();
    for (size_t i = 0; i < m.n_layers; i++)
        json_array_append_new(
            layers, json_pack("{s:s,s:s,s:I}", "media_type", m.layers[i].media_type, "digest",
                              m.layers[i].digest, "size", (json_int_t)m.layers[i].size));
    json_t *cfg = ii.config;
    json_t *created = json_object_get(cfg, "created");
    o = json_pack(
        "{s:s,s:s,s:s,s:o,s:o,s:o,s:I,s:o,s:o,s:o,s:o}", "id",
        ii.config_digest ? ii.config_digest : "", "digest", d.digest, "media_type", d.media_type,
        "repo_tags", tags, "repo_digests", digests, "created",
        json_is_string(created) ? json_incref(created) : json_null(), "size", (json_int_t)ii.size,
        "os", json_incref(json_object_get(cfg, "os") ? json_object_get(cfg, "os") : json_null()),
        "architecture",
        json_incref(json_object_get(cfg, "architecture") ? json_object_get(cfg, "architecture")
                                                         : json_null()),
        "config",
        json_incref(json_object_get(cfg, "config") ? json_object_get(cfg, "config") : json_null()),
        "layers", layers);
    strv_free(names);
    oci_manifest_free(&m);
    oci_desc_done(&d);
    image_info_done(&ii);
    if (!o)
        return api_reply_error(req, -EIO, "build the image's description");
    return api_reply_json(req, 200, o);
}

/* ---- remove, prune ---------------------------------------------------------------------- */

static int
gc(struct api_req *req, uint64_t *ret_freed, struct tp_err *err)
{
    int r = oci_layout_gc(layout(req), ret_freed, err);
    /* Root disks built from images gone with their manifests (instances have their own
     * copies: none breaks). */
    if (r >= 0)
        r = oci_rootfs_gc(layout(req), err);
    return r;
}

enum MHD_Result
api_h_image_delete(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *ref = path_ref(req);
    struct oci_desc d = { 0 };
    struct oci_ref pr = { 0 };
    char **names = NULL, **users = NULL;
    bool force, by_name = false, gone;
    json_t *untagged = json_array(), *deleted = json_array();
    enum MHD_Result res;
    int r;

    if (api_req_query_bool(req, "force", &force, &err) < 0 || image_ref_check(ref, &err) < 0) {
        res = api_reply_tp_err(req, &err);
        goto out;
    }
    r = oci_layout_resolve_full(layout(req), ref, &d, NULL, &names, &err);
    if (r < 0) {
        res = api_reply_tp_err(req, &err);
        goto out;
    }
    /* by a name that is listed: untag that name only (docker rmi NAME) */
    if (strncmp(ref, "sha256:", 7) != 0 && oci_ref_parse(ref, &pr, NULL) == 0)
        strv_foreach (s, names)
            if (strcmp(*s, pr.full) == 0)
                by_name = true;
    if (!by_name && !force && names && names[0] && names[1]) {
        _cleanup_free_ char *msg =
            xasprintf("conflict: unable to delete %.80s (must be forced) - image is referenced "
                      "in multiple repositories",
                      ref);
        res = api_reply_error(req, -EBUSY, msg);
        goto out;
    }
    /* would the image be gone after this? then no VM may use it (unless forced) */
    gone = !by_name || !names || !names[0] || !names[1];
    if (gone && !force) {
        users = image_users(req, d.digest);
        if (users[0]) {
            _cleanup_free_ char *msg =
                xasprintf("conflict: unable to remove image %.80s: it is used by instance %s "
                          "(remove it first, or force)",
                          ref, users[0]);
            res = api_reply_error(req, -EBUSY, msg);
            goto out;
        }
    }
    if (by_name && !gone) {
        r = oci_layout_untag(layout(req), pr.full, &err);
        if (r >= 0)
            json_array_append_new(untagged, json_string(pr.full));
    } else {
        r = oci_layout_untag_digest(layout(req), d.digest, &err);
        strv_foreach (s, names)
            json_array_append_new(untagged, json_string(*s));
        if (r >= 0)
            json_array_append_new(deleted, json_string(d.digest));
    }
    if (r >= 0 && gone) {
        r = gc(req, NULL, &err);
        if (r == -EBUSY) { /* a pull runs: its blobs must stay; the next prune collects ours */
            tp_err_clear(&err);
            r = 0;
        }
    }
    if (r < 0) {
        res = api_reply_tp_err(req, &err);
        goto out;
    }
    log_info("op=rmi image '%s' removed (%s)", ref, d.digest);
    res =
        api_reply_json(req, 200, json_pack("{s:O,s:O}", "untagged", untagged, "deleted", deleted));
out:
    json_decref(untagged);
    json_decref(deleted);
    strv_free(names);
    strv_free(users);
    oci_ref_free(&pr);
    oci_desc_done(&d);
    return res;
}

enum MHD_Result
api_h_images_prune(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct oci_image *v = NULL;
    size_t n = 0;
    bool all;
    uint64_t freed = 0, freed2 = 0;
    json_t *deleted;

    if (api_req_query_bool(req, "all", &all, &err) < 0)
        return api_reply_tp_err(req, &err);
    if (oci_layout_init(layout(req), &err) < 0 || oci_layout_list(layout(req), &v, &n, &err) < 0)
        return api_reply_tp_err(req, &err);
    deleted = json_array();
    for (size_t i = 0; i < n; i++) {
        char **users;
        if (v[i].ref_name && !all)
            continue;
        users = image_users(req, v[i].manifest.digest);
        bool used = users[0] != NULL;
        strv_free(users);
        if (used)
            continue;
        int r = v[i].ref_name ? oci_layout_untag(layout(req), v[i].ref_name, NULL)
                              : oci_layout_untag_digest(layout(req), v[i].manifest.digest, NULL);
        if (r < 0)
            continue;
        json_array_append_new(deleted, json_pack("{s:s?,s:s}", "untagged", v[i].ref_name, "deleted",
                                                 v[i].manifest.digest));
    }
    oci_images_free(v, n);
    /* The images above are untagged already: a pull or load that runs now (EBUSY) keeps the
     * blobs for the next prune, as rmi does, rather than failing a prune that did its part. */
    int r = gc(req, &freed, &err);
    if (r >= 0)
        r = oci_layout_clear_ingest(layout(req), &freed2, &err);
    if (r == -EBUSY) {
        tp_err_clear(&err);
        r = 0;
    }
    if (r < 0) {
        json_decref(deleted);
        return api_reply_tp_err(req, &err);
    }
    return api_reply_json(req, 200,
                          json_pack("{s:o,s:I}", "images_deleted", deleted, "space_reclaimed",
                                    (json_int_t)(freed + freed2)));
}

/* ---- pull ------------------------------------------------------------------------------- */

struct pull_task {
    char *ref;
    char *layout;
    struct oci_registry_conf conf;
    int wfd; /* the stream's write end: lines for the client */
};

static void
emit(struct pull_task *t, json_t *line)
{
    char *s = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (!s)
        return;
    char *text = xasprintf("%s\n", s);
    free(s);
    /* a departed client: EPIPE, ignored; the pull goes on and its blobs stay for the next */
    (void)fd_write_all(t->wfd, text, strlen(text));
    free(text);
}

static const char *const progress_status[_OCI_PROGRESS_MAX] = {
    [OCI_PROGRESS_EXISTS] = "Already exists",      [OCI_PROGRESS_WAITING] = "Waiting",
    [OCI_PROGRESS_DOWNLOADING] = "Downloading",    [OCI_PROGRESS_VERIFYING] = "Verifying Checksum",
    [OCI_PROGRESS_COMPLETE] = "Download complete",
};

static void
pull_progress(const struct oci_progress *p, void *ud)
{
    struct pull_task *t = ud;
    char id[13];

    snprintf(id, sizeof(id), "%s", oci_digest_hex(p->digest) ? oci_digest_hex(p->digest) : "");
    emit(t, json_pack("{s:s,s:s,s:s,s:{s:I,s:I},s:I}", "id", id, "digest", p->digest, "status",
                      progress_status[p->kind], "progress", "current", (json_int_t)p->current,
                      "total", (json_int_t)p->total, "resumed", (json_int_t)p->resumed));
}

static void *
pull_thread(void *arg)
{
    struct pull_task *t = arg;
    struct tp_err err = { 0 };
    struct oci_pull_result res = { 0 };

    emit(t, json_pack("{s:s,s:s}", "status", "Pulling", "ref", t->ref));
    if (oci_pull(t->layout, &t->conf, t->ref, pull_progress, t, &res, &err) < 0) {
        struct api_status st = api_errmap(err.code);
        log_warn("op=pull pull '%s': %s", t->ref, tp_err_msg(&err));
        emit(t, json_pack("{s:s,s:s}", "error", tp_err_msg(&err), "code", st.code));
    } else {
        _cleanup_free_ char *status =
            xasprintf("%s for %s",
                      res.up_to_date ? "Image is up to date" : "Downloaded newer image", res.ref);
        log_info("op=pull pulled '%s' (%s)", res.ref, res.digest);
        emit(t, json_pack("{s:s,s:s,s:s,s:b}", "status", status, "ref", res.ref, "digest",
                          res.digest, "up_to_date", res.up_to_date));
    }
    oci_pull_result_done(&res);
    tp_err_clear(&err);
    close(t->wfd);
    free(t->ref);
    free(t->layout);
    free(t);
    return NULL;
}

struct pull_stream {
    int rfd;
    int stop_fd; /* borrowed: readable once the server shuts down */
};

static ssize_t
pull_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct pull_stream *st = cls;
    (void)pos;
    for (;;) {
        /* a shutdown does not wait for a long pull: the stream ends without a result line
         * (what was verified stays for the next pull) */
        struct pollfd p[2] = {
            { .fd = st->rfd, .events = POLLIN },
            { .fd = st->stop_fd, .events = POLLIN },
        };
        if (poll(p, st->stop_fd >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (!(p[0].revents & (POLLIN | POLLHUP)) && (p[1].revents & POLLIN))
            return MHD_CONTENT_READER_END_OF_STREAM;
        ssize_t n = read(st->rfd, buf, max);
        if (n > 0)
            return n;
        if (n == 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (errno != EINTR)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void
pull_stream_free(void *cls)
{
    struct pull_stream *st = cls;
    safe_close(st->rfd);
    free(st);
}

enum MHD_Result
api_h_images_pull(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    json_t *body = NULL, *jr;
    struct oci_ref ref = { 0 };
    struct pull_task *t;
    struct pull_stream *st;
    struct MHD_Response *resp;
    pthread_t th;
    int p[2];

    body = req->body ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    jr = json_object_get(body, "ref");
    if (!json_is_string(jr) || json_object_size(body) != 1) {
        json_decref(body);
        return api_reply_error(req, -EINVAL, "body must be {\"ref\": \"IMAGE[:TAG|@DIGEST]\"}");
    }
    if (oci_ref_parse(json_string_value(jr), &ref, &err) < 0) {
        json_decref(body);
        return api_reply_tp_err(req, &err);
    }
    json_decref(body);
    if (api_stream_acquire(req, &err) < 0) {
        oci_ref_free(&ref);
        return api_reply_tp_err(req, &err);
    }
    if (pipe2(p, O_CLOEXEC) < 0) {
        oci_ref_free(&ref);
        return api_reply_error(req, -errno, "create a pipe");
    }
    t = xnew(struct pull_task, 1);
    t->ref = xstrdup(ref.full);
    t->layout = xstrdup(layout(req));
    t->conf = images_conf;
    t->wfd = p[1];
    oci_ref_free(&ref);
    st = xnew(struct pull_stream, 1);
    st->rfd = p[0];
    st->stop_fd = api_req_stop_fd(req);
    if (pthread_create(&th, NULL, pull_thread, t) != 0) {
        close(p[1]);
        free(t->ref);
        free(t->layout);
        free(t);
        pull_stream_free(st);
        return api_reply_error(req, -EAGAIN, "start the pull");
    }
    pthread_detach(th);
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, pull_reader, st,
                                             pull_stream_free);
    if (!resp)
        abort();
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
    return api_reply_stream(req, resp);
}

/* ---- load ------------------------------------------------------------------------------- */

struct load_state {
    int fd;       /* the spooled upload */
    char *path;   /* its name in ingest/ */
    bool is_json; /* Content-Type: application/json: {"path": DIR} */
    char *json;
    size_t json_len;
    bool failed;
    struct tp_err err;
};

static enum MHD_Result
load_begin(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    const char *ct =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    struct load_state *ls = xnew(struct load_state, 1);

    ls->fd = -EBADF;
    ls->is_json = ct && strncmp(ct, "application/json", 16) == 0;
    if (!ls->is_json) {
        if (oci_layout_init(layout(req), &err) < 0) {
            free(ls);
            return api_reply_tp_err(req, &err);
        }
        ls->path = xasprintf("%s/ingest/upload-XXXXXX", layout(req));
        ls->fd = mkostemp(ls->path, O_CLOEXEC);
        if (ls->fd < 0) {
            int r = -errno;
            free(ls->path);
            free(ls);
            return api_reply_error(req, r, "create a spool file for the upload");
        }
        unlink(ls->path); /* nothing left behind, whatever happens */
    }
    req->upload = ls;
    return MHD_YES;
}

static enum MHD_Result
load_data(struct api_req *req, const char *data, size_t len)
{
    struct load_state *ls = req->upload;
    int r;

    if (ls->failed)
        return MHD_YES;
    if (ls->is_json) {
        if (ls->json_len + len > 65536) {
            ls->failed = true;
            tp_err_set(&ls->err, -EMSGSIZE, "request body over 64 KiB");
            return MHD_YES;
        }
        ls->json = xrealloc(ls->json, ls->json_len + len + 1);
        memcpy(ls->json + ls->json_len, data, len);
        ls->json_len += len;
        ls->json[ls->json_len] = '\0';
        return MHD_YES;
    }
    r = fd_write_all(ls->fd, data, len);
    if (r < 0) {
        ls->failed = true;
        tp_err_errno(&ls->err, r, "spool the upload");
    }
    return MHD_YES;
}

static enum MHD_Result
load_end(struct api_req *req)
{
    struct load_state *ls = req->upload;
    struct oci_load_result res = { 0 };
    int r;

    if (ls->failed)
        return api_reply_tp_err(req, &ls->err);
    if (ls->is_json) {
        json_t *j = ls->json ? json_loadb(ls->json, ls->json_len, 0, NULL) : NULL;
        json_t *p = json_object_get(j, "path");
        if (!json_is_string(p) || json_object_size(j) != 1 || json_string_value(p)[0] != '/') {
            json_decref(j);
            return api_reply_error(req, -EINVAL,
                                   "body must be {\"path\": \"/ABSOLUTE/OCI/LAYOUT/DIR\"}");
        }
        r = oci_load_layout_dir(layout(req), json_string_value(p), &res, &ls->err);
        json_decref(j);
    } else {
        if (lseek(ls->fd, 0, SEEK_SET) < 0)
            return api_reply_error(req, -errno, "rewind the spooled upload");
        r = oci_load_tar_fd(layout(req), ls->fd, &res, &ls->err);
    }
    if (r < 0) {
        tp_err_wrap(&ls->err, "load");
        return api_reply_tp_err(req, &ls->err);
    }
    /* files of the archive no image references (docker save's per-layer json, a layout's
     * stray blobs) went into blobs/ as they streamed: collect them now */
    if (oci_layout_gc(layout(req), NULL, NULL) < 0)
        log_debug("op=load gc skipped: a pull or load runs");
    json_t *names = json_array(), *ids = json_array();
    strv_foreach (s, res.names)
        json_array_append_new(names, json_string(*s));
    strv_foreach (s, res.images)
        json_array_append_new(ids, json_string(*s));
    oci_load_result_done(&res);
    log_info("op=load loaded %zu named and %zu unnamed images", json_array_size(names),
             json_array_size(ids));
    return api_reply_json(req, 200, json_pack("{s:o,s:o}", "loaded", names, "images", ids));
}

static void
load_release(struct api_req *req)
{
    struct load_state *ls = req->upload;
    if (!ls)
        return;
    safe_close(ls->fd);
    free(ls->path);
    free(ls->json);
    tp_err_clear(&ls->err);
    free(ls);
    req->upload = NULL;
}

const struct api_upload_ops api_images_load_ops = {
    .begin = load_begin,
    .data = load_data,
    .end = load_end,
    .release = load_release,
};
