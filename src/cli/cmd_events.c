/* torpor events: print the daemon's lifecycle events as they happen, one line each, as
 * `docker events` does, or the raw JSON with --format json. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "util/cleanup.h"
#include "util/timefmt.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define EVENTS_FILTERS_MAX 8
#define EVENTS_LINE_MAX    (256 * 1024) /* an event with its trace is a few KiB */

enum {
    FLAG_SINCE,
    FLAG_UNTIL,
    FLAG_FILTER,
    FLAG_FORMAT,
};

static const struct cli_syntax syntax = {
    .verb = "events",
    .usage = "Usage: torpor events [OPTIONS]\n"
             "\n"
             "Print lifecycle events as they happen: each operation's start and end (with its\n"
             "phase trace in --format json) and each state change. --since replays what the\n"
             "daemon still keeps (its last 1000 events).\n",
    .operands = CLI_OPERANDS_NONE,
    .flags = {
        [FLAG_SINCE] = { .name = "since", .arg = "TIME",
                         .help = "replay events since TIME: RFC 3339, unix seconds, or a "
                                 "duration before now (10m)" },
        [FLAG_UNTIL] = { .name = "until", .arg = "TIME",
                         .help = "stop once TIME has passed (same forms as --since)" },
        [FLAG_FILTER] = { .name = "filter", .short_name = 'f', .arg = "KEY=VALUE",
                          .help = "only events whose field KEY (type, action, status, id, name) "
                                  "is VALUE; repeatable, all must match" },
        [FLAG_FORMAT] = { .name = "format", .arg = "FORMAT",
                          .help = "json: print each event as the daemon sent it" },
    },
};

struct events_state {
    const char *filters[EVENTS_FILTERS_MAX];
    size_t n_filters;
    bool json;
    char *buf; /* a line not yet complete */
    size_t len;
};

static void
events_on_option(size_t flag, const char *value, void *userdata)
{
    struct events_state *st = userdata;
    if (flag == FLAG_FILTER) {
        if (st->n_filters < EVENTS_FILTERS_MAX)
            st->filters[st->n_filters] = value;
        st->n_filters++;
    }
}

static bool
event_matches(const struct events_state *st, json_t *ev)
{
    for (size_t i = 0; i < st->n_filters; i++) {
        const char *eq = strchr(st->filters[i], '=');
        _cleanup_free_ char *key = xstrndup(st->filters[i], (size_t)(eq - st->filters[i]));
        const char *have = json_string_value(json_object_get(ev, key));
        if (!have)
            return false;
        /* An id matches by prefix, as everywhere in torpor. */
        if (strcmp(key, "id") == 0 ? strncmp(have, eq + 1, strlen(eq + 1)) != 0
                                   : strcmp(have, eq + 1) != 0)
            return false;
    }
    return true;
}

/* docker's line: TIME TYPE ACTION ID (attr=value, ...) */
static void
event_print(const struct events_state *st, const char *line, json_t *ev)
{
    if (st->json) {
        printf("%s\n", line);
    } else {
        char when[64];
        json_int_t ns = json_integer_value(json_object_get(ev, "time_nano"));
        const char *status = json_string_value(json_object_get(ev, "status"));
        const char *from = json_string_value(json_object_get(ev, "from"));
        const char *error = json_string_value(json_object_get(ev, "error"));
        timefmt_rfc3339_ns((int64_t)ns, when);
        printf("%s %s %s %s (", when, json_string_value(json_object_get(ev, "type")) ?: "?",
               json_string_value(json_object_get(ev, "action")) ?: "?",
               json_string_value(json_object_get(ev, "id")) ?: "");
        if (from)
            printf("from=%s, ", from);
        printf("name=%s", json_string_value(json_object_get(ev, "name")) ?: "");
        if (status)
            printf(", status=%s", status);
        if (error)
            printf(", error=%s", error);
        printf(")\n");
    }
    fflush(stdout);
}

static int
events_on_data(const void *data, size_t len, void *userdata, struct tp_err *err)
{
    struct events_state *st = userdata;

    if (st->len + len > EVENTS_LINE_MAX)
        return tp_err_set(err, -EPROTO, "an event line over %d bytes", EVENTS_LINE_MAX);
    st->buf = xrealloc(st->buf, st->len + len + 1);
    memcpy(st->buf + st->len, data, len);
    st->len += len;
    st->buf[st->len] = '\0';
    char *nl;
    while ((nl = memchr(st->buf, '\n', st->len))) {
        *nl = '\0';
        json_t *ev = json_loads(st->buf, 0, NULL);
        if (ev && json_is_object(ev)) {
            const char *type = json_string_value(json_object_get(ev, "type"));
            if (type && strcmp(type, "error") == 0) {
                int r = tp_err_set(err, -EPIPE, "%s",
                                   json_string_value(json_object_get(ev, "message")) ?: "error");
                json_decref(ev);
                return r;
            }
            if (event_matches(st, ev))
                event_print(st, st->buf, ev);
        }
        json_decref(ev);
        size_t used = (size_t)(nl + 1 - st->buf);
        memmove(st->buf, nl + 1, st->len - used + 1);
        st->len -= used;
    }
    return 0;
}

static char *
unix_arg(const char *key, const char *value, struct tp_err *err)
{
    int64_t ns = 0;
    if (timefmt_parse_since(value, wall_ns(), &ns, err) < 0) {
        tp_err_wrap(err, "invalid value for --%s", key);
        return NULL;
    }
    if (ns < 0)
        ns = 0;
    return xasprintf("%s=%" PRId64 ".%09" PRId64, key, ns / 1000000000, ns % 1000000000);
}

int
cli_verb_events(const struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *since = NULL, *until = NULL, *path = NULL;
    struct events_state st = { 0 };
    struct cli_args a = { 0 };
    int r = cli_parse_args_each(&syntax, argc, argv, events_on_option, &st, &a, &err);

    if (r >= 0 && !a.help) {
        const char *format = a.values[FLAG_FORMAT];
        if (st.n_filters > EVENTS_FILTERS_MAX)
            r = tp_err_set(&err, -EINVAL, "at most %d --filter options", EVENTS_FILTERS_MAX);
        for (size_t i = 0; r >= 0 && i < st.n_filters; i++)
            if (!strchr(st.filters[i], '=') || st.filters[i][0] == '=')
                r = tp_err_set(&err, -EINVAL, "--filter needs KEY=VALUE, got '%s'", st.filters[i]);
        if (r >= 0 && format && strcmp(format, "json") != 0)
            r = tp_err_set(&err, -EINVAL, "--format supports only 'json', got '%s'", format);
        st.json = format != NULL;
        if (r >= 0 && a.values[FLAG_SINCE] &&
            !(since = unix_arg("since", a.values[FLAG_SINCE], &err)))
            r = -EINVAL;
        if (r >= 0 && a.values[FLAG_UNTIL] &&
            !(until = unix_arg("until", a.values[FLAG_UNTIL], &err)))
            r = -EINVAL;
    }
    int x = cli_syntax_prologue(&syntax, r, a.help, &err);
    if (x >= 0)
        return x;
    path = xasprintf("/v1/events%s%s%s%s", since || until ? "?" : "", since ?: "",
                     since && until ? "&" : "", until ?: "");
    r = client_stream(ctx->socket, "GET", path, NULL, events_on_data, &st, &err);
    free(st.buf);
    if (r < 0) {
        cli_error("%s", tp_err_msg(&err));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

CLI_SYNTAX_FN(cli_syntax_events)
