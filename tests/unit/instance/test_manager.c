/* The lifecycle manager against fake hypervisors: it decides from capabilities, never names,
 * and leaves guest memory to the driver (run once per fake memory model: TORPOR_FAKE_MODEL). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "fake_driver.h"
#include "hypervisor/driver.h"
#include "instance/console.h"
#include "instance/manager.h"
#include "store/paths.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/xalloc.h"

#define SRC_DIR_ENV "TORPOR_SRC_DIR"    /* src/instance of the tree under test, set by meson */
#define MODEL_ENV   "TORPOR_FAKE_MODEL" /* "qemu" (default) or "fc": the fakes' memory model */
#define MEMORY_MIB  64

/* What every fake that can stand by has. */
#define CAPS_BASE (FAKE_CAP(HV_CAP_PAUSE) | FAKE_CAP(HV_CAP_SNAPSHOT) | FAKE_CAP(HV_CAP_RESTORE))
#define CAP_GRACE FAKE_CAP(HV_CAP_GRACEFUL_VMM_SHUTDOWN)
#define CAP_REUSE FAKE_CAP(HV_CAP_SNAPSHOT_BASE_REUSE)
#define CAP_ROL   FAKE_CAP(HV_CAP_RESUME_ON_LOAD)

/* Drivers the tests use, registered once. Names say nothing the manager could rely on. */
static struct hv_driver drv_nograce, drv_grace, drv_reuse, drv_rol, drv_nosnap, drv_fork;

/* Pairs with equal capabilities under different names, one pair per mask. */
static const unsigned pair_masks[] = {
    CAPS_BASE,
    CAPS_BASE | CAP_GRACE,
    CAPS_BASE | CAP_REUSE | CAP_ROL,
    CAPS_BASE | CAP_GRACE | CAP_REUSE | CAP_ROL,
};
static struct hv_driver drv_pair[ELEMENTSOF(pair_masks)][2];
static char pair_names[ELEMENTSOF(pair_masks)][2][32];

/* Files shared by the whole group. */
static char group_dir[] = "/tmp/torpor-test-manager-XXXXXX";
static char *kernel_path, *initrd_path, *rootfs_path;

struct mstate {
    char *data_dir;
    char *cache_dir;
    struct inst_manager *m;
};

/* ------------------------------------------------------------------ helpers */

