/* The history writer: a bounded queue of plain records, drained by one thread into SQLite in
 * batched transactions (see history.h for the contract). */
#include "history/history.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *const history_table_names[] = {"orders",    "trades", "accounts", "settlements",
                                           "transfers", "ticks",  "klines",   NULL};

/* Schema version 3: version 2 (issue #8 performance work) with two more trade columns. What
 * each choice buys:
 *
 * The tables keyed by a natural key are WITHOUT ROWID, clustered on that key: one b-tree per
 * table instead of a rowid table plus the key's separate unique index, so every insert touches
 * one b-tree fewer. trade_id ("T<20 digits>") and order_id ("O<20 digits>") grow with the
 * journal, and ticks are keyed by instrument then time, so inserts land at a few right edges.
 * Every natural key keeps its columns: INSERT OR IGNORE still de-duplicates the records of a
 * command replayed after a crash.
 *
 * orders has no index by account: no query the server runs reads orders by account, and with
 * 1,000 accounts each insert into it dirtied a different page; dropping it took the writer from
 * ~125,000 to ~235,000 rows/s (docs/BENCHMARKS.md, "History store"). Ad-hoc SQL on orders by
 * account scans the table.
 *
 * trades_account_cover holds volume, commission and close_profit: the trades page's COUNT/SUM
 * totals for an account (and the server's close_profit sum) are an index-only range scan
 * instead of one table page per trade (the trades of many accounts are interleaved in time).
 *
 * trades_instrument_cover(instrument_id, ts_ns, trade_id, is_taker, direction, price, volume)
 * replaces trades_instrument_ts: the OHLCV time series reads it alone, and reports grouping
 * trades by instrument/direction/price scan it instead of the wider table (GROUP BY over 1M
 * trades: 740 -> 480 ms). An index ordered by (instrument_id, direction) would spare that
 * GROUP BY its sort (119 ms) but costs 20% of the insert rate of trade rows (10% of the server's
 * mix); not taken, the insert target has the smaller margin.
 *
 * Files created with version 1 keep their rowid tables; history_open gives them version 2's
 * indexes (migrate_v1_sql), and version 2 files get the trade columns of version 3
 * (migrate_v2_sql). */
static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', 3), ('last_seq', 0);"
    "CREATE TABLE IF NOT EXISTS orders("
    " order_id TEXT NOT NULL, account_id TEXT NOT NULL, instrument_id TEXT NOT NULL,"
    " direction TEXT, \"offset\" TEXT, price_type TEXT, limit_price REAL,"
    " volume_orign INTEGER, volume_left INTEGER NOT NULL, status TEXT NOT NULL,"
    " ts_ns INTEGER NOT NULL, journal_seq INTEGER NOT NULL,"
    " PRIMARY KEY(order_id, journal_seq, status, volume_left)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS trades("
    " trade_id TEXT NOT NULL PRIMARY KEY, order_id TEXT NOT NULL, exchange_trade_id TEXT,"
    " account_id TEXT NOT NULL, instrument_id TEXT NOT NULL, direction TEXT, \"offset\" TEXT,"
    " price REAL NOT NULL, volume INTEGER NOT NULL, commission REAL, close_profit REAL,"
    " is_taker INTEGER, ts_ns INTEGER NOT NULL, trading_day TEXT,"
    " journal_seq INTEGER NOT NULL, exchange_order_id TEXT, is_liquidation INTEGER) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS trades_account_cover"
    " ON trades(account_id, ts_ns, trade_id, volume, commission, close_profit);"
    "CREATE INDEX IF NOT EXISTS trades_instrument_cover"
    " ON trades(instrument_id, ts_ns, trade_id, is_taker, direction, price, volume);"
    "CREATE TABLE IF NOT EXISTS accounts("
    " account_id TEXT NOT NULL, ts_ns INTEGER NOT NULL, trading_day TEXT,"
    " balance REAL, available REAL, margin REAL, position_profit REAL, close_profit REAL,"
    " commission REAL, risk_ratio REAL, reason TEXT NOT NULL, journal_seq INTEGER NOT NULL,"
    " PRIMARY KEY(account_id, ts_ns, reason)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS accounts_day ON accounts(account_id, trading_day, ts_ns);"
    "CREATE TABLE IF NOT EXISTS settlements("
    " settlement_date TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, total_accounts INTEGER,"
    " settled_accounts INTEGER, failed_accounts INTEGER, force_closed_accounts TEXT,"
    " total_commission REAL, total_profit REAL, journal_seq INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS transfers("
    " txn_id TEXT NOT NULL PRIMARY KEY, account_id TEXT NOT NULL, kind TEXT NOT NULL,"
    " amount REAL, balance_before REAL, balance_after REAL, status TEXT, method TEXT,"
    " ts_ns INTEGER NOT NULL, trading_day TEXT, journal_seq INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS transfers_account_ts ON transfers(account_id, ts_ns);"
    "CREATE TABLE IF NOT EXISTS ticks("
    " instrument_id TEXT NOT NULL, ts_ns INTEGER NOT NULL, price REAL, volume INTEGER,"
    " open_interest INTEGER, journal_seq INTEGER NOT NULL,"
    " PRIMARY KEY(instrument_id, ts_ns, journal_seq)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS klines("
    " instrument_id TEXT NOT NULL, period_s INTEGER NOT NULL, start_ms INTEGER NOT NULL,"
    " open REAL, high REAL, low REAL, close REAL, volume INTEGER, amount REAL,"
    " open_oi INTEGER, close_oi INTEGER, journal_seq INTEGER NOT NULL,"
    " PRIMARY KEY(instrument_id, period_s, start_ms)) WITHOUT ROWID;";

