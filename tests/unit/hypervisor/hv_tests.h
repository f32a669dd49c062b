/* The hypervisor module's cmocka groups, run by one binary (test_main.c). */
#pragma once

int hv_test_qmp(void);
int hv_test_argv(void);
int hv_test_registry(void);
int hv_test_accel(void);
int hv_test_posted(void);
