/* The guest's name wherever programs look for it: the kernel's hostname, /etc/hostname and the
 * 127.0.1.1 line of /etc/hosts. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define HOSTNAME_MAX 64
#define HOSTS_MAX    (64 * 1024) /* a larger /etc/hosts is left alone rather than cut */

bool
ident_name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > HOSTNAME_MAX)
        return false;
    /* It goes into files one entry per line: no blanks, no comment signs, no control bytes. */
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '.' || *c == '_'))
            return false;
    return true;
}

/* The first word of a hosts line (the address) and whether `name` is among the names after it;
 * comments count as nothing. */
static void
hosts_line_scan(const char *line, size_t len, char *addr, size_t addr_size, const char *name,
                bool *ret_has_name)
{
    const char *end = line + len, *p = line;
    const char *hash = memchr(line, '#', len);
    size_t nl = strlen(name);
    bool first = true;

    if (hash)
        end = hash;
    *addr = '\0';
    *ret_has_name = false;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        const char *w = p;
        while (p < end && *p != ' ' && *p != '\t' && *p != '\r')
            p++;
        size_t wl = (size_t)(p - w);
        if (!wl)
            break;
        if (first) {
            snprintf(addr, addr_size, "%.*s", (int)wl, w);
            first = false;
        } else if (wl == nl && memcmp(w, name, nl) == 0) {
            *ret_has_name = true;
        }
    }
}

char *
ident_hosts_render(const char *old, const char *name)
{
    size_t cap = (old ? strlen(old) : 0) + strlen(name) + 64, len = 0;
    char *out = malloc(cap);
    bool localhost = false;

    if (!out)
        return NULL;
    /* Every line is kept but the 127.0.1.1 ones (the old name's): the new one goes last. */
    for (const char *line = old; line && *line;) {
        size_t ll = strcspn(line, "\n");
        char addr[64];
        bool has_localhost;

        hosts_line_scan(line, ll, addr, sizeof(addr), "localhost", &has_localhost);
        if (strcmp(addr, "127.0.1.1") != 0) {
            if (strcmp(addr, "127.0.0.1") == 0 && has_localhost)
                localhost = true;
            memcpy(out + len, line, ll);
            len += ll;
            out[len++] = '\n';
        }
        line += ll;
        if (*line == '\n')
            line++;
    }
    out[len] = '\0';
    if (!localhost) {
        static const char lo[] = "127.0.0.1\tlocalhost\n";
        memmove(out + strlen(lo), out, len + 1);
        memcpy(out, lo, strlen(lo));
        len += strlen(lo);
    }
    snprintf(out + len, cap - len, "127.0.1.1\t%s\n", name);
    return out;
}

/* The contents of dfd/name as a string: 0, -ENOENT, -EFBIG beyond max, or another -errno. */
static int
read_at(int dfd, const char *name, size_t max, char **ret)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    char *buf;

    if (fd < 0)
        return -errno;
    buf = malloc(max + 2);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (len <= max) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = -errno;
            close(fd);
            free(buf);
            return e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len > max) {
        free(buf);
        return -EFBIG;
    }
    buf[len] = '\0';
    *ret = buf;
    return 0;
}

/* Replace dfd/name with text as a whole (temp file + rename), unless it already says that. No
 * fsync: the agent writes both files again at every boot, so a crash costs nothing lasting. */
static int
write_at(int dfd, const char *name, const char *text, const char *old)
{
    char tmp[64];
    size_t len = strlen(text), off = 0;
    int fd, r = 0;

    if (old && strcmp(old, text) == 0)
        return 0;
    snprintf(tmp, sizeof(tmp), ".%s.torpor-new", name);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    while (off < len && r == 0) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno != EINTR)
            r = -errno;
        else if (n > 0)
            off += (size_t)n;
    }
    /* The umask must not decide who can read the guest's name. */
    if (r == 0 && fchmod(fd, 0644) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
        r = -errno;
    if (r < 0)
        unlinkat(dfd, tmp, 0);
    return r;
}

int
ident_write_files(const char *root, const char *name)
{
    char etc[4096], text[HOSTNAME_MAX + 2];
    char *old = NULL, *hosts;
    int dfd, r, first = 0;

    snprintf(etc, sizeof(etc), "%s/etc", root);
    dfd = open(etc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        agent_log("open '%s': %s; hostname files not written", etc, strerror(-r));
        return r;
    }

    snprintf(text, sizeof(text), "%s\n", name);
    r = read_at(dfd, "hostname", HOSTNAME_MAX + 2, &old);
    if (r == 0 || r == -ENOENT || r == -EFBIG)
        r = write_at(dfd, "hostname", text, old);
    free(old);
    old = NULL;
    if (r < 0) {
        agent_log("write '%s/hostname': %s", etc, strerror(-r));
        first = r;
    }

    r = read_at(dfd, "hosts", HOSTS_MAX, &old);
    if (r == 0 || r == -ENOENT) {
        hosts = ident_hosts_render(old, name);
        r = hosts ? write_at(dfd, "hosts", hosts, old) : -ENOMEM;
        free(hosts);
    }
    free(old);
    if (r < 0) {
        agent_log("write '%s/hosts': %s", etc, strerror(-r));
        if (!first)
            first = r;
    }
    close(dfd);
    return first;
}

int
ident_apply(const char *name)
{
    if (sethostname(name, strlen(name)) < 0) {
        int r = -errno;
        agent_log("set hostname '%s': %s", name, strerror(errno));
        return r;
    }
    /* The kernel's name is what counts; files that cannot be written (a read-only root) are
     * logged and left. */
    ident_write_files("", name);
    return 0;
}

bool
ident_machine_id_valid(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++)
        if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
            return false;
    return n == MACHINE_ID_LEN;
}

int
ident_machine_id_apply(const char *id)
{
    char text[MACHINE_ID_LEN + 2], *old = NULL;
    int dfd, r;

    dfd = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        agent_log("open '/etc': %s; machine-id not written", strerror(-r));
        return r;
    }
    snprintf(text, sizeof(text), "%s\n", id);
    r = read_at(dfd, "machine-id", sizeof(text), &old);
    if (r == 0 || r == -ENOENT || r == -EFBIG)
        r = write_at(dfd, "machine-id", text, old);
    free(old);
    close(dfd);
    if (r < 0)
        agent_log("write '/etc/machine-id': %s", strerror(-r));
    return r;
}
