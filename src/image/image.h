/* The default guest and root disks: initramfs from torpor's agent plus a kernel's virtio
 * modules, ext4 root disks from directories, all built without root privileges and cached by
 * content under the cache dir. */
#pragma once

#include <stdint.h>

#include "util/err.h"

struct image_env {
    const char *cache_dir;  /* e.g. /var/cache/torpor; created if missing */
    const char *agent_path; /* the static guest agent binary to embed as /init */
};

/* Find the default kernel: the newest vmlinuz under CACHE/kernel/boot/ (placed there by
 * scripts/fetch-kernel). Caller frees. -ENOENT with a hint to run the fetch script. */
int image_default_kernel(const struct image_env *env, char **ret_kernel, struct tp_err *err);

/* Build (or reuse) an initramfs for kernel: /init = agent, plus the kernel's virtio modules in
 * load order (lib/modules/<ver>/ beside the kernel's boot/ dir, else /lib/modules/<ver>).
 * Cached as CACHE/initrd/<sha256>.cpio keyed on the agent, module list and contents. */
int image_initrd(const struct image_env *env, const char *kernel, char **ret_initrd,
                 struct tp_err *err);

/* Build (or reuse) an ext4 root disk image:
 *   source NULL -> the default busybox-static tree;
 *   a directory -> mkfs.ext4 -d of it;
 *   a regular file -> used as given (an ext4 image), after checking its magic.
 * size_mib is the filesystem size for built images (0 = default 256).
 * Cached as CACHE/rootfs/<sha256>.ext4 keyed on the tree's content. Caller frees. */
int image_root_disk(const struct image_env *env, const char *source, uint32_t size_mib,
                    char **ret_image, struct tp_err *err);

/* mkfs.ext4 -d tree into a new file image (size_mib MiB, sparse), the tree's owners, modes and
 * xattrs kept: the root disks of OCI images (image/oci/rootfs.c), which cache them themselves. */
int image_ext4_from_tree(const char *tree, const char *image, uint32_t size_mib,
                         struct tp_err *err);

/* Grow the ext4 image file image to size_mib MiB (file and filesystem, offline resize2fs);
 * nothing when it is that large already. */
int image_ext4_grow(const char *image, uint32_t size_mib, struct tp_err *err);

/* Write data as the file path (absolute, plain: no spaces, quotes or "..") of the ext4 image
 * disk, replacing it; mode 0600, owner root. The disk must not be in use (no guest running). */
int image_disk_put_file(const char *disk, const char *path, const void *data, size_t len,
                        struct tp_err *err);
/* Read the file path (at most max bytes) from the ext4 image disk: -ENOENT when absent. */
int image_disk_get_file(const char *disk, const char *path, size_t max, char **ret,
                        struct tp_err *err);

/* The kernel as an uncompressed ELF vmlinux, for VMMs that boot only that (Firecracker): kernel
 * itself when it is one, else extracted from the bzImage (gzip, xz, zstd or lz4 payload) and
 * cached as CACHE/vmlinux/<sha256>.elf. Caller frees. */
int image_vmlinux(const struct image_env *env, const char *kernel, char **ret_path,
                  struct tp_err *err);

/* The kernel version string from a vmlinuz file name or header ("6.1.0-56-cloud-amd64"). */
int image_kernel_version(const char *kernel, char **ret, struct tp_err *err);
