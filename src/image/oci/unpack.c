/* Layer unpacking: libarchive reads a hashing fd source, each member is applied with *at() calls
 * below a parent directory resolved inside the tree (openat2 RESOLVE_IN_ROOT). */
#include "image/oci/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/xalloc.h"

#define READ_CHUNK   (128 * 1024)
#define WH_PREFIX    ".wh."
#define WH_OPAQUE    ".wh..wh..opq"
#define DIGEST_ALG   "sha256:"
#define SHA256_HEXSZ 64

/* ------------------------------------------------------------------ the hashing source */

struct src {
    int fd;
    EVP_MD_CTX *md;
    int read_errno;
    char buf[READ_CHUNK];
};

static ssize_t
src_read(struct archive *a, void *ud, const void **ret_buf)
{
    struct src *s = ud;
    ssize_t n;

    do
        n = read(s->fd, s->buf, sizeof(s->buf));
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        s->read_errno = errno;
        if (a)
            archive_set_error(a, errno, "read layer: %s", strerror(errno));
        return -1;
    }
    if (s->md && n > 0)
        EVP_DigestUpdate(s->md, s->buf, (size_t)n);
    *ret_buf = s->buf;
    return n;
}

/* ------------------------------------------------------------------ paths inside the tree */

/* "./a//b/" -> "a/b", "/" or "." -> "" (the root); NULL when a component is "..". */
static char *
clean_path(const char *in)
{
    char *out = xmalloc(strlen(in) + 1), *o = out;
    const char *p = in;

    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            free(out);
            return NULL;
        }
        if (!(len == 1 && p[0] == '.')) {
            if (o != out)
                *o++ = '/';
            memcpy(o, p, len);
            o += len;
        }
        p += len;
    }
    *o = '\0';
    return out;
}

static int
open_in_root(int root_fd, const char *rel, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, root_fd, *rel ? rel : ".", &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}

/* The directory holding rel's last component (created 0755 where missing, as docker does),
 * and that component's name (points into rel). */
static int
open_parent(int root_fd, const char *rel, bool create, const char **ret_name)
{
    const char *slash = strrchr(rel, '/');
    int fd;

    *ret_name = slash ? slash + 1 : rel;
    if (!slash)
        return open_in_root(root_fd, "", O_PATH | O_DIRECTORY);
    _cleanup_free_ char *parent = xstrndup(rel, (size_t)(slash - rel));
    fd = open_in_root(root_fd, parent, O_PATH | O_DIRECTORY);
    if (fd != -ENOENT || !create)
        return fd;

    /* Walk down, making what is missing; each step is resolved inside the tree again. */
    _cleanup_close_ int cur = open_in_root(root_fd, "", O_PATH | O_DIRECTORY);
    if (cur < 0)
        return cur;
    for (char *p = parent;;) {
        char *end = strchr(p, '/');
        if (end)
            *end = '\0';
        fd = open_in_root(root_fd, parent, O_PATH | O_DIRECTORY);
        if (fd == -ENOENT) {
            if (mkdirat(cur, p, 0755) < 0 && errno != EEXIST)
                return -errno;
            fd = open_in_root(root_fd, parent, O_PATH | O_DIRECTORY);
        }
        if (fd < 0)
            return fd;
        close(cur);
        cur = fd;
        if (!end)
            break;
        *end = '/';
        p = end + 1;
    }
    return TAKE_FD(cur);
}

static int rm_at(int dfd, const char *name);

static int
clear_dir(int fd, const char *const *keep, size_t n_keep)
{
    DIR *d = fdopendir(fd);
    struct dirent *de;
    int r = 0;

    if (!d) {
        r = -errno;
        close(fd);
        return r;
    }
    while (r == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        bool kept = false;
        for (size_t i = 0; i < n_keep && !kept; i++)
            kept = strcmp(keep[i], de->d_name) == 0;
        if (!kept)
            r = rm_at(dirfd(d), de->d_name);
    }
    closedir(d);
    return r;
}

