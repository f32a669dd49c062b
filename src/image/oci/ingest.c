/* Blob ingest: partial files in ingest/, hashed while written, renamed into blobs/ only once
 * their content hashes to their name. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oci-internal.h"
#include "util/fs.h"
#include "util/xalloc.h"

struct oci_ingest {
    char *layout_dir;
    char *digest; /* expected; NULL for an anonymous ingest */
    int64_t size; /* expected; -1 unknown */
    char *path;   /* the partial file */
    int fd;
    EVP_MD_CTX *ctx;
    int64_t have;
};

static int
hash_reset(struct oci_ingest *in, struct tp_err *err)
{
    if (!in->ctx)
        in->ctx = EVP_MD_CTX_new();
    if (!in->ctx || EVP_DigestInit_ex(in->ctx, EVP_sha256(), NULL) != 1)
        return tp_err_set(err, -ENOMEM, "initialise SHA-256");
    in->have = 0;
    return 0;
}

/* Hash what the partial file holds (the verified prefix a resume continues from). */
static int
rehash(struct oci_ingest *in, struct tp_err *err)
{
    char buf[1 << 16];
    ssize_t n;
    int r = hash_reset(in, err);

    if (r < 0)
        return r;
    if (lseek(in->fd, 0, SEEK_SET) < 0)
        return tp_err_errno(err, -errno, "seek '%s'", in->path);
    while ((n = read(in->fd, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return tp_err_errno(err, -errno, "read '%s'", in->path);
        }
        if (in->size >= 0 && in->have + n > in->size)
            return oci_ingest_reset(in, err); /* longer than the blob: not a prefix of it */
        EVP_DigestUpdate(in->ctx, buf, (size_t)n);
        in->have += n;
    }
    return 0;
}

static int
open_partial(struct oci_ingest *in, int flags, struct tp_err *err)
{
    in->fd = open(in->path, flags | O_RDWR | O_CLOEXEC, 0600);
    if (in->fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", in->path);
    /* two pulls of one blob: the second waits, then finds it in blobs/ or resumes */
    while (flock(in->fd, LOCK_EX) < 0)
        if (errno != EINTR)
            return tp_err_errno(err, -errno, "lock '%s'", in->path);
    return 0;
}

int
oci_ingest_open(const char *layout_dir, const char *digest, int64_t size, bool resume,
                struct oci_ingest **ret, int64_t *ret_have, struct tp_err *err)
{
    const char *hex = oci_digest_hex(digest);
    struct oci_ingest *in;
    int r;

    if (!hex)
        return tp_err_set(err, -EINVAL, "invalid digest '%s'", digest);
    in = xnew(struct oci_ingest, 1);
    in->fd = -EBADF;
    in->layout_dir = xstrdup(layout_dir);
    in->digest = xstrdup(digest);
    in->size = size;
    in->path = xasprintf("%s/ingest/%s.partial", layout_dir, hex);
    r = open_partial(in, O_CREAT, err);
    if (r >= 0)
        r = resume ? rehash(in, err) : oci_ingest_reset(in, err);
    if (r < 0) {
        oci_ingest_close(in, false);
        return r;
    }
    *ret = in;
    if (ret_have)
        *ret_have = in->have;
    return 0;
}

int
oci_ingest_open_anon(const char *layout_dir, struct oci_ingest **ret, struct tp_err *err)
{
    struct oci_ingest *in = xnew(struct oci_ingest, 1);
    int r;

    in->layout_dir = xstrdup(layout_dir);
    in->size = -1;
    in->path = xasprintf("%s/ingest/load-XXXXXX", layout_dir);
    in->fd = mkostemp(in->path, O_CLOEXEC);
    if (in->fd < 0) {
        r = tp_err_errno(err, -errno, "create '%s'", in->path);
        oci_ingest_close(in, false);
        return r;
    }
    fchmod(in->fd, 0600);
    r = hash_reset(in, err);
    if (r < 0) {
        oci_ingest_close(in, true);
        return r;
    }
    *ret = in;
    return 0;
}

int
oci_ingest_reset(struct oci_ingest *in, struct tp_err *err)
{
    if (ftruncate(in->fd, 0) < 0 || lseek(in->fd, 0, SEEK_SET) < 0)
        return tp_err_errno(err, -errno, "truncate '%s'", in->path);
    return hash_reset(in, err);
}

int64_t
oci_ingest_have(const struct oci_ingest *in)
{
    return in->have;
}

int
oci_ingest_write(struct oci_ingest *in, const void *buf, size_t len, struct tp_err *err)
{
    int r;

    if (in->size >= 0 && in->have + (int64_t)len > in->size)
        return tp_err_set(err, -EIO, "blob '%s' is larger than its descriptor's %lld bytes",
                          in->digest, (long long)in->size);
    r = fd_write_all(in->fd, buf, len);
    if (r < 0)
        return tp_err_errno(err, r, "write '%s'", in->path);
    EVP_DigestUpdate(in->ctx, buf, len);
    in->have += (int64_t)len;
    return 0;
}

static char *
hash_final(struct oci_ingest *in)
{
    unsigned char md[32];
    unsigned int n = 0;
    char *s = xmalloc(7 + 64 + 1);

    if (EVP_DigestFinal_ex(in->ctx, md, &n) != 1 || n != 32)
        abort();
    memcpy(s, "sha256:", 7);
    for (unsigned i = 0; i < 32; i++)
        snprintf(s + 7 + 2 * i, 3, "%02x", md[i]);
    return s;
}

static int
publish(struct oci_ingest *in, const char *digest, struct tp_err *err)
{
    _cleanup_free_ char *dst = oci_blob_path(in->layout_dir, digest);
    int r;

    if (fsync(in->fd) < 0)
        return tp_err_errno(err, -errno, "fsync '%s'", in->path);
    if (fchmod(in->fd, 0600) < 0)
        return tp_err_errno(err, -errno, "chmod '%s'", in->path);
    r = fs_rename_durable(in->path, dst, err);
    if (r < 0)
        return r;
    free(in->path);
    in->path = NULL; /* nothing left to discard */
    return 0;
}

int
oci_ingest_commit(struct oci_ingest *in, struct tp_err *err)
{
    _cleanup_free_ char *got = NULL;

    if (in->size >= 0 && in->have != in->size) {
        unlink(in->path);
        return tp_err_set(err, -EIO, "blob '%s' is truncated: got %lld of %lld bytes", in->digest,
                          (long long)in->have, (long long)in->size);
    }
    got = hash_final(in);
    if (strcmp(got, in->digest) != 0) {
        unlink(in->path);
        return tp_err_set(err, -EIO, "digest mismatch: blob '%s' hashes to '%s'", in->digest, got);
    }
    return publish(in, in->digest, err);
}

int
oci_ingest_commit_anon(struct oci_ingest *in, char **ret_digest, int64_t *ret_size,
                       struct tp_err *err)
{
    _cleanup_free_ char *got = hash_final(in);
    int r;

    if (oci_blob_exists(in->layout_dir, got)) {
        unlink(in->path);
        free(in->path);
        in->path = NULL;
    } else {
        r = publish(in, got, err);
        if (r < 0)
            return r;
    }
    if (ret_size)
        *ret_size = in->have;
    *ret_digest = TAKE_PTR(got);
    return 0;
}

struct oci_ingest *
oci_ingest_close(struct oci_ingest *in, bool discard)
{
    if (!in)
        return NULL;
    if (discard && in->path)
        unlink(in->path);
    safe_close(in->fd);
    if (in->ctx)
        EVP_MD_CTX_free(in->ctx);
    free(in->layout_dir);
    free(in->digest);
    free(in->path);
    free(in);
    return NULL;
}
