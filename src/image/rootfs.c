/* ext4 root disks: the default busybox tree, a user's directory, or a user's ext4 image, built
 * with mkfs.ext4 -d (no root privileges, no loop mounts) and cached by content. */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-internal.h"
#include "image.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

/* Bump when the default tree or the mkfs options change, so old cache entries stop matching. */
#define ROOTFS_FORMAT "torpor-rootfs-v1"

#define DEFAULT_SIZE_MIB 256u
#define BUSYBOX_PATH     "/bin/busybox" /* Debian's busybox-static installs a static one here */
#define MIB              (1024ull * 1024ull)
#define EXT4_MAGIC_OFF   (1024 + 56)

/* ------------------------------------------------------------------ a path list */

struct path_list {
    char **v;
    size_t n, cap;
};

static void
path_list_push(struct path_list *l, const char *p)
{
    if (l->n + 1 >= l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = xrealloc(l->v, l->cap * sizeof(char *));
    }
    l->v[l->n++] = xstrdup(p);
    l->v[l->n] = NULL;
}

static void
path_list_clear(struct path_list *l)
{
    l->v = strv_free(l->v);
    l->n = l->cap = 0;
}

static void
closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------ mkfs */

static int
run_mkfs(const char *tree, const char *image, uint64_t size_mib, struct tp_err *err)
{
    _cleanup_free_ char *mkfs = NULL;
    _cleanup_free_ char *size = xasprintf("%lluM", (unsigned long long)size_mib);
    int r = image_find_tool("mkfs.ext4", &mkfs, err);
    if (r < 0)
        return r;
    /* -b 4096: mke2fs.conf would pick 1 KiB blocks for a "small" (< 512 MiB) filesystem. The
     * journal stays: the disk is written by a running guest and standby only flushes, so
     * crash consistency is worth its few MiB. */
    char *argv[] = {
        mkfs,
        (char *)"-q",
        (char *)"-F",
        (char *)"-t",
        (char *)"ext4",
        (char *)"-b",
        (char *)"4096",
        (char *)"-L",
        (char *)"rootfs",
        (char *)"-E",
        (char *)"root_owner=0:0",
        (char *)"-d",
        (char *)tree,
        (char *)image,
        size,
        NULL,
    };
    r = image_run(argv, -1, err);
    if (r < 0)
        return tp_err_wrap(err, "make ext4 filesystem from '%s'", tree);
    return 0;
}

int
image_ext4_from_tree(const char *tree, const char *image, uint32_t size_mib, struct tp_err *err)
{
    return run_mkfs(tree, image, size_mib, err);
}

int
image_ext4_grow(const char *image, uint32_t size_mib, struct tp_err *err)
{
    _cleanup_free_ char *resize = NULL, *size = xasprintf("%uM", size_mib);
    struct stat st;
    int r;

    if (stat(image, &st) < 0)
        return tp_err_errno(err, -errno, "stat '%s'", image);
    if ((uint64_t)st.st_size >= (uint64_t)size_mib * MIB)
        return 0;
    if (truncate(image, (off_t)((uint64_t)size_mib * MIB)) < 0)
        return tp_err_errno(err, -errno, "grow '%s' to %u MiB", image, size_mib);
    r = image_find_tool("resize2fs", &resize, err);
    if (r < 0)
        return r;
    char *argv[] = { resize, (char *)"-f", (char *)image, size, NULL };
    r = image_run(argv, -1, err);
    if (r < 0)
        return tp_err_wrap(err, "grow the filesystem of '%s'", image);
    return 0;
}

/* Build `image` in a temp file beside the cache entry, then publish it by rename. */
static int build_image(const char *dir, const char *tree, uint64_t size_mib,
                       const struct path_list *fix, const char *final, struct tp_err *err);

/* ------------------------------------------------------------------ key of a directory */

struct tree_walk {
    struct image_hash *h;
    uint64_t bytes; /* estimate of the space the tree needs */
};

