/* image/vmlinux.c: ELF kernels out of bzImages. Synthetic bzImages carry a small fake ELF
 * compressed with each codec the kernel may use; the real default kernel is converted when the
 * cache has it. */
#include <errno.h>
#include <lz4.h>
#include <lzma.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "image/image-internal.h"
#include "image/image.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/xalloc.h"

#define ELF_LEN (256u << 10)

/* A fake 64-bit ELF: the magic, class 2, then a pattern that compresses but is not all zeros. */
static uint8_t *
fake_elf(void)
{
    uint8_t *e = xmalloc(ELF_LEN);
    for (size_t k = 0; k < ELF_LEN; k++)
        e[k] = (uint8_t)(k * 7 + k / 4096);
    memcpy(e, "\177ELF\002\001\001", 7);
    e[18] = 62; /* EM_X86_64 */
    e[19] = 0;
    return e;
}

enum codec {
    GZIP,
    XZ,
    ZSTD,
    LZ4
};

static size_t
codec_compress(enum codec c, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    switch (c) {
    case GZIP: {
        z_stream z = { 0 };
        assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
                         Z_OK);
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)len;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        size_t n = z.total_out;
        deflateEnd(&z);
        return n;
    }
    case XZ: {
        size_t pos = 0;
        assert_int_equal(
            lzma_easy_buffer_encode(1, LZMA_CHECK_CRC32, NULL, in, len, out, &pos, cap), LZMA_OK);
        uint32_t l32 = (uint32_t)len; /* the kernel build appends the size */
        memcpy(out + pos, &l32, 4);
        return pos + 4;
    }
    case ZSTD: {
        size_t n = ZSTD_compress(out, cap, in, len, 3);
        assert_false(ZSTD_isError(n));
        uint32_t l32 = (uint32_t)len;
        memcpy(out + n, &l32, 4);
        return n + 4;
    }
    case LZ4: {
        /* The legacy frame: magic, [size][block], then the kernel build's trailing size. */
        uint32_t magic = 0x184c2102u;
        memcpy(out, &magic, 4);
        int n = LZ4_compress_default((const char *)in, (char *)out + 8, (int)len, (int)cap - 12);
        assert_true(n > 0);
        uint32_t n32 = (uint32_t)n, l32 = (uint32_t)len;
        memcpy(out + 4, &n32, 4);
        memcpy(out + 8 + n, &l32, 4);
        return 12 + (size_t)n;
    }
    }
    return 0;
}

/* setup_sects 1 (so the protected-mode code starts at 1024), protocol 2.15, the payload at
 * payload_offset 64. */
static uint8_t *
fake_bzimage(enum codec c, const uint8_t *elf, size_t elf_len, size_t *ret_len)
{
    size_t cap = elf_len + (1u << 20);
    uint8_t *bz = xzalloc(1024 + 64 + cap);
    bz[0x1f1] = 1;
    memcpy(bz + 0x202, "HdrS", 4);
    bz[0x206] = 0x0f;
    bz[0x207] = 0x02;
    size_t n = codec_compress(c, elf, elf_len, bz + 1024 + 64, cap);
    uint32_t off = 64, len = (uint32_t)n;
    memcpy(bz + 0x248, &off, 4);
    memcpy(bz + 0x24c, &len, 4);
    *ret_len = 1024 + 64 + n;
    return bz;
}

static void
test_each_codec(void **state)
{
    _cleanup_free_ uint8_t *elf = fake_elf();
    (void)state;

    for (enum codec c = GZIP; c <= LZ4; c++) {
        size_t bz_len = 0, out_len = 0;
        _cleanup_free_ uint8_t *bz = fake_bzimage(c, elf, ELF_LEN, &bz_len);
        _cleanup_free_ uint8_t *out = NULL;
        struct tp_err err = { 0 };
        if (image_vmlinux_extract(bz, bz_len, &out, &out_len, &err) < 0)
            fail_msg("codec %d: %s", (int)c, tp_err_msg(&err));
        assert_int_equal(out_len, ELF_LEN);
        assert_memory_equal(out, elf, ELF_LEN);

        /* Codecs with a checksum refuse a corrupt payload (never a wrong kernel). */
        if (c == GZIP || c == XZ) {
            _cleanup_free_ uint8_t *bad = NULL;
            bz[bz_len / 2 + 512] ^= 0x5a;
            assert_true(image_vmlinux_extract(bz, bz_len, &bad, &out_len, &err) < 0);
            assert_null(bad);
            tp_err_clear(&err);
        }
    }
}

