/* torpord's page-fault handler mode: one process per VMM restored with the Uffd memory backend.
 * It detaches (so it outlives torpord), records its pid and start time in the instance dir,
 * accepts the VMM's handshake (region list + userfaultfd), serves every missing page with
 * UFFDIO_COPY from the snapshot's memory file (zero pages after a remove event), publishes its
 * counters, and exits when the VMM does, leaving the pages served as the working set of the
 * snapshot a standby wrote into the image. A sentinel
 * child kills the VMM if this process dies first: a VMM whose handler is gone would hang at its
 * next fault. */
#include "daemon/uffd_handler.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hypervisor/driver.h"
#include "hypervisor/firecracker/fc_uffd.h"
#include "hypervisor/firecracker/fc_uffd_msg.h"
#include "snapshot/workingset.h"
#include "store/paths.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/proc.h"
#include "util/sock.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define LISTEN_FD          3
#define ACCEPT_MS          60000 /* the VMM connects during its load; a load that never comes */
#define HANDSHAKE_MS       10000
#define HANDSHAKE_REST_MS  100
#define WS_PAGE            4096u /* the bitmaps' granularity (a huge page sets all of its bits) */
#define PENDING_MAX        1024
#define FAULT_AROUND_BYTES (64u * 1024)
#define UFFD_MSG_BATCH     64

struct handler {
    const char *dir;
    const uint8_t *map; /* the memory file, read-only */
    uint64_t size;
    struct stat image;
    int uffd;
    struct fc_uffd_region *regs;
    size_t n_regs;
    uint8_t *touched; /* bit per WS_PAGE of the file: served */
    uint8_t *removed; /* bit per WS_PAGE of the file: reads as zeros since a remove event */
    uint8_t *present; /* bit per WS_PAGE of the file: populated by this handler */
    uint8_t *zeros;   /* a zero page of the largest page size, for huge zero pages */
    uint64_t pending[PENDING_MAX];
    size_t n_pending;
    uint64_t faults, pages, zero_pages, bytes; /* faults resolved; pages copied in (fault-around
                                                  included), zero pages among them, bytes */
    int stats_fd;
};

static void hlog(const char *fmt, ...) _printf_(1, 2);

/* One line to stderr (the VMM's log): this process has no daemon log. */
static void
hlog(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "torpord uffd handler[%d]: ", (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void
bits_set(uint8_t *bits, uint64_t from, uint64_t n)
{
    for (uint64_t k = from; k < from + n; k++)
        bits[k / 8] |= (uint8_t)(1u << (k % 8));
}

static void
bits_clear(uint8_t *bits, uint64_t from, uint64_t n)
{
    for (uint64_t k = from; k < from + n; k++)
        bits[k / 8] &= (uint8_t) ~(1u << (k % 8));
}

static bool
bit_get(const uint8_t *bits, uint64_t k)
{
    return bits[k / 8] & (1u << (k % 8));
}

/* "<pid> <start time>\n", durably: a restarted torpord finds the handler by it. */
static int
record_self(const char *dir)
{
    _cleanup_free_ char *path = fs_path_join(dir, FC_UFFD_PIDFILE);
    uint64_t st = 0;
    char buf[64];
    int r = proc_start_time(getpid(), &st);
    if (r < 0)
        return r;
    int n = snprintf(buf, sizeof(buf), "%d %llu\n", (int)getpid(), (unsigned long long)st);
    return fs_write_atomic(path, buf, (size_t)n, 0600, NULL);
}

/* Remove the record if it still names this process (a later restore may have replaced it). */
static void
unrecord_self(const char *dir)
{
    _cleanup_free_ char *path = fs_path_join(dir, FC_UFFD_PIDFILE);
    _cleanup_free_ char *data = NULL;
    size_t len;
    int pid;

    if (fs_read_file(path, 64, &data, &len, NULL) >= 0 && sscanf(data, "%d", &pid) == 1 &&
        pid == (int)getpid())
        (void)unlink(path);
}

static void
stats_write(struct handler *h)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "{\"faults\":%llu,\"pages\":%llu,\"zero_pages\":%llu,\"bytes\":%llu}\n",
                     (unsigned long long)h->faults, (unsigned long long)h->pages,
                     (unsigned long long)h->zero_pages, (unsigned long long)h->bytes);
    if (h->stats_fd >= 0 && pwrite(h->stats_fd, buf, (size_t)n, 0) == n)
        (void)!ftruncate(h->stats_fd, n);
}

