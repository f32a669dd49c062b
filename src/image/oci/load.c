/* `load`: images from an OCI layout (a directory, or a tar of one: oci-archive) or a `docker
 * save` tarball into the store. Archive names never become paths: every file is hashed into
 * the store under its content's digest, then the archive's index or manifest.json is read. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "oci-internal.h"
#include "util/failpoint.h"
#include "util/fs.h"
#include "util/xalloc.h"

#define META_MAX     (4u << 20)
#define MANIFEST_MAX (4u << 20)
#define FILES_MAX    65536

void
oci_load_result_done(struct oci_load_result *r)
{
    if (!r)
        return;
    strv_free(r->names);
    strv_free(r->images);
    *r = (struct oci_load_result){ 0 };
}

static void
strv_push(char ***v, char *s)
{
    size_t n = 0;
    while (*v && (*v)[n])
        n++;
    *v = xrealloc(*v, sizeof(char *) * (n + 2));
    (*v)[n] = s;
    (*v)[n + 1] = NULL;
}

static void
json_decref_p(json_t **j)
{
    if (*j)
        json_decref(*j);
}
#define _cleanup_json_ _cleanup_(json_decref_p)

/* The name an OCI index entry gives its image: io.containerd.image.name, else ref.name when it
 * is a reference rather than a bare tag. NULL when none. Caller frees. */
static char *
entry_name(json_t *e, struct tp_err *err)
{
    json_t *a = json_object_get(e, "annotations");
    json_t *n = json_object_get(a, "io.containerd.image.name");
    struct oci_ref r = { 0 };
    const char *s;
    char *full;

    if (!json_is_string(n))
        n = json_object_get(a, OCI_ANNOT_REF_NAME);
    if (!json_is_string(n))
        return NULL;
    s = json_string_value(n);
    if (!strpbrk(s, "/:@"))
        return NULL; /* a bare tag names no repository: the image loads without a name */
    if (oci_ref_parse(s, &r, err) < 0)
        return NULL;
    full = TAKE_PTR(r.full);
    oci_ref_free(&r);
    return full;
}

/* Check manifest desc's blobs are all in the store. */
static int
check_image(const char *dir, const struct oci_desc *md, struct tp_err *err)
{
    _cleanup_free_ char *data = NULL;
    struct oci_manifest m = { 0 };
    size_t len;
    int r;

    r = oci_blob_read(dir, md->digest, MANIFEST_MAX, &data, &len, err);
    if (r < 0)
        return tp_err_wrap(err, "image manifest");
    r = oci_manifest_parse(data, len, &m, err);
    if (r < 0)
        return r;
    if (!oci_blob_exists(dir, m.config.digest))
        r = tp_err_set(err, -ENOENT, "the archive lacks config blob '%s'", m.config.digest);
    for (size_t i = 0; r >= 0 && i < m.n_layers; i++)
        if (!oci_blob_exists(dir, m.layers[i].digest))
            r = tp_err_set(err, -ENOENT, "the archive lacks layer blob '%s'", m.layers[i].digest);
    oci_manifest_free(&m);
    return r;
}

/* Tag the images an OCI index.json names (its blobs are in the store already). */
static int
load_oci_index(const char *dir, const char *text, size_t len, struct oci_load_result *res,
               struct tp_err *err)
{
    _cleanup_json_ json_t *j = NULL;
    json_t *ms, *e;
    size_t i;
    int r;

