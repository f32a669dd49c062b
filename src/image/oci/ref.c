/* Image references parsed and normalized by docker's rules (distribution/reference grammar). */
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "oci.h"
#include "util/xalloc.h"

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN  128

bool
oci_digest_valid(const char *digest)
{
    if (!digest || strncmp(digest, "sha256:", 7) != 0)
        return false;
    const char *h = digest + 7;
    size_t n = 0;
    for (; h[n]; n++)
        if (!(isdigit((unsigned char)h[n]) || (h[n] >= 'a' && h[n] <= 'f')))
            return false;
    return n == 64;
}

const char *
oci_digest_hex(const char *digest)
{
    return oci_digest_valid(digest) ? digest + 7 : NULL;
}

char *
oci_digest_of(const void *data, size_t len)
{
    unsigned char md[32];
    unsigned int n = 0;
    char *s = xmalloc(7 + 64 + 1);

    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        abort(); /* SHA-256 of memory fails only when libcrypto is broken */
    memcpy(s, "sha256:", 7);
    for (unsigned i = 0; i < 32; i++)
        snprintf(s + 7 + 2 * i, 3, "%02x", md[i]);
    return s;
}

void
oci_ref_free(struct oci_ref *r)
{
    if (!r)
        return;
    free(r->registry);
    free(r->repository);
    free(r->tag);
    free(r->digest);
    free(r->full);
    *r = (struct oci_ref){ 0 };
}

char *
oci_ref_name(const struct oci_ref *r)
{
    return xasprintf("%s/%s", r->registry, r->repository);
}

char *
oci_ref_familiar_name(const struct oci_ref *r)
{
    if (strcmp(r->registry, "docker.io") != 0)
        return oci_ref_name(r);
    if (strncmp(r->repository, "library/", 8) == 0 && !strchr(r->repository + 8, '/'))
        return xstrdup(r->repository + 8);
    return xstrdup(r->repository);
}

static bool
is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)* over [s, s+n). */
static bool
path_component_valid(const char *s, size_t n)
{
    size_t i = 0;

    if (n == 0 || !is_lower_alnum(s[0]))
        return false;
    while (i < n) {
        while (i < n && is_lower_alnum(s[i]))
            i++;
        if (i == n)
            return true;
        /* a separator, then at least one alnum */
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < n && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == n || !is_lower_alnum(s[i]))
            return false;
    }
    return true;
}

static bool
path_valid(const char *p)
{
    const char *s = p;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (!path_component_valid(s, n))
            return false;
        if (!slash)
            return true;
        s = slash + 1;
    }
}

/* domain: label(.label)* [:port], labels [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?, or [ipv6][:port].
 */
static bool
domain_valid(const char *d)
{
    const char *port = NULL;

    if (d[0] == '[') {
        const char *end = strchr(d, ']');
        if (!end || end == d + 1)
            return false;
        for (const char *c = d + 1; c < end; c++)
            if (!isxdigit((unsigned char)*c) && *c != ':')
                return false;
        if (end[1] == '\0')
            return true;
        if (end[1] != ':')
            return false;
        port = end + 2;
    } else {
        const char *c = d;
        for (;;) {
            const char *start = c;
            while (isalnum((unsigned char)*c) || *c == '-')
                c++;
            if (c == start || start[0] == '-' || c[-1] == '-')
                return false;
            if (*c == '.') {
                c++;
                continue;
            }
            break;
        }
        if (*c == '\0')
            return true;
        if (*c != ':')
            return false;
        port = c + 1;
    }
    if (!*port)
        return false;
    for (const char *c = port; *c; c++)
        if (!isdigit((unsigned char)*c))
            return false;
    return true;
}

static bool
tag_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > TAG_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        bool word = isalnum((unsigned char)c) || c == '_';
        if (!word && (i == 0 || (c != '.' && c != '-')))
            return false;
    }
    return true;
}

static bool
is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isdigit((unsigned char)s[n]) && !(s[n] >= 'a' && s[n] <= 'f'))
            return false;
    return n == 64;
}

