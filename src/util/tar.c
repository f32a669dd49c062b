/* POSIX tar (ustar + pax) for the tar-out and tar-in built-ins: the header codec and stream
 * reader (pure, fuzzed), the writer of a tree, and the extractor that stays inside its root. */
#include "util/tar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define META_MAX  (1u << 20) /* pax and GNU long-name data: a name is never this long */
#define CHUNK     65536u
#define DEPTH_MAX 2048 /* components of one name (PATH_MAX / 2) */

/* ustar header fields: offset and length. */
#define F_NAME     0, 100
#define F_MODE     100, 8
#define F_UID      108, 8
#define F_GID      116, 8
#define F_SIZE     124, 12
#define F_MTIME    136, 12
#define F_CHKSUM   148, 8
#define F_TYPE     156
#define F_LINKNAME 157, 100
#define F_MAGIC    257, 6
#define F_VERSION  263, 2
#define F_DEVMAJOR 329, 8
#define F_DEVMINOR 337, 8
#define F_PREFIX   345, 155

/* ---- the reader: bytes in, entries out, no filesystem ---- */

static char *
take_str(char **p)
{
    char *s = *p;
    *p = NULL;
    return s;
}

static int rd_fail(struct tar_reader *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
rd_fail(struct tar_reader *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    return code;
}

/* Fill buf unless the input ends first: the bytes read, or -errno. */
static ssize_t
rd_full(struct tar_reader *r, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = r->read(r->ctx, (char *)buf + got, len - got);
        if (n == -EINTR)
            continue;
        if (n < 0)
            return rd_fail(r, (int)n, "read the archive: %s", strerror((int)-n));
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static int
rd_skip(struct tar_reader *r, uint64_t n)
{
    static uint8_t sink[CHUNK];
    while (n > 0) {
        size_t k = n < sizeof(sink) ? (size_t)n : sizeof(sink);
        ssize_t got = rd_full(r, sink, k);
        if (got < 0)
            return (int)got;
        if ((size_t)got < k)
            return rd_fail(r, -EINVAL, "the archive is truncated");
        n -= k;
    }
    return 0;
}

static uint64_t
pad_of(uint64_t size)
{
    return (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
}

/* An octal field (spaces or NULs around it; all blank is 0), or GNU's base-256 when its
 * first byte has the high bit set (positive values only). */
static bool
num_parse(const uint8_t *h, size_t off, size_t len, uint64_t *ret)
{
    const uint8_t *f = h + off;
    uint64_t v = 0;
    size_t i = 0;

    if (f[0] & 0x80) {
        if (f[0] & 0x40)
            return false;
        v = f[0] & 0x3f;
        for (i = 1; i < len; i++) {
            if (v >> 56)
                return false;
            v = v << 8 | f[i];
        }
        *ret = v;
        return true;
    }
    while (i < len && f[i] == ' ')
        i++;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 61)
            return false;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    while (i < len && (f[i] == ' ' || f[i] == '\0'))
        i++;
    if (i != len)
        return false;
    *ret = v;
    return true;
}

/* A NUL-padded string field as a malloc'd string. */
static char *
str_field(const uint8_t *h, size_t off, size_t len)
{
    const char *f = (const char *)h + off;
    return strndup(f, strnlen(f, len));
}

static bool
checksum_ok(const uint8_t *h)
{
    uint64_t want;
    unsigned long usum = 0;
    long ssum = 0;

    if (!num_parse(h, F_CHKSUM, &want))
        return false;
    for (size_t i = 0; i < TAR_BLOCK; i++) {
        uint8_t c = i >= 148 && i < 156 ? ' ' : h[i];
        usum += c;
        ssum += (signed char)c;
    }
    /* Some old writers summed signed chars. */
    return want == usum || (int64_t)want == ssum;
}

/* Metadata from pax 'x' records and GNU 'L'/'K' entries, for the next real entry. */
struct meta {
    char *path, *linkpath;
    bool has_size, has_mtime, has_uid, has_gid;
    uint64_t size, uid, gid;
    int64_t mtime;
    uint32_t mtime_nsec;
};

static void
meta_clear(struct meta *m)
{
    free(m->path);
    free(m->linkpath);
    *m = (struct meta){ 0 };
}

static bool
dec_parse(const char *s, size_t len, uint64_t *ret)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *ret = v;
    return true;
}

/* "[-]SECONDS[.FRACTION]" */
static bool
mtime_parse(const char *s, size_t len, int64_t *ret_sec, uint32_t *ret_nsec)
{
    bool neg = len > 0 && s[0] == '-';
    const char *dot = memchr(s, '.', len);
    size_t ilen = (dot ? (size_t)(dot - s) : len) - neg;
    uint64_t sec, nsec = 0;

    if (!dec_parse(s + neg, ilen, &sec) || sec > INT64_MAX)
        return false;
    if (dot) {
        size_t flen = len - (size_t)(dot - s) - 1;
        for (size_t i = 0; i < 9; i++) {
            char c = i < flen ? dot[1 + i] : '0';
            if (c < '0' || c > '9')
                return false;
            nsec = nsec * 10 + (uint64_t)(c - '0');
        }
        for (size_t i = 9; i < flen; i++)
            if (dot[1 + i] < '0' || dot[1 + i] > '9')
                return false;
    }
    /* A negative time with a fraction counts down from the second below. */
    if (neg && nsec) {
        *ret_sec = -(int64_t)sec - 1;
        *ret_nsec = (uint32_t)(1000000000u - nsec);
    } else {
        *ret_sec = neg ? -(int64_t)sec : (int64_t)sec;
        *ret_nsec = (uint32_t)nsec;
    }
    return true;
}

static int
pax_string(struct tar_reader *r, char **dst, const char *v, size_t len)
{
    if (memchr(v, '\0', len))
        return rd_fail(r, -EINVAL, "a pax name holds a NUL byte");
    free(*dst);
    /* An empty value undoes an earlier one: the header's own field applies. */
    *dst = len ? strndup(v, len) : NULL;
    return 0;
}

/* Records "LEN KEY=VALUE\n", LEN counting the whole record. */
static int
pax_parse(struct tar_reader *r, const char *p, size_t size, struct meta *m)
{
    size_t off = 0;

    while (off < size) {
        const char *rec = p + off, *sp = memchr(rec, ' ', size - off);
        uint64_t len;
        if (!sp || !dec_parse(rec, (size_t)(sp - rec), &len) || len > size - off ||
            len <= (uint64_t)(sp - rec) + 1 || rec[len - 1] != '\n')
            return rd_fail(r, -EINVAL, "malformed pax record");
        const char *key = sp + 1, *end = rec + len - 1;
        const char *eq = memchr(key, '=', (size_t)(end - key));
        if (!eq)
            return rd_fail(r, -EINVAL, "malformed pax record");
        size_t klen = (size_t)(eq - key), vlen = (size_t)(end - eq - 1);
        const char *v = eq + 1;
        int rc = 0;
#define KEY_IS(k) (klen == strlen(k) && memcmp(key, k, klen) == 0)
        if (KEY_IS("path"))
            rc = pax_string(r, &m->path, v, vlen);
        else if (KEY_IS("linkpath"))
            rc = pax_string(r, &m->linkpath, v, vlen);
        else if (KEY_IS("size"))
            rc = (m->has_size = dec_parse(v, vlen, &m->size)) ? 0 : -EINVAL;
        else if (KEY_IS("uid"))
            rc = (m->has_uid = dec_parse(v, vlen, &m->uid)) ? 0 : -EINVAL;
        else if (KEY_IS("gid"))
            rc = (m->has_gid = dec_parse(v, vlen, &m->gid)) ? 0 : -EINVAL;
        else if (KEY_IS("mtime"))
            rc = (m->has_mtime = mtime_parse(v, vlen, &m->mtime, &m->mtime_nsec)) ? 0 : -EINVAL;
#undef KEY_IS
        if (rc < 0)
            return r->err[0] ? rc
                             : rd_fail(r, rc, "malformed pax value for '%.*s'", (int)klen, key);
        off += (size_t)len;
    }
    return 0;
}

/* The data of a metadata entry (bounded), NUL-terminated, padding skipped. */
static int
rd_meta(struct tar_reader *r, uint64_t size, char **ret)
{
    if (size > META_MAX)
        return rd_fail(r, -EINVAL, "extended header of %llu bytes", (unsigned long long)size);
    char *buf = malloc((size_t)size + 1);
    if (!buf)
        return rd_fail(r, -ENOMEM, "out of memory");
    ssize_t n = rd_full(r, buf, (size_t)size);
    if (n >= 0 && (uint64_t)n < size)
        n = rd_fail(r, -EINVAL, "the archive is truncated");
    if (n >= 0)
        n = rd_skip(r, pad_of(size));
    if (n < 0) {
        free(buf);
        return (int)n;
    }
    buf[size] = '\0';
    *ret = buf;
    return 0;
}

static bool
all_zero(const uint8_t *b)
{
    for (size_t i = 0; i < TAR_BLOCK; i++)
        if (b[i])
            return false;
    return true;
}

/* The real entry of header h with the pending metadata applied. */
static int
entry_build(struct tar_reader *r, const uint8_t *h, struct meta *m, struct tar_entry *e)
{
    uint64_t mode, uid, gid, mtime, size, maj = 0, min = 0;
    bool ustar = memcmp(h + 257, "ustar\0", 6) == 0;

    if (!num_parse(h, F_MODE, &mode) || !num_parse(h, F_SIZE, &size) ||
        (!m->has_uid && !num_parse(h, F_UID, &uid)) ||
        (!m->has_gid && !num_parse(h, F_GID, &gid)) ||
        (!m->has_mtime && !num_parse(h, F_MTIME, &mtime)))
        return rd_fail(r, -EINVAL, "malformed numeric field in a header");
    *e = (struct tar_entry){ .type = (char)h[F_TYPE] };
    if (e->type == '\0' || e->type == '7') /* old regular, contiguous */
        e->type = TAR_REG;
    if ((e->type == TAR_CHR || e->type == TAR_BLK) &&
        (!num_parse(h, F_DEVMAJOR, &maj) || !num_parse(h, F_DEVMINOR, &min) || maj > UINT32_MAX ||
         min > UINT32_MAX))
        return rd_fail(r, -EINVAL, "malformed device numbers in a header");
    e->mode = (uint32_t)(mode & 07777);
    e->uid = m->has_uid ? m->uid : uid;
    e->gid = m->has_gid ? m->gid : gid;
    e->size = m->has_size ? m->size : size;
    if (m->has_mtime) {
        e->mtime = m->mtime;
        e->mtime_nsec = m->mtime_nsec;
    } else {
        e->mtime = (int64_t)(mtime > INT64_MAX ? INT64_MAX : mtime);
    }
    e->devmajor = (uint32_t)maj;
    e->devminor = (uint32_t)min;
    if (m->path) {
        e->name = take_str(&m->path);
    } else {
        char *name = str_field(h, F_NAME), *prefix = ustar ? str_field(h, F_PREFIX) : NULL;
        if (prefix && *prefix && name) {
            size_t pl = strlen(prefix), nl = strlen(name);
            e->name = malloc(pl + 1 + nl + 1);
            if (e->name) {
                memcpy(e->name, prefix, pl);
                e->name[pl] = '/';
                memcpy(e->name + pl + 1, name, nl + 1);
            }
            free(name);
        } else {
            e->name = name;
        }
        free(prefix);
    }
    e->linkname = m->linkpath ? take_str(&m->linkpath) : str_field(h, F_LINKNAME);
    if (!e->name || !e->linkname) {
        tar_entry_clear(e);
        return rd_fail(r, -ENOMEM, "out of memory");
    }
    if (!e->name[0]) {
        tar_entry_clear(e);
        return rd_fail(r, -EINVAL, "an entry without a name");
    }
    /* Pre-POSIX archives mark directories by a trailing slash only. */
    size_t nl = strlen(e->name);
    if (e->type == TAR_REG && e->name[nl - 1] == '/')
        e->type = TAR_DIR;
    r->left = e->size;
    r->pad = pad_of(e->size);
    return 1;
}

int
tar_next(struct tar_reader *r, struct tar_entry *e)
{
    struct meta m = { 0 };
    uint8_t h[TAR_BLOCK];
    int rc;

    r->err[0] = '\0';
    rc = rd_skip(r, r->left + r->pad);
    r->left = r->pad = 0;
    if (rc < 0)
        return rc;
    for (;;) {
        ssize_t n = rd_full(r, h, sizeof(h));
        bool pending = m.path || m.linkpath || m.has_size || m.has_mtime || m.has_uid || m.has_gid;
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n > 0 && n < TAR_BLOCK) {
            rc = rd_fail(r, -EINVAL, "the archive is truncated");
            break;
        }
        if (n == 0 || all_zero(h)) {
            rc = pending ? rd_fail(r, -EINVAL, "the archive ends after an extended header") : 0;
            break;
        }
        if (!checksum_ok(h)) {
            rc = rd_fail(r, -EINVAL, "bad header checksum (not a tar archive?)");
            break;
        }
        uint64_t size;
        if (!num_parse(h, F_SIZE, &size)) {
            rc = rd_fail(r, -EINVAL, "malformed size in a header");
            break;
        }
        char *data = NULL;
        switch (h[F_TYPE]) {
        case 'x':
            rc = rd_meta(r, size, &data);
            if (rc == 0)
                rc = pax_parse(r, data, (size_t)size, &m);
            break;
        case 'g': /* global defaults: nothing we use */
            rc = rd_skip(r, size + pad_of(size));
            break;
        case 'L':
        case 'K':
            rc = rd_meta(r, size, &data);
            if (rc == 0) {
                char **dst = h[F_TYPE] == 'L' ? &m.path : &m.linkpath;
                free(*dst);
                *dst = take_str(&data);
            }
            break;
        default:
            rc = entry_build(r, h, &m, e);
            meta_clear(&m);
            return rc;
        }
        free(data);
        if (rc < 0)
            break;
    }
    meta_clear(&m);
    return rc;
}

