/* VMM exit monitor: one epoll thread over pidfds, so a VMM that dies is noticed at once. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "instance/manager-internal.h"
#include "util/log.h"
#include "util/xalloc.h"

/* A watch owns a dup of the VMM's pidfd, so the instance may drop its handle at any time. */
struct watch {
    char id[INST_ID_LEN + 1];
    pid_t pid;
    uint64_t start_time;
    int fd;
    struct watch *next;
};

struct monitor {
    struct inst_manager *m;
    int epfd;
    int stopfd;
    int tickfd; /* timerfd: manager_tick */
    pthread_t thread;
    pthread_mutex_t lock; /* guards the watch list */
    struct watch *watches;
};

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

/* epoll data of the tick timer (never a watch's address). */
#define TICK ((struct watch *)1)

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
    if (mon->epfd < 0 || mon->stopfd < 0 || mon->tickfd < 0) {
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
    if (epoll_ctl(mon->epfd, EPOLL_CTL_ADD, mon->stopfd, &ev) < 0 ||
        timerfd_settime(mon->tickfd, 0, &every, NULL) < 0 ||
        epoll_ctl(mon->epfd, EPOLL_CTL_ADD, mon->tickfd, &tick) < 0) {
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
    pthread_mutex_destroy(&mon->lock);
    free(mon);
    return NULL;
}

int
monitor_watch(struct monitor *mon, const char *id, const struct hv_vm *vm)
{
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
