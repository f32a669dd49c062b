/* What instance names and ids may look like, and where fresh ids come from. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "store/store.h"
#include "util/name.h"

static bool
is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool
store_name_valid(const char *name)
{
    return name_valid(name, NAME_MAX_LEN);
}

bool
store_id_valid(const char *id)
{
    size_t n;

    if (!id)
        return false;
    for (n = 0; id[n]; n++)
        if (n >= INST_ID_LEN || !is_lower_hex(id[n]))
            return false;
    return n == INST_ID_LEN;
}

/* Fill buf completely with kernel randomness. getrandom() without flags blocks only until the
 * pool is initialised at boot; /dev/urandom covers kernels without the syscall. */
static void
random_bytes(void *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t k = getrandom((char *)buf + done, len - done, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            break;
        done += (size_t)k;
    }
    if (done == len)
        return;

    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && done < len) {
        ssize_t k = read(fd, (char *)buf + done, len - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        done += (size_t)k;
    }
    if (fd >= 0)
        close(fd);
    /* Like OOM: an id must never be predictable or repeated, and there is no way to go on. */
    if (done < len)
        abort();
}

void
store_new_id(char ret_id[INST_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[INST_ID_LEN / 2];

    random_bytes(b, sizeof(b));
    for (size_t i = 0; i < sizeof(b); i++) {
        ret_id[2 * i] = hex[b[i] >> 4];
        ret_id[2 * i + 1] = hex[b[i] & 0xf];
    }
    ret_id[INST_ID_LEN] = '\0';
}