/* After a standby the image served is the new snapshot's memory (the Diff went into it in
 * place): the pages served become that snapshot's working set, which the next restore reads
 * into the page cache while its VMM starts (snapshot/workingset.h). Any other exit (the VMM
 * died, a Full snapshot wrote another file) leaves nothing: the image is no snapshot's. */
static void
working_set_write(const struct handler *h, int mfd)
{
    /* h->dir is DATA/instances/<id>: the store's path builder names the snapshot dirs. */
    _cleanup_free_ char *data = xstrdup(h->dir), *memory = NULL;
    _cleanup_(inst_paths_clear) struct inst_paths p = { 0 };
    struct stat now, img;
    char *id, *cut;

    if (!(id = strrchr(data, '/')))
        return;
    *id++ = '\0';
    if (!(cut = strrchr(data, '/')))
        return;
    *cut = '\0';
    inst_paths_init(&p, data, id);
    if (strcmp(p.dir, h->dir) != 0)
        return;
    memory = fs_path_join(p.snap_latest, HV_SNAP_MEMORY);
    if (fstat(mfd, &now) < 0 || stat(memory, &img) < 0 || now.st_dev != img.st_dev ||
        now.st_ino != img.st_ino)
        return;
    _cleanup_(snap_ws_freep) struct snap_ws *ws =
        snap_ws_from_bitmap(h->touched, h->size / WS_PAGE, WS_PAGE);
    (void)snap_ws_save(p.snap_latest, ws, NULL); /* names the image as it is now */
}

/* How many pages to copy for a fault at page: it and the ones after it that are neither present
 * nor removed, up to FAULT_AROUND_BYTES and the region's end (what the kernel's fault-around
 * maps for a file mapping: one round trip per 64 KiB, not per page, when the guest or a Full
 * snapshot reads memory sequentially). */
static uint64_t
fault_around(const struct handler *h, const struct fc_uffd_region *r, uint64_t page)
{
    uint64_t max = FAULT_AROUND_BYTES / r->page_size, n = 1;
    while (n < max && page + n * r->page_size - r->base < r->size) {
        uint64_t f = (r->offset + page - r->base + n * r->page_size) / WS_PAGE;
        if (bit_get(h->present, f) || bit_get(h->removed, f))
            break;
        n++;
    }
    return n;
}

/* Resolve one fault: 0 served (or already present), -EAGAIN to retry after the queued events,
 * -EFAULT outside every region, other -errno from the kernel. */
