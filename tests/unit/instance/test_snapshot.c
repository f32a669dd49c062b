/* The snapshot layout (src/snapshot): promotion of the retained base, validation, retirement. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* clang-format off: cmocka.h needs the headers above included first */
#include <cmocka.h>
/* clang-format on */

#include "hypervisor/driver.h"
#include "snapshot/snapshot.h"
#include "util/cleanup.h"
#include "util/fs.h"

static char dir[] = "/tmp/torpor-test-snapshot-XXXXXX";

static void
write_file(const char *d, const char *name, const char *text)
{
    _cleanup_free_ char *p = fs_path_join(d, name);
    assert_int_equal(fs_write_atomic(p, text, strlen(text), 0600, NULL), 0);
}

/* A standby into an empty latest: state + memory from the "driver", then the commit. */
static void
complete_snapshot(const char *latest, const char *state)
{
    struct snap_manifest m = { .version = SNAP_MANIFEST_VERSION, .hypervisor = "any" };
    uint64_t written = 0;

    write_file(latest, HV_SNAP_STATE, state);
    _cleanup_free_ char *memory = fs_path_join(latest, HV_SNAP_MEMORY);
    if (!fs_exists(memory))
        write_file(latest, HV_SNAP_MEMORY, "guest memory");
    assert_int_equal(snap_commit(latest, &m, &written, NULL), 0);
}

/* After a restore retired latest into the base, the next standby promotes the base. Until its
 * commit, the promoted latest must not pass for a complete snapshot: its state is the old one. */
static void
test_promoted_base_is_incomplete(void **state)
{
    _cleanup_free_ char *base = fs_path_join(dir, "snapshot-base");
    _cleanup_free_ char *latest = fs_path_join(dir, "snapshot-latest");
    struct snap_manifest m;
    bool diff = false;
    (void)state;

    assert_int_equal(fs_mkdir_p(latest, 0700, NULL), 0);
    complete_snapshot(latest, "state of standby 1");
    assert_int_equal(snap_validate(latest, &m, NULL), 0);
    assert_int_equal(snap_retire_latest(latest, base, true, NULL), 0);
    assert_false(fs_exists(latest));

    assert_int_equal(snap_prepare_target(base, latest, true, &diff, NULL), 0);
    assert_true(diff);
    assert_false(fs_exists(base));
    /* What a restarted daemon would find if it died here (reconcile trusts snap_validate). */
    struct tp_err err = { 0 };
    assert_int_equal(snap_validate(latest, NULL, &err), -ENOENT);
    assert_non_null(strstr(tp_err_msg(&err), "manifest"));
    tp_err_clear(&err);

    complete_snapshot(latest, "state of standby 2");
    assert_int_equal(snap_validate(latest, &m, NULL), 0);
    assert_true(m.version == SNAP_MANIFEST_VERSION);
}

/* A VMM that ran the guest on the snapshot's memory image (a restore whose daemon died, a stray
 * VMM) changed it after the manifest was written: the snapshot no longer matches its device state
 * and must not be loaded again. */
static void
test_memory_written_after_commit_is_stale(void **state)
{
    _cleanup_free_ char *latest = fs_path_join(dir, "stale-latest");
    _cleanup_free_ char *memory = fs_path_join(latest, HV_SNAP_MEMORY);
    _cleanup_free_ char *manifest = fs_path_join(latest, SNAP_MANIFEST);
    struct tp_err err = { 0 };
    (void)state;

    assert_int_equal(fs_mkdir_p(latest, 0700, NULL), 0);
    complete_snapshot(latest, "state");
    assert_int_equal(snap_validate(latest, NULL, NULL), 0);

    /* A guest write through a shared mapping moves the memory file's mtime past the
     * manifest's; set the times explicitly rather than wait for the clock to tick. */
    struct timespec t[2] = { { .tv_sec = 1000, .tv_nsec = 0 }, { .tv_sec = 1000, .tv_nsec = 0 } };
    assert_int_equal(utimensat(AT_FDCWD, manifest, t, 0), 0);
    t[1].tv_nsec = 1;
    assert_int_equal(utimensat(AT_FDCWD, memory, t, 0), 0);
    assert_int_equal(snap_validate(latest, NULL, &err), -ESTALE);
    assert_non_null(strstr(tp_err_msg(&err), "changed after"));
    tp_err_clear(&err);

    /* Written in the same instant as the manifest (the commit itself): still valid. */
    t[1].tv_nsec = 0;
    assert_int_equal(utimensat(AT_FDCWD, memory, t, 0), 0);
    assert_int_equal(snap_validate(latest, NULL, NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promoted_base_is_incomplete),
        cmocka_unit_test(test_memory_written_after_commit_is_stale),
    };
    if (!mkdtemp(dir))
        return 1;
    int r = cmocka_run_group_tests_name("snapshot", tests, NULL, NULL);
    fs_rm_rf(dir, NULL);
    return r;
}
