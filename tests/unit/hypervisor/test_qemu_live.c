/* The QEMU driver against real QEMU: launch, pause/resume, re-attach, shutdown, startup failure,
 * external kill. Skips (exit 77) unless TORPOR_TEST_KERNEL names a guest kernel. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "hypervisor/hv.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/timeutil.h"
#include "util/xalloc.h"

#define BOOT_MARKER  "TORPOR_LIVE_INIT"
#define BOOT_WAIT_MS 90000

static const char *kernel;
static char *tmpdir;
static char *initrd;
/* Every VMM launched, so that a failed assertion (which skips a test's own cleanup) leaves no
 * QEMU running: the suite teardown kills those still alive. */
static struct {
    pid_t pid;
    uint64_t start;
} launched[16];
static size_t n_launched;

struct inst {
    char *dir, *mem, *qmp, *agent, *console, *vmm;
    struct hv_vm_spec spec;
};

static void
inst_init(struct inst *in, const char *name)
{
    in->dir = fs_path_join(tmpdir, name);
    assert_int_equal(fs_mkdir_p(in->dir, 0755, NULL), 0);
    in->mem = fs_path_join(in->dir, "mem");
    in->qmp = fs_path_join(in->dir, "qmp.sock");
    in->agent = fs_path_join(in->dir, "agent.sock");
    in->console = fs_path_join(in->dir, "console.log");
    in->vmm = fs_path_join(in->dir, "vmm.log");
    in->spec = (struct hv_vm_spec){
        .id = name,
        .dir = in->dir,
        .memory_mib = 128,
        .vcpus = 1,
        .kernel = kernel,
        .initrd = initrd,
        .cmdline = "console=ttyS0 panic=-1 init_on_alloc=0 cryptomgr.notests",
        .api_sock = in->qmp,
        .agent_sock = in->agent,
        .console_log = in->console,
        .vmm_log = in->vmm,
    };
}

static void
inst_fini(struct inst *in)
{
    free(in->dir);
    free(in->mem);
    free(in->qmp);
    free(in->agent);
    free(in->console);
    free(in->vmm);
}

/* Busybox sleeping as PID 1: the guest only has to stay up. */
static int
build_initrd(void)
{
    _cleanup_free_ char *root = fs_path_join(tmpdir, "initrd-root");
    _cleanup_free_ char *bin = fs_path_join(root, "bin");
    _cleanup_free_ char *bb = fs_path_join(bin, "busybox");
    _cleanup_free_ char *init = fs_path_join(root, "init");
    _cleanup_free_ char *cmd = NULL;
    const char *script = "#!/bin/busybox sh\n"
                         "echo " BOOT_MARKER "\n"
                         "exec /bin/busybox sleep 100000\n";

    initrd = fs_path_join(tmpdir, "initrd.cpio");
    if (fs_mkdir_p(bin, 0755, NULL) < 0 || fs_clone_file("/bin/busybox", bb, 0755, NULL) < 0 ||
        fs_write_atomic(init, script, strlen(script), 0755, NULL) < 0)
        return -1;
    cmd = xasprintf("cd '%s' && find . | cpio -o -H newc --quiet > '%s'", root, initrd);
    return system(cmd) == 0 ? 0 : -1;
}

static int
suite_setup(void **state)
{
    char tmpl[] = "/tmp/tpq-XXXXXX";
    (void)state;

    if (!mkdtemp(tmpl))
        return -1;
    tmpdir = xstrdup(tmpl);
    return build_initrd();
}

static int
suite_teardown(void **state)
{
    (void)state;
    for (size_t k = 0; k < n_launched; k++)
        if (proc_is_alive(launched[k].pid, launched[k].start))
            kill(launched[k].pid, SIGKILL);
    fs_rm_rf(tmpdir, NULL);
    free(tmpdir);
    free(initrd);
    return 0;
}

/* Wait (inotify, bounded) until the console log contains marker. */
static bool
console_wait(const char *path, const char *marker, int timeout_ms)
{
    _cleanup_close_ int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    char evbuf[4096];

    assert_true(ino >= 0);
    assert_true(inotify_add_watch(ino, path, IN_MODIFY) >= 0);
    for (;;) {
        _cleanup_free_ char *text = NULL;
        if (fs_read_file(path, 16u << 20, &text, NULL, NULL) == 0 && strstr(text, marker))
            return true;
        uint64_t now = now_ms();
        if (now >= deadline)
            return false;
        struct pollfd p = { .fd = ino, .events = POLLIN };
        if (poll(&p, 1, (int)(deadline - now)) > 0)
            while (read(ino, evbuf, sizeof(evbuf)) > 0)
                ;
    }
}

static void
expect_state(struct hv_vm *vm, enum hv_run_state want)
{
    struct tp_err err = { 0 };
    enum hv_run_state st = HV_RUN_OTHER;
    int r = hv_query(vm, &st, &err);
    if (r < 0)
        fprintf(stderr, "query: %s\n", tp_err_msg(&err));
    assert_int_equal(r, 0);
    assert_int_equal(st, want);
}

static struct hv_vm *
launch(struct inst *in)
{
    struct tp_err err = { 0 };
    struct hv_vm *vm = NULL;
    int r = hv_launch(hv_driver_find("qemu"), &in->spec, &vm, &err);
    if (r < 0)
        fprintf(stderr, "launch: %s\n", tp_err_msg(&err));
    assert_int_equal(r, 0);
    assert_non_null(vm);
    if (n_launched < sizeof(launched) / sizeof(launched[0]))
        launched[n_launched++] = (typeof(launched[0])){ vm->pid, vm->start_time };
    tp_err_clear(&err);
    return vm;
}

