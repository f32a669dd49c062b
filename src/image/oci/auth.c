/* Registry authentication: WWW-Authenticate challenges and docker-style config.json credentials. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "oci-internal.h"
#include "util/fs.h"
#include "util/xalloc.h"

#define CONFIG_MAX (1u << 20)

void
oci_challenge_done(struct oci_challenge *c)
{
    if (!c)
        return;
    free(c->scheme);
    free(c->realm);
    free(c->service);
    free(c->scope);
    *c = (struct oci_challenge){ 0 };
}

/* One auth-param value: a token or a quoted-string with backslash escapes. */
static const char *
parse_value(const char *p, char **ret)
{
    size_t cap = strlen(p) + 1, n = 0;
    char *v = xmalloc(cap);

    if (*p == '"') {
        p++;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1])
                p++;
            v[n++] = *p++;
        }
        if (*p != '"') {
            free(v);
            return NULL;
        }
        p++;
    } else {
        while (*p && *p != ',' && !isspace((unsigned char)*p))
            v[n++] = *p++;
    }
    v[n] = '\0';
    *ret = v;
    return p;
}

int
oci_challenge_parse(const char *h, struct oci_challenge *ret, struct tp_err *err)
{
    struct oci_challenge c = { 0 };
    const char *p = h, *s;

    while (isspace((unsigned char)*p))
        p++;
    s = p;
    while (*p && !isspace((unsigned char)*p) && *p != ',')
        p++;
    if (p == s)
        return tp_err_set(err, -EPROTO, "empty WWW-Authenticate challenge");
    c.scheme = xstrndup(s, (size_t)(p - s));
    for (char *q = c.scheme; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    for (;;) {
        _cleanup_free_ char *key = NULL, *val = NULL;
        while (isspace((unsigned char)*p) || *p == ',')
            p++;
        if (!*p)
            break;
        s = p;
        while (*p && *p != '=' && *p != ',' && !isspace((unsigned char)*p))
            p++;
        key = xstrndup(s, (size_t)(p - s));
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=') {
            oci_challenge_done(&c);
            return tp_err_set(err, -EPROTO, "malformed WWW-Authenticate challenge: '%.200s'", h);
        }
        p++;
        while (isspace((unsigned char)*p))
            p++;
        p = parse_value(p, &val);
        if (!p) {
            oci_challenge_done(&c);
            return tp_err_set(err, -EPROTO, "unterminated quote in WWW-Authenticate: '%.200s'", h);
        }
        char **slot = strcasecmp(key, "realm") == 0     ? &c.realm
                      : strcasecmp(key, "service") == 0 ? &c.service
                      : strcasecmp(key, "scope") == 0   ? &c.scope
                                                        : NULL;
        if (slot) {
            free(*slot);
            *slot = TAKE_PTR(val);
        }
    }
    if (strcmp(c.scheme, "bearer") == 0 && (!c.realm || !*c.realm)) {
        oci_challenge_done(&c);
        return tp_err_set(err, -EPROTO, "Bearer challenge without a realm: '%.200s'", h);
    }
    *ret = c;
    return 0;
}

static char *
base64(const char *s)
{
    size_t n = strlen(s);
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

/* "host" from a config.json key: "https://host/v1/" -> "host". */
static char *
key_host(const char *k)
{
    const char *s = strstr(k, "://");
    s = s ? s + 3 : k;
    return xstrndup(s, strcspn(s, "/"));
}

int
oci_auth_lookup(const char *config_path, const char *registry, char **ret_basic, struct tp_err *err)
{
    _cleanup_free_ char *data = NULL;
    json_error_t jerr;
    json_t *j, *auths, *v;
    const char *k;
    size_t len;
    char *found = NULL;
    int r;

    *ret_basic = NULL;
    if (!config_path)
        return 0;
    r = fs_read_file(config_path, CONFIG_MAX, &data, &len, err);
    if (r == -ENOENT) {
        tp_err_clear(err);
        return 0;
    }
    if (r < 0)
        return tp_err_wrap(err, "read registry credentials");
    j = json_loadb(data, len, 0, &jerr);
    if (!j)
        return tp_err_set(err, -EINVAL, "parse '%s': %s", config_path, jerr.text);
    auths = json_object_get(j, "auths");
    json_object_foreach(auths, k, v)
    {
        _cleanup_free_ char *h = key_host(k);
        bool hub = strcmp(registry, "docker.io") == 0 &&
                   (strcmp(h, "index.docker.io") == 0 || strcmp(h, "registry-1.docker.io") == 0);
        if (strcmp(h, registry) != 0 && !hub)
            continue;
        json_t *a = json_object_get(v, "auth");
        json_t *u = json_object_get(v, "username"), *p = json_object_get(v, "password");
        if (json_is_string(a) && *json_string_value(a)) {
            found = xstrdup(json_string_value(a));
        } else if (json_is_string(u) && json_is_string(p)) {
            _cleanup_free_ char *up =
                xasprintf("%s:%s", json_string_value(u), json_string_value(p));
            found = base64(up);
        }
        if (found)
            break;
    }
    json_decref(j);
    *ret_basic = found;
    return 0;
}

char *
oci_auth_default_config(void)
{
    const char *d = getenv("DOCKER_CONFIG");
    const char *home = getenv("HOME");
    if (d && *d)
        return xasprintf("%s/config.json", d);
    if (home && *home)
        return xasprintf("%s/.docker/config.json", home);
    return NULL;
}