static int
serve(struct handler *h, uint64_t addr)
{
    const struct fc_uffd_region *r = fc_uffd_region_find(h->regs, h->n_regs, addr);
    if (!r)
        return -EFAULT;
    uint64_t page = addr & ~(r->page_size - 1);
    uint64_t off = r->offset + (page - r->base);
    uint64_t first = off / WS_PAGE;
    bool zero = bit_get(h->removed, first);
    uint64_t done;
    int rc, e;

    if (zero && r->page_size == WS_PAGE) {
        struct uffdio_zeropage z = { .range = { .start = page, .len = r->page_size } };
        rc = ioctl(h->uffd, UFFDIO_ZEROPAGE, &z);
        e = rc < 0 ? errno : 0;
        done = rc == 0 ? r->page_size : 0;
    } else {
        if (zero && !h->zeros) {
            h->zeros = mmap(NULL, r->page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (h->zeros == MAP_FAILED) {
                h->zeros = NULL;
                return -ENOMEM;
            }
        }
        struct uffdio_copy c = {
            .dst = page,
            .src = (uintptr_t)(zero ? h->zeros : h->map + off),
            .len = zero ? r->page_size : fault_around(h, r, page) * r->page_size,
        };
        rc = ioctl(h->uffd, UFFDIO_COPY, &c);
        e = rc < 0 ? errno : 0;
        /* A copy stopped short (a page already there, a queued event) says how far it got. */
        done = rc == 0 ? c.len : c.copy > 0 ? (uint64_t)c.copy : 0;
    }
    if (done) {
        h->pages += done / r->page_size;
        h->bytes += done;
        bits_set(h->present, first, done / WS_PAGE);
        if (zero)
            h->zero_pages++;
        else
            bits_set(h->touched, first, done / WS_PAGE);
    }
    /* EEXIST with nothing copied: the faulting page was there already (a stale fault). */
    if (e && e != EEXIST && done < r->page_size)
        return -e;
    h->faults++;
    return 0;
}

/* A remove event (balloon inflation: madvise(DONTNEED)): the range reads as zeros from now on. */
static void
mark_removed(struct handler *h, uint64_t start, uint64_t end)
{
    for (size_t k = 0; k < h->n_regs; k++) {
        const struct fc_uffd_region *r = &h->regs[k];
        uint64_t lo = start > r->base ? start : r->base;
        uint64_t hi = end < r->base + r->size ? end : r->base + r->size;
        if (lo >= hi)
            continue;
        lo &= ~(uint64_t)(WS_PAGE - 1);
        uint64_t f = (r->offset + lo - r->base) / WS_PAGE, n = (hi - lo + WS_PAGE - 1) / WS_PAGE;
        bits_set(h->removed, f, n);
        bits_clear(h->present, f, n); /* missing again: the next touch faults */
    }
}

/* Read every queued event: faults join the pending list, removes are applied first (faults
 * and removes may arrive out of causal order; while a remove is queued, ioctls say EAGAIN). */
static int
drain(struct handler *h)
{
    struct uffd_msg msgs[UFFD_MSG_BATCH];

    for (;;) {
        ssize_t n = read(h->uffd, msgs, sizeof(msgs));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0)
            return -errno;
        if (n == 0 || n % (ssize_t)sizeof(struct uffd_msg))
            return -EPROTO;
        for (size_t k = 0; k < (size_t)n / sizeof(struct uffd_msg); k++) {
            const struct uffd_msg *m = &msgs[k];
            if (m->event == UFFD_EVENT_PAGEFAULT) {
                if (h->n_pending == PENDING_MAX)
                    return -ENOBUFS;
                h->pending[h->n_pending++] = m->arg.pagefault.address;
            } else if (m->event == UFFD_EVENT_REMOVE)
                mark_removed(h, m->arg.remove.start, m->arg.remove.end);
            /* UNMAP, REMAP and FORK are not asked for: Firecracker enables REMOVE alone. */
        }
    }
}

static int
serve_pending(struct handler *h)
{
    size_t keep = 0;
    for (size_t k = 0; k < h->n_pending; k++) {
        int r = serve(h, h->pending[k]);
        if (r == -EAGAIN)
            h->pending[keep++] = h->pending[k];
        else if (r == -ESRCH)
            return r;
        else if (r < 0) {
            hlog("cannot serve the fault at 0x%llx: %s", (unsigned long long)h->pending[k],
                 strerror(-r));
            return r;
        }
    }
    h->n_pending = keep;
    return 0;
}