/* A kernel larger than one 8 MiB LZ4 block: every block is needed, a missing one is refused. */
static void
test_lz4_blocks(void **state)
{
    const size_t big = (9u << 20) + 4096, block = 8u << 20;
    _cleanup_free_ uint8_t *elf = xmalloc(big);
    _cleanup_free_ uint8_t *bz = xzalloc(1024 + 64 + big + (1u << 20));
    uint8_t *p = bz + 1024 + 64, *at = p;
    uint32_t v;
    (void)state;

    for (size_t k = 0; k < big; k++)
        elf[k] = (uint8_t)(k * 13 + k / 777);
    memcpy(elf, "\177ELF\002\001\001", 7);
    elf[18] = 62;
    elf[19] = 0;
    v = 0x184c2102u;
    memcpy(at, &v, 4);
    at += 4;
    uint8_t *second = NULL;
    for (size_t off = 0; off < big; off += block) {
        size_t n = MIN(block, big - off);
        if (off)
            second = at;
        int c = LZ4_compress_default((const char *)elf + off, (char *)at + 4, (int)n,
                                     (int)LZ4_compressBound((int)block));
        assert_true(c > 0);
        v = (uint32_t)c;
        memcpy(at, &v, 4);
        at += 4 + (size_t)c;
    }
    v = (uint32_t)big;
    memcpy(at, &v, 4);
    at += 4;
    bz[0x1f1] = 1;
    memcpy(bz + 0x202, "HdrS", 4);
    bz[0x206] = 0x0f;
    bz[0x207] = 0x02;
    v = 64;
    memcpy(bz + 0x248, &v, 4);
    v = (uint32_t)(at - p);
    memcpy(bz + 0x24c, &v, 4);

    uint8_t *out = NULL;
    size_t out_len = 0;
    struct tp_err err = { 0 };
    if (image_vmlinux_extract(bz, (size_t)(at - bz), &out, &out_len, &err) < 0)
        fail_msg("%s", tp_err_msg(&err));
    assert_int_equal(out_len, big);
    assert_memory_equal(out, elf, big);
    free(out);
    out = NULL;

    /* The second block dropped (the trailing size kept): refused, not 8 MiB of kernel. */
    memmove(second, at - 4, 4);
    v = (uint32_t)(second + 4 - p);
    memcpy(bz + 0x24c, &v, 4);
    assert_int_equal(image_vmlinux_extract(bz, (size_t)(second + 4 - bz), &out, &out_len, &err),
                     -EBADMSG);
    tp_err_clear(&err);
    assert_null(out);
}

static void
test_bad_input(void **state)
{
    _cleanup_free_ uint8_t *elf = fake_elf();
    uint8_t *out = NULL;
    size_t out_len = 0, bz_len = 0;
    struct tp_err err = { 0 };
    (void)state;

    /* Not a bzImage at all. */
    assert_int_equal(image_vmlinux_extract(elf, ELF_LEN, &out, &out_len, &err), -EINVAL);
    tp_err_clear(&err);
    /* A payload that runs past the file. */
    _cleanup_free_ uint8_t *bz = fake_bzimage(GZIP, elf, ELF_LEN, &bz_len);
    assert_int_equal(image_vmlinux_extract(bz, bz_len - 100, &out, &out_len, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "outside"));
    tp_err_clear(&err);
    /* An unknown compression names its magic. */
    memcpy(bz + 1024 + 64, "BZh9", 4);
    assert_int_equal(image_vmlinux_extract(bz, bz_len, &out, &out_len, &err), -EOPNOTSUPP);
    assert_non_null(strstr(tp_err_msg(&err), "42 5a 68 39"));
    tp_err_clear(&err);
    /* It inflates, but to something that is not an ELF kernel. */
    _cleanup_free_ uint8_t *text = xmalloc(ELF_LEN);
    memset(text, 'x', ELF_LEN);
    _cleanup_free_ uint8_t *bz2 = fake_bzimage(ZSTD, text, ELF_LEN, &bz_len);
    assert_int_equal(image_vmlinux_extract(bz2, bz_len, &out, &out_len, &err), -ENOEXEC);
    tp_err_clear(&err);
    assert_null(out);
}

/* The real default kernel (Debian cloud, lz4 here) becomes an ELF, cached by content. */
static void
test_real_kernel(void **state)
{
    const char *k = getenv("TORPOR_TEST_KERNEL");
    (void)state;
    if (!k || !fs_exists(k))
        skip();
    char dir[] = "/tmp/torpor-vmlinux-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct image_env env = { .cache_dir = dir };
    _cleanup_free_ char *elf = NULL, *again = NULL, *same = NULL;
    struct tp_err err = { 0 };
    struct stat st;

    if (image_vmlinux(&env, k, &elf, &err) < 0)
        fail_msg("%s", tp_err_msg(&err));
    assert_non_null(strstr(elf, "/vmlinux/"));
    assert_int_equal(stat(elf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_size > (4 << 20));
    char head[5];
    FILE *f = fopen(elf, "rb");
    assert_non_null(f);
    assert_int_equal(fread(head, 1, 5, f), 5);
    fclose(f);
    assert_memory_equal(head, "\177ELF\002", 5);
    assert_int_equal(image_vmlinux(&env, k, &again, NULL), 0); /* from the cache */
    assert_string_equal(again, elf);
    assert_int_equal(image_vmlinux(&env, elf, &same, NULL), 0); /* an ELF is kept as it is */
    assert_string_equal(same, elf);
    fs_rm_rf(dir, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_codec),
        cmocka_unit_test(test_lz4_blocks),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_real_kernel),
    };
    return cmocka_run_group_tests_name("vmlinux", tests, NULL, NULL);
}
