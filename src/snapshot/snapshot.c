/* Snapshot directories: promotion of the retained base, durability, memory release. */
#include "snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hypervisor/driver.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/xalloc.h"

#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

struct kernel_cachestat_range {
    uint64_t off;
    uint64_t len; /* 0 = to the end */
};

struct kernel_cachestat {
    uint64_t nr_cache;
    uint64_t nr_dirty;
    uint64_t nr_writeback;
    uint64_t nr_evicted;
    uint64_t nr_recently_evicted;
};

int
snap_cachestat(int fd, struct snap_cachestat *ret)
{
    struct kernel_cachestat_range range = { 0, 0 };
    struct kernel_cachestat cs;
    long page = sysconf(_SC_PAGESIZE);

    if (syscall(SYS_cachestat, fd, &range, &cs, 0) < 0)
        return -errno;
    ret->cache = cs.nr_cache * (uint64_t)page;
    ret->dirty = cs.nr_dirty * (uint64_t)page;
    ret->writeback = cs.nr_writeback * (uint64_t)page;
    return 0;
}

int
snap_prepare_target(const char *base, const char *latest, bool reuse, bool *ret_diff,
                    struct tp_err *err)
{
    int r = fs_rm_rf(latest, err);
    if (r < 0)
        return tp_err_wrap(err, "discard stale snapshot");
    _cleanup_free_ char *base_memory = fs_path_join(base, HV_SNAP_MEMORY);
    /* A base whose memory travelled in its state file has no image to build on. */
    if (reuse && fs_exists(base_memory)) {
        /* The base still holds the manifest of the standby it was retired from: once promoted
         * it would look like a complete snapshot (stale state, newer memory) until snap_commit
         * writes the new one. Drop it first, so a crash in between leaves no such latest. */
        _cleanup_free_ char *base_manifest = fs_path_join(base, SNAP_MANIFEST);
        if (unlink(base_manifest) < 0 && errno != ENOENT)
            return tp_err_errno(err, -errno, "remove '%s'", base_manifest);
        r = fs_rename_durable(base, latest, err);
        if (r < 0)
            return tp_err_wrap(err, "promote retained snapshot base");
        *ret_diff = true;
        return 0;
    }
    /* No base to build on (or the hypervisor cannot): drop any leftover, write it all. */
    r = fs_rm_rf(base, err);
    if (r >= 0)
        r = fs_mkdir_p(latest, 0700, err);
    if (r < 0)
        return tp_err_wrap(err, "create snapshot directory");
    *ret_diff = false;
    return 0;
}

bool
snap_has_memory(const char *dir)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    return fs_exists(memory);
}

int
snap_link(const char *from, const char *to, struct tp_err *err)
{
    static const char *const files[] = { HV_SNAP_STATE, HV_SNAP_MEMORY, SNAP_MANIFEST };
    int r = fs_mkdir_p(to, 0700, err);
    if (r < 0)
        return r;
    for (size_t k = 0; k < ELEMENTSOF(files); k++) {
        _cleanup_free_ char *src = fs_path_join(from, files[k]);
        _cleanup_free_ char *dst = fs_path_join(to, files[k]);
        /* No memory image: the memory is in the state (snap_validate checked which). */
        if (link(src, dst) < 0 && !(errno == ENOENT && k == 1))
            return tp_err_errno(err, -errno, "link '%s' to '%s'", src, dst);
    }
    return fs_fsync_dir(to, err);
}

int
snap_discard(const char *dir, struct tp_err *err)
{
    return fs_rm_rf(dir, err);
}

static char *
manifest_json(const struct snap_manifest *m)
{
    json_t *o = json_pack(
        "{s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "version", m->version, "hypervisor",
        m->hypervisor, "type", m->diff ? "diff" : "full", "created_ms", (json_int_t)m->created_ms,
        "memory_mib", (json_int_t)m->memory_mib, "vcpus", (json_int_t)m->vcpus, "memory_written",
        (json_int_t)m->memory_written, "ram_in_state", m->ram_in_state);
    if (o && m->vmm_version[0])
        json_object_set_new(o, "vmm_version", json_string(m->vmm_version));
    char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (!s)
        abort();
    return s;
}

int
snap_commit(const char *dir, struct snap_manifest *m, uint64_t *ret_written, struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_free_ char *state = fs_path_join(dir, HV_SNAP_STATE);
    m->ram_in_state = !fs_exists(memory);
    const char *image = m->ram_in_state ? state : memory;
    _cleanup_close_ int fd = open(image, O_RDWR | O_CLOEXEC);
    struct snap_cachestat cs = { 0 };
    struct stat st;
    int r;

    if (fd < 0)
        return tp_err_errno(err, -errno, "open snapshot memory '%s'", image);
    /* What is dirty now is exactly what this snapshot has to write. */
    if (snap_cachestat(fd, &cs) < 0)
        cs.dirty = cs.writeback = 0;
    if (fdatasync(fd) < 0)
        return tp_err_errno(err, -errno, "write snapshot memory '%s'", image);
    /* The state file too: drivers do not make theirs durable (Firecracker writes it itself). */
    if (!m->ram_in_state) {
        _cleanup_close_ int sfd = open(state, O_RDONLY | O_CLOEXEC);
        if (sfd < 0 || fdatasync(sfd) < 0)
            return tp_err_errno(err, -errno, "write snapshot state '%s'", state);
    }
    m->memory_written = cs.dirty + cs.writeback;
    if (m->ram_in_state && fstat(fd, &st) == 0)
        m->memory_written = (uint64_t)st.st_size;
    r = snap_write_manifest(dir, m, err);
    if (r < 0)
        return r;
    *ret_written = m->memory_written;
    return 0;
}