/* Serve until the VMM is gone (0) or serving fails (-errno: the sentinel then kills the VMM). */
static int
serve_loop(struct handler *h, int conn, int vmm_pidfd)
{
    struct pollfd p[3] = {
        { .fd = h->uffd, .events = POLLIN },
        { .fd = conn, .events = POLLIN },
        { .fd = vmm_pidfd, .events = POLLIN },
    };
    for (;;) {
        uint64_t before = h->pages;
        int n = poll(p, 3, h->n_pending ? 1 : -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[2].revents)
            return 0;
        if (p[1].revents) {
            char junk[256];
            /* Firecracker sends nothing after the handshake and keeps its end open. An EOF
             * comes with its exit, but only its pidfd says that it exited: a VMM that merely
             * closed the socket must still be served, not killed by the sentinel. */
            ssize_t k = recv(conn, junk, sizeof(junk), MSG_DONTWAIT);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                p[1].fd = -1; /* poll ignores it from now on */
        }
        int r = drain(h);
        if (r >= 0)
            r = serve_pending(h);
        /* ESRCH: the VMM's memory is gone before its pidfd says so (it is exiting). */
        if (r == -ESRCH)
            return 0;
        if (r < 0)
            return r;
        if (h->pages != before)
            stats_write(h);
    }
}

/* The region list and the userfaultfd, sent by one sendmsg (possibly read in parts). */
static int
handshake(int conn, struct handler *h)
{
    _cleanup_free_ char *buf = xmalloc(FC_UFFD_MSG_MAX + 1);
    _cleanup_close_ int fd = -EBADF;
    uint64_t deadline = now_ms() + HANDSHAKE_MS;
    size_t len = 0;
    struct tp_err err = { 0 };

    for (;;) {
        union {
            char c[CMSG_SPACE(sizeof(int) * 4)];
            struct cmsghdr align;
        } u;
        struct iovec iov = { .iov_base = buf + len, .iov_len = FC_UFFD_MSG_MAX - len };
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.c, .msg_controllen = sizeof(u.c)
        };
        uint64_t now = now_ms();
        if (now >= deadline || len == FC_UFFD_MSG_MAX)
            break;
        struct pollfd p = { .fd = conn, .events = POLLIN };
        /* The fd comes with the message's first byte; the rest follows at once if at all. */
        int wait = (int)(deadline - now), pr;
        if (fd >= 0 && wait > HANDSHAKE_REST_MS)
            wait = HANDSHAKE_REST_MS;
        pr = poll(&p, 1, wait);
        if (pr == 0 && fd >= 0)
            break;
        if (pr <= 0)
            continue;
        ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t k = 0; k < nfd; k++) {
                int got;
                memcpy(&got, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
                if (fd < 0)
                    fd = got;
                else
                    close(got); /* exactly one fd is sent; extras are not ours to keep */
            }
        }
        len += (size_t)n;
        if (fd >= 0 && fc_uffd_regions_parse(buf, len, h->size, &h->regs, &h->n_regs, NULL) >= 0)
            break;
    }
    if (fd < 0) {
        hlog("the VMM sent no userfaultfd");
        return -EPROTO;
    }
    if (!h->regs && fc_uffd_regions_parse(buf, len, h->size, &h->regs, &h->n_regs, &err) < 0) {
        hlog("bad region list: %s", tp_err_msg(&err));
        tp_err_clear(&err);
        return -EPROTO;
    }
    h->uffd = TAKE_FD(fd);
    return 0;
}

/* Kill the VMM when this process ends without having seen it go: a child blocked on a pipe
 * whose only writer is this process, so even SIGKILL here wakes it. */
static int
sentinel_start(int vmm_pidfd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int r = -errno;
        close(p[0]);
        close(p[1]);
        return r;
    }
    if (pid == 0) {
        char c;
        close(p[1]);
        for (int fd = 3; fd < 1024; fd++)
            if (fd != p[0] && fd != vmm_pidfd)
                close(fd);
        while (read(p[0], &c, 1) < 0 && errno == EINTR)
            ;
        (void)proc_pidfd_signal(vmm_pidfd, SIGKILL); /* ESRCH: it is gone already */
        _exit(0);
    }
    close(p[0]);
    return p[1]; /* kept open (CLOEXEC) until this process exits */
}

