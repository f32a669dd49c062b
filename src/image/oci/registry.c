/* The registry client (Distribution API v2 over libcurl): ping, bearer/basic auth, manifests
 * with every Accept type, blobs streamed into ingest with Range resume. */
#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "oci-internal.h"
#include "util/failpoint.h"
#include "util/xalloc.h"

#define MANIFEST_MAX  (4u << 20)
#define ERRBODY_MAX   (64u << 10)
#define TOKEN_MAX     (1u << 20)
#define CONNECT_S     10L
#define LOW_SPEED_S   60L /* a stalled transfer (under 1 KiB/s this long) fails */
#define PROGRESS_NS   100000000LL
#define FAILPOINT_MIN (1 << 20)

struct oci_reg {
    char *registry; /* as in the reference, e.g. docker.io, 127.0.0.1:5000 */
    char *base;     /* "https://registry-1.docker.io" */
    char *repo;
    bool tls_noverify;
    char **insecure; /* a copy of the conf's list: a token realm elsewhere is checked on its own */
    char *basic;     /* base64 user:pass from the credentials file, or NULL */
    pthread_mutex_t lock;
    char *authz; /* "Authorization: ..." header line, guarded by lock */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

bool
oci_registry_host_valid(const char *s)
{
    struct oci_ref r = { 0 };
    _cleanup_free_ char *probe = NULL;
    bool ok;

    if (!s || !*s || strchr(s, '/'))
        return false;
    probe = xasprintf("%s/x", s);
    ok = oci_ref_parse(probe, &r, NULL) == 0 && strcmp(r.registry, s) == 0;
    oci_ref_free(&r);
    return ok;
}

/* The host part of host[:port] or [v6]:port. */
static char *
host_of(const char *registry)
{
    if (registry[0] == '[') {
        const char *e = strchr(registry, ']');
        return xstrndup(registry + 1, e ? (size_t)(e - registry - 1) : strlen(registry) - 1);
    }
    return xstrndup(registry, strcspn(registry, ":"));
}

bool
oci_registry_insecure(const struct oci_registry_conf *conf, const char *registry)
{
    _cleanup_free_ char *host = host_of(registry);
    struct in_addr a4;
    struct in6_addr a6;

    strv_foreach (s, conf ? conf->insecure : NULL)
        if (strcmp(*s, registry) == 0 || strcmp(*s, host) == 0)
            return true;
    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127)
        return true;
    if (inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6))
        return true;
    return false;
}

bool
oci_registry_insecure_url(const struct oci_registry_conf *conf, const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    bool insecure = false;

    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        _cleanup_free_ char *hp = NULL;
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
            port = NULL;
        hp = port ? xasprintf("%s:%s", host, port) : xstrdup(host);
        insecure = oci_registry_insecure(conf, hp);
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return insecure;
}

struct oci_reg *
oci_reg_free(struct oci_reg *g)
{
    if (!g)
        return NULL;
    free(g->registry);
    free(g->base);
    free(g->repo);
    strv_free(g->insecure);
    free(g->basic);
    free(g->authz);
    pthread_mutex_destroy(&g->lock);
    free(g);
    return NULL;
}

/* ------------------------------------------------------------------ one request */

struct resp {
    long status;
    char *www_auth, *content_type, *docker_digest, *content_range;
    char *body; /* gathered when no sink */
    size_t len, max;
    bool overflow;
};

static void
resp_done(struct resp *r)
{
    free(r->www_auth);
    free(r->content_type);
    free(r->docker_digest);
    free(r->content_range);
    free(r->body);
    *r = (struct resp){ 0 };
}

static void
set_hdr(char **slot, const char *v, size_t n)
{
    while (n && isspace((unsigned char)*v))
        v++, n--;
    while (n && isspace((unsigned char)v[n - 1]))
        n--;
    free(*slot);
    *slot = xstrndup(v, n);
}

