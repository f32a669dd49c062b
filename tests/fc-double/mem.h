/* fc-double: guest memory (a mapped file), its dirty pages, snapshot memory files, File and Uffd
 * restore backends. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fcd.h"

#define MEM_PAGE        4096u
#define MEM_MAX_REGIONS 2

enum mem_backend {
    MEM_NONE,
    MEM_BOOT, /* fresh guest RAM: a memfd mapped shared */
    MEM_FILE, /* restored: the memory file mapped MAP_PRIVATE, never written */
    MEM_UFFD, /* restored: anonymous memory populated by an external page-fault handler */
};

struct mem_region {
    uint64_t gpa;    /* guest physical address */
    uint64_t offset; /* in the memory file: regions are packed back to back */
    uint64_t size;
};

struct mem {
    enum mem_backend backend;
    uint8_t *base;
    size_t size;
    size_t npages;
    uint64_t *dirty; /* one bit per page, set by every guest write */
    int fd;          /* memfd or memory file, -1 otherwise */
    int uffd;        /* the userfaultfd (Firecracker keeps its own copy), -1 otherwise */
    int uffd_sock;   /* the handler connection, kept open as Firecracker does */
    struct mem_region regions[MEM_MAX_REGIONS];
    int nregions;
};

/* x86_64 layout: [0, 3 GiB) then [4 GiB, ...). Fills m->regions for size. */
void mem_layout(struct mem *m, size_t size);

/* Fresh guest RAM of size bytes. */
int mem_boot(struct mem *m, size_t size, struct fcd_err *err);
/* Map the memory file at path MAP_PRIVATE (it must be exactly size bytes). */
int mem_load_file(struct mem *m, const char *path, size_t size, struct fcd_err *err);
/* Anonymous memory registered with a userfaultfd that is sent, with the region list, to the
 * handler listening on the Unix socket at path (FIRECRACKER.md §8). */
int mem_load_uffd(struct mem *m, const char *path, size_t size, struct fcd_err *err);
void mem_release(struct mem *m);

/* The guest writes: copies data at off and marks the pages dirty. */
void mem_write(struct mem *m, size_t off, const void *data, size_t len);
void mem_read(const struct mem *m, size_t off, void *data, size_t len);

/* Write the memory file of a snapshot at path. Full: every page (zero pages left as holes in a
 * new file). Diff: only the dirty pages, at their offsets. A file of another size is truncated
 * first; one of the right size is written in place. fsync'ed. Dirty bits are left alone. */
int mem_write_snapshot(struct mem *m, const char *path, bool diff, struct fcd_err *err);
void mem_clear_dirty(struct mem *m);
size_t mem_dirty_count(const struct mem *m);
