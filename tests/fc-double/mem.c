/* fc-double: guest memory, dirty-page tracking and the memory files of snapshots. */
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define GIB (1024ull * 1024 * 1024)

static const uint8_t zero_page[MEM_PAGE];

void
mem_layout(struct mem *m, size_t size)
{
    m->nregions = 1;
    m->regions[0] = (struct mem_region){ .gpa = 0, .offset = 0, .size = size };
    if (size > 3 * GIB) {
        m->regions[0].size = 3 * GIB;
        m->regions[1] =
            (struct mem_region){ .gpa = 4 * GIB, .offset = 3 * GIB, .size = size - 3 * GIB };
        m->nregions = 2;
    }
}

static void
mem_init_tracking(struct mem *m, size_t size)
{
    m->size = size;
    m->npages = size / MEM_PAGE;
    m->dirty = calloc((m->npages + 63) / 64, sizeof(uint64_t));
    if (!m->dirty)
        abort();
    mem_layout(m, size);
}

int
mem_boot(struct mem *m, size_t size, struct fcd_err *err)
{
    int fd = memfd_create("fc-double-guest-ram", MFD_CLOEXEC);
    if (fd < 0)
        return fcd_fail(err, -errno, "create guest memory: %s", strerror(errno));
    if (ftruncate(fd, (off_t)size) < 0) {
        int r = -errno;
        close(fd);
        return fcd_fail(err, r, "size guest memory to %zu bytes: %s", size, strerror(-r));
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        int r = -errno;
        close(fd);
        return fcd_fail(err, r, "map guest memory: %s", strerror(-r));
    }
    *m = (struct mem){ .backend = MEM_BOOT, .base = p, .fd = fd, .uffd = -1, .uffd_sock = -1 };
    mem_init_tracking(m, size);
    return 0;
}

int
mem_load_file(struct mem *m, const char *path, size_t size, struct fcd_err *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fcd_fail(err, -errno, "Cannot open the memory file: %s", strerror(errno));
    if (fstat(fd, &st) < 0 || (size_t)st.st_size != size) {
        close(fd);
        return fcd_fail(err, -EINVAL,
                        "The memory file '%s' has %lld bytes, the snapshot's guest memory is "
                        "%zu bytes",
                        path, (long long)st.st_size, size);
    }
    /* Private: the guest's writes never reach the file, which other VMs may share. */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        int r = -errno;
        close(fd);
        return fcd_fail(err, r, "map the memory file: %s", strerror(-r));
    }
    *m = (struct mem){ .backend = MEM_FILE, .base = p, .fd = fd, .uffd = -1, .uffd_sock = -1 };
    mem_init_tracking(m, size);
    return 0;
}

static int
uffd_open(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0)
        return fd;
#ifdef USERFAULTFD_IOC_NEW
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        close(dev);
        if (fd >= 0)
            return fd;
    }
#endif
    return -errno;
}

static int
uffd_send(int sock, const char *json, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = { .iov_base = (void *)json, .iov_len = strlen(json) };
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)
    };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

    memset(u.buf, 0, sizeof(u.buf));
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        return (size_t)n == iov.iov_len ? 0 : -EIO;
    }
}

