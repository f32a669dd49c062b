/* Device waits: kernel uevents over netlink, and virtio-serial port lookup by name in sysfs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

/* musl-gcc has no linux/ headers: the few netlink definitions needed, as the kernel ABI has
 * them. */
#ifndef AF_NETLINK
#define AF_NETLINK 16
#endif
#define NETLINK_KOBJECT_UEVENT 15

struct nl_addr {
    sa_family_t nl_family;
    unsigned short nl_pad;
    uint32_t nl_pid;
    uint32_t nl_groups;
};

int
uevent_open(void)
{
    struct nl_addr sa = { .nl_family = AF_NETLINK, .nl_groups = 1 /* kernel broadcasts */ };
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

void
uevent_drain(int fd)
{
    char buf[8192];
    /* The content does not matter: every message is a reason to look again. */
    while (recv(fd, buf, sizeof(buf), 0) >= 0 || errno == EINTR)
        ;
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool
uevent_wait(uevent_check_fn check, void *userdata, int timeout_ms)
{
    /* Subscribe before the first check so an event between the two is not lost. */
    int fd = uevent_open();
    bool ok = check(userdata);
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;

    if (fd < 0) {
        if (!ok)
            agent_log("open uevent socket: %s", strerror(-fd));
        return ok;
    }
    while (!ok) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            break;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno != EINTR)
            break;
        uevent_drain(fd);
        ok = check(userdata);
    }
    close(fd);
    return ok;
}

static bool
read_line(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return false;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return true;
}

char *
port_find(const char *name)
{
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *de;
    char *found = NULL;

    if (!d)
        return NULL;
    while (!found && (de = readdir(d))) {
        char path[300], got[256];
        if (strncmp(de->d_name, "vport", 5) != 0)
            continue;
        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
        /* The name arrives after the device node, announced by a "change" uevent. */
        if (!read_line(path, got, sizeof(got)) || strcmp(got, name) != 0)
            continue;
        size_t len = strlen(de->d_name) + sizeof("/dev/");
        found = malloc(len);
        if (found)
            snprintf(found, len, "/dev/%s", de->d_name);
    }
    closedir(d);
    return found;
}
