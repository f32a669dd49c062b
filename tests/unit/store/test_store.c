/* Unit tests for the store: SQLite records, resolution, names, ids and paths (real SQLite). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "store/paths.h"
#include "store/store.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/xalloc.h"

struct fixture {
    char *dir;
    struct store *s;
};

static int
setup(void **state)
{
    struct fixture *f = xnew(struct fixture, 1);
    char tmpl[] = "/tmp/torpor-store-XXXXXX";
    struct tp_err err = { 0 };

    if (!mkdtemp(tmpl))
        return -1;
    f->dir = xstrdup(tmpl);
    if (store_open(f->dir, &f->s, &err) < 0) {
        print_error("store_open: %s\n", tp_err_msg(&err));
        tp_err_clear(&err);
        return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    store_close(f->s);
    fs_rm_rf(f->dir, NULL);
    free(f->dir);
    free(f);
    return 0;
}

static char **
strv_new(const char *first, ...)
{
    char **v = xnew(char *, 1);
    size_t n = 0;
    va_list ap;

    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        v = xrealloc(v, (n + 2) * sizeof(*v));
        v[n++] = xstrdup(s);
    }
    va_end(ap);
    v[n] = NULL;
    return v;
}

static struct inst_record *
record_new(const char *id, const char *name, int64_t created_ms)
{
    struct inst_record *r = xnew(struct inst_record, 1);

    assert_int_equal(strlen(id), INST_ID_LEN);
    memcpy(r->id, id, INST_ID_LEN + 1);
    r->name = xstrdup(name);
    r->cfg.hypervisor = xstrdup("qemu");
    r->cfg.memory_mib = 256;
    r->cfg.vcpus = 2;
    r->cfg.kernel = xstrdup("/boot/vmlinuz");
    r->cfg.agent = true;
    r->state = INST_CREATED;
    r->created_ms = created_ms;
    r->state_changed_ms = created_ms;
    return r;
}

static void
insert_ok(struct store *s, const struct inst_record *r)
{
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    if (store_insert(s, r, &err) < 0)
        fail_msg("insert '%s': %s", r->name, tp_err_msg(&err));
}

static void
assert_str_or_null_equal(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void
assert_records_equal(const struct inst_record *a, const struct inst_record *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->net.ip, b->net.ip);
    assert_int_equal(a->net.prefix, b->net.prefix);
    assert_memory_equal(a->net.mac, b->net.mac, 6);
    assert_str_or_null_equal(a->cfg.hypervisor, b->cfg.hypervisor);
    assert_int_equal(a->cfg.memory_mib, b->cfg.memory_mib);
    assert_int_equal(a->cfg.vcpus, b->cfg.vcpus);
    assert_str_or_null_equal(a->cfg.kernel, b->cfg.kernel);
    assert_str_or_null_equal(a->cfg.initrd, b->cfg.initrd);
    assert_str_or_null_equal(a->cfg.rootfs, b->cfg.rootfs);
    assert_str_or_null_equal(a->cfg.root_disk_src, b->cfg.root_disk_src);
    if (!a->cfg.cmd || !b->cfg.cmd)
        assert_ptr_equal(a->cfg.cmd, b->cfg.cmd);
    else {
        size_t i;
        for (i = 0; a->cfg.cmd[i] && b->cfg.cmd[i]; i++)
            assert_string_equal(a->cfg.cmd[i], b->cfg.cmd[i]);
        assert_null(a->cfg.cmd[i]);
        assert_null(b->cfg.cmd[i]);
    }
    assert_int_equal(a->cfg.agent, b->cfg.agent);
    assert_str_or_null_equal(a->cfg.accel, b->cfg.accel);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->vmm_pid, b->vmm_pid);
    assert_true(a->vmm_start_time == b->vmm_start_time);
    assert_true(a->created_ms == b->created_ms);
    assert_true(a->state_changed_ms == b->state_changed_ms);
    assert_str_or_null_equal(a->last_op, b->last_op);
    assert_str_or_null_equal(a->last_error, b->last_error);
    assert_str_or_null_equal(a->op, b->op);
    assert_str_or_null_equal(a->op_data, b->op_data);
    assert_int_equal(a->cfg.net_shared, b->cfg.net_shared);
    assert_int_equal(a->cfg.mem_uffd, b->cfg.mem_uffd);
    assert_int_equal(a->n_ports, b->n_ports);
    for (size_t k = 0; k < a->n_ports; k++) {
        assert_int_equal(a->ports[k].host_ip, b->ports[k].host_ip);
        assert_int_equal(a->ports[k].host_port, b->ports[k].host_port);
        assert_int_equal(a->ports[k].guest_port, b->ports[k].guest_port);
        assert_int_equal(a->ports[k].proto, b->ports[k].proto);
    }
}

/* Runs one statement on a second, raw connection: how a test plants what the store would not. */
static void
raw_exec(const char *dir, const char *sql, const char *const *texts, size_t n)
{
    _cleanup_free_ char *path = fs_path_join(dir, "torpor.db");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sqlite3_bind_text(st, (int)i + 1, texts[i], -1, SQLITE_STATIC), SQLITE_OK);
    int rc = sqlite3_step(st);
    assert_true(rc == SQLITE_DONE || rc == SQLITE_ROW);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void
