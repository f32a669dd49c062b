/* Instance records in SQLite: one WAL connection behind a mutex, prepared statements only. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-internal.h"
#include "store/store.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/xalloc.h"

#define DB_FILE         "torpor.db"
#define BUSY_TIMEOUT_MS 5000
#define RESOLVE_LIST    8 /* ids named in an ambiguity message before "and N more" */

/* Columns every SELECT returns, in the order row_to_record() reads them. */
#define RECORD_COLUMNS                                                                          \
    "id, name, config, state, vmm_pid, vmm_start_time, created_ms, state_changed_ms, last_op, " \
    "last_error"
/* Inserted after RECORD_COLUMNS: the guest network (store.h: inst_net). */
#define NET_COLUMNS "net_ip, net_prefix, net_mac"
/* What SELECTs read: the inserted columns, the operation journal (op, op_data), exit_code, the
 * network. */
#define SELECT_COLUMNS RECORD_COLUMNS ", op, op_data, exit_code, " NET_COLUMNS

enum stmt {
    ST_INSERT,
    ST_UPDATE,
    ST_DELETE,
    ST_GET,
    ST_LIST,
    ST_ID_BY_NAME,
    ST_ID_EXISTS,
    ST_ID_PREFIX,
    ST_NET_USED,
    ST_PORT_INSERT,
    ST_PORT_CONFLICT,
    ST_PORTS_OF,
    _ST_MAX,
};

static const char *const stmt_sql[_ST_MAX] = {
    [ST_INSERT] = "INSERT INTO instances (" RECORD_COLUMNS ", " NET_COLUMNS ") "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_UPDATE] = "UPDATE instances SET state = ?2, vmm_pid = ?3, vmm_start_time = ?4, "
                  "state_changed_ms = ?5, last_op = ?6, last_error = ?7, op = ?8, op_data = ?9, "
                  "exit_code = ?10 WHERE id = ?1",
    [ST_DELETE] = "DELETE FROM instances WHERE id = ?1",
    [ST_GET] = "SELECT " SELECT_COLUMNS " FROM instances WHERE id = ?1",
    [ST_LIST] = "SELECT " SELECT_COLUMNS " FROM instances ORDER BY created_ms, id",
    [ST_ID_BY_NAME] = "SELECT id FROM instances WHERE name = ?1",
    [ST_ID_EXISTS] = "SELECT id FROM instances WHERE id = ?1",
    /* ?1 is "<hex>*": GLOB with a bound pattern lets SQLite walk the primary-key index. */
    [ST_ID_PREFIX] = "SELECT id, name FROM instances WHERE id GLOB ?1 ORDER BY id",
    [ST_NET_USED] = "SELECT net_ip FROM instances WHERE net_ip IS NOT NULL",
    [ST_PORT_INSERT] = "INSERT INTO ports (instance_id, host_ip, host_port, proto, guest_port) "
                       "VALUES (?1, ?2, ?3, ?4, ?5)",
    /* 0.0.0.0 (host_ip 0) is every address: it overlaps any address on the same port. */
    [ST_PORT_CONFLICT] = "SELECT i.name, p.host_ip FROM ports p JOIN instances i "
                         "ON i.id = p.instance_id WHERE p.host_port = ?2 AND p.proto = ?3 "
                         "AND (p.host_ip = ?1 OR p.host_ip = 0 OR ?1 = 0) LIMIT 1",
    [ST_PORTS_OF] = "SELECT host_ip, host_port, proto, guest_port FROM ports "
                    "WHERE instance_id = ?1 ORDER BY seq",
};

struct store {
    pthread_mutex_t lock; /* guards db and st[]: a connection is used by one thread at a time */
    sqlite3 *db;
    sqlite3_stmt *st[_ST_MAX];
};

/* ---- errors ---- */

static int
sqlite_to_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EAGAIN;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_NOMEM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* SQLite's own text is the innermost frame. Call with the lock held (errmsg is per connection). */
static int
db_fail(sqlite3 *db, int rc, struct tp_err *err, const char *what)
{
    int code = sqlite_to_errno(rc);

    log_debug("sqlite: %s: %s (%d)", what, sqlite3_errmsg(db), rc);
    return tp_err_set(err, code, "%s: sqlite: %s", what, sqlite3_errmsg(db));
}

