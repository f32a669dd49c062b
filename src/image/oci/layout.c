/* The image store: an OCI image layout (oci-layout, index.json, blobs/sha256) plus ingest/. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oci-internal.h"
#include "oci.h"
#include "util/fs.h"
#include "util/xalloc.h"

#define INDEX_MAX    (16u << 20)
#define MANIFEST_MAX (4u << 20)

static void
json_decref_p(json_t **j)
{
    if (*j)
        json_decref(*j);
}
#define _cleanup_json_ _cleanup_(json_decref_p)

char *
oci_blob_path(const char *layout_dir, const char *digest)
{
    const char *hex = oci_digest_hex(digest);
    return hex ? xasprintf("%s/blobs/sha256/%s", layout_dir, hex) : NULL;
}

bool
oci_blob_exists(const char *layout_dir, const char *digest)
{
    _cleanup_free_ char *p = oci_blob_path(layout_dir, digest);
    return p && fs_exists(p);
}

int
oci_blob_read(const char *layout_dir, const char *digest, size_t max, char **ret_data,
              size_t *ret_len, struct tp_err *err)
{
    _cleanup_free_ char *p = oci_blob_path(layout_dir, digest), *data = NULL, *got = NULL;
    size_t len = 0;
    int r;

    if (!p)
        return tp_err_set(err, -EINVAL, "invalid digest '%s'", digest);
    r = fs_read_file(p, max, &data, &len, err);
    if (r < 0)
        return tp_err_wrap(err, "read blob '%s'", digest);
    got = oci_digest_of(data, len);
    if (strcmp(got, digest) != 0)
        return tp_err_set(err, -EIO, "blob '%s' is corrupt: its content hashes to '%s'", digest,
                          got);
    *ret_data = TAKE_PTR(data);
    if (ret_len)
        *ret_len = len;
    return 0;
}

int
oci_blob_put(const char *layout_dir, const char *digest, const void *data, size_t len,
             struct tp_err *err)
{
    _cleanup_free_ char *p = oci_blob_path(layout_dir, digest);
    _cleanup_free_ char *got = NULL;

    if (!p)
        return tp_err_set(err, -EINVAL, "invalid digest '%s'", digest);
    got = oci_digest_of(data, len);
    if (strcmp(got, digest) != 0)
        return tp_err_set(err, -EIO, "digest mismatch: expected '%s', content hashes to '%s'",
                          digest, got);
    if (fs_exists(p))
        return 0; /* content-addressed: what is there is this content */
    /* a temp file of its own (fs_write_atomic's name is per process: two pulls of one image in
     * torpord's threads would share it), renamed into place; a racing twin's rename puts the
     * same bytes there */
    struct oci_ingest *in = NULL;
    _cleanup_free_ char *put = NULL;
    int r = oci_ingest_open_anon(layout_dir, &in, err);
    if (r >= 0)
        r = oci_ingest_write(in, data, len, err);
    if (r >= 0)
        r = oci_ingest_commit_anon(in, &put, NULL, err);
    oci_ingest_close(in, true);
    return r;
}

