/* The REST API server: libmicrohttpd on a listening Unix socket the daemon created,
 * one thread per client connection, dispatching to the handlers through the router. */
#pragma once

#include "image/oci/oci.h"
#include "instance/manager.h"
#include "util/cleanup.h"
#include "util/err.h"

/* Thread per connection, so this bounds threads. Streams have their own, smaller limit and idle
 * clients are dropped early, so control requests always find a free connection. */
#define API_CONNECTION_LIMIT 256
#define API_STREAM_LIMIT     64 /* open exec and logs streams; more are refused with 503 */
#define API_IDLE_TIMEOUT_S                                                \
    10 /* a client silent this long while a request is awaited is dropped \
        */
#define API_DRAIN_TIMEOUT_MS                                          \
    100000 /* longest a shutdown waits for requests in flight (a boot \
            * waits up to 90 s for its guest agent) */

struct api_server;

/* Serve on listen_fd (a listening SOCK_STREAM socket). m is borrowed and must outlive the
 * server. idle_timeout_s (0 = API_IDLE_TIMEOUT_S) drops a client that sends nothing for that long
 * while the server awaits a request from it or sends it a reply; a request being handled and a
 * stream are never timed out. On success the server owns listen_fd (closed by
 * api_server_quiesce() or api_server_stop()); on failure the caller still owns it. */
int api_server_start(struct inst_manager *m, int listen_fd, unsigned idle_timeout_s,
                     struct api_server **ret, struct tp_err *err);

/* Begin a graceful shutdown: close the listening socket, answer requests that arrive on open
 * connections with 503 and Connection: close, end streams (exec gets an error frame, logs a
 * clean end) and let the other requests in flight finish. Returns an fd (owned by the server)
 * that becomes readable once every connection is closed; a silent client's closes after the idle
 * timeout. Idempotent. */
int api_server_quiesce(struct api_server *s);

/* Connections still open, and requests on them begun and not completed (reply not fully sent). */
void api_server_pending(struct api_server *s, unsigned *ret_connections, unsigned *ret_requests);

/* Stop accepting, end every connection (streams notice their socket shutting down) and join
 * the threads, which waits for running handlers. NULL-safe; returns NULL. */
struct api_server *api_server_stop(struct api_server *s);
DEFINE_CLEANUP(struct api_server, api_server_stop)

/* GET /metrics alone on the TCP address listen ("ADDR:PORT", "[V6ADDR]:PORT" or ":PORT" for
 * every address), on a thread of its own. m is borrowed. -EINVAL for an address that does not
 * parse, -EADDRNOTAVAIL when it cannot be bound. */
struct api_metrics_http;
int api_metrics_http_start(struct inst_manager *m, const char *listen,
                           struct api_metrics_http **ret, struct tp_err *err);
/* NULL-safe; returns NULL. */
struct api_metrics_http *api_metrics_http_stop(struct api_metrics_http *h);
DEFINE_CLEANUP(struct api_metrics_http, api_metrics_http_stop)

/* Where the image handlers keep images (DATA_DIR/images) and how they reach registries. Call
 * before api_server_start(); conf (and what it points to) must outlive the server. */
void api_images_configure(const char *layout_dir, const struct oci_registry_conf *conf);
