/* The fake driver's Firecracker memory semantics, with their rules checked: a restored VM maps
 * its snapshot's memory file privately (the file must not change while it lives); a Full
 * snapshot creates the memory file anew (truncating any old one); a Diff writes the dirty
 * pages in place into the VM's base, which must be a file of the VM's size with one name. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/xalloc.h"

#define FAKE_PAGE 4096

static bool
same_time(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* Whether fi's VM lives and maps a file; forgets the mapping of a VM that is gone. Caller
 * holds fake_lock. */
static bool
fc_maps(struct fake_inst *fi)
{
    if (fi->mapped_fd < 0)
        return false;
    if (proc_is_alive(fi->calls.pid, fi->calls.start_time))
        return true;
    fi->mapped_fd = safe_close(fi->mapped_fd);
    return false;
}

/* The live VM other than self that maps the inode of st, or NULL. Caller holds fake_lock. */
static struct fake_inst *
fc_mapper(const struct stat *st, const struct fake_inst *self)
{
    struct stat m;
    for (struct fake_inst *fi = fake_inst_first(); fi; fi = fi->next)
        if (fi != self && fc_maps(fi) && fstat(fi->mapped_fd, &m) == 0 && m.st_dev == st->st_dev &&
            m.st_ino == st->st_ino)
            return fi;
    return NULL;
}

void
fake_fc_check_mapped(void)
{
    char broken[FAKE_ID_MAX + 128] = "";

    pthread_mutex_lock(&fake_lock);
    for (struct fake_inst *fi = fake_inst_first(); fi; fi = fi->next) {
        struct stat st;
        if (!fc_maps(fi) || fstat(fi->mapped_fd, &st) < 0)
            continue;
        if (st.st_size != fi->mapped_size || !same_time(st.st_mtim, fi->mapped_mtime)) {
            snprintf(broken, sizeof(broken),
                     "the memory file VM '%s' maps privately changed under it", fi->id);
            fi->mapped_size = st.st_size; /* reported once */
            fi->mapped_mtime = st.st_mtim;
        }
    }
    pthread_mutex_unlock(&fake_lock);
    if (broken[0])
        fake_violation(NULL, "%s", broken);
}

int
fake_fc_load(struct fake_inst *fi, const struct hv_vm_spec *spec, const char *snap_dir,
             struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(snap_dir, HV_SNAP_MEMORY);
    _cleanup_close_ int fd = open(memory, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0 && errno == ENOENT)
        return tp_err_set(err, -EOPNOTSUPP, "fake firecracker cannot load memory from a state");
    if (fd < 0 || fstat(fd, &st) < 0)
        return tp_err_errno(err, -errno, "open '%s'", memory);
    if ((uint64_t)st.st_size != spec->memory_mib * FAKE_MIB)
        return tp_err_set(err, -EINVAL, "memory file '%s' is %lld bytes, the VM has %u MiB", memory,
                          (long long)st.st_size, spec->memory_mib);
    pthread_mutex_lock(&fake_lock);
    safe_close(fi->mapped_fd);
    fi->mapped_fd = TAKE_FD(fd);
    fi->mapped_size = st.st_size;
    fi->mapped_mtime = st.st_mtim;
    fi->base_dev = st.st_dev;
    fi->base_ino = st.st_ino;
    pthread_mutex_unlock(&fake_lock);
    return 0;
}

/* Write one page of memory at page index pg of fd (what the guest dirtied, as far as the fake
 * knows: enough for a file's mtime to show the write). */
static int
fc_write_page(int fd, const char *id, unsigned pg, const char *path, struct tp_err *err)
{
    char page[FAKE_PAGE] = { 0 };
    snprintf(page, sizeof(page), "fake guest memory of %s, page %u\n", id, pg);
    if (pwrite(fd, page, sizeof(page), (off_t)pg * FAKE_PAGE) != (ssize_t)sizeof(page))
        return tp_err_errno(err, -errno, "write '%s'", path);
    return 0;
}