/* True when some process still has s on its command line. */
static bool
process_mentions(const char *s)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    bool found = false;

    assert_non_null(d);
    while (!found && (de = readdir(d))) {
        char path[300];
        _cleanup_free_ char *cmdline = NULL;
        size_t len = 0;

        if (de->d_name[0] < '0' || de->d_name[0] > '9' || atoi(de->d_name) == (int)getpid())
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        if (fs_read_file(path, 1u << 20, &cmdline, &len, NULL) < 0)
            continue;
        found = memmem(cmdline, len, s, strlen(s)) != NULL;
    }
    closedir(d);
    return found;
}

static void
test_lifecycle(void **state)
{
    const struct hv_driver *q = hv_driver_find("qemu");
    struct tp_err err = { 0 };
    struct inst in;
    struct stat st;
    (void)state;

    inst_init(&in, "a");
    struct hv_vm *vm = launch(&in);
    pid_t pid = vm->pid;
    uint64_t start = vm->start_time;

    assert_int_equal(stat(in.mem, &st), 0);
    assert_int_equal(st.st_size, 128ll << 20);
    assert_true(st.st_blocks * 512 >= st.st_size); /* allocated, not sparse */
    expect_state(vm, HV_RUN_RUNNING);
    if (!console_wait(in.console, BOOT_MARKER, BOOT_WAIT_MS)) {
        _cleanup_free_ char *con = NULL;
        fs_read_file(in.console, 1 << 20, &con, NULL, NULL);
        fprintf(stderr, "console:\n%s\n", con ? con : "(none)");
        fail_msg("guest init did not run");
    }

    assert_int_equal(hv_pause(vm, &err), 0);
    expect_state(vm, HV_RUN_PAUSED);
    /* The QMP introspection the posted-buffer query uses works on this QEMU; what it finds
     * lies in guest RAM. (This test's guest may have no virtio-console driver loaded, so no
     * buffers posted; integ-standby sees them in a guest running the agent.) */
    struct hv_mem_range *bufs = NULL;
    size_t nbufs = 0;
    int pr = hv_posted_buffers(vm, &in.spec, &bufs, &nbufs, &err);
    if (pr < 0)
        fprintf(stderr, "posted_buffers: %s\n", tp_err_msg(&err));
    assert_int_equal(pr, 0);
    for (size_t k = 0; k < nbufs; k++) {
        assert_true(bufs[k].len > 0);
        assert_true(bufs[k].off + bufs[k].len <= (128ull << 20));
    }
    free(bufs);
    assert_int_equal(hv_resume(vm, &err), 0);
    expect_state(vm, HV_RUN_RUNNING);

    /* What a daemon restart does: drop every handle, the VMM keeps running, adopt it again. */
    vm = hv_vm_release(vm);
    assert_true(proc_is_alive(pid, start));
    assert_int_equal(hv_attach(q, &in.spec, pid, start + 1, &vm, &err), -ESRCH);
    assert_null(vm);
    int r = hv_attach(q, &in.spec, pid, start, &vm, &err);
    if (r < 0)
        fprintf(stderr, "attach: %s\n", tp_err_msg(&err));
    assert_int_equal(r, 0);
    expect_state(vm, HV_RUN_RUNNING);

    int agent = hv_agent_connect(vm, &in.spec, &err);
    assert_true(agent >= 0);
    close(agent);

    uint64_t t0 = now_ms();
    r = hv_shutdown(vm, 5000, &err);
    if (r < 0)
        fprintf(stderr, "shutdown: %s\n", tp_err_msg(&err));
    assert_int_equal(r, 0);
    assert_true(now_ms() - t0 < 5000);
    assert_false(proc_is_alive(pid, start));
    assert_true(hv_exited(vm));
    hv_vm_release(vm);
    tp_err_clear(&err);
    inst_fini(&in);
}

static void
test_bad_kernel(void **state)
{
    struct tp_err err = { 0 };
    struct hv_vm *vm = NULL;
    struct inst in;
    (void)state;

    inst_init(&in, "b");
    _cleanup_free_ char *missing = fs_path_join(in.dir, "no-such-vmlinuz");
    in.spec.kernel = missing;
    assert_true(hv_launch(hv_driver_find("qemu"), &in.spec, &vm, &err) < 0);
    assert_null(vm);
    fprintf(stderr, "expected failure: %s\n", tp_err_msg(&err));
    /* QEMU's own complaint, from vmm.log, is in the message. */
    assert_non_null(strstr(tp_err_msg(&err), "kernel file"));
    assert_non_null(strstr(tp_err_msg(&err), missing));
    /* Nothing left: no process using this instance, no unreaped child, no sockets. */
    assert_false(process_mentions(in.dir));
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_false(fs_exists(in.qmp));
    tp_err_clear(&err);
    inst_fini(&in);
}

static void
test_external_kill(void **state)
{
    struct tp_err err = { 0 };
    struct inst in;
    (void)state;

    inst_init(&in, "c");
    struct hv_vm *vm = launch(&in);
    assert_false(hv_exited(vm));
    assert_int_equal(kill(vm->pid, SIGKILL), 0);
    struct pollfd p = { .fd = vm->pidfd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_true(hv_exited(vm));
    assert_int_equal(hv_kill(vm, 1000, &err), 0);
    hv_vm_release(vm);
    assert_false(process_mentions(in.dir));
    tp_err_clear(&err);
    inst_fini(&in);
}

int
main(void)
{
    kernel = getenv("TORPOR_TEST_KERNEL");
    if (!kernel || !*kernel) {
        fprintf(stderr, "TORPOR_TEST_KERNEL is not set: skipping\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_bad_kernel),
        cmocka_unit_test(test_external_kill),
    };
    return cmocka_run_group_tests_name("qemu-live", tests, suite_setup, suite_teardown);
}