static int
walk_tree(int dfd, const char *rel, const char *abs, struct tree_walk *w, struct tp_err *err)
{
    _cleanup_(closedirp) DIR *d = fdopendir(dfd);
    struct path_list names = { 0 };
    struct dirent *de;
    int r = 0;

    if (!d) {
        r = -errno;
        close(dfd);
        return tp_err_errno(err, r, "read directory '%s'", abs);
    }
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            path_list_push(&names, de->d_name);
    /* readdir order depends on the filesystem: sort so equal trees get equal keys. */
    if (names.n)
        qsort(names.v, names.n, sizeof(char *), cmp_str);

    for (size_t i = 0; r == 0 && i < names.n; i++) {
        const char *name = names.v[i];
        _cleanup_free_ char *crel = *rel ? xasprintf("%s/%s", rel, name) : xstrdup(name);
        _cleanup_free_ char *cabs = fs_path_join(abs, name);
        struct stat st;

        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = tp_err_errno(err, -errno, "stat '%s'", cabs);
            break;
        }
        image_hash_str(w->h, crel);
        image_hash_u64(w->h, st.st_mode);
        image_hash_u64(w->h, st.st_uid);
        image_hash_u64(w->h, st.st_gid);
        w->bytes += 256 + strlen(name); /* inode + directory entry */

        if (S_ISREG(st.st_mode)) {
            _cleanup_close_ int fd =
                openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
            if (fd < 0) {
                r = tp_err_errno(err, -errno, "open '%s'", cabs);
                break;
            }
            r = image_hash_fd(w->h, fd, (uint64_t)st.st_size);
            if (r < 0) {
                r = tp_err_errno(err, r, "read '%s'", cabs);
                break;
            }
            w->bytes += ((uint64_t)st.st_size + 4095) & ~4095ull;
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX + 1];
            ssize_t n = readlinkat(dirfd(d), name, target, sizeof(target) - 1);
            if (n < 0) {
                r = tp_err_errno(err, -errno, "read link '%s'", cabs);
                break;
            }
            target[n] = '\0';
            image_hash_str(w->h, target);
        } else if (S_ISDIR(st.st_mode)) {
            int cfd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0) {
                r = tp_err_errno(err, -errno, "open directory '%s'", cabs);
                break;
            }
            w->bytes += 4096;
            r = walk_tree(cfd, crel, cabs, w, err);
        } else {
            image_hash_u64(w->h, st.st_rdev); /* device nodes, fifos, sockets */
        }
    }
    path_list_clear(&names);
    return r;
}

static int
root_disk_from_dir(const struct image_env *env, const char *src, uint32_t size_mib,
                   char **ret_image, struct tp_err *err)
{
    _cleanup_(image_hash_done) struct image_hash h = { 0 };
    _cleanup_free_ char *dir = NULL, *final = NULL;
    struct tree_walk w = { .h = &h };
    struct stat st;
    int r, dfd;

    r = image_hash_init(&h, err);
    if (r < 0)
        return r;
    dfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fstat(dfd, &st) < 0) {
        r = -errno;
        if (dfd >= 0)
            close(dfd);
        return tp_err_errno(err, r, "open directory '%s'", src);
    }
    image_hash_str(&h, ROOTFS_FORMAT);
    image_hash_str(&h, "dir");
    image_hash_u64(&h, st.st_mode);
    r = walk_tree(dfd, "", src, &w, err);
    if (r < 0)
        return r;

    /* Room for the files plus ext4's metadata, the journal and some free space. */
    uint64_t need = (w.bytes * 3 / 2 + 64 * MIB + MIB - 1) / MIB;
    uint64_t size = MAX((uint64_t)(size_mib ? size_mib : DEFAULT_SIZE_MIB), need);
    image_hash_u64(&h, size);
    r = image_cache_lookup(env, &h, "rootfs", "ext4", &dir, &final, err);
    if (r < 0)
        return r;
    if (r == 0) {
        /* The source keeps its owners: the user chose them. */
        r = build_image(dir, src, size, NULL, final, err);
        if (r < 0)
            return r;
    }
    *ret_image = TAKE_PTR(final);
    return 0;
}

/* ------------------------------------------------------------------ the default tree */

