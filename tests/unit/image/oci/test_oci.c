/* Unit tests for image/oci: docker reference rules, manifest/index parsing and platform choice,
 * and the layout store (tag, resolve, untag, gc). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "image/oci/oci-internal.h"
#include "image/oci/oci.h"
#include "util/fs.h"
#include "util/xalloc.h"

/* ------------------------------------------------------------------ references */

static void
check_ref(const char *in, const char *registry, const char *repo, const char *tag,
          const char *digest, const char *full)
{
    struct oci_ref r = { 0 };
    struct tp_err err = { 0 };

    if (oci_ref_parse(in, &r, &err) != 0)
        fail_msg("parse '%s': %s", in, tp_err_msg(&err));
    assert_string_equal(r.registry, registry);
    assert_string_equal(r.repository, repo);
    if (tag)
        assert_string_equal(r.tag, tag);
    else
        assert_null(r.tag);
    if (digest)
        assert_string_equal(r.digest, digest);
    else
        assert_null(r.digest);
    assert_string_equal(r.full, full);
    oci_ref_free(&r);
}

#define D64 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void
test_ref_normalize(void **state)
{
    (void)state;
    check_ref("busybox", "docker.io", "library/busybox", "latest", NULL,
              "docker.io/library/busybox:latest");
    check_ref("busybox:1.36", "docker.io", "library/busybox", "1.36", NULL,
              "docker.io/library/busybox:1.36");
    check_ref("user/app", "docker.io", "user/app", "latest", NULL, "docker.io/user/app:latest");
    check_ref("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", NULL,
              "docker.io/library/busybox:latest");
    check_ref("docker.io/busybox", "docker.io", "library/busybox", "latest", NULL,
              "docker.io/library/busybox:latest");
    check_ref("127.0.0.1:5000/test/app:v1", "127.0.0.1:5000", "test/app", "v1", NULL,
              "127.0.0.1:5000/test/app:v1");
    check_ref("localhost/app", "localhost", "app", "latest", NULL, "localhost/app:latest");
    check_ref("localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", NULL,
              "localhost:5000/a/b/c:latest");
    check_ref("busybox@" D64, "docker.io", "library/busybox", NULL, D64,
              "docker.io/library/busybox@" D64);
    check_ref("quay.io/x/y:t@" D64, "quay.io", "x/y", "t", D64, "quay.io/x/y:t@" D64);
    check_ref("a__b-c.d---e", "docker.io", "library/a__b-c.d---e", "latest", NULL,
              "docker.io/library/a__b-c.d---e:latest");
    check_ref("Host.Example:443/r", "Host.Example:443", "r", "latest", NULL,
              "Host.Example:443/r:latest");
    check_ref("UpperHost/r", "UpperHost", "r", "latest", NULL, "UpperHost/r:latest");
    check_ref("[::1]:5000/r:tag_1.x-y", "[::1]:5000", "r", "tag_1.x-y", NULL,
              "[::1]:5000/r:tag_1.x-y");
}

static void
check_bad(const char *in, const char *needle)
{
    struct oci_ref r = { 0 };
    struct tp_err err = { 0 };

    if (oci_ref_parse(in, &r, &err) != -EINVAL)
        fail_msg("'%s' was accepted", in);
    if (!strstr(tp_err_msg(&err), needle))
        fail_msg("'%s': message '%s' lacks '%s'", in, tp_err_msg(&err), needle);
    tp_err_clear(&err);
}

