/* libFuzzer target: hostile layer bytes (tar, gzip or zstd) applied onto a scratch tree with
 * oci_layer_apply: whiteouts, links and names of any shape must never crash it or write
 * outside the tree (the tree lives in a private temp dir, emptied after every input). */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/oci/unpack.h"
#include "util/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/fuzz-oci-layer-XXXXXX";

static void
remove_dir(void)
{
    fs_rm_rf(dir, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *tree;
    struct tp_err err = { 0 };

    if (!tree) {
        if (!mkdtemp(dir))
            abort();
        atexit(remove_dir);
        tree = fs_path_join(dir, "tree");
    }
    if (mkdir(tree, 0755) < 0)
        abort();
    int root = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd = memfd_create("layer", MFD_CLOEXEC);
    if (root < 0 || fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    lseek(fd, 0, SEEK_SET);
    (void)oci_layer_apply(root, fd, NULL, NULL, &err);
    tp_err_clear(&err);
    close(fd);
    close(root);
    if (fs_rm_rf(tree, NULL) < 0)
        abort();
    return 0;
}
