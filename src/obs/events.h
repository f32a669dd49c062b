/* The event bus behind GET /v1/events: a bounded ring of recent events for replay, and one
 * bounded queue per subscriber. Publishing never blocks on a subscriber: one whose queue is full
 * is marked dropped and gets nothing more. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/cleanup.h"

#define OBS_EVENTS_RING_DEFAULT  1000 /* events kept for ?since= replay */
#define OBS_EVENTS_QUEUE_DEFAULT 1024 /* events waiting for one subscriber; > the ring */

struct obs_bus;
struct obs_sub;

/* ring_cap events are kept for replay; each subscriber queues at most queue_cap. */
struct obs_bus *obs_bus_new(size_t ring_cap, size_t queue_cap);
/* NULL-safe; returns NULL. Every subscriber must have been freed first. */
struct obs_bus *obs_bus_free(struct obs_bus *b);
DEFINE_CLEANUP(struct obs_bus, obs_bus_free)

/* The daemon's bus (default capacities), created on first use and never freed. */
struct obs_bus *obs_events(void);

/* Publish one event: json (one line, no newline; copied) at time_ns (wall clock). Never waits
 * for a subscriber. */
void obs_publish(struct obs_bus *b, int64_t time_ns, const char *json);

/* Subscribe. since_ns >= 0 first queues every kept event at or after it (oldest first). */
struct obs_sub *obs_subscribe(struct obs_bus *b, int64_t since_ns);
/* An eventfd readable while events are queued or the subscriber was dropped (owned by sub). */
int obs_sub_fd(struct obs_sub *s);
/* Take the next event (caller frees *ret_json; ret_time_ns may be NULL): 0; -EAGAIN when none is
 * queued; -ENOBUFS once the queue overflowed and everything queued before that was taken. */
int obs_sub_next(struct obs_sub *s, char **ret_json, int64_t *ret_time_ns);
/* Unsubscribe and free. NULL-safe; returns NULL. */
struct obs_sub *obs_sub_free(struct obs_sub *s);
DEFINE_CLEANUP(struct obs_sub, obs_sub_free)
