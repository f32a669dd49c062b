/* VMM exit monitor: one epoll thread over pidfds, so a VMM that dies is noticed at once; the
 * same thread watches the console logs with inotify and records when their bytes arrived. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "instance/console_index.h"
#include "instance/manager-internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

/* A watch owns a dup of the VMM's pidfd, so the instance may drop its handle at any time. */
struct watch {
    char id[INST_ID_LEN + 1];
    pid_t pid;
    uint64_t start_time;
    int fd;
    struct watch *next;
};

/* An inotify watch on an instance's console log. */
struct console_watch {
    int wd;
    char id[INST_ID_LEN + 1];
    bool dirty; /* grew since its last note */
};

struct monitor {
    struct inst_manager *m;
    int epfd;
    int stopfd;
    int tickfd; /* timerfd: manager_tick */
    int inofd;  /* inotify: console logs that grew */
    int notefd; /* timerfd: note the logs that grew, CONSOLE_NOTE_DELAY_MS after the first */
    bool note_armed;
    pthread_t thread;
    pthread_mutex_t lock; /* guards the watch list and the console watches */
    struct watch *watches;
    struct console_watch *cw;
    size_t n_cw, cap_cw;
};

/* Growth is noted this long after inotify reports it, so that a burst (the serial port writes
 * byte by byte) makes one record rather than hundreds; the times are that much late at most. */
#define CONSOLE_NOTE_DELAY_MS 5

static void
watch_unlink(struct monitor *mon, struct watch *w)
{
    pthread_mutex_lock(&mon->lock);
    for (struct watch **pp = &mon->watches; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    pthread_mutex_unlock(&mon->lock);
    epoll_ctl(mon->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    free(w);
}

/* epoll data of the timers and inotify (never a watch's address). */
#define TICK    ((struct watch *)1)
#define INOTIFY ((struct watch *)2)
#define NOTE    ((struct watch *)3)

static void
console_note(struct inst_manager *m, const char *id)
{
    struct inst_paths p;

    inst_paths_init(&p, m->data_dir, id);
    int r = console_index_note(p.console_log, p.console_idx, wall_ns());
    if (r < 0)
        log_debug("instance=%s: index console log: %s", id, strerror(-r));
    inst_paths_clear(&p);
}

/* Read inotify's queue: mark the logs that grew, forget the watches the kernel dropped (the
 * log was deleted), and have them noted shortly. */
static void
monitor_console_events(struct monitor *mon)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool grew = false;

    for (;;) {
        ssize_t n = read(mon->inofd, buf, sizeof(buf));
        if (n <= 0)
            break; /* EAGAIN: drained */
        pthread_mutex_lock(&mon->lock);
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            for (size_t k = 0; k < mon->n_cw; k++) {
                if (mon->cw[k].wd != ev->wd)
                    continue;
                if (ev->mask & IN_IGNORED) {
                    mon->cw[k] = mon->cw[--mon->n_cw];
                } else {
                    mon->cw[k].dirty = true;
                    grew = true;
                }
                break;
            }
            p += sizeof(*ev) + ev->len;
        }
        pthread_mutex_unlock(&mon->lock);
    }
    if (grew && !mon->note_armed) {
        const struct itimerspec once = { .it_value = { .tv_nsec =
                                                           CONSOLE_NOTE_DELAY_MS * 1000000L } };
        mon->note_armed = timerfd_settime(mon->notefd, 0, &once, NULL) == 0;
    }
}

static void
monitor_console_note_dirty(struct monitor *mon)
{
    uint64_t fired;
    char(*ids)[INST_ID_LEN + 1];
    size_t n = 0;

    (void)!read(mon->notefd, &fired, sizeof(fired));
    mon->note_armed = false;
    pthread_mutex_lock(&mon->lock);
    ids = xzalloc(sizeof(*ids) * (mon->n_cw + 1));
    for (size_t k = 0; k < mon->n_cw; k++)
        if (mon->cw[k].dirty) {
            mon->cw[k].dirty = false;
            memcpy(ids[n++], mon->cw[k].id, INST_ID_LEN + 1);
        }
    pthread_mutex_unlock(&mon->lock);
    for (size_t k = 0; k < n; k++)
        console_note(mon->m, ids[k]);
    free(ids);
}

void
monitor_watch_console(struct monitor *mon, const char *id)
{
    struct inst_paths p;

    inst_paths_init(&p, mon->m->data_dir, id);
    /* The same file gives the same wd: watching again is harmless. */
    int wd = inotify_add_watch(mon->inofd, p.console_log, IN_MODIFY | IN_DONT_FOLLOW);
    inst_paths_clear(&p);
    if (wd < 0)
        return; /* no log yet; the next tick tries again */
    pthread_mutex_lock(&mon->lock);
    size_t k;
    for (k = 0; k < mon->n_cw; k++)
        if (mon->cw[k].wd == wd)
            break;
    if (k == mon->n_cw) {
        if (mon->n_cw == mon->cap_cw) {
            mon->cap_cw = mon->cap_cw ? mon->cap_cw * 2 : 16;
            mon->cw = xrealloc(mon->cw, mon->cap_cw * sizeof(*mon->cw));
        }
        mon->cw[mon->n_cw++] = (struct console_watch){ .wd = wd };
    }
    snprintf(mon->cw[k].id, sizeof(mon->cw[k].id), "%s", id);
    pthread_mutex_unlock(&mon->lock);
}