ssize_t
tar_read_data(struct tar_reader *r, void *buf, size_t len)
{
    if (len > r->left)
        len = (size_t)r->left;
    if (len == 0)
        return 0;
    ssize_t n = r->read(r->ctx, buf, len);
    if (n == 0)
        return rd_fail(r, -EINVAL, "the archive is truncated");
    if (n < 0)
        return rd_fail(r, (int)n, "read the archive: %s", strerror((int)-n));
    r->left -= (uint64_t)n;
    return n;
}

void
tar_entry_clear(struct tar_entry *e)
{
    free(e->name);
    free(e->linkname);
    e->name = e->linkname = NULL;
}

int
tar_name_split(char *name, char **comps, int max)
{
    int n = 0;

    while (name[0] == '.' && name[1] == '/')
        name += 2;
    if (name[0] == '/')
        return -EINVAL;
    for (char *save = NULL, *c = strtok_r(name, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0)
            return -EINVAL;
        if (n >= max)
            return -E2BIG;
        comps[n++] = c;
    }
    return n;
}

/* ---- the writer: a tree out as ustar, pax headers where ustar falls short ---- */

struct tar_out {
    int fd, err_fd;
    int status;  /* TAR_EXIT_* so far */
    bool broken; /* the output failed: nothing more can be written */
    size_t len;
    uint8_t buf[CHUNK];
};

