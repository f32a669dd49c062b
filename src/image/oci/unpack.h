/* Applying OCI image layers (tar, tar+gzip, tar+zstd) onto a directory tree with libarchive:
 * whiteouts, opaque directories, hard links, symlinks, devices, xattrs, owners, modes, mtimes,
 * and no write ever outside the tree. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

/* What a layer did, for the caller's log and tests. */
struct oci_unpack_stats {
    uint64_t entries;   /* tar members applied */
    uint64_t whiteouts; /* .wh.NAME and .wh..wh..opq handled */
    uint64_t bytes;     /* file content written */
};

/* Apply the layer read from layer_fd (any media type oci_layer_media_type_known() accepts: the
 * compression, none, gzip or zstd, is detected from the bytes) (a blob, read from its current
 * offset to EOF) onto the tree whose directory is root_fd. Every path is resolved inside the tree
 * (openat2 RESOLVE_IN_ROOT: a symlink from an earlier layer pointing at "/etc" means the tree's
 * etc), never followed in its last component; members named with ".." are refused (-EINVAL). digest
 * ("sha256:<hex>") is checked against the bytes read, the whole blob (-EBADMSG on mismatch), NULL
 * skips the check. On failure the tree is left partly written: build it in a temp dir and discard
 * it. Owners are applied as recorded (the caller is root; as non-root chown failures are ignored).
 */
int oci_layer_apply(int root_fd, int layer_fd, const char *digest, struct oci_unpack_stats *stats,
                    struct tp_err *err);
/* The same, refusing (-ENOSPC) a layer whose files' content passes max_bytes: a small blob may
 * expand (gzip, zstd) to far more than the disk holds. */
int oci_layer_apply_bounded(int root_fd, int layer_fd, const char *digest, uint64_t max_bytes,
                            struct oci_unpack_stats *stats, struct tp_err *err);
