/* A pull: manifest (an index resolved to linux/amd64), then config and layers downloaded by a
 * few threads at once, then the tag; nothing reaches blobs/ unverified. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "oci-internal.h"
#include "util/failpoint.h"
#include "util/xalloc.h"

#define PULL_THREADS 3

void
oci_pull_result_done(struct oci_pull_result *r)
{
    if (!r)
        return;
    free(r->ref);
    free(r->digest);
    free(r->index_digest);
    *r = (struct oci_pull_result){ 0 };
}

static void
crash_point(const char *name)
{
    if (failpoint(name) == FAILPOINT_CRASH)
        raise(SIGKILL);
}

struct pull_job {
    struct oci_reg *g;
    const char *layout_dir;
    const struct oci_desc *blobs;
    size_t n;
    size_t next; /* guarded by lock */
    bool failed;
    pthread_mutex_t lock;
    oci_progress_fn cb;
    void *ud;
    struct tp_err err; /* the first failure */
};

static void
job_progress(const struct oci_progress *p, void *ud)
{
    struct pull_job *j = ud;
    if (!j->cb)
        return;
    pthread_mutex_lock(&j->lock);
    j->cb(p, j->ud);
    pthread_mutex_unlock(&j->lock);
}

static void *
pull_worker(void *arg)
{
    struct pull_job *j = arg;

    for (;;) {
        struct tp_err e = { 0 };
        size_t i;
        pthread_mutex_lock(&j->lock);
        if (j->failed || j->next >= j->n) {
            pthread_mutex_unlock(&j->lock);
            return NULL;
        }
        i = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (oci_reg_blob(j->g, &j->blobs[i], j->layout_dir, job_progress, j, &e) < 0) {
            pthread_mutex_lock(&j->lock);
            if (!j->failed) {
                j->failed = true;
                tp_err_move(&j->err, &e);
            }
            pthread_mutex_unlock(&j->lock);
            tp_err_clear(&e);
            return NULL;
        }
        crash_point("pull.blob-committed");
    }
}

/* The blobs still missing must fit in the store's free space: the registry's sizes bound each
 * download (a longer blob is dropped), so a pull refused here never fills the disk that
 * instances and snapshots share. Unknown free space lets the writes tell. */
static int
check_space(const char *layout_dir, const struct oci_desc *blobs, size_t n, struct tp_err *err)
{
    struct statvfs sv;
    uint64_t need = 0, avail;

    for (size_t i = 0; i < n; i++) {
        const char *hex = oci_digest_hex(blobs[i].digest);
        uint64_t sz = (uint64_t)blobs[i].size;
        struct stat st;
        if (oci_blob_exists(layout_dir, blobs[i].digest))
            continue;
        /* what an interrupted pull kept is resumed, not fetched again */
        _cleanup_free_ char *partial =
            hex ? xasprintf("%s/ingest/%s.partial", layout_dir, hex) : NULL;
        if (partial && stat(partial, &st) == 0 && (uint64_t)st.st_size <= sz)
            sz -= (uint64_t)st.st_size;
        need = need > UINT64_MAX - sz ? UINT64_MAX : need + sz;
    }
    if (need == 0 || statvfs(layout_dir, &sv) < 0)
        return 0;
    avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (need > avail)
        return tp_err_errno(err, -ENOSPC, "download %llu bytes of blobs with %llu free in '%s'",
                            (unsigned long long)need, (unsigned long long)avail, layout_dir);
    return 0;
}