static void say(int err_fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(int err_fd, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(err_fd, line, (size_t)n);
    (void)w;
}

static int
write_all(int fd, const void *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p = (const char *)p + n;
        len -= (size_t)n;
    }
    return 0;
}

static void
out_flush(struct tar_out *o)
{
    if (!o->broken && o->len > 0) {
        int r = write_all(o->fd, o->buf, o->len);
        if (r < 0) {
            say(o->err_fd, "tar-out: write the archive: %s", strerror(-r));
            o->broken = true;
            o->status = TAR_EXIT_FAIL;
        }
    }
    o->len = 0;
}

static void
out_put(struct tar_out *o, const void *p, size_t len)
{
    while (len > 0 && !o->broken) {
        size_t k = sizeof(o->buf) - o->len < len ? sizeof(o->buf) - o->len : len;
        memcpy(o->buf + o->len, p, k);
        o->len += k;
        p = (const char *)p + k;
        len -= k;
        if (o->len == sizeof(o->buf))
            out_flush(o);
    }
}

static void
out_pad(struct tar_out *o, uint64_t size)
{
    static const uint8_t zero[TAR_BLOCK];
    out_put(o, zero, (size_t)pad_of(size));
}

static bool
octal_fits(uint64_t v, size_t len)
{
    return v < (uint64_t)1 << (3 * (len - 1)); /* len - 1 digits and a NUL */
}