    j = json_loadb(text, len, 0, NULL);
    ms = json_object_get(j, "manifests");
    if (!json_is_array(ms))
        return tp_err_set(err, -EINVAL, "index.json has no manifests array");
    if (json_array_size(ms) == 0)
        return tp_err_set(err, -EINVAL, "index.json lists no image");
    json_array_foreach(ms, i, e)
    {
        _cleanup_free_ char *name = NULL, *dump = json_dumps(e, JSON_COMPACT);
        _cleanup_free_ char *data = NULL, *index_digest = NULL;
        struct oci_desc d = { 0 }, pick = { 0 };
        struct oci_index ix = { 0 };
        size_t dlen;

        {
            /* reuse the descriptor parser through a one-entry index */
            _cleanup_free_ char *one =
                xasprintf("{\"schemaVersion\":2,\"manifests\":[%s]}", dump ? dump : "null");
            r = oci_index_parse(one, strlen(one), &ix, err);
            if (r < 0)
                return tp_err_wrap(err, "index.json entry %zu", i);
            oci_desc_copy(&d, &ix.manifests[0]);
            oci_index_free(&ix);
        }
        if (oci_media_kind(d.media_type) == OCI_KIND_INDEX) {
            r = oci_blob_read(dir, d.digest, MANIFEST_MAX, &data, &dlen, err);
            if (r >= 0)
                r = oci_index_parse(data, dlen, &ix, err);
            if (r >= 0)
                r = oci_index_select(&ix, "linux", "amd64", &pick, err);
            oci_index_free(&ix);
            if (r < 0) {
                oci_desc_done(&d);
                return r;
            }
            index_digest = TAKE_PTR(d.digest);
            oci_desc_done(&d);
            d = pick;
        } else if (oci_media_kind(d.media_type) != OCI_KIND_MANIFEST) {
            r = tp_err_set(err, -EOPNOTSUPP, "unsupported media type '%s' in index.json",
                           d.media_type);
            oci_desc_done(&d);
            return r;
        }
        r = check_image(dir, &d, err);
        if (r >= 0) {
            name = entry_name(e, err);
            if (!name && err && err->code) {
                r = err->code;
                tp_err_wrap(err, "index.json entry %zu", i);
            }
        }
        if (r >= 0)
            r = oci_layout_tag(dir, name, &d, index_digest, err);
        if (r >= 0)
            strv_push(name ? &res->names : &res->images, xstrdup(name ? name : d.digest));
        oci_desc_done(&d);
        if (r < 0)
            return r;
    }
    return 0;
}

struct file_map {
    char **names, **digests;
    int64_t *sizes;
    size_t n;
};

static void
file_map_done(struct file_map *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->names[i]);
        free(m->digests[i]);
    }
    free(m->names);
    free(m->digests);
    free(m->sizes);
}

static const char *
file_map_get(const struct file_map *m, const char *name, int64_t *ret_size)
{
    if (strncmp(name, "./", 2) == 0)
        name += 2;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0) {
            if (ret_size)
                *ret_size = m->sizes[i];
            return m->digests[i];
        }
    return NULL;
}

/* The archive path a link member names: a hard link's target as written, a symlink's resolved
 * against the member's directory ("a/layer.tar" -> "../b/layer.tar" is "b/layer.tar"). NULL for
 * an absolute target or one that climbs out of the archive. Caller frees. */