/* mkfs.ext4 -q -F IMG 8M, waiting for its exit status. */
static int
make_ext4(const char *img)
{
    static const char *const tools[] = { "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4" };
    const char *tool = "mkfs.ext4"; /* else PATH */
    for (size_t k = 0; k < ELEMENTSOF(tools); k++)
        if (access(tools[k], X_OK) == 0) {
            tool = tools[k];
            break;
        }
    char *const argv[] = {
        (char *)tool, (char *)"-q", (char *)"-F", (char *)img, (char *)"8M", NULL
    };
    const struct proc_spawn_opts so = {
        .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = 2
    };
    struct tp_err err = { 0 };
    pid_t pid;
    int status;

    if (proc_spawn(&so, &pid, &err) < 0) {
        fprintf(stderr, "%s\n", tp_err_msg(&err));
        tp_err_clear(&err);
        return -1;
    }
    /* mkfs of 8 MiB ends on its own; there is no event to bound it by. */
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static struct inst_record *
run_on(struct mstate *s, const struct hv_driver *drv, const char *name)
{
    const struct inst_create_req req = {
        .name = name,
        .memory_mib = MEMORY_MIB,
        .hypervisor = drv->name,
        .kernel = kernel_path,
        .initrd = initrd_path,
        .rootfs = rootfs_path,
    };
    struct inst_record *rec = NULL;
    struct tp_err err = { 0 };
    int r = inst_run(s->m, &req, &rec, &err);
    if (r < 0)
        fail_msg("run on %s: %s", drv->name, tp_err_msg(&err));
    assert_non_null(rec);
    assert_int_equal(rec->state, INST_RUNNING);
    assert_string_equal(rec->cfg.hypervisor, drv->name);
    assert_true(rec->vmm_pid > 0);
    return rec;
}

static struct inst_record *
get(struct mstate *s, const char *ref)
{
    struct inst_record *rec = NULL;
    assert_int_equal(inst_get(s->m, ref, &rec, NULL), 0);
    return rec;
}

static int
stop(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    return inst_stop(m, ref, false, ret, err);
}

static int
stop_force(struct inst_manager *m, const char *ref, struct inst_record **ret, struct tp_err *err)
{
    return inst_stop(m, ref, true, ret, err);
}

/* Call op(m, ref) and expect success: prints the manager's message otherwise. */
typedef int verb_fn(struct inst_manager *m, const char *ref, struct inst_record **ret,
                    struct tp_err *err);

static void
expect_ok(struct mstate *s, verb_fn *fn, const char *what, const char *ref, enum inst_state want)
{
    struct inst_record *rec = NULL;
    struct tp_err err = { 0 };
    if (fn(s->m, ref, &rec, &err) < 0)
        fail_msg("%s '%s': %s", what, ref, tp_err_msg(&err));
    assert_int_equal(rec->state, want);
    inst_record_free(rec);
}

static struct fake_calls
calls_of(const char *id)
{
    struct fake_calls c;
    assert_int_equal(fake_driver_calls(id, &c), 0);
    return c;
}

static bool
snap_dir_exists(struct mstate *s, const char *id, bool base)
{
    struct inst_paths p;
    inst_paths_init(&p, s->data_dir, id);
    bool e = fs_exists(base ? p.snap_base : p.snap_latest);
    inst_paths_clear(&p);
    return e;
}

/* The phase names of a record's last operation, space-separated; caller frees. */
static char *
phases_of(const struct inst_record *rec)
{
    json_t *o, *phases, *ph;
    size_t k;
    char *out = xstrdup("");

    assert_non_null(rec->last_op);
    o = json_loads(rec->last_op, 0, NULL);
    assert_non_null(o);
    phases = json_object_get(o, "phases");
    assert_true(json_is_array(phases));
    json_array_foreach(phases, k, ph)
    {
        const char *name = json_string_value(json_object_get(ph, "name"));
        assert_non_null(name);
        char *t = xasprintf("%s%s%s", out, k ? " " : "", name);
        free(out);
        out = t;
    }
    json_decref(o);
    return out;
}

static bool
has_phase(const struct inst_record *rec, const char *phase)
{
    _cleanup_free_ char *all = phases_of(rec);
    _cleanup_free_ char *padded = xasprintf(" %s ", all);
    _cleanup_free_ char *want = xasprintf(" %s ", phase);
    return strstr(padded, want) != NULL;
}

/* The process was ours and is gone: not alive, and reaped (no zombie left behind). */
static void
assert_process_gone(pid_t pid, uint64_t start_time)
{
    assert_false(proc_is_alive(pid, start_time));
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

/* ------------------------------------------------------------------ fixtures */

/* The fakes' memory model is Firecracker's. */
static bool
fc_model(void)
{
    return fake_driver_model() == FAKE_MODEL_FC;
}

static int
group_setup(void **state)
{
    (void)state;
    const char *model = getenv(MODEL_ENV);
    if (model && strcmp(model, "fc") == 0)
        fake_driver_set_model(FAKE_MODEL_FC);
    else if (model && strcmp(model, "qemu") != 0)
        return -1;
    /* The deep trace forces an explicit resume: the capability alone must decide here. */
    unsetenv("TORPOR_RESTORE_DEEP_TRACE");
    unsetenv("TORPOR_FAILPOINTS");
    if (!mkdtemp(group_dir))
        return -1;
    kernel_path = fs_path_join(group_dir, "vmlinuz");
    initrd_path = fs_path_join(group_dir, "initrd.cpio");
    rootfs_path = fs_path_join(group_dir, "rootfs.ext4");
    if (fs_write_atomic(kernel_path, "kernel", 6, 0600, NULL) < 0 ||
        fs_write_atomic(initrd_path, "initrd", 6, 0600, NULL) < 0 || make_ext4(rootfs_path) < 0)
        return -1;

    fake_driver_init(&drv_nograce, "fake-nograce", CAPS_BASE);
    fake_driver_init(&drv_grace, "fake-grace", CAPS_BASE | CAP_GRACE);
    fake_driver_init(&drv_reuse, "fake-reuse", CAPS_BASE | CAP_REUSE);
    fake_driver_init(&drv_rol, "fake-rol", CAPS_BASE | CAP_ROL);
    fake_driver_init(&drv_nosnap, "fake-nosnap", FAKE_CAP(HV_CAP_PAUSE));
    fake_driver_init(&drv_fork, "fake-fork",
                     CAPS_BASE | CAP_GRACE | CAP_REUSE | CAP_ROL | FAKE_CAP(HV_CAP_FORK));
    const struct hv_driver *all[] = { &drv_nograce, &drv_grace,  &drv_reuse,
                                      &drv_rol,     &drv_nosnap, &drv_fork };
    for (size_t k = 0; k < ELEMENTSOF(all); k++)
        if (hv_registry_add(all[k]) < 0)
            return -1;
    for (size_t k = 0; k < ELEMENTSOF(pair_masks); k++)
        for (int j = 0; j < 2; j++) {
            snprintf(pair_names[k][j], sizeof(pair_names[k][j]), "%s-%zu", j ? "beta-vmm" : "alpha",
                     k);
            fake_driver_init(&drv_pair[k][j], pair_names[k][j], pair_masks[k]);
            if (hv_registry_add(&drv_pair[k][j]) < 0)
                return -1;
        }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    fs_rm_rf(group_dir, NULL);
    free(kernel_path);
    free(initrd_path);
    free(rootfs_path);
    return 0;
}

static int
open_manager(struct mstate *s)
{
    struct tp_err err = { 0 };
    _cleanup_free_ char *agent = fs_path_join(group_dir, "agent");
    const struct inst_manager_opts o = {
        .data_dir = s->data_dir,
        .cache_dir = s->cache_dir,
        .agent_path = agent, /* never used: no fake has an agent channel */
    };
    if (inst_manager_open(&o, &s->m, &err) < 0) {
        fprintf(stderr, "open manager: %s\n", tp_err_msg(&err));
        tp_err_clear(&err);
        return -1;
    }
    return 0;
}

/* A daemon restart: the manager lets go of its VMMs (they live on) and re-derives them. */
static void
reopen_manager(struct mstate *s)
{
    s->m = inst_manager_free(s->m);
    assert_int_equal(open_manager(s), 0);
}

static int
setup(void **state)
{
    static unsigned seq;
    struct mstate *s = xnew(struct mstate, 1);

    s->data_dir = xasprintf("%s/t%u/data", group_dir, seq);
    s->cache_dir = xasprintf("%s/t%u/cache", group_dir, seq++);
    if (open_manager(s) < 0)
        return -1;
    *state = s;
    return 0;
}

/* Whatever a test left (even after a failed assertion): remove it, so no process outlives us. */
static int
teardown(void **state)
{
    struct mstate *s = *state;
    struct inst_record **recs = NULL;
    size_t n = 0;

    if (inst_list(s->m, &recs, &n, NULL) == 0)
        for (size_t k = 0; k < n; k++)
            inst_remove(s->m, recs[k]->id, true, NULL);
    inst_record_array_free(recs, n);
    inst_manager_free(s->m);
    /* The lifecycle broke none of the driver's memory rules (the fakes refuse and count). */
    char last[512];
    unsigned broken = fake_driver_violations(last, sizeof(last));
    if (broken)
        fprintf(stderr, "%u memory rule(s) broken, the last: %s\n", broken, last);
    fake_driver_reset();
    free(s->data_dir);
    free(s->cache_dir);
    free(s);
    return broken ? -1 : 0;
}

/* ------------------------------------------------------------------ tests */

/* graceful_vmm_shutdown false: standby kills the VMM at once; true: it asks, once. */
static void
test_graceful_shutdown(void **state)
{
    struct mstate *s = *state;
    const struct hv_driver *drvs[] = { &drv_nograce, &drv_grace };

    for (size_t k = 0; k < ELEMENTSOF(drvs); k++) {
        const bool graceful = hv_has_cap(drvs[k], HV_CAP_GRACEFUL_VMM_SHUTDOWN);
        _cleanup_(inst_record_freep) struct inst_record *rec =
            run_on(s, drvs[k], graceful ? "graceful" : "abrupt");
        struct fake_calls c = calls_of(rec->id);
        assert_int_equal(c.launch, 1);
        assert_int_equal(c.pid, rec->vmm_pid);
        assert_true(proc_is_alive(c.pid, c.start_time));
        /* No agent capability: run returned without waiting for a guest. */
        assert_false(has_phase(rec, "wait_agent"));

        expect_ok(s, inst_standby, "standby", rec->id, INST_STANDBY);
        c = calls_of(rec->id);
        assert_int_equal(c.pause, 1);
        assert_int_equal(c.snapshot, 1);
        assert_int_equal(c.shutdown, graceful ? 1 : 0);
        assert_process_gone(c.pid, c.start_time);
        _cleanup_(inst_record_freep) struct inst_record *after = get(s, rec->id);
        assert_int_equal(after->vmm_pid, 0);
        assert_true(snap_dir_exists(s, rec->id, false));
    }
}

/* snapshot_base_reuse: whether restore keeps snapshot-base and the next standby is a diff. */
static void
test_base_reuse(void **state)
{
    struct mstate *s = *state;
    const struct hv_driver *drvs[] = { &drv_nograce, &drv_reuse };

    for (size_t k = 0; k < ELEMENTSOF(drvs); k++) {
        const bool reuse = hv_has_cap(drvs[k], HV_CAP_SNAPSHOT_BASE_REUSE);
        _cleanup_(inst_record_freep) struct inst_record *rec =
            run_on(s, drvs[k], reuse ? "reuse" : "no-reuse");

        expect_ok(s, inst_standby, "standby", rec->id, INST_STANDBY);
        struct fake_calls c = calls_of(rec->id);
        assert_int_equal(c.snapshot, 1);
        assert_false(c.last_snapshot_diff); /* the first standby is always full */

        expect_ok(s, inst_restore, "restore", rec->id, INST_RUNNING);
        assert_false(snap_dir_exists(s, rec->id, false));
        assert_int_equal(snap_dir_exists(s, rec->id, true), reuse);
        c = calls_of(rec->id);
        assert_int_equal(c.restore, 1);
        assert_true(proc_is_alive(c.pid, c.start_time));

        expect_ok(s, inst_standby, "second standby", rec->id, INST_STANDBY);
        c = calls_of(rec->id);
        assert_int_equal(c.snapshot, 2);
        assert_int_equal(c.last_snapshot_diff, reuse);
        assert_int_equal(c.snapshot_diff, reuse ? 1 : 0);
        /* A diff consumed the base (promoted to latest): one snapshot dir in Standby. */
        assert_true(snap_dir_exists(s, rec->id, false));
        assert_false(snap_dir_exists(s, rec->id, true));

        expect_ok(s, inst_restore, "second restore", rec->id, INST_RUNNING);
        assert_int_equal(snap_dir_exists(s, rec->id, true), reuse);
    }
}

/* resume_on_load: whether restore needs a separate resume. */
static void
test_resume_on_load(void **state)
{
    struct mstate *s = *state;
    const struct hv_driver *drvs[] = { &drv_nograce, &drv_rol };

    for (size_t k = 0; k < ELEMENTSOF(drvs); k++) {
        const bool rol = hv_has_cap(drvs[k], HV_CAP_RESUME_ON_LOAD);
        _cleanup_(inst_record_freep) struct inst_record *rec =
            run_on(s, drvs[k], rol ? "rol" : "no-rol");

        expect_ok(s, inst_standby, "standby", rec->id, INST_STANDBY);
        struct fake_calls before = calls_of(rec->id);
        expect_ok(s, inst_restore, "restore", rec->id, INST_RUNNING);
        struct fake_calls c = calls_of(rec->id);
        _cleanup_(inst_record_freep) struct inst_record *after = get(s, rec->id);

        assert_int_equal(c.restore, 1);
        assert_int_equal(c.last_restore_resume_on_load, rol);
        assert_int_equal(c.resume - before.resume, rol ? 0 : 1);
        assert_int_equal(has_phase(after, "resume_vm"), !rol);
        /* The driver's own phases reached the trace through the sink. */
        assert_true(has_phase(after, "start_process"));
        assert_true(has_phase(after, "load_snapshot"));
        assert_int_equal(after->vmm_pid, c.pid);
    }
}

/* No snapshot capability: standby is refused and changes nothing. */
static void
test_no_snapshot_cap(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, &drv_nosnap, "nosnap");
    struct inst_record *out = NULL;
    struct tp_err err = { 0 };

    assert_int_equal(inst_standby(s->m, rec->id, &out, &err), -EOPNOTSUPP);
    assert_null(out);
    tp_err_clear(&err);

    _cleanup_(inst_record_freep) struct inst_record *after = get(s, rec->id);
    struct fake_calls c = calls_of(rec->id);
    assert_int_equal(after->state, INST_RUNNING);
    assert_int_equal(after->vmm_pid, c.pid);
    assert_true(proc_is_alive(c.pid, c.start_time));
    assert_int_equal(c.pause, 0);
    assert_int_equal(c.snapshot, 0);
    assert_int_equal(c.shutdown, 0);
    assert_false(snap_dir_exists(s, rec->id, false));
}

/* One lifecycle, recorded as the fake's counts and the manager's phases per operation. */
struct lifecycle {
    struct fake_calls calls;
    char *phases[5];
};

static void
lifecycle_run(struct mstate *s, const struct hv_driver *drv, const char *name, struct lifecycle *l)
{
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, drv, name);
    verb_fn *const ops[] = { inst_standby, inst_restore, inst_standby, inst_restore };
    const enum inst_state want[] = { INST_STANDBY, INST_RUNNING, INST_STANDBY, INST_RUNNING };

    l->phases[0] = phases_of(rec);
    for (size_t k = 0; k < ELEMENTSOF(ops); k++) {
        expect_ok(s, ops[k], name, rec->id, want[k]);
        _cleanup_(inst_record_freep) struct inst_record *now = get(s, rec->id);
        l->phases[k + 1] = phases_of(now);
    }
    expect_ok(s, stop, "stop", rec->id, INST_STOPPED);
    l->calls = calls_of(rec->id);
    /* Every call that had a VM went through the driver the instance was created with. */
    assert_string_equal(l->calls.last_driver, drv->name);
}

