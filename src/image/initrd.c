/* The initramfs: /init = torpor's guest agent plus the kernel's virtio modules in load order,
 * written as a newc cpio and cached by content. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-internal.h"
#include "image.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

/* Bump when the archive's layout changes, so old cache entries stop matching. */
#define INITRD_FORMAT "torpor-initrd-v1"

#define MODULE_MAX_BYTES (64u << 20)
#define AGENT_MAX_BYTES  (256u << 20)

/* Every virtio driver of Debian's cloud kernel is a module; each comes after its dependencies
 * (modinfo -F depends). The vsock ones are kept although QEMU here has no vsock device: the
 * Firecracker driver talks to the agent over vsock, the initramfs is per kernel rather than
 * per hypervisor, and a module with no device to bind costs only its load time. */
const char *const image_initrd_modules[] = {
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_console",
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
    "virtio-rng",
};
const size_t image_initrd_n_modules = ELEMENTSOF(image_initrd_modules);

#define N_MODULES ELEMENTSOF(image_initrd_modules)

static const char *const initrd_dirs[] = {
    "dev", "proc", "sys", "run", "tmp", "newroot", "lib", "lib/modules",
};

struct module_file {
    char *path; /* where it was found under MODROOT */
    char *data;
    size_t len;
};

static void
closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* The kernel treats '-' and '_' in module names as the same character. */
static bool
modname_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char x = a[i] == '-' ? '_' : a[i], y = b[i] == '-' ? '_' : b[i];
        if (x != y)
            return false;
    }
    return true;
}

/* Which wanted module a file name is, and whether it is compressed; -1 if none. */
static int
match_module(const char *fname, bool *ret_compressed)
{
    static const char *const exts[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };
    for (size_t i = 0; i < N_MODULES; i++) {
        size_t n = strlen(image_initrd_modules[i]);
        if (strlen(fname) <= n || !modname_eq(fname, image_initrd_modules[i], n))
            continue;
        for (size_t e = 0; e < ELEMENTSOF(exts); e++)
            if (strcmp(fname + n, exts[e]) == 0) {
                *ret_compressed = e > 0;
                return (int)i;
            }
    }
    return -1;
}

/* One walk of MODROOT/kernel, recording the first hit per wanted module (openat recursion:
 * nftw has no user pointer, and this must be safe to run from several threads). */
static int
find_modules_at(int dfd, const char *path, char *found[], struct tp_err *err)
{
    _cleanup_(closedirp) DIR *d = fdopendir(dfd);
    struct dirent *de;

    if (!d) {
        int r = -errno;
        close(dfd);
        return tp_err_errno(err, r, "read directory '%s'", path);
    }
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        _cleanup_free_ char *child = fs_path_join(path, de->d_name);
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return tp_err_errno(err, -errno, "stat '%s'", child);
        if (S_ISDIR(st.st_mode)) {
            int cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (cfd < 0)
                return tp_err_errno(err, -errno, "open directory '%s'", child);
            int r = find_modules_at(cfd, child, found, err);
            if (r < 0)
                return r;
            continue;
        }
        bool compressed = false;
        int i = match_module(de->d_name, &compressed);
        if (i < 0 || found[i])
            continue;
        if (compressed)
            return tp_err_set(err, -EOPNOTSUPP,
                              "module '%s' is compressed ('%s'); torpor packs plain .ko files "
                              "(the kernel loads them with busybox-style insmod)",
                              image_initrd_modules[i], child);
        found[i] = TAKE_PTR(child);
    }
    return 0;
}

static int
module_root(const char *kernel, const char *ver, char **ret, struct tp_err *err)
{
    _cleanup_free_ char *copy = xstrdup(kernel);
    _cleanup_free_ char *beside = xasprintf("%s/../lib/modules/%s", dirname(copy), ver);
    struct stat st;

    if (stat(beside, &st) == 0 && S_ISDIR(st.st_mode)) {
        *ret = TAKE_PTR(beside);
        return 0;
    }
    _cleanup_free_ char *host = xasprintf("/lib/modules/%s", ver);
    if (stat(host, &st) == 0 && S_ISDIR(st.st_mode)) {
        *ret = TAKE_PTR(host);
        return 0;
    }
    return tp_err_set(err, -ENOENT, "find modules of kernel '%s': neither '%s' nor '%s' exists",
                      ver, beside, host);
}

