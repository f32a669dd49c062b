/* The Firecracker driver against the strict double (tests/fc-double): boot, the agent over
 * vsock, pause, Full and Diff snapshots, restore with resume on load, re-attach, a failed load
 * that leaves no process, the version probe, a NIC at boot and its TAP overridden on load.
 * Every request the driver sends is validated by
 * the double against the official OpenAPI file. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "guest/agent_client.h"
#include "hypervisor/firecracker/fc_driver.h"
#include "hypervisor/firecracker/fc_http.h"
#include "hypervisor/hv.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/xalloc.h"

static char dir[] = "/tmp/tp-fcdrv-XXXXXX";

struct fixture {
    char *kernel, *disk, *api, *vsock, *console, *vmm_log, *snap;
    pid_t recorded;
    uint64_t recorded_start;
    struct hv_vm_spec spec;
};

static int
record(void *ctx, pid_t pid, uint64_t start_time, struct tp_err *err)
{
    struct fixture *f = ctx;
    (void)err;
    f->recorded = pid;
    f->recorded_start = start_time;
    return 0;
}

static int
setup(void **state)
{
    struct fixture *f = xnew(struct fixture, 1);
    static const char elf[64] = "\177ELF";

    f->kernel = fs_path_join(dir, "vmlinux");
    f->disk = fs_path_join(dir, "root.ext4");
    f->api = fs_path_join(dir, "fc.sock");
    f->vsock = fs_path_join(dir, "vsock.sock");
    f->console = fs_path_join(dir, "console.log");
    f->vmm_log = fs_path_join(dir, "vmm.log");
    f->snap = fs_path_join(dir, "snap");
    if (fs_write_atomic(f->kernel, elf, sizeof(elf), 0600, NULL) < 0 ||
        fs_write_atomic(f->disk, "disk", 4, 0600, NULL) < 0 || fs_mkdir_p(f->snap, 0700, NULL) < 0)
        return -1;
    f->spec = (struct hv_vm_spec){
        .id = "0123456789abcdef",
        .dir = dir,
        .memory_mib = 64,
        .vcpus = 1,
        .kernel = f->kernel,
        .cmdline = "console=ttyS0 quiet",
        .root_disk = f->disk,
        .api_sock = f->api,
        .agent_sock = f->vsock,
        .console_log = f->console,
        .vmm_log = f->vmm_log,
        .vmm_spawned = record,
        .vmm_spawned_ctx = f,
    };
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    free(f->kernel);
    free(f->disk);
    free(f->api);
    free(f->vsock);
    free(f->console);
    free(f->vmm_log);
    free(f->snap);
    free(f);
    return 0;
}

static void
expect_state(struct hv_vm *vm, enum hv_run_state want)
{
    enum hv_run_state rs = HV_RUN_OTHER;
    struct tp_err err = { 0 };
    if (hv_query(vm, &rs, &err) < 0)
        fail_msg("query: %s", tp_err_msg(&err));
    assert_int_equal(rs, want);
}

static void
expect_ok(int r, struct tp_err *err, const char *what)
{
    if (r < 0)
        fail_msg("%s: %s", what, tp_err_msg(err));
}

/* The guest agent answers through Firecracker's vsock socket (CONNECT <port>). */
static void
expect_agent(struct hv_vm *vm, const struct hv_vm_spec *spec)
{
    _cleanup_(agent_conn_freep) struct agent_conn *c = NULL;
    struct agent_hello hello;
    struct tp_err err = { 0 };
    int fd = hv_agent_connect(vm, spec, &err);
    expect_ok(fd, &err, "agent connect");
    expect_ok(agent_conn_open(fd, &c, &err), &err, "agent open");
    expect_ok(agent_conn_hello(c, 10000, &hello, &err), &err, "agent hello");
}