static char *
link_target(const char *name, const char *target, bool symlink)
{
    _cleanup_free_ char *joined = NULL;
    const char *slash = strrchr(name, '/');
    char *out, *o, *p, *save = NULL;

    if (!target || !*target || target[0] == '/')
        return NULL;
    joined = symlink && slash ? xasprintf("%.*s/%s", (int)(slash - name), name, target)
                              : xstrdup(target);
    out = xmalloc(strlen(joined) + 1);
    o = out;
    for (p = strtok_r(joined, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (strcmp(p, ".") == 0)
            continue;
        if (strcmp(p, "..") == 0) {
            if (o == out) {
                free(out);
                return NULL;
            }
            while (o > out && o[-1] != '/')
                o--;
            if (o > out)
                o--; /* the separator before the dropped component */
            continue;
        }
        if (o > out)
            *o++ = '/';
        o = stpcpy(o, p);
    }
    *o = '\0';
    if (!*out) {
        free(out);
        return NULL;
    }
    return out;
}

/* Names that are links to other members (docker save writes a layer it already wrote as a
 * symlink to the first copy) get that member's blob, following chains a few steps. */
static void
file_map_add_links(struct file_map *fm, char **names, char **targets, size_t n)
{
    for (int round = 0; round < 8; round++) {
        bool added = false;
        for (size_t i = 0; i < n; i++) {
            int64_t size = 0;
            const char *d;
            if (!names[i] || file_map_get(fm, names[i], NULL))
                continue;
            d = file_map_get(fm, targets[i], &size);
            if (!d)
                continue;
            fm->names = xrealloc(fm->names, sizeof(char *) * (fm->n + 1));
            fm->digests = xrealloc(fm->digests, sizeof(char *) * (fm->n + 1));
            fm->sizes = xrealloc(fm->sizes, sizeof(int64_t) * (fm->n + 1));
            fm->names[fm->n] = xstrdup(names[i]);
            fm->digests[fm->n] = xstrdup(d);
            fm->sizes[fm->n] = size;
            fm->n++;
            added = true;
        }
        if (!added)
            break;
    }
}

/* First bytes of a stored blob are gzip's magic. */
static bool
blob_is_gzip(const char *dir, const char *digest)
{
    _cleanup_free_ char *p = oci_blob_path(dir, digest);
    _cleanup_close_ int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -EBADF;
    unsigned char b[2];
    return fd >= 0 && read(fd, b, 2) == 2 && b[0] == 0x1f && b[1] == 0x8b;
}

void
oci_save_images_free(struct oci_save_image *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].config);
        strv_free(v[i].layers);
        strv_free(v[i].repo_tags);
    }
    free(v);
}

int
oci_docker_save_parse(const char *text, size_t len, struct oci_save_image **ret, size_t *ret_n,
                      struct tp_err *err)
{
    _cleanup_json_ json_t *j = json_loadb(text, len, 0, NULL);
    struct oci_save_image *v;
    json_t *e;
    size_t i, n;

    if (!json_is_array(j) || json_array_size(j) == 0 || json_array_size(j) > 4096)
        return tp_err_set(err, -EINVAL, "manifest.json is not a non-empty array");
    n = json_array_size(j);
    v = xnew(struct oci_save_image, n);
    json_array_foreach(j, i, e)
    {
        json_t *cfg = json_object_get(e, "Config"), *layers = json_object_get(e, "Layers");
        json_t *tags = json_object_get(e, "RepoTags"), *x;
        size_t k;
        if (!json_is_string(cfg) || !json_is_array(layers) ||
            (tags && !json_is_null(tags) && !json_is_array(tags))) {
            oci_save_images_free(v, n);
            return tp_err_set(err, -EINVAL,
                              "manifest.json entry %zu lacks Config or Layers, or has a bad "
                              "RepoTags",
                              i);
        }
        v[i].config = xstrdup(json_string_value(cfg));
        v[i].layers = xnew(char *, json_array_size(layers) + 1);
        v[i].repo_tags = xnew(char *, json_array_size(tags) + 1);
        json_array_foreach(layers, k, x)
        {
            if (!json_is_string(x)) {
                oci_save_images_free(v, n);
                return tp_err_set(err, -EINVAL, "manifest.json entry %zu: a layer is not a name",
                                  i);
            }
            v[i].layers[k] = xstrdup(json_string_value(x));
        }
        size_t t = 0;
        json_array_foreach(tags, k, x) if (json_is_string(x)) v[i].repo_tags[t++] =
            xstrdup(json_string_value(x));
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* docker save: manifest.json's entries become OCI manifests over the stored files. */
static int
load_docker_save(const char *dir, const char *text, size_t len, const struct file_map *fm,
                 struct oci_load_result *res, struct tp_err *err)
{
    struct oci_save_image *v = NULL;
    size_t n = 0;
    int r = oci_docker_save_parse(text, len, &v, &n, err);

    for (size_t i = 0; r >= 0 && i < n; i++) {
        _cleanup_json_ json_t *m = NULL;
        _cleanup_free_ char *text_m = NULL, *md = NULL;
        int64_t csize = 0;
        const char *cd = file_map_get(fm, v[i].config, &csize);

        if (!cd) {
            r = tp_err_set(err, -ENOENT, "the archive lacks '%.200s'", v[i].config);
            break;
        }
        m = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:[]}", "schemaVersion", 2, "mediaType",
                      OCI_MT_MANIFEST, "config", "mediaType", OCI_MT_CONFIG, "digest", cd, "size",
                      (json_int_t)csize, "layers");
        strv_foreach (l, v[i].layers) {
            int64_t lsize = 0;
            const char *ld = file_map_get(fm, *l, &lsize);
            if (!ld) {
                r = tp_err_set(err, -ENOENT, "the archive lacks layer '%.200s'", *l);
                break;
            }
            json_array_append_new(
                json_object_get(m, "layers"),
                json_pack("{s:s,s:s,s:I}", "mediaType",
                          blob_is_gzip(dir, ld) ? OCI_MT_LAYER_GZIP : OCI_MT_LAYER_TAR, "digest",
                          ld, "size", (json_int_t)lsize));
        }
        if (r < 0)
            break;
        text_m = json_dumps(m, JSON_COMPACT);
        md = oci_digest_of(text_m, strlen(text_m));
        r = oci_blob_put(dir, md, text_m, strlen(text_m), err);
        if (r < 0)
            break;
        struct oci_desc d = { .media_type = (char *)OCI_MT_MANIFEST,
                              .digest = md,
                              .size = (int64_t)strlen(text_m) };
        bool named = false;
        strv_foreach (t, v[i].repo_tags) {
            struct oci_ref ref = { 0 };
            r = oci_ref_parse(*t, &ref, err);
            if (r < 0) {
                tp_err_wrap(err, "manifest.json RepoTags");
                break;
            }
            r = oci_layout_tag(dir, ref.full, &d, NULL, err);
            if (r >= 0)
                strv_push(&res->names, xstrdup(ref.full));
            oci_ref_free(&ref);
            if (r < 0)
                break;
            named = true;
        }
        if (r >= 0 && !named) {
            r = oci_layout_tag(dir, NULL, &d, NULL, err);
            if (r >= 0)
                strv_push(&res->images, xstrdup(md));
        }
    }
    oci_save_images_free(v, n);
    return r;
}

