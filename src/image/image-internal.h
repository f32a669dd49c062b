/* Helpers shared by the image module's files and its tests: content hashing, cache files,
 * running e2fsprogs tools, the newc cpio writer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"
#include "util/err.h"

/* ---- content keys (hash.c) ---- */

struct image_hash {
    void *ctx; /* EVP_MD_CTX; kept opaque so users need no OpenSSL headers */
    bool failed;
};

#define IMAGE_HEX_LEN 64

/* SHA-256 over length-prefixed fields, so ("ab","c") and ("a","bc") differ. */
int image_hash_init(struct image_hash *h, struct tp_err *err);
void image_hash_bytes(struct image_hash *h, const void *data, size_t len);
void image_hash_str(struct image_hash *h, const char *s);
void image_hash_u64(struct image_hash *h, uint64_t v);
/* Stream an open file's bytes in as one field of `size` bytes. */
int image_hash_fd(struct image_hash *h, int fd, uint64_t size);
/* Writes IMAGE_HEX_LEN hex digits plus NUL into ret_hex; frees the context either way. */
int image_hash_final(struct image_hash *h, char ret_hex[IMAGE_HEX_LEN + 1], struct tp_err *err);
void image_hash_done(struct image_hash *h); /* NULL-safe; usable as _cleanup_ */

/* ---- cache files (cache.c) ---- */

/* Only the daemon's user reads the cache: entries carry the contents of the user's files. */
#define IMAGE_CACHE_DIR_MODE  0700
#define IMAGE_CACHE_FILE_MODE 0600

/* CACHE/sub, created if missing and restricted to IMAGE_CACHE_DIR_MODE. Caller frees. */
int image_cache_subdir(const struct image_env *env, const char *sub, char **ret_dir,
                       struct tp_err *err);
/* A fresh, uniquely named temp file in dir (on the cache's filesystem, so rename is atomic
 * and concurrent builders never share one). Returns the fd; *ret_path is for the rename. */
int image_cache_tmpfile(const char *dir, char **ret_path, struct tp_err *err);
/* A fresh temp directory in dir. Caller frees and removes. */
int image_cache_tmpdir(const char *dir, char **ret_path, struct tp_err *err);
/* Finish h (see image_hash_final) and find its entry CACHE/kind/<sha256>.ext. Writes the
 * subdir (created if missing, where temp files for the entry go) and the entry's path, both
 * for the caller to free. Returns 1 if the entry exists, 0 if it is still to be built. */
int image_cache_lookup(const struct image_env *env, struct image_hash *h, const char *kind,
                       const char *ext, char **ret_dir, char **ret_path, struct tp_err *err);
/* Publish the finished temp file tmp (open as fd) as the entry path: IMAGE_CACHE_FILE_MODE,
 * fsync, then a durable rename. On failure tmp is left for the caller to unlink. */
int image_cache_publish(int fd, const char *tmp, const char *path, struct tp_err *err);

/* ---- ELF kernels (vmlinux.c) ---- */

#define IMAGE_VMLINUX_MAX (512u << 20) /* the most an extracted kernel may inflate to */

/* Pure (fuzzed): the ELF vmlinux inside bzImage bytes. *ret is the caller's to free. -EINVAL
 * not a bzImage, -EOPNOTSUPP an unknown compression, -EBADMSG corrupt, -EFBIG too large,
 * -ENOEXEC not a 64-bit ELF. */
int image_vmlinux_extract(const uint8_t *bz, size_t len, uint8_t **ret, size_t *ret_len,
                          struct tp_err *err);

/* ---- external tools (run.c) ---- */

/* Find a tool in PATH, then /usr/sbin and /sbin (e2fsprogs lives there and a non-root PATH
 * often lacks it). Caller frees. -ENOENT naming the tool. */
int image_find_tool(const char *name, char **ret_path, struct tp_err *err);
/* Run argv to completion with stdout sent to stdout_fd (-1 = /dev/null). A non-zero exit is
 * -EIO with the end of the tool's stderr (its last 2 KiB) in the message. */
int image_run(char *const *argv, int stdout_fd, struct tp_err *err);

/* ---- newc cpio writer (cpio.c) ---- */

struct cpio_writer {
    int fd;          /* borrowed */
    uint64_t offset; /* bytes written so far */
    uint32_t next_ino;
};

void cpio_writer_init(struct cpio_writer *w, int fd);
/* Names are archive paths; a leading '/' is dropped. Owners are 0:0, mtime 0 (the archive's
 * bytes depend only on its contents). mode holds permission bits only. */
int cpio_add_dir(struct cpio_writer *w, const char *name, mode_t mode, struct tp_err *err);
int cpio_add_file(struct cpio_writer *w, const char *name, mode_t mode, const void *data,
                  size_t len, struct tp_err *err);
int cpio_add_symlink(struct cpio_writer *w, const char *name, const char *target,
                     struct tp_err *err);
/* Append the TRAILER!!! entry. */
int cpio_finish(struct cpio_writer *w, struct tp_err *err);

/* ---- initrd internals (initrd.c), exposed for tests ---- */

/* The virtio modules packed into every initramfs, in insmod order. */
extern const char *const image_initrd_modules[];
extern const size_t image_initrd_n_modules;