static int
db_exec(sqlite3 *db, const char *sql, struct tp_err *err)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc, err, sql);
    return 0;
}

/* ---- scoped helpers: lock, statement reset, transaction ---- */

static pthread_mutex_t *
store_lock(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    return &s->lock;
}

static void
unlockp(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}
#define STORE_LOCKED(s) _cleanup_(unlockp) _unused_ pthread_mutex_t *_locked_ = store_lock(s)

/* Leaves a cached statement ready for its next use, whatever path the caller leaves by. */
static void
stmt_resetp(sqlite3_stmt **st)
{
    if (*st) {
        sqlite3_reset(*st);
        sqlite3_clear_bindings(*st);
    }
}
#define _cleanup_stmt_ _cleanup_(stmt_resetp)

static void
stmt_finalizep(sqlite3_stmt **st)
{
    sqlite3_finalize(*st); /* NULL is a no-op */
}
#define _cleanup_stmt_finalize_ _cleanup_(stmt_finalizep)

/* tp_err_wrap() that keeps the callee's code even when err is NULL. */
static int _printf_(3, 4) wrap(struct tp_err *err, int r, const char *fmt, ...)
{
    if (!err)
        return r;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *frame = xvasprintf(fmt, ap);
    va_end(ap);
    tp_err_wrap(err, "%s", frame);
    return r;
}

struct txn {
    sqlite3 *db; /* NULL once committed or never begun */
};

static void
txn_rollbackp(struct txn *t)
{
    if (t->db)
        (void)sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
}
#define _cleanup_txn_ _cleanup_(txn_rollbackp)

static int
txn_begin(sqlite3 *db, const char *begin, struct txn *t, struct tp_err *err)
{
    int r = db_exec(db, begin, err);
    if (r < 0)
        return r;
    t->db = db;
    return 0;
}

static int
txn_commit(struct txn *t, struct tp_err *err)
{
    int r = db_exec(t->db, "COMMIT", err);
    if (r < 0)
        return r; /* the cleanup rolls back */
    t->db = NULL;
    return 0;
}

