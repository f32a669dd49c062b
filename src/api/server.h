/* The REST API server: libmicrohttpd on a listening Unix socket the daemon created,
 * one thread per client connection, dispatching to the handlers through the router. */
#pragma once

#include "instance/manager.h"
#include "util/cleanup.h"
#include "util/err.h"

#define API_CONNECTION_LIMIT 64
#define API_IDLE_TIMEOUT_S   120 /* idle keep-alive clients are dropped after this */

struct api_server;

/* Serve on listen_fd (a listening SOCK_STREAM socket). m is borrowed and must outlive the
 * server. On success the server owns listen_fd (closed by api_server_stop()); on failure the
 * caller still owns it. */
int api_server_start(struct inst_manager *m, int listen_fd, unsigned idle_timeout_s,
                     struct api_server **ret, struct tp_err *err);

/* Stop accepting, end every connection (streams notice their socket shutting down) and join
 * the threads. NULL-safe; returns NULL. */
struct api_server *api_server_stop(struct api_server *s);
DEFINE_CLEANUP(struct api_server, api_server_stop)