/* A version 1 file: its tables stay as they are (same columns, same natural keys); the trades
 * indexes become version 2's. Runs once, in one transaction, before the schema script. */
static const char *const migrate_v1_sql =
    "BEGIN IMMEDIATE;"
    "DROP INDEX IF EXISTS orders_account_ts;"
    "DROP INDEX IF EXISTS trades_account_ts;"
    "DROP INDEX IF EXISTS trades_instrument_ts;"
    "CREATE INDEX IF NOT EXISTS trades_account_cover"
    " ON trades(account_id, ts_ns, trade_id, volume, commission, close_profit);"
    "CREATE INDEX IF NOT EXISTS trades_instrument_cover"
    " ON trades(instrument_id, ts_ns, trade_id, is_taker, direction, price, volume);"
    "UPDATE meta SET value = 2 WHERE key = 'schema_version';"
    "COMMIT;";

/* A version 2 file: trades gain the exchange order id and the forced-close flag, at the end of
 * the row as in a new file (rows written before stay NULL there: not recorded). Runs once, in
 * one transaction, after the schema script. */
static const char *const migrate_v2_sql = "BEGIN IMMEDIATE;"
                                          "ALTER TABLE trades ADD COLUMN exchange_order_id TEXT;"
                                          "ALTER TABLE trades ADD COLUMN is_liquidation INTEGER;"
                                          "UPDATE meta SET value = 3 WHERE key = 'schema_version';"
                                          "COMMIT;";

enum history_kind {
    HK_ORDER = 0,
    HK_TRADE,
    HK_ACCOUNT,
    HK_SETTLEMENT,
    HK_TRANSFER,
    HK_TICK,
    HK_KLINE,
    HK_COUNT, /* number of insert statements */
    HK_MARK = HK_COUNT,
};

static const char *const insert_sql[HK_COUNT] = {
    "INSERT OR IGNORE INTO orders(order_id, account_id, instrument_id, direction, \"offset\","
    " price_type, limit_price, volume_orign, volume_left, status, ts_ns, journal_seq)"
    " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
    "INSERT OR IGNORE INTO trades(trade_id, order_id, exchange_trade_id, account_id,"
    " instrument_id, direction, \"offset\", price, volume, commission, close_profit, is_taker,"
    " ts_ns, trading_day, journal_seq, exchange_order_id, is_liquidation)"
    " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "INSERT OR IGNORE INTO accounts(account_id, ts_ns, trading_day, balance, available, margin,"
    " position_profit, close_profit, commission, risk_ratio, reason, journal_seq)"
    " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
    "INSERT OR IGNORE INTO settlements(settlement_date, ts_ns, total_accounts,"
    " settled_accounts, failed_accounts, force_closed_accounts, total_commission, total_profit,"
    " journal_seq) VALUES(?,?,?,?,?,?,?,?,?)",
    "INSERT OR IGNORE INTO transfers(txn_id, account_id, kind, amount, balance_before,"
    " balance_after, status, method, ts_ns, trading_day, journal_seq)"
    " VALUES(?,?,?,?,?,?,?,?,?,?,?)",
    "INSERT OR IGNORE INTO ticks(instrument_id, ts_ns, price, volume, open_interest,"
    " journal_seq) VALUES(?,?,?,?,?,?)",
    "INSERT OR IGNORE INTO klines(instrument_id, period_s, start_ms, open, high, low, close,"
    " volume, amount, open_oi, close_oi, journal_seq) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
};

typedef struct history_entry {
    int kind;
    union {
        history_order_rec ord;
        history_trade_rec trd;
        history_account_rec acct;
        history_settlement_rec stl; /* force_closed_accounts owned (malloc) */
        history_transfer_rec xfer;
        history_tick_rec tick;
        history_kline_rec kline;
        uint64_t mark;
    } u;
} history_entry;

struct history_store {
    char path[512];
    history_options opt;

    /* SQLite writer connection: the writer thread, prune and checkpoint take db_lock. */
    sqlite3 *db;
    pthread_mutex_t db_lock;
    sqlite3_stmt *ins[HK_COUNT];
    sqlite3_stmt *set_seq;

    /* queue: entries [tail, head) are filled; the writer reads them in place and advances tail
     * only after their transaction committed. */
    pthread_mutex_t mu;
    pthread_cond_t not_empty; /* writer waits */
    pthread_cond_t not_full;  /* producer waits */
    pthread_cond_t progress;  /* flush waits */
    history_entry *ring;
    size_t cap;
    uint64_t head, tail;
    int writer_wait;   /* 0 running, 1 waiting for any record, 2 lingering for a full batch */
    int flush_waiters; /* flushes in progress: the writer stops lingering */
    int closing;
    int writer_done;

    uint64_t applied_seq; /* committed in meta */
    uint64_t max_seen_seq;
    uint64_t rewound_from; /* last_seq before history_open rewound the file, or 0 */

    uint64_t inserted, skipped_replayed, ignored_duplicates, submit_full, batches, write_errors;
    size_t dropped_at_close;
    char last_error[256];

    pthread_t thread;

    /* The background checkpointer: copies the WAL into the database on its own connection and
     * thread, so the writer thread spends its time on inserts (see wal_hook). */
    pthread_t ck_thread;
    int ck_started;
    pthread_mutex_t ck_mu;
    pthread_cond_t ck_cond;
    int ck_wanted, ck_stop;
};

/* ---- small helpers ---- */

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b) {
    if (err && errlen) snprintf(err, errlen, fmt, a, b ? b : "");
}