static size_t
header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    struct resp *r = ud;
    size_t n = size * nitems;
    const char *colon = memchr(buf, ':', n);

    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response (after a redirect or 100): forget the previous one's headers; the
         * status is known before the first body byte (a blob sink needs it) */
        const char *sp = memchr(buf, ' ', n);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->www_auth = mfree(r->www_auth);
        r->content_type = mfree(r->content_type);
        r->docker_digest = mfree(r->docker_digest);
        r->content_range = mfree(r->content_range);
        return n;
    }
    if (!colon)
        return n;
    size_t kl = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vl = n - kl - 1;
#define IS(k) (kl == strlen(k) && strncasecmp(buf, k, kl) == 0)
    if (IS("www-authenticate") && !r->www_auth)
        set_hdr(&r->www_auth, v, vl);
    else if (IS("content-type"))
        set_hdr(&r->content_type, v, vl);
    else if (IS("docker-content-digest"))
        set_hdr(&r->docker_digest, v, vl);
    else if (IS("content-range"))
        set_hdr(&r->content_range, v, vl);
#undef IS
    return n;
}

static size_t
body_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    struct resp *r = ud;
    size_t n = size * nitems;

    if (r->len + n > r->max) {
        r->overflow = true;
        return 0;
    }
    r->body = xrealloc(r->body, r->len + n + 1);
    memcpy(r->body + r->len, buf, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

struct sink {
    curl_write_callback fn;
    void *ud;
    long *status; /* where the sink learns the status before its first byte */
};

static int
curl_fail(CURLcode c, const char *errbuf, const char *url, struct tp_err *err)
{
    int code = c == CURLE_COULDNT_CONNECT || c == CURLE_COULDNT_RESOLVE_HOST ? -ECONNREFUSED
               : c == CURLE_OPERATION_TIMEDOUT                               ? -ETIMEDOUT
               : c == CURLE_WRITE_ERROR                                      ? -EIO
                                                                             : -EPROTO;
    return tp_err_set(err, code, "GET '%s': %s", url, *errbuf ? errbuf : curl_easy_strerror(c));
}

/* GET url with the given extra headers; body gathered into r (bounded by r->max) unless sink. */
static int
http_get(const struct oci_reg *g, bool noverify, const char *url, struct curl_slist *hdrs,
         const struct sink *sink, struct resp *r, CURLcode *ret_code, struct tp_err *err)
{
    CURL *h;
    CURLcode c;
    char errbuf[CURL_ERROR_SIZE] = "";

    pthread_once(&curl_once, curl_init_once);
    h = curl_easy_init();
    if (!h)
        return tp_err_set(err, -ENOMEM, "initialise libcurl");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L); /* blobs redirect to storage */
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    /* the Authorization header is for the registry: libcurl (>= 7.83) drops it when a redirect
     * changes host, port or scheme, unless told otherwise (test_oci_registry pins this down) */
    curl_easy_setopt(h, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_S);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "torpor/0.1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (noverify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (sink) {
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink->fn);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, sink->ud);
    } else {
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    }
    (void)g;
    c = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(h);
    if (ret_code)
        *ret_code = c;
    if (c != CURLE_OK) {
        if (r->overflow)
            return tp_err_set(err, -EFBIG, "GET '%s': reply larger than %zu bytes", url, r->max);
        return curl_fail(c, errbuf, url, err);
    }
    return 0;
}

/* The registry's error body ({"errors":[{"code","message"}]}) as "message: message", else
 * "HTTP <status>". Caller frees. */
static char *
registry_error_text(const struct resp *r)
{
    json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    json_t *errs = json_object_get(j, "errors");
    size_t cap = 0, len = 0;
    char *out = NULL;
    size_t i;
    json_t *e;

    json_array_foreach(errs, i, e)
    {
        json_t *m = json_object_get(e, "message"), *c = json_object_get(e, "code");
        _cleanup_free_ char *code = NULL, *text = NULL;
        if (i >= 8 || (!json_is_string(m) && !json_is_string(c)))
            continue;
        /* as docker prints them: "manifest unknown: manifest unknown" (the code in words) */
        if (json_is_string(c)) {
            code = xstrndup(json_string_value(c), 100);
            for (char *q = code; *q; q++)
                *q = *q == '_' ? ' ' : (char)tolower((unsigned char)*q);
        }
        text = code && json_is_string(m) ? xasprintf("%s: %.500s", code, json_string_value(m))
                                         : xstrdup(code ? code : json_string_value(m));
        size_t n = strlen(text) + 3;
        if (len + n + 1 > cap)
            out = xrealloc(out, cap = (len + n + 1) * 2);
        len += (size_t)sprintf(out + len, "%s%s", len ? "; " : "", text);
    }
    json_decref(j);
    return out ? out : xasprintf("HTTP %ld", r->status);
}

