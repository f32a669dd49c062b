/* POSIX tar for the agent's built-ins and torpor cp: a stream reader that never touches the
 * filesystem (the part that parses hostile input, fuzzed on its own), a writer of a tree and an
 * extractor that keeps every entry under its directory. libc only. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TAR_BLOCK 512

/* Exit codes of tar_create()/tar_extract(), as the built-ins report them. */
#define TAR_EXIT_OK       0
#define TAR_EXIT_FAIL     1
#define TAR_EXIT_NOTFOUND 2 /* the PATH / DIR given does not exist (or DIR is no directory) */

enum tar_type {
    TAR_REG = '0',
    TAR_LNK = '1', /* hard link to linkname, an earlier entry */
    TAR_SYM = '2',
    TAR_CHR = '3',
    TAR_BLK = '4',
    TAR_DIR = '5',
    TAR_FIFO = '6',
};

struct tar_entry {
    char *name;     /* malloc'd; pax 'x' path and GNU 'L' names applied */
    char *linkname; /* malloc'd, "" when none */
    char type;      /* enum tar_type, or any other byte the archive holds */
    uint32_t mode;  /* permission bits (07777) */
    uint64_t uid, gid;
    int64_t mtime; /* seconds */
    uint32_t mtime_nsec;
    uint64_t size; /* data bytes that follow (0 for all but regular files) */
    uint32_t devmajor, devminor;
};

/* Where a reader's bytes come from: like read(2), 0 at the end, -errno on failure. */
typedef ssize_t (*tar_read_fn)(void *ctx, void *buf, size_t len);

struct tar_reader {
    tar_read_fn read;
    void *ctx;
    uint64_t left; /* data bytes of the current entry not read yet */
    uint64_t pad;  /* then this many bytes up to the next block */
    char err[256]; /* why the last call failed */
};

/* The next entry (the previous one's unread data is skipped): 1 with *e filled (free it with
 * tar_entry_clear()), 0 at the end of the archive (zero blocks, or the end of input at a block
 * boundary), -EINVAL for a malformed archive or -errno from read, with r->err set. */
int tar_next(struct tar_reader *r, struct tar_entry *e);
/* Up to len bytes of the current entry's data: the count, 0 at its end, -errno (r->err set; a
 * truncated archive is -EINVAL). */
ssize_t tar_read_data(struct tar_reader *r, void *buf, size_t len);
void tar_entry_clear(struct tar_entry *e);

/* Split an entry name into the components to create under the extraction directory: leading
 * "./" stripped, empty and "." components dropped. Returns the count (0 = the directory itself)
 * with comps pointing into name (modified: '/' become NULs), or -EINVAL for an absolute name or
 * one with a ".." component, -E2BIG for more than max components. */
int tar_name_split(char *name, char **comps, int max);

/* Write a tar of path to fd (see AGENT_EXEC_F_BUILTIN "tar-out"); messages to err_fd.
 * Hard links inside the tree are written as separate regular files. */
int tar_create(int fd, const char *path, int err_fd);
/* tar_create() with the top entry named as (NULL: PATH's last component; "." for its contents
 * only, as `docker cp SRC/. DEST`). */
int tar_create_as(int fd, const char *path, const char *as, int err_fd);
/* tar_extract() where the archive's top component is renamed to top_as before anything is
 * created ("" drops it: the top directory's contents land in dir itself). */
int tar_extract_as(int fd, const char *dir, const char *top_as, int err_fd);
/* tar_extract_as() for an archive from a guest onto the host (torpor cp out): owners are not
 * taken from it, set-id bits are dropped and device nodes refused, as docker cp does. */
int tar_extract_untrusted(int fd, const char *dir, const char *top_as, int err_fd);
/* Extract the tar read from fd under dir (see "tar-in"); messages to err_fd. Stops at the first
 * failure or refused entry, nothing is written outside dir. */
int tar_extract(int fd, const char *dir, int err_fd);