static struct timespec deadline_after_ms(long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cond_init_monotonic(pthread_cond_t *c) {
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) return -1;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Records the SQLite error of the writer connection (mu not held by the caller). */
static void note_error(history_store *h, const char *what, int rc) {
    pthread_mutex_lock(&h->mu);
    snprintf(h->last_error, sizeof h->last_error, "%s: %s (%d)", what,
             h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(rc), rc);
    pthread_mutex_unlock(&h->mu);
}

static uint64_t entry_seq(const history_entry *e) {
    switch (e->kind) {
        case HK_ORDER:
            return e->u.ord.journal_seq;
        case HK_TRADE:
            return e->u.trd.journal_seq;
        case HK_ACCOUNT:
            return e->u.acct.journal_seq;
        case HK_SETTLEMENT:
            return e->u.stl.journal_seq;
        case HK_TRANSFER:
            return e->u.xfer.journal_seq;
        case HK_TICK:
            return e->u.tick.journal_seq;
        case HK_KLINE:
            return e->u.kline.journal_seq;
        default:
            return e->u.mark;
    }
}

/* ---- binding ---- */

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void bind_i64(sqlite3_stmt *st, int i, int64_t v) {
    sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

static void bind_real(sqlite3_stmt *st, int i, double v) {
    sqlite3_bind_double(st, i, v);
}

static void bind_entry(sqlite3_stmt *st, const history_entry *e) {
    switch (e->kind) {
        case HK_ORDER: {
            const history_order_rec *r = &e->u.ord;
            bind_text(st, 1, r->order_id);
            bind_text(st, 2, r->account_id);
            bind_text(st, 3, r->instrument_id);
            bind_text(st, 4, r->direction);
            bind_text(st, 5, r->offset);
            bind_text(st, 6, r->price_type);
            bind_real(st, 7, r->limit_price);
            bind_i64(st, 8, r->volume_orign);
            bind_i64(st, 9, r->volume_left);
            bind_text(st, 10, r->status);
            bind_i64(st, 11, r->ts_ns);
            bind_i64(st, 12, (int64_t)r->journal_seq);
            break;
        }
        case HK_TRADE: {
            const history_trade_rec *r = &e->u.trd;
            bind_text(st, 1, r->trade_id);
            bind_text(st, 2, r->order_id);
            bind_text(st, 3, r->exchange_trade_id);
            bind_text(st, 4, r->account_id);
            bind_text(st, 5, r->instrument_id);
            bind_text(st, 6, r->direction);
            bind_text(st, 7, r->offset);
            bind_real(st, 8, r->price);
            bind_i64(st, 9, r->volume);
            bind_real(st, 10, r->commission);
            bind_real(st, 11, r->close_profit);
            bind_i64(st, 12, r->is_taker ? 1 : 0);
            bind_i64(st, 13, r->ts_ns);
            bind_text(st, 14, r->trading_day);
            bind_i64(st, 15, (int64_t)r->journal_seq);
            bind_text(st, 16, r->exchange_order_id);
            bind_i64(st, 17, r->is_liquidation ? 1 : 0);
            break;
        }
        case HK_ACCOUNT: {
            const history_account_rec *r = &e->u.acct;
            bind_text(st, 1, r->account_id);
            bind_i64(st, 2, r->ts_ns);
            bind_text(st, 3, r->trading_day);
            bind_real(st, 4, r->balance);
            bind_real(st, 5, r->available);
            bind_real(st, 6, r->margin);
            bind_real(st, 7, r->position_profit);
            bind_real(st, 8, r->close_profit);
            bind_real(st, 9, r->commission);
            bind_real(st, 10, r->risk_ratio);
            bind_text(st, 11, r->reason);
            bind_i64(st, 12, (int64_t)r->journal_seq);
            break;
        }
        case HK_SETTLEMENT: {
            const history_settlement_rec *r = &e->u.stl;
            bind_text(st, 1, r->settlement_date);
            bind_i64(st, 2, r->ts_ns);
            bind_i64(st, 3, r->total_accounts);
            bind_i64(st, 4, r->settled_accounts);
            bind_i64(st, 5, r->failed_accounts);
            bind_text(st, 6, r->force_closed_accounts ? r->force_closed_accounts : "[]");
            bind_real(st, 7, r->total_commission);
            bind_real(st, 8, r->total_profit);
            bind_i64(st, 9, (int64_t)r->journal_seq);
            break;
        }
        case HK_TRANSFER: {
            const history_transfer_rec *r = &e->u.xfer;
            bind_text(st, 1, r->txn_id);
            bind_text(st, 2, r->account_id);
            bind_text(st, 3, r->kind);
            bind_real(st, 4, r->amount);
            bind_real(st, 5, r->balance_before);
            bind_real(st, 6, r->balance_after);
            bind_text(st, 7, r->status);
            bind_text(st, 8, r->method);
            bind_i64(st, 9, r->ts_ns);
            bind_text(st, 10, r->trading_day);
            bind_i64(st, 11, (int64_t)r->journal_seq);
            break;
        }
        case HK_TICK: {
            const history_tick_rec *r = &e->u.tick;
            bind_text(st, 1, r->instrument_id);
            bind_i64(st, 2, r->ts_ns);
            bind_real(st, 3, r->price);
            bind_i64(st, 4, r->volume);
            bind_i64(st, 5, r->open_interest);
            bind_i64(st, 6, (int64_t)r->journal_seq);
            break;
        }
        case HK_KLINE: {
            const history_kline_rec *r = &e->u.kline;
            bind_text(st, 1, r->instrument_id);
            bind_i64(st, 2, r->period_s);
            bind_i64(st, 3, r->start_ms);
            bind_real(st, 4, r->open);
            bind_real(st, 5, r->high);
            bind_real(st, 6, r->low);
            bind_real(st, 7, r->close);
            bind_i64(st, 8, r->volume);
            bind_real(st, 9, r->amount);
            bind_i64(st, 10, r->open_oi);
            bind_i64(st, 11, r->close_oi);
            bind_i64(st, 12, (int64_t)r->journal_seq);
            break;
        }
        default:
            break;
    }
}

/* ---- the writer ---- */

typedef struct batch_result {
    uint64_t applied_seq, max_seen_seq;
    uint64_t inserted, skipped, duplicates;
} batch_result;

/* Writes entries [start, start + n) in one transaction. Called with db_lock held, mu not held. */
static int write_batch(history_store *h, uint64_t start, size_t n, uint64_t applied,
                       uint64_t max_seen, batch_result *res) {
    memset(res, 0, sizeof *res);
    uint64_t complete = applied;
    int rc = sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        note_error(h, "begin", rc);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const history_entry *e = &h->ring[(start + i) % h->cap];
        uint64_t seq = entry_seq(e);
        if (e->kind == HK_MARK) {
            if (seq > complete) complete = seq;
            if (seq > max_seen) max_seen = seq;
            continue;
        }
        if (seq > 0 && seq <= applied) {
            res->skipped++;
            continue;
        }
        if (seq > max_seen) {
            /* records arrive in journal order: every earlier command is complete */
            if (seq - 1 > complete) complete = seq - 1;
            max_seen = seq;
        }
        sqlite3_stmt *st = h->ins[e->kind];
        bind_entry(st, e);
        rc = sqlite3_step(st);
        sqlite3_reset(st); /* every parameter is bound again for the next record */
        if (rc != SQLITE_DONE) {
            note_error(h, "insert", rc);
            sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (sqlite3_changes(h->db) > 0)
            res->inserted++;
        else
            res->duplicates++;
    }
    if (complete > applied) {
        sqlite3_bind_int64(h->set_seq, 1, (sqlite3_int64)complete);
        rc = sqlite3_step(h->set_seq);
        sqlite3_reset(h->set_seq);
        if (rc != SQLITE_DONE) {
            note_error(h, "meta", rc);
            sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    rc = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        note_error(h, "commit", rc);
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    res->applied_seq = complete;
    res->max_seen_seq = max_seen;
    return SQLITE_OK;
}

static void release_entries(history_store *h, uint64_t start, size_t n) {
    for (size_t i = 0; i < n; i++) {
        history_entry *e = &h->ring[(start + i) % h->cap];
        if (e->kind == HK_SETTLEMENT) {
            free((char *)e->u.stl.force_closed_accounts);
            e->u.stl.force_closed_accounts = NULL;
        }
    }
}

static void *writer_main(void *arg) {
    history_store *h = arg;
    int failures = 0;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->head == h->tail && !h->closing) {
            h->writer_wait = 1;
            pthread_cond_wait(&h->not_empty, &h->mu);
        }
        h->writer_wait = 0;
        if (h->head == h->tail) break; /* closing and drained */
        if (!h->closing && h->flush_waiters == 0 && failures == 0 &&
            h->head - h->tail < (uint64_t)h->opt.batch_max) {
            struct timespec until = deadline_after_ms(h->opt.batch_ms);
            while (!h->closing && h->flush_waiters == 0 &&
                   h->head - h->tail < (uint64_t)h->opt.batch_max) {
                h->writer_wait = 2;
                if (pthread_cond_timedwait(&h->not_empty, &h->mu, &until) == ETIMEDOUT) break;
            }
            h->writer_wait = 0;
        }
        uint64_t start = h->tail;
        size_t n = (size_t)(h->head - h->tail);
        if (n > (size_t)h->opt.batch_max) n = (size_t)h->opt.batch_max;
        uint64_t applied = h->applied_seq, max_seen = h->max_seen_seq;
        pthread_mutex_unlock(&h->mu);

        batch_result res;
        pthread_mutex_lock(&h->db_lock);
        int rc = write_batch(h, start, n, applied, max_seen, &res);
        pthread_mutex_unlock(&h->db_lock);
        if (rc == SQLITE_OK) release_entries(h, start, n);

        pthread_mutex_lock(&h->mu);
        if (rc == SQLITE_OK) {
            failures = 0;
            h->tail += n;
            h->applied_seq = res.applied_seq;
            h->max_seen_seq = res.max_seen_seq;
            h->inserted += res.inserted;
            h->skipped_replayed += res.skipped;
            h->ignored_duplicates += res.duplicates;
            h->batches++;
            pthread_cond_broadcast(&h->not_full);
            pthread_cond_broadcast(&h->progress);
        } else {
            h->write_errors++;
            failures++;
            if (h->closing && failures >= 30) break; /* give up: close reports the loss */
            long backoff = failures < 10 ? 10L * failures : 100L;
            pthread_mutex_unlock(&h->mu);
            sleep_ms(backoff);
            pthread_mutex_lock(&h->mu);
        }
    }
    h->dropped_at_close = (size_t)(h->head - h->tail);
    if (h->dropped_at_close) release_entries(h, h->tail, h->dropped_at_close);
    h->tail = h->head;
    h->writer_done = 1;
    pthread_cond_broadcast(&h->progress);
    pthread_cond_broadcast(&h->not_full);
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* ---- open / close ---- */

static int exec_pragma_text(sqlite3 *db, const char *sql, char *out, size_t outlen) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, outlen, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        if (outlen) out[0] = 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int64_t query_i64(sqlite3 *db, const char *sql, int64_t dflt) {
    sqlite3_stmt *st = NULL;
    int64_t v = dflt;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return dflt;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* ---- checkpoints ---- */

/* WAL size (in pages) at which the writer asks the checkpointer for a pass, and at which it
 * checkpoints by itself. A passive checkpoint running beside the writer copies the frames
 * committed so far, but the WAL can only start over from its beginning when a checkpoint has
 * copied everything at the moment a write transaction begins, which a writer that never pauses
 * rarely gives it: past CKPT_INLINE_PAGES the writer checkpoints between two batches (cheap by
 * then: the checkpointer has copied most frames), so the WAL stays bounded even when the
 * checkpointer thread gets no CPU. */
#define CKPT_BACKGROUND_PAGES 8192
#define CKPT_INLINE_PAGES 65536

/* Called by SQLite on the writer thread after each commit (db_lock held). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages) {
    history_store *h = arg;
    if (pages >= CKPT_INLINE_PAGES || (pages >= CKPT_BACKGROUND_PAGES && !h->ck_started)) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else if (pages >= CKPT_BACKGROUND_PAGES) {
        pthread_mutex_lock(&h->ck_mu);
        h->ck_wanted = 1;
        pthread_cond_signal(&h->ck_cond);
        pthread_mutex_unlock(&h->ck_mu);
    }
    return SQLITE_OK;
}

static void *checkpointer_main(void *arg) {
    history_store *h = arg;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(h->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        /* the writer then checkpoints by itself at CKPT_INLINE_PAGES */
        pthread_mutex_lock(&h->mu);
        snprintf(h->last_error, sizeof h->last_error, "background checkpointer: cannot open: %s",
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        pthread_mutex_unlock(&h->mu);
        sqlite3_close(db);
        return NULL;
    }
    pthread_mutex_lock(&h->ck_mu);
    for (;;) {
        while (!h->ck_wanted && !h->ck_stop)
            pthread_cond_wait(&h->ck_cond, &h->ck_mu);
        if (h->ck_stop) break;
        h->ck_wanted = 0;
        pthread_mutex_unlock(&h->ck_mu);
        /* SQLITE_BUSY (another checkpoint is running) is harmless: the next commit asks again */
        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            pthread_mutex_lock(&h->mu);
            snprintf(h->last_error, sizeof h->last_error, "background checkpoint: %s (%d)",
                     sqlite3_errmsg(db), rc);
            pthread_mutex_unlock(&h->mu);
        }
        pthread_mutex_lock(&h->ck_mu);
    }
    pthread_mutex_unlock(&h->ck_mu);
    sqlite3_close(db);
    return NULL;
}

static void stop_checkpointer(history_store *h) {
    if (!h->ck_started) return;
    pthread_mutex_lock(&h->ck_mu);
    h->ck_stop = 1;
    pthread_cond_signal(&h->ck_cond);
    pthread_mutex_unlock(&h->ck_mu);
    pthread_join(h->ck_thread, NULL);
    h->ck_started = 0;
}

static void close_db(history_store *h) {
    for (int i = 0; i < HK_COUNT; i++)
        sqlite3_finalize(h->ins[i]);
    sqlite3_finalize(h->set_seq);
    if (h->db) {
        sqlite3_exec(h->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close(h->db);
    }
    h->db = NULL;
}

static void destroy(history_store *h) {
    stop_checkpointer(h); /* before the final TRUNCATE checkpoint, which it would make busy */
    close_db(h);
    pthread_mutex_destroy(&h->ck_mu);
    pthread_cond_destroy(&h->ck_cond);
    pthread_mutex_destroy(&h->db_lock);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->not_empty);
    pthread_cond_destroy(&h->not_full);
    pthread_cond_destroy(&h->progress);
    free(h->ring);
    free(h);
}

/* Runs sql (one transaction) when the file is at schema version `from`. False, with the reason
 * in err, when that fails. */
static bool upgrade(sqlite3 *db, int64_t from, const char *sql, const char *path, char *err,
                    size_t errlen) {
    if (query_i64(db, "SELECT value FROM meta WHERE key='schema_version'", 0) != from) return true;
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK) return true;
    set_err(err, errlen, "history: %s: cannot upgrade the schema: %s", path, sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return false;
}

/* Removes every record of the commands after seq, in one transaction. */
static int rewind_file(sqlite3 *db, uint64_t seq) {
    static const char *const tables[] = {"orders",    "trades", "accounts", "settlements",
                                         "transfers", "ticks",  "klines"};
    char sql[160];
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof tables / sizeof tables[0]; i++) {
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE journal_seq > %llu", tables[i],
                 (unsigned long long)seq);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK) {
        snprintf(sql, sizeof sql, "UPDATE meta SET value = %llu WHERE key = 'last_seq'",
                 (unsigned long long)seq);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    return rc;
}

history_store *history_open(const char *path, const history_options *opts, char *err,
                            size_t errlen) {
    if (!path || !*path) {
        set_err(err, errlen, "%s%s", "history: no path given", NULL);
        return NULL;
    }
    history_store *h = calloc(1, sizeof *h);
    if (!h) {
        set_err(err, errlen, "%s%s", "history: out of memory", NULL);
        return NULL;
    }
    snprintf(h->path, sizeof h->path, "%s", path);
    h->opt.queue_capacity = 131072;
    h->opt.batch_max = 65536;
    h->opt.batch_ms = 200;
    h->opt.submit_timeout_ms = 1000;
    if (opts) {
        if (opts->queue_capacity) h->opt.queue_capacity = opts->queue_capacity;
        if (opts->batch_max > 0) h->opt.batch_max = opts->batch_max;
        if (opts->batch_ms > 0) h->opt.batch_ms = opts->batch_ms;
        if (opts->submit_timeout_ms > 0) h->opt.submit_timeout_ms = opts->submit_timeout_ms;
    }
    if (h->opt.queue_capacity < 16) h->opt.queue_capacity = 16;
    if ((size_t)h->opt.batch_max > h->opt.queue_capacity)
        h->opt.batch_max = (int)h->opt.queue_capacity;
    h->cap = h->opt.queue_capacity;
    pthread_mutex_init(&h->db_lock, NULL);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->ck_mu, NULL);
    pthread_cond_init(&h->ck_cond, NULL);
    cond_init_monotonic(&h->not_empty);
    cond_init_monotonic(&h->not_full);
    cond_init_monotonic(&h->progress);
    h->ring = calloc(h->cap, sizeof *h->ring);
    if (!h->ring) {
        set_err(err, errlen, "%s%s", "history: out of memory for the queue", NULL);
        destroy(h);
        return NULL;
    }

    int rc = sqlite3_open_v2(
        path, &h->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "history: cannot open %s: %s", path,
                h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(rc));
        destroy(h);
        return NULL;
    }
    sqlite3_busy_timeout(h->db, 5000);
    char mode[32];
    rc = sqlite3_exec(h->db, "PRAGMA auto_vacuum=INCREMENTAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = exec_pragma_text(h->db, "PRAGMA journal_mode=WAL", mode, sizeof mode);
    if (rc == SQLITE_OK && strcmp(mode, "wal") != 0) {
        set_err(err, errlen, "history: %s: cannot use WAL journal mode (got %s)", path, mode);
        destroy(h);
        return NULL;
    }
    /* synchronous=NORMAL in WAL mode: a commit appends its frames to the WAL without fsync; the
     * WAL is synced only before a checkpoint copies it into the database. Safe for exactly-once
     * because the catch-up marker (meta.last_seq) is written in the same transaction as the rows
     * it covers, and a WAL transaction is all-or-nothing: after kill -9 every committed frame is
     * in the OS page cache and is read back; after a power loss the WAL's checksums end the log
     * at the last intact commit, so the marker and its rows are lost together and the server
     * replays them from the journal. It never runs ahead of the rows. (OFF would also skip the
     * sync before a checkpoint, and a power loss during one could corrupt the file.)
     * Checkpoints: see wal_hook. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h->db,
                          "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-131072; PRAGMA "
                          "mmap_size=268435456;",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK && !upgrade(h->db, 1, migrate_v1_sql, path, err, errlen)) {
        destroy(h);
        return NULL;
    }
    if (rc == SQLITE_OK) rc = sqlite3_exec(h->db, schema_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK && !upgrade(h->db, 2, migrate_v2_sql, path, err, errlen)) {
        destroy(h);
        return NULL;
    }
    for (int i = 0; rc == SQLITE_OK && i < HK_COUNT; i++)
        rc = sqlite3_prepare_v3(h->db, insert_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &h->ins[i],
                                NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(h->db, "UPDATE meta SET value = ? WHERE key = 'last_seq'", -1,
                                SQLITE_PREPARE_PERSISTENT, &h->set_seq, NULL);
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "history: %s: %s", path, sqlite3_errmsg(h->db));
        destroy(h);
        return NULL;
    }
    h->applied_seq = (uint64_t)query_i64(h->db, "SELECT value FROM meta WHERE key='last_seq'", 0);
    if (opts && opts->rewind && h->applied_seq > opts->rewind_to) {
        if (rewind_file(h->db, opts->rewind_to) != SQLITE_OK) {
            if (err && errlen)
                snprintf(err, errlen,
                         "history: %s: cannot remove the records after command %llu: %s", path,
                         (unsigned long long)opts->rewind_to, sqlite3_errmsg(h->db));
            sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
            destroy(h);
            return NULL;
        }
        h->rewound_from = h->applied_seq;
        h->applied_seq = opts->rewind_to;
    }
    h->max_seen_seq = h->applied_seq;
    /* replaces the automatic checkpoint; without the checkpointer thread the hook checkpoints
     * inline */
    sqlite3_wal_hook(h->db, wal_hook, h);
    h->ck_started = pthread_create(&h->ck_thread, NULL, checkpointer_main, h) == 0;
    if (pthread_create(&h->thread, NULL, writer_main, h) != 0) {
        set_err(err, errlen, "%s%s", "history: cannot start the writer thread", NULL);
        destroy(h);
        return NULL;
    }
    return h;
}