/* Remove name below dfd, a whole directory tree included; nothing there is fine. */
static int
rm_at(int dfd, const char *name)
{
    struct stat st;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        int r = clear_dir(fd, NULL, 0);
        if (r < 0)
            return r;
        return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
    }
    return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* ------------------------------------------------------------------ one layer */

struct dir_time {
    char *rel;
    struct timespec mtime;
};

struct layer {
    int root_fd;
    uint64_t max_bytes; /* of file content, for the whole layer */
    char **paths;       /* members of this layer, cleaned: opaque dirs keep them */
    size_t n_paths, cap_paths;
    struct dir_time *dirs; /* directory mtimes, set once their children are in */
    size_t n_dirs, cap_dirs;
    struct oci_unpack_stats st;
};

static void
layer_clear(struct layer *l)
{
    for (size_t i = 0; i < l->n_paths; i++)
        free(l->paths[i]);
    free(l->paths);
    for (size_t i = 0; i < l->n_dirs; i++)
        free(l->dirs[i].rel);
    free(l->dirs);
}

static void
layer_note_path(struct layer *l, const char *rel)
{
    if (l->n_paths == l->cap_paths) {
        l->cap_paths = l->cap_paths ? l->cap_paths * 2 : 64;
        l->paths = xrealloc(l->paths, l->cap_paths * sizeof(*l->paths));
    }
    l->paths[l->n_paths++] = xstrdup(rel);
}

static void
layer_note_dir(struct layer *l, const char *rel, struct timespec mtime)
{
    if (l->n_dirs == l->cap_dirs) {
        l->cap_dirs = l->cap_dirs ? l->cap_dirs * 2 : 32;
        l->dirs = xrealloc(l->dirs, l->cap_dirs * sizeof(*l->dirs));
    }
    l->dirs[l->n_dirs++] = (struct dir_time){ .rel = xstrdup(rel), .mtime = mtime };
}

static struct timespec
entry_mtime(struct archive_entry *e)
{
    if (!archive_entry_mtime_is_set(e))
        return (struct timespec){ .tv_nsec = UTIME_OMIT };
    return (struct timespec){ .tv_sec = archive_entry_mtime(e),
                              .tv_nsec = archive_entry_mtime_nsec(e) };
}

static int
set_owner_at(int dfd, const char *name, int flags, struct archive_entry *e)
{
    if (fchownat(dfd, name, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e), flags) < 0 &&
        !(errno == EPERM && geteuid() != 0))
        return -errno;
    return 0;
}

static int
set_xattrs(int fd, struct archive_entry *e)
{
    const char *name;
    const void *value;
    size_t size;

    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        if (!name || !*name)
            continue;
        /* A filesystem without xattrs, or a namespace only root may write: not fatal. */
        if (fsetxattr(fd, name, value, size, 0) < 0 && errno != EOPNOTSUPP && errno != EPERM)
            return -errno;
    }
    return 0;
}

/* Owner, then mode (chown clears set-id bits), then xattrs, then mtime. */
static int
set_meta_fd(int fd, struct archive_entry *e, bool with_mtime)
{
    int r = set_owner_at(fd, "", AT_EMPTY_PATH, e);
    if (r < 0)
        return r;
    if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
        return -errno;
    if ((r = set_xattrs(fd, e)) < 0)
        return r;
    if (with_mtime) {
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, entry_mtime(e) };
        if (futimens(fd, ts) < 0)
            return -errno;
    }
    return 0;
}