static int
bind_text(sqlite3_stmt *st, int i, const char *s)
{
    /* SQLITE_STATIC: every caller resets the statement before s goes away. */
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int
bind_int64_or_null(sqlite3_stmt *st, int i, int64_t v)
{
    return v ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

/* ---- schema ---- */

/* migrations[i] takes the schema from user_version i to i + 1, inside the caller's transaction.
 * A later version appends a function (e.g. ALTER TABLE ... ADD COLUMN with a default) and bumps
 * STORE_SCHEMA_VERSION; existing rows stay readable at every step. */
typedef int migration_fn(sqlite3 *db, struct tp_err *err);

static int
migrate_create_instances(sqlite3 *db, struct tp_err *err)
{
    return db_exec(db,
                   "CREATE TABLE instances ("
                   "  id TEXT PRIMARY KEY NOT NULL,"
                   "  name TEXT UNIQUE NOT NULL,"
                   "  config TEXT NOT NULL," /* JSON of struct inst_config */
                   "  state TEXT NOT NULL,"
                   "  vmm_pid INTEGER,"
                   "  vmm_start_time INTEGER,"
                   "  created_ms INTEGER,"
                   "  state_changed_ms INTEGER,"
                   "  last_op TEXT,"
                   "  last_error TEXT"
                   ");"
                   "CREATE INDEX instances_by_created ON instances (created_ms, id);",
                   err);
}

/* The operation journal: the lifecycle operation in flight (NULL when none) and what its
 * recovery needs to know, so a restarted daemon can finish or undo it (instance/recover.c). */
static int
migrate_add_op_journal(sqlite3 *db, struct tp_err *err)
{
    return db_exec(db,
                   "ALTER TABLE instances ADD COLUMN op TEXT;"
                   "ALTER TABLE instances ADD COLUMN op_data TEXT;",
                   err);
}

/* How the instance last stopped, as docker's exit code (wait): 0 a clean stop, 137 a kill. */
static int
migrate_add_exit_code(sqlite3 *db, struct tp_err *err)
{
    return db_exec(db, "ALTER TABLE instances ADD COLUMN exit_code INTEGER;", err);
}

/* The guest network: address, prefix and MAC live in the instance's row, so allocating one is
 * part of inserting the instance and removing the instance frees it; the unique indexes make
 * two instances with one address impossible (NULLs, no network, are not compared). */
static int
migrate_add_network(sqlite3 *db, struct tp_err *err)
{
    return db_exec(db,
                   "ALTER TABLE instances ADD COLUMN net_ip INTEGER;"
                   "ALTER TABLE instances ADD COLUMN net_prefix INTEGER;"
                   "ALTER TABLE instances ADD COLUMN net_mac TEXT;"
                   "CREATE UNIQUE INDEX instances_by_net_ip ON instances (net_ip);"
                   "CREATE UNIQUE INDEX instances_by_net_mac ON instances (net_mac);",
                   err);
}

/* Published ports: a table of their own, so that a host port taken by another instance is a
 * check inside the insert's transaction, and the unique index a guarantee (0.0.0.0 overlapping
 * other addresses is the check's part). Rows go with their instance (ON DELETE CASCADE). */
static int
migrate_add_ports(sqlite3 *db, struct tp_err *err)
{
    return db_exec(db,
                   "CREATE TABLE ports ("
                   "  seq INTEGER PRIMARY KEY," /* the order the user gave them in */
                   "  instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,"
                   "  host_ip INTEGER NOT NULL," /* host byte order; 0: every address */
                   "  host_port INTEGER NOT NULL,"
                   "  proto TEXT NOT NULL," /* tcp | udp */
                   "  guest_port INTEGER NOT NULL,"
                   "  UNIQUE (host_ip, host_port, proto)"
                   ");"
                   "CREATE INDEX ports_by_instance ON ports (instance_id);",
                   err);
}

static migration_fn *const migrations[] = {
    migrate_create_instances, /* 0 -> 1 */
    migrate_add_op_journal,   /* 1 -> 2 */
    migrate_add_exit_code,    /* 2 -> 3 */
    migrate_add_network,      /* 3 -> 4 */
    migrate_add_ports,        /* 4 -> 5 */
};
_Static_assert(ELEMENTSOF(migrations) == STORE_SCHEMA_VERSION, "one migration per schema version");

static int
read_user_version(sqlite3 *db, int *ret, struct tp_err *err)
{
    _cleanup_stmt_finalize_ sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc, err, "read schema version");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return db_fail(db, rc, err, "read schema version");
    *ret = sqlite3_column_int(st, 0);
    return 0;
}

static int
migrate(sqlite3 *db, struct tp_err *err)
{
    _cleanup_txn_ struct txn t = { 0 };
    int version = 0, r;

    /* IMMEDIATE: two processes opening a fresh database must not both create the schema. */
    r = txn_begin(db, "BEGIN IMMEDIATE", &t, err);
    if (r < 0)
        return r;
    r = read_user_version(db, &version, err);
    if (r < 0)
        return r;
    if (version > STORE_SCHEMA_VERSION)
        return tp_err_set(err, -EPROTONOSUPPORT,
                          "database schema version %d is newer than this torpor's (%d)", version,
                          STORE_SCHEMA_VERSION);
    if (version == STORE_SCHEMA_VERSION)
        return 0; /* the cleanup ends the read-only transaction */

    for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
        r = migrations[v](db, err);
        if (r < 0)
            return wrap(err, r, "migrate schema from version %d", v);
    }
    /* PRAGMA takes no bound parameters; the value is our own constant, not input. */
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
    r = db_exec(db, sql, err);
    if (r < 0)
        return r;
    return txn_commit(&t, err);
}

/* ---- open / close ---- */

static int
set_wal(sqlite3 *db, struct tp_err *err)
{
    _cleanup_stmt_finalize_ sqlite3_stmt *st = NULL;
    int rc;

    /* journal_mode answers with the mode now in effect, which is not WAL on some filesystems. */
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(db, rc, err, "enable WAL");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return db_fail(db, rc, err, "enable WAL");
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0)
        return tp_err_set(err, -EOPNOTSUPP, "enable WAL: journal mode is '%s'", mode ? mode : "");
    return 0;
}