size_t history_close(history_store *h) {
    if (!h) return 0;
    pthread_mutex_lock(&h->mu);
    h->closing = 1;
    pthread_cond_broadcast(&h->not_empty);
    pthread_cond_broadcast(&h->not_full);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    size_t lost = h->dropped_at_close;
    if (lost)
        fprintf(stderr, "history: %zu records could not be written to %s: %s\n", lost, h->path,
                h->last_error);
    destroy(h);
    return lost;
}

/* ---- submit ---- */

#define TERMINATE(field) ((field)[sizeof(field) - 1] = 0)

static int enqueue(history_store *h, const history_entry *e) {
    pthread_mutex_lock(&h->mu);
    if (h->head - h->tail >= h->cap && !h->closing) {
        struct timespec until = deadline_after_ms(h->opt.submit_timeout_ms);
        while (h->head - h->tail >= h->cap && !h->closing) {
            if (pthread_cond_timedwait(&h->not_full, &h->mu, &until) == ETIMEDOUT) break;
        }
    }
    if (h->closing) {
        pthread_mutex_unlock(&h->mu);
        return HISTORY_ECLOSED;
    }
    if (h->head - h->tail >= h->cap) {
        h->submit_full++;
        pthread_mutex_unlock(&h->mu);
        return HISTORY_EFULL;
    }
    h->ring[h->head % h->cap] = *e;
    h->head++;
    if (h->writer_wait == 1 ||
        (h->writer_wait == 2 && h->head - h->tail >= (uint64_t)h->opt.batch_max))
        pthread_cond_signal(&h->not_empty);
    pthread_mutex_unlock(&h->mu);
    return HISTORY_OK;
}

