/* The receive buffers a guest has posted to QEMU's virtio devices, read through QMP's virtio
 * introspection: the guest memory QEMU itself will write next. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/qemu/qemu.h"
#include "hypervisor/qemu/qmp.h"
#include "util/xalloc.h"

/* Devices whose even-numbered queues the device fills (virtio-serial: port and control
 * receive queues; virtio-net: receive queues). Other devices' writes follow requests that
 * cannot be foreseen. */
static bool
receives_on_even_queues(const char *name)
{
    return strcmp(name, "virtio-serial") == 0 || strcmp(name, "virtio-net") == 0;
}

static void
add_range(struct hv_mem_range **v, size_t *n, uint64_t gpa, uint64_t len)
{
    *v = xrealloc(*v, sizeof(**v) * (*n + 1)); /* a few dozen at most */
    (*v)[(*n)++] = (struct hv_mem_range){ .off = gpa, .len = len };
}

int
qemu_posted_parse_element(const json_t *elem, struct hv_mem_range **v, size_t *n)
{
    const json_t *descs = json_object_get(elem, "descs");
    size_t k;
    const json_t *d;

    if (!json_is_array(descs))
        return -EPROTO;
    json_array_foreach(descs, k, d)
    {
        const json_t *addr = json_object_get(d, "addr"), *len = json_object_get(d, "len");
        const json_t *flags = json_object_get(d, "flags");
        bool writable = false;
        size_t f;
        const json_t *fl;

        if (!json_is_integer(addr) || !json_is_integer(len) || json_integer_value(len) < 0)
            return -EPROTO;
        json_array_foreach(flags, f, fl) if (json_is_string(fl) &&
                                             strcmp(json_string_value(fl), "write") == 0) writable =
            true;
        if (writable && json_integer_value(len) > 0)
            add_range(v, n, (uint64_t)json_integer_value(addr), (uint64_t)json_integer_value(len));
    }
    return 0;
}

/* The next per_queue buffers the guest posted on each receive queue of one device. */
static int
device_posted(struct qmp_conn *c, const char *path, unsigned per_queue, struct hv_mem_range **v,
              size_t *n, struct tp_err *err)
{
    for (unsigned q = 0; q < QEMU_POSTED_MAX_QUEUES; q += 2) {
        json_auto_t *st = NULL;
        int r =
            qmp_execute(c, "x-query-virtio-queue-status",
                        json_pack("{s:s,s:I}", "path", path, "queue", (json_int_t)q), -1, &st, err);
        if (r == -EIO) { /* no such queue: the device has fewer */
            tp_err_clear(err);
            return 0;
        }
        if (r < 0)
            return r;
        const json_t *last = json_object_get(st, "last-avail-idx");
        const json_t *desc = json_object_get(st, "vring-desc");
        if (json_is_integer(desc) && json_integer_value(desc) == 0)
            continue; /* a queue the guest never set up */
        if (!json_is_integer(last))
            return tp_err_set(err, -EPROTO, "x-query-virtio-queue-status: no last-avail-idx");
        for (unsigned k = 0; k < per_queue; k++) {
            json_auto_t *el = NULL;
            json_int_t idx = (json_integer_value(last) + k) & 0xffff;
            r = qmp_execute(
                c, "x-query-virtio-queue-element",
                json_pack("{s:s,s:I,s:I}", "path", path, "queue", (json_int_t)q, "index", idx), -1,
                &el, err);
            if (r == -EIO) { /* a queue the guest never set up */
                tp_err_clear(err);
                break;
            }
            if (r < 0)
                return r;
            /* Past the guest's avail index the ring holds no buffer yet (or an old one). */
            const json_t *avail = json_object_get(json_object_get(el, "avail"), "idx");
            if (!json_is_integer(avail))
                return tp_err_set(err, -EPROTO, "x-query-virtio-queue-element: no avail.idx");
            if (((json_integer_value(avail) - idx) & 0xffff) == 0)
                break;
            if (qemu_posted_parse_element(el, v, n) < 0)
                return tp_err_set(err, -EPROTO, "x-query-virtio-queue-element: bad descs");
        }
    }
    return 0;
}

int
qemu_posted_buffers(struct qmp_conn *c, unsigned per_queue, struct hv_mem_range **ret,
                    size_t *ret_n, struct tp_err *err)
{
    json_auto_t *devs = NULL;
    struct hv_mem_range *v = NULL;
    size_t n = 0, k;
    const json_t *dev;
    int r = qmp_execute(c, "x-query-virtio", NULL, -1, &devs, err);

    if (r < 0)
        return r;
    if (!json_is_array(devs))
        return tp_err_set(err, -EPROTO, "x-query-virtio: not a list");
    json_array_foreach(devs, k, dev)
    {
        const char *name = json_string_value(json_object_get(dev, "name"));
        const char *path = json_string_value(json_object_get(dev, "path"));
        if (!name || !path || !receives_on_even_queues(name))
            continue;
        r = device_posted(c, path, per_queue, &v, &n, err);
        if (r < 0) {
            free(v);
            return r;
        }
    }
    *ret = v;
    *ret_n = n;
    return 0;
}
