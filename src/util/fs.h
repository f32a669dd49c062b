/* File helpers: durable atomic writes, recursive mkdir/remove, whole-file reads, copies. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* mkdir -p with mode; existing directories are fine. */
int fs_mkdir_p(const char *path, mode_t mode, struct tp_err *err);

/* Write data to path via tmp file, fsync, rename, fsync(dir). */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                    struct tp_err *err);

/* Read a whole file (at most max bytes, else -EFBIG); *ret_data is NUL-terminated. */
int fs_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len,
                 struct tp_err *err);

/* rm -rf; a missing path is success. */
int fs_rm_rf(const char *path, struct tp_err *err);

/* fsync the directory that holds path (or path itself if it is a directory). */
int fs_fsync_dir(const char *dir, struct tp_err *err);

/* Make a regular file's data durable (fdatasync), e.g. one fs_clone_file() made. */
int fs_fsync_file(const char *path, struct tp_err *err);

/* Copy src to dst (dst must not exist): reflink where the filesystem can, else a sparse
 * in-kernel copy that keeps holes. */
int fs_clone_file(const char *src, const char *dst, mode_t mode, struct tp_err *err);

/* rename(2) plus fsync of the parent directory. */
int fs_rename_durable(const char *from, const char *to, struct tp_err *err);

bool fs_exists(const char *path);

/* write(2) until all of buf is written, retrying EINTR and short writes. 0 or -errno (the
 * part written before a failure stays written). */
int fd_write_all(int fd, const void *buf, size_t len);

/* "dir/name" joined with one slash; caller frees. */
char *fs_path_join(const char *dir, const char *name);