int history_submit_order(history_store *h, const history_order_rec *r) {
    if (!h || !r) return HISTORY_EINVAL;
    history_entry e;
    e.kind = HK_ORDER;
    e.u.ord = *r;
    TERMINATE(e.u.ord.order_id);
    TERMINATE(e.u.ord.account_id);
    TERMINATE(e.u.ord.instrument_id);
    TERMINATE(e.u.ord.direction);
    TERMINATE(e.u.ord.offset);
    TERMINATE(e.u.ord.price_type);
    TERMINATE(e.u.ord.status);
    return enqueue(h, &e);
}

int history_submit_trade(history_store *h, const history_trade_rec *r) {
    if (!h || !r) return HISTORY_EINVAL;
    history_entry e;
    e.kind = HK_TRADE;
    e.u.trd = *r;
    TERMINATE(e.u.trd.trade_id);
    TERMINATE(e.u.trd.order_id);
    TERMINATE(e.u.trd.exchange_trade_id);
    TERMINATE(e.u.trd.exchange_order_id);
    TERMINATE(e.u.trd.account_id);
    TERMINATE(e.u.trd.instrument_id);
    TERMINATE(e.u.trd.direction);
    TERMINATE(e.u.trd.offset);
    TERMINATE(e.u.trd.trading_day);
    return enqueue(h, &e);
}