static void
test_lifecycle(void **state)
{
    struct fixture *f = *state;
    struct hv_vm *vm = NULL;
    struct tp_err err = { 0 };
    bool resumed = false;
    struct stat st;
    _cleanup_free_ char *memory = fs_path_join(f->snap, HV_SNAP_MEMORY);
    _cleanup_free_ char *statef = fs_path_join(f->snap, HV_SNAP_STATE);

    /* Boot: the pid was the driver's to report before the process ran. */
    expect_ok(hv_launch(&fc_driver, &f->spec, &vm, &err), &err, "launch");
    assert_int_equal(f->recorded, vm->pid);
    assert_int_equal(f->recorded_start, vm->start_time);
    expect_state(vm, HV_RUN_RUNNING);
    expect_agent(vm, &f->spec);

    /* Full snapshot while paused: a memory file of guest size, the state beside it. */
    expect_ok(hv_pause(vm, &err), &err, "pause");
    expect_state(vm, HV_RUN_PAUSED);
    expect_ok(hv_snapshot(vm, &f->spec, f->snap, false, &err), &err, "snapshot");
    assert_int_equal(stat(memory, &st), 0);
    assert_int_equal(st.st_size, 64 << 20);
    assert_true(fs_exists(statef));
    hv_kill(vm, 5000, NULL);
    vm = hv_vm_release(vm);

    /* Restore into a fresh process, resumed by the load itself. */
    const struct hv_restore_opts ro = { .snap_dir = f->snap, .resume_on_load = true };
    expect_ok(hv_restore(&fc_driver, &f->spec, &ro, &vm, &resumed, &err), &err, "restore");
    assert_true(resumed);
    assert_int_equal(f->recorded, vm->pid);
    expect_state(vm, HV_RUN_RUNNING);
    expect_agent(vm, &f->spec);

    /* A Diff onto the same memory file (the retained base), then re-attach as a restarted
     * daemon would. */
    expect_ok(hv_pause(vm, &err), &err, "pause");
    expect_ok(hv_snapshot(vm, &f->spec, f->snap, true, &err), &err, "diff");
    expect_ok(hv_resume(vm, &err), &err, "resume");
    pid_t pid = vm->pid;
    uint64_t start = vm->start_time;
    vm = hv_vm_release(vm); /* the process lives on */
    expect_ok(hv_attach(&fc_driver, &f->spec, pid, start, &vm, &err), &err, "attach");
    expect_state(vm, HV_RUN_RUNNING);
    expect_ok(hv_finish_load(vm, 1000, &err), &err, "finish_load");
    hv_kill(vm, 5000, NULL);
    vm = hv_vm_release(vm);
}

/* The network interfaces the VMM has now (GET /vm/config, over a connection of our own). */
static json_t *
vm_net(struct hv_vm *vm, const struct hv_vm_spec *spec)
{
    _cleanup_(fc_http_freep) struct fc_http *api = NULL;
    struct tp_err err = { 0 };
    json_t *cfg = NULL;
    expect_ok(fc_http_open(spec->api_sock, 5000, vm->pidfd, &api, &err), &err, "API connect");
    expect_ok(fc_http_call(api, "GET", "/vm/config", NULL, 5000, &cfg, &err), &err, "vm/config");
    json_t *net = json_incref(json_object_get(cfg, "network-interfaces"));
    json_decref(cfg);
    assert_non_null(net);
    return net;
}

static void
expect_nic(json_t *net, const char *tap, const char *mac)
{
    assert_int_equal(json_array_size(net), 1);
    json_t *n = json_array_get(net, 0);
    assert_string_equal(json_string_value(json_object_get(n, "iface_id")), "eth0");
    assert_string_equal(json_string_value(json_object_get(n, "host_dev_name")), tap);
    assert_string_equal(json_string_value(json_object_get(n, "guest_mac")), mac);
    json_decref(net);
}

/* The NIC: PUT /network-interfaces/eth0 before InstanceStart (the double refuses it after),
 * then a fork child's load names its own TAP in network_overrides; the MAC stays the one in
 * the device state (the guest agent applies the child's). No TAP is opened: the double only
 * records the name, so this checks the requests, not a guest's network. */