static int
status_error(const struct resp *r, const char *what, struct tp_err *err)
{
    _cleanup_free_ char *text = registry_error_text(r);
    int code = r->status == 404                       ? -ENOENT
               : r->status == 401 || r->status == 403 ? -EACCES
               : r->status == 429                     ? -EAGAIN
                                                      : -EIO;
    if (!what)
        return tp_err_set(err, code, "%s", text);
    return tp_err_set(err, code, "%s: %s", what, text);
}

/* ------------------------------------------------------------------ auth */

static int
fetch_token(struct oci_reg *g, const struct oci_challenge *ch, struct tp_err *err)
{
    CURL *esc;
    _cleanup_free_ char *url = NULL, *scope = NULL, *service = NULL;
    struct curl_slist *hdrs = NULL;
    struct resp r = { .max = TOKEN_MAX };
    json_t *j, *tok;
    int ret;

    pthread_once(&curl_once, curl_init_once);
    esc = curl_easy_init();
    if (!esc)
        return tp_err_set(err, -ENOMEM, "initialise libcurl");
    {
        _cleanup_free_ char *raw_scope = xasprintf("repository:%s:pull", g->repo);
        char *s = curl_easy_escape(esc, raw_scope, 0);
        scope = xstrdup(s);
        curl_free(s);
        if (ch->service) {
            s = curl_easy_escape(esc, ch->service, 0);
            service = xstrdup(s);
            curl_free(s);
        }
    }
    curl_easy_cleanup(esc);
    url = xasprintf("%s%sscope=%s%s%s", ch->realm, strchr(ch->realm, '?') ? "&" : "?", scope,
                    service ? "&service=" : "", service ? service : "");
    if (g->basic) {
        _cleanup_free_ char *line = xasprintf("Authorization: Basic %s", g->basic);
        hdrs = curl_slist_append(hdrs, line);
    }
    /* the realm may be another host: the registry's being insecure does not make it so (the
     * stored credentials go there) */
    ret = http_get(g,
                   oci_registry_insecure_url(&(struct oci_registry_conf){ .insecure = g->insecure },
                                             ch->realm),
                   url, hdrs, NULL, &r, NULL, err);
    curl_slist_free_all(hdrs);
    if (ret < 0) {
        resp_done(&r);
        return tp_err_wrap(err, "get a registry token");
    }
    if (r.status != 200) {
        ret = status_error(&r, "get a registry token", err);
        resp_done(&r);
        return ret;
    }
    j = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
    tok = json_object_get(j, "token");
    if (!json_is_string(tok))
        tok = json_object_get(j, "access_token");
    if (!json_is_string(tok) || !*json_string_value(tok)) {
        json_decref(j);
        resp_done(&r);
        return tp_err_set(err, -EPROTO, "token server '%s' answered without a token", ch->realm);
    }
    pthread_mutex_lock(&g->lock);
    free(g->authz);
    g->authz = xasprintf("Authorization: Bearer %s", json_string_value(tok));
    pthread_mutex_unlock(&g->lock);
    json_decref(j);
    resp_done(&r);
    return 0;
}