static void
put_octal(uint8_t *h, size_t off, size_t len, uint64_t v)
{
    snprintf((char *)h + off, len, "%0*llo", (int)len - 1,
             (unsigned long long)(octal_fits(v, len) ? v : 0));
}

static void
put_str(uint8_t *h, size_t off, size_t len, const char *s)
{
    size_t n = strlen(s);
    memcpy(h + off, s, n < len ? n : len);
}

/* Append one "LEN key=value\n" record to *pax (malloc'd, *plen bytes). */
static bool
pax_add(char **pax, size_t *plen, const char *key, const char *value)
{
    size_t base = strlen(key) + strlen(value) + 3, digits = 1, len;
    char num[24];

    for (;;) {
        len = base + digits;
        if ((size_t)snprintf(num, sizeof(num), "%zu", len) == digits)
            break;
        digits++;
    }
    char *p = realloc(*pax, *plen + len + 1);
    if (!p)
        return false;
    snprintf(p + *plen, len + 1, "%s %s=%s\n", num, key, value);
    *pax = p;
    *plen += len;
    return true;
}

/* Where name splits into ustar's prefix (<= 155) and name (<= 100): the '/' index, or -1. */
static long
ustar_split(const char *name)
{
    size_t len = strlen(name);
    if (len <= 100)
        return 0;
    for (size_t i = 0; i < len && i <= 155; i++)
        if (name[i] == '/' && len - i - 1 <= 100 && len - i - 1 > 0)
            return (long)i;
    return -1;
}

static void
header_finish(uint8_t *h)
{
    unsigned sum = 0;
    memset(h + 148, ' ', 8);
    for (size_t i = 0; i < TAR_BLOCK; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
}

static void
write_header(struct tar_out *o, const char *name, const char *link, char type,
             const struct stat *st, uint64_t size)
{
    uint8_t h[TAR_BLOCK] = { 0 };
    char *pax = NULL, num[32];
    size_t plen = 0;
    bool ok = true;
    long split = ustar_split(name);

    if (split < 0)
        ok = ok && pax_add(&pax, &plen, "path", name);
    if (strlen(link) > 100)
        ok = ok && pax_add(&pax, &plen, "linkpath", link);
    if (!octal_fits(size, 12)) {
        snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
        ok = ok && pax_add(&pax, &plen, "size", num);
    }
    if (!octal_fits(st->st_uid, 8)) {
        snprintf(num, sizeof(num), "%u", (unsigned)st->st_uid);
        ok = ok && pax_add(&pax, &plen, "uid", num);
    }
    if (!octal_fits(st->st_gid, 8)) {
        snprintf(num, sizeof(num), "%u", (unsigned)st->st_gid);
        ok = ok && pax_add(&pax, &plen, "gid", num);
    }
    if (st->st_mtim.tv_sec < 0 || !octal_fits((uint64_t)st->st_mtim.tv_sec, 12)) {
        snprintf(num, sizeof(num), "%lld", (long long)st->st_mtim.tv_sec);
        ok = ok && pax_add(&pax, &plen, "mtime", num);
    }
    if (!ok) {
        say(o->err_fd, "tar-out: out of memory");
        o->status = TAR_EXIT_FAIL;
        o->broken = true;
        free(pax);
        return;
    }
    if (pax) {
        uint8_t x[TAR_BLOCK] = { 0 };
        put_str(x, F_NAME, "././@PaxHeader");
        put_octal(x, F_MODE, 0644);
        put_octal(x, F_UID, 0);
        put_octal(x, F_GID, 0);
        put_octal(x, F_SIZE, plen);
        put_octal(x, F_MTIME, 0);
        x[F_TYPE] = 'x';
        memcpy(x + 257,
               "ustar\0"
               "00",
               8);
        header_finish(x);
        out_put(o, x, sizeof(x));
        out_put(o, pax, plen);
        out_pad(o, plen);
        free(pax);
    }
    if (split > 0) {
        memcpy(h + 345, name, (size_t)split);
        put_str(h, F_NAME, name + split + 1);
    } else {
        put_str(h, F_NAME, name); /* cut at 100 when pax holds the whole name */
    }
    put_octal(h, F_MODE, st->st_mode & 07777);
    put_octal(h, F_UID, st->st_uid);
    put_octal(h, F_GID, st->st_gid);
    put_octal(h, F_SIZE, size);
    put_octal(h, F_MTIME, st->st_mtim.tv_sec < 0 ? 0 : (uint64_t)st->st_mtim.tv_sec);
    h[F_TYPE] = (uint8_t)type;
    put_str(h, F_LINKNAME, link);
    memcpy(h + 257,
           "ustar\0"
           "00",
           8);
    if (type == TAR_CHR || type == TAR_BLK) {
        put_octal(h, F_DEVMAJOR, major(st->st_rdev));
        put_octal(h, F_DEVMINOR, minor(st->st_rdev));
    }
    header_finish(h);
    out_put(o, h, sizeof(h));
}

/* A regular file, streamed: the header promises st_size bytes, so a file that shrinks while
 * being read is padded with zeros (and reported) to keep the archive readable. */
static void
add_file(struct tar_out *o, int dirfd, const char *leaf, const char *name)
{
    static uint8_t chunk[CHUNK];
    struct stat st;
    /* O_NONBLOCK: a FIFO swapped in since the directory was read must not block the open. */
    int fd = openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

    if (fd >= 0 && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        fd = -1;
        errno = ESTALE; /* no longer the regular file it was */
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
        say(o->err_fd, "tar-out: open '%s': %s", name, strerror(errno));
        o->status = TAR_EXIT_FAIL;
        if (fd >= 0)
            close(fd);
        return;
    }
    uint64_t left = (uint64_t)st.st_size;
    write_header(o, name, "", TAR_REG, &st, left);
    bool short_read = false;
    while (left > 0 && !o->broken) {
        size_t k = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);
        ssize_t n = short_read ? 0 : read(fd, chunk, k);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (!short_read)
                say(o->err_fd, "tar-out: read '%s': %s", name,
                    n < 0 ? strerror(errno) : "the file shrank while being read");
            short_read = true;
            o->status = TAR_EXIT_FAIL;
            memset(chunk, 0, k);
            n = (ssize_t)k;
        }
        out_put(o, chunk, (size_t)n);
        left -= (uint64_t)n;
    }
    out_pad(o, (uint64_t)st.st_size);
    close(fd);
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_tree(struct tar_out *o, int at, const char *leaf, const char *name);