static void
lifecycle_clear(struct lifecycle *l)
{
    for (size_t k = 0; k < ELEMENTSOF(l->phases); k++)
        free(l->phases[k]);
}

/* The same capabilities under two names: the same calls, the same phases. */
static void
test_name_independence(void **state)
{
    struct mstate *s = *state;

    for (size_t k = 0; k < ELEMENTSOF(pair_masks); k++) {
        struct lifecycle a = { 0 }, b = { 0 };
        char na[16], nb[16];
        snprintf(na, sizeof(na), "a%zu", k);
        snprintf(nb, sizeof(nb), "b%zu", k);
        lifecycle_run(s, &drv_pair[k][0], na, &a);
        lifecycle_run(s, &drv_pair[k][1], nb, &b);

        assert_int_equal(a.calls.launch, b.calls.launch);
        assert_int_equal(a.calls.attach, b.calls.attach);
        assert_int_equal(a.calls.pause, b.calls.pause);
        assert_int_equal(a.calls.resume, b.calls.resume);
        assert_int_equal(a.calls.snapshot, b.calls.snapshot);
        assert_int_equal(a.calls.snapshot_diff, b.calls.snapshot_diff);
        assert_int_equal(a.calls.restore, b.calls.restore);
        assert_int_equal(a.calls.restore_resume_on_load, b.calls.restore_resume_on_load);
        assert_int_equal(a.calls.shutdown, b.calls.shutdown);
        assert_int_equal(a.calls.release, b.calls.release);
        for (size_t p = 0; p < ELEMENTSOF(a.phases); p++)
            assert_string_equal(a.phases[p], b.phases[p]);
        /* And the capabilities did matter: the counts follow them. */
        const unsigned caps = pair_masks[k];
        assert_int_equal(a.calls.snapshot, 2);
        assert_int_equal(a.calls.snapshot_diff, caps & CAP_REUSE ? 1 : 0);
        assert_int_equal(a.calls.restore_resume_on_load, caps & CAP_ROL ? 2 : 0);
        assert_int_equal(a.calls.resume, caps & CAP_ROL ? 0 : 2);
        assert_int_equal(a.calls.shutdown, caps & CAP_GRACE ? 3 : 0); /* 2 standbys + stop */
        lifecycle_clear(&a);
        lifecycle_clear(&b);
    }
}