int
oci_load_tar_fd(const char *dir, int fd, struct oci_load_result *ret, struct tp_err *err)
{
    _cleanup_close_ int lock = -EBADF;
    _cleanup_free_ char *index = NULL, *manifest = NULL;
    size_t index_len = 0, manifest_len = 0;
    struct file_map fm = { 0 };
    char **link_names = NULL, **link_targets = NULL;
    size_t n_links = 0;
    struct oci_load_result res = { 0 };
    struct archive *a;
    struct archive_entry *ae;
    int r = oci_layout_init(dir, err);

    if (r < 0)
        return r;
    lock = oci_layout_pull_lock(dir, err);
    if (lock < 0)
        return lock;
    a = archive_read_new();
    archive_read_support_format_tar(a);
    archive_read_support_filter_all(a);
    if (archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK) {
        r = tp_err_set(err, -EINVAL, "read archive: %s", archive_error_string(a));
        goto out;
    }
    for (;;) {
        int ar = archive_read_next_header(a, &ae);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar < ARCHIVE_WARN) {
            r = tp_err_set(err, -EINVAL, "read archive: %s", archive_error_string(a));
            goto out;
        }
        const char *name = archive_entry_pathname(ae);
        const char *hard = archive_entry_hardlink(ae);
        bool is_symlink = archive_entry_filetype(ae) == AE_IFLNK;
        if (!name || (!hard && !is_symlink && archive_entry_filetype(ae) != AE_IFREG))
            continue;
        if (strncmp(name, "./", 2) == 0)
            name += 2;
        if (fm.n + n_links >= FILES_MAX) {
            r = tp_err_set(err, -EINVAL, "archive has more than %d files", FILES_MAX);
            goto out;
        }
        if (hard || is_symlink) {
            /* a hard link carries no data of its own: the member it names does */
            if (hard && strncmp(hard, "./", 2) == 0)
                hard += 2;
            char *t = link_target(name, hard ? hard : archive_entry_symlink(ae), !hard);
            if (!t)
                continue;
            link_names = xrealloc(link_names, sizeof(char *) * (n_links + 1));
            link_targets = xrealloc(link_targets, sizeof(char *) * (n_links + 1));
            link_names[n_links] = xstrdup(name);
            link_targets[n_links++] = t;
            continue;
        }
        bool is_index = strcmp(name, "index.json") == 0;
        bool is_manifest = strcmp(name, "manifest.json") == 0;
        if (strcmp(name, "oci-layout") == 0 || strcmp(name, "repositories") == 0)
            continue; /* nothing of ours to keep */
        if (is_index || is_manifest) {
            /* metadata: kept in memory, never a blob */
            char *buf = NULL;
            size_t blen = 0;
            for (;;) {
                char chunk[1 << 16];
                la_ssize_t n = archive_read_data(a, chunk, sizeof(chunk));
                if (n == 0)
                    break;
                if (n < 0 || blen + (size_t)n > META_MAX) {
                    free(buf);
                    r = tp_err_set(err, -EINVAL, "read archive member '%s': %s", name,
                                   n < 0 ? archive_error_string(a) : "too large");
                    goto out;
                }
                buf = xrealloc(buf, blen + (size_t)n + 1);
                memcpy(buf + blen, chunk, (size_t)n);
                blen += (size_t)n;
                buf[blen] = '\0';
            }
            if (!buf)
                buf = xstrdup("");
            if (is_index) {
                free(index);
                index = buf;
                index_len = blen;
            } else {
                free(manifest);
                manifest = buf;
                manifest_len = blen;
            }
            continue;
        }
        struct oci_ingest *in = NULL;
        r = oci_ingest_open_anon(dir, &in, err);
        if (r < 0)
            goto out;
        for (;;) {
            char chunk[1 << 16];
            la_ssize_t n = archive_read_data(a, chunk, sizeof(chunk));
            if (n == 0)
                break;
            if (n < 0) {
                r = tp_err_set(err, -EINVAL, "read archive member '%.200s': %s", name,
                               archive_error_string(a));
                break;
            }
            r = oci_ingest_write(in, chunk, (size_t)n, err);
            if (r < 0)
                break;
        }
        char *digest = NULL;
        int64_t size = 0;
        if (r >= 0)
            r = oci_ingest_commit_anon(in, &digest, &size, err);
        oci_ingest_close(in, true);
        if (r < 0)
            goto out;
        if (strncmp(name, "blobs/sha256/", 13) == 0 &&
            (strlen(name + 13) != 64 || strcmp(name + 13, digest + 7) != 0)) {
            r = tp_err_set(err, -EIO, "digest mismatch: '%.200s' in the archive hashes to '%s'",
                           name, digest);
            free(digest);
            goto out;
        }
        fm.names = xrealloc(fm.names, sizeof(char *) * (fm.n + 1));
        fm.digests = xrealloc(fm.digests, sizeof(char *) * (fm.n + 1));
        fm.sizes = xrealloc(fm.sizes, sizeof(int64_t) * (fm.n + 1));
        fm.names[fm.n] = xstrdup(name);
        fm.digests[fm.n] = digest;
        fm.sizes[fm.n] = size;
        fm.n++;
    }
    file_map_add_links(&fm, link_names, link_targets, n_links);
    if (failpoint("load.before-tag") == FAILPOINT_CRASH)
        raise(SIGKILL); /* every member in blobs/, nothing tagged */
    if (manifest)
        r = load_docker_save(dir, manifest, manifest_len, &fm, &res, err);
    else if (index)
        r = load_oci_index(dir, index, index_len, &res, err);
    else
        r = tp_err_set(err, -EINVAL,
                       "not an image archive: no index.json (OCI layout) or manifest.json "
                       "(docker save)");
    if (r >= 0) {
        *ret = res;
        res = (struct oci_load_result){ 0 };
    }