/* A directory's entries, sorted so that archives of the same tree are the same. */
static void
add_dir(struct tar_out *o, int dirfd, const char *leaf, const char *name)
{
    int fd = openat(dirfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    char **names = NULL;
    size_t n = 0;

    if (!d) {
        say(o->err_fd, "tar-out: open directory '%s': %s", name, strerror(errno));
        o->status = TAR_EXIT_FAIL;
        if (fd >= 0)
            close(fd);
        return;
    }
    for (struct dirent *de; (de = readdir(d));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char **p = realloc(names, (n + 1) * sizeof(*names));
        char *copy = strdup(de->d_name);
        if (p)
            names = p;
        if (!p || !copy) {
            free(copy);
            say(o->err_fd, "tar-out: out of memory");
            o->status = TAR_EXIT_FAIL;
            break;
        }
        names[n++] = copy;
    }
    if (n)
        qsort(names, n, sizeof(*names), cmp_names);
    /* "." (tar-out of /) contributes no prefix: its children are "./x". */
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++) {
        char *child = malloc(nl + 1 + strlen(names[i]) + 1);
        if (child) {
            sprintf(child, "%s/%s", name, names[i]);
            add_tree(o, fd, names[i], child);
        } else {
            say(o->err_fd, "tar-out: out of memory");
            o->status = TAR_EXIT_FAIL;
        }
        free(child);
        free(names[i]);
    }
    free(names);
    closedir(d);
}

static void
add_tree(struct tar_out *o, int dirfd, const char *leaf, const char *name)
{
    struct stat st;
    char target[4096];

    if (o->broken)
        return;
    if (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        say(o->err_fd, "tar-out: stat '%s': %s", name, strerror(errno));
        o->status = TAR_EXIT_FAIL;
        return;
    }
    switch (st.st_mode & S_IFMT) {
    case S_IFREG:
        add_file(o, dirfd, leaf, name);
        break;
    case S_IFDIR: {
        char *dname = malloc(strlen(name) + 2);
        if (!dname) {
            o->status = TAR_EXIT_FAIL;
            return;
        }
        sprintf(dname, "%s/", name);
        write_header(o, dname, "", TAR_DIR, &st, 0);
        free(dname);
        add_dir(o, dirfd, leaf, name);
        break;
    }
    case S_IFLNK: {
        ssize_t n = readlinkat(dirfd, leaf, target, sizeof(target) - 1);
        if (n < 0) {
            say(o->err_fd, "tar-out: read link '%s': %s", name, strerror(errno));
            o->status = TAR_EXIT_FAIL;
            return;
        }
        target[n] = '\0';
        write_header(o, name, target, TAR_SYM, &st, 0);
        break;
    }
    case S_IFCHR:
        write_header(o, name, "", TAR_CHR, &st, 0);
        break;
    case S_IFBLK:
        write_header(o, name, "", TAR_BLK, &st, 0);
        break;
    case S_IFIFO:
        write_header(o, name, "", TAR_FIFO, &st, 0);
        break;
    default:
        /* Sockets cannot be recreated from an archive; tar says so and goes on. */
        say(o->err_fd, "tar-out: '%s': socket ignored", name);
        break;
    }
}

