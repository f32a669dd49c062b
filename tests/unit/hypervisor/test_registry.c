/* The driver registry and the hv_* facade: capability gates, process control, no VM needed. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "hv_tests.h"
#include "hypervisor/hv.h"
#include "util/proc.h"
#include "util/xalloc.h"

static void
test_cap_names(void **state)
{
    (void)state;
    for (int c = 0; c < _HV_CAP_MAX; c++) {
        assert_non_null(hv_cap_to_string((enum hv_cap)c));
        assert_true(strlen(hv_cap_to_string((enum hv_cap)c)) > 0);
    }
    assert_string_equal(hv_cap_to_string(HV_CAP_PAUSE), "pause");
    assert_null(hv_cap_to_string(_HV_CAP_MAX));
    assert_null(hv_cap_to_string(_HV_CAP_INVALID));
}

static void
test_find(void **state)
{
    const struct hv_driver *const *all = hv_driver_all();
    const struct hv_driver *q = hv_driver_find("qemu");
    bool listed = false;
    (void)state;

    assert_non_null(q);
    assert_string_equal(q->name, "qemu");
    assert_null(hv_driver_find("bochs"));
    assert_null(hv_driver_find(""));
    assert_null(hv_driver_find(NULL));
    for (size_t i = 0; all[i]; i++)
        listed |= all[i] == q;
    assert_true(listed);
}

static void
test_caps_without_vm(void **state)
{
    const struct hv_driver *q = hv_driver_find("qemu");
    (void)state;

    assert_true(hv_has_cap(q, HV_CAP_PAUSE));
    assert_true(hv_has_cap(q, HV_CAP_GRACEFUL_VMM_SHUTDOWN));
    assert_true(hv_has_cap(q, HV_CAP_EXEC_AGENT));
    assert_true(hv_has_cap(q, HV_CAP_SNAPSHOT));
    assert_true(hv_has_cap(q, HV_CAP_RESTORE));
    assert_true(hv_has_cap(q, HV_CAP_SNAPSHOT_BASE_REUSE));
    assert_true(hv_has_cap(q, HV_CAP_RESUME_ON_LOAD));
    assert_true(hv_has_cap(q, HV_CAP_FORK));
    assert_false(hv_has_cap(q, _HV_CAP_MAX));
    assert_false(hv_has_cap(NULL, HV_CAP_PAUSE));
}

static int fake_pause_calls;

static int
fake_pause(struct hv_vm *vm, struct tp_err *err)
{
    (void)vm;
    (void)err;
    fake_pause_calls++;
    return 0;
}

static const struct hv_driver bare_driver = {
    .name = "bare", .pause = fake_pause, /* a slot without the capability must still be refused */
};

static const struct hv_driver pausing_driver = {
    .name = "pausing",
    .caps = { [HV_CAP_PAUSE] = true, [HV_CAP_GRACEFUL_VMM_SHUTDOWN] = true },
    .pause = fake_pause, /* shutdown claimed but no slot: refused too */
};

static void
test_facade_gates(void **state)
{
    struct hv_vm vm = { .drv = &bare_driver, .pidfd = -1 };
    struct tp_err err = { 0 };
    (void)state;

    fake_pause_calls = 0;
    assert_int_equal(hv_pause(&vm, &err), -EOPNOTSUPP);
    assert_string_equal(tp_err_msg(&err), "bare: 'pause' not supported");
    assert_int_equal(hv_resume(&vm, &err), -EOPNOTSUPP);
    assert_int_equal(hv_shutdown(&vm, 100, &err), -EOPNOTSUPP);
    assert_string_equal(tp_err_msg(&err), "bare: 'graceful_vmm_shutdown' not supported");
    assert_int_equal(hv_agent_connect(&vm, NULL, &err), -EOPNOTSUPP);
    assert_string_equal(tp_err_msg(&err), "bare: 'exec_agent' not supported");
    assert_int_equal(hv_query(&vm, NULL, &err), -EOPNOTSUPP);
    assert_int_equal(fake_pause_calls, 0);

    vm.drv = &pausing_driver;
    tp_err_clear(&err);
    assert_int_equal(hv_pause(&vm, &err), 0);
    assert_int_equal(fake_pause_calls, 1);
    assert_int_equal(hv_shutdown(&vm, 100, &err), -EOPNOTSUPP);
    tp_err_clear(&err);
}