int history_submit_account(history_store *h, const history_account_rec *r) {
    if (!h || !r) return HISTORY_EINVAL;
    history_entry e;
    e.kind = HK_ACCOUNT;
    e.u.acct = *r;
    TERMINATE(e.u.acct.account_id);
    TERMINATE(e.u.acct.trading_day);
    TERMINATE(e.u.acct.reason);
    return enqueue(h, &e);
}

int history_submit_settlement(history_store *h, const history_settlement_rec *r) {
    if (!h || !r) return HISTORY_EINVAL;
    history_entry e;
    e.kind = HK_SETTLEMENT;
    e.u.stl = *r;
    TERMINATE(e.u.stl.settlement_date);
    e.u.stl.force_closed_accounts =
        strdup(r->force_closed_accounts ? r->force_closed_accounts : "[]");
    if (!e.u.stl.force_closed_accounts) return HISTORY_ENOMEM;
    int rc = enqueue(h, &e);
    if (rc != HISTORY_OK) free((char *)e.u.stl.force_closed_accounts);
    return rc;
}

int history_submit_transfer(history_store *h, const history_transfer_rec *r) {
    if (!h || !r) return HISTORY_EINVAL;
    history_entry e;
    e.kind = HK_TRANSFER;
    e.u.xfer = *r;
    TERMINATE(e.u.xfer.txn_id);
    TERMINATE(e.u.xfer.account_id);
    TERMINATE(e.u.xfer.kind);
    TERMINATE(e.u.xfer.status);
    TERMINATE(e.u.xfer.method);
    TERMINATE(e.u.xfer.trading_day);
    return enqueue(h, &e);
}