int
tar_create(int fd, const char *path, int err_fd)
{
    return tar_create_as(fd, path, NULL, err_fd);
}

int
tar_create_as(int fd, const char *path, const char *as, int err_fd)
{
    struct tar_out *o = calloc(1, sizeof(*o));
    char *copy = strdup(path), *canon = NULL;
    int r;

    if (!o || !copy) {
        say(err_fd, "tar-out: out of memory");
        free(o);
        free(copy);
        return TAR_EXIT_FAIL;
    }
    *o = (struct tar_out){ .fd = fd, .err_fd = err_fd };
    /* The top entry is named after PATH's last component; "x/.." and the like are resolved
     * first so that no name in the archive has a ".." in it. */
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/')
        copy[--len] = '\0';
    char *slash = strrchr(copy, '/');
    const char *leaf = slash ? slash + 1 : copy;
    if (strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0) {
        canon = realpath(copy, NULL);
        if (!canon) {
            say(err_fd, "tar-out: '%s': %s", path, strerror(errno));
            r = errno == ENOENT || errno == ENOTDIR ? TAR_EXIT_NOTFOUND : TAR_EXIT_FAIL;
            goto out;
        }
        free(copy);
        copy = canon;
        slash = strrchr(copy, '/');
        leaf = slash + 1;
    }
    const char *parent = ".", *name = leaf;
    if (slash == copy) {
        parent = "/";
    } else if (slash) {
        *slash = '\0';
        parent = copy;
    }
    if (!*leaf) { /* "/" itself */
        leaf = ".";
        name = ".";
    }
    if (as)
        name = as;
    int dirfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (dirfd < 0 || fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        say(err_fd, "tar-out: '%s': %s", path, strerror(errno));
        r = errno == ENOENT || errno == ENOTDIR ? TAR_EXIT_NOTFOUND : TAR_EXIT_FAIL;
        if (dirfd >= 0)
            close(dirfd);
        goto out;
    }
    add_tree(o, dirfd, leaf, name);
    close(dirfd);
    /* The end: two zero blocks. */
    static const uint8_t end[2 * TAR_BLOCK];
    out_put(o, end, sizeof(end));
    out_flush(o);
    r = o->status;
out:
    free(copy);
    free(o);
    return r;
}

/* ---- the extractor: every entry lands under root, walked one component at a time ---- */

struct dir_fix { /* a directory's mode and times, set once everything inside exists */
    char *name;
    uint32_t mode;
    uint64_t uid, gid;
    int64_t mtime;
    uint32_t mtime_nsec;
};

struct untar {
    int root, err_fd;
    bool untrusted;     /* on the host from a guest: no owners, no set-id bits, no devices */
    const char *top_as; /* NULL, or what the archive's top component becomes ("" = dropped) */
    bool chown;         /* running as root: keep the archive's owners */
    bool said;          /* the current entry's failure was reported already */
    struct tar_reader rd;
    struct dir_fix *dirs;
    size_t ndirs;
};

static ssize_t
fd_read(void *ctx, void *buf, size_t len)
{
    ssize_t n = read(*(int *)ctx, buf, len);
    return n < 0 ? -errno : n;
}

/* The directory holding comps[n] (n components below root, each opened with O_NOFOLLOW so that
 * a symlink planted by an earlier entry, or already there, is never followed), creating missing
 * ones when create is set. An fd, or -errno with the reason said. */
static int
open_parent(struct untar *u, const char *name, char **comps, int n, bool create)
{
    int fd = fcntl(u->root, F_DUPFD_CLOEXEC, 3);

    for (int i = 0; fd >= 0 && i < n; i++) {
        int next = openat(fd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comps[i], 0755) < 0 && errno != EEXIST)
                next = -1;
            else
                next = openat(fd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int e = errno;
            struct stat st;
            if (fstatat(fd, comps[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                say(u->err_fd, "tar-in: refusing '%s': '%s' is a symbolic link", name, comps[i]);
            else
                say(u->err_fd, "tar-in: '%s': open directory '%s': %s", name, comps[i],
                    strerror(e));
            u->said = true;
            close(fd);
            return -e;
        }
        close(fd);
        fd = next;
    }
    return fd;
}

/* Make room for a new leaf: anything there goes, but a directory stays when keep_dir is set.
 * 1 when a directory was kept, 0 when the name is free, -errno. */
static int
clear_leaf(int dfd, const char *leaf, bool keep_dir)
{
    struct stat st;

    if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode)) {
        if (keep_dir)
            return 1;
        return unlinkat(dfd, leaf, AT_REMOVEDIR) < 0 ? -errno : 0;
    }
    return unlinkat(dfd, leaf, 0) < 0 ? -errno : 0;
}

static void
entry_times(const struct tar_entry *e, struct timespec ts[2])
{
    ts[0] = (struct timespec){ .tv_nsec = UTIME_OMIT };
    ts[1] = (struct timespec){ .tv_sec = (time_t)e->mtime, .tv_nsec = e->mtime_nsec };
}

