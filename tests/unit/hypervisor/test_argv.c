/* QEMU command lines against golden files in tests/data/qemu (TORPOR_TEST_REGENERATE=1). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
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

static const struct hv_vm_spec basic_spec = {
    .id = "vm1",
    .dir = "/var/lib/torpor/instances/vm1",
    .memory_mib = 256,
    .vcpus = 1,
    .kernel = "/var/lib/torpor/kernels/vmlinuz-6.1.0-56-cloud-amd64",
    .initrd = "/var/lib/torpor/images/default/initrd.cpio",
    .cmdline = "quiet panic=-1",
    .root_disk = "/var/lib/torpor/instances/vm1/root.ext4",
    .api_sock = "/var/lib/torpor/instances/vm1/qmp.sock",
    .agent_sock = "/var/lib/torpor/instances/vm1/agent.sock",
    .console_log = "/var/lib/torpor/instances/vm1/logs/console.log",
    .vmm_log = "/var/lib/torpor/instances/vm1/logs/vmm.log",
};

static const struct qemu_argv_opts basic_opts = {
    .binary = "qemu-system-x86_64",
    .accel = "tcg",
    .tsc_khz = 2595966,
    .qmp_fd = 3,
    .agent_fd = 4,
    .mem_path = "/var/lib/torpor/instances/vm1/mem",
};

/* One argument per line: diffs of golden files stay readable. */
static char *
argv_join(char **argv)
{
    size_t n = 1;
    strv_foreach (a, argv)
        n += strlen(*a) + 1;
    char *out = xmalloc(n), *p = out;
    strv_foreach (a, argv)
        p += sprintf(p, "%s\n", *a);
    *p = '\0';
    return out;
}

static void
check_golden(const char *name, char **argv)
{
    _cleanup_free_ char *path = NULL, *want = NULL, *got = argv_join(argv);
    const char *data = getenv("TORPOR_TEST_DATA");
    const char *regen = getenv("TORPOR_TEST_REGENERATE");

    assert_non_null(data);
    path = xasprintf("%s/qemu/%s.argv", data, name);
    if (regen && strcmp(regen, "1") == 0)
        assert_int_equal(fs_write_atomic(path, got, strlen(got), 0644, NULL), 0);
    assert_int_equal(fs_read_file(path, 1 << 20, &want, NULL, NULL), 0);
    if (strcmp(want, got) != 0)
        fprintf(stderr, "argv for '%s' differs from %s:\n%s", name, path, got);
    assert_string_equal(want, got);
}

static char **
build(const struct hv_vm_spec *spec, const struct qemu_argv_opts *o)
{
    char **argv = NULL;
    struct tp_err err = { 0 };
    int r = qemu_argv_build(spec, o, &argv, &err);

    if (r < 0)
        fprintf(stderr, "build argv: %s\n", tp_err_msg(&err));
    assert_int_equal(r, 0);
    tp_err_clear(&err);
    return argv;
}

static bool
argv_has(char **argv, const char *opt, const char *value)
{
    for (char **a = argv; a && a[0] && a[1]; a++)
        if (strcmp(a[0], opt) == 0 && strcmp(a[1], value) == 0)
            return true;
    return false;
}

static void
test_argv_basic(void **state)
{
    char **argv = build(&basic_spec, &basic_opts);
    (void)state;

    check_golden("basic", argv);
    assert_true(
        argv_has(argv, "-append",
                 "quiet panic=-1 console=ttyS0 8250.nr_uarts=1 reboot=t tsc_early_khz=2595966"));
    assert_true(argv_has(argv, "-cpu", "qemu64"));
    strv_free(argv);
}

/* A panicking or rebooting guest must end QEMU (the kernel's reboot must be one QEMU sees),
 * and QEMU runs under its own seccomp filter. */
static void
test_argv_confined_and_no_reboot(void **state)
{
    char **argv = build(&basic_spec, &basic_opts);
    bool no_reboot = false;
    (void)state;

    strv_foreach (a, argv)
        no_reboot = no_reboot || strcmp(*a, "-no-reboot") == 0;
    assert_true(no_reboot);
    assert_true(
        argv_has(argv, "-sandbox",
                 "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"));
    assert_true(
        argv_has(argv, "-append",
                 "quiet panic=-1 console=ttyS0 8250.nr_uarts=1 reboot=t tsc_early_khz=2595966"));
    strv_free(argv);
}

static void
test_argv_minimal(void **state)
{
    struct hv_vm_spec spec = basic_spec;
    (void)state;

    spec.initrd = NULL;
    spec.root_disk = NULL;
    spec.cmdline = NULL;
    spec.vcpus = 2;
    spec.memory_mib = 128;
    char **argv = build(&spec, &basic_opts);
    check_golden("minimal", argv);
    assert_true(
        argv_has(argv, "-append", "console=ttyS0 8250.nr_uarts=1 reboot=t tsc_early_khz=2595966"));
    strv_foreach (a, argv) {
        assert_string_not_equal(*a, "-initrd");
        assert_string_not_equal(*a, "-drive");
    }
    strv_free(argv);
}

static size_t
count_opt(char **argv, const char *opt)
{
    size_t n = 0;
    strv_foreach (a, argv)
        n += strcmp(*a, opt) == 0;
    return n;
}

/* An image VM: the kernel's console on a second port with its own log; every other VM keeps
 * its single port (its snapshots' device set). */