/* Download blobs[0..n) with up to PULL_THREADS at once. */
static int
fetch_blobs(struct oci_reg *g, const char *layout_dir, const struct oci_desc *blobs, size_t n,
            oci_progress_fn cb, void *ud, struct tp_err *err)
{
    struct pull_job j = {
        .g = g, .layout_dir = layout_dir, .blobs = blobs, .n = n, .cb = cb, .ud = ud
    };
    pthread_t th[PULL_THREADS];
    size_t started = 0;

    pthread_mutex_init(&j.lock, NULL);
    for (size_t i = 0; cb && i < n; i++)
        if (!oci_blob_exists(layout_dir, blobs[i].digest))
            cb(&(struct oci_progress){ .digest = blobs[i].digest,
                                       .kind = OCI_PROGRESS_WAITING,
                                       .total = blobs[i].size },
               ud);
    for (size_t t = 0; t < PULL_THREADS && t < n; t++) {
        if (pthread_create(&th[t], NULL, pull_worker, &j) != 0)
            break;
        started++;
    }
    if (started == 0 && n > 0)
        pull_worker(&j);
    for (size_t t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    pthread_mutex_destroy(&j.lock);
    if (j.failed) {
        tp_err_move(err, &j.err);
        return err ? err->code : -EIO;
    }
    return 0;
}

int
oci_pull(const char *layout_dir, const struct oci_registry_conf *conf, const char *refstr,
         oci_progress_fn cb, void *ud, struct oci_pull_result *ret, struct tp_err *err)
{
    _cleanup_(oci_reg_freep) struct oci_reg *g = NULL;
    _cleanup_free_ char *body = NULL, *mt = NULL, *digest = NULL, *index_digest = NULL;
    _cleanup_close_ int lock = -EBADF;
    struct oci_ref ref = { 0 };
    struct oci_manifest m = { 0 };
    struct oci_desc *blobs = NULL;
    struct oci_desc mdesc = { 0 };
    size_t len = 0;
    bool up_to_date = true;
    int r;

    r = oci_ref_parse(refstr, &ref, err);
    if (r < 0)
        return r;
    r = oci_layout_init(layout_dir, err);
    if (r < 0)
        goto out;
    lock = oci_layout_pull_lock(layout_dir, err);
    if (lock < 0) {
        r = lock;
        goto out;
    }
    r = oci_reg_open(conf, &ref, &g, err);
    if (r < 0)
        goto out;
    r = oci_reg_manifest(g, ref.digest ? ref.digest : ref.tag, &body, &len, &mt, &digest, err);
    if (r < 0) {
        if (r == -ENOENT)
            tp_err_wrap(err, "manifest for %s not found", ref.full);
        goto out;
    }
    if (oci_media_kind(mt) == OCI_KIND_INDEX) {
        struct oci_index ix = { 0 };
        struct oci_desc pick = { 0 };
        r = oci_index_parse(body, len, &ix, err);
        if (r >= 0)
            r = oci_index_select(&ix, "linux", "amd64", &pick, err);
        oci_index_free(&ix);
        if (r < 0)
            goto out;
        if (!oci_blob_exists(layout_dir, digest))
            up_to_date = false;
        r = oci_blob_put(layout_dir, digest, body, len, err);
        if (r < 0)
            goto out;
        index_digest = TAKE_PTR(digest);
        free(body);
        free(mt);
        body = mt = NULL;
        r = oci_reg_manifest(g, pick.digest, &body, &len, &mt, &digest, err);
        oci_desc_done(&pick);
        if (r < 0)
            goto out;
        if (oci_media_kind(mt) != OCI_KIND_MANIFEST) {
            r = tp_err_set(err, -EOPNOTSUPP, "index entry is a '%s', not an image manifest", mt);
            goto out;
        }
    }
    r = oci_manifest_parse(body, len, &m, err);
    if (r < 0)
        goto out;

    blobs = xnew(struct oci_desc, m.n_layers + 1);
    blobs[0] = m.config;
    for (size_t i = 0; i < m.n_layers; i++)
        blobs[i + 1] = m.layers[i];
    for (size_t i = 0; i < m.n_layers + 1; i++)
        if (!oci_blob_exists(layout_dir, blobs[i].digest))
            up_to_date = false;
    r = check_space(layout_dir, blobs, m.n_layers + 1, err);
    if (r < 0)
        goto out;
    r = fetch_blobs(g, layout_dir, blobs, m.n_layers + 1, cb, ud, err);
    if (r < 0)
        goto out;
    /* the manifest last: a manifest blob present means its blobs are too */
    if (!oci_blob_exists(layout_dir, digest))
        up_to_date = false;
    r = oci_blob_put(layout_dir, digest, body, len, err);
    if (r < 0)
        goto out;
    crash_point("pull.before-tag");
    mdesc = (struct oci_desc){ .media_type = mt, .digest = digest, .size = (int64_t)len };
    r = oci_layout_tag(layout_dir, ref.full, &mdesc, index_digest, err);
    if (r < 0)
        goto out;
    *ret = (struct oci_pull_result){
        .ref = xstrdup(ref.full),
        .digest = TAKE_PTR(digest),
        .index_digest = TAKE_PTR(index_digest),
        .up_to_date = up_to_date,
    };
out:
    free(blobs);
    oci_manifest_free(&m);
    oci_ref_free(&ref);
    return r;
}
