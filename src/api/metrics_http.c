/* GET /metrics on a TCP address (torpord --metrics-listen): its own small libmicrohttpd daemon
 * that serves nothing else, so the API itself never listens on the network. */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api/api-internal.h"
#include "util/log.h"
#include "util/xalloc.h"

struct api_metrics_http {
    struct MHD_Daemon *daemon;
    struct inst_manager *m;
};

static enum MHD_Result
on_metrics_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                   const char *version, const char *upload_data, size_t *upload_data_size,
                   void **con_cls)
{
    struct api_metrics_http *h = cls;
    struct MHD_Response *resp;
    unsigned status = 200;
    char *text;

    if (strcmp(url, "/metrics") != 0) {
        status = 404;
        text = xstrdup("only /metrics is served here\n");
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = 405;
        text = xstrdup("method not allowed\n");
    } else {
        text = api_metrics_text(h->m);
    }
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        abort();
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            status == 200 ? "text/plain; version=0.0.4" : "text/plain");
    if (status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result res = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return res;
}

int
api_metrics_http_start(struct inst_manager *m, const char *listen, struct api_metrics_http **ret,
                       struct tp_err *err)
{
    _cleanup_free_ char *host = xstrdup(listen);
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    char *colon = strrchr(host, ':');
    const char *node;

    if (!colon || !colon[1])
        return tp_err_set(err, -EINVAL, "metrics address '%s' is not ADDR:PORT", listen);
    *colon = '\0';
    node = host;
    if (node[0] == '[' && colon > host && colon[-1] == ']') {
        colon[-1] = '\0';
        node++;
    }
    int r = getaddrinfo(node[0] ? node : NULL, colon + 1, &hints, &ai);
    if (r != 0)
        return tp_err_set(err, -EINVAL, "metrics address '%s': %s", listen, gai_strerror(r));

    struct api_metrics_http *h = xnew(struct api_metrics_http, 1);
    h->m = m;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_metrics_request, h, MHD_OPTION_SOCK_ADDR,
                                 ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, 16u,
                                 MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->daemon) {
        free(h);
        return tp_err_set(err, -EADDRNOTAVAIL, "listen for metrics on '%s'", listen);
    }
    *ret = h;
    return 0;
}

struct api_metrics_http *
api_metrics_http_stop(struct api_metrics_http *h)
{
    if (!h)
        return NULL;
    MHD_stop_daemon(h->daemon);
    free(h);
    return NULL;
}
