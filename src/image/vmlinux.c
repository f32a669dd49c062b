/* An uncompressed ELF vmlinux from a bzImage, for VMMs that boot only ELF kernels (Firecracker
 * on x86_64). The bzImage's setup header says where the compressed kernel is (Documentation/
 * arch/x86/boot.rst: "HdrS" at 0x202, setup_sects at 0x1f1, payload_offset/_length at
 * 0x248/0x24c, protocol >= 2.08); its first bytes say how it is compressed. */
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "image/image-internal.h"
#include "image/image.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

#define SETUP_SECTS_OFF  0x1f1
#define HEADER_MAGIC_OFF 0x202
#define VERSION_OFF      0x206
#define PAYLOAD_OFF      0x248 /* u32 offset from the protected-mode code, u32 length */
#define LZ4_LEGACY_MAGIC 0x184c2102u
#define LZ4_LEGACY_BLOCK (8u << 20) /* the legacy format's fixed block size */

static uint32_t
le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A growing output buffer, refused beyond IMAGE_VMLINUX_MAX. */
struct out {
    uint8_t *buf;
    size_t len, cap;
};

static int
out_reserve(struct out *o, size_t more)
{
    if (more > IMAGE_VMLINUX_MAX - o->len)
        return -EFBIG;
    if (o->len + more <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : (16u << 20);
    while (cap < o->len + more)
        cap *= 2;
    o->buf = xrealloc(o->buf, MIN(cap, (size_t)IMAGE_VMLINUX_MAX));
    o->cap = MIN(cap, (size_t)IMAGE_VMLINUX_MAX);
    return 0;
}

static int
inflate_gzip(const uint8_t *in, size_t len, struct out *o)
{
    z_stream z = { 0 };
    int r = 0;

    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)MIN(len, (size_t)UINT32_MAX);
    for (;;) {
        if ((r = out_reserve(o, 1u << 20)) < 0)
            break;
        z.next_out = o->buf + o->len;
        z.avail_out = (uInt)(o->cap - o->len);
        int zr = inflate(&z, Z_NO_FLUSH);
        o->len = o->cap - z.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr != Z_OK) {
            r = -EBADMSG;
            break;
        }
    }
    inflateEnd(&z);
    return r;
}

static int
inflate_xz(const uint8_t *in, size_t len, struct out *o)
{
    lzma_stream s = LZMA_STREAM_INIT;
    int r = 0;

    /* The kernel's xz uses a dictionary of at most 32 MiB: refuse a stream that asks more. */
    if (lzma_stream_decoder(&s, 128u << 20, 0) != LZMA_OK)
        return -ENOMEM;
    s.next_in = in;
    s.avail_in = len;
    for (;;) {
        if ((r = out_reserve(o, 1u << 20)) < 0)
            break;
        s.next_out = o->buf + o->len;
        s.avail_out = o->cap - o->len;
        lzma_ret lr = lzma_code(&s, LZMA_FINISH);
        o->len = o->cap - s.avail_out;
        if (lr == LZMA_STREAM_END)
            break;
        if (lr != LZMA_OK) {
            r = -EBADMSG;
            break;
        }
    }
    lzma_end(&s);
    return r;
}

static int
inflate_zstd(const uint8_t *in, size_t len, struct out *o)
{
    ZSTD_DStream *d = ZSTD_createDStream();
    ZSTD_inBuffer ib = { in, len, 0 };
    int r = 0;

    if (!d)
        return -ENOMEM;
    ZSTD_initDStream(d);
    for (;;) {
        if ((r = out_reserve(o, 1u << 20)) < 0)
            break;
        ZSTD_outBuffer ob = { o->buf + o->len, o->cap - o->len, 0 };
        size_t zr = ZSTD_decompressStream(d, &ob, &ib);
        o->len += ob.pos;
        if (ZSTD_isError(zr)) {
            r = -EBADMSG;
            break;
        }
        if (zr == 0)
            break; /* a frame ended */
        if (ib.pos == ib.size && ob.pos < ob.size) {
            r = -EBADMSG; /* truncated */
            break;
        }
    }
    ZSTD_freeDStream(d);
    return r;
}

/* The kernel's LZ4 is the legacy frame: the magic, then blocks of [u32 size][data], each
 * inflating to at most 8 MiB; the build appends the uncompressed size, which ends the walk. */
static int
inflate_lz4(const uint8_t *in, size_t len, struct out *o)
{
    size_t at = 4;
    int r;

    while (len - at >= 4) {
        uint32_t csize = le32(in + at);
        if (csize == LZ4_LEGACY_MAGIC) { /* a concatenated frame */
            at += 4;
            continue;
        }
        if (len - at == 4)
            break; /* the trailing size field */
        if (csize > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK) || csize > len - at - 4)
            return -EBADMSG; /* a block that cannot be: truncated or corrupt */
        at += 4;
        if ((r = out_reserve(o, LZ4_LEGACY_BLOCK)) < 0)
            return r;
        int n = LZ4_decompress_safe((const char *)in + at, (char *)o->buf + o->len, (int)csize,
                                    (int)LZ4_LEGACY_BLOCK);
        if (n < 0)
            return -EBADMSG;
        o->len += (size_t)n;
        at += csize;
    }
    return o->len && len - at == 4 ? 0 : -EBADMSG;
}