static int
digest_check(const char *d, struct tp_err *err)
{
    const char *colon = strchr(d, ':');
    if (!colon || colon == d)
        return tp_err_set(err, -EINVAL, "invalid reference format: invalid digest '%s'", d);
    if ((size_t)(colon - d) != 6 || strncmp(d, "sha256", 6) != 0)
        return tp_err_set(err, -EINVAL,
                          "invalid reference format: unsupported digest algorithm in '%s'", d);
    if (!oci_digest_valid(d))
        return tp_err_set(err, -EINVAL,
                          "invalid reference format: invalid checksum digest format in '%s'", d);
    return 0;
}

int
oci_ref_parse(const char *s, struct oci_ref *ret, struct tp_err *err)
{
    _cleanup_free_ char *name = NULL, *tag = NULL, *digest = NULL, *registry = NULL, *repo = NULL;
    const char *at, *slash, *colon, *rest;
    int r;

    if (!s || !*s)
        return tp_err_set(err, -EINVAL, "invalid reference format: empty reference");
    if (strlen(s) > 4096)
        return tp_err_set(err, -EINVAL, "invalid reference format: reference too long");
    if (is_hex64(s))
        return tp_err_set(err, -EINVAL,
                          "invalid repository name (%s), cannot specify 64-byte hexadecimal "
                          "strings",
                          s);

    at = strchr(s, '@');
    if (at) {
        digest = xstrdup(at + 1);
        r = digest_check(digest, err);
        if (r < 0)
            return r;
        name = xstrndup(s, (size_t)(at - s));
    } else {
        name = xstrdup(s);
    }
    slash = strrchr(name, '/');
    colon = strrchr(name, ':');
    if (colon && (!slash || colon > slash)) {
        tag = xstrdup(colon + 1);
        name[colon - name] = '\0';
        if (!tag_valid(tag))
            return tp_err_set(err, -EINVAL, "invalid reference format: invalid tag '%s'", tag);
    }
    if (!*name)
        return tp_err_set(err, -EINVAL, "invalid reference format: empty repository name");

    /* docker's splitDockerDomain: the first component is a registry when it has '.' or ':',
     * is "localhost", or has an uppercase letter. */
    slash = strchr(name, '/');
    bool has_domain = false;
    if (slash) {
        _cleanup_free_ char *first = xstrndup(name, (size_t)(slash - name));
        has_domain = strpbrk(first, ".:") || strcmp(first, "localhost") == 0;
        for (const char *c = first; *c && !has_domain; c++)
            if (isupper((unsigned char)*c))
                has_domain = true;
        if (has_domain)
            registry = TAKE_PTR(first);
    }
    rest = has_domain ? slash + 1 : name;
    if (!registry)
        registry = xstrdup("docker.io");
    else if (!domain_valid(registry))
        return tp_err_set(err, -EINVAL, "invalid reference format: invalid registry '%s'",
                          registry);
    if (strcmp(registry, "index.docker.io") == 0) {
        free(registry);
        registry = xstrdup("docker.io");
    }
    if (strcmp(registry, "docker.io") == 0 && !strchr(rest, '/'))
        repo = xasprintf("library/%s", rest);
    else
        repo = xstrdup(rest);

    for (const char *c = repo; *c; c++)
        if (isupper((unsigned char)*c))
            return tp_err_set(err, -EINVAL,
                              "invalid reference format: repository name (%s) must be lowercase",
                              repo);
    if (!path_valid(repo))
        return tp_err_set(err, -EINVAL, "invalid reference format: invalid repository name '%s'",
                          rest);
    if (strlen(registry) + 1 + strlen(repo) > NAME_MAX_LEN)
        return tp_err_set(err, -EINVAL,
                          "invalid reference format: repository name must not be more than %d "
                          "characters",
                          NAME_MAX_LEN);
    if (!tag && !digest)
        tag = xstrdup("latest");

    char *full = xasprintf("%s/%s%s%s%s%s", registry, repo, tag ? ":" : "", tag ? tag : "",
                           digest ? "@" : "", digest ? digest : "");
    *ret = (struct oci_ref){
        .full = full,
        .registry = TAKE_PTR(registry),
        .repository = TAKE_PTR(repo),
        .tag = TAKE_PTR(tag),
        .digest = TAKE_PTR(digest),
    };
    return 0;
}
