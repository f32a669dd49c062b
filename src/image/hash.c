/* Content keys for the image cache: SHA-256 (libcrypto EVP) over length-prefixed fields. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "image-internal.h"

int
image_hash_init(struct image_hash *h, struct tp_err *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    *h = (struct image_hash){ 0 };
    if (!ctx)
        return tp_err_set(err, -ENOMEM, "allocate SHA-256 context");
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return tp_err_set(err, -EIO, "initialise SHA-256");
    }
    h->ctx = ctx;
    return 0;
}

static void
update(struct image_hash *h, const void *data, size_t len)
{
    if (!h->ctx || h->failed)
        return;
    if (len > 0 && EVP_DigestUpdate(h->ctx, data, len) != 1)
        h->failed = true; /* reported once, by image_hash_final() */
}

void
image_hash_u64(struct image_hash *h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    update(h, b, sizeof(b));
}

void
image_hash_bytes(struct image_hash *h, const void *data, size_t len)
{
    image_hash_u64(h, len);
    update(h, data, len);
}

void
image_hash_str(struct image_hash *h, const char *s)
{
    image_hash_bytes(h, s, strlen(s));
}

int
image_hash_fd(struct image_hash *h, int fd, uint64_t size)
{
    char buf[65536];
    uint64_t done = 0;

    image_hash_u64(h, size);
    while (done < size) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* the file shrank while we read it */
        if ((uint64_t)n > size - done)
            n = (ssize_t)(size - done);
        update(h, buf, (size_t)n);
        done += (uint64_t)n;
    }
    return 0;
}

void
image_hash_done(struct image_hash *h)
{
    if (h && h->ctx) {
        EVP_MD_CTX_free(h->ctx);
        h->ctx = NULL;
    }
}

int
image_hash_final(struct image_hash *h, char ret_hex[IMAGE_HEX_LEN + 1], struct tp_err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = h->ctx && !h->failed && EVP_DigestFinal_ex(h->ctx, md, &n) == 1 && n == 32;

    image_hash_done(h);
    if (!ok)
        return tp_err_set(err, -EIO, "compute SHA-256");
    for (unsigned int i = 0; i < n; i++)
        snprintf(ret_hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}
