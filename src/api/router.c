/* Method + path -> route, with the {ref} path parameter, and query-string value parsing. */
#include "api/router.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/macro.h"
#include "util/name.h"

#define streq(a, b) (strcmp((a), (b)) == 0)

#define ROUTE_SEGMENTS_MAX 4
#define PARAM              "{ref}"

/* One row per method + path. Rows sharing a path must be adjacent: 405's Allow header lists
 * them in this order. */
static const struct {
    enum api_route route;
    const char *method;
    const char *segs[ROUTE_SEGMENTS_MAX + 1]; /* NULL-terminated; PARAM captures a segment */
    const char *query[5];
    const char *name;
} routes[] = {
    { API_ROUTE_VERSION, "GET", { "v1", "version" }, { NULL }, "version" },
    { API_ROUTE_CAPABILITIES, "GET", { "v1", "capabilities" }, { NULL }, "capabilities" },
    { API_ROUTE_LIST, "GET", { "v1", "instances" }, { "all", NULL }, "list" },
    { API_ROUTE_CREATE, "POST", { "v1", "instances" }, { NULL }, "create" },
    { API_ROUTE_GET, "GET", { "v1", "instances", PARAM }, { NULL }, "get" },
    { API_ROUTE_DELETE, "DELETE", { "v1", "instances", PARAM }, { "force", NULL }, "delete" },
    { API_ROUTE_STOP, "POST", { "v1", "instances", PARAM, "stop" }, { "force", NULL }, "stop" },
    { API_ROUTE_START, "POST", { "v1", "instances", PARAM, "start" }, { NULL }, "start" },
    { API_ROUTE_EXEC, "POST", { "v1", "instances", PARAM, "exec" }, { NULL }, "exec" },
    { API_ROUTE_LOGS,
      "GET",
      { "v1", "instances", PARAM, "logs" },
      { "follow", "tail", "since", "timestamps", NULL },
      "logs" },
    { API_ROUTE_WAIT, "POST", { "v1", "instances", PARAM, "wait" }, { NULL }, "wait" },
    { API_ROUTE_STANDBY, "POST", { "v1", "instances", PARAM, "standby" }, { NULL }, "standby" },
    { API_ROUTE_RESTORE, "POST", { "v1", "instances", PARAM, "restore" }, { NULL }, "restore" },
    { API_ROUTE_FORK, "POST", { "v1", "instances", PARAM, "fork" }, { NULL }, "fork" },
    { API_ROUTE_PAUSE, "POST", { "v1", "instances", PARAM, "pause" }, { NULL }, "pause" },
    { API_ROUTE_UNPAUSE, "POST", { "v1", "instances", PARAM, "unpause" }, { NULL }, "unpause" },
    { API_ROUTE_KILL, "POST", { "v1", "instances", PARAM, "kill" }, { NULL }, "kill" },
    { API_ROUTE_ARCHIVE_GET,
      "GET",
      { "v1", "instances", PARAM, "archive" },
      { "path", NULL },
      "archive_get" },
    { API_ROUTE_ARCHIVE_PUT,
      "PUT",
      { "v1", "instances", PARAM, "archive" },
      { "path", NULL },
      "archive_put" },
    { API_ROUTE_STAT, "GET", { "v1", "instances", PARAM, "stat" }, { "path", NULL }, "stat" },
    { API_ROUTE_SESSION_SIGNAL,
      "POST",
      { "v1", "sessions", PARAM, "signal" },
      { NULL },
      "session_signal" },
    { API_ROUTE_SESSION_RESIZE,
      "POST",
      { "v1", "sessions", PARAM, "resize" },
      { NULL },
      "session_resize" },
    { API_ROUTE_STATS, "GET", { "v1", "instances", PARAM, "stats" }, { NULL }, "stats" },
    { API_ROUTE_METRICS, "GET", { "metrics" }, { NULL }, "metrics" },
    { API_ROUTE_EVENTS, "GET", { "v1", "events" }, { "since", "until", NULL }, "events" },
    { API_ROUTE_IMAGES_LIST, "GET", { "v1", "images" }, { "all", NULL }, "images" },
    { API_ROUTE_IMAGES_PULL, "POST", { "v1", "images", "pull" }, { NULL }, "pull" },
    { API_ROUTE_IMAGES_LOAD, "POST", { "v1", "images", "load" }, { NULL }, "load" },
    { API_ROUTE_IMAGES_PRUNE, "POST", { "v1", "images", "prune" }, { "all", NULL }, "image_prune" },
    { API_ROUTE_IMAGE_GET, "GET", { "v1", "images", PARAM }, { NULL }, "image_inspect" },
    { API_ROUTE_IMAGE_DELETE, "DELETE", { "v1", "images", PARAM }, { "force", NULL }, "rmi" },
};