static int
fc_snapshot(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *snap_dir, bool diff,
            struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(snap_dir, HV_SNAP_MEMORY);
    _cleanup_close_ int fd = -EBADF;
    struct fake_inst *fi = vm->priv, *other;
    const off_t size = (off_t)(spec->memory_mib * FAKE_MIB);
    struct stat st;
    bool exists, self_maps = false, is_base;
    int r;

    fake_fc_check_mapped();
    r = fake_snapshot_enter(vm, spec, diff, err);
    if (r < 0)
        return r;
    exists = stat(memory, &st) == 0;
    if (!exists && diff)
        return tp_err_set(err, -ENOENT, "diff snapshot into '%s' without a base", snap_dir);
    pthread_mutex_lock(&fake_lock);
    other = exists ? fc_mapper(&st, fi) : NULL;
    if (exists && fc_maps(fi)) {
        struct stat m;
        self_maps = fstat(fi->mapped_fd, &m) == 0 && m.st_ino == st.st_ino && m.st_dev == st.st_dev;
    }
    is_base = exists && st.st_dev == fi->base_dev && st.st_ino == fi->base_ino;
    pthread_mutex_unlock(&fake_lock);

    if (exists && st.st_nlink > 1)
        return fake_violation(err, "%s snapshot of '%s' writes '%s', which has %u names",
                              diff ? "a Diff" : "a Full", spec->id, memory, (unsigned)st.st_nlink);
    if (other)
        return fake_violation(err, "snapshot of '%s' writes '%s', which VM '%s' maps", spec->id,
                              memory, other->id);
    if (!diff && self_maps)
        return fake_violation(err, "a Full snapshot of '%s' truncates the file it maps", spec->id);
    if (diff && !is_base)
        return fake_violation(err, "a Diff of '%s' onto '%s', which is not its base", spec->id,
                              memory);
    if (diff && st.st_size != size)
        return tp_err_set(err, -EINVAL, "diff target '%s' is %lld bytes, not %lld", memory,
                          (long long)st.st_size, (long long)size);

    r = fake_write_state(snap_dir, FAKE_STATE, err);
    if (r < 0)
        return r;
    /* Full: a new, sparse file of guest size. Diff: the dirty pages, in place. */
    fd = open(memory, O_WRONLY | O_CLOEXEC | (diff ? 0 : O_CREAT | O_TRUNC), 0600);
    if (fd < 0)
        return tp_err_errno(err, -errno, "open '%s'", memory);
    if (!diff && ftruncate(fd, size) < 0)
        return tp_err_errno(err, -errno, "size '%s'", memory);
    r = fc_write_page(fd, spec->id, diff ? 1 : 0, memory, err);
    if (r < 0)
        return r;
    if (fstat(fd, &st) < 0)
        return tp_err_errno(err, -errno, "stat '%s'", memory);
    pthread_mutex_lock(&fake_lock);
    fi->base_dev = st.st_dev;
    fi->base_ino = st.st_ino;
    /* Its own Diff writes only pages the VM holds private copies of: its view is unchanged. */
    if (self_maps) {
        fi->mapped_size = st.st_size;
        fi->mapped_mtime = st.st_mtim;
    }
    pthread_mutex_unlock(&fake_lock);
    return 0;
}

static bool
fc_base_reusable(const struct hv_vm_spec *spec, const char *base_dir)
{
    _cleanup_free_ char *memory = fs_path_join(base_dir, HV_SNAP_MEMORY);
    struct stat st;
    return !spec->template_dir && stat(memory, &st) == 0 && st.st_nlink == 1;
}

static int
fc_prepare_fork(struct hv_vm *vm, const struct hv_vm_spec *spec, const char *tdir, bool keep_source,
                bool *ret_restart, struct tp_err *err)
{
    (void)keep_source; /* it always does */
    pthread_mutex_lock(&fake_lock);
    fake_vm_enter(vm)->calls.prepare_fork++;
    pthread_mutex_unlock(&fake_lock);
    int r = fc_snapshot(vm, spec, tdir, false, err);
    if (r >= 0)
        *ret_restart = false; /* the source keeps its own memory: it only resumes */
    return r;
}

void
fake_fc_init(struct hv_driver *drv)
{
    drv->snapshot = fc_snapshot;
    drv->base_reusable = fc_base_reusable;
    drv->prepare_fork = fc_prepare_fork;
    drv->drop_memory = NULL;          /* it keeps no memory file of its own */
    drv->load_writes_snapshot = NULL; /* a private mapping leaves no trace */
}