int
image_vmlinux_extract(const uint8_t *bz, size_t len, uint8_t **ret, size_t *ret_len,
                      struct tp_err *err)
{
    struct out o = { 0 };
    int r;

    if (len < PAYLOAD_OFF + 8 || memcmp(bz + HEADER_MAGIC_OFF, "HdrS", 4) != 0)
        return tp_err_set(err, -EINVAL, "not a bzImage (no setup header)");
    unsigned version = bz[VERSION_OFF] | bz[VERSION_OFF + 1] << 8;
    if (version < 0x208)
        return tp_err_set(err, -EINVAL, "bzImage boot protocol %u.%02u has no payload fields",
                          version >> 8, version & 0xff);
    size_t setup = (size_t)(bz[SETUP_SECTS_OFF] ? bz[SETUP_SECTS_OFF] : 4) + 1;
    size_t start = setup * 512, off = le32(bz + PAYLOAD_OFF), plen = le32(bz + PAYLOAD_OFF + 4);
    if (start > len || off > len - start || plen > len - start - off || plen < 6)
        return tp_err_set(err, -EINVAL, "bzImage payload lies outside the file");
    const uint8_t *p = bz + start + off;

    if (p[0] == 0x1f && p[1] == 0x8b)
        r = inflate_gzip(p, plen, &o);
    else if (memcmp(p,
                    "\xfd"
                    "7zXZ\0",
                    6) == 0)
        r = inflate_xz(p, plen, &o);
    else if (le32(p) == 0xfd2fb528u)
        r = inflate_zstd(p, plen, &o);
    else if (le32(p) == LZ4_LEGACY_MAGIC)
        r = inflate_lz4(p, plen, &o);
    else {
        return tp_err_set(err, -EOPNOTSUPP,
                          "bzImage payload compressed with a method torpor cannot undo "
                          "(magic %02x %02x %02x %02x; gzip, xz, zstd and lz4 are supported)",
                          p[0], p[1], p[2], p[3]);
    }
    /* The kernel build appends the uncompressed size (gzip's own ISIZE is the same field):
     * a payload cut short or padded inflates to another length. */
    if (r == 0 && o.len != le32(p + plen - 4))
        r = -EBADMSG;
    if (r == 0 && (o.len < 64 || memcmp(o.buf, "\177ELF", 4) != 0 || o.buf[4] != 2 ||
                   o.buf[18] != 62 /* e_machine x86-64 */))
        r = -ENOEXEC;
    if (r < 0) {
        free(o.buf);
        if (r == -EFBIG)
            return tp_err_set(err, r, "bzImage payload inflates beyond %u MiB",
                              IMAGE_VMLINUX_MAX >> 20);
        if (r == -ENOEXEC)
            return tp_err_set(err, r, "bzImage payload is not an x86-64 ELF kernel");
        return tp_err_set(err, r, "bzImage payload is corrupt or truncated");
    }
    *ret = o.buf;
    *ret_len = o.len;
    return 0;
}

int
image_vmlinux(const struct image_env *env, const char *kernel, char **ret_path, struct tp_err *err)
{
    _cleanup_free_ char *data = NULL, *dir = NULL, *path = NULL, *tmp = NULL;
    _cleanup_free_ uint8_t *elf = NULL;
    _cleanup_(image_hash_done) struct image_hash h = { 0 };
    size_t len = 0, elf_len = 0;
    int r;

    /* An ELF (however large: debug info) is already what the VMM boots. */
    char magic[4];
    _cleanup_close_ int kfd = open(kernel, O_RDONLY | O_CLOEXEC);
    if (kfd < 0)
        return tp_err_errno(err, -errno, "open kernel '%s'", kernel);
    if (read(kfd, magic, 4) == 4 && memcmp(magic, "\177ELF", 4) == 0) {
        *ret_path = xstrdup(kernel);
        return 0;
    }
    r = fs_read_file(kernel, 256u << 20, &data, &len, err);
    if (r < 0)
        return tp_err_wrap(err, "read kernel");
    /* Cached by the bzImage's content: CACHE/vmlinux/<sha256>.elf. */
    r = image_hash_init(&h, err);
    if (r < 0)
        return r;
    image_hash_str(&h, "vmlinux-v1");
    image_hash_bytes(&h, data, len);
    r = image_cache_lookup(env, &h, "vmlinux", "elf", &dir, &path, err);
    if (r < 0)
        return r;
    if (r > 0) {
        *ret_path = TAKE_PTR(path);
        return 0;
    }
    r = image_vmlinux_extract((const uint8_t *)data, len, &elf, &elf_len, err);
    if (r < 0)
        return tp_err_wrap(err, "extract an ELF kernel from '%s'", kernel);
    _cleanup_close_ int fd = image_cache_tmpfile(dir, &tmp, err);
    if (fd < 0)
        return fd;
    r = fd_write_all(fd, elf, elf_len);
    if (r < 0)
        tp_err_errno(err, r, "write '%s'", tmp);
    if (r >= 0)
        r = image_cache_publish(fd, tmp, path, err);
    if (r < 0) {
        unlink(tmp);
        return tp_err_wrap(err, "cache the ELF kernel");
    }
    *ret_path = TAKE_PTR(path);
    return 0;
}
