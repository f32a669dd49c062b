/* libFuzzer target: QMP line classification must never crash, leak or accept junk as a reply. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "hypervisor/qemu/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qmp_msg m = { .json = NULL };
    struct tp_err err = { 0 };

    if (qmp_parse_line((const char *)data, size, &m, &err) == 0) {
        /* Whatever is accepted is an object of one known kind. */
        if (!json_is_object(m.json) || m.kind < 0 || m.kind >= _QMP_MSG_MAX)
            abort();
        qmp_msg_clear(&m);
    } else if (err.code >= 0 || m.json)
        abort();
    tp_err_clear(&err);
    return 0;
}