static void *
monitor_loop(void *arg)
{
    struct monitor *mon = arg;
    struct epoll_event evs[16];

    for (;;) {
        int n = epoll_wait(mon->epfd, evs, ELEMENTSOF(evs), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error_errno(-errno, "monitor: epoll_wait");
            return NULL;
        }
        for (int k = 0; k < n; k++) {
            struct watch *w = evs[k].data.ptr;
            if (!w)
                return NULL; /* the stop eventfd */
            if (w == INOTIFY) {
                monitor_console_events(mon);
                continue;
            }
            if (w == NOTE) {
                monitor_console_note_dirty(mon);
                continue;
            }
            if (w == TICK) {
                uint64_t ticks;
                if (read(mon->tickfd, &ticks, sizeof(ticks)) == sizeof(ticks))
                    manager_tick(mon->m);
                continue;
            }
            char id[INST_ID_LEN + 1];
            pid_t pid = w->pid;
            uint64_t st = w->start_time;
            memcpy(id, w->id, sizeof(id));
            watch_unlink(mon, w);
            manager_on_vmm_exit(mon->m, id, pid, st);
        }
    }
}

int
monitor_start(struct inst_manager *m, struct monitor **ret, struct tp_err *err)
{
    struct monitor *mon = xnew(struct monitor, 1);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    int r;

    mon->m = m;
    pthread_mutex_init(&mon->lock, NULL);
    mon->epfd = epoll_create1(EPOLL_CLOEXEC);
    mon->stopfd = eventfd(0, EFD_CLOEXEC);
    mon->tickfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    mon->notefd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    mon->inofd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (mon->epfd < 0 || mon->stopfd < 0 || mon->tickfd < 0 || mon->notefd < 0 || mon->inofd < 0) {
        r = tp_err_errno(err, -errno, "create VMM monitor");
        goto fail;
    }
    const struct itimerspec every = {
        .it_interval = { .tv_sec = MANAGER_TICK_MS / 1000,
                         .tv_nsec = (MANAGER_TICK_MS % 1000) * 1000000L },
        .it_value = { .tv_sec = MANAGER_TICK_MS / 1000,
                      .tv_nsec = (MANAGER_TICK_MS % 1000) * 1000000L },
    };
    struct epoll_event tick = { .events = EPOLLIN, .data.ptr = TICK };
    struct epoll_event ino = { .events = EPOLLIN, .data.ptr = INOTIFY };
    struct epoll_event note = { .events = EPOLLIN, .data.ptr = NOTE };
    if (epoll_ctl(mon->epfd, EPOLL_CTL_ADD, mon->stopfd, &ev) < 0 ||
        timerfd_settime(mon->tickfd, 0, &every, NULL) < 0 ||
        epoll_ctl(mon->epfd, EPOLL_CTL_ADD, mon->tickfd, &tick) < 0 ||
        epoll_ctl(mon->epfd, EPOLL_CTL_ADD, mon->inofd, &ino) < 0 ||
        epoll_ctl(mon->epfd, EPOLL_CTL_ADD, mon->notefd, &note) < 0) {
        r = tp_err_errno(err, -errno, "create VMM monitor");
        goto fail;
    }
    r = -pthread_create(&mon->thread, NULL, monitor_loop, mon);
    if (r < 0) {
        tp_err_errno(err, r, "start VMM monitor thread");
        goto fail;
    }
    *ret = mon;
    return 0;
fail:
    if (mon->epfd >= 0)
        close(mon->epfd);
    if (mon->stopfd >= 0)
        close(mon->stopfd);
    if (mon->tickfd >= 0)
        close(mon->tickfd);
    if (mon->notefd >= 0)
        close(mon->notefd);
    if (mon->inofd >= 0)
        close(mon->inofd);
    free(mon);
    return r;
}

struct monitor *
monitor_stop(struct monitor *mon)
{
    if (!mon)
        return NULL;
    uint64_t one = 1;
    if (write(mon->stopfd, &one, sizeof(one)) == sizeof(one))
        pthread_join(mon->thread, NULL);
    while (mon->watches) {
        struct watch *w = mon->watches;
        mon->watches = w->next;
        close(w->fd);
        free(w);
    }
    close(mon->epfd);
    close(mon->stopfd);
    close(mon->tickfd);
    close(mon->notefd);
    close(mon->inofd);
    free(mon->cw);
    pthread_mutex_destroy(&mon->lock);
    free(mon);
    return NULL;
}

int
monitor_watch(struct monitor *mon, const char *id, const struct hv_vm *vm)
{
    monitor_watch_console(mon, id); /* the VMM has its console log open by now */
    struct watch *w = xnew(struct watch, 1);
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->pid = vm->pid;
    w->start_time = vm->start_time;
    w->fd = fcntl(vm->pidfd, F_DUPFD_CLOEXEC, 3);
    if (w->fd < 0) {
        int r = -errno;
        free(w);
        return log_warn_errno(r, "instance=%s: cannot watch VMM pid %d", id, (int)vm->pid);
    }
    pthread_mutex_lock(&mon->lock);
    w->next = mon->watches;
    mon->watches = w;
    pthread_mutex_unlock(&mon->lock);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };
    if (epoll_ctl(mon->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0) {
        int r = -errno;
        watch_unlink(mon, w);
        return log_warn_errno(r, "instance=%s: cannot watch VMM pid %d", id, (int)vm->pid);
    }
    return 0;
}