/* React to a 401's challenge: a token for Bearer, the stored credentials for Basic. */
static int
authenticate(struct oci_reg *g, const char *www_auth, struct tp_err *err)
{
    struct oci_challenge ch = { 0 };
    int r;

    if (!www_auth)
        return tp_err_set(err, -EACCES, "unauthorized: the registry sent no challenge");
    r = oci_challenge_parse(www_auth, &ch, err);
    if (r < 0)
        return r;
    if (strcmp(ch.scheme, "bearer") == 0) {
        r = fetch_token(g, &ch, err);
    } else if (strcmp(ch.scheme, "basic") == 0) {
        if (!g->basic) {
            r = tp_err_set(err, -EACCES,
                           "unauthorized: authentication required (no credentials for '%s' in "
                           "the registry config)",
                           g->registry);
        } else {
            pthread_mutex_lock(&g->lock);
            free(g->authz);
            g->authz = xasprintf("Authorization: Basic %s", g->basic);
            pthread_mutex_unlock(&g->lock);
            r = 0;
        }
    } else {
        r = tp_err_set(err, -EOPNOTSUPP, "unsupported authentication scheme '%s'", ch.scheme);
    }
    oci_challenge_done(&ch);
    return r;
}

/* A GET with the current authorization; on 401, authenticate once and retry. */
static int
reg_get(struct oci_reg *g, const char *path, const char *const *extra, const struct sink *sink,
        struct resp *r, struct tp_err *err)
{
    _cleanup_free_ char *url = xasprintf("%s%s", g->base, path);
    size_t max = r->max;
    int ret;

    for (int attempt = 0;; attempt++) {
        struct curl_slist *hdrs = NULL;
        for (size_t i = 0; extra && extra[i]; i++)
            hdrs = curl_slist_append(hdrs, extra[i]);
        pthread_mutex_lock(&g->lock);
        if (g->authz)
            hdrs = curl_slist_append(hdrs, g->authz);
        pthread_mutex_unlock(&g->lock);
        resp_done(r);
        r->max = max;
        ret = http_get(g, g->tls_noverify, url, hdrs, sink, r, NULL, err);
        curl_slist_free_all(hdrs);
        if (ret < 0)
            return ret;
        if (r->status != 401 || attempt > 0)
            return 0;
        ret = authenticate(g, r->www_auth, err);
        if (ret < 0)
            return ret;
    }
}

int
oci_reg_open(const struct oci_registry_conf *conf, const struct oci_ref *ref, struct oci_reg **ret,
             struct tp_err *err)
{
    _cleanup_(oci_reg_freep) struct oci_reg *g = xnew(struct oci_reg, 1);
    _cleanup_free_ char *cfg = NULL;
    const char *host =
        strcmp(ref->registry, "docker.io") == 0 ? "registry-1.docker.io" : ref->registry;
    bool insecure = oci_registry_insecure(conf, ref->registry);
    struct resp r = { .max = ERRBODY_MAX };
    int rc;

    pthread_mutex_init(&g->lock, NULL);
    g->registry = xstrdup(ref->registry);
    g->repo = xstrdup(ref->repository);
    g->insecure = conf && conf->insecure ? xstrv_dup(conf->insecure) : NULL;
    cfg = conf && conf->auth_config ? xstrdup(conf->auth_config) : oci_auth_default_config();
    rc = oci_auth_lookup(cfg, ref->registry, &g->basic, err);
    if (rc < 0)
        return rc;

    /* HTTPS first; an insecure registry (as dockerd: TLS unverified, then plain HTTP). */
    g->base = xasprintf("https://%s", host);
    g->tls_noverify = insecure;
    rc = reg_get(g, "/v2/", NULL, NULL, &r, err);
    if (rc < 0 && insecure) {
        tp_err_clear(err);
        free(g->base);
        g->base = xasprintf("http://%s", host);
        rc = reg_get(g, "/v2/", NULL, NULL, &r, err);
    }
    if (rc < 0) {
        resp_done(&r);
        return tp_err_wrap(err, "connect to registry '%s'", ref->registry);
    }
    if (r.status != 200 && r.status != 404) {
        /* 404: not a v2 registry at /v2/, yet some proxies answer so; the manifest GET tells */
        rc = status_error(&r, "registry ping", err);
        resp_done(&r);
        return tp_err_wrap(err, "registry '%s'", ref->registry);
    }
    resp_done(&r);
    *ret = TAKE_PTR(g);
    return 0;
}