/* A child that just waits to be killed, wrapped as an hv_vm. */
static struct hv_vm *
spawn_sleeper(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    struct hv_vm *vm = xnew(struct hv_vm, 1);
    vm->drv = &bare_driver;
    vm->pid = pid;
    vm->pidfd = proc_pidfd_open(pid);
    assert_true(vm->pidfd >= 0);
    return vm;
}

static void
test_kill_and_exited(void **state)
{
    struct tp_err err = { 0 };
    struct hv_vm *vm = spawn_sleeper();
    (void)state;

    assert_false(hv_exited(vm));
    assert_int_equal(hv_kill(vm, 5000, &err), 0);
    assert_true(hv_exited(vm));
    /* Reaped: no zombie child remains. */
    assert_int_equal(waitpid(vm->pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    /* Killing what is already gone is fine. */
    assert_int_equal(hv_kill(vm, 100, &err), 0);
    assert_null(hv_vm_release(vm));
    assert_null(hv_vm_release(NULL));

    /* Exit noticed without hv_kill: a signal from elsewhere. */
    vm = spawn_sleeper();
    assert_int_equal(kill(vm->pid, SIGKILL), 0);
    struct pollfd p = { .fd = vm->pidfd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_true(hv_exited(vm));
    hv_vm_release(vm);
    tp_err_clear(&err);
}

static unsigned probes;

static int
probe_2_0_1(char **ret, struct tp_err *err)
{
    (void)err;
    probes++;
    *ret = xstrdup("2.0.1");
    return 0;
}

static bool
same_major(const char *snap, const char *now)
{
    return snap[0] == now[0];
}

/* A driver reports its VMM's version once (cached); a snapshot records it and a VMM that cannot
 * load it is named with both versions. Socket names default when a driver gives none. */
static void
test_versions_and_sockets(void **state)
{
    static struct hv_driver strict = { .name = "strict", .probe = probe_2_0_1 };
    static struct hv_driver loose = { .name = "loose",
                                      .probe = probe_2_0_1,
                                      .version_compatible = same_major,
                                      .api_sock_name = "fc.sock" };
    static struct hv_driver mute = { .name = "mute" };
    struct tp_err err = { 0 };
    (void)state;

    assert_string_equal(hv_version(&strict, NULL), "2.0.1");
    assert_string_equal(hv_version(&strict, NULL), "2.0.1");
    assert_int_equal(probes, 1);
    assert_null(hv_version(&mute, NULL));

    assert_int_equal(hv_check_snapshot_version(&strict, "2.0.1", NULL), 0);
    assert_int_equal(hv_check_snapshot_version(&strict, "", NULL), 0); /* not recorded */
    assert_int_equal(hv_check_snapshot_version(&strict, "2.0.0", &err), -EPROTONOSUPPORT);
    assert_non_null(strstr(tp_err_msg(&err), "2.0.0"));
    assert_non_null(strstr(tp_err_msg(&err), "2.0.1"));
    tp_err_clear(&err);
    assert_int_equal(hv_check_snapshot_version(&loose, "2.9.9", NULL), 0);
    assert_int_equal(hv_check_snapshot_version(&loose, "1.0.0", NULL), -EPROTONOSUPPORT);
    assert_int_equal(hv_check_snapshot_version(&mute, "9.9.9", NULL), 0); /* nothing to compare */

    assert_string_equal(hv_api_sock_name(&loose), "fc.sock");
    assert_string_equal(hv_api_sock_name(&strict), "api.sock");
    assert_string_equal(hv_agent_sock_name(&strict), "agent.sock");
}

int
hv_test_registry(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_names),       cmocka_unit_test(test_find),
        cmocka_unit_test(test_caps_without_vm), cmocka_unit_test(test_facade_gates),
        cmocka_unit_test(test_kill_and_exited), cmocka_unit_test(test_versions_and_sockets),
    };
    return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
