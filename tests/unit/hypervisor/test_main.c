/* Runs every cmocka group of the hypervisor module; the exit status counts failures. */
#include "hv_tests.h"

int
main(void)
{
    int failed = 0;

    failed += hv_test_registry();
    failed += hv_test_accel();
    failed += hv_test_argv();
    failed += hv_test_qmp();
    failed += hv_test_posted();
    return failed ? 1 : 0;
}