static int
set_pragmas(sqlite3 *db, struct tp_err *err)
{
    int r = set_wal(db, err);
    if (r < 0)
        return r;

    /* In WAL mode NORMAL syncs the WAL at checkpoints, not at every commit: a crash of torpord
     * loses nothing (the WAL is written before COMMIT returns) and a power cut can only lose the
     * last few commits, never corrupt the file. Those are state changes the manager re-derives
     * from what really exists on restart, so the fsync per commit is not worth its latency. */
    r = db_exec(db, "PRAGMA synchronous = NORMAL", err);
    if (r < 0)
        return r;
    return db_exec(db, "PRAGMA foreign_keys = ON", err);
}

struct store *
store_close(struct store *s)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < _ST_MAX; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db) {
        int rc = sqlite3_close(s->db);
        if (rc != SQLITE_OK)
            log_debug("sqlite: close: %s", sqlite3_errstr(rc));
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

int
store_open(const char *data_dir, struct store **ret, struct tp_err *err)
{
    _cleanup_(store_closep) struct store *s = NULL;
    _cleanup_free_ char *path = NULL;
    int rc, r;

    r = fs_mkdir_p(data_dir, 0700, err);
    if (r < 0)
        return wrap(err, r, "open store in '%s'", data_dir);

    path = fs_path_join(data_dir, DB_FILE);
    s = xnew(struct store, 1);
    pthread_mutex_init(&s->lock, NULL);

    /* NOMUTEX: s->lock already serialises every use of the connection. SQLite opens its files
     * with O_CLOEXEC, so VMM children do not inherit them. */
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_EXRESCODE,
                         NULL);
    if (rc != SQLITE_OK) {
        if (!s->db)
            return tp_err_set(err, -ENOMEM, "open database '%s'", path);
        return wrap(err, db_fail(s->db, rc, err, "open database"), "'%s'", path);
    }
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);

    r = set_pragmas(s->db, err);
    if (r < 0)
        return wrap(err, r, "open database '%s'", path);
    r = migrate(s->db, err);
    if (r < 0)
        return wrap(err, r, "open database '%s'", path);

    for (size_t i = 0; i < _ST_MAX; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK)
            return wrap(err, db_fail(s->db, rc, err, stmt_sql[i]), "open database '%s'", path);
    }

    *ret = TAKE_PTR(s);
    return 0;
}

/* ---- rows ---- */

static char *
column_strdup(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return t ? xstrdup(t) : NULL;
}

static bool
mac_parse(const char *text, uint8_t ret[6])
{
    unsigned b[6];
    char tail;
    if (!text || sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                        &tail) != 6)
        return false;
    for (int k = 0; k < 6; k++)
        ret[k] = (uint8_t)b[k];
    return true;
}

/* Never fails on content: what cannot be read is reported in the record (see store.h). */
static struct inst_record *
row_to_record(sqlite3_stmt *st)
{
    struct inst_record *r = xnew(struct inst_record, 1);
    _cleanup_(tp_err_clear) struct tp_err perr = { 0 };
    _cleanup_free_ char *corrupt = NULL;

    const char *id = (const char *)sqlite3_column_text(st, 0);
    if (id)
        memcpy(r->id, id, strnlen(id, INST_ID_LEN));
    if (!store_id_valid(id))
        corrupt = xasprintf("malformed id '%s'", id ? id : "");

    r->name = column_strdup(st, 1);

    const char *config = (const char *)sqlite3_column_text(st, 2);
    if (inst_config_from_json(config ? config : "", &r->cfg, &perr) < 0 && !corrupt)
        corrupt = xstrdup(tp_err_msg(&perr));

    const char *state = (const char *)sqlite3_column_text(st, 3);
    r->state = inst_state_from_string(state);
    if (r->state == _INST_STATE_INVALID) {
        r->state = INST_UNKNOWN;
        if (!corrupt)
            corrupt = xasprintf("unknown state '%s'", state ? state : "");
    }

    r->vmm_pid = (pid_t)sqlite3_column_int64(st, 4);           /* NULL reads as 0 */
    r->vmm_start_time = (uint64_t)sqlite3_column_int64(st, 5); /* stored as its two's complement */
    r->created_ms = sqlite3_column_int64(st, 6);
    r->state_changed_ms = sqlite3_column_int64(st, 7);
    r->last_op = column_strdup(st, 8);
    r->last_error = column_strdup(st, 9);
    r->op = column_strdup(st, 10);
    r->op_data = column_strdup(st, 11);
    r->exit_code = (int)sqlite3_column_int64(st, 12); /* NULL (never stopped) reads as 0 */
    if (sqlite3_column_type(st, 13) != SQLITE_NULL) {
        int64_t ip = sqlite3_column_int64(st, 13), prefix = sqlite3_column_int64(st, 14);
        const char *mac = (const char *)sqlite3_column_text(st, 15);
        if (ip <= 0 || ip > UINT32_MAX || prefix < 1 || prefix > 32 ||
            !mac_parse(mac, r->net.mac)) {
            if (!corrupt)
                corrupt = xasprintf("malformed network (%" PRId64 "/%" PRId64 " %s)", ip, prefix,
                                    mac ? mac : "no MAC");
            memset(&r->net, 0, sizeof(r->net));
        } else {
            r->net.ip = (uint32_t)ip;
            r->net.prefix = (uint8_t)prefix;
        }
    }

    if (corrupt) {
        log_debug("store: instance '%s': corrupt record: %s", r->id, corrupt);
        r->state = INST_UNKNOWN;
        free(r->last_error);
        r->last_error = xasprintf("corrupt record: %s", corrupt);
    }
    return r;
}