out:
    archive_read_free(a);
    file_map_done(&fm);
    for (size_t i = 0; i < n_links; i++) {
        free(link_names[i]);
        free(link_targets[i]);
    }
    free(link_names);
    free(link_targets);
    oci_load_result_done(&res);
    return r;
}

/* Copy one blob from a layout dir into the store, verified while it is copied. */
static int
import_blob(const char *dir, const char *src_dir, const char *digest, int64_t size,
            struct tp_err *err)
{
    _cleanup_free_ char *p = NULL;
    _cleanup_close_ int fd = -EBADF;
    struct oci_ingest *in = NULL;
    char buf[1 << 16];
    ssize_t n;
    int r;

    if (oci_blob_exists(dir, digest))
        return 0;
    p = oci_blob_path(src_dir, digest);
    if (!p)
        return tp_err_set(err, -EINVAL, "invalid digest '%s'", digest);
    fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", p);
    r = oci_ingest_open(dir, digest, size, false, &in, NULL, err);
    if (r < 0)
        return r;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        r = oci_ingest_write(in, buf, (size_t)n, err);
        if (r < 0)
            break;
    }
    if (r >= 0 && n < 0)
        r = tp_err_errno(err, -errno, "read '%s'", p);
    if (r >= 0)
        r = oci_ingest_commit(in, err);
    oci_ingest_close(in, r < 0);
    return r;
}

