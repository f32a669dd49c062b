/* HTTP client for torpord: one libcurl easy handle per request over the Unix socket. */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/xalloc.h"

/* The host part is a placeholder: CURLOPT_UNIX_SOCKET_PATH decides where bytes go. */
#define CLIENT_URL_BASE "http://torpor"

/* Error bodies are small; a non-2xx reply to a stream is read whole up to this. */
#define CLIENT_ERROR_MAX (64u << 10)

enum xfer_mode {
    XFER_UNDECIDED,
    XFER_STREAM,
    XFER_BUFFER,
};

struct xfer {
    CURL *h;
    char *buf;
    size_t len, cap, max;
    bool too_big;
    enum xfer_mode mode;
    client_data_fn on_data; /* NULL: always buffer */
    void *userdata;
    struct tp_err *err;
    int cb_r;    /* on_data's failure, which aborted the transfer */
    bool upload; /* the request body is read from upload_fd to its end (chunked) */
    int upload_fd;
};

static size_t
xfer_read(char *buf, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;

    for (;;) {
        ssize_t n = read(x->upload_fd, buf, size * nmemb);
        if (n >= 0)
            return (size_t)n;
        if (errno != EINTR)
            return CURL_READFUNC_ABORT;
    }
}

static void
curl_cleanupp(CURL **h)
{
    if (*h)
        curl_easy_cleanup(*h);
}

static void
slist_freep(struct curl_slist **l)
{
    curl_slist_free_all(*l);
}

static size_t
xfer_write(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * nmemb;

    if (x->mode == XFER_UNDECIDED) {
        long status = 0;
        /* Headers are complete before the first body byte, so the status is known. */
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
        x->mode = x->on_data && status >= 200 && status < 300 ? XFER_STREAM : XFER_BUFFER;
    }
    if (x->mode == XFER_STREAM) {
        int r = x->on_data(data, len, x->userdata, x->err);
        if (r < 0) {
            x->cb_r = r;
            return len == 0 ? 1 : 0; /* any count but len makes curl stop */
        }
        return len;
    }
    if (len > x->max - x->len) {
        x->too_big = true;
        return 0;
    }
    if (x->len + len + 1 > x->cap) {
        x->cap = MAX(x->cap * 2, x->len + len + 1);
        x->buf = xrealloc(x->buf, x->cap);
    }
    memcpy(x->buf + x->len, data, len);
    x->len += len;
    x->buf[x->len] = '\0';
    return len;
}

int
client_unreachable(const char *socket, const char *reason, int code, struct tp_err *err)
{
    /* The socket is there but not ours to use: what to do, not "is torpord running?". */
    if (code == -EACCES)
        return tp_err_set(err, code,
                          "permission denied on torpord's socket '%s': run torpor as root, or "
                          "start torpord with --socket-group GROUP and join that group",
                          socket);
    return tp_err_set(err, code, "cannot reach torpord at '%s': %s (is torpord running?)", socket,
                      reason);
}

/* Run one transfer; returns 0 with the status once a reply arrived, the body in x. */
static int
xfer_perform(const char *socket, const char *method, const char *path, json_t *body, struct xfer *x,
             long *ret_status, struct tp_err *err)
{
    _cleanup_(curl_cleanupp) CURL *h = NULL;
    _cleanup_(slist_freep) struct curl_slist *headers = NULL;
    _cleanup_free_ char *url = NULL, *text = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc;

    if (strlen(socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
        return client_unreachable(socket, "socket path is too long", -ENAMETOOLONG, err);

    h = curl_easy_init();
    if (!h)
        return tp_err_set(err, -ENOMEM, "initialise libcurl");
    url = xasprintf("%s%s", CLIENT_URL_BASE, path);

    /* libcurl waits for "100 Continue" on bodies over 1 KiB; torpord never sends one. */
    headers = curl_slist_append(headers, "Expect:");
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text)
            return tp_err_set(err, -ENOMEM, "encode request body");
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (x->upload) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, xfer_read);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (!headers)
        return tp_err_set(err, -ENOMEM, "build request headers");

    curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, socket);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* an http_proxy in the environment is not ours */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, xfer_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "torpor/" TORPOR_VERSION);

    x->h = h;
    x->err = err;
    rc = curl_easy_perform(h);
    x->h = NULL;

    if (rc == CURLE_WRITE_ERROR && x->cb_r < 0)
        return x->cb_r;
    if (x->too_big)
        return tp_err_set(err, -EFBIG, "%s %s: reply from torpord is larger than %zu bytes", method,
                          path, x->max);
    if (rc == CURLE_COULDNT_CONNECT) {
        long os_errno = 0;
        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
        if (os_errno > 0)
            return client_unreachable(socket, strerror((int)os_errno), -(int)os_errno, err);
        return client_unreachable(socket, errbuf[0] ? errbuf : curl_easy_strerror(rc),
                                  -ECONNREFUSED, err);
    }
    if (rc != CURLE_OK)
        return tp_err_set(err, -EIO, "%s %s: talking to torpord at '%s' failed: %s", method, path,
                          socket, errbuf[0] ? errbuf : curl_easy_strerror(rc));

    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    *ret_status = status;
    return 0;
}