static void
test_ref_errors(void **state)
{
    (void)state;
    check_bad("", "invalid reference format");
    check_bad("Busybox", "must be lowercase");
    check_bad("docker.io/User/app", "must be lowercase");
    check_bad("busybox:", "invalid tag");
    check_bad("busybox:-x", "invalid tag");
    check_bad("busybox:a/b", "invalid reference format");
    check_bad("busybox:"
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
              "invalid tag");
    check_bad("busybox@sha256:abc", "invalid checksum digest");
    check_bad("busybox@md5:0123456789abcdef0123456789abcdef", "unsupported digest algorithm");
    check_bad("busybox@" D64 "x", "invalid checksum digest");
    check_bad("busybox@", "invalid digest");
    check_bad("-busybox", "invalid repository name");
    check_bad("bu..sybox", "invalid repository name");
    check_bad("busybox/", "invalid repository name");
    check_bad("a//b", "invalid repository name");
    check_bad("host:port/x", "invalid registry");
    check_bad("-host.io/x", "invalid registry");
    check_bad("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
              "64-byte hexadecimal");
    check_bad(":tag", "empty repository");
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    check_bad(long_name, "255");
}

static void
test_ref_familiar(void **state)
{
    struct oci_ref r = { 0 };
    char *s;
    (void)state;

    assert_int_equal(oci_ref_parse("busybox", &r, NULL), 0);
    s = oci_ref_familiar_name(&r);
    assert_string_equal(s, "busybox");
    free(s);
    oci_ref_free(&r);
    assert_int_equal(oci_ref_parse("user/app", &r, NULL), 0);
    s = oci_ref_familiar_name(&r);
    assert_string_equal(s, "user/app");
    free(s);
    oci_ref_free(&r);
    assert_int_equal(oci_ref_parse("127.0.0.1:5000/a", &r, NULL), 0);
    s = oci_ref_familiar_name(&r);
    assert_string_equal(s, "127.0.0.1:5000/a");
    free(s);
    oci_ref_free(&r);
}

static void
test_digest(void **state)
{
    char *d;
    (void)state;

    assert_true(oci_digest_valid(D64));
    assert_false(oci_digest_valid(
        "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(oci_digest_valid("sha512:00"));
    assert_false(oci_digest_valid(NULL));
    d = oci_digest_of("", 0);
    assert_string_equal(d,
                        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(d);
}

/* ------------------------------------------------------------------ manifests and indexes */

#define CFG_D "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define L1_D  "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static const char oci_manifest_text[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" CFG_D
    "\",\"size\":12},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" L1_D
    "\",\"size\":345}]}";

static void
test_manifest_oci_and_docker(void **state)
{
    struct oci_manifest m = { 0 };
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(oci_manifest_parse(oci_manifest_text, strlen(oci_manifest_text), &m, &err), 0);
    assert_string_equal(m.config.digest, CFG_D);
    assert_int_equal(m.n_layers, 1);
    assert_int_equal(m.layers[0].size, 345);
    oci_manifest_free(&m);

    static const char docker[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/"
        "vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":"
        "\"" CFG_D "\",\"size\":12},\"layers\":[{\"mediaType\":"
        "\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" L1_D
        "\",\"size\":1},{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"digest\":\"" L1_D "\",\"size\":1}]}";
    assert_int_equal(oci_manifest_parse(docker, strlen(docker), &m, &err), 0);
    assert_int_equal(m.n_layers, 2);
    oci_manifest_free(&m);

    /* no mediaType: OCI allows it, the shape decides */
    static const char bare[] = "{\"schemaVersion\":2,\"config\":{\"mediaType\":"
                               "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" CFG_D
                               "\",\"size\":2},\"layers\":[]}";
    assert_int_equal(oci_manifest_parse(bare, strlen(bare), &m, &err), 0);
    assert_int_equal(m.n_layers, 0);
    oci_manifest_free(&m);
}

static void
check_manifest_bad(const char *text, int code, const char *needle)
{
    struct oci_manifest m = { 0 };
    struct tp_err err = { 0 };
    int r = oci_manifest_parse(text, strlen(text), &m, &err);
    if (r != code)
        fail_msg("'%s': got %d (%s), want %d", text, r, tp_err_msg(&err), code);
    if (!strstr(tp_err_msg(&err), needle))
        fail_msg("'%s': message '%s' lacks '%s'", text, tp_err_msg(&err), needle);
    tp_err_clear(&err);
}

static void
test_manifest_errors(void **state)
{
    (void)state;
    check_manifest_bad("not json", -EINVAL, "parse manifest JSON");
    check_manifest_bad("[]", -EINVAL, "not an object");
    check_manifest_bad("{\"schemaVersion\":1,\"fsLayers\":[]}", -EOPNOTSUPP, "schema 1");
    check_manifest_bad("{\"schemaVersion\":2,\"mediaType\":\"application/x-foo\"}", -EOPNOTSUPP,
                       "application/x-foo");
    check_manifest_bad("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[]}",
                       -EINVAL, "expected an image manifest");
    check_manifest_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_CONFIG
                       "\",\"digest\":\"sha256:12\",\"size\":1},\"layers\":[]}",
                       -EINVAL, "config digest");
    check_manifest_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_CONFIG
                       "\",\"digest\":\"" CFG_D "\",\"size\":-1},\"layers\":[]}",
                       -EINVAL, "size");
    check_manifest_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x/y\",\"digest\":\"" CFG_D
                       "\",\"size\":1},\"layers\":[]}",
                       -EOPNOTSUPP, "config media type");
    check_manifest_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_CONFIG
                       "\",\"digest\":\"" CFG_D "\",\"size\":1},\"layers\":[{\"mediaType\":"
                       "\"application/vnd.oci.image.layer.v1.tar+bzip2\",\"digest\":\"" L1_D
                       "\",\"size\":1}]}",
                       -EOPNOTSUPP, "layer media type");
    check_manifest_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_CONFIG
                       "\",\"digest\":\"sha512:aa\",\"size\":1},\"layers\":[]}",
                       -EOPNOTSUPP, "only sha256");
    check_manifest_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_CONFIG
                       "\",\"digest\":\"" CFG_D "\",\"size\":1},\"layers\":{}}",
                       -EINVAL, "layers");
}

