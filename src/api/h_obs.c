/* GET /metrics (Prometheus text format 0.0.4) and GET /v1/events (newline-delimited JSON, one
 * event per line, for as long as the client stays). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api-internal.h"
#include "hypervisor/driver.h"
#include "instance/state.h"
#include "obs/events.h"
#include "obs/metrics.h"
#include "util/log.h"
#include "util/procstat.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define EVENTS_WAIT_MS      1000 /* how often a quiet stream checks on its client */
#define EVENTS_STREAM_BLOCK 4096

static const char *const lower_states[_INST_STATE_MAX] = {
    [INST_CREATED] = "created", [INST_RUNNING] = "running", [INST_PAUSED] = "paused",
    [INST_STANDBY] = "standby", [INST_STOPPED] = "stopped", [INST_UNKNOWN] = "unknown",
};

static int
count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    if (!d)
        return -errno;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own fd */
}

/* A guest that does not answer quickly is left out of one scrape rather than slowing it. */
#define SCRAPE_GUEST_MS  500
#define SCRAPE_GUESTS_MS 2000 /* asking guests stops this long into a scrape */

/* The figures sampled at scrape time, into r. */
static void
sample_now(struct inst_manager *m, struct obs_registry *r)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inst_record **v = NULL;
    size_t n = 0;
    char labels[OBS_LABELS_MAX];
    uint64_t scrape_start = now_ms();

    obs_declare(r, "torpor_instances", OBS_GAUGE, "Instances by state and hypervisor.", NULL, 0);
    obs_declare(r, "torpor_vmm_pss_bytes", OBS_GAUGE,
                "Proportional set size of each running VMM process.", NULL, 0);
    obs_declare(r, "torpor_vmm_rss_bytes", OBS_GAUGE, "Resident set size of each running VMM.",
                NULL, 0);
    obs_declare(r, "torpor_console_log_bytes", OBS_GAUGE,
                "Size of each running instance's console log.", NULL, 0);
    obs_declare(r, "torpor_guest_memory_used_bytes", OBS_GAUGE,
                "Memory each Running guest has in use by its own account (MemTotal minus "
                "MemAvailable, from its agent).",
                NULL, 0);
    obs_declare(r, "torpor_daemon_cpu_seconds_total", OBS_COUNTER,
                "CPU time torpord has used, user and system.", NULL, 0);
    obs_declare(r, "torpor_daemon_open_fds", OBS_GAUGE, "File descriptors torpord has open.", NULL,
                0);

    /* Every state of the default hypervisor is shown, 0 included, so that a graph has a line. */
    for (int s = 0; s < _INST_STATE_MAX; s++) {
        obs_labels(labels, sizeof(labels), "hypervisor", hv_driver_default(), "state",
                   lower_states[s], NULL);
        obs_gauge_set(r, "torpor_instances", labels, 0);
    }
    if (inst_list(m, &v, &n, &err) < 0)
        log_debug("metrics: list instances: %s", tp_err_msg(&err));
    for (size_t k = 0; k < n; k++) {
        const char *hv = v[k]->cfg.hypervisor ? v[k]->cfg.hypervisor : "none";
        int s = (int)v[k]->state;
        obs_labels(labels, sizeof(labels), "hypervisor", hv, "state",
                   s >= 0 && s < _INST_STATE_MAX ? lower_states[s] : "invalid", NULL);
        obs_counter_add(r, "torpor_instances", labels, 1);
        if (v[k]->state == INST_RUNNING || v[k]->state == INST_PAUSED) {
            struct inst_stats st;
            if (inst_stats(m, v[k]->id, &st, NULL) == 0) {
                obs_labels(labels, sizeof(labels), "instance", v[k]->name, NULL);
                obs_gauge_set(r, "torpor_vmm_pss_bytes", labels, (double)st.pss_bytes);
                obs_gauge_set(r, "torpor_vmm_rss_bytes", labels, (double)st.rss_bytes);
                obs_gauge_set(r, "torpor_console_log_bytes", labels, (double)st.console_bytes);
                uint64_t total, avail;
                /* Guests are asked only while the scrape is young: many slow ones must not
                 * make it time out. */
                if (v[k]->state == INST_RUNNING && v[k]->cfg.agent &&
                    now_ms() - scrape_start < SCRAPE_GUESTS_MS &&
                    api_guest_memory(m, v[k]->id, SCRAPE_GUEST_MS, &total, &avail) == 0)
                    obs_gauge_set(r, "torpor_guest_memory_used_bytes", labels,
                                  (double)(total > avail ? total - avail : 0));
            }
        }
        inst_record_free(v[k]);
    }
    free(v);

    struct procstat self;
    if (procstat_read(getpid(), &self, NULL) == 0)
        obs_counter_add(r, "torpor_daemon_cpu_seconds_total", NULL, (double)self.cpu_ns / 1e9);
    int fds = count_fds();
    if (fds >= 0)
        obs_gauge_set(r, "torpor_daemon_open_fds", NULL, fds);
}