int
oci_reg_manifest(struct oci_reg *g, const char *reference, char **ret_body, size_t *ret_len,
                 char **ret_media_type, char **ret_digest, struct tp_err *err)
{
    static const char *const accept[] = {
        "Accept: " OCI_MT_MANIFEST ", " OCI_MT_INDEX ", " DOCKER_MT_MANIFEST ", " DOCKER_MT_LIST,
        NULL,
    };
    _cleanup_free_ char *path = xasprintf("/v2/%s/manifests/%s", g->repo, reference);
    _cleanup_free_ char *digest = NULL, *mt = NULL;
    struct resp r = { .max = MANIFEST_MAX };
    enum oci_kind kind;
    int rc;

    rc = reg_get(g, path, accept, NULL, &r, err);
    if (rc < 0)
        goto out;
    if (r.status != 200) {
        rc = status_error(&r, NULL, err);
        goto out;
    }
    digest = oci_digest_of(r.body ? r.body : "", r.len);
    if (oci_digest_valid(reference) && strcmp(reference, digest) != 0) {
        rc = tp_err_set(err, -EIO, "digest mismatch: manifest '%s' hashes to '%s'", reference,
                        digest);
        goto out;
    }
    if (r.docker_digest && oci_digest_valid(r.docker_digest) &&
        strcmp(r.docker_digest, digest) != 0) {
        rc = tp_err_set(err, -EIO,
                        "digest mismatch: Docker-Content-Digest '%s', manifest hashes to '%s'",
                        r.docker_digest, digest);
        goto out;
    }
    rc = oci_blob_kind(r.body ? r.body : "", r.len, &kind, &mt, err);
    if (rc < 0)
        goto out;
    *ret_body = TAKE_PTR(r.body);
    *ret_len = r.len;
    *ret_media_type = TAKE_PTR(mt);
    *ret_digest = TAKE_PTR(digest);
out:
    resp_done(&r);
    return rc;
}

/* ------------------------------------------------------------------ blobs */

struct blob_xfer {
    struct oci_ingest *in;
    const struct oci_desc *d;
    const long *status;
    struct resp *r;
    oci_progress_fn cb;
    void *ud;
    int64_t resumed;
    int64_t last_ns;
    bool started; /* the first body byte of a 2xx arrived */
    bool crash_checked;
    struct tp_err err;
};

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static size_t
blob_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    struct blob_xfer *x = ud;
    size_t n = size * nitems;

    if (x->r->status != 0 && x->r->status != 200 && x->r->status != 206) {
        /* an error body: keep it for the message (redirect bodies never get here) */
        return body_cb(buf, size, nitems, x->r);
    }
    if (!x->started) {
        x->started = true;
        if (x->r->status == 200 && oci_ingest_have(x->in) > 0) {
            /* the server ignored our Range: start over */
            if (oci_ingest_reset(x->in, &x->err) < 0)
                return 0;
            x->resumed = 0;
        } else if (x->r->status == 206) {
            long long from = -1;
            if (!x->r->content_range || sscanf(x->r->content_range, "bytes %lld-", &from) != 1 ||
                from != oci_ingest_have(x->in)) {
                tp_err_set(&x->err, -EPROTO, "registry answered Range with '%s'",
                           x->r->content_range ? x->r->content_range : "no Content-Range");
                return 0;
            }
        }
    }
    if (oci_ingest_write(x->in, buf, n, &x->err) < 0)
        return 0;
    int64_t have = oci_ingest_have(x->in);
    if (!x->crash_checked && x->d->size >= FAILPOINT_MIN && have >= x->d->size / 2) {
        x->crash_checked = true;
        if (failpoint("pull.blob-data") == FAILPOINT_CRASH)
            raise(SIGKILL); /* what was written is in the page cache: a process crash keeps it */
    }
    int64_t t = now_ns();
    if (x->cb && (t - x->last_ns >= PROGRESS_NS || have == x->d->size)) {
        x->last_ns = t;
        struct oci_progress p = { .digest = x->d->digest,
                                  .kind = OCI_PROGRESS_DOWNLOADING,
                                  .current = have,
                                  .total = x->d->size,
                                  .resumed = x->resumed };
        x->cb(&p, x->ud);
    }
    return n;
}