int history_submit_tick(history_store *h, const history_tick_rec *r) {
    if (!h || !r) return HISTORY_EINVAL;
    history_entry e;
    e.kind = HK_TICK;
    e.u.tick = *r;
    TERMINATE(e.u.tick.instrument_id);
    return enqueue(h, &e);
}

int history_submit_kline(history_store *h, const history_kline_rec *r) {
    if (!h || !r) return HISTORY_EINVAL;
    history_entry e;
    e.kind = HK_KLINE;
    e.u.kline = *r;
    TERMINATE(e.u.kline.instrument_id);
    return enqueue(h, &e);
}

int history_submit_mark(history_store *h, uint64_t seq) {
    if (!h) return HISTORY_EINVAL;
    history_entry e;
    memset(&e, 0, sizeof e);
    e.kind = HK_MARK;
    e.u.mark = seq;
    return enqueue(h, &e);
}

/* ---- flush, sequence, retention, maintenance ---- */

int history_flush(history_store *h, int timeout_ms) {
    if (!h) return HISTORY_EINVAL;
    int rc = HISTORY_OK;
    pthread_mutex_lock(&h->mu);
    uint64_t target = h->head;
    h->flush_waiters++;
    pthread_cond_signal(&h->not_empty);
    struct timespec until = deadline_after_ms(timeout_ms > 0 ? timeout_ms : 0);
    while (h->tail < target && !h->writer_done) {
        if (timeout_ms > 0) {
            if (pthread_cond_timedwait(&h->progress, &h->mu, &until) == ETIMEDOUT &&
                h->tail < target) {
                rc = HISTORY_ETIMEOUT;
                break;
            }
        } else {
            pthread_cond_wait(&h->progress, &h->mu);
        }
    }
    if (rc == HISTORY_OK && h->writer_done && h->dropped_at_close) rc = HISTORY_ECLOSED;
    h->flush_waiters--;
    pthread_mutex_unlock(&h->mu);
    return rc;
}

uint64_t history_last_seq(history_store *h) {
    if (!h) return 0;
    pthread_mutex_lock(&h->mu);
    uint64_t v = h->applied_seq;
    pthread_mutex_unlock(&h->mu);
    return v;
}

uint64_t history_rewound_from(history_store *h) {
    return h ? h->rewound_from : 0;
}

int64_t history_prune(history_store *h, int64_t before_ts_ns) {
    if (!h) return -1;
    static const char *const del[] = {
        "DELETE FROM orders WHERE ts_ns < ?1",
        "DELETE FROM trades WHERE ts_ns < ?1",
        "DELETE FROM accounts WHERE ts_ns < ?1",
        "DELETE FROM settlements WHERE ts_ns < ?1",
        "DELETE FROM transfers WHERE ts_ns < ?1",
        "DELETE FROM ticks WHERE ts_ns < ?1",
        "DELETE FROM klines WHERE start_ms < ?1 / 1000000",
    };
    int64_t total = 0;
    pthread_mutex_lock(&h->db_lock);
    int rc = sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof del / sizeof del[0]; i++) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(h->db, del[i], -1, &st, NULL);
        if (rc != SQLITE_OK) break;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)before_ts_ns);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
            total += sqlite3_changes(h->db);
        }
    }
    if (rc == SQLITE_OK) rc = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        note_error(h, "prune", rc); /* lock order: db_lock, then mu */
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
        total = -1;
    }
    pthread_mutex_unlock(&h->db_lock);
    return total;
}