static int
check_static_elf(const char *path, struct tp_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    Elf64_Ehdr eh;

    if (fd < 0)
        return tp_err_errno(err, -errno,
                            "open '%s' (install Debian's busybox-static for the default root disk)",
                            path);
    if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr))
        return tp_err_set(err, -EINVAL, "'%s' is not a 64-bit ELF executable", path);
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        off_t off = (off_t)eh.e_phoff + (off_t)i * (off_t)sizeof(ph);
        if (pread(fd, &ph, sizeof(ph), off) != (ssize_t)sizeof(ph))
            return tp_err_set(err, -EINVAL, "'%s': truncated program headers", path);
        /* A program interpreter means a dynamic binary, which the busybox-only guest cannot
         * run. */
        if (ph.p_type == PT_INTERP)
            return tp_err_set(err, -EINVAL,
                              "'%s' is dynamically linked; the default root disk needs "
                              "busybox-static",
                              path);
    }
    return 0;
}

/* busybox --list-full: "bin/sh", "usr/sbin/chroot", ... one applet path per line. */
static int
busybox_applets(struct path_list *ret, struct tp_err *err)
{
    _cleanup_close_ int out = memfd_create("busybox-list", MFD_CLOEXEC);
    _cleanup_free_ char *text = NULL;
    char *argv[] = { (char *)BUSYBOX_PATH, (char *)"--list-full", NULL };
    char *save = NULL;
    int r;

    if (out < 0)
        return tp_err_errno(err, -errno, "create buffer for busybox --list-full");
    r = image_run(argv, out, err);
    if (r < 0)
        return tp_err_wrap(err, "list busybox applets");
    _cleanup_free_ char *fdpath = xasprintf("/proc/self/fd/%d", out);
    r = fs_read_file(fdpath, 1 << 20, &text, NULL, err);
    if (r < 0)
        return tp_err_wrap(err, "list busybox applets");
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        /* Only plain relative paths: the list must not steer writes outside the tree. */
        if (!*l || *l == '/' || strstr(l, "..") || strcmp(l, "bin/busybox") == 0)
            continue;
        path_list_push(ret, l);
    }
    if (ret->n == 0)
        return tp_err_set(err, -EINVAL, "list busybox applets: empty list");
    return 0;
}

static int
tree_mkdir(int tfd, const char *rel, mode_t mode, struct path_list *made, struct tp_err *err)
{
    if (mkdirat(tfd, rel, mode) < 0 && errno != EEXIST)
        return tp_err_errno(err, -errno, "create directory '%s'", rel);
    /* The umask must not decide the guest's permissions (/tmp is 1777). */
    if (fchmodat(tfd, rel, mode, 0) < 0)
        return tp_err_errno(err, -errno, "chmod '%s'", rel);
    path_list_push(made, rel);
    return 0;
}

static int
tree_write(int tfd, const char *rel, const char *text, struct path_list *made, struct tp_err *err)
{
    _cleanup_close_ int fd = openat(tfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    size_t len = strlen(text);

    if (fd < 0)
        return tp_err_errno(err, -errno, "create '%s'", rel);
    if (write(fd, text, len) != (ssize_t)len)
        return tp_err_errno(err, errno ? -errno : -EIO, "write '%s'", rel);
    if (fchmod(fd, 0644) < 0)
        return tp_err_errno(err, -errno, "chmod '%s'", rel);
    path_list_push(made, rel);
    return 0;
}

static int
make_default_tree(const char *tree, const struct path_list *applets, struct path_list *made,
                  struct tp_err *err)
{
    static const struct {
        const char *path;
        mode_t mode;
    } dirs[] = {
        { "bin", 0755 },      { "sbin", 0755 }, { "usr", 0755 },  { "usr/bin", 0755 },
        { "usr/sbin", 0755 }, { "etc", 0755 },  { "root", 0700 }, { "tmp", 01777 },
        { "proc", 0755 },     { "sys", 0755 },  { "dev", 0755 },  { "run", 0755 },
        { "mnt", 0755 },
    };
    static const struct {
        const char *path, *text;
    } files[] = {
        { "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n" },
        { "etc/group", "root:x:0:\n" },
        { "etc/hostname", "torpor\n" },
        { "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\ttorpor\n" },
        { "etc/os-release", "NAME=torpor-busybox\nID=torpor\nPRETTY_NAME=\"torpor busybox\"\n" },
    };
    _cleanup_close_ int tfd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r;

    if (tfd < 0)
        return tp_err_errno(err, -errno, "open '%s'", tree);
    if (fchmod(tfd, 0755) < 0)
        return tp_err_errno(err, -errno, "chmod '%s'", tree);
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        r = tree_mkdir(tfd, dirs[i].path, dirs[i].mode, made, err);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < ELEMENTSOF(files); i++) {
        r = tree_write(tfd, files[i].path, files[i].text, made, err);
        if (r < 0)
            return r;
    }

    _cleanup_free_ char *bb = fs_path_join(tree, "bin/busybox");
    r = fs_clone_file(BUSYBOX_PATH, bb, 0755, err);
    if (r < 0)
        return r;
    if (chmod(bb, 0755) < 0)
        return tp_err_errno(err, -errno, "chmod '%s'", bb);
    path_list_push(made, "bin/busybox");

    for (size_t i = 0; i < applets->n; i++) {
        const char *a = applets->v[i];
        const char *slash = strrchr(a, '/');
        if (slash) {
            /* Applets live in the four dirs made above; tolerate a busybox that adds one. */
            _cleanup_free_ char *parent = xstrndup(a, (size_t)(slash - a));
            struct stat st;
            if (fstatat(tfd, parent, &st, 0) < 0) {
                r = tree_mkdir(tfd, parent, 0755, made, err);
                if (r < 0)
                    return r;
            }
        }
        if (symlinkat("/bin/busybox", tfd, a) < 0) {
            if (errno == EEXIST)
                continue; /* an applet listed twice */
            return tp_err_errno(err, -errno, "create symlink '%s'", a);
        }
        path_list_push(made, a);
    }
    return 0;
}