static void
test_network(void **state)
{
    struct fixture *f = *state;
    struct hv_vm *vm = NULL;
    struct tp_err err = { 0 };
    bool resumed = false;
    const struct hv_nic parent = { .tap_fd = -EBADF,
                                   .tap_name = "tp0a580002",
                                   .mac = "02:74:0a:58:00:02" };
    const struct hv_nic child = { .tap_fd = -EBADF,
                                  .tap_name = "tp0a580003",
                                  .mac = "02:74:0a:58:00:03" };

    assert_true(fc_driver.caps[HV_CAP_NET]);
    assert_true(fc_driver.net_tap_by_name);
    f->spec.nic = &parent;
    expect_ok(hv_launch(&fc_driver, &f->spec, &vm, &err), &err, "launch");
    expect_nic(vm_net(vm, &f->spec), parent.tap_name, parent.mac);
    expect_ok(hv_pause(vm, &err), &err, "pause");
    expect_ok(hv_snapshot(vm, &f->spec, f->snap, false, &err), &err, "snapshot");
    hv_kill(vm, 5000, NULL);
    vm = hv_vm_release(vm);

    f->spec.nic = &child;
    const struct hv_restore_opts ro = { .snap_dir = f->snap, .resume_on_load = true };
    expect_ok(hv_restore(&fc_driver, &f->spec, &ro, &vm, &resumed, &err), &err, "restore");
    expect_state(vm, HV_RUN_RUNNING);
    expect_nic(vm_net(vm, &f->spec), child.tap_name, parent.mac);
    hv_kill(vm, 5000, NULL);
    vm = hv_vm_release(vm);
    f->spec.nic = NULL;
}

/* A load Firecracker refuses leaves no process behind, and says why. */
static void
test_failed_load(void **state)
{
    struct fixture *f = *state;
    _cleanup_free_ char *bad = fs_path_join(dir, "bad");
    _cleanup_free_ char *statef = fs_path_join(bad, HV_SNAP_STATE);
    _cleanup_free_ char *memory = fs_path_join(bad, HV_SNAP_MEMORY);
    struct hv_vm *vm = NULL;
    struct tp_err err = { 0 };
    bool resumed = false;

    assert_int_equal(fs_mkdir_p(bad, 0700, NULL), 0);
    assert_int_equal(fs_write_atomic(statef, "not a state", 11, 0600, NULL), 0);
    assert_int_equal(fs_write_atomic(memory, "x", 1, 0600, NULL), 0);
    const struct hv_restore_opts ro = { .snap_dir = bad, .resume_on_load = true };
    f->recorded = 0;
    assert_true(hv_restore(&fc_driver, &f->spec, &ro, &vm, &resumed, &err) < 0);
    assert_non_null(strstr(tp_err_msg(&err), "/snapshot/load"));
    tp_err_clear(&err);
    assert_null(vm);
    assert_true(f->recorded > 0);
    assert_false(proc_is_alive(f->recorded, f->recorded_start));
}

static void
test_version(void **state)
{
    char *v = NULL;
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fc_version_parse("Firecracker v1.16.1\n\nSupported snapshot versions", &v), 0);
    assert_string_equal(v, "1.16.1");
    free(v);
    assert_int_equal(fc_version_parse("firecracker: not found", &v), -EPROTO);
    const char *probed = hv_version(&fc_driver, &err);
    if (!probed)
        fail_msg("probe: %s", tp_err_msg(&err));
    assert_string_equal(probed, "1.16.1");
    assert_int_equal(hv_check_snapshot_version(&fc_driver, "1.16.0", NULL), 0);
    assert_int_equal(hv_check_snapshot_version(&fc_driver, "1.15.1", NULL), -EPROTONOSUPPORT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_network, setup, teardown),
        cmocka_unit_test(test_version),
    };
    if (!getenv(FC_BINARY_ENV) || !getenv("FC_DOUBLE_SPEC") ||
        access(getenv("FC_DOUBLE_SPEC"), R_OK) < 0) {
        fprintf(stderr, "no Firecracker double or spec file: skipped\n");
        return 77;
    }
    if (!mkdtemp(dir))
        return 1;
    int r = cmocka_run_group_tests_name("fc_driver", tests, NULL, NULL);
    fs_rm_rf(dir, NULL);
    return r;
}