int
oci_layout_init(const char *dir, struct tp_err *err)
{
    _cleanup_free_ char *blobs = xasprintf("%s/blobs/sha256", dir);
    _cleanup_free_ char *ingest = xasprintf("%s/ingest", dir);
    _cleanup_free_ char *layout = xasprintf("%s/oci-layout", dir);
    _cleanup_free_ char *index = xasprintf("%s/index.json", dir);
    static const char layout_text[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
    static const char index_text[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[]}";
    int r;

    r = fs_mkdir_p(blobs, 0700, err);
    if (r < 0)
        return r;
    r = fs_mkdir_p(ingest, 0700, err);
    if (r < 0)
        return r;
    if (!fs_exists(layout)) {
        r = fs_write_atomic(layout, layout_text, strlen(layout_text), 0644, err);
        if (r < 0)
            return r;
    }
    if (!fs_exists(index)) {
        r = fs_write_atomic(index, index_text, strlen(index_text), 0644, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* open (creating) path and flock it with op, retrying on EINTR. Returns the fd. */
static int
lock_file(const char *p, int op, struct tp_err *err)
{
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", p);
    while (flock(fd, op) < 0) {
        if (errno != EINTR) {
            int r = -errno;
            close(fd);
            return tp_err_errno(err, r, "lock '%s'", p);
        }
    }
    return fd;
}

/* An exclusive lock on the layout's index for a read-modify-write. Returns the fd. */
static int
lock_index(const char *dir, struct tp_err *err)
{
    _cleanup_free_ char *p = xasprintf("%s/.index.lock", dir);
    return lock_file(p, LOCK_EX, err);
}

static int
index_load(const char *dir, json_t **ret, struct tp_err *err)
{
    _cleanup_free_ char *p = xasprintf("%s/index.json", dir);
    _cleanup_free_ char *data = NULL;
    json_error_t jerr;
    size_t len;
    json_t *j, *ms;
    int r;

    r = fs_read_file(p, INDEX_MAX, &data, &len, err);
    if (r == -ENOENT) {
        tp_err_clear(err);
        *ret =
            json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType", OCI_MT_INDEX, "manifests");
        return 0;
    }
    if (r < 0)
        return r;
    j = json_loadb(data, len, 0, &jerr);
    if (!j)
        return tp_err_set(err, -EIO, "parse '%s': %s", p, jerr.text);
    ms = json_object_get(j, "manifests");
    if (!json_is_object(j) || !json_is_array(ms)) {
        json_decref(j);
        return tp_err_set(err, -EIO, "parse '%s': no manifests array", p);
    }
    *ret = j;
    return 0;
}

static int
index_store(const char *dir, json_t *j, struct tp_err *err)
{
    _cleanup_free_ char *p = xasprintf("%s/index.json", dir);
    _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        return tp_err_set(err, -ENOMEM, "serialize index.json");
    return fs_write_atomic(p, text, strlen(text), 0644, err);
}

static const char *
entry_annotation(json_t *e, const char *key)
{
    json_t *v = json_object_get(json_object_get(e, "annotations"), key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void
oci_image_done(struct oci_image *im)
{
    if (!im)
        return;
    oci_desc_done(&im->manifest);
    free(im->ref_name);
    free(im->index_digest);
    *im = (struct oci_image){ 0 };
}

void
oci_images_free(struct oci_image *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        oci_image_done(&v[i]);
    free(v);
}

int
oci_layout_list(const char *dir, struct oci_image **ret, size_t *ret_n, struct tp_err *err)
{
    _cleanup_json_ json_t *j = NULL;
    struct oci_image *v;
    size_t n = 0;
    json_t *ms;
    int r;

    r = index_load(dir, &j, err);
    if (r < 0)
        return r;
    ms = json_object_get(j, "manifests");
    v = xnew(struct oci_image, json_array_size(ms) + 1);
    for (size_t i = 0; i < json_array_size(ms); i++) {
        json_t *e = json_array_get(ms, i);
        json_t *mt = json_object_get(e, "mediaType"), *dg = json_object_get(e, "digest");
        const char *name = entry_annotation(e, OCI_ANNOT_REF_NAME);
        const char *ixd = entry_annotation(e, OCI_ANNOT_INDEX_DIGEST);
        if (!json_is_string(dg) || !oci_digest_valid(json_string_value(dg)))
            continue; /* not ours to interpret */
        v[n++] = (struct oci_image){
            .manifest = {
                .media_type = xstrdup(json_is_string(mt) ? json_string_value(mt)
                                                         : OCI_MT_MANIFEST),
                .digest = xstrdup(json_string_value(dg)),
                .size = json_integer_value(json_object_get(e, "size")),
            },
            .ref_name = name ? xstrdup(name) : NULL,
            .index_digest = ixd && oci_digest_valid(ixd) ? xstrdup(ixd) : NULL,
        };
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int
oci_layout_tag(const char *dir, const char *ref_name, const struct oci_desc *manifest,
               const char *index_digest, struct tp_err *err)
{
    _cleanup_close_ int lock = -EBADF;
    _cleanup_json_ json_t *j = NULL;
    json_t *ms, *e, *annot;
    size_t i;
    int r;

    if (!oci_digest_valid(manifest->digest))
        return tp_err_set(err, -EINVAL, "invalid digest '%s'", manifest->digest);
    lock = lock_index(dir, err);
    if (lock < 0)
        return lock;
    r = index_load(dir, &j, err);
    if (r < 0)
        return r;
    ms = json_object_get(j, "manifests");
    for (i = 0; i < json_array_size(ms); i++) {
        json_t *old = json_array_get(ms, i);
        const char *n = entry_annotation(old, OCI_ANNOT_REF_NAME);
        if (ref_name && n && strcmp(n, ref_name) == 0)
            break;
        if (!ref_name && json_is_string(json_object_get(old, "digest")) &&
            strcmp(json_string_value(json_object_get(old, "digest")), manifest->digest) == 0)
            return 0; /* an unnamed image already listed (named or not) */
    }
    if (ref_name) {
        /* an unnamed entry of this digest is superseded by the name */
        for (size_t k = 0; k < json_array_size(ms); k++) {
            json_t *old = json_array_get(ms, k);
            json_t *dg = json_object_get(old, "digest");
            if (!entry_annotation(old, OCI_ANNOT_REF_NAME) && json_is_string(dg) &&
                strcmp(json_string_value(dg), manifest->digest) == 0) {
                json_array_remove(ms, k);
                if (i > k)
                    i--;
                break;
            }
        }
    }
    annot = ref_name ? json_pack("{s:s}", OCI_ANNOT_REF_NAME, ref_name) : json_object();
    if (index_digest)
        json_object_set_new(annot, OCI_ANNOT_INDEX_DIGEST, json_string(index_digest));
    e = json_pack("{s:s,s:s,s:I,s:o}", "mediaType", manifest->media_type, "digest",
                  manifest->digest, "size", (json_int_t)manifest->size, "annotations", annot);
    if (!e)
        return tp_err_set(err, -ENOMEM, "build index entry");
    if (i < json_array_size(ms))
        json_array_set_new(ms, i, e);
    else
        json_array_append_new(ms, e);
    return index_store(dir, j, err);
}

int
oci_layout_untag(const char *dir, const char *ref_name, struct tp_err *err)
{
    _cleanup_close_ int lock = -EBADF;
    _cleanup_json_ json_t *j = NULL;
    json_t *ms;
    int r;

    lock = lock_index(dir, err);
    if (lock < 0)
        return lock;
    r = index_load(dir, &j, err);
    if (r < 0)
        return r;
    ms = json_object_get(j, "manifests");
    for (size_t i = 0; i < json_array_size(ms); i++) {
        const char *n = entry_annotation(json_array_get(ms, i), OCI_ANNOT_REF_NAME);
        if (n && strcmp(n, ref_name) == 0) {
            json_array_remove(ms, i);
            return index_store(dir, j, err);
        }
    }
    return tp_err_set(err, -ENOENT, "No such image: %s", ref_name);
}

int
oci_layout_untag_digest(const char *dir, const char *digest, struct tp_err *err)
{
    _cleanup_close_ int lock = -EBADF;
    _cleanup_json_ json_t *j = NULL;
    bool found = false;
    json_t *ms;
    int r;

    lock = lock_index(dir, err);
    if (lock < 0)
        return lock;
    r = index_load(dir, &j, err);
    if (r < 0)
        return r;
    ms = json_object_get(j, "manifests");
    for (size_t i = 0; i < json_array_size(ms);) {
        json_t *dg = json_object_get(json_array_get(ms, i), "digest");
        if (json_is_string(dg) && strcmp(json_string_value(dg), digest) == 0) {
            json_array_remove(ms, i);
            found = true;
        } else {
            i++;
        }
    }
    if (!found)
        return tp_err_set(err, -ENOENT, "No such image: %s", digest);
    return index_store(dir, j, err);
}

static bool
is_hex_prefix(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isdigit((unsigned char)s[n]) && !(s[n] >= 'a' && s[n] <= 'f'))
            return false;
    return n > 0 && n <= 64;
}

/* The config digest of the manifest in blob digest, or NULL when unreadable. */
static char *
config_digest_of(const char *dir, const char *digest)
{
    _cleanup_free_ char *data = NULL;
    struct oci_manifest m = { 0 };
    size_t len;
    char *c;

    if (oci_blob_read(dir, digest, MANIFEST_MAX, &data, &len, NULL) < 0)
        return NULL;
    if (oci_manifest_parse(data, len, &m, NULL) < 0)
        return NULL;
    c = TAKE_PTR(m.config.digest);
    oci_manifest_free(&m);
    return c;
}

int
oci_layout_resolve_full(const char *dir, const char *ref, struct oci_desc *ret_manifest,
                        struct oci_manifest *ret_parsed, char ***ret_names, struct tp_err *err)
{
    struct oci_image *v = NULL;
    struct oci_ref pr = { 0 };
    ssize_t hit = -1;
    size_t n = 0;
    int r;

    r = oci_layout_list(dir, &v, &n, err);
    if (r < 0)
        return r;

    if (strncmp(ref, "sha256:", 7) == 0 && is_hex_prefix(ref + 7)) {
        /* a manifest digest, else an image id (config digest), either possibly abbreviated */
        size_t plen = strlen(ref);
        for (size_t i = 0; i < n && hit < 0; i++)
            if (strncmp(v[i].manifest.digest, ref, plen) == 0)
                hit = (ssize_t)i;
        for (size_t i = 0; i < n && hit < 0; i++) {
            _cleanup_free_ char *c = config_digest_of(dir, v[i].manifest.digest);
            if (c && strncmp(c, ref, plen) == 0)
                hit = (ssize_t)i;
        }
    } else if (oci_ref_parse(ref, &pr, NULL) == 0) {
        for (size_t i = 0; i < n && hit < 0; i++)
            if (v[i].ref_name && strcmp(v[i].ref_name, pr.full) == 0)
                hit = (ssize_t)i;
        if (hit < 0 && pr.digest) {
            /* name@digest also finds an image of that name pulled by tag */
            _cleanup_free_ char *name = oci_ref_name(&pr);
            size_t nl = strlen(name);
            for (size_t i = 0; i < n && hit < 0; i++)
                if (v[i].ref_name && strncmp(v[i].ref_name, name, nl) == 0 &&
                    strchr(":@", v[i].ref_name[nl]) && strcmp(v[i].manifest.digest, pr.digest) == 0)
                    hit = (ssize_t)i;
        }
    }
    if (hit < 0 && is_hex_prefix(ref)) {
        /* a unique image-id prefix; several names of one image are one image */
        _cleanup_free_ char *first = NULL;
        for (size_t i = 0; i < n; i++) {
            _cleanup_free_ char *c = config_digest_of(dir, v[i].manifest.digest);
            if (!c || strncmp(c + 7, ref, strlen(ref)) != 0)
                continue;
            if (first && strcmp(first, c) != 0) {
                oci_ref_free(&pr);
                oci_images_free(v, n);
                return tp_err_set(err, -EINVAL, "multiple IDs found with provided prefix: %s", ref);
            }
            if (!first) {
                first = xstrdup(c);
                hit = (ssize_t)i;
            }
        }
    }
    oci_ref_free(&pr);
    if (hit < 0) {
        oci_images_free(v, n);
        return tp_err_set(err, -ENOENT, "No such image: %s", ref);
    }

    if (ret_parsed) {
        _cleanup_free_ char *data = NULL;
        size_t len;
        r = oci_blob_read(dir, v[hit].manifest.digest, MANIFEST_MAX, &data, &len, err);
        if (r >= 0)
            r = oci_manifest_parse(data, len, ret_parsed, err);
        if (r < 0) {
            oci_images_free(v, n);
            return tp_err_wrap(err, "read manifest of '%s'", ref);
        }
    }
    if (ret_names) {
        char **names = xnew(char *, n + 1);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (v[i].ref_name && strcmp(v[i].manifest.digest, v[hit].manifest.digest) == 0)
                names[k++] = xstrdup(v[i].ref_name);
        *ret_names = names;
    }
    if (ret_manifest)
        oci_desc_copy(ret_manifest, &v[hit].manifest);
    oci_images_free(v, n);
    return 0;
}

int
oci_layout_resolve(const char *dir, const char *ref, struct oci_desc *ret_manifest,
                   struct tp_err *err)
{
    return oci_layout_resolve_full(dir, ref, ret_manifest, NULL, NULL, err);
}

int
oci_layout_pull_lock(const char *dir, struct tp_err *err)
{
    _cleanup_free_ char *p = xasprintf("%s/ingest/.pull.lock", dir);
    return lock_file(p, LOCK_SH, err);
}

/* The exclusive side of the pull lock, not waiting: -EBUSY while a pull runs. */
static int
gc_lock(const char *dir, struct tp_err *err)
{
    _cleanup_free_ char *p = xasprintf("%s/ingest/.pull.lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", p);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        close(fd);
        return tp_err_set(err, r, "a pull or load is in progress; try again when it is done");
    }
    return fd;
}

struct strset {
    char **v;
    size_t n, cap;
};

static void
strset_add(struct strset *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0)
            return;
    if (s->n == s->cap)
        s->v = xrealloc(s->v, sizeof(char *) * (s->cap = s->cap ? s->cap * 2 : 16));
    s->v[s->n++] = xstrdup(x);
}

static bool
strset_has(const struct strset *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0)
            return true;
    return false;
}

static void
strset_done(struct strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

int
oci_layout_gc(const char *dir, uint64_t *ret_freed, struct tp_err *err)
{
    _cleanup_close_ int plock = -EBADF, ilock = -EBADF;
    _cleanup_free_ char *bdir = xasprintf("%s/blobs/sha256", dir);
    struct strset keep = { 0 };
    struct oci_image *v = NULL;
    uint64_t freed = 0;
    struct dirent *de;
    size_t n = 0;
    bool unsure = false;
    DIR *d;
    int r;

    plock = gc_lock(dir, err);
    if (plock < 0)
        return plock;
    ilock = lock_index(dir, err);
    if (ilock < 0)
        return ilock;
    r = oci_layout_list(dir, &v, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *data = NULL;
        struct oci_manifest m = { 0 };
        size_t len;

        strset_add(&keep, v[i].manifest.digest);
        if (v[i].index_digest)
            strset_add(&keep, v[i].index_digest);
        r = oci_blob_read(dir, v[i].manifest.digest, MANIFEST_MAX, &data, &len, NULL);
        if (r < 0 && r != -ENOENT && r != -EINVAL) {
            /* a listed image whose manifest cannot be read (corrupt, or a read error) may
             * reference any blob: collect nothing until it is removed */
            unsure = true;
            continue;
        }
        /* gone, or read but of a kind torpor does not run: it names nothing to keep */
        if (r < 0 || oci_manifest_parse(data, len, &m, NULL) < 0)
            continue;
        strset_add(&keep, m.config.digest);
        for (size_t k = 0; k < m.n_layers; k++)
            strset_add(&keep, m.layers[k].digest);
        oci_manifest_free(&m);
    }
    oci_images_free(v, n);
    if (unsure) {
        strset_done(&keep);
        goto done;
    }

    d = opendir(bdir);
    if (!d) {
        strset_done(&keep);
        if (errno == ENOENT)
            goto done;
        return tp_err_errno(err, -errno, "open '%s'", bdir);
    }
    while ((de = readdir(d))) {
        _cleanup_free_ char *digest = NULL, *p = NULL;
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        digest = xasprintf("sha256:%s", de->d_name);
        if (strset_has(&keep, digest))
            continue;
        p = fs_path_join(bdir, de->d_name);
        if (lstat(p, &st) == 0 && unlink(p) == 0)
            freed += (uint64_t)st.st_size;
    }
    closedir(d);
    strset_done(&keep);
    fs_fsync_dir(bdir, NULL);
done:
    if (ret_freed)
        *ret_freed = freed;
    return 0;
}

int
oci_layout_clear_ingest(const char *dir, uint64_t *ret_freed, struct tp_err *err)
{
    _cleanup_close_ int plock = -EBADF;
    _cleanup_free_ char *idir = xasprintf("%s/ingest", dir);
    uint64_t freed = 0;
    struct dirent *de;
    DIR *d;

    plock = gc_lock(dir, err);
    if (plock < 0)
        return plock;
    d = opendir(idir);
    if (!d) {
        if (errno != ENOENT)
            return tp_err_errno(err, -errno, "open '%s'", idir);
    } else {
        while ((de = readdir(d))) {
            _cleanup_free_ char *p = NULL;
            struct stat st;
            if (de->d_name[0] == '.')
                continue;
            p = fs_path_join(idir, de->d_name);
            if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && unlink(p) == 0)
                freed += (uint64_t)st.st_size;
        }
        closedir(d);
    }
    if (ret_freed)
        *ret_freed = freed;
    return 0;
}

int
oci_layout_clean_tmp(const char *dir, struct tp_err *err)
{
    _cleanup_free_ char *idir = xasprintf("%s/ingest", dir);
    struct dirent *de;
    DIR *d = opendir(dir);

    /* index.json and oci-layout are written through "<name>.tmp.<pid>": a daemon killed
     * between the write and the rename leaves one, which nothing else would remove */
    if (!d)
        return errno == ENOENT ? 0 : tp_err_errno(err, -errno, "open '%s'", dir);
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "index.json.tmp.", 15) != 0 &&
            strncmp(de->d_name, "oci-layout.tmp.", 15) != 0)
            continue;
        _cleanup_free_ char *p = fs_path_join(dir, de->d_name);
        unlink(p);
    }
    closedir(d);

    d = opendir(idir);
    if (!d)
        return errno == ENOENT ? 0 : tp_err_errno(err, -errno, "open '%s'", idir);
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "load-", 5) != 0 && strncmp(de->d_name, "upload-", 7) != 0)
            continue;
        _cleanup_free_ char *p = fs_path_join(idir, de->d_name);
        unlink(p);
    }
    closedir(d);
    return 0;
}