char *
api_metrics_text(struct inst_manager *m)
{
    _cleanup_(obs_registry_freep) struct obs_registry *now = obs_registry_new();
    _cleanup_free_ char *kept = obs_render(obs_default());
    _cleanup_free_ char *sampled = NULL;

    sample_now(m, now);
    sampled = obs_render(now);
    return xasprintf("%s%s", kept, sampled);
}

enum MHD_Result
api_h_metrics(struct api_req *req)
{
    char *text = api_metrics_text(req->m);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);

    if (!resp)
        abort();
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    return api_reply_response(req, 200, resp);
}

struct events_stream {
    struct obs_sub *sub;
    int stop_fd;      /* borrowed: readable once the server shuts down */
    int client_fd;    /* borrowed: the client's socket */
    int64_t until_ns; /* end once past it; -1 = never */
    char *out;        /* a line being sent */
    size_t out_len, out_off;
    bool ending; /* the drop notice is out: end after it */
};

/* Block until an event is queued (0), the daemon shuts down (-ESHUTDOWN), the client left
 * (-EPIPE) or until_ns passed (-ETIME). */
static int
events_wait(struct events_stream *st)
{
    for (;;) {
        if (st->until_ns >= 0 && wall_ns() > st->until_ns)
            return -ETIME;
        struct pollfd p[3] = {
            { .fd = obs_sub_fd(st->sub), .events = POLLIN },
            { .fd = st->stop_fd, .events = POLLIN },
            { .fd = st->client_fd, .events = POLLRDHUP },
        };
        int r = poll(p, 3, EVENTS_WAIT_MS);
        if (r < 0 && errno != EINTR)
            return -errno;
        if (p[2].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
            return -EPIPE;
        if (p[1].revents & POLLIN)
            return -ESHUTDOWN;
        if (p[0].revents & POLLIN)
            return 0;
    }
}

static ssize_t
events_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct events_stream *st = cls;
    (void)pos;

    for (;;) {
        if (st->out_off < st->out_len) {
            size_t n = st->out_len - st->out_off < max ? st->out_len - st->out_off : max;
            memcpy(buf, st->out + st->out_off, n);
            st->out_off += n;
            return (ssize_t)n;
        }
        st->out = mfree(st->out);
        st->out_len = st->out_off = 0;
        if (st->ending)
            return MHD_CONTENT_READER_END_OF_STREAM;
        char *json = NULL;
        int64_t t = 0;
        int r = obs_sub_next(st->sub, &json, &t);
        if (r == 0 && st->until_ns >= 0 && t > st->until_ns) {
            free(json);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (r == 0) {
            st->out = xasprintf("%s\n", json);
            free(json);
        } else if (r == -ENOBUFS) {
            st->out = xstrdup("{\"type\":\"error\",\"message\":\"events dropped: client too "
                              "slow\"}\n");
            st->ending = true;
        } else {
            r = events_wait(st);
            if (r == -ESHUTDOWN || r == -ETIME)
                return MHD_CONTENT_READER_END_OF_STREAM;
            if (r < 0)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        st->out_len = strlen(st->out);
    }
}

static void
events_stream_free(void *cls)
{
    struct events_stream *st = cls;
    obs_sub_free(st->sub);
    free(st->out);
    free(st);
}

/* Unix seconds, with a fraction, as nanoseconds. */
static int
parse_unix_ns(const char *s, int64_t *ret)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0 || v > 1e11)
        return -EINVAL;
    *ret = (int64_t)(v * 1e9);
    return 0;
}

enum MHD_Result
api_h_events(struct api_req *req)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    const char *since = api_req_query(req, "since");
    const char *until = api_req_query(req, "until");
    int64_t since_ns = -1, until_ns = -1;
    struct events_stream *st;
    struct MHD_Response *resp;

    if ((since && parse_unix_ns(since, &since_ns) < 0) ||
        (until && parse_unix_ns(until, &until_ns) < 0))
        return api_reply_error(req, -EINVAL,
                               "query parameters 'since' and 'until' are unix seconds, e.g. "
                               "1764589200.5");
    if (api_stream_acquire(req, &err) < 0)
        return api_reply_tp_err(req, &err);
    st = xnew(struct events_stream, 1);
    st->sub = obs_subscribe(obs_events(), since_ns);
    st->until_ns = until_ns;
    st->stop_fd = api_req_stop_fd(req);
    st->client_fd = api_req_client_fd(req);
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, EVENTS_STREAM_BLOCK, events_reader,
                                             st, events_stream_free);
    if (!resp) {
        events_stream_free(st);
        return api_reply_error(req, -ENOMEM, "create events response");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
    return api_reply_stream(req, resp);
}