/* A call of link(2) (not unlink, symlink, ... nor a name merely ending in "link("). */
static bool
calls_link(const char *text)
{
    for (const char *p = strstr(text, "link("); p; p = strstr(p + 1, "link("))
        if (p == text || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
                           (p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= '0' && p[-1] <= '9')))
            return true;
    return false;
}

/* The lifecycle sources name no hypervisor (a literal "qemu" would be a branch on the name)
 * and know nothing of how guest memory is backed: that is each driver's business. */
static void
test_sources_name_no_hypervisor(void **state)
{
    static const char *const banned[] = { "\"qemu\"",    "\"firecracker\"", "mem_path",
                                          "mem_private", "ram_in_state",    "paths.mem" };
    const char *dir = getenv(SRC_DIR_ENV);
    DIR *d;
    struct dirent *de;
    unsigned scanned = 0;
    bool saw_standby = false;
    (void)state;

    if (!dir)
        fail_msg("%s is not set", SRC_DIR_ENV);
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 3 || strcmp(de->d_name + len - 2, ".c") != 0)
            continue;
        _cleanup_free_ char *path = fs_path_join(dir, de->d_name);
        _cleanup_free_ char *text = NULL;
        assert_int_equal(fs_read_file(path, 4u << 20, &text, NULL, NULL), 0);
        for (size_t k = 0; k < ELEMENTSOF(banned); k++)
            if (strstr(text, banned[k]))
                fail_msg("%s contains the literal %s", path, banned[k]);
        if (calls_link(text))
            fail_msg("%s links files itself (snapshot files are snap_link's, memory the "
                     "driver's)",
                     path);
        saw_standby |= strcmp(de->d_name, "standby.c") == 0;
        scanned++;
    }
    closedir(d);
    /* A wrong directory must not pass by scanning nothing. */
    assert_true(scanned >= 8);
    assert_true(saw_standby);
}