int
snap_write_manifest(const char *dir, struct snap_manifest *m, struct tp_err *err)
{
    _cleanup_free_ char *manifest = fs_path_join(dir, SNAP_MANIFEST);
    m->ram_in_state = !snap_has_memory(dir);
    _cleanup_free_ char *text = manifest_json(m);
    int r = fs_write_atomic(manifest, text, strlen(text), 0600, err);
    if (r < 0)
        return tp_err_wrap(err, "write snapshot manifest");
    return fs_fsync_dir(dir, err);
}

int
snap_release_memory(const char *dir, uint64_t *ret_resident, struct tp_err *err)
{
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_free_ char *state = fs_path_join(dir, HV_SNAP_STATE);
    /* With guest memory in the state file, that is what occupies the page cache. */
    const char *image = fs_exists(memory) ? memory : state;
    _cleanup_close_ int fd = open(image, O_RDONLY | O_CLOEXEC);
    struct snap_cachestat cs = { 0 };
    int r;

    if (fd < 0)
        return tp_err_errno(err, -errno, "open snapshot memory '%s'", image);
    r = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (r != 0)
        return tp_err_errno(err, -r, "drop cached pages of '%s'", image);
    *ret_resident = snap_cachestat(fd, &cs) == 0 ? cs.cache : 0;
    return 0;
}

int
snap_validate(const char *dir, struct snap_manifest *ret, struct tp_err *err)
{
    _cleanup_free_ char *manifest = fs_path_join(dir, SNAP_MANIFEST);
    _cleanup_free_ char *state = fs_path_join(dir, HV_SNAP_STATE);
    _cleanup_free_ char *memory = fs_path_join(dir, HV_SNAP_MEMORY);
    _cleanup_free_ char *text = NULL;
    struct snap_manifest m = { 0 };
    json_error_t jerr;
    json_t *o;
    const char *type, *hv;
    int r;

    r = fs_read_file(manifest, 1 << 20, &text, NULL, err);
    if (r < 0)
        return tp_err_wrap(err, "read snapshot manifest");
    o = json_loads(text, 0, &jerr);
    if (!o)
        return tp_err_set(err, -EPROTO, "snapshot manifest '%s' is corrupt: %s", manifest,
                          jerr.text);
    json_int_t created = 0, mib = 0, vcpus = 0, written = 0;
    int ram_in_state = 0;
    const char *vmm_version = NULL;
    if (json_unpack(o, "{s:i, s:s, s:s, s:I, s:I, s:I, s:I, s?b, s?s}", "version", &m.version,
                    "hypervisor", &hv, "type", &type, "created_ms", &created, "memory_mib", &mib,
                    "vcpus", &vcpus, "memory_written", &written, "ram_in_state", &ram_in_state,
                    "vmm_version", &vmm_version) < 0 ||
        m.version != SNAP_MANIFEST_VERSION) {
        json_decref(o);
        return tp_err_set(err, -EPROTO, "snapshot manifest '%s' is not version %d", manifest,
                          SNAP_MANIFEST_VERSION);
    }
    snprintf(m.hypervisor, sizeof(m.hypervisor), "%s", hv);
    snprintf(m.vmm_version, sizeof(m.vmm_version), "%s", vmm_version ? vmm_version : "");
    m.diff = strcmp(type, "diff") == 0;
    m.created_ms = created;
    m.memory_mib = (uint32_t)mib;
    m.vcpus = (uint32_t)vcpus;
    m.memory_written = (uint64_t)written;
    m.ram_in_state = ram_in_state;
    json_decref(o);
    if (!fs_exists(state))
        return tp_err_set(err, -ENOENT, "snapshot '%s' has no state file", dir);
    if (!m.ram_in_state && !fs_exists(memory))
        return tp_err_set(err, -ENOENT, "snapshot '%s' has no memory image", dir);
    /* The manifest is written last, after the memory is durable and while nothing can write it
     * (the VMM is paused or gone). A memory image modified since then has been run from (a
     * VMM resumed the guest on it), so it no longer matches the device state. */
    struct stat ms, is;
    if (!m.ram_in_state && stat(manifest, &ms) == 0 && stat(memory, &is) == 0 &&
        (is.st_mtim.tv_sec > ms.st_mtim.tv_sec ||
         (is.st_mtim.tv_sec == ms.st_mtim.tv_sec && is.st_mtim.tv_nsec > ms.st_mtim.tv_nsec)))
        return tp_err_set(err, -ESTALE,
                          "snapshot '%s': its memory image changed after it was taken", dir);
    if (ret)
        *ret = m;
    return 0;
}

int
snap_retire_latest(const char *latest, const char *base, bool reuse, struct tp_err *err)
{
    int r = fs_rm_rf(base, err);
    if (r < 0)
        return r;
    if (!reuse)
        return fs_rm_rf(latest, err);
    return fs_rename_durable(latest, base, err);
}
