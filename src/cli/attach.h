/* An exec attached to the terminal: the request goes out with "Connection: Upgrade, Upgrade:
 * tcp"; after torpord's 101 the socket carries stdin, resize and signal frames out and the
 * exec stream back (docs/api.md, "Exec session"). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "exec_stream.h"
#include "util/err.h"

struct attach_opts {
    bool stdin_on; /* -i: stream stdin; EOF closes the command's stdin */
    bool tty;      /* -t: the command runs on a PTY; a terminal stdin goes raw meanwhile */
};

/* Parse the head of an HTTP response in buf (len bytes): 0 with *status, *content_length (-1
 * if absent) and *head_len (bytes up to and including the blank line); -EAGAIN when the head is
 * not complete yet; -EPROTO when it is not HTTP/1.x. Pure. */
int attach_parse_head(const char *buf, size_t len, int *status, long long *content_length,
                      size_t *head_len);

/* Send the exec request body to path over the socket and run the session until the final frame,
 * which dec holds on return 0. The terminal's mode is restored on every path. Signals INT, TERM,
 * HUP and QUIT reach the command instead of ending torpor; a closed stdout sends it SIGPIPE. */
int attach_exec(const char *socket, const char *path, json_t *body, const struct attach_opts *o,
                struct exec_decoder *dec, struct tp_err *err);