/* A failed snapshot: the guest runs again, nothing half-written stays or is reused. */
static void
test_standby_failure(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, &drv_reuse, "flaky");
    struct inst_record *out = NULL;
    struct tp_err err = { 0 };

    /* A retained base exists: the failing standby promotes it and writes into it. */
    expect_ok(s, inst_standby, "standby", rec->id, INST_STANDBY);
    expect_ok(s, inst_restore, "restore", rec->id, INST_RUNNING);
    assert_true(snap_dir_exists(s, rec->id, true));
    struct fake_calls before = calls_of(rec->id);

    fake_driver_fail_snapshot(rec->id, true);
    assert_int_equal(inst_standby(s->m, rec->id, &out, &err), -EIO);
    assert_null(out);
    assert_non_null(strstr(tp_err_msg(&err), "injected"));
    tp_err_clear(&err);

    struct fake_calls c = calls_of(rec->id);
    _cleanup_(inst_record_freep) struct inst_record *after = get(s, rec->id);
    assert_int_equal(after->state, INST_RUNNING);
    assert_int_equal(c.snapshot, before.snapshot + 1);
    assert_true(c.last_snapshot_diff); /* it was building on the base */
    assert_int_equal(c.resume, before.resume + 1);
    assert_int_equal(c.shutdown, before.shutdown);
    assert_int_equal(c.pid, before.pid);
    assert_true(proc_is_alive(c.pid, c.start_time));
    assert_int_equal(after->vmm_pid, c.pid);
    assert_false(snap_dir_exists(s, rec->id, false));
    assert_false(snap_dir_exists(s, rec->id, true));
    assert_non_null(after->last_error);

    fake_driver_fail_snapshot(rec->id, false);
    expect_ok(s, inst_standby, "standby after failure", rec->id, INST_STANDBY);
    c = calls_of(rec->id);
    assert_int_equal(c.snapshot, before.snapshot + 2);
    assert_false(c.last_snapshot_diff); /* reuse is on, but there was no base to trust */
    assert_process_gone(before.pid, before.start_time);
}

/* stop from Standby: no snapshot directory survives, nor the guest memory. */
static void
test_stop_from_standby(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, &drv_reuse, "sleeper");
    struct inst_paths p;

    expect_ok(s, inst_standby, "standby", rec->id, INST_STANDBY);
    inst_paths_init(&p, s->data_dir, rec->id);
    /* Both roles present, as after a crash between promotion steps. */
    assert_int_equal(fs_mkdir_p(p.snap_base, 0700, NULL), 0);
    assert_true(fs_exists(p.snap_latest));
    /* QEMU-like: the RAM file stays (the snapshot's image is the same inode); Firecracker's
     * memory was never a file of the instance's. */
    _cleanup_free_ char *mem = fs_path_join(p.dir, "mem"); /* the QEMU-like fake's RAM file */
    assert_int_equal(fs_exists(mem), !fc_model());

    /* The snapshot is the guest's memory: only a forced stop discards it. */
    struct inst_record *no = NULL;
    assert_int_equal(inst_stop(s->m, rec->id, false, &no, NULL), -EBUSY);
    assert_true(fs_exists(p.snap_latest));
    expect_ok(s, stop_force, "stop", rec->id, INST_STOPPED);
    /* Stopping a Stopped instance (and starting a Running one) is nothing to do, as docker. */
    expect_ok(s, stop, "stop", rec->id, INST_STOPPED);
    assert_false(fs_exists(p.snap_latest));
    assert_false(fs_exists(p.snap_base));
    assert_false(fs_exists(mem));
    assert_true(fs_exists(p.root_disk)); /* kept for start */
    inst_paths_clear(&p);
}

/* A cmd too long for the kernel command line is bad input: refused, and nothing is recorded. */
static void
test_run_cmd_too_long(void **state)
{
    struct mstate *s = *state;
    char *arg = xmalloc(1500);
    memset(arg, 'x', 1499);
    arg[1499] = '\0';
    char *const cmd[] = { (char *)"echo", arg, NULL };
    const struct inst_create_req req = {
        .name = "long",
        .memory_mib = MEMORY_MIB,
        .hypervisor = drv_nograce.name,
        .kernel = kernel_path,
        .initrd = initrd_path,
        .rootfs = rootfs_path,
        .cmd = cmd,
    };
    struct inst_record *rec = NULL, **recs = NULL;
    struct tp_err err = { 0 };
    size_t n = 99;

    assert_int_equal(inst_run(s->m, &req, &rec, &err), -EINVAL);
    assert_null(rec);
    assert_non_null(strstr(tp_err_msg(&err), "command line"));
    tp_err_clear(&err);
    free(arg);

    assert_int_equal(inst_list(s->m, &recs, &n, NULL), 0);
    assert_int_equal(n, 0);
    inst_record_array_free(recs, n);
    _cleanup_free_ char *instances = paths_instances_dir(s->data_dir);
    DIR *d = opendir(instances);
    struct dirent *de;
    unsigned entries = 0;
    assert_non_null(d);
    while ((de = readdir(d)))
        entries += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 0);
}