static int
import_manifest(const char *dir, const char *src_dir, const struct oci_desc *d, int depth,
                struct tp_err *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r;

    if (depth > 2)
        return tp_err_set(err, -EINVAL, "indexes nested too deep");
    r = import_blob(dir, src_dir, d->digest, d->size, err);
    if (r < 0)
        return r;
    r = oci_blob_read(dir, d->digest, MANIFEST_MAX, &data, &len, err);
    if (r < 0)
        return r;
    if (oci_media_kind(d->media_type) == OCI_KIND_INDEX) {
        struct oci_index ix = { 0 };
        struct oci_desc pick = { 0 };
        r = oci_index_parse(data, len, &ix, err);
        if (r >= 0)
            r = oci_index_select(&ix, "linux", "amd64", &pick, err);
        oci_index_free(&ix);
        if (r >= 0)
            r = import_manifest(dir, src_dir, &pick, depth + 1, err);
        oci_desc_done(&pick);
        return r;
    }
    struct oci_manifest m = { 0 };
    r = oci_manifest_parse(data, len, &m, err);
    if (r < 0)
        return r;
    r = import_blob(dir, src_dir, m.config.digest, m.config.size, err);
    for (size_t i = 0; r >= 0 && i < m.n_layers; i++)
        r = import_blob(dir, src_dir, m.layers[i].digest, m.layers[i].size, err);
    oci_manifest_free(&m);
    return r;
}

int
oci_load_layout_dir(const char *dir, const char *src_dir, struct oci_load_result *ret,
                    struct tp_err *err)
{
    _cleanup_close_ int lock = -EBADF;
    _cleanup_free_ char *ip = fs_path_join(src_dir, "index.json"), *text = NULL;
    struct oci_load_result res = { 0 };
    struct oci_index ix = { 0 };
    size_t len;
    int r;

    r = fs_read_file(ip, META_MAX, &text, &len, err);
    if (r < 0)
        return tp_err_wrap(err, "not an OCI layout directory");
    r = oci_layout_init(dir, err);
    if (r < 0)
        return r;
    lock = oci_layout_pull_lock(dir, err);
    if (lock < 0)
        return lock;
    r = oci_index_parse(text, len, &ix, err);
    if (r < 0)
        return tp_err_wrap(err, "'%s'", ip);
    for (size_t i = 0; r >= 0 && i < ix.n; i++)
        r = import_manifest(dir, src_dir, &ix.manifests[i], 0, err);
    oci_index_free(&ix);
    if (r >= 0)
        r = load_oci_index(dir, text, len, &res, err);
    if (r < 0) {
        oci_load_result_done(&res);
        return r;
    }
    *ret = res;
    return 0;
}