#define M_AMD "sha256:aaaa111111111111111111111111111111111111111111111111111111111111"
#define M_ARM "sha256:bbbb111111111111111111111111111111111111111111111111111111111111"
#define M_ATT "sha256:cccc111111111111111111111111111111111111111111111111111111111111"

static void
test_index_select(void **state)
{
    struct oci_index ix = { 0 };
    struct oci_desc d = { 0 };
    struct tp_err err = { 0 };
    enum oci_kind k;
    char *mt = NULL;
    (void)state;

    static const char list[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" DOCKER_MT_LIST "\",\"manifests\":["
        "{\"mediaType\":\"" DOCKER_MT_MANIFEST "\",\"digest\":\"" M_ARM "\",\"size\":10,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
        "{\"mediaType\":\"" OCI_MT_MANIFEST "\",\"digest\":\"" M_ATT "\",\"size\":10,"
        "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}},"
        "{\"mediaType\":\"" DOCKER_MT_MANIFEST "\",\"digest\":\"" M_AMD "\",\"size\":11,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
    assert_int_equal(oci_blob_kind(list, strlen(list), &k, &mt, &err), 0);
    assert_int_equal(k, OCI_KIND_INDEX);
    assert_string_equal(mt, DOCKER_MT_LIST);
    free(mt);
    assert_int_equal(oci_index_parse(list, strlen(list), &ix, &err), 0);
    assert_int_equal(ix.n, 3);
    assert_int_equal(oci_index_select(&ix, "linux", "amd64", &d, &err), 0);
    assert_string_equal(d.digest, M_AMD);
    assert_int_equal(d.size, 11);
    oci_desc_done(&d);
    assert_int_equal(oci_index_select(&ix, "linux", "s390x", &d, &err), -ENOENT);
    assert_non_null(strstr(tp_err_msg(&err), "no matching manifest for linux/s390x"));
    assert_non_null(strstr(tp_err_msg(&err), "available: linux/arm64/v8, linux/amd64)"));
    assert_null(strstr(tp_err_msg(&err), "unknown"));
    tp_err_clear(&err);
    oci_index_free(&ix);

    /* an OCI index without mediaType */
    static const char bare[] = "{\"schemaVersion\":2,\"manifests\":[]}";
    assert_int_equal(oci_index_parse(bare, strlen(bare), &ix, &err), 0);
    assert_int_equal(oci_index_select(&ix, "linux", "amd64", &d, &err), -ENOENT);
    assert_non_null(strstr(tp_err_msg(&err), "available: none"));
    tp_err_clear(&err);
    oci_index_free(&ix);

    assert_int_equal(oci_index_parse(oci_manifest_text, strlen(oci_manifest_text), &ix, &err),
                     -EINVAL);
    tp_err_clear(&err);
}

/* ------------------------------------------------------------------ layout store */

static char *
make_tmpdir(void)
{
    char tmpl[] = "/tmp/torpor-oci-test-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return xstrdup(tmpl);
}

/* Stores a config, a layer and a manifest naming them; returns the manifest digest. */
static char *
put_image(const char *dir, const char *config_text, const char *layer_text, char **ret_cfg)
{
    char *cd = oci_digest_of(config_text, strlen(config_text));
    char *ld = oci_digest_of(layer_text, strlen(layer_text));
    char *m = xasprintf("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\",\"config\":{"
                        "\"mediaType\":\"" OCI_MT_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
                        "\"layers\":[{\"mediaType\":\"" OCI_MT_LAYER_TAR "\",\"digest\":\"%s\","
                        "\"size\":%zu}]}",
                        cd, strlen(config_text), ld, strlen(layer_text));
    char *md = oci_digest_of(m, strlen(m));
    struct tp_err err = { 0 };

    assert_int_equal(oci_blob_put(dir, cd, config_text, strlen(config_text), &err), 0);
    assert_int_equal(oci_blob_put(dir, ld, layer_text, strlen(layer_text), &err), 0);
    assert_int_equal(oci_blob_put(dir, md, m, strlen(m), &err), 0);
    free(m);
    free(ld);
    if (ret_cfg)
        *ret_cfg = cd;
    else
        free(cd);
    return md;
}

static int
count_blobs(const char *dir)
{
    char *cmd = xasprintf("ls %s/blobs/sha256 | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    free(cmd);
    return n;
}

static void
test_layout(void **state)
{
    char *dir = make_tmpdir(), *cfg1 = NULL, *cfg2 = NULL;
    struct tp_err err = { 0 };
    struct oci_desc d = { 0 };
    struct oci_image *v = NULL;
    size_t n = 0;
    char **names = NULL;
    struct stat st;
    uint64_t freed = 0;
    (void)state;

    assert_int_equal(oci_layout_init(dir, &err), 0);
    assert_int_equal(oci_layout_init(dir, &err), 0); /* idempotent */
    char *p = xasprintf("%s/oci-layout", dir);
    assert_true(fs_exists(p));
    free(p);

    /* what a daemon killed mid-write leaves; the start's clean-up removes it, nothing else */
    char *tmp1 = xasprintf("%s/index.json.tmp.4242", dir),
         *tmp2 = xasprintf("%s/ingest/load-x", dir);
    char *idx = xasprintf("%s/index.json", dir);
    assert_int_equal(fs_write_atomic(tmp1, "{", 1, 0644, &err), 0);
    assert_int_equal(fs_write_atomic(tmp2, "x", 1, 0600, &err), 0);
    assert_int_equal(oci_layout_clean_tmp(dir, &err), 0);
    assert_false(fs_exists(tmp1));
    assert_false(fs_exists(tmp2));
    assert_true(fs_exists(idx));
    free(tmp1);
    free(tmp2);
    free(idx);

    char *m1 = put_image(dir, "{\"config\":1}", "layer-one", &cfg1);
    char *m2 = put_image(dir, "{\"config\":2}", "layer-two", &cfg2);
    p = oci_blob_path(dir, m1);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(p);
    assert_null(oci_blob_path(dir, "sha256:xyz"));

    /* a put whose content does not match refuses and writes nothing */
    assert_int_equal(oci_blob_put(dir, m1, "other", 5, &err), -EIO);
    assert_non_null(strstr(tp_err_msg(&err), "digest mismatch"));
    tp_err_clear(&err);

    struct oci_desc md1 = { .media_type = (char *)OCI_MT_MANIFEST, .digest = m1, .size = 1 };
    struct oci_desc md2 = { .media_type = (char *)OCI_MT_MANIFEST, .digest = m2, .size = 1 };
    assert_int_equal(oci_layout_tag(dir, "docker.io/library/one:latest", &md1, NULL, &err), 0);
    assert_int_equal(oci_layout_tag(dir, "docker.io/library/one:v1", &md1, NULL, &err), 0);
    assert_int_equal(oci_layout_tag(dir, "127.0.0.1:5000/two:latest", &md2, M_AMD, &err), 0);
    /* retagging replaces */
    assert_int_equal(oci_layout_tag(dir, "docker.io/library/one:v1", &md2, NULL, &err), 0);
    assert_int_equal(oci_layout_list(dir, &v, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[1].ref_name, "docker.io/library/one:v1");
    assert_string_equal(v[1].manifest.digest, m2);
    assert_string_equal(v[2].index_digest, M_AMD);
    oci_images_free(v, n);

    /* resolve by short ref, full ref, digest, ref@digest, id prefix */
    assert_int_equal(oci_layout_resolve(dir, "one", &d, &err), 0);
    assert_string_equal(d.digest, m1);
    oci_desc_done(&d);
    assert_int_equal(oci_layout_resolve(dir, "127.0.0.1:5000/two", &d, &err), 0);
    assert_string_equal(d.digest, m2);
    oci_desc_done(&d);
    assert_int_equal(oci_layout_resolve(dir, m1, &d, &err), 0);
    assert_string_equal(d.digest, m1);
    oci_desc_done(&d);
    char *at = xasprintf("one@%s", m1);
    assert_int_equal(oci_layout_resolve(dir, at, &d, &err), 0);
    oci_desc_done(&d);
    free(at);
    char prefix[13];
    memcpy(prefix, cfg1 + 7, 12);
    prefix[12] = '\0';
    struct oci_manifest pm = { 0 };
    if (oci_layout_resolve_full(dir, prefix, &d, &pm, &names, &err) != 0)
        fail_msg("resolve '%s': %s", prefix, tp_err_msg(&err));
    assert_string_equal(d.digest, m1);
    assert_string_equal(pm.config.digest, cfg1);
    assert_string_equal(names[0], "docker.io/library/one:latest");
    assert_null(names[1]);
    strv_free(names);
    oci_manifest_free(&pm);
    oci_desc_done(&d);
    assert_int_equal(oci_layout_resolve(dir, "nothere", &d, &err), -ENOENT);
    assert_string_equal(tp_err_msg(&err), "No such image: nothere");
    tp_err_clear(&err);
    assert_int_equal(oci_layout_resolve(dir, "BAD", &d, &err), -ENOENT);
    tp_err_clear(&err);

    /* gc keeps referenced blobs; untag both names of m1 and its blobs go */
    assert_int_equal(count_blobs(dir), 6);
    assert_int_equal(oci_layout_gc(dir, &freed, &err), 0);
    assert_int_equal(freed, 0);
    assert_int_equal(oci_layout_untag(dir, "docker.io/library/one:latest", &err), 0);
    assert_int_equal(oci_layout_untag(dir, "docker.io/library/one:latest", &err), -ENOENT);
    tp_err_clear(&err);
    assert_int_equal(oci_layout_gc(dir, &freed, &err), 0);
    assert_true(freed > 0);
    assert_int_equal(count_blobs(dir), 3);
    assert_false(oci_blob_exists(dir, m1));
    assert_true(oci_blob_exists(dir, m2));

    /* a pull holding the lock makes gc refuse with -EBUSY */
    int lk = oci_layout_pull_lock(dir, &err);
    assert_true(lk >= 0);
    assert_int_equal(oci_layout_gc(dir, NULL, &err), -EBUSY);
    tp_err_clear(&err);
    close(lk);

    /* a corrupt blob is detected on read */
    p = oci_blob_path(dir, m2);
    FILE *f = fopen(p, "w");
    fputs("tampered", f);
    fclose(f);
    free(p);
    char *data = NULL;
    assert_int_equal(oci_blob_read(dir, m2, 1 << 20, &data, NULL, &err), -EIO);
    assert_non_null(strstr(tp_err_msg(&err), "corrupt"));
    tp_err_clear(&err);
    /* gc cannot tell what the unreadable manifest references: it keeps every blob, until the
     * image is removed */
    assert_int_equal(oci_layout_gc(dir, &freed, &err), 0);
    assert_int_equal(freed, 0);
    assert_int_equal(count_blobs(dir), 3);
    assert_int_equal(oci_layout_untag_digest(dir, m2, &err), 0);
    assert_int_equal(oci_layout_gc(dir, &freed, &err), 0);
    assert_int_equal(count_blobs(dir), 0);

    assert_int_equal(fs_rm_rf(dir, NULL), 0);
    free(m1);
    free(m2);
    free(cfg1);
    free(cfg2);
    free(dir);
}

/* ------------------------------------------------------------------ auth, ingest, docker save */

static void
test_challenge(void **state)
{
    struct oci_challenge c = { 0 };
    struct tp_err err = { 0 };
    (void)state;

    /* Docker Hub's, as recorded */
    assert_int_equal(oci_challenge_parse("Bearer realm=\"https://auth.docker.io/token\","
                                         "service=\"registry.docker.io\",scope=\"repository:"
                                         "library/busybox:pull\"",
                                         &c, &err),
                     0);
    assert_string_equal(c.scheme, "bearer");
    assert_string_equal(c.realm, "https://auth.docker.io/token");
    assert_string_equal(c.service, "registry.docker.io");
    assert_string_equal(c.scope, "repository:library/busybox:pull");
    oci_challenge_done(&c);
    /* ghcr's, spaces and an escaped quote */
    assert_int_equal(oci_challenge_parse("  BEARER realm = \"https://ghcr.io/token\" , "
                                         "service=\"gh\\\"cr\"",
                                         &c, &err),
                     0);
    assert_string_equal(c.realm, "https://ghcr.io/token");
    assert_string_equal(c.service, "gh\"cr");
    assert_null(c.scope);
    oci_challenge_done(&c);
    assert_int_equal(oci_challenge_parse("Basic realm=\"Registry Realm\"", &c, &err), 0);
    assert_string_equal(c.scheme, "basic");
    oci_challenge_done(&c);
    assert_int_equal(oci_challenge_parse("Bearer service=\"x\"", &c, &err), -EPROTO);
    assert_non_null(strstr(tp_err_msg(&err), "without a realm"));
    tp_err_clear(&err);
    assert_int_equal(oci_challenge_parse("Bearer realm=\"unterminated", &c, &err), -EPROTO);
    tp_err_clear(&err);
    assert_int_equal(oci_challenge_parse("Bearer realm", &c, &err), -EPROTO);
    tp_err_clear(&err);
    assert_int_equal(oci_challenge_parse("", &c, &err), -EPROTO);
    tp_err_clear(&err);
}

static void
test_auth_lookup(void **state)
{
    char *dir = make_tmpdir();
    char *cfg = xasprintf("%s/config.json", dir);
    char *basic = NULL;
    struct tp_err err = { 0 };
    FILE *f;
    (void)state;

    assert_int_equal(oci_auth_lookup(cfg, "x.io", &basic, &err), 0); /* no file: none */
    assert_null(basic);
    f = fopen(cfg, "w");
    fputs("{\"auths\":{\"127.0.0.1:5000\":{\"auth\":\"YTpi\"},"
          "\"https://index.docker.io/v1/\":{\"auth\":\"aHViOnB3\"},"
          "\"r.io\":{\"username\":\"u\",\"password\":\"p\"}}}",
          f);
    fclose(f);
    assert_int_equal(oci_auth_lookup(cfg, "127.0.0.1:5000", &basic, &err), 0);
    assert_string_equal(basic, "YTpi");
    free(basic);
    assert_int_equal(oci_auth_lookup(cfg, "docker.io", &basic, &err), 0);
    assert_string_equal(basic, "aHViOnB3");
    free(basic);
    assert_int_equal(oci_auth_lookup(cfg, "r.io", &basic, &err), 0);
    assert_string_equal(basic, "dTpw"); /* base64("u:p") */
    free(basic);
    assert_int_equal(oci_auth_lookup(cfg, "other.io", &basic, &err), 0);
    assert_null(basic);
    f = fopen(cfg, "w");
    fputs("{not json", f);
    fclose(f);
    assert_int_equal(oci_auth_lookup(cfg, "r.io", &basic, &err), -EINVAL);
    tp_err_clear(&err);
    assert_int_equal(fs_rm_rf(dir, NULL), 0);
    free(cfg);
    free(dir);
}

static void
test_insecure(void **state)
{
    char *list[] = { (char *)"reg.local:5000", (char *)"plain.io", NULL };
    struct oci_registry_conf conf = { .insecure = list };
    (void)state;

    assert_true(oci_registry_insecure(&conf, "reg.local:5000"));
    assert_false(oci_registry_insecure(&conf, "reg.local:5001"));
    assert_true(oci_registry_insecure(&conf, "plain.io:443")); /* a bare host covers its ports */
    assert_true(oci_registry_insecure(&conf, "127.0.0.5:80"));
    assert_true(oci_registry_insecure(&conf, "localhost:5000"));
    assert_true(oci_registry_insecure(&conf, "[::1]:5000"));
    assert_false(oci_registry_insecure(&conf, "docker.io"));
    assert_false(oci_registry_insecure(NULL, "128.0.0.1:5000"));
    /* a token realm: its own host decides, not the registry's */
    assert_true(oci_registry_insecure_url(&conf, "https://reg.local:5000/token?x=1"));
    assert_false(oci_registry_insecure_url(&conf, "https://auth.example.com/token"));
    assert_false(oci_registry_insecure_url(&conf, "https://reg.local:5001/token"));
    assert_true(oci_registry_insecure_url(&conf, "http://127.0.0.1:8080/token"));
    assert_true(oci_registry_insecure_url(&conf, "https://[::1]:8443/t"));
    assert_true(oci_registry_insecure_url(&conf, "https://plain.io/t"));
    assert_false(oci_registry_insecure_url(&conf, "not a url"));
    assert_true(oci_registry_host_valid("reg.local:5000"));
    assert_true(oci_registry_host_valid("10.0.0.1"));
    assert_false(oci_registry_host_valid("reg.local/x"));
    assert_false(oci_registry_host_valid("bad host"));
    assert_false(oci_registry_host_valid(""));
}

static void
test_ingest_resume_and_verify(void **state)
{
    char *dir = make_tmpdir();
    static const char data[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char *digest = oci_digest_of(data, strlen(data));
    struct oci_ingest *in = NULL;
    struct tp_err err = { 0 };
    int64_t have = -1;
    (void)state;

    assert_int_equal(oci_layout_init(dir, &err), 0);
    /* a first attempt stops after 10 bytes: the partial stays */
    assert_int_equal(oci_ingest_open(dir, digest, (int64_t)strlen(data), true, &in, &have, &err),
                     0);
    assert_int_equal(have, 0);
    assert_int_equal(oci_ingest_write(in, data, 10, &err), 0);
    oci_ingest_close(in, false);
    assert_false(oci_blob_exists(dir, digest));
    /* the second resumes from the re-hashed 10 bytes */
    assert_int_equal(oci_ingest_open(dir, digest, (int64_t)strlen(data), true, &in, &have, &err),
                     0);
    assert_int_equal(have, 10);
    assert_int_equal(oci_ingest_write(in, data + 10, strlen(data) - 10, &err), 0);
    /* more than the descriptor says is refused */
    assert_int_equal(oci_ingest_write(in, "x", 1, &err), -EIO);
    tp_err_clear(&err);
    assert_int_equal(oci_ingest_commit(in, &err), 0);
    oci_ingest_close(in, false);
    assert_true(oci_blob_exists(dir, digest));

    /* wrong content: refused, nothing in blobs/, no partial left */
    char *other = oci_digest_of("other", 5);
    assert_int_equal(oci_ingest_open(dir, other, 5, false, &in, NULL, &err), 0);
    assert_int_equal(oci_ingest_write(in, "OTHER", 5, &err), 0);
    assert_int_equal(oci_ingest_commit(in, &err), -EIO);
    assert_non_null(strstr(tp_err_msg(&err), "digest mismatch"));
    tp_err_clear(&err);
    oci_ingest_close(in, false);
    assert_false(oci_blob_exists(dir, other));
    char *partial = xasprintf("%s/ingest/%s.partial", dir, oci_digest_hex(other));
    assert_false(fs_exists(partial));
    /* short: "truncated" */
    assert_int_equal(oci_ingest_open(dir, other, 5, false, &in, NULL, &err), 0);
    assert_int_equal(oci_ingest_write(in, "oth", 3, &err), 0);
    assert_int_equal(oci_ingest_commit(in, &err), -EIO);
    assert_non_null(strstr(tp_err_msg(&err), "truncated: got 3 of 5"));
    tp_err_clear(&err);
    oci_ingest_close(in, false);
    assert_false(fs_exists(partial));

    assert_int_equal(fs_rm_rf(dir, NULL), 0);
    free(partial);
    free(other);
    free(digest);
    free(dir);
}

static void
test_docker_save_manifest(void **state)
{
    struct oci_save_image *v = NULL;
    struct tp_err err = { 0 };
    size_t n = 0;
    (void)state;

    static const char ok[] = "[{\"Config\":\"c.json\",\"RepoTags\":[\"busybox:latest\"],"
                             "\"Layers\":[\"a/layer.tar\",\"b/layer.tar\"]},"
                             "{\"Config\":\"d.json\",\"RepoTags\":null,\"Layers\":[]}]";
    assert_int_equal(oci_docker_save_parse(ok, strlen(ok), &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].config, "c.json");
    assert_string_equal(v[0].layers[1], "b/layer.tar");
    assert_null(v[0].layers[2]);
    assert_string_equal(v[0].repo_tags[0], "busybox:latest");
    assert_null(v[1].repo_tags[0]);
    oci_save_images_free(v, n);
    static const char *const bad[] = { "[]", "{}", "[{\"Layers\":[]}]",
                                       "[{\"Config\":\"c\",\"Layers\":[1]}]",
                                       "[{\"Config\":\"c\",\"Layers\":[],\"RepoTags\":\"x\"}]" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(oci_docker_save_parse(bad[i], strlen(bad[i]), &v, &n, &err), -EINVAL);
        tp_err_clear(&err);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_normalize),
        cmocka_unit_test(test_ref_errors),
        cmocka_unit_test(test_ref_familiar),
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_manifest_oci_and_docker),
        cmocka_unit_test(test_manifest_errors),
        cmocka_unit_test(test_index_select),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_challenge),
        cmocka_unit_test(test_auth_lookup),
        cmocka_unit_test(test_insecure),
        cmocka_unit_test(test_ingest_resume_and_verify),
        cmocka_unit_test(test_docker_save_manifest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
