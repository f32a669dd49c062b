/* Root disks built from OCI images: the layers unpacked in order into a tree, made into an ext4
 * image with mkfs.ext4 -d, cached by the image's manifest digest under LAYOUT/rootfs/. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "image/oci/config.h"
#include "image/oci/oci.h"
#include "util/err.h"

#define OCI_ROOTFS_DIR "rootfs" /* below the layout dir; never inside blobs/ */

struct oci_rootfs {
    char *disk;                      /* LAYOUT/rootfs/<manifest hex>.ext4 */
    struct oci_image_config *config; /* the image's config blob, parsed */
    bool cache_hit;                  /* the disk existed: nothing was built */
    uint64_t layers, entries, bytes; /* what a build unpacked (0 on a hit) */
};
void oci_rootfs_done(struct oci_rootfs *r);

/* Build (or reuse) the root disk of the image whose manifest descriptor is manifest. The
 * manifest and config are checked against their digests, layers while they are unpacked; the
 * config's platform must be linux/amd64 (or unset), media types known (-EOPNOTSUPP otherwise).
 * The build happens in LAYOUT/rootfs/tmp-* and is renamed into place complete (durably), so a
 * failure or a crash leaves no half-built disk (the temp dir is removed, or by
 * oci_rootfs_clean_tmp at the next start). Holds the layout's pull lock, so gc cannot remove a
 * layer under it. Instances clone the disk: removing it never breaks one. */
int oci_rootfs_get(const char *layout_dir, const struct oci_desc *manifest, struct oci_rootfs *ret,
                   struct tp_err *err);

/* Remove the cached disk of a manifest digest (rmi/prune: instances have their own copies).
 * Nothing to remove is fine. */
int oci_rootfs_remove(const char *layout_dir, const char *manifest_digest, struct tp_err *err);

/* Remove the cached disks whose manifest blob is gone from the layout (after rmi/prune's gc). */
int oci_rootfs_gc(const char *layout_dir, struct tp_err *err);

/* Remove the temp dirs builds left behind (torpord's start, before anything builds). */
int oci_rootfs_clean_tmp(const char *layout_dir, struct tp_err *err);