int
mem_load_uffd(struct mem *m, const char *path, size_t size, struct fcd_err *err)
{
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    json_t *list;
    char *text;
    int r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return fcd_fail(err, -ENAMETOOLONG, "UFFD socket path '%s' is too long", path);
    *m = (struct mem){ .backend = MEM_UFFD, .fd = -1, .uffd = -1, .uffd_sock = -1 };
    m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m->base == MAP_FAILED) {
        m->base = NULL;
        return fcd_fail(err, -errno, "map guest memory: %s", strerror(errno));
    }
    mem_init_tracking(m, size);
    m->uffd = uffd_open();
    if (m->uffd < 0)
        return fcd_fail(err, m->uffd, "create userfaultfd: %s", strerror(-m->uffd));
    if (ioctl(m->uffd, UFFDIO_API, &api) < 0)
        return fcd_fail(err, -errno, "userfaultfd API handshake: %s", strerror(errno));
    for (int i = 0; i < m->nregions; i++) {
        struct uffdio_register reg = {
            .range = { .start = (uintptr_t)m->base + m->regions[i].offset,
                       .len = m->regions[i].size },
            .mode = UFFDIO_REGISTER_MODE_MISSING,
        };
        if (ioctl(m->uffd, UFFDIO_REGISTER, &reg) < 0)
            return fcd_fail(err, -errno, "register guest memory with userfaultfd: %s",
                            strerror(errno));
    }

    m->uffd_sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m->uffd_sock < 0)
        return fcd_fail(err, -errno, "socket: %s", strerror(errno));
    strcpy(sa.sun_path, path);
    if (connect(m->uffd_sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return fcd_fail(err, -errno, "Failed to connect to the UFFD handler socket '%s': %s", path,
                        strerror(errno));

    list = json_array();
    for (int i = 0; i < m->nregions; i++)
        json_array_append_new(list,
                              json_pack("{s:I,s:I,s:I,s:i,s:i}", "base_host_virt_addr",
                                        (json_int_t)((uintptr_t)m->base + m->regions[i].offset),
                                        "size", (json_int_t)m->regions[i].size, "offset",
                                        (json_int_t)m->regions[i].offset, "page_size",
                                        (int)MEM_PAGE, "page_size_kib", (int)MEM_PAGE));
    text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    r = uffd_send(m->uffd_sock, text, m->uffd);
    free(text);
    if (r < 0)
        return fcd_fail(err, r, "send the userfaultfd to the UFFD handler: %s", strerror(-r));
    return 0;
}

void
mem_release(struct mem *m)
{
    if (m->base)
        munmap(m->base, m->size);
    if (m->fd >= 0)
        close(m->fd);
    if (m->uffd >= 0)
        close(m->uffd);
    if (m->uffd_sock >= 0)
        close(m->uffd_sock);
    free(m->dirty);
    *m = (struct mem){ .fd = -1, .uffd = -1, .uffd_sock = -1 };
}

void
mem_write(struct mem *m, size_t off, const void *data, size_t len)
{
    if (!m->base || off >= m->size)
        return;
    if (len > m->size - off)
        len = m->size - off;
    memcpy(m->base + off, data, len);
    for (size_t p = off / MEM_PAGE; len && p <= (off + len - 1) / MEM_PAGE; p++)
        m->dirty[p / 64] |= 1ull << (p % 64);
}

void
mem_read(const struct mem *m, size_t off, void *data, size_t len)
{
    memset(data, 0, len);
    if (!m->base || off >= m->size)
        return;
    memcpy(data, m->base + off, len > m->size - off ? m->size - off : len);
}

void
mem_clear_dirty(struct mem *m)
{
    if (m->dirty)
        memset(m->dirty, 0, (m->npages + 63) / 64 * sizeof(uint64_t));
}

size_t
mem_dirty_count(const struct mem *m)
{
    size_t n = 0;
    for (size_t i = 0; m->dirty && i < (m->npages + 63) / 64; i++)
        n += (size_t)__builtin_popcountll(m->dirty[i]);
    return n;
}

static bool
page_dirty(const struct mem *m, size_t p)
{
    return m->dirty[p / 64] & (1ull << (p % 64));
}

static int
pwrite_all(int fd, const uint8_t *p, size_t len, off_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

int
mem_write_snapshot(struct mem *m, const char *path, bool diff, struct fcd_err *err)
{
    struct stat st;
    bool fresh = false;
    int r = 0, fd;

    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return fcd_fail(err, -errno, "Cannot open the memory file '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    /* Another size: start from an empty sparse file; the right size: write in place. */
    if ((size_t)st.st_size != m->size) {
        if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)m->size) < 0) {
            r = -errno;
            goto out;
        }
        fresh = true;
    }
    for (size_t p = 0; p < m->npages && r == 0;) {
        size_t run = 0;
        const uint8_t *src = m->base + p * MEM_PAGE;

        if (diff) {
            while (p + run < m->npages && page_dirty(m, p + run))
                run++;
            if (run)
                r = pwrite_all(fd, src, run * MEM_PAGE, (off_t)(p * MEM_PAGE));
            p += run ? run : 1;
            continue;
        }
        /* Full: data runs are written, zero pages stay holes (punched in a reused file). */
        bool zero = memcmp(src, zero_page, MEM_PAGE) == 0;
        while (p + run < m->npages &&
               (memcmp(m->base + (p + run) * MEM_PAGE, zero_page, MEM_PAGE) == 0) == zero)
            run++;
        if (!zero)
            r = pwrite_all(fd, src, run * MEM_PAGE, (off_t)(p * MEM_PAGE));
        else if (!fresh && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                     (off_t)(p * MEM_PAGE), (off_t)(run * MEM_PAGE)) < 0) {
            for (size_t i = 0; i < run && r == 0; i++)
                r = pwrite_all(fd, zero_page, MEM_PAGE, (off_t)((p + i) * MEM_PAGE));
        }
        p += run;
    }
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
out:
    close(fd);
    if (r < 0)
        return fcd_fail(err, r, "Cannot write the memory file '%s': %s", path, strerror(-r));
    return 0;
}