static int
extract_file(struct untar *u, int dfd, const char *leaf, const struct tar_entry *e)
{
    static uint8_t chunk[CHUNK];
    struct timespec ts[2];
    int fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int r = 0;

    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n = tar_read_data(&u->rd, chunk, sizeof(chunk));
        if (n < 0) {
            say(u->err_fd, "tar-in: %s", u->rd.err);
            u->said = true;
            r = (int)n;
            break;
        }
        if (n == 0)
            break;
        r = write_all(fd, chunk, (size_t)n);
        if (r < 0)
            break;
    }
    /* Owner before mode: chown clears the set-id bits. */
    if (r == 0 && u->chown && fchown(fd, (uid_t)e->uid, (gid_t)e->gid) < 0)
        r = -errno;
    if (r == 0 && fchmod(fd, e->mode) < 0)
        r = -errno;
    entry_times(e, ts);
    if (r == 0 && futimens(fd, ts) < 0)
        r = -errno;
    close(fd);
    /* No half-written file is left behind (a full disk, a cut archive). */
    if (r < 0)
        unlinkat(dfd, leaf, 0);
    return r;
}

static int
extract_hardlink(struct untar *u, int dfd, const char *leaf, const struct tar_entry *e)
{
    char *target = strdup(e->linkname), *comps[DEPTH_MAX];
    int r, n = target ? tar_name_split(target, comps, DEPTH_MAX) : -ENOMEM;

    if (n <= 0) {
        say(u->err_fd, "tar-in: refusing '%s': hard link to '%s' outside the directory", e->name,
            e->linkname);
        u->said = true;
        free(target);
        return -EINVAL;
    }
    int tfd = open_parent(u, e->name, comps, n - 1, false);
    if (tfd < 0) {
        free(target);
        return tfd;
    }
    r = clear_leaf(dfd, leaf, false);
    /* No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink, never what it points to. */
    if (r == 0 && linkat(tfd, comps[n - 1], dfd, leaf, 0) < 0)
        r = -errno;
    close(tfd);
    free(target);
    return r;
}