static struct inst_record **
fork_ok(struct mstate *s, const char *ref, const char *child)
{
    const struct inst_fork_req q = { .count = 1, .name = child };
    struct inst_record **kids = NULL;
    struct tp_err err = { 0 };
    size_t n = 0;

    if (inst_fork(s->m, ref, &q, &kids, &n, &err) < 0)
        fail_msg("fork '%s': %s", ref, tp_err_msg(&err));
    assert_int_equal(n, 1);
    assert_int_equal(kids[0]->state, INST_RUNNING);
    return kids;
}

static unsigned
count_templates(struct mstate *s)
{
    _cleanup_free_ char *dir = paths_templates_dir(s->data_dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    unsigned n = 0;

    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* A Running source restarts on the template: its record names the new VMM, so a restarted
 * daemon finds it Running (not Stopped, with its VMM left unmanaged). */
static void
test_fork_source_keeps_its_vmm(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, &drv_fork, "src");
    struct fake_calls before = calls_of(rec->id);
    struct inst_record **kids = fork_ok(s, "src", "kid");

    struct fake_calls c = calls_of(rec->id);
    assert_int_equal(c.prepare_fork, 1);
    if (fc_model()) {
        /* The template is a copy: the source only resumed, on its own VMM. */
        assert_int_equal(c.restore, 0);
        assert_int_equal(c.pid, before.pid);
        assert_int_equal(c.resume, before.resume + 1);
    } else {
        assert_int_equal(c.restore, 1); /* the source restarted on the template */
        assert_true(c.pid != before.pid);
    }
    assert_true(proc_is_alive(c.pid, c.start_time));
    _cleanup_(inst_record_freep) struct inst_record *after = get(s, "src");
    assert_int_equal(after->state, INST_RUNNING);
    assert_int_equal(after->vmm_pid, c.pid);
    assert_int_equal(after->vmm_start_time, c.start_time);

    reopen_manager(s);
    _cleanup_(inst_record_freep) struct inst_record *again = get(s, "src");
    assert_int_equal(again->state, INST_RUNNING);
    assert_int_equal(again->vmm_pid, c.pid);
    assert_true(proc_is_alive(c.pid, c.start_time));
    inst_record_array_free(kids, 1);
}

/* Another instance stops (and collects unused templates) while a fork is loading from a
 * template no instance names: the template must survive until the fork is done. */
struct gc_during_fork {
    struct mstate *s;
    const char *bystander;
    int stopped;
};

static void
stop_bystander(const char *id, void *ctx)
{
    struct gc_during_fork *g = ctx;
    struct inst_record *rec = NULL;
    (void)id;
    if (g->stopped++)
        return;
    if (inst_stop(g->s->m, g->bystander, false, &rec, NULL) == 0)
        inst_record_free(rec);
}

static void
test_fork_template_survives_gc(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *src = run_on(s, &drv_fork, "src");
    _cleanup_(inst_record_freep) struct inst_record *other = run_on(s, &drv_fork, "other");
    assert_non_null(other); /* the bystander another thread stops mid-fork */
    struct inst_record **first = fork_ok(s, "src", "first");
    assert_int_equal(count_templates(s), 1);

    /* QEMU-like: src now maps that template: its next fork carries memory in the state
     * stream, so the new template is named by no instance at all. Firecracker-like: src kept
     * its own memory, and the new template is its child's. */
    struct gc_during_fork g = { .s = s, .bystander = "other" };
    fake_driver_on_restore(stop_bystander, &g);
    struct inst_record **second = fork_ok(s, "src", "second");
    fake_driver_on_restore(NULL, NULL);
    assert_true(g.stopped > 0);

    _cleanup_(inst_record_freep) struct inst_record *after = get(s, "src");
    _cleanup_(inst_record_freep) struct inst_record *stopped = get(s, "other");
    assert_int_equal(after->state, INST_RUNNING);
    assert_int_equal(stopped->state, INST_STOPPED);
    struct fake_calls c = calls_of(src->id);
    assert_int_equal(after->vmm_pid, c.pid);
    assert_true(proc_is_alive(c.pid, c.start_time));
    /* QEMU-like: only the first template remains (its child maps it); the second went once
     * unpinned. Firecracker-like: each child maps its own. */
    assert_int_equal(count_templates(s), fc_model() ? 2 : 1);
    inst_record_array_free(first, 1);
    inst_record_array_free(second, 1);
}

/* Children born in Standby share the template's files (hard links): each goes through
 * restore → standby → restore → standby, and the fakes check that no shared memory file is
 * ever written in place (a Diff onto a file with other names would corrupt its siblings). */
static void
test_fork_standby_children_cycle(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *src = run_on(s, &drv_fork, "src");
    const struct inst_fork_req q = { .count = 2, .standby = true };
    struct inst_record **kids = NULL;
    struct tp_err err = { 0 };
    size_t n = 0;

    if (inst_fork(s->m, "src", &q, &kids, &n, &err) < 0)
        fail_msg("fork: %s", tp_err_msg(&err));
    assert_int_equal(n, 2);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(kids[k]->state, INST_STANDBY);
    for (int round = 0; round < 2; round++)
        for (size_t k = 0; k < n; k++) {
            expect_ok(s, inst_restore, "restore child", kids[k]->id, INST_RUNNING);
            expect_ok(s, inst_standby, "standby child", kids[k]->id, INST_STANDBY);
        }
    /* The source, too, went on running and stands by on its own. */
    expect_ok(s, inst_standby, "standby source", src->id, INST_STANDBY);
    expect_ok(s, inst_restore, "restore source", src->id, INST_RUNNING);
    expect_ok(s, inst_standby, "standby source again", src->id, INST_STANDBY);
    /* A child's first restore runs from the template's files: no base worth keeping, so its
     * first standby is full. Firecracker-like: that one is a file of its own, so the second
     * builds on it; QEMU-like: its memory went into the state, so there is no image to build
     * on. */
    struct fake_calls c = calls_of(kids[0]->id);
    assert_int_equal(c.snapshot, 2);
    assert_int_equal(c.restore, 2);
    assert_int_equal(c.snapshot_diff, fc_model() ? 1 : 0);
    inst_record_array_free(kids, n);
    assert_int_equal(fake_driver_violations(NULL, 0), 0);
}

/* A Running source with a retained base is forked: the template's snapshot restarted the
 * driver's dirty tracking, so that base must never be diff-written again (the FC-like fake
 * refuses a Diff onto anything but the VM's last snapshot or load). */
static void
test_fork_drops_stale_base(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, &drv_fork, "src");

    expect_ok(s, inst_standby, "standby", rec->id, INST_STANDBY);
    expect_ok(s, inst_restore, "restore", rec->id, INST_RUNNING);
    assert_true(snap_dir_exists(s, rec->id, true));
    struct inst_record **kids = fork_ok(s, rec->id, "kid");
    assert_false(snap_dir_exists(s, rec->id, true));

    expect_ok(s, inst_standby, "standby after fork", rec->id, INST_STANDBY);
    struct fake_calls c = calls_of(rec->id);
    assert_false(c.last_snapshot_diff);
    expect_ok(s, inst_restore, "restore after fork", rec->id, INST_RUNNING);
    expect_ok(s, inst_standby, "standby again", rec->id, INST_STANDBY);
    c = calls_of(rec->id);
    /* Firecracker-like: the full one is a file of its own again, so the next builds on it.
     * QEMU-like: the source ran on the template, so that standby carried its RAM in the
     * state: no image to build on, a full one again. */
    assert_int_equal(c.last_snapshot_diff, fc_model());
    inst_record_array_free(kids, 1);
}