static void
test_argv_kernel_log(void **state)
{
    struct hv_vm_spec spec = basic_spec;
    (void)state;

    spec.kernel_log = "/var/lib/torpor/instances/vm1/logs/kernel.log";
    char **argv = build(&spec, &basic_opts);
    check_golden("kernel-log", argv);
    assert_int_equal(count_opt(argv, "-serial"), 1);
    assert_true(argv_has(argv, "-device", "isa-serial,chardev=klog,index=1"));
    assert_true(
        argv_has(argv, "-chardev",
                 "file,id=klog,path=/var/lib/torpor/instances/vm1/logs/kernel.log,append=on"));
    assert_true(
        argv_has(argv, "-append",
                 "quiet panic=-1 console=ttyS1 8250.nr_uarts=2 reboot=t tsc_early_khz=2595966"));
    strv_free(argv);

    argv = build(&basic_spec, &basic_opts);
    assert_int_equal(count_opt(argv, "-serial"), 1);
    strv_free(argv);
}

static void
test_argv_incoming(void **state)
{
    struct qemu_argv_opts o = basic_opts;
    size_t n_basic = 0, n_in = 0;
    (void)state;

    o.incoming = true;
    char **basic = build(&basic_spec, &basic_opts);
    char **in = build(&basic_spec, &o);
    check_golden("incoming", in);
    /* Restore needs the very same machine: only the trailing -incoming defer may differ. */
    while (basic[n_basic])
        n_basic++;
    while (in[n_in])
        n_in++;
    assert_int_equal(n_in, n_basic + 2);
    for (size_t i = 0; i < n_basic; i++)
        assert_string_equal(basic[i], in[i]);
    assert_string_equal(in[n_basic], "-incoming");
    assert_string_equal(in[n_basic + 1], "defer");
    strv_free(basic);
    strv_free(in);
}

/* A NIC: the TAP fd as numbered in QEMU, the MAC on the device, after every other device. */
static void
test_argv_nic(void **state)
{
    struct hv_vm_spec spec = basic_spec;
    const struct hv_nic nic = { .tap_fd = 9, .tap_name = "tp0a580002", .mac = "02:74:0a:58:00:02" };
    struct qemu_argv_opts o = basic_opts;
    struct tp_err err = { 0 };
    char **argv = NULL;
    (void)state;

    spec.nic = &nic;
    o.net_fd = 5;
    argv = build(&spec, &o);
    assert_true(argv_has(argv, "-netdev", "tap,id=net0,fd=5"));
    assert_true(argv_has(argv, "-device", "virtio-net-device,netdev=net0,mac=02:74:0a:58:00:02"));
    char **basic = build(&basic_spec, &basic_opts);
    size_t n = 0, nb = 0;
    while (argv[n])
        n++;
    while (basic[nb])
        nb++;
    assert_int_equal(n, nb + 4);
    strv_free(basic);
    strv_free(argv);

    o.net_fd = -1;
    assert_int_equal(qemu_argv_build(&spec, &o, &argv, &err), -EINVAL);
    tp_err_clear(&err);
}

static void
test_argv_escapes_commas(void **state)
{
    struct hv_vm_spec spec = basic_spec;
    (void)state;

    struct qemu_argv_opts o = basic_opts;
    o.mem_path = "/data/a,b/mem";
    spec.root_disk = "/data/a,b/root.ext4";
    char **argv = build(&spec, &o);
    assert_true(argv_has(argv, "-object",
                         "memory-backend-file,id=mem,size=256M,mem-path=/data/a,,b/mem,share=on"));
    assert_true(argv_has(argv, "-drive",
                         "if=none,id=root,file=/data/a,,b/root.ext4,format=raw,cache=writeback,"
                         "discard=unmap"));
    strv_free(argv);
}

static void
test_argv_binary_and_kvm(void **state)
{
    struct qemu_argv_opts o = basic_opts;
    (void)state;

    o.binary = NULL;
    o.accel = "kvm";
    o.tsc_khz = 0;
    assert_int_equal(setenv(QEMU_BINARY_ENV, "/opt/qemu/bin/qemu-system-x86_64", 1), 0);
    char **argv = build(&basic_spec, &o);
    assert_int_equal(unsetenv(QEMU_BINARY_ENV), 0);
    assert_string_equal(argv[0], "/opt/qemu/bin/qemu-system-x86_64");
    assert_true(argv_has(argv, "-accel", "kvm"));
    assert_true(argv_has(argv, "-cpu", "host"));
    assert_true(argv_has(argv, "-append", "quiet panic=-1 console=ttyS0 8250.nr_uarts=1 reboot=t"));
    strv_free(argv);

    argv = build(&basic_spec, &o);
    assert_string_equal(argv[0], QEMU_BINARY_DEFAULT);
    strv_free(argv);
}

static void
test_argv_rejects(void **state)
{
    struct hv_vm_spec spec = basic_spec;
    struct qemu_argv_opts o = basic_opts;
    struct tp_err err = { 0 };
    char **argv = NULL;
    (void)state;

    spec.kernel = NULL;
    assert_int_equal(qemu_argv_build(&spec, &o, &argv, &err), -EINVAL);
    spec = basic_spec;
    spec.memory_mib = 0;
    assert_int_equal(qemu_argv_build(&spec, &o, &argv, &err), -EINVAL);
    o.accel = "hvf";
    assert_int_equal(qemu_argv_build(&basic_spec, &o, &argv, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "'hvf'"));
    assert_null(argv);
    tp_err_clear(&err);
}

int
hv_test_argv(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv_basic),
        cmocka_unit_test(test_argv_confined_and_no_reboot),
        cmocka_unit_test(test_argv_minimal),
        cmocka_unit_test(test_argv_kernel_log),
        cmocka_unit_test(test_argv_incoming),
        cmocka_unit_test(test_argv_nic),
        cmocka_unit_test(test_argv_escapes_commas),
        cmocka_unit_test(test_argv_binary_and_kvm),
        cmocka_unit_test(test_argv_rejects),
    };
    return cmocka_run_group_tests_name("argv", tests, NULL, NULL);
}