static void
modules_free(struct module_file *m)
{
    for (size_t i = 0; i < N_MODULES; i++) {
        free(m[i].path);
        free(m[i].data);
    }
}

static int
load_modules(const char *kernel, struct module_file *mods, struct tp_err *err)
{
    _cleanup_free_ char *ver = NULL, *root = NULL, *tree = NULL;
    char *found[N_MODULES] = { 0 };
    int r;

    r = image_kernel_version(kernel, &ver, err);
    if (r < 0)
        return r;
    r = module_root(kernel, ver, &root, err);
    if (r < 0)
        return r;
    tree = fs_path_join(root, "kernel");
    int dfd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return tp_err_errno(err, -errno, "open module tree '%s'", tree);
    r = find_modules_at(dfd, tree, found, err);
    for (size_t i = 0; i < N_MODULES; i++) {
        mods[i].path = found[i];
        if (r == 0 && !found[i])
            r = tp_err_set(err, -ENOENT, "find module '%s': no %s.ko under '%s'",
                           image_initrd_modules[i], image_initrd_modules[i], tree);
    }
    for (size_t i = 0; r == 0 && i < N_MODULES; i++)
        r = fs_read_file(mods[i].path, MODULE_MAX_BYTES, &mods[i].data, &mods[i].len, err);
    return r;
}

static int
write_archive(int fd, const char *agent, size_t agent_len, const struct module_file *mods,
              struct tp_err *err)
{
    struct cpio_writer w;
    _cleanup_free_ char *order = xstrdup("");
    int r = 0;

    cpio_writer_init(&w, fd);
    for (size_t i = 0; r == 0 && i < ELEMENTSOF(initrd_dirs); i++)
        r = cpio_add_dir(&w, initrd_dirs[i], 0755, err);
    if (r == 0)
        r = cpio_add_file(&w, "init", 0755, agent, agent_len, err);
    for (size_t i = 0; r == 0 && i < N_MODULES; i++) {
        /* Flat, under the name the order file uses, whatever the tree called it. */
        _cleanup_free_ char *name = xasprintf("lib/modules/%s.ko", image_initrd_modules[i]);
        char *o = xasprintf("%s%s.ko\n", order, image_initrd_modules[i]);
        free(order);
        order = o;
        r = cpio_add_file(&w, name, 0644, mods[i].data, mods[i].len, err);
    }
    if (r == 0)
        r = cpio_add_file(&w, "lib/modules/torpor.order", 0644, order, strlen(order), err);
    if (r == 0)
        r = cpio_finish(&w, err);
    return r;
}

int
image_initrd(const struct image_env *env, const char *kernel, char **ret_initrd, struct tp_err *err)
{
    struct module_file mods[N_MODULES] = { 0 };
    _cleanup_free_ char *agent = NULL, *dir = NULL, *final = NULL, *tmp = NULL;
    _cleanup_(image_hash_done) struct image_hash h = { 0 };
    _cleanup_close_ int fd = -EBADF;
    size_t agent_len = 0;
    int r;

    if (!env->agent_path) {
        r = tp_err_set(err, -EINVAL, "no guest agent binary configured");
        goto fail;
    }
    r = fs_read_file(env->agent_path, AGENT_MAX_BYTES, &agent, &agent_len, err);
    if (r < 0)
        goto fail;
    r = load_modules(kernel, mods, err);
    if (r < 0)
        goto fail;

    r = image_hash_init(&h, err);
    if (r < 0)
        goto fail;
    image_hash_str(&h, INITRD_FORMAT);
    image_hash_bytes(&h, agent, agent_len);
    for (size_t i = 0; i < N_MODULES; i++) {
        image_hash_str(&h, image_initrd_modules[i]);
        image_hash_bytes(&h, mods[i].data, mods[i].len);
    }
    r = image_cache_lookup(env, &h, "initrd", "cpio", &dir, &final, err);
    if (r < 0)
        goto fail;
    if (r > 0)
        goto done;

    fd = image_cache_tmpfile(dir, &tmp, err);
    if (fd < 0) {
        r = fd;
        goto fail;
    }
    r = write_archive(fd, agent, agent_len, mods, err);
    if (r == 0)
        r = image_cache_publish(fd, tmp, final, err);
    if (r < 0) {
        unlink(tmp);
        goto fail;
    }
done:
    modules_free(mods);
    *ret_initrd = TAKE_PTR(final);
    return 0;
fail:
    modules_free(mods);
    return tp_err_wrap(err, "build initramfs for '%s'", kernel);
}