/* mkfs.ext4 -d copies owners from the tree. As root (torpord's normal case) the tree is chowned
 * to 0:0 before mkfs; otherwise the image's inodes are rewritten with debugfs afterwards, so the
 * guest sees root-owned files either way. Returns the paths that still need fixing. */
static int
own_tree(const char *tree, const struct path_list *made, struct path_list *ret_fix,
         struct tp_err *err)
{
    _cleanup_close_ int tfd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (tfd < 0)
        return tp_err_errno(err, -errno, "open '%s'", tree);
    for (size_t i = 0; i < made->n; i++) {
        struct stat st;
        if (fstatat(tfd, made->v[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
            return tp_err_errno(err, -errno, "stat '%s'", made->v[i]);
        if (st.st_uid == 0 && st.st_gid == 0)
            continue;
        if (fchownat(tfd, made->v[i], 0, 0, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        if (errno != EPERM)
            return tp_err_errno(err, -errno, "chown '%s'", made->v[i]);
        path_list_push(ret_fix, made->v[i]);
    }
    return 0;
}

static int
debugfs_chown(const char *image, const char *dir, const struct path_list *fix, struct tp_err *err)
{
    _cleanup_free_ char *debugfs = NULL, *cmds = NULL;
    _cleanup_close_ int fd = -EBADF;
    _cleanup_fclose_ FILE *f = NULL;
    int r;

    r = image_find_tool("debugfs", &debugfs, err);
    if (r < 0)
        return r;
    fd = image_cache_tmpfile(dir, &cmds, err);
    if (fd < 0)
        return fd;
    f = fdopen(fd, "w");
    if (!f) {
        r = tp_err_errno(err, -errno, "open '%s'", cmds);
        goto out;
    }
    fd = -EBADF; /* now owned by f */
    for (size_t i = 0; i < fix->n; i++)
        fprintf(f, "set_inode_field /%s uid 0\nset_inode_field /%s gid 0\n", fix->v[i], fix->v[i]);
    if (fflush(f) != 0) {
        r = tp_err_errno(err, -errno, "write '%s'", cmds);
        goto out;
    }
    char *argv[] = { debugfs, (char *)"-w", (char *)"-f", cmds, (char *)image, NULL };
    r = image_run(argv, -1, err);
    if (r < 0)
        tp_err_wrap(err, "set owners to root in '%s'", image);
out:
    unlink(cmds);
    return r;
}

static int
build_image(const char *dir, const char *tree, uint64_t size_mib, const struct path_list *fix,
            const char *final, struct tp_err *err)
{
    _cleanup_free_ char *tmp = NULL;
    _cleanup_close_ int fd = image_cache_tmpfile(dir, &tmp, err);
    int r;

    if (fd < 0)
        return fd;
    r = run_mkfs(tree, tmp, size_mib, err);
    if (r == 0 && fix && fix->n > 0)
        r = debugfs_chown(tmp, dir, fix, err);
    if (r == 0)
        r = image_cache_publish(fd, tmp, final, err);
    if (r < 0)
        unlink(tmp);
    return r;
}

static int
root_disk_default(const struct image_env *env, uint32_t size_mib, char **ret_image,
                  struct tp_err *err)
{
    _cleanup_(image_hash_done) struct image_hash h = { 0 };
    _cleanup_free_ char *dir = NULL, *final = NULL, *tree = NULL;
    struct path_list applets = { 0 }, made = { 0 }, fix = { 0 };
    uint64_t size = size_mib ? size_mib : DEFAULT_SIZE_MIB;
    struct stat st;
    int r;

    r = check_static_elf(BUSYBOX_PATH, err);
    if (r < 0)
        return r;

    /* The tree is a function of busybox's bytes and this file (ROOTFS_FORMAT): key on those
     * and a cache hit costs one read of busybox, not a tree build. */
    _cleanup_close_ int bfd = open(BUSYBOX_PATH, O_RDONLY | O_CLOEXEC);
    if (bfd < 0 || fstat(bfd, &st) < 0)
        return tp_err_errno(err, -errno, "open '%s'", BUSYBOX_PATH);
    r = image_hash_init(&h, err);
    if (r < 0)
        return r;
    image_hash_str(&h, ROOTFS_FORMAT);
    image_hash_str(&h, "default");
    r = image_hash_fd(&h, bfd, (uint64_t)st.st_size);
    if (r < 0)
        return tp_err_errno(err, r, "read '%s'", BUSYBOX_PATH);
    image_hash_u64(&h, size);
    r = image_cache_lookup(env, &h, "rootfs", "ext4", &dir, &final, err);
    if (r < 0)
        return r;
    if (r > 0)
        goto done;

    r = busybox_applets(&applets, err);
    if (r < 0)
        goto out;
    r = image_cache_tmpdir(dir, &tree, err);
    if (r < 0)
        goto out;
    r = make_default_tree(tree, &applets, &made, err);
    if (r == 0)
        r = own_tree(tree, &made, &fix, err);
    if (r == 0)
        r = build_image(dir, tree, size, &fix, final, err);
    fs_rm_rf(tree, NULL);
out:
    path_list_clear(&applets);
    path_list_clear(&made);
    path_list_clear(&fix);
    if (r < 0)
        return tp_err_wrap(err, "build default root disk");
done:
    *ret_image = TAKE_PTR(final);
    return 0;
}

/* ------------------------------------------------------------------ entry point */

static int
check_ext4(const char *path, struct tp_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char m[2];

    if (fd < 0)
        return tp_err_errno(err, -errno, "open root disk '%s'", path);
    if (pread(fd, m, sizeof(m), EXT4_MAGIC_OFF) != (ssize_t)sizeof(m) || m[0] != 0x53 ||
        m[1] != 0xEF)
        return tp_err_set(err, -EINVAL,
                          "use root disk '%s': not an ext4 image (no superblock magic 0xEF53)",
                          path);
    return 0;
}

int
image_root_disk(const struct image_env *env, const char *source, uint32_t size_mib,
                char **ret_image, struct tp_err *err)
{
    struct stat st;
    int r;

    if (!source)
        return root_disk_default(env, size_mib, ret_image, err);
    if (stat(source, &st) < 0)
        return tp_err_errno(err, -errno, "find root disk source '%s'", source);
    if (S_ISREG(st.st_mode)) {
        /* No cache: the manager clones the image per instance anyway. */
        r = check_ext4(source, err);
        if (r < 0)
            return r;
        *ret_image = xstrdup(source);
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        r = root_disk_from_dir(env, source, size_mib, ret_image, err);
        if (r < 0)
            return tp_err_wrap(err, "build root disk from '%s'", source);
        return 0;
    }
    return tp_err_set(err, -EINVAL,
                      "use root disk source '%s': neither a directory nor an ext4 image file",
                      source);
}