int history_checkpoint(history_store *h, history_vacuum_policy policy) {
    if (!h) return HISTORY_EINVAL;
    int rc = SQLITE_OK;
    pthread_mutex_lock(&h->db_lock);
    if (policy == HISTORY_VACUUM_FULL) {
        rc = sqlite3_exec(h->db, "VACUUM", NULL, NULL, NULL);
    } else if (policy == HISTORY_VACUUM_INCREMENTAL) {
        int64_t pages = query_i64(h->db, "PRAGMA page_count", 0);
        int64_t free_pages = query_i64(h->db, "PRAGMA freelist_count", 0);
        if (pages > 0 && free_pages * 10 > pages)
            rc = sqlite3_exec(h->db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    if (rc != SQLITE_OK) note_error(h, "checkpoint", rc);
    pthread_mutex_unlock(&h->db_lock);
    return rc == SQLITE_OK ? HISTORY_OK : HISTORY_EIO;
}

/* ---- stats ---- */

int history_stats(history_store *h, history_storage_stats *out) {
    if (!h || !out) return HISTORY_EINVAL;
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", h->path);
    pthread_mutex_lock(&h->mu);
    out->last_seq = h->applied_seq;
    out->submitted = h->head;
    out->committed = h->tail;
    out->inserted = h->inserted;
    out->skipped_replayed = h->skipped_replayed;
    out->ignored_duplicates = h->ignored_duplicates;
    out->submit_full = h->submit_full;
    out->batches = h->batches;
    out->write_errors = h->write_errors;
    out->queue_depth = (size_t)(h->head - h->tail);
    out->queue_capacity = h->cap;
    snprintf(out->last_error, sizeof out->last_error, "%s", h->last_error);
    pthread_mutex_unlock(&h->mu);

    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", h->path);
    out->db_bytes = file_size(h->path);
    out->wal_bytes = file_size(wal);

    sqlite3 *db = NULL;
    if (sqlite3_open_v2(h->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sqlite3_close(db);
        return HISTORY_EIO;
    }
    sqlite3_busy_timeout(db, 2000);
    out->page_size = query_i64(db, "PRAGMA page_size", 0);
    out->page_count = query_i64(db, "PRAGMA page_count", 0);
    out->freelist_count = query_i64(db, "PRAGMA freelist_count", 0);
    out->rows_orders = query_i64(db, "SELECT COUNT(*) FROM orders", -1);
    out->rows_trades = query_i64(db, "SELECT COUNT(*) FROM trades", -1);
    out->rows_accounts = query_i64(db, "SELECT COUNT(*) FROM accounts", -1);
    out->rows_settlements = query_i64(db, "SELECT COUNT(*) FROM settlements", -1);
    out->rows_transfers = query_i64(db, "SELECT COUNT(*) FROM transfers", -1);
    out->rows_ticks = query_i64(db, "SELECT COUNT(*) FROM ticks", -1);
    out->rows_klines = query_i64(db, "SELECT COUNT(*) FROM klines", -1);
    sqlite3_close(db);
    return HISTORY_OK;
}

char *history_stats_json(const history_storage_stats *s) {
    if (!s) return NULL;
    json_t *rows = json_pack("{sIsIsIsIsIsIsI}", "orders", (json_int_t)s->rows_orders, "trades",
                             (json_int_t)s->rows_trades, "accounts", (json_int_t)s->rows_accounts,
                             "settlements", (json_int_t)s->rows_settlements, "transfers",
                             (json_int_t)s->rows_transfers, "ticks", (json_int_t)s->rows_ticks,
                             "klines", (json_int_t)s->rows_klines);
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(s->path));
    json_object_set_new(o, "db_bytes", json_integer(s->db_bytes));
    json_object_set_new(o, "wal_bytes", json_integer(s->wal_bytes));
    json_object_set_new(o, "total_bytes", json_integer(s->db_bytes + s->wal_bytes));
    json_object_set_new(o, "page_size", json_integer(s->page_size));
    json_object_set_new(o, "page_count", json_integer(s->page_count));
    json_object_set_new(o, "freelist_count", json_integer(s->freelist_count));
    json_object_set_new(o, "rows", rows);
    json_object_set_new(o, "last_seq", json_integer((json_int_t)s->last_seq));
    json_object_set_new(o, "submitted", json_integer((json_int_t)s->submitted));
    json_object_set_new(o, "committed", json_integer((json_int_t)s->committed));
    json_object_set_new(o, "inserted", json_integer((json_int_t)s->inserted));
    json_object_set_new(o, "skipped_replayed", json_integer((json_int_t)s->skipped_replayed));
    json_object_set_new(o, "ignored_duplicates", json_integer((json_int_t)s->ignored_duplicates));
    json_object_set_new(o, "submit_full", json_integer((json_int_t)s->submit_full));
    json_object_set_new(o, "batches", json_integer((json_int_t)s->batches));
    json_object_set_new(o, "write_errors", json_integer((json_int_t)s->write_errors));
    json_object_set_new(o, "queue_depth", json_integer((json_int_t)s->queue_depth));
    json_object_set_new(o, "queue_capacity", json_integer((json_int_t)s->queue_capacity));
    json_object_set_new(o, "last_error",
                        s->last_error[0] ? json_string(s->last_error) : json_null());
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}