/* Parse a buffered body: NULL for an empty one; non-JSON is an error only on success
 * statuses (an error page from something else still yields "daemon answered HTTP N"). */
static int
parse_reply(const char *method, const char *path, long status, const struct xfer *x,
            json_t **ret_reply, struct tp_err *err)
{
    json_error_t jerr;
    json_t *j;

    if (x->len == 0) {
        *ret_reply = NULL;
        return 0;
    }
    j = json_loadb(x->buf, x->len, 0, &jerr);
    if (!j && status >= 200 && status < 300)
        return tp_err_set(err, -EPROTO, "%s %s: torpord sent invalid JSON: %s", method, path,
                          jerr.text);
    *ret_reply = j;
    return 0;
}

/* One buffered request: body is JSON (borrowed, NULL = none) or, when upload_fd >= 0, what
 * that fd reads to its end. */
static int
request(const char *socket, const char *method, const char *path, json_t *body, int upload_fd,
        long *ret_status, json_t **ret_reply, struct tp_err *err)
{
    struct xfer x = { .max = CLIENT_REPLY_MAX,
                      .mode = XFER_BUFFER,
                      .upload = upload_fd >= 0,
                      .upload_fd = upload_fd };
    _cleanup_free_ char *buf = NULL;
    json_t *reply = NULL;
    long status;
    int r;

    r = xfer_perform(socket, method, path, body, &x, &status, err);
    buf = x.buf;
    if (r < 0)
        return r;
    r = parse_reply(method, path, status, &x, &reply, err);
    if (r < 0)
        return r;
    *ret_status = status;
    *ret_reply = reply;
    return 0;
}

int
client_request(const char *socket, const char *method, const char *path, json_t *body,
               long *ret_status, json_t **ret_reply, struct tp_err *err)
{
    return request(socket, method, path, body, -1, ret_status, ret_reply, err);
}

/* A 2xx reply's body into *ret_reply (may be NULL); any other status is the error. */
static int
call_result(int r, long status, json_t *reply, json_t **ret_reply, struct tp_err *err)
{
    json_auto_t *owned = reply;

    if (r < 0)
        return r;
    if (status < 200 || status >= 300)
        return client_reply_error(status, owned, err);
    if (ret_reply)
        *ret_reply = TAKE_PTR(owned);
    return 0;
}

int
client_reply_error(long status, const json_t *reply, struct tp_err *err)
{
    const char *msg = NULL;
    int code;

    switch (status) {
    case 400:
        code = -EINVAL;
        break;
    case 404:
        code = -ENOENT;
        break;
    case 409:
        code = -EBUSY;
        break;
    case 413:
        code = -E2BIG;
        break;
    case 501:
        code = -EOPNOTSUPP;
        break;
    case 502:
        code = -EPROTO;
        break;
    case 504:
        code = -ETIMEDOUT;
        break;
    case 507:
        code = -ENOSPC;
        break;
    default:
        code = -EIO;
    }
    if (json_is_object(reply))
        msg = json_string_value(json_object_get(reply, "message"));
    if (msg && *msg)
        return tp_err_set(err, code, "%s", msg);
    return tp_err_set(err, code, "daemon answered HTTP %ld", status);
}

int
client_call(const char *socket, const char *method, const char *path, json_t *body,
            json_t **ret_reply, struct tp_err *err)
{
    json_t *reply = NULL;
    long status = 0;
    int r = request(socket, method, path, body, -1, &status, &reply, err);

    return call_result(r, status, reply, ret_reply, err);
}

int
client_stream(const char *socket, const char *method, const char *path, json_t *body,
              client_data_fn on_data, void *userdata, struct tp_err *err)
{
    struct xfer x = {
        .max = CLIENT_ERROR_MAX,
        .on_data = on_data,
        .userdata = userdata,
    };
    _cleanup_free_ char *buf = NULL;
    json_auto_t *reply = NULL;
    long status;
    int r;

    r = xfer_perform(socket, method, path, body, &x, &status, err);
    buf = x.buf;
    if (r < 0)
        return r;
    if (status >= 200 && status < 300)
        return 0;
    r = parse_reply(method, path, status, &x, &reply, err);
    if (r < 0)
        return r;
    return client_reply_error(status, reply, err);
}

int
client_upload(const char *socket, const char *method, const char *path, int fd, json_t **ret_reply,
              struct tp_err *err)
{
    json_t *reply = NULL;
    long status = 0;
    int r = request(socket, method, path, NULL, fd, &status, &reply, err);

    return call_result(r, status, reply, ret_reply, err);
}

char *
client_instance_path(const char *ref, const char *suffix)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(ref);
    _cleanup_free_ char *enc = xmalloc(3 * n + 1);
    char *p = enc;

    /* Names are [a-z0-9-], but whatever the user typed must stay one path segment; '.' is
     * encoded too, or libcurl would fold "." and ".." segments away. */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)ref[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 0xf];
        }
    }
    *p = '\0';
    return xasprintf("/v1/instances/%s%s", enc, suffix);
}