struct path_segs {
    size_t n;
    const char *s[ROUTE_SEGMENTS_MAX];
    size_t len[ROUTE_SEGMENTS_MAX];
};

/* Split "/a/b/c" into segments. false for anything no route can match: no leading '/', an empty
 * segment (which also covers a trailing '/') or too many segments. */
static bool
path_split(const char *path, struct path_segs *ret)
{
    struct path_segs p = { 0 };
    const char *s = path;

    if (!s || s[0] != '/')
        return false;
    while (*s == '/') {
        const char *start = s + 1;
        const char *end = strchrnul(start, '/');
        if (end == start || p.n == ROUTE_SEGMENTS_MAX)
            return false;
        p.s[p.n] = start;
        p.len[p.n] = (size_t)(end - start);
        p.n++;
        s = end;
    }
    *ret = p;
    return true;
}

static bool
route_path_matches(size_t i, const struct path_segs *p, char ref[API_REF_MAX + 1])
{
    size_t n = 0;

    while (n < ROUTE_SEGMENTS_MAX && routes[i].segs[n])
        n++;
    if (n != p->n)
        return false;
    for (size_t k = 0; k < n; k++) {
        const char *want = routes[i].segs[k];
        if (streq(want, PARAM)) {
            if (p->len[k] > API_REF_MAX)
                return false;
            memcpy(ref, p->s[k], p->len[k]);
            ref[p->len[k]] = '\0';
        } else if (strlen(want) != p->len[k] || memcmp(want, p->s[k], p->len[k]) != 0) {
            return false;
        }
    }
    return true;
}

enum api_match_result
api_route_match(const char *method, const char *path, struct api_match *ret)
{
    struct path_segs p;
    bool path_known = false;

    *ret = (struct api_match){ .route = _API_ROUTE_INVALID };
    if (!method || !path_split(path, &p))
        return API_MATCH_NOT_FOUND;

    for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
        char ref[API_REF_MAX + 1] = "";
        if (!route_path_matches(i, &p, ref))
            continue;
        if (streq(method, routes[i].method)) {
            ret->route = routes[i].route;
            memcpy(ret->ref, ref, sizeof(ref));
            ret->allow[0] = '\0';
            return API_MATCH_OK;
        }
        size_t used = strlen(ret->allow);
        snprintf(ret->allow + used, sizeof(ret->allow) - used, "%s%s", path_known ? ", " : "",
                 routes[i].method);
        path_known = true;
    }
    return path_known ? API_MATCH_BAD_METHOD : API_MATCH_NOT_FOUND;
}

const char *const *
api_route_query_keys(enum api_route route)
{
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        if (routes[i].route == route)
            return routes[i].query;
    return NULL;
}

const char *
api_route_method(enum api_route route)
{
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        if (routes[i].route == route)
            return routes[i].method;
    return NULL;
}

int
api_route_template(enum api_route route, char *buf, size_t size)
{
    for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
        if (routes[i].route != route)
            continue;
        size_t used = 0;
        if (size > 0)
            buf[0] = '\0';
        for (size_t k = 0; k < ROUTE_SEGMENTS_MAX && routes[i].segs[k]; k++) {
            int n = snprintf(buf + used, size - used, "/%s", routes[i].segs[k]);
            if (n < 0 || (size_t)n >= size - used)
                return -ENOBUFS;
            used += (size_t)n;
        }
        return 0;
    }
    return -EINVAL;
}

const char *
api_route_name(enum api_route route)
{
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        if (routes[i].route == route)
            return routes[i].name;
    return "unknown";
}

bool
api_ref_valid(const char *ref)
{
    return name_valid(ref, NAME_MAX_LEN);
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t
api_url_unescape(char *s)
{
    char *w = s;

    for (const char *r = s; *r;) {
        int hi = r[0] == '%' ? hex_value(r[1]) : -1;
        int lo = hi >= 0 ? hex_value(r[2]) : -1;
        int c = hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
        if (c > 0 && c != '/') {
            *w++ = (char)c;
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

int
api_query_bool(const char *key, const char *value, bool *ret, struct tp_err *err)
{
    if (!value) {
        *ret = false;
        return 0;
    }
    if (streq(value, "true") || streq(value, "1")) {
        *ret = true;
        return 0;
    }
    if (streq(value, "false") || streq(value, "0")) {
        *ret = false;
        return 0;
    }
    return tp_err_set(err, -EINVAL, "query parameter '%s' must be true, false, 1 or 0, got '%.64s'",
                      key, value);
}