static int
extract_node(struct untar *u, int dfd, const char *leaf, const struct tar_entry *e)
{
    struct timespec ts[2];
    mode_t kind = e->type == TAR_CHR ? S_IFCHR : e->type == TAR_BLK ? S_IFBLK : S_IFIFO;

    if (mknodat(dfd, leaf, kind | 0600, makedev(e->devmajor, e->devminor)) < 0)
        return -errno;
    if (u->chown && fchownat(dfd, leaf, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (fchmodat(dfd, leaf, e->mode, 0) < 0)
        return -errno;
    entry_times(e, ts);
    return utimensat(dfd, leaf, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int
extract_symlink(struct untar *u, int dfd, const char *leaf, const struct tar_entry *e)
{
    struct timespec ts[2];

    /* The target is stored as it is: it may point anywhere, but nothing here follows it. */
    if (symlinkat(e->linkname, dfd, leaf) < 0)
        return -errno;
    if (u->chown && fchownat(dfd, leaf, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    entry_times(e, ts);
    return utimensat(dfd, leaf, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int
extract_dir(struct untar *u, int dfd, const char *leaf, const struct tar_entry *e)
{
    int r = clear_leaf(dfd, leaf, true);

    /* Owner-writable until the end, so that a read-only directory can still be filled. */
    if (r == 0 && mkdirat(dfd, leaf, 0700) < 0)
        r = -errno;
    if (r < 0)
        return r;
    struct dir_fix *p = realloc(u->dirs, (u->ndirs + 1) * sizeof(*p));
    char *name = strdup(e->name);
    if (p)
        u->dirs = p;
    if (!p || !name) {
        free(name);
        return -ENOMEM;
    }
    u->dirs[u->ndirs++] = (struct dir_fix){ .name = name,
                                            .mode = e->mode,
                                            .uid = e->uid,
                                            .gid = e->gid,
                                            .mtime = e->mtime,
                                            .mtime_nsec = e->mtime_nsec };
    return 0;
}

/* One entry under root: 0, or -errno with the reason said. */
static int
extract_one(struct untar *u, const struct tar_entry *e)
{
    char *name = strdup(e->name), *comps[DEPTH_MAX];
    int n = name ? tar_name_split(name, comps, DEPTH_MAX) : -ENOMEM;
    int r;

    if (n == -EINVAL)
        say(u->err_fd, "tar-in: refusing '%s': absolute or '..' names leave the directory",
            e->name);
    else if (n < 0)
        say(u->err_fd, "tar-in: '%s': %s", e->name, strerror(-n));
    if (n <= 0) {
        free(name);
        return n; /* 0: the directory itself, which stays as it is */
    }
    u->said = false;
    int dfd = open_parent(u, e->name, comps, n - 1, true);
    if (dfd < 0) {
        free(name);
        return dfd;
    }
    const char *leaf = comps[n - 1];
    switch (e->type) {
    case TAR_REG:
        r = clear_leaf(dfd, leaf, false);
        if (r == 0)
            r = extract_file(u, dfd, leaf, e);
        break;
    case TAR_DIR:
        r = extract_dir(u, dfd, leaf, e);
        break;
    case TAR_SYM:
        r = clear_leaf(dfd, leaf, false);
        if (r == 0)
            r = extract_symlink(u, dfd, leaf, e);
        break;
    case TAR_LNK:
        r = extract_hardlink(u, dfd, leaf, e);
        break;
    case TAR_CHR:
    case TAR_BLK:
        if (u->untrusted) {
            say(u->err_fd, "tar-in: refusing '%s': a device node from the guest", e->name);
            u->said = true;
            r = -EPERM;
            break;
        }
        __attribute__((fallthrough));
    case TAR_FIFO:
        r = clear_leaf(dfd, leaf, false);
        if (r == 0)
            r = extract_node(u, dfd, leaf, e);
        break;
    default:
        say(u->err_fd, "tar-in: '%s': unsupported entry type '%c'", e->name, e->type);
        u->said = true;
        r = -EOPNOTSUPP;
        break;
    }
    if (r < 0 && !u->said)
        say(u->err_fd, "tar-in: '%s': %s", e->name, strerror(-r));
    close(dfd);
    free(name);
    return r;
}

/* Directories last, deepest first: their times must not move as their contents arrive. */
static int
fix_dirs(struct untar *u)
{
    int r = 0;

    for (size_t i = u->ndirs; i-- > 0;) {
        struct dir_fix *d = &u->dirs[i];
        char *comps[DEPTH_MAX];
        int n = tar_name_split(d->name, comps, DEPTH_MAX);
        int dfd = n > 0 ? open_parent(u, d->name, comps, n - 1, false) : -EINVAL;
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT },
                                  { .tv_sec = (time_t)d->mtime, .tv_nsec = d->mtime_nsec } };
        if (dfd < 0) {
            r = dfd;
            continue;
        }
        int fd = openat(dfd, comps[n - 1], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || (u->chown && fchown(fd, (uid_t)d->uid, (gid_t)d->gid) < 0) ||
            fchmod(fd, d->mode) < 0 || futimens(fd, ts) < 0) {
            r = -errno;
            say(u->err_fd, "tar-in: '%s': set owner, mode and times: %s", d->name, strerror(errno));
        }
        if (fd >= 0)
            close(fd);
        close(dfd);
    }
    return r;
}

/* name with its first component (after any "./") replaced by as, or dropped for "" (the top
 * itself then becomes "."). Names the extractor refuses anyway (absolute, "..") stay as they
 * are. malloc'd, NULL when out of memory. */
static char *
rename_top(const char *name, const char *as)
{
    while (name[0] == '.' && name[1] == '/')
        name += 2;
    if (name[0] == '/' || (name[0] == '.' && name[1] == '.' && (!name[2] || name[2] == '/')))
        return strdup(name);
    const char *rest = strchr(name, '/');
    size_t n = strlen(as) + (rest ? strlen(rest) : 0) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s%s", *as ? as : ".", rest ? rest : "");
    return out;
}

static int
apply_top_as(struct untar *u, struct tar_entry *e)
{
    char *name = rename_top(e->name, u->top_as);
    char *link = e->type == TAR_LNK ? rename_top(e->linkname, u->top_as) : NULL;

    if (!name || (e->type == TAR_LNK && !link)) {
        free(name);
        free(link);
        say(u->err_fd, "tar-in: out of memory");
        return -ENOMEM;
    }
    free(e->name);
    e->name = name;
    if (link) {
        free(e->linkname);
        e->linkname = link;
    }
    return 0;
}

static int extract(int fd, const char *dir, const char *top_as, bool untrusted, int err_fd);

int
tar_extract(int fd, const char *dir, int err_fd)
{
    return tar_extract_as(fd, dir, NULL, err_fd);
}

int
tar_extract_as(int fd, const char *dir, const char *top_as, int err_fd)
{
    return extract(fd, dir, top_as, false, err_fd);
}

int
tar_extract_untrusted(int fd, const char *dir, const char *top_as, int err_fd)
{
    return extract(fd, dir, top_as, true, err_fd);
}

static int
extract(int fd, const char *dir, const char *top_as, bool untrusted, int err_fd)
{
    struct untar u = { .err_fd = err_fd,
                       .chown = !untrusted && geteuid() == 0,
                       .untrusted = untrusted,
                       .top_as = top_as };
    struct tar_entry e;
    int r;

    u.root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u.root < 0) {
        say(err_fd, "tar-in: '%s': %s", dir, strerror(errno));
        return errno == ENOENT || errno == ENOTDIR ? TAR_EXIT_NOTFOUND : TAR_EXIT_FAIL;
    }
    u.rd = (struct tar_reader){ .read = fd_read, .ctx = &fd };
    for (;;) {
        r = tar_next(&u.rd, &e);
        if (r < 0)
            say(err_fd, "tar-in: %s", u.rd.err);
        if (r <= 0)
            break;
        if (u.untrusted)
            e.mode &= 01777; /* as docker cp: the guest's set-id bits do not cross */
        r = top_as ? apply_top_as(&u, &e) : 0;
        if (r >= 0)
            r = extract_one(&u, &e);
        tar_entry_clear(&e);
        if (r < 0)
            break;
    }
    int rf = fix_dirs(&u);
    for (size_t i = 0; i < u.ndirs; i++)
        free(u.dirs[i].name);
    free(u.dirs);
    close(u.root);
    return r < 0 || rf < 0 ? TAR_EXIT_FAIL : TAR_EXIT_OK;
}