/* ---- operations ---- */

/* Looks up one id by an exact key (ST_ID_BY_NAME / ST_ID_EXISTS). 1 = found, 0 = not, <0 err. */
static int
find_id(struct store *s, enum stmt which, const char *key, char ret_id[INST_ID_LEN + 1],
        struct tp_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->st[which];
    int rc;

    bind_text(st, 1, key);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return db_fail(s->db, rc, err, "look up instance");
    if (ret_id) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        memset(ret_id, 0, INST_ID_LEN + 1);
        if (id)
            memcpy(ret_id, id, strnlen(id, INST_ID_LEN));
    }
    return 1;
}

/* The name of the instance whose published port overlaps p, into ret (1), or 0 when none. */
static int
port_owner(struct store *s, const struct net_port *p, char **ret, uint32_t *ret_ip,
           struct tp_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_PORT_CONFLICT];
    int rc;

    sqlite3_bind_int64(st, 1, p->host_ip);
    sqlite3_bind_int64(st, 2, p->host_port);
    bind_text(st, 3, net_proto_to_string(p->proto));
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return db_fail(s->db, rc, err, "look up published ports");
    *ret = column_strdup(st, 0);
    *ret_ip = (uint32_t)sqlite3_column_int64(st, 1);
    return 1;
}

/* r's ports, inside the caller's transaction (the lock held). */
static int
insert_ports(struct store *s, const struct inst_record *r, struct tp_err *err)
{
    for (size_t k = 0; k < r->n_ports; k++) {
        const struct net_port *p = &r->ports[k];
        const char *proto = net_proto_to_string(p->proto);
        char want[NET_PORT_STR_LEN];
        _cleanup_free_ char *owner = NULL;
        uint32_t owner_ip = 0;
        int rc;

        if (!proto || !p->host_port || !p->guest_port)
            return tp_err_set(err, -EINVAL, "invalid published port %zu", k);
        net_port_format_host(p, want);
        rc = port_owner(s, p, &owner, &owner_ip, err);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            struct net_port theirs = *p;
            char have[NET_PORT_STR_LEN];
            theirs.host_ip = owner_ip;
            net_port_format_host(&theirs, have);
            if (owner_ip == p->host_ip)
                return tp_err_set(err, -EEXIST, "port %s is already published by instance '%s'",
                                  want, owner ? owner : "?");
            return tp_err_set(err, -EEXIST, "port %s overlaps %s, published by instance '%s'", want,
                              have, owner ? owner : "?");
        }
        _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_PORT_INSERT];
        bind_text(st, 1, r->id);
        sqlite3_bind_int64(st, 2, p->host_ip);
        sqlite3_bind_int64(st, 3, p->host_port);
        bind_text(st, 4, proto);
        sqlite3_bind_int64(st, 5, p->guest_port);
        rc = sqlite3_step(st);
        /* Two entries of r itself (net_ports_check refuses that before). */
        if ((rc & 0xff) == SQLITE_CONSTRAINT)
            return tp_err_set(err, -EEXIST, "port %s is given twice", want);
        if (rc != SQLITE_DONE)
            return db_fail(s->db, rc, err, "insert published port");
    }
    return 0;
}