test_roundtrip_every_field(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL, *got = NULL, *copy = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    r = record_new("0123456789abcdef", "web-1", 1700000000123);
    r->cfg.cmd = strv_new("sh", "-c", "echo \"hello world\" 'it''s' \\ $HOME; exit 3",
                          "two  spaces", "", NULL);
    r->cfg.initrd = NULL;
    r->cfg.rootfs = xstrdup("/srv/rootfs dir/with \"quotes\"");
    r->cfg.root_disk_src = xstrdup("/var/lib/torpor/images/base.ext4");
    r->cfg.agent = false;
    r->cfg.accel = xstrdup("tcg");
    r->cfg.memory_mib = UINT32_MAX;
    r->state = INST_RUNNING;
    r->vmm_pid = 4194303;
    r->vmm_start_time = (UINT64_C(1) << 32) + 12345; /* > 2^32: must not be truncated */
    r->state_changed_ms = 1700000000999;
    r->last_op = xstrdup("{\"op\":\"start\",\"phases\":[{\"name\":\"boot\",\"ms\":2400}]}");
    r->last_error = xstrdup("boot: 'x' failed");

    assert_int_equal(store_insert(f->s, r, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_records_equal(r, got);
    assert_null(got->cfg.initrd);

    copy = inst_record_dup(got);
    assert_ptr_not_equal(copy->name, got->name);
    assert_ptr_not_equal(copy->cfg.cmd, got->cfg.cmd);
    assert_records_equal(copy, got);

    /* The full 64 bits, including the sign bit of SQLite's INTEGER. */
    r->vmm_start_time = UINT64_MAX - 7;
    r->state = INST_STANDBY;
    r->vmm_pid = 0;
    free(r->last_error);
    r->last_error = NULL;
    r->state_changed_ms = 1700000005000;
    assert_int_equal(store_update(f->s, r, &err), 0);
    got = inst_record_free(got);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_records_equal(r, got);
}

static void
test_update_keeps_immutable_fields(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL, *changed = NULL, *got = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    r = record_new("00000000000000aa", "keep", 1000);
    insert_ok(f->s, r);
    changed = inst_record_dup(r);
    free(changed->name);
    changed->name = xstrdup("renamed");
    changed->created_ms = 5;
    free(changed->cfg.kernel);
    changed->cfg.kernel = xstrdup("/other");
    changed->state = INST_STOPPED;
    assert_int_equal(store_update(f->s, changed, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_string_equal(got->name, "keep");
    assert_true(got->created_ms == 1000);
    assert_string_equal(got->cfg.kernel, "/boot/vmlinuz");
    assert_int_equal(got->state, INST_STOPPED);
}

static void
test_duplicates(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *a = NULL, *same_name = NULL, *same_id = NULL,
                                                    *both = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inst_record **v = NULL;
    size_t n = 0;

    a = record_new("1111111111111111", "alpha", 1);
    same_name = record_new("2222222222222222", "alpha", 2);
    same_id = record_new("1111111111111111", "beta", 3);
    both = record_new("1111111111111111", "alpha", 4);
    insert_ok(f->s, a);

    assert_int_equal(store_insert(f->s, same_name, &err), -EEXIST);
    assert_non_null(strstr(tp_err_msg(&err), "name 'alpha'"));
    assert_int_equal(store_insert(f->s, same_id, &err), -EEXIST);
    assert_non_null(strstr(tp_err_msg(&err), "id '1111111111111111'"));
    assert_null(strstr(tp_err_msg(&err), "name '"));
    /* Both taken: the name is what the user chose, so it is the one reported. */
    assert_int_equal(store_insert(f->s, both, &err), -EEXIST);
    assert_non_null(strstr(tp_err_msg(&err), "name 'alpha'"));

    assert_int_equal(store_list(f->s, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    inst_record_array_free(v, n);
}

static void
test_insert_rejects_malformed(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    r = record_new("abcdefabcdefabcd", "Bad_Name", 1);
    assert_int_equal(store_insert(f->s, r, &err), -EINVAL);
    free(r->name);
    r->name = xstrdup("good");
    memcpy(r->id, "ABCDEFABCDEFABCD", INST_ID_LEN);
    assert_int_equal(store_insert(f->s, r, &err), -EINVAL);
    memcpy(r->id, "abcdefabcdefabcd", INST_ID_LEN);
    r->state = _INST_STATE_MAX;
    assert_int_equal(store_insert(f->s, r, &err), -EINVAL);
    r->state = INST_CREATED;
    free(r->cfg.kernel);
    r->cfg.kernel = xstrdup("/boot/\xff\xfe"); /* not UTF-8: JSON cannot carry it */
    assert_int_equal(store_insert(f->s, r, &err), -EINVAL);
    assert_non_null(strstr(tp_err_msg(&err), "kernel"));
}

static void
test_missing_and_delete(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL, *got = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    r = record_new("feedfeedfeedfeed", "gone", 1);
    assert_int_equal(store_update(f->s, r, &err), -ENOENT);
    assert_int_equal(store_delete(f->s, r->id, &err), -ENOENT);
    assert_int_equal(store_get(f->s, r->id, &got, &err), -ENOENT);
    assert_string_equal(tp_err_msg(&err), "no such instance 'feedfeedfeedfeed'");
    assert_null(got);

    insert_ok(f->s, r);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    got = inst_record_free(got);
    assert_int_equal(store_delete(f->s, r->id, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), -ENOENT);
    assert_int_equal(store_delete(f->s, r->id, &err), -ENOENT);
    /* The name is free again. */
    insert_ok(f->s, r);
}

static void
test_list_order(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *id, *name;
        int64_t created;
    } rows[] = {
        { "cccccccccccccccc", "third", 300 }, { "aaaaaaaaaaaaaaaa", "first", 100 },
        { "dddddddddddddddd", "tie-b", 200 }, { "bbbbbbbbbbbbbbbb", "tie-a", 200 },
        { "0000000000000000", "zero", -5 },
    };
    static const char *const want[] = { "zero", "first", "tie-a", "tie-b", "third" };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inst_record **v = NULL;
    size_t n = 0;

    assert_int_equal(store_list(f->s, &v, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_non_null(v);
    assert_null(v[0]);
    inst_record_array_free(v, n);

    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        _cleanup_(inst_record_freep) struct inst_record *r =
            record_new(rows[i].id, rows[i].name, rows[i].created);
        insert_ok(f->s, r);
    }
    assert_int_equal(store_list(f->s, &v, &n, &err), 0);
    assert_int_equal(n, ELEMENTSOF(want));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(v[i]->name, want[i]);
    assert_null(v[n]);
    inst_record_array_free(v, n);
}

static void
test_resolve(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *id, *name;
    } rows[] = {
        { "3f2a9c0d1b4e5f60", "web-1" },
        { "3f99000000000000", "db" },
        { "a000000000000000", "3f2a" }, /* a name that looks like an id prefix */
    };
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    char id[INST_ID_LEN + 1];

    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        _cleanup_(inst_record_freep) struct inst_record *r =
            record_new(rows[i].id, rows[i].name, (int64_t)i);
        insert_ok(f->s, r);
    }

    assert_int_equal(store_resolve(f->s, "web-1", id, &err), 0);
    assert_string_equal(id, "3f2a9c0d1b4e5f60");
    assert_int_equal(store_resolve(f->s, "3f99000000000000", id, &err), 0);
    assert_string_equal(id, "3f99000000000000");
    assert_int_equal(store_resolve(f->s, "3f9", id, &err), 0);
    assert_string_equal(id, "3f99000000000000");
    assert_int_equal(store_resolve(f->s, "3f2a9", id, &err), 0);
    assert_string_equal(id, "3f2a9c0d1b4e5f60");
    assert_int_equal(store_resolve(f->s, "a", id, &err), 0);
    assert_string_equal(id, "a000000000000000");
    /* Exact name beats id prefix (exact id beats both: test_resolve_exact_id_wins). */
    assert_int_equal(store_resolve(f->s, "3f2a", id, &err), 0);
    assert_string_equal(id, "a000000000000000");

    memcpy(id, "untouched-id-buf", INST_ID_LEN + 1);
    assert_int_equal(store_resolve(f->s, "3f", id, &err), -ENOTUNIQ);
    assert_string_equal(tp_err_msg(&err), "'3f' matches several instances: 3f2a9c0d1b4e5f60 "
                                          "(web-1), 3f99000000000000 (db)");
    assert_string_equal(id, "untouched-id-buf"); /* ret_* untouched on failure */

    static const char *const unknown[] = {
        "zz", "nope", "3F", "c", "", "3f2a9c0d1b4e5f600", "3f2a9c0d1b4e5f61"
    };
    for (size_t i = 0; i < ELEMENTSOF(unknown); i++) {
        _cleanup_free_ char *want = xasprintf("no such instance '%s'", unknown[i]);
        assert_int_equal(store_resolve(f->s, unknown[i], id, &err), -ENOENT);
        assert_string_equal(tp_err_msg(&err), want);
    }
}

static void
test_names_valid(void **state)
{
    static const struct {
        const char *name;
        bool ok;
    } table[] = {
        { "", false },
        { "a", true },
        { "0", true },
        { "web-1", true },
        { "a-", true },
        { "-a", false },
        { "Web", false },
        { "weB", false },
        { "a_b", false },
        { "a.b", false },
        { "a b", false },
        { "é", false },
        { "012345678901234567890123456789012345678901234567890123456789012", true },   /* 63 */
        { "0123456789012345678901234567890123456789012345678901234567890123", false }, /* 64 */
    };
    (void)state;

    assert_int_equal(strlen(table[12].name), 63);
    assert_int_equal(strlen(table[13].name), 64);
    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        if (store_name_valid(table[i].name) != table[i].ok)
            fail_msg("name '%s': expected %s", table[i].name, table[i].ok ? "valid" : "invalid");
    assert_false(store_name_valid(NULL));
}

static void
test_ids(void **state)
{
    char a[INST_ID_LEN + 1], b[INST_ID_LEN + 1];
    (void)state;

    store_new_id(a);
    store_new_id(b);
    assert_int_equal(strlen(a), INST_ID_LEN);
    assert_true(store_id_valid(a));
    assert_true(store_id_valid(b));
    assert_string_not_equal(a, b); /* 64 random bits: a collision here is a broken source */

    assert_true(store_id_valid("0123456789abcdef"));
    assert_false(store_id_valid("0123456789abcde"));
    assert_false(store_id_valid("0123456789abcdef0"));
    assert_false(store_id_valid("0123456789ABCDEF"));
    assert_false(store_id_valid("0123456789abcdeg"));
    assert_false(store_id_valid(""));
    assert_false(store_id_valid(NULL));
}

static void
test_reopen_and_wal(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL, *got = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ char *path = fs_path_join(f->dir, "torpor.db");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    r = record_new("5555555555555555", "durable", 42);
    r->vmm_start_time = UINT64_C(0x123456789a);
    insert_ok(f->s, r);
    f->s = store_close(f->s);
    assert_int_equal(store_open(f->dir, &f->s, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_records_equal(r, got);

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), STORE_SCHEMA_VERSION);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The operation journal: written with the record, read back, replaced, cleared. */
static void
test_op_journal(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *a = NULL, *got = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    a = record_new("1111111111111111", "src", 1);
    insert_ok(f->s, a);
    assert_int_equal(store_get(f->s, a->id, &got, &err), 0);
    assert_null(got->op); /* a new record has no operation in flight */
    got = inst_record_free(got);

    a->op = xstrdup("fork");
    a->op_data = xstrdup("{\"phase\":\"begun\"}");
    assert_int_equal(store_update(f->s, a, &err), 0);
    assert_int_equal(store_get(f->s, a->id, &got, &err), 0);
    assert_records_equal(a, got);
    got = inst_record_free(got);

    free(a->op_data);
    a->op_data = xstrdup("{\"phase\":\"committed\"}");
    assert_int_equal(store_update(f->s, a, &err), 0);
    assert_int_equal(store_get(f->s, a->id, &got, &err), 0);
    assert_records_equal(a, got);
    got = inst_record_free(got);

    a->op = mfree(a->op);
    a->op_data = mfree(a->op_data);
    assert_int_equal(store_update(f->s, a, &err), 0);
    assert_int_equal(store_get(f->s, a->id, &got, &err), 0);
    assert_null(got->op);
    assert_null(got->op_data);
}

/* Undo schema 5 (the ports table). */
static void
drop_ports(const char *dir)
{
    raw_exec(dir, "DROP TABLE ports", NULL, 0);
}

/* Undo schema 4 (the network columns and their indexes) and what came after. */
static void
drop_network(const char *dir)
{
    drop_ports(dir);
    raw_exec(dir, "DROP INDEX instances_by_net_ip", NULL, 0);
    raw_exec(dir, "DROP INDEX instances_by_net_mac", NULL, 0);
    raw_exec(dir, "ALTER TABLE instances DROP COLUMN net_mac", NULL, 0);
    raw_exec(dir, "ALTER TABLE instances DROP COLUMN net_prefix", NULL, 0);
    raw_exec(dir, "ALTER TABLE instances DROP COLUMN net_ip", NULL, 0);
}

/* A database of schema 1 (before the journal) opens, gains the columns, keeps its rows. */
static void
test_migrate_from_v1(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL, *got = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    r = record_new("3333333333333333", "old", 3);
    insert_ok(f->s, r);
    f->s = store_close(f->s);
    drop_network(f->dir);
    raw_exec(f->dir, "ALTER TABLE instances DROP COLUMN exit_code", NULL, 0);
    raw_exec(f->dir, "ALTER TABLE instances DROP COLUMN op_data", NULL, 0);
    raw_exec(f->dir, "ALTER TABLE instances DROP COLUMN op", NULL, 0);
    raw_exec(f->dir, "PRAGMA user_version = 1", NULL, 0);
    assert_int_equal(store_open(f->dir, &f->s, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_records_equal(r, got);
    got = inst_record_free(got);
    r->op = xstrdup("standby");
    assert_int_equal(store_update(f->s, r, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_string_equal(got->op, "standby");
}

/* Schema 2 -> 3 adds exit_code: old rows read 0, new values round-trip. */
static void
test_migrate_from_v2(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL, *got = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    r = record_new("4444444444444444", "old2", 3);
    insert_ok(f->s, r);
    f->s = store_close(f->s);
    drop_network(f->dir);
    raw_exec(f->dir, "ALTER TABLE instances DROP COLUMN exit_code", NULL, 0);
    raw_exec(f->dir, "PRAGMA user_version = 2", NULL, 0);
    assert_int_equal(store_open(f->dir, &f->s, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_int_equal(got->exit_code, 0);
    got = inst_record_free(got);
    r->exit_code = 137;
    assert_int_equal(store_update(f->s, r, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_int_equal(got->exit_code, 137);
}

/* The network lives in the row: it round-trips, is unique, and goes with the record. */
static void
test_network(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *a = NULL, *b = NULL, *c = NULL, *got = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_free_ uint32_t *used = NULL;
    size_t n = 99;

    a = record_new("5555555555555555", "na", 1);
    a->net = (struct inst_net){ .ip = 0x0a580002, .prefix = 16, .mac = { 2, 0x74, 10, 88, 0, 2 } };
    insert_ok(f->s, a);
    assert_int_equal(store_get(f->s, a->id, &got, &err), 0);
    assert_records_equal(a, got);
    got = inst_record_free(got);

    b = record_new("6666666666666666", "nb", 2); /* no network: NULLs never clash */
    c = record_new("7777777777777777", "nc", 3);
    insert_ok(f->s, b);
    insert_ok(f->s, c);
    assert_int_equal(store_net_used(f->s, &used, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(used[0], 0x0a580002);
    used = mfree(used);

    /* Another instance with the same address (or MAC) is refused, and leaves no row. */
    _cleanup_(inst_record_freep) struct inst_record *d = record_new("8888888888888888", "nd", 4);
    d->net = a->net;
    assert_int_equal(store_insert(f->s, d, &err), -EADDRINUSE);
    assert_non_null(strstr(tp_err_msg(&err), "02:74:0a:58:00:02"));
    tp_err_clear(&err);
    d->net.ip = 0x0a580003; /* the MAC still clashes */
    assert_int_equal(store_insert(f->s, d, &err), -EADDRINUSE);
    tp_err_clear(&err);
    assert_int_equal(store_get(f->s, d->id, &got, &err), -ENOENT);
    tp_err_clear(&err);

    /* Removing the instance frees its address. */
    assert_int_equal(store_delete(f->s, a->id, &err), 0);
    assert_int_equal(store_net_used(f->s, &used, &n, &err), 0);
    assert_int_equal(n, 0);
    d->net.mac[5] = 3;
    insert_ok(f->s, d);
}

/* Schema 3 -> 4 adds the network: old rows have none. */
static void
test_migrate_from_v3(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL, *got = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    r = record_new("9999999999999999", "old3", 3);
    insert_ok(f->s, r);
    f->s = store_close(f->s);
    drop_network(f->dir);
    raw_exec(f->dir, "PRAGMA user_version = 3", NULL, 0);
    assert_int_equal(store_open(f->dir, &f->s, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_records_equal(r, got);
    assert_int_equal(got->net.ip, 0);
}

/* Schema 4 -> 5 adds the ports table: old rows publish nothing, new ones can. */
static void
test_migrate_from_v4(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *r = NULL, *got = NULL, *w = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };

    r = record_new("abababababababab", "old4", 3);
    r->net = (struct inst_net){ .ip = 0x0a580002, .prefix = 16, .mac = { 2, 0x74, 10, 88, 0, 2 } };
    insert_ok(f->s, r);
    f->s = store_close(f->s);
    drop_ports(f->dir);
    raw_exec(f->dir, "PRAGMA user_version = 4", NULL, 0);
    assert_int_equal(store_open(f->dir, &f->s, &err), 0);
    assert_int_equal(store_get(f->s, r->id, &got, &err), 0);
    assert_records_equal(r, got);
    assert_int_equal(got->n_ports, 0);
    w = record_new("cdcdcdcdcdcdcdcd", "new5", 4);
    w->ports = xnew(struct net_port, 1);
    w->ports[0] = (struct net_port){ .host_ip = 0x7f000001, .host_port = 80, .guest_port = 80 };
    w->n_ports = 1;
    insert_ok(f->s, w);
}

static struct inst_record *
record_with_ports(const char *id, const char *name, int seed, const struct net_port *v, size_t n)
{
    struct inst_record *r = record_new(id, name, seed);
    r->ports = xnew(struct net_port, n);
    memcpy(r->ports, v, n * sizeof(*v));
    r->n_ports = n;
    return r;
}

/* Ports round-trip in order, a host port is one instance's (0.0.0.0 overlapping every address,
 * tcp and udp apart), a refused insert leaves nothing, and removing the instance frees them. */
static void
test_ports(void **state)
{
    struct fixture *f = *state;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    const struct net_port web[] = {
        { .host_ip = 0x7f000001, .host_port = 8080, .guest_port = 80, .proto = NET_PROTO_TCP },
        { .host_ip = 0, .host_port = 5353, .guest_port = 53, .proto = NET_PROTO_UDP },
        { .host_ip = 0x0a000001, .host_port = 2222, .guest_port = 22, .proto = NET_PROTO_TCP },
    };
    _cleanup_(inst_record_freep) struct inst_record *a =
        record_with_ports("1010101010101010", "web", 1, web, ELEMENTSOF(web));
    _cleanup_(inst_record_freep) struct inst_record *got = NULL;
    struct inst_record **all = NULL;
    size_t n = 0;

    a->cfg.net_shared = true;
    a->cfg.mem_uffd = true;
    insert_ok(f->s, a);
    assert_int_equal(store_get(f->s, a->id, &got, &err), 0);
    assert_records_equal(a, got);
    got = inst_record_free(got);
    assert_int_equal(store_list(f->s, &all, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_records_equal(a, all[0]);
    inst_record_array_free(all, n);

    static const struct {
        struct net_port p;
        const char *msg; /* NULL: no clash */
    } cases[] = {
        { { 0x7f000001, 8080, 81, NET_PROTO_TCP },
          "port 127.0.0.1:8080/tcp is already published by instance 'web'" },
        { { 0, 8080, 81, NET_PROTO_TCP },
          "port 0.0.0.0:8080/tcp overlaps 127.0.0.1:8080/tcp, published by instance 'web'" },
        { { 0x7f000002, 5353, 53, NET_PROTO_UDP },
          "port 127.0.0.2:5353/udp overlaps 0.0.0.0:5353/udp, published by instance 'web'" },
        { { 0x7f000001, 8080, 80, NET_PROTO_UDP }, NULL },
        { { 0x7f000002, 8080, 80, NET_PROTO_TCP }, NULL },
    };
    for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
        const struct net_port v[] = {
            { .host_ip = 0x7f000001, .host_port = 9000, .guest_port = 90 },
            cases[k].p,
        };
        char id[INST_ID_LEN + 1];
        snprintf(id, sizeof(id), "20202020202020%02zu", k);
        _cleanup_(inst_record_freep) struct inst_record *b =
            record_with_ports(id, "other", 2, v, ELEMENTSOF(v));
        if (!cases[k].msg) {
            insert_ok(f->s, b);
            assert_int_equal(store_delete(f->s, b->id, &err), 0);
            continue;
        }
        assert_int_equal(store_insert(f->s, b, &err), -EEXIST);
        assert_non_null(strstr(tp_err_msg(&err), cases[k].msg));
        tp_err_clear(&err);
        /* Nothing of it stays: neither the record nor its first port. */
        assert_int_equal(store_get(f->s, b->id, &got, &err), -ENOENT);
        tp_err_clear(&err);
    }
    _cleanup_(inst_record_freep) struct inst_record *c =
        record_with_ports("3030303030303030", "c", 3, web, 1);
    assert_int_equal(store_insert(f->s, c, &err), -EEXIST);
    tp_err_clear(&err);
    assert_int_equal(store_delete(f->s, a->id, &err), 0);
    insert_ok(f->s, c);
}

static void
test_newer_schema_refused(void **state)
{
    struct fixture *f = *state;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct store *s = NULL;

    raw_exec(f->dir, "PRAGMA user_version = 99", NULL, 0);
    f->s = store_close(f->s);
    assert_int_equal(store_open(f->dir, &s, &err), -EPROTONOSUPPORT);
    assert_null(s);
    assert_non_null(strstr(tp_err_msg(&err), "version 99"));
}

#define THREADS    4
#define PER_THREAD 25
struct worker {
    struct store *s;
    int index;
    int failures;
};

static void *
insert_worker(void *arg)
{
    struct worker *w = arg;

    for (int i = 0; i < PER_THREAD; i++) {
        _cleanup_(tp_err_clear) struct tp_err err = { 0 };
        char id[INST_ID_LEN + 1];
        store_new_id(id);
        _cleanup_free_ char *name = xasprintf("t%d-%d", w->index, i);
        struct inst_record r = { .name = name, .state = INST_CREATED, .created_ms = i };
        memcpy(r.id, id, sizeof(id));
        if (store_insert(w->s, &r, &err) < 0)
            w->failures++;
    }
    return NULL;
}

static void
test_concurrent_inserts(void **state)
{
    struct fixture *f = *state;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct worker w[THREADS];
    pthread_t th[THREADS];
    struct inst_record **v = NULL;
    size_t n = 0;

    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ .s = f->s, .index = i };
        assert_int_equal(pthread_create(&th[i], NULL, insert_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(store_list(f->s, &v, &n, &err), 0);
    assert_int_equal(n, THREADS * PER_THREAD);
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) {
            _cleanup_free_ char *name = xasprintf("t%d-%d", t, i);
            char id[INST_ID_LEN + 1];
            assert_int_equal(store_resolve(f->s, name, id, &err), 0);
        }
    inst_record_array_free(v, n);
}

static void
test_corrupt_rows(void **state)
{
    struct fixture *f = *state;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    _cleanup_(inst_record_freep) struct inst_record *good = NULL, *bad_json = NULL,
                                                    *bad_state = NULL, *bad_type = NULL;
    static const char *const row_json[] = { "0000000000000bad", "broken",
                                            "{\"hypervisor\": \"qemu\",", "Running" };
    static const char *const row_state[] = { "000000000000bad2", "odd-state",
                                             "{\"hypervisor\":\"qemu\",\"vcpus\":1,\"future\":[1]}",
                                             "Exploded" };
    static const char *const row_type[] = { "000000000000bad3", "bad-type",
                                            "{\"hypervisor\":\"qemu\",\"vcpus\":-1}", "paused" };
    static const char sql[] = "INSERT INTO instances (id, name, config, state, created_ms, "
                              "last_error) VALUES (?1, ?2, ?3, ?4, 10, 'earlier failure')";
    struct inst_record **v = NULL;
    size_t n = 0;

    good = record_new("1234123412341234", "good", 5);
    insert_ok(f->s, good);
    raw_exec(f->dir, sql, row_json, 4);
    raw_exec(f->dir, sql, row_state, 4);
    raw_exec(f->dir, sql, row_type, 4);

    /* Bad JSON: Unknown, zeroed config, why in last_error. */
    assert_int_equal(store_get(f->s, "0000000000000bad", &bad_json, &err), 0);
    assert_int_equal(bad_json->state, INST_UNKNOWN);
    assert_null(bad_json->cfg.hypervisor);
    assert_null(bad_json->cfg.cmd);
    assert_string_equal(bad_json->name, "broken");
    assert_non_null(bad_json->last_error);
    assert_true(strncmp(bad_json->last_error, "corrupt record: config is not JSON", 34) == 0);

    /* Unknown state string: Unknown, config intact (unknown keys are ignored). */
    assert_int_equal(store_get(f->s, "000000000000bad2", &bad_state, &err), 0);
    assert_int_equal(bad_state->state, INST_UNKNOWN);
    assert_string_equal(bad_state->cfg.hypervisor, "qemu");
    assert_int_equal(bad_state->cfg.vcpus, 1);
    assert_true(bad_state->cfg.agent); /* absent key: the default */
    assert_string_equal(bad_state->last_error, "corrupt record: unknown state 'Exploded'");

    /* Right JSON, wrong type. */
    assert_int_equal(store_get(f->s, "000000000000bad3", &bad_type, &err), 0);
    assert_int_equal(bad_type->state, INST_UNKNOWN);
    assert_null(bad_type->cfg.hypervisor);
    assert_non_null(strstr(bad_type->last_error, "'vcpus'"));

    /* A listing still works, and the bad rows can be updated and deleted. */
    assert_int_equal(store_list(f->s, &v, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(v[0]->name, "good");
    assert_int_equal(v[0]->state, INST_CREATED);
    assert_null(v[0]->last_error);
    inst_record_array_free(v, n);
    assert_int_equal(store_update(f->s, bad_state, &err), 0);
    assert_int_equal(store_delete(f->s, "0000000000000bad", &err), 0);
    assert_int_equal(store_delete(f->s, "000000000000bad2", &err), 0);
    char id[INST_ID_LEN + 1];
    assert_int_equal(store_resolve(f->s, "bad-type", id, &err), 0);
    assert_string_equal(id, "000000000000bad3");
}

/* A name equal to another instance's id cannot be inserted any more, but older databases may
 * hold one: the exact id still names its own instance (docker's order). */
static void
test_resolve_exact_id_wins(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *other = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    static const char *const legacy[] = { "b000000000000001", "b000000000000002" };
    static const char sql[] = "INSERT INTO instances (id, name, config, state, created_ms) "
                              "VALUES (?1, ?2, '{\"hypervisor\":\"qemu\"}', 'Created', 2)";
    char id[INST_ID_LEN + 1];

    other = record_new("b000000000000002", "other", 1);
    insert_ok(f->s, other);
    raw_exec(f->dir, sql, legacy, 2);

    assert_int_equal(store_resolve(f->s, "b000000000000002", id, &err), 0);
    assert_string_equal(id, "b000000000000002");
    assert_int_equal(store_resolve(f->s, "b000000000000001", id, &err), 0);
    assert_string_equal(id, "b000000000000001");
    assert_int_equal(store_resolve(f->s, "other", id, &err), 0);
    assert_string_equal(id, "b000000000000002");
}

/* Names and ids share the namespace of refs: neither may take the other's place. */
static void
test_insert_name_id_clash(void **state)
{
    struct fixture *f = *state;
    _cleanup_(inst_record_freep) struct inst_record *a = NULL, *name_is_id = NULL, *hexname = NULL,
                                                    *id_is_name = NULL, *hex_ok = NULL;
    _cleanup_(tp_err_clear) struct tp_err err = { 0 };
    struct inst_record **v = NULL;
    size_t n = 0;
    char id[INST_ID_LEN + 1];

    a = record_new("1111111111111111", "alpha", 1);
    insert_ok(f->s, a);

    /* A name equal to an existing id. */
    name_is_id = record_new("2222222222222222", "1111111111111111", 2);
    assert_int_equal(store_insert(f->s, name_is_id, &err), -EEXIST);
    assert_non_null(strstr(tp_err_msg(&err), "name '1111111111111111' is the id of"));

    /* An id equal to an existing name (an older database's, or a 2^-64 draw). */
    hexname = record_new("3333333333333333", "4444444444444444", 3);
    insert_ok(f->s, hexname);
    id_is_name = record_new("4444444444444444", "delta", 4);
    assert_int_equal(store_insert(f->s, id_is_name, &err), -EEXIST);
    assert_non_null(
        strstr(tp_err_msg(&err), "id '4444444444444444' is the name of 3333333333333333"));
    assert_int_equal(store_resolve(f->s, "4444444444444444", id, &err), 0);
    assert_string_equal(id, "3333333333333333"); /* the name still names its instance */

    /* Hex names that are no id are fine, even a prefix of one. */
    hex_ok = record_new("5555555555555555", "1111", 5);
    insert_ok(f->s, hex_ok);

    assert_int_equal(store_list(f->s, &v, &n, &err), 0);
    assert_int_equal(n, 3);
    inst_record_array_free(v, n);
}

static void
test_paths(void **state)
{
    struct inst_paths p = { 0 };
    _cleanup_free_ char *instances = paths_instances_dir("/var/lib/torpor");
    (void)state;

    assert_string_equal(instances, "/var/lib/torpor/instances");
    inst_paths_init(&p, "/var/lib/torpor", "3f2a9c0d1b4e5f60");
    assert_string_equal(p.dir, "/var/lib/torpor/instances/3f2a9c0d1b4e5f60");
    assert_string_equal(p.root_disk, "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/root.ext4");
    _cleanup_free_ char *sock = paths_instance_file(&p, "qmp.sock");
    assert_string_equal(sock, "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/qmp.sock");
    assert_string_equal(p.logs_dir, "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/logs");
    assert_string_equal(p.console_log,
                        "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/logs/console.log");
    assert_string_equal(p.vmm_log, "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/logs/vmm.log");
    assert_string_equal(p.kernel_log, "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/logs/kernel.log");
    assert_string_equal(p.snapshots, "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/snapshots");
    assert_string_equal(p.snap_latest,
                        "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/snapshots/snapshot-latest");
    assert_string_equal(p.snap_base,
                        "/var/lib/torpor/instances/3f2a9c0d1b4e5f60/snapshots/snapshot-base");
    inst_paths_clear(&p);
    assert_null(p.dir);
    assert_null(p.snap_base);
    inst_paths_clear(&p); /* idempotent */

    /* A trailing slash on the data dir does not double up. */
    inst_paths_init(&p, "/d/", "0000000000000000");
    inst_paths_clear(&p);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_roundtrip_every_field),
        T(test_update_keeps_immutable_fields),
        T(test_duplicates),
        T(test_insert_rejects_malformed),
        T(test_missing_and_delete),
        T(test_list_order),
        T(test_resolve),
        T(test_resolve_exact_id_wins),
        T(test_insert_name_id_clash),
        cmocka_unit_test(test_names_valid),
        cmocka_unit_test(test_ids),
        T(test_reopen_and_wal),
        T(test_newer_schema_refused),
        T(test_op_journal),
        T(test_migrate_from_v1),
        T(test_migrate_from_v2),
        T(test_migrate_from_v3),
        T(test_network),
        T(test_migrate_from_v4),
        T(test_ports),
        T(test_concurrent_inserts),
        T(test_corrupt_rows),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
