/* libFuzzer target: a hostile tar stream through the agent's reader and name splitter (the
 * parsing half of tar-in; nothing here touches the filesystem). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "util/tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct mem {
    const uint8_t *p;
    size_t left;
};

/* Short reads on purpose: the reader must cope with any split. */
static ssize_t
mem_read(void *ctx, void *buf, size_t len)
{
    struct mem *m = ctx;
    size_t n = len < m->left ? len : m->left;
    if (n > 700)
        n = 700;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return (ssize_t)n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mem m = { data, size };
    struct tar_reader r = { .read = mem_read, .ctx = &m };
    struct tar_entry e;
    static uint8_t buf[4096];
    char *comps[64];
    int rc;

    while ((rc = tar_next(&r, &e)) > 0) {
        if (!e.name || !e.linkname || !e.name[0] || e.mode > 07777)
            __builtin_trap();
        char *copy = strdup(e.name);
        int n = copy ? tar_name_split(copy, comps, 64) : 0;
        for (int i = 0; i < n; i++)
            if (!comps[i][0] || strchr(comps[i], '/') || strcmp(comps[i], "..") == 0 ||
                strcmp(comps[i], ".") == 0)
                __builtin_trap();
        free(copy);
        /* Read some of the data, leave the rest for tar_next() to skip. */
        uint64_t got = 0;
        ssize_t k;
        while (got < 3 * sizeof(buf) && (k = tar_read_data(&r, buf, sizeof(buf))) > 0)
            got += (uint64_t)k;
        tar_entry_clear(&e);
    }
    if (rc < 0 && (!r.err[0] || memchr(r.err, '\0', sizeof(r.err)) == NULL))
        __builtin_trap();
    return 0;
}