/* Fill r->ports from the table (the lock held). A row that cannot be read makes the record
 * corrupt, as row_to_record() does for its own columns. */
static int
load_ports(struct store *s, struct inst_record *r, struct tp_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_PORTS_OF];
    size_t cap = 0;
    int rc;

    bind_text(st, 1, r->id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct net_port p = { 0 };
        int64_t ip = sqlite3_column_int64(st, 0), hp = sqlite3_column_int64(st, 1),
                gp = sqlite3_column_int64(st, 3);
        p.proto = net_proto_from_string((const char *)sqlite3_column_text(st, 2));
        if (ip < 0 || ip > UINT32_MAX || hp < 1 || hp > 65535 || gp < 1 || gp > 65535 ||
            p.proto < 0) {
            if (!r->last_error || strncmp(r->last_error, "corrupt record: ", 16) != 0) {
                free(r->last_error);
                r->last_error = xstrdup("corrupt record: malformed published port");
                r->state = INST_UNKNOWN;
            }
            continue;
        }
        p.host_ip = (uint32_t)ip;
        p.host_port = (uint16_t)hp;
        p.guest_port = (uint16_t)gp;
        if (r->n_ports == cap) {
            cap = cap ? cap * 2 : 4;
            r->ports = xrealloc(r->ports, cap * sizeof(*r->ports));
        }
        r->ports[r->n_ports++] = p;
    }
    if (rc != SQLITE_DONE)
        return db_fail(s->db, rc, err, "select published ports");
    return 0;
}

int
store_insert(struct store *s, const struct inst_record *r, struct tp_err *err)
{
    _cleanup_free_ char *config = NULL;
    int rc, k;

    if (!store_id_valid(r->id))
        return tp_err_set(err, -EINVAL, "insert instance: malformed id '%s'", r->id);
    if (!store_name_valid(r->name))
        return tp_err_set(err, -EINVAL, "insert instance: invalid name '%s'",
                          r->name ? r->name : "");
    const char *state = inst_state_to_string(r->state);
    if (!state)
        return tp_err_set(err, -EINVAL, "insert instance '%s': invalid state %d", r->name,
                          (int)r->state);
    k = inst_config_to_json(&r->cfg, &config, err);
    if (k < 0)
        return wrap(err, k, "insert instance '%s'", r->name);

    STORE_LOCKED(s);
    _cleanup_txn_ struct txn t = { 0 };
    k = txn_begin(s->db, "BEGIN IMMEDIATE", &t, err);
    if (k < 0)
        return wrap(err, k, "insert instance '%s'", r->name);

    char other[INST_ID_LEN + 1];
    k = find_id(s, ST_ID_BY_NAME, r->name, other, err);
    if (k < 0)
        return wrap(err, k, "insert instance '%s'", r->name);
    if (k > 0)
        return tp_err_set(err, -EEXIST,
                          "the name '%s' is already in use by instance %.12s: remove it (torpor "
                          "rm %s) or choose another name",
                          r->name, other, r->name);
    /* Names and ids share one namespace of refs, where an exact id wins: a name equal to an
     * id would never resolve to its own instance, and an id equal to a name would take the
     * name over from its instance. */
    if (store_id_valid(r->name)) {
        k = find_id(s, ST_ID_EXISTS, r->name, NULL, err);
        if (k < 0)
            return wrap(err, k, "insert instance '%s'", r->name);
        if (k > 0)
            return tp_err_set(err, -EEXIST,
                              "insert instance: name '%s' is the id of another instance", r->name);
    }
    k = find_id(s, ST_ID_EXISTS, r->id, NULL, err);
    if (k < 0)
        return wrap(err, k, "insert instance '%s'", r->name);
    if (k > 0)
        return tp_err_set(err, -EEXIST, "insert instance '%s': id '%s' is already taken", r->name,
                          r->id);
    k = find_id(s, ST_ID_BY_NAME, r->id, other, err);
    if (k < 0)
        return wrap(err, k, "insert instance '%s'", r->name);
    if (k > 0)
        return tp_err_set(err, -EEXIST, "insert instance '%s': id '%s' is the name of %s", r->name,
                          r->id, other);

    {
        _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_INSERT];
        bind_text(st, 1, r->id);
        bind_text(st, 2, r->name);
        bind_text(st, 3, config);
        bind_text(st, 4, state);
        bind_int64_or_null(st, 5, r->vmm_pid);
        bind_int64_or_null(st, 6, (int64_t)r->vmm_start_time);
        sqlite3_bind_int64(st, 7, r->created_ms);
        sqlite3_bind_int64(st, 8, r->state_changed_ms);
        bind_text(st, 9, r->last_op);
        bind_text(st, 10, r->last_error);
        char mac[18];
        snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", r->net.mac[0], r->net.mac[1],
                 r->net.mac[2], r->net.mac[3], r->net.mac[4], r->net.mac[5]);
        bind_int64_or_null(st, 11, r->net.ip);
        bind_int64_or_null(st, 12, r->net.ip ? r->net.prefix : 0);
        bind_text(st, 13, r->net.ip ? mac : NULL);
        rc = sqlite3_step(st);
        /* The name and id were checked above, in this transaction: a constraint now is one
         * of the network's unique indexes. */
        if ((rc & 0xff) == SQLITE_CONSTRAINT && r->net.ip)
            return tp_err_set(err, -EADDRINUSE, "insert instance '%s': address or MAC %s is taken",
                              r->name, mac);
        if (rc != SQLITE_DONE)
            return wrap(err, db_fail(s->db, rc, err, "insert"), "insert instance '%s'", r->name);
    }

    k = insert_ports(s, r, err);
    if (k < 0)
        return wrap(err, k, "insert instance '%s'", r->name);

    k = txn_commit(&t, err);
    if (k < 0)
        return wrap(err, k, "insert instance '%s'", r->name);
    return 0;
}