int
oci_reg_blob(struct oci_reg *g, const struct oci_desc *d, const char *layout_dir,
             oci_progress_fn cb, void *ud, struct tp_err *err)
{
    _cleanup_free_ char *path = xasprintf("/v2/%s/blobs/%s", g->repo, d->digest);
    struct oci_ingest *in = NULL;
    struct blob_xfer x = { .d = d, .cb = cb, .ud = ud };
    struct resp r = { .max = ERRBODY_MAX };
    int64_t have = 0;
    int rc;

    if (oci_blob_exists(layout_dir, d->digest)) {
        if (cb)
            cb(&(struct oci_progress){ .digest = d->digest,
                                       .kind = OCI_PROGRESS_EXISTS,
                                       .current = d->size,
                                       .total = d->size },
               ud);
        return 0;
    }
    rc = oci_ingest_open(layout_dir, d->digest, d->size, true, &in, &have, err);
    if (rc < 0)
        return rc;
    if (oci_blob_exists(layout_dir, d->digest)) {
        /* another pull finished it while we waited; a partial we may have created after its
         * rename is of no use */
        oci_ingest_close(in, true);
        return 0;
    }
    x.in = in;
    x.r = &r;
    x.resumed = have;

    rc = 0;
    for (int attempt = 0; attempt < 3 && have < d->size; attempt++) {
        _cleanup_free_ char *range =
            have > 0 ? xasprintf("Range: bytes=%lld-", (long long)have) : NULL;
        _cleanup_free_ char *url = xasprintf("%s%s", g->base, path);
        struct sink s = { .fn = blob_cb, .ud = &x };
        struct curl_slist *hdrs = NULL;
        CURLcode c = CURLE_OK;

        if (range)
            hdrs = curl_slist_append(hdrs, range);
        pthread_mutex_lock(&g->lock);
        if (g->authz)
            hdrs = curl_slist_append(hdrs, g->authz);
        pthread_mutex_unlock(&g->lock);
        resp_done(&r);
        r.max = ERRBODY_MAX;
        x.started = false;
        rc = http_get(g, g->tls_noverify, url, hdrs, &s, &r, &c, err);
        curl_slist_free_all(hdrs);
        if (rc < 0) {
            if (x.err.code) {
                /* a write error (disk full) or an oversized blob: drop the partial */
                tp_err_move(err, &x.err);
                rc = err ? err->code : -EIO;
                oci_ingest_close(in, true);
                resp_done(&r);
                return tp_err_wrap(err, "download blob '%s'", d->digest);
            }
            int64_t kept = oci_ingest_have(in);
            oci_ingest_close(in, false); /* kept: the next pull resumes from it */
            resp_done(&r);
            return tp_err_wrap(err, "download blob '%s' (%lld of %lld bytes kept)", d->digest,
                               (long long)kept, (long long)d->size);
        }
        if (r.status == 401 && attempt == 0) {
            rc = authenticate(g, r.www_auth, err);
            if (rc < 0)
                break;
            continue;
        }
        if (r.status == 416 && have > 0) {
            rc = oci_ingest_reset(in, err);
            if (rc < 0)
                break;
            have = 0;
            x.resumed = 0;
            continue;
        }
        if (r.status != 200 && r.status != 206)
            rc = status_error(&r, "blob", err);
        break;
    }
    if (rc < 0) {
        oci_ingest_close(in, false);
        resp_done(&r);
        return tp_err_wrap(err, "download blob '%s'", d->digest);
    }
    resp_done(&r);
    if (cb)
        cb(&(struct oci_progress){ .digest = d->digest,
                                   .kind = OCI_PROGRESS_VERIFYING,
                                   .current = oci_ingest_have(in),
                                   .total = d->size },
           ud);
    rc = oci_ingest_commit(in, err);
    oci_ingest_close(in, false);
    if (rc < 0)
        return tp_err_wrap(err, "download blob '%s'", d->digest);
    if (cb)
        cb(&(struct oci_progress){ .digest = d->digest,
                                   .kind = OCI_PROGRESS_COMPLETE,
                                   .current = d->size,
                                   .total = d->size,
                                   .resumed = x.resumed },
           ud);
    return 0;
}
