/* fc-double: snapshot state files ("FCDOUBLE-STATE v<format>", JSON, FNV-1a 64 checksum). */
#include "snapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAP_MAGIC    "FCDOUBLE-STATE v"
#define SNAP_MAX_SIZE (1u << 20) /* Firecracker also bounds the state file it accepts */

static uint64_t
fnv1a64(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int
snapfile_write(const char *path, json_t *state, struct fcd_err *err)
{
    char *json = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
    size_t len = strlen(SNAP_MAGIC FCD_SNAPSHOT_VERSION "\n") + strlen(json) + 1;
    char *text = malloc(len + 64);
    int fd, r = 0;

    if (!text)
        abort();
    snprintf(text, len + 1, "%s%s\n%s\n", SNAP_MAGIC, FCD_SNAPSHOT_VERSION, json);
    free(json);
    snprintf(text + len, 64, "fnv1a64 %016" PRIx64 "\n", fnv1a64(text, len));
    len += strlen(text + len);

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        r = -errno;
    } else {
        for (size_t off = 0; off < len && r == 0;) {
            ssize_t n = write(fd, text + off, len - off);
            if (n < 0 && errno != EINTR)
                r = -errno;
            else if (n > 0)
                off += (size_t)n;
        }
        if (r == 0 && fsync(fd) < 0)
            r = -errno;
        close(fd);
    }
    free(text);
    if (r < 0)
        return fcd_fail(err, r, "Cannot write the snapshot state file '%s': %s", path,
                        strerror(-r));
    return 0;
}

static int
read_text(const char *path, char **ret, size_t *ret_len, struct fcd_err *err)
{
    FILE *f = fopen(path, "re");
    char *buf;
    size_t n;

    if (!f)
        return fcd_fail(err, -errno, "Cannot open the snapshot state file '%s': %s", path,
                        strerror(errno));
    buf = malloc(SNAP_MAX_SIZE + 1);
    if (!buf)
        abort();
    n = fread(buf, 1, SNAP_MAX_SIZE + 1, f);
    fclose(f);
    if (n > SNAP_MAX_SIZE) {
        free(buf);
        return fcd_fail(err, -EFBIG, "The snapshot state file '%s' is too large", path);
    }
    buf[n] = '\0';
    *ret = buf;
    *ret_len = n;
    return 0;
}

static int
parse_version(const char *text, unsigned *maj, unsigned *min)
{
    unsigned patch;
    if (strncmp(text, SNAP_MAGIC, strlen(SNAP_MAGIC)) != 0 ||
        sscanf(text + strlen(SNAP_MAGIC), "%u.%u.%u\n", maj, min, &patch) != 3)
        return -EINVAL;
    return 0;
}

int
snapfile_version(const char *path, char *ret_version, size_t size, struct fcd_err *err)
{
    char *text;
    size_t len;
    unsigned maj, min;
    int r = read_text(path, &text, &len, err);

    if (r < 0)
        return r;
    if (parse_version(text, &maj, &min) < 0) {
        free(text);
        return fcd_fail(err, -EINVAL, "'%s' is not a snapshot state file (bad magic)", path);
    }
    snprintf(ret_version, size, "%.*s", (int)strcspn(text + strlen(SNAP_MAGIC), "\n"),
             text + strlen(SNAP_MAGIC));
    free(text);
    return 0;
}

int
snapfile_read(const char *path, json_t **ret_state, struct fcd_err *err)
{
    unsigned maj, min, our_maj, our_min, patch;
    char *text, *l1, *l2;
    size_t len;
    json_error_t jerr;
    json_t *state;
    int r = read_text(path, &text, &len, err);

    if (r < 0)
        return r;
    sscanf(FCD_SNAPSHOT_VERSION, "%u.%u.%u", &our_maj, &our_min, &patch);
    l1 = strchr(text, '\n');
    l2 = l1 ? strchr(l1 + 1, '\n') : NULL;
    if (parse_version(text, &maj, &min) < 0 || !l2) {
        r = fcd_fail(err, -EINVAL, "Invalid snapshot state file '%s': bad magic", path);
        goto out;
    }
    if (maj != our_maj || min > our_min) {
        r = fcd_fail(err, -EINVAL,
                     "Snapshot version %u.%u is not supported by this Firecracker (data format "
                     "%s)",
                     maj, min, FCD_SNAPSHOT_VERSION);
        goto out;
    }
    {
        char want[64];
        size_t body = (size_t)(l2 + 1 - text);
        snprintf(want, sizeof(want), "fnv1a64 %016" PRIx64 "\n", fnv1a64(text, body));
        if (strcmp(l2 + 1, want) != 0) {
            r = fcd_fail(err, -EINVAL, "Snapshot state file '%s' failed its checksum", path);
            goto out;
        }
    }
    *l2 = '\0';
    state = json_loads(l1 + 1, 0, &jerr);
    if (!json_is_object(state)) {
        json_decref(state);
        r = fcd_fail(err, -EINVAL, "Invalid snapshot state in '%s': %s", path, jerr.text);
        goto out;
    }
    *ret_state = state;
out:
    free(text);
    return r;
}