static int
update_locked(struct store *s, const struct inst_record *r, struct tp_err *err)
{
    const char *state = inst_state_to_string(r->state);
    int rc;

    if (!state)
        return tp_err_set(err, -EINVAL, "update instance '%s': invalid state %d", r->id,
                          (int)r->state);

    _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_UPDATE];
    bind_text(st, 1, r->id);
    bind_text(st, 2, state);
    bind_int64_or_null(st, 3, r->vmm_pid);
    bind_int64_or_null(st, 4, (int64_t)r->vmm_start_time);
    sqlite3_bind_int64(st, 5, r->state_changed_ms);
    bind_text(st, 6, r->last_op);
    bind_text(st, 7, r->last_error);
    bind_text(st, 8, r->op);
    bind_text(st, 9, r->op_data);
    bind_int64_or_null(st, 10, r->exit_code);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        return wrap(err, db_fail(s->db, rc, err, "update"), "update instance '%s'", r->id);
    if (sqlite3_changes(s->db) == 0)
        return tp_err_set(err, -ENOENT, "update instance: no such instance '%s'", r->id);
    return 0;
}

int
store_update(struct store *s, const struct inst_record *r, struct tp_err *err)
{
    STORE_LOCKED(s);
    return update_locked(s, r, err);
}

int
store_delete(struct store *s, const char *id, struct tp_err *err)
{
    int rc;

    STORE_LOCKED(s);
    _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_DELETE];
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        return wrap(err, db_fail(s->db, rc, err, "delete"), "delete instance '%s'", id);
    if (sqlite3_changes(s->db) == 0)
        return tp_err_set(err, -ENOENT, "delete instance: no such instance '%s'", id);
    return 0;
}

int
store_net_used(struct store *s, uint32_t **ret, size_t *ret_n, struct tp_err *err)
{
    uint32_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc;

    STORE_LOCKED(s);
    _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_NET_USED];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof(*v));
        }
        v[n++] = (uint32_t)sqlite3_column_int64(st, 0);
    }
    if (rc != SQLITE_DONE) {
        free(v);
        return wrap(err, db_fail(s->db, rc, err, "select"), "list network addresses");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int
store_get(struct store *s, const char *id, struct inst_record **ret, struct tp_err *err)
{
    int rc;

    STORE_LOCKED(s);
    _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_GET];
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return tp_err_set(err, -ENOENT, "no such instance '%s'", id);
    if (rc != SQLITE_ROW)
        return wrap(err, db_fail(s->db, rc, err, "select"), "get instance '%s'", id);
    _cleanup_(inst_record_freep) struct inst_record *r = row_to_record(st);
    stmt_resetp(&st);
    int k = load_ports(s, r, err);
    if (k < 0)
        return wrap(err, k, "get instance '%s'", id);
    *ret = TAKE_PTR(r);
    return 0;
}

