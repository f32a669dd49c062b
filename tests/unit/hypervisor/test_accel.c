/* Accelerator choice from fake cpuinfo files and /dev/kvm stand-ins; TSC rate measurement. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "hv_tests.h"
#include "hypervisor/qemu/qemu.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/xalloc.h"

struct accel_fixture {
    char *dir;
    char *cpu_vmx, *cpu_svm, *cpu_none;
    char *kvm_ok, *kvm_missing, *kvm_unopenable;
};

static char *
write_file(const char *dir, const char *name, const char *text)
{
    char *path = fs_path_join(dir, name);
    assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, NULL), 0);
    return path;
}

static int
accel_setup(void **state)
{
    struct accel_fixture *f = xnew(struct accel_fixture, 1);
    char tmpl[] = "/tmp/torpor-accel-XXXXXX";

    if (!mkdtemp(tmpl))
        return -1;
    f->dir = xstrdup(tmpl);
    f->cpu_vmx = write_file(f->dir, "cpuinfo-vmx",
                            "processor\t: 0\nvendor_id\t: GenuineIntel\n"
                            "flags\t\t: fpu vme de pse tsc msr pae vmx sse sse2 ht\n"
                            "bugs\t\t: spectre_v1\n\n"
                            "processor\t: 1\nflags\t\t: fpu vme de pse tsc msr pae vmx sse\n");
    f->cpu_svm = write_file(f->dir, "cpuinfo-svm",
                            "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                            "flags\t\t: fpu vme de pse tsc msr svm lahf_lm\n");
    /* Words that merely contain vmx/svm, and vmx outside the flags line, must not count. */
    f->cpu_none = write_file(f->dir, "cpuinfo-none",
                             "processor\t: 0\nmodel name\t: vmx svm emulator\n"
                             "flags\t\t: fpu vme xvmx svmx vmx_ept de pse tsc\n"
                             "vmx flags\t: vnmi preemption_timer\n");
    f->kvm_ok = write_file(f->dir, "kvm", "");
    f->kvm_missing = fs_path_join(f->dir, "no-such-kvm");
    /* A directory cannot be opened read-write, even by root. */
    f->kvm_unopenable = fs_path_join(f->dir, "kvm-dir");
    assert_int_equal(fs_mkdir_p(f->kvm_unopenable, 0755, NULL), 0);
    *state = f;
    return 0;
}

static int
accel_teardown(void **state)
{
    struct accel_fixture *f = *state;

    fs_rm_rf(f->dir, NULL);
    free(f->dir);
    free(f->cpu_vmx);
    free(f->cpu_svm);
    free(f->cpu_none);
    free(f->kvm_ok);
    free(f->kvm_missing);
    free(f->kvm_unopenable);
    free(f);
    return 0;
}

static const char *
pick(const char *override, const char *cpuinfo, const char *kvm)
{
    const char *accel = "unset";
    assert_int_equal(qemu_accel_pick(override, cpuinfo, kvm, &accel, NULL), 0);
    return accel;
}

static void
test_accel_auto(void **state)
{
    struct accel_fixture *f = *state;

    assert_string_equal(pick(NULL, f->cpu_vmx, f->kvm_ok), "kvm");
    assert_string_equal(pick(NULL, f->cpu_svm, f->kvm_ok), "kvm");
    assert_string_equal(pick(NULL, f->cpu_none, f->kvm_ok), "tcg");
    assert_string_equal(pick(NULL, f->cpu_vmx, f->kvm_missing), "tcg");
    assert_string_equal(pick(NULL, f->cpu_svm, f->kvm_unopenable), "tcg");
    assert_string_equal(pick(NULL, f->kvm_missing, f->kvm_ok), "tcg");
}

static void
test_accel_override(void **state)
{
    struct accel_fixture *f = *state;
    struct tp_err err = { 0 };
    const char *accel = "unset";

    assert_string_equal(pick("kvm", f->cpu_none, f->kvm_missing), "kvm");
    assert_string_equal(pick("tcg", f->cpu_vmx, f->kvm_ok), "tcg");
    assert_int_equal(qemu_accel_pick("xen", f->cpu_vmx, f->kvm_ok, &accel, &err), -EINVAL);
    assert_string_equal(accel, "unset");
    assert_non_null(strstr(tp_err_msg(&err), "'xen'"));
    tp_err_clear(&err);
}

static void
test_tsc_khz(void **state)
{
    uint64_t a = qemu_tsc_khz(), b = qemu_tsc_khz();
    (void)state;

    assert_int_equal(a, b); /* measured once */
#if defined(__x86_64__)
    /* Any x86-64 TSC runs between 100 MHz and 10 GHz. */
    assert_true(a > 100000);
    assert_true(a < 10000000);
#endif
}

/* The version in `qemu-system-x86_64 --version` output, and which snapshots a QEMU loads. */
static void
test_qemu_version(void **state)
{
    char *v = NULL;
    (void)state;

    assert_int_equal(qemu_version_parse("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)\n"
                                        "Copyright (c) 2003-2022 Fabrice Bellard\n",
                                        &v),
                     0);
    assert_string_equal(v, "7.2.22");
    free(v);
    assert_int_equal(qemu_version_parse("QEMU emulator version 8.1.0\n", &v), 0);
    assert_string_equal(v, "8.1.0");
    free(v);
    v = NULL;
    assert_int_equal(qemu_version_parse("qemu: command not found", &v), -EPROTO);
    assert_int_equal(qemu_version_parse("QEMU emulator version 7\n", &v), -EPROTO);
    assert_int_equal(qemu_version_parse(NULL, &v), -EPROTO);
    assert_null(v);
    assert_true(qemu_version_compatible("7.2.1", "7.2.22"));
    assert_false(qemu_version_compatible("7.1.0", "7.2.22"));
    assert_false(qemu_version_compatible("8.2.0", "7.2.22"));
    assert_false(qemu_version_compatible("", "7.2.22"));
    /* The real binary of this machine answers. */
    struct tp_err err = { 0 };
    assert_int_equal(qemu_probe(&v, &err), 0);
    assert_non_null(v);
    free(v);
}

int
hv_test_accel(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accel_auto, accel_setup, accel_teardown),
        cmocka_unit_test_setup_teardown(test_accel_override, accel_setup, accel_teardown),
        cmocka_unit_test(test_tsc_khz),
        cmocka_unit_test(test_qemu_version),
    };
    return cmocka_run_group_tests_name("accel", tests, NULL, NULL);
}
