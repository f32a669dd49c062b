/* Method + path -> route, with the {ref} path parameter, and query-string value parsing.
 * Paths are matched segment by segment: no empty segments, no trailing slash
 * ("/v1/instances/" is 404), exact segment counts. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

enum api_route {
    API_ROUTE_VERSION,        /* GET    /v1/version */
    API_ROUTE_CAPABILITIES,   /* GET    /v1/capabilities */
    API_ROUTE_LIST,           /* GET    /v1/instances */
    API_ROUTE_CREATE,         /* POST   /v1/instances */
    API_ROUTE_GET,            /* GET    /v1/instances/{ref} */
    API_ROUTE_DELETE,         /* DELETE /v1/instances/{ref} */
    API_ROUTE_STOP,           /* POST   /v1/instances/{ref}/stop */
    API_ROUTE_START,          /* POST   /v1/instances/{ref}/start */
    API_ROUTE_EXEC,           /* POST   /v1/instances/{ref}/exec */
    API_ROUTE_LOGS,           /* GET    /v1/instances/{ref}/logs */
    API_ROUTE_WAIT,           /* POST   /v1/instances/{ref}/wait */
    API_ROUTE_STANDBY,        /* POST   /v1/instances/{ref}/standby */
    API_ROUTE_RESTORE,        /* POST   /v1/instances/{ref}/restore */
    API_ROUTE_FORK,           /* POST   /v1/instances/{ref}/fork */
    API_ROUTE_PAUSE,          /* POST   /v1/instances/{ref}/pause */
    API_ROUTE_UNPAUSE,        /* POST   /v1/instances/{ref}/unpause */
    API_ROUTE_KILL,           /* POST   /v1/instances/{ref}/kill */
    API_ROUTE_ARCHIVE_GET,    /* GET    /v1/instances/{ref}/archive?path= */
    API_ROUTE_ARCHIVE_PUT,    /* PUT    /v1/instances/{ref}/archive?path= */
    API_ROUTE_STAT,           /* GET    /v1/instances/{ref}/stat?path= */
    API_ROUTE_STATS,          /* GET    /v1/instances/{ref}/stats */
    API_ROUTE_SESSION_SIGNAL, /* POST   /v1/sessions/{ref}/signal  (ref: an exec session id) */
    API_ROUTE_SESSION_RESIZE, /* POST   /v1/sessions/{ref}/resize */
    API_ROUTE_METRICS,        /* GET    /metrics (Prometheus text format) */
    API_ROUTE_EVENTS,         /* GET    /v1/events?since=&until= (NDJSON) */
    API_ROUTE_IMAGES_LIST,    /* GET    /v1/images */
    API_ROUTE_IMAGES_PULL,    /* POST   /v1/images/pull (NDJSON progress) */
    API_ROUTE_IMAGES_LOAD,    /* POST   /v1/images/load (a tar, or {"path": DIR}) */
    API_ROUTE_IMAGES_PRUNE,   /* POST   /v1/images/prune?all= */
    API_ROUTE_IMAGE_GET,      /* GET    /v1/images/{ref}  (ref: '/' sent as %2F) */
    API_ROUTE_IMAGE_DELETE,   /* DELETE /v1/images/{ref}?force= */
    _API_ROUTE_MAX,
    _API_ROUTE_INVALID = -22,
};

enum api_match_result {
    API_MATCH_OK,
    API_MATCH_NOT_FOUND,  /* no route has this path: 404 */
    API_MATCH_BAD_METHOD, /* the path exists, not with this method: 405 + Allow */
};

#define API_REF_MAX 255

struct api_match {
    enum api_route route;      /* API_MATCH_OK */
    char ref[API_REF_MAX + 1]; /* {ref}, "" for routes without one */
    char allow[64];            /* API_MATCH_BAD_METHOD: "GET, DELETE" */
};

/* Match method (e.g. "GET") and path (no query string). ret is filled on every result. */
enum api_match_result api_route_match(const char *method, const char *path, struct api_match *ret);

/* The query keys route accepts (NULL-terminated, possibly empty). */
const char *const *api_route_query_keys(enum api_route route);

/* The method of route, e.g. "POST". */
const char *api_route_method(enum api_route route);

/* The path template of route, e.g. "/v1/instances/{ref}/exec", into buf. -ENOBUFS if it does
 * not fit, -EINVAL for an unknown route. */
int api_route_template(enum api_route route, char *buf, size_t size);

/* A human name for logs, e.g. "exec". */
const char *api_route_name(enum api_route route);

/* Whether ref can name an instance: a name, an id or an id prefix, all [a-z0-9][a-z0-9-]{0,62}.
 * Anything else (a NUL, '%', '/', upper case, too long) is refused with 400 before any lookup. */
bool api_ref_valid(const char *ref);

/* Decode %XX escapes in s in place and return its new length, as libmicrohttpd's own unescaper
 * does, except that "%00" and "%2F"/"%2f" stay as written: a decoded NUL would end the string
 * early and a decoded '/' would split a path segment. */
size_t api_url_unescape(char *s);

/* Parse a boolean query value: NULL (absent) -> false; "true"/"1" -> true; "false"/"0" -> false;
 * anything else -EINVAL naming key. *ret written only on success. */
int api_query_bool(const char *key, const char *value, bool *ret, struct tp_err *err);