int
store_list(struct store *s, struct inst_record ***ret, size_t *ret_n, struct tp_err *err)
{
    struct inst_record **v = xnew(struct inst_record *, 1);
    size_t n = 0, cap = 0;
    int rc;

    STORE_LOCKED(s);
    _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_LIST];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof(*v));
        }
        v[n++] = row_to_record(st);
        v[n] = NULL;
    }
    if (rc != SQLITE_DONE) {
        inst_record_array_free(v, n);
        return wrap(err, db_fail(s->db, rc, err, "select"), "list instances");
    }
    stmt_resetp(&st);
    for (size_t k = 0; k < n; k++) {
        int q = load_ports(s, v[k], err);
        if (q < 0) {
            inst_record_array_free(v, n);
            return wrap(err, q, "list instances");
        }
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static bool
is_hex_prefix(const char *ref)
{
    size_t n = strlen(ref);

    if (n == 0 || n > INST_ID_LEN)
        return false;
    return strspn(ref, "0123456789abcdef") == n;
}

/* Unique id prefix. 1 = found, 0 = none, <0 = error (-ENOTUNIQ listing the candidates). */
static int
resolve_prefix(struct store *s, const char *ref, char ret_id[INST_ID_LEN + 1], struct tp_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->st[ST_ID_PREFIX];
    _cleanup_free_ char *pattern = xasprintf("%s*", ref); /* hex only: no GLOB metacharacters */
    _cleanup_free_ char *list = NULL;
    char first[INST_ID_LEN + 1] = "";
    size_t n = 0;
    int rc;

    bind_text(st, 1, pattern);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (!id)
            continue;
        if (n == 0)
            memcpy(first, id, strnlen(id, INST_ID_LEN));
        if (n < RESOLVE_LIST) {
            char *l =
                xasprintf("%s%s%s (%s)", list ? list : "", list ? ", " : "", id, name ? name : "");
            free(list);
            list = l;
        }
        n++;
    }
    if (rc != SQLITE_DONE)
        return db_fail(s->db, rc, err, "select");
    if (n == 0)
        return 0;
    if (n > 1) {
        if (n > RESOLVE_LIST)
            return tp_err_set(err, -ENOTUNIQ, "'%s' matches several instances: %s and %zu more",
                              ref, list, n - RESOLVE_LIST);
        return tp_err_set(err, -ENOTUNIQ, "'%s' matches several instances: %s", ref, list);
    }
    memcpy(ret_id, first, sizeof(first));
    return 1;
}

int
store_resolve(struct store *s, const char *ref, char ret_id[INST_ID_LEN + 1], struct tp_err *err)
{
    char id[INST_ID_LEN + 1] = "";
    int k;

    STORE_LOCKED(s);
    /* One read transaction, so the three lookups see the same table. */
    _cleanup_txn_ struct txn t = { 0 };
    k = txn_begin(s->db, "BEGIN", &t, err);
    if (k < 0)
        return wrap(err, k, "resolve '%s'", ref);

    /* docker's order. An exact id first: it names one instance for good, while a name can
     * come and go (and older databases may hold a name equal to another instance's id). */
    k = 0;
    if (store_id_valid(ref))
        k = find_id(s, ST_ID_EXISTS, ref, id, err);
    if (k == 0)
        k = find_id(s, ST_ID_BY_NAME, ref, id, err);
    if (k == 0 && is_hex_prefix(ref))
        k = resolve_prefix(s, ref, id, err);
    if (k < 0)
        return k;
    if (k == 0)
        return tp_err_set(err, -ENOENT, "no such instance '%s'", ref);

    k = txn_commit(&t, err);
    if (k < 0)
        return wrap(err, k, "resolve '%s'", ref);
    memcpy(ret_id, id, sizeof(id));
    return 0;
}