/* A fork journal left by the previous version (it also carried "ram_in_state") is still
 * recovered: the half-made child and template go, the source runs on its own VMM. */
static void
test_fork_old_journal_recovered(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, &drv_fork, "src");
    struct fake_calls c = calls_of(rec->id);
    char tid[INST_ID_LEN + 1], kid[INST_ID_LEN + 1];
    struct inst_paths kp;
    struct store *st = NULL;
    struct inst_record *r = NULL;

    store_new_id(tid);
    store_new_id(kid);
    /* What the crash left: the template's dir and the child's dir (no record yet). */
    _cleanup_free_ char *tdir = paths_template_dir(s->data_dir, tid);
    _cleanup_free_ char *tstate = fs_path_join(tdir, "state");
    inst_paths_init(&kp, s->data_dir, kid);
    assert_int_equal(fs_mkdir_p(tdir, 0700, NULL), 0);
    assert_int_equal(fs_write_atomic(tstate, "x", 1, 0600, NULL), 0);
    assert_int_equal(fs_mkdir_p(kp.dir, 0700, NULL), 0);

    s->m = inst_manager_free(s->m); /* the daemon is gone; its VMMs live on */
    assert_int_equal(store_open(s->data_dir, &st, NULL), 0);
    assert_int_equal(store_get(st, rec->id, &r, NULL), 0);
    free(r->op);
    free(r->op_data);
    r->op = xstrdup("fork");
    r->op_data = xasprintf("{\"tid\":\"%s\",\"old_tid\":\"\",\"was_running\":true,"
                           "\"ram_in_state\":false,\"phase\":\"begun\",\"children\":[\"%s\"]}",
                           tid, kid);
    assert_int_equal(store_update(st, r, NULL), 0);
    inst_record_free(r);
    store_close(st);
    assert_int_equal(open_manager(s), 0);

    _cleanup_(inst_record_freep) struct inst_record *after = get(s, "src");
    assert_int_equal(after->state, INST_RUNNING);
    assert_int_equal(after->vmm_pid, c.pid);
    assert_null(after->op);
    assert_false(fs_exists(tdir));
    assert_false(fs_exists(kp.dir));
    inst_paths_clear(&kp);
}

/* A VMM alive but not answering after a restart is Unknown; stop must still end it. */
static void
test_stop_unknown_kills_vmm(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, &drv_grace, "hung");
    struct fake_calls c = calls_of(rec->id);

    fake_driver_fail_attach(rec->id, true);
    reopen_manager(s);
    _cleanup_(inst_record_freep) struct inst_record *unknown = get(s, "hung");
    assert_int_equal(unknown->state, INST_UNKNOWN);
    assert_int_equal(unknown->vmm_pid, c.pid);
    assert_non_null(strstr(unknown->last_error, "does not answer"));
    assert_true(proc_is_alive(c.pid, c.start_time));

    expect_ok(s, stop, "stop", "hung", INST_STOPPED);
    assert_process_gone(c.pid, c.start_time);
    _cleanup_(inst_record_freep) struct inst_record *after = get(s, "hung");
    assert_int_equal(after->vmm_pid, 0);
}

/* Set or clear the immutable flag (even root cannot unlink such a file); false if unsupported. */
static bool
set_immutable(const char *path, bool on)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    int flags = 0;

    if (fd < 0 || ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
        return false;
    flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
    return ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
}

/* rm -f that fails after its VMM was stopped: the instance is kept, Stopped, not "Running"
 * with nothing behind it (exec on it used to dereference the missing VMM). */
