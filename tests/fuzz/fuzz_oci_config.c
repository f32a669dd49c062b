/* libFuzzer target: an image config blob through the parser and the workload builder (with and
 * without run overrides), and its StopSignal through the signal parser. */
#include <stddef.h>
#include <stdint.h>

#include "image/oci/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct oci_image_config *c = NULL;
    struct tp_err err = { 0 };

    if (oci_config_parse((const char *)data, size, &c, &err) == 0) {
        static char *const ep[] = { (char *)"/bin/sh", (char *)"-c", NULL };
        static char *const env[] = { (char *)"A=1", (char *)"PATH=/x", NULL };
        const struct oci_run_overrides o = { .entrypoint = ep, .env = env, .working_dir = "/w" };
        struct oci_workload w;
        int sig;
        if (oci_workload_build(c, NULL, &w, &err) == 0)
            oci_workload_done(&w);
        tp_err_clear(&err);
        if (oci_workload_build(c, &o, &w, &err) == 0)
            oci_workload_done(&w);
        (void)oci_signal_parse(c->stop_signal, &sig);
        oci_config_free(c);
    }
    tp_err_clear(&err);
    return 0;
}
