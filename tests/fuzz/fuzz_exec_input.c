/* libFuzzer target: what an attached exec client sends, split at an arbitrary point as it may
 * arrive in two reads; every event handed out must be within its kind's bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "api/exec_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
check(const struct exec_input_event *ev, void *userdata, struct tp_err *err)
{
    size_t *sum = userdata;

    if (ev->kind == EXEC_INPUT_STDIN && ev->len > EXEC_INPUT_FRAME_MAX)
        abort();
    if (ev->kind == EXEC_INPUT_SIGNAL && (ev->sig < 1 || ev->sig > 64))
        abort();
    for (size_t i = 0; i < ev->len; i++)
        *sum += ev->data[i]; /* touch every byte: ASan catches a bad pointer */
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct exec_input d;
    struct tp_err err = { 0 };
    size_t sum = 0, cut = size ? data[0] % (size + 1) : 0;

    exec_input_init(&d);
    if (exec_input_feed(&d, data, cut, check, &sum, &err) == 0)
        exec_input_feed(&d, data + cut, size - cut, check, &sum, &err);
    tp_err_clear(&err);
    exec_input_done(&d);
    return 0;
}