static void
test_remove_failure_after_halt(void **state)
{
    struct mstate *s = *state;
    _cleanup_(inst_record_freep) struct inst_record *rec = run_on(s, &drv_grace, "stuck");
    struct fake_calls c = calls_of(rec->id);
    struct inst_paths p;
    struct tp_err err = { 0 };

    inst_paths_init(&p, s->data_dir, rec->id);
    _cleanup_free_ char *pin = fs_path_join(p.dir, "pinned");
    assert_int_equal(fs_write_atomic(pin, "x", 1, 0600, NULL), 0);
    if (!set_immutable(pin, true)) {
        inst_paths_clear(&p);
        skip(); /* needs CAP_LINUX_IMMUTABLE and a filesystem with the flag */
    }

    assert_true(inst_remove(s->m, "stuck", true, &err) < 0);
    tp_err_clear(&err);
    assert_process_gone(c.pid, c.start_time);
    _cleanup_(inst_record_freep) struct inst_record *after = get(s, "stuck");
    assert_int_equal(after->state, INST_STOPPED);
    assert_int_equal(after->vmm_pid, 0);

    static char *const argv[] = { (char *)"true", NULL };
    const struct agent_exec_req req = { .argv = argv };
    struct agent_exec *x = NULL;
    assert_int_equal(inst_exec_start(s->m, "stuck", &req, &x, &err), -EBUSY);
    assert_null(x);
    tp_err_clear(&err);

    assert_true(set_immutable(pin, false));
    assert_int_equal(inst_remove(s->m, "stuck", true, NULL), 0);
    assert_false(fs_exists(p.dir));
    inst_paths_clear(&p);
}

/* The registry's run-time table: duplicates refused, a bounded size, lookups over both parts. */
static void
test_registry_add(void **state)
{
    static struct hv_driver extra[32];
    static char names[32][16];
    const struct hv_driver *const *all;
    bool listed = false;
    size_t k;
    int r = 0;
    (void)state;

    assert_string_equal(hv_driver_default(), "qemu");
    assert_ptr_equal(hv_driver_find(hv_driver_default()), hv_driver_all()[0]);
    assert_ptr_equal(hv_driver_find("fake-grace"), &drv_grace);
    assert_int_equal(hv_registry_add(&drv_grace), -EEXIST);
    struct hv_driver dup_builtin = { .name = "qemu" };
    assert_int_equal(hv_registry_add(&dup_builtin), -EEXIST);
    struct hv_driver nameless = { 0 };
    assert_int_equal(hv_registry_add(&nameless), -EINVAL);

    for (k = 0; k < ELEMENTSOF(extra); k++) {
        snprintf(names[k], sizeof(names[k]), "filler-%zu", k);
        fake_driver_init(&extra[k], names[k], 0);
        r = hv_registry_add(&extra[k]);
        if (r < 0)
            break;
    }
    assert_int_equal(r, -ENOSPC);
    assert_true(k > 0);
    assert_null(hv_driver_find(names[k]));
    assert_ptr_equal(hv_driver_find(names[k - 1]), &extra[k - 1]);
    all = hv_driver_all();
    for (size_t j = 0; all[j]; j++)
        listed |= all[j] == &extra[k - 1];
    assert_true(listed);
    assert_ptr_equal(hv_driver_find("fake-nosnap"), &drv_nosnap);
}

/* logs --tail: where the last N lines start, in a buffer and in a file read backwards in
 * blocks (a file larger than one block puts lines across block edges). */
static void
test_tail_offset(void **state)
{
    (void)state;
    const char *t = "a\nbb\nccc\n";
    size_t n = strlen(t);
    assert_int_equal(console_tail_offset_buf(t, n, 0), n);
    assert_int_equal(console_tail_offset_buf(t, n, 1), 5);
    assert_int_equal(console_tail_offset_buf(t, n, 2), 2);
    assert_int_equal(console_tail_offset_buf(t, n, 3), 0);
    assert_int_equal(console_tail_offset_buf(t, n, 99), 0);
    /* A last line without its '\n' counts. */
    assert_int_equal(console_tail_offset_buf("a\nbb", 4, 1), 2);
    assert_int_equal(console_tail_offset_buf("", 0, 3), 0);
    assert_int_equal(console_tail_offset_buf("\n\n", 2, 1), 1);

    char path[] = "/tmp/torpor-tail-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    /* 200000 lines of "NNNNNN\n" (7 bytes): > 1 MiB, many 64 KiB blocks. */
    size_t len = 200000 * 7;
    char *buf = malloc(len + 1); /* + the NUL snprintf writes after the last line */
    for (size_t i = 0; i < 200000; i++)
        snprintf(buf + i * 7, 8, "%06zu\n", i);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    uint64_t lines[] = { 0, 1, 2, 9363, 9364, 9365, 150000, 199999, 200000, 300000 };
    for (size_t k = 0; k < sizeof(lines) / sizeof(lines[0]); k++) {
        uint64_t at = 77;
        assert_int_equal(console_tail_offset(fd, lines[k], &at), 0);
        assert_int_equal(at, console_tail_offset_buf(buf, len, lines[k]));
    }
    free(buf);
    close(fd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_graceful_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_on_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_snapshot_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_independence, setup, teardown),
        cmocka_unit_test(test_sources_name_no_hypervisor),
        cmocka_unit_test(test_tail_offset),
        cmocka_unit_test_setup_teardown(test_standby_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_from_standby, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_cmd_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_source_keeps_its_vmm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_template_survives_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_standby_children_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_drops_stale_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_old_journal_recovered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_unknown_kills_vmm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_failure_after_halt, setup, teardown),
        /* Last: it fills the registry. */
        cmocka_unit_test(test_registry_add),
    };
    return cmocka_run_group_tests_name("manager", tests, group_setup, group_teardown);
}
