/* The event bus: a replay ring and per-subscriber queues under one short lock; subscribers are
 * woken by an eventfd so they can wait beside their client's socket. */
#include "obs/events.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/xalloc.h"

struct item {
    int64_t time_ns;
    char *json;
};

/* A fixed-capacity FIFO of items. */
struct fifo {
    struct item *v;
    size_t cap, head, n;
};

struct obs_sub {
    struct obs_bus *bus;
    struct obs_sub *next;
    struct fifo q;
    bool dropped;
    int efd;
};

struct obs_bus {
    pthread_mutex_t lock;
    struct fifo ring;
    size_t queue_cap;
    struct obs_sub *subs;
};

static void
fifo_init(struct fifo *f, size_t cap)
{
    f->v = xnew(struct item, cap);
    f->cap = cap;
}

static void
fifo_clear(struct fifo *f)
{
    for (size_t k = 0; k < f->n; k++)
        free(f->v[(f->head + k) % f->cap].json);
    free(f->v);
}

static struct item *
fifo_at(struct fifo *f, size_t k)
{
    return &f->v[(f->head + k) % f->cap];
}

static bool
fifo_push(struct fifo *f, int64_t time_ns, const char *json)
{
    if (f->n == f->cap)
        return false;
    *fifo_at(f, f->n++) = (struct item){ time_ns, xstrdup(json) };
    return true;
}

static struct item
fifo_pop(struct fifo *f)
{
    struct item it = f->v[f->head];
    f->head = (f->head + 1) % f->cap;
    f->n--;
    return it;
}

struct obs_bus *
obs_bus_new(size_t ring_cap, size_t queue_cap)
{
    struct obs_bus *b = xnew(struct obs_bus, 1);
    pthread_mutex_init(&b->lock, NULL);
    fifo_init(&b->ring, ring_cap ? ring_cap : 1);
    b->queue_cap = queue_cap ? queue_cap : 1;
    return b;
}

struct obs_bus *
obs_bus_free(struct obs_bus *b)
{
    if (!b)
        return NULL;
    fifo_clear(&b->ring);
    pthread_mutex_destroy(&b->lock);
    free(b);
    return NULL;
}

static pthread_once_t bus_once = PTHREAD_ONCE_INIT;
static struct obs_bus *bus_default;

static void
bus_init(void)
{
    bus_default = obs_bus_new(OBS_EVENTS_RING_DEFAULT, OBS_EVENTS_QUEUE_DEFAULT);
}

struct obs_bus *
obs_events(void)
{
    pthread_once(&bus_once, bus_init);
    return bus_default;
}

static void
wake(struct obs_sub *s)
{
    (void)eventfd_write(s->efd, 1); /* non-blocking; a counter at its limit is readable anyway */
}

void
obs_publish(struct obs_bus *b, int64_t time_ns, const char *json)
{
    pthread_mutex_lock(&b->lock);
    if (b->ring.n == b->ring.cap)
        free(fifo_pop(&b->ring).json);
    fifo_push(&b->ring, time_ns, json);
    for (struct obs_sub *s = b->subs; s; s = s->next) {
        if (s->dropped)
            continue;
        if (!fifo_push(&s->q, time_ns, json))
            s->dropped = true;
        wake(s);
    }
    pthread_mutex_unlock(&b->lock);
}

struct obs_sub *
obs_subscribe(struct obs_bus *b, int64_t since_ns)
{
    struct obs_sub *s = xnew(struct obs_sub, 1);

    s->bus = b;
    fifo_init(&s->q, b->queue_cap);
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->efd < 0)
        abort(); /* eventfd fails only for want of memory or fds */
    pthread_mutex_lock(&b->lock);
    if (since_ns >= 0)
        for (size_t k = 0; k < b->ring.n; k++) {
            struct item *it = fifo_at(&b->ring, k);
            if (it->time_ns >= since_ns && !fifo_push(&s->q, it->time_ns, it->json)) {
                s->dropped = true;
                break;
            }
        }
    if (s->q.n || s->dropped)
        wake(s);
    s->next = b->subs;
    b->subs = s;
    pthread_mutex_unlock(&b->lock);
    return s;
}

int
obs_sub_fd(struct obs_sub *s)
{
    return s->efd;
}

int
obs_sub_next(struct obs_sub *s, char **ret_json, int64_t *ret_time_ns)
{
    struct obs_bus *b = s->bus;
    eventfd_t junk;
    int r;

    pthread_mutex_lock(&b->lock);
    if (s->q.n) {
        struct item it = fifo_pop(&s->q);
        *ret_json = it.json;
        if (ret_time_ns)
            *ret_time_ns = it.time_ns;
        r = 0;
    } else {
        r = s->dropped ? -ENOBUFS : -EAGAIN;
        if (!s->dropped)
            (void)eventfd_read(s->efd, &junk); /* empty now: wait for the next publish */
    }
    pthread_mutex_unlock(&b->lock);
    return r;
}

struct obs_sub *
obs_sub_free(struct obs_sub *s)
{
    if (!s)
        return NULL;
    struct obs_bus *b = s->bus;
    pthread_mutex_lock(&b->lock);
    for (struct obs_sub **at = &b->subs; *at; at = &(*at)->next)
        if (*at == s) {
            *at = s->next;
            break;
        }
    pthread_mutex_unlock(&b->lock);
    fifo_clear(&s->q);
    close(s->efd);
    free(s);
    return NULL;
}