static int
serve_vmm(struct handler *h, int lfd)
{
    _cleanup_close_ int conn = -EBADF, vmm_pidfd = -EBADF, sentinel = -EBADF;
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    int r = sock_wait(lfd, POLLIN, ACCEPT_MS);
    if (r <= 0)
        return r < 0 ? r : -ETIMEDOUT;
    conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return -errno;
    close(lfd); /* one VMM per handler */
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
        return -errno;
    vmm_pidfd = proc_pidfd_open(cred.pid);
    if (vmm_pidfd < 0)
        return vmm_pidfd;
    sentinel = sentinel_start(vmm_pidfd);
    if (sentinel < 0)
        return sentinel;
    r = handshake(conn, h);
    if (r < 0)
        return r; /* the sentinel kills the VMM: its memory will never be served */
    stats_write(h);
    return serve_loop(h, conn, vmm_pidfd);
}

int
uffd_handler_main(int argc, char **argv)
{
    struct handler h = { .uffd = -1, .stats_fd = -1 };
    _cleanup_close_ int mfd = -EBADF;
    _cleanup_free_ char *stats = NULL;
    int ready[2], r;
    char c = 0;

    if (argc != 4) {
        fprintf(stderr, "usage: torpord " FC_UFFD_HANDLER_FLAG " MEMORY-FILE INSTANCE-DIR\n");
        return 2;
    }
    h.dir = argv[3];
    /* Checked first: anything opened here could otherwise take fd 3's number. */
    int acc = 0;
    socklen_t al = sizeof(acc);
    if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc ||
        fcntl(LISTEN_FD, F_SETFD, FD_CLOEXEC) < 0) {
        hlog("no listening socket on fd %d", LISTEN_FD);
        return 1;
    }
    mfd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (mfd < 0 || fstat(mfd, &h.image) < 0) {
        hlog("open memory file '%s': %s", argv[2], strerror(errno));
        return 1;
    }
    h.size = (uint64_t)h.image.st_size;
    if (h.size == 0 || h.size % WS_PAGE) {
        hlog("memory file '%s' has %llu bytes, not whole pages", argv[2],
             (unsigned long long)h.size);
        return 1;
    }
    /* Shared and read-only: the page cache's pages, copied into the guest on each fault. */
    h.map = mmap(NULL, h.size, PROT_READ, MAP_SHARED, mfd, 0);
    if (h.map == MAP_FAILED) {
        hlog("map memory file '%s': %s", argv[2], strerror(errno));
        return 1;
    }
    h.touched = xzalloc(h.size / WS_PAGE / 8 + 1);
    h.removed = xzalloc(h.size / WS_PAGE / 8 + 1);
    h.present = xzalloc(h.size / WS_PAGE / 8 + 1);

    /* Detach: the starter (torpord's child) exits once the grandchild is recorded, so torpord
     * reaps it at once and the handler belongs to no daemon. */
    if (pipe2(ready, O_CLOEXEC) < 0)
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid > 0) {
        close(ready[1]);
        while (read(ready[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(c == 'y' ? 0 : 1);
    }
    close(ready[0]);
    r = record_self(h.dir);
    if (r < 0) {
        hlog("record pid in '%s': %s", h.dir, strerror(-r));
        _exit(1);
    }
    /* Whole before the driver goes on (zeros), then rewritten in place: the numbers only grow.
     * Advisory: no fsync. */
    stats = fs_path_join(h.dir, FC_UFFD_STATS);
    h.stats_fd = open(stats, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    stats_write(&h);
    (void)!write(ready[1], "y", 1);
    close(ready[1]);

    r = serve_vmm(&h, LISTEN_FD);
    if (r < 0)
        hlog("stopped serving: %s", strerror(-r));
    stats_write(&h);
    /* Only a VMM served to its end leaves a working set: a load that never came (accept timed
     * out after a crash), a bad handshake or a failed fault leave the image's recorded set as
     * it was, instead of an empty or partial one. */
    if (r == 0)
        working_set_write(&h, mfd);
    unrecord_self(h.dir);
    _exit(r < 0 ? 1 : 0);
}