static int
write_data(struct archive *a, int fd, struct layer *l, struct tp_err *err, const char *rel)
{
    const void *buf;
    size_t size;
    la_int64_t off;
    int ar;

    while ((ar = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK) {
        const char *p = buf;
        if (size > l->max_bytes - l->st.bytes)
            return tp_err_errno(err, -ENOSPC, "write '%s': past the %llu bytes the tree may hold",
                                rel, (unsigned long long)l->max_bytes);
        while (size > 0) {
            ssize_t n = pwrite(fd, p, size, (off_t)off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return tp_err_errno(err, -errno, "write '%s'", rel);
            p += n;
            size -= (size_t)n;
            off += n;
            l->st.bytes += (uint64_t)n;
        }
    }
    if (ar != ARCHIVE_EOF)
        return tp_err_set(err, -EBADMSG, "read '%s' from the layer: %s", rel,
                          archive_error_string(a) ? archive_error_string(a) : "unknown error");
    return 0;
}

static int
apply_whiteout(struct layer *l, const char *rel, const char *name, struct tp_err *err)
{
    const char *dummy;
    _cleanup_close_ int pfd = open_parent(l->root_fd, rel, false, &dummy);
    int r;

    l->st.whiteouts++;
    if (pfd == -ENOENT || pfd == -ENOTDIR)
        return 0; /* nothing below to hide */
    if (pfd < 0)
        return tp_err_errno(err, pfd, "open the directory of '%s'", rel);
    if (strcmp(name, WH_OPAQUE) == 0) {
        /* Hide all a lower layer put there, keeping what this layer already wrote. */
        size_t dlen = (size_t)(name - rel);
        const char **keep = xnew(const char *, l->n_paths + 1);
        size_t n_keep = 0;
        for (size_t i = 0; i < l->n_paths; i++) {
            const char *p = l->paths[i];
            if (dlen ? strncmp(p, rel, dlen) == 0 : true) {
                const char *child = p + dlen;
                if (*child && !strchr(child, '/'))
                    keep[n_keep++] = child;
            }
        }
        int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = dfd < 0 ? -errno : clear_dir(dfd, keep, n_keep);
        free(keep);
        if (r < 0)
            return tp_err_errno(err, r, "empty opaque directory of '%s'", rel);
        return 0;
    }
    const char *target = name + strlen(WH_PREFIX);
    if (!*target || strcmp(target, ".") == 0 || strcmp(target, "..") == 0)
        return tp_err_set(err, -EINVAL, "refuse whiteout '%s': it names no file", rel);
    r = rm_at(pfd, target);
    if (r < 0)
        return tp_err_errno(err, r, "apply whiteout '%s'", rel);
    return 0;
}

static int
apply_hardlink(struct layer *l, const char *rel, int pfd, const char *name, const char *link,
               struct tp_err *err)
{
    _cleanup_free_ char *trel = clean_path(link);
    const char *tname;
    struct stat st, cur;

    if (!trel || !*trel)
        return tp_err_set(err, -EINVAL, "refuse hard link '%s' to '%s': outside the tree", rel,
                          link);
    _cleanup_close_ int tpfd = open_parent(l->root_fd, trel, false, &tname);
    if (tpfd < 0)
        return tp_err_errno(err, tpfd, "hard link '%s': find target '%s'", rel, link);
    if (fstatat(tpfd, tname, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return tp_err_errno(err, -errno, "hard link '%s': find target '%s'", rel, link);
    if (S_ISDIR(st.st_mode))
        return tp_err_set(err, -EINVAL, "refuse hard link '%s' to directory '%s'", rel, link);
    if (fstatat(pfd, name, &cur, AT_SYMLINK_NOFOLLOW) == 0) {
        if (cur.st_ino == st.st_ino && cur.st_dev == st.st_dev)
            return 0;
        int r = rm_at(pfd, name);
        if (r < 0)
            return tp_err_errno(err, r, "replace '%s'", rel);
    }
    /* No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself. */
    if (linkat(tpfd, tname, pfd, name, 0) < 0)
        return tp_err_errno(err, -errno, "hard link '%s' to '%s'", rel, link);
    return 0;
}

static int
apply_entry(struct layer *l, struct archive *a, struct archive_entry *e, struct tp_err *err)
{
    const char *path = archive_entry_pathname(e);
    _cleanup_free_ char *rel = NULL;
    const char *name;
    mode_t type = archive_entry_filetype(e);
    struct stat st;
    int r;

    if (!path)
        return tp_err_set(err, -EINVAL, "a layer member has no name");
    rel = clean_path(path);
    if (!rel)
        return tp_err_set(err, -EINVAL, "refuse layer member '%s': '..' leads outside the tree",
                          path);
    name = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
    if (strncmp(name, WH_PREFIX, strlen(WH_PREFIX)) == 0)
        return apply_whiteout(l, rel, name, err);
    l->st.entries++;

    if (!*rel) { /* the root directory itself */
        if (type != AE_IFDIR)
            return tp_err_set(err, -EINVAL, "layer member '%s' replaces the root with a non-dir",
                              path);
        _cleanup_close_ int fd = open_in_root(l->root_fd, "", O_RDONLY | O_DIRECTORY);
        if (fd < 0 || (r = set_meta_fd(fd, e, false)) < 0)
            return tp_err_errno(err, fd < 0 ? fd : r, "set the root's owner and mode");
        layer_note_dir(l, rel, entry_mtime(e));
        return 0;
    }

    _cleanup_close_ int pfd = open_parent(l->root_fd, rel, true, &name);
    if (pfd < 0)
        return tp_err_errno(err, pfd, "make the directory of '%s'", rel);
    layer_note_path(l, rel);

    const char *link = archive_entry_hardlink(e);
    if (link)
        return apply_hardlink(l, rel, pfd, name, link, err);

    /* Whatever a lower layer had there goes, except a directory that a directory merges into. */
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        !(type == AE_IFDIR && S_ISDIR(st.st_mode)))
        if ((r = rm_at(pfd, name)) < 0)
            return tp_err_errno(err, r, "replace '%s'", rel);

    switch (type) {
    case AE_IFDIR: {
        if (mkdirat(pfd, name, 0700) < 0 && errno != EEXIST)
            return tp_err_errno(err, -errno, "create directory '%s'", rel);
        _cleanup_close_ int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return tp_err_errno(err, -errno, "open directory '%s'", rel);
        if ((r = set_meta_fd(fd, e, false)) < 0)
            return tp_err_errno(err, r, "set owner, mode and xattrs of '%s'", rel);
        layer_note_dir(l, rel, entry_mtime(e));
        return 0;
    }
    case AE_IFREG: {
        _cleanup_close_ int fd =
            openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return tp_err_errno(err, -errno, "create '%s'", rel);
        if ((r = write_data(a, fd, l, err, rel)) < 0)
            return r;
        if (archive_entry_size_is_set(e) && ftruncate(fd, archive_entry_size(e)) < 0)
            return tp_err_errno(err, -errno, "size '%s'", rel);
        if ((r = set_meta_fd(fd, e, true)) < 0)
            return tp_err_errno(err, r, "set owner, mode, xattrs and mtime of '%s'", rel);
        return 0;
    }
    case AE_IFLNK: {
        const char *target = archive_entry_symlink(e);
        /* Stored as written: it is only ever followed inside the guest or RESOLVE_IN_ROOT. */
        if (!target || symlinkat(target, pfd, name) < 0)
            return tp_err_errno(err, target ? -errno : -EINVAL, "create symlink '%s'", rel);
        break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO:
        if (mknodat(pfd, name, type | (archive_entry_perm(e) & 07777),
                    type == AE_IFIFO ? 0 : archive_entry_rdev(e)) < 0)
            return tp_err_errno(err, -errno, "create device or fifo '%s'", rel);
        break;
    case AE_IFSOCK:
        return 0; /* a socket in a tar means nothing once unpacked */
    default:
        return tp_err_set(err, -EINVAL, "layer member '%s' has unknown type 0%o", rel,
                          (unsigned)type);
    }
    /* Symlinks and nodes: by name, never following. */
    if ((r = set_owner_at(pfd, name, AT_SYMLINK_NOFOLLOW, e)) < 0)
        return tp_err_errno(err, r, "set owner of '%s'", rel);
    if (type != AE_IFLNK && fchmodat(pfd, name, archive_entry_perm(e) & 07777, 0) < 0)
        return tp_err_errno(err, -errno, "set mode of '%s'", rel);
    struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, entry_mtime(e) };
    if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return tp_err_errno(err, -errno, "set mtime of '%s'", rel);
    return 0;
}

/* Last, deepest first: creating children changed the directories' mtimes. */
static int
apply_dir_times(struct layer *l, struct tp_err *err)
{
    for (size_t k = l->n_dirs; k-- > 0;) {
        struct dir_time *d = &l->dirs[k];
        if (d->mtime.tv_nsec == UTIME_OMIT)
            continue;
        _cleanup_close_ int fd = open_in_root(l->root_fd, d->rel, O_RDONLY | O_DIRECTORY);
        if (fd == -ENOENT || fd == -ENOTDIR)
            continue; /* replaced later in the layer */
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, d->mtime };
        if (fd < 0 || futimens(fd, ts) < 0)
            return tp_err_errno(err, fd < 0 ? fd : -errno, "set mtime of directory '%s'", d->rel);
    }
    return 0;
}

static int
check_digest(struct src *s, const char *digest, struct tp_err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    const void *dummy;
    ssize_t n;

    /* The blob's tail after the tar's end blocks counts too. */
    while ((n = src_read(NULL, s, &dummy)) > 0)
        ;
    if (n < 0)
        return tp_err_errno(err, -s->read_errno, "read layer");
    if (EVP_DigestFinal_ex(s->md, md, &mdlen) != 1)
        return tp_err_set(err, -EIO, "finish SHA-256 of the layer");
    for (unsigned i = 0; i < mdlen; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    if (strcmp(hex, digest + strlen(DIGEST_ALG)) != 0)
        return tp_err_set(err, -EBADMSG, "layer content does not match its digest '%s' (sha256:%s)",
                          digest, hex);
    return 0;
}

static void
archive_freep(struct archive **a)
{
    if (*a)
        archive_read_free(*a);
}

int
oci_layer_apply(int root_fd, int layer_fd, const char *digest, struct oci_unpack_stats *stats,
                struct tp_err *err)
{
    return oci_layer_apply_bounded(root_fd, layer_fd, digest, UINT64_MAX, stats, err);
}

int
oci_layer_apply_bounded(int root_fd, int layer_fd, const char *digest, uint64_t max_bytes,
                        struct oci_unpack_stats *stats, struct tp_err *err)
{
    _cleanup_(archive_freep) struct archive *a = NULL;
    _cleanup_free_ struct src *s = xnew(struct src, 1);
    struct layer l = { .root_fd = root_fd, .max_bytes = max_bytes };
    struct archive_entry *e;
    int ar, r = 0;

    if (digest && (strncmp(digest, DIGEST_ALG, strlen(DIGEST_ALG)) != 0 ||
                   strlen(digest) != strlen(DIGEST_ALG) + SHA256_HEXSZ))
        return tp_err_set(err, -EINVAL, "unsupported layer digest '%s' (sha256 only)", digest);
    s->fd = layer_fd;
    if (digest) {
        s->md = EVP_MD_CTX_new();
        if (!s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
            EVP_MD_CTX_free(s->md);
            return tp_err_set(err, -ENOMEM, "initialise SHA-256");
        }
    }
    a = archive_read_new();
    if (!a) {
        r = tp_err_set(err, -ENOMEM, "allocate a tar reader");
        goto out;
    }
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_empty(a);
    if (archive_read_open(a, s, NULL, src_read, NULL) != ARCHIVE_OK) {
        r = tp_err_set(err, -EBADMSG, "open layer: %s", archive_error_string(a));
        goto out;
    }
    while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK || ar == ARCHIVE_WARN) {
        r = apply_entry(&l, a, e, err);
        if (r < 0)
            goto out;
    }
    if (ar != ARCHIVE_EOF) {
        r = s->read_errno
                ? tp_err_errno(err, -s->read_errno, "read layer")
                : tp_err_set(err, -EBADMSG, "read layer: %s",
                             archive_error_string(a) ? archive_error_string(a) : "unknown error");
        goto out;
    }
    r = apply_dir_times(&l, err);
    if (r == 0 && digest)
        r = check_digest(s, digest, err);
    if (r == 0 && stats)
        *stats = l.st;
out:
    if (r < 0 && digest && s->md && err && err->code == -EBADMSG) {
        /* A damaged stream may be a tampered blob: say so when the bytes do not match. */
        struct tp_err derr = { 0 };
        if (check_digest(s, digest, &derr) < 0)
            r = tp_err_wrap(err, "%s", tp_err_msg(&derr));
        tp_err_clear(&derr);
    }
    EVP_MD_CTX_free(s->md);
    layer_clear(&l);
    return r;
}
