/* The history store (issue #8): every order state change, trade, account snapshot, settlement,
 * capital transfer, tick and finished K-line, kept in one SQLite file for queries.
 *
 * Records are plain structs copied into a bounded in-memory queue by one producer thread (the
 * server's engine-event consumer) through history_submit_*; a writer thread drains the queue and
 * inserts many records per transaction (up to batch_max records, or batch_ms after the first one
 * arrived). The file is in WAL mode with synchronous=NORMAL: a commit costs no fsync, and a crash
 * loses at most the last commits, which the server replays from the journal. A second thread
 * with its own connection copies the WAL into the database (checkpoints), off the writer's
 * thread.
 *
 * Exactly once. Every record produced by a journaled command carries that command's journal
 * sequence (journal_seq > 0; 0 means "not from a command", e.g. an interval snapshot, and such a
 * record is only de-duplicated by its natural key). Records arrive in journal order. The writer
 * keeps in the meta table, in the same transaction as the rows, the highest sequence whose records
 * are all committed: sequence S is complete once a record of a later sequence or a
 * history_submit_mark(S) has been committed. history_last_seq() returns it; after a crash the
 * server replays journal commands after it. A record whose sequence is at most that value is
 * dropped by the writer, and every insert is INSERT OR IGNORE on the table's natural key, so the
 * records of a command half-committed before the crash are not duplicated when it is replayed.
 *
 * Backpressure: when the queue is full, submit waits up to submit_timeout_ms and then returns
 * HISTORY_EFULL (counted in the stats); nothing is dropped silently. A failed commit (disk full) is
 * rolled back and retried with the same records until it succeeds or the store is closed.
 *
 * Threads: history_submit_* and history_submit_mark from one producer thread; history_flush,
 * history_prune, history_checkpoint, history_stats and history_last_seq from any thread. */
#ifndef QAEX_HISTORY_H
#define QAEX_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes of the writer API. */
enum {
    HISTORY_OK = 0,
    HISTORY_EFULL = 1,    /* the queue stayed full for submit_timeout_ms: record not queued */
    HISTORY_ECLOSED = 2,  /* the store is closing */
    HISTORY_ETIMEOUT = 3, /* history_flush: not everything committed in time */
    HISTORY_EIO = 4,      /* an SQLite error (message in the stats' last_error) */
    HISTORY_EINVAL = 5,   /* bad argument */
    HISTORY_ENOMEM = 6,   /* out of memory: record not queued */
};

/* Fixed buffer sizes; longer strings are truncated (ids in this project are much shorter). */
#define HISTORY_ID_LEN 48
#define HISTORY_ACCOUNT_LEN 80
#define HISTORY_INSTRUMENT_LEN 32
#define HISTORY_ENUM_LEN 16
#define HISTORY_DAY_LEN 12 /* "YYYY-MM-DD" */

/* One state change of an order: insert, each fill, cancel, reject. Natural key: (order_id,
 * journal_seq, status, volume_left). Enum fields are the REST spellings ("BUY", "OPEN", "LIMIT",
 * "PartiallyFilled"). */
typedef struct history_order_rec {
    char order_id[HISTORY_ID_LEN];
    char account_id[HISTORY_ACCOUNT_LEN];
    char instrument_id[HISTORY_INSTRUMENT_LEN];
    char direction[HISTORY_ENUM_LEN];
    char offset[HISTORY_ENUM_LEN];
    char price_type[HISTORY_ENUM_LEN];
    double limit_price;
    int64_t volume_orign;
    int64_t volume_left;
    char status[HISTORY_ENUM_LEN + 8];
    int64_t ts_ns;
    uint64_t journal_seq;
} history_order_rec;

/* One side of a match (each match gives two trades, one per account; is_taker marks the side
 * that arrived, so market statistics count is_taker = 1 rows). Natural key: trade_id. */
typedef struct history_trade_rec {
    char trade_id[HISTORY_ID_LEN];
    char order_id[HISTORY_ID_LEN];
    char exchange_trade_id[HISTORY_ID_LEN];
    char exchange_order_id[HISTORY_ID_LEN];
    char account_id[HISTORY_ACCOUNT_LEN];
    char instrument_id[HISTORY_INSTRUMENT_LEN];
    char direction[HISTORY_ENUM_LEN];
    char offset[HISTORY_ENUM_LEN];
    double price;
    int64_t volume;
    double commission;
    double close_profit;
    int is_taker;
    int is_liquidation; /* a forced close at settlement */
    int64_t ts_ns;
    char trading_day[HISTORY_DAY_LEN];
    uint64_t journal_seq;
} history_trade_rec;

/* An account snapshot; reason "settlement" or "interval". Natural key: (account_id, ts_ns,
 * reason). */
typedef struct history_account_rec {
    char account_id[HISTORY_ACCOUNT_LEN];
    int64_t ts_ns;
    char trading_day[HISTORY_DAY_LEN];
    double balance;
    double available;
    double margin;
    double position_profit;
    double close_profit;
    double commission;
    double risk_ratio;
    char reason[HISTORY_ENUM_LEN];
    uint64_t journal_seq;
} history_account_rec;

/* A daily settlement result (seed SettlementResult). Natural key: settlement_date. The list of
 * force-closed accounts is copied by submit (any length). */
typedef struct history_settlement_rec {
    char settlement_date[HISTORY_DAY_LEN];
    int64_t ts_ns;
    int64_t total_accounts;
    int64_t settled_accounts;
    int64_t failed_accounts;
    const char *force_closed_accounts; /* JSON array text, e.g. ["a","b"]; NULL = [] */
    double total_commission;
    double total_profit;
    uint64_t journal_seq;
} history_settlement_rec;

/* A capital transaction (deposit or withdraw). Natural key: txn_id. */
typedef struct history_transfer_rec {
    char txn_id[HISTORY_ID_LEN];
    char account_id[HISTORY_ACCOUNT_LEN];
    char kind[HISTORY_ENUM_LEN]; /* "deposit" | "withdraw" */
    double amount;
    double balance_before;
    double balance_after;
    char status[HISTORY_ENUM_LEN];
    char method[HISTORY_ENUM_LEN];
    int64_t ts_ns;
    char trading_day[HISTORY_DAY_LEN];
    uint64_t journal_seq;
} history_transfer_rec;

/* A tick: last price, cumulative volume, open interest. Natural key: (instrument_id, ts_ns,
 * journal_seq), i.e. at most one tick per instrument per command. */
typedef struct history_tick_rec {
    char instrument_id[HISTORY_INSTRUMENT_LEN];
    int64_t ts_ns;
    double price;
    int64_t volume;
    int64_t open_interest;
    uint64_t journal_seq;
} history_tick_rec;

/* A finished K-line. Natural key: (instrument_id, period_s, start_ms). */
typedef struct history_kline_rec {
    char instrument_id[HISTORY_INSTRUMENT_LEN];
    int64_t period_s;
    int64_t start_ms;
    double open;
    double high;
    double low;
    double close;
    int64_t volume;
    double amount;
    int64_t open_oi;
    int64_t close_oi;
    uint64_t journal_seq;
} history_kline_rec;

typedef struct history_options {
    /* The defaults favour throughput (issue #8: >= 300,000 rows/s): a transaction's cost is
     * mostly the pages it dirties, about one per account in the trades-by-account index however
     * many rows it holds, so the writer waits for large batches. The queue (about 370 bytes a
     * record, 48 MB at the default) holds two batches: the producer fills one while the writer
     * commits the other. A reader that must see a record calls history_flush, which commits at
     * once. */
    size_t queue_capacity; /* records; default 131072 */
    int batch_max;         /* records per transaction; default 65536 */
    int batch_ms;          /* wait this long after the first record for more; default 200 */
    int submit_timeout_ms; /* how long a submit waits for room; default 1000 */
    /* The journal ends at rewind_to (set rewind): records of later commands are removed when
     * the file is opened. They come from a timeline the journal no longer has (a journal cut by
     * recover_to_corruption, or an unsynced tail lost in async mode); the commands that now take
     * those sequence numbers would otherwise be skipped as already stored. */
    bool rewind;
    uint64_t rewind_to;
} history_options;

typedef struct history_store history_store;

/* Opens (creating when missing) the history file at path and starts the writer thread. opts may
 * be NULL for the defaults. On failure returns NULL with a message in err. */
history_store *history_open(const char *path, const history_options *opts, char *err,
                            size_t errlen);

/* Commits everything queued (retrying a failing commit for a few seconds), stops the writer,
 * checkpoints the WAL and closes the file. Returns the number of records that could not be
 * committed (0 normally). NULL is accepted. */
size_t history_close(history_store *h);

/* Queue one record (copied). HISTORY_OK, HISTORY_EFULL after submit_timeout_ms without room, or
 * HISTORY_ECLOSED. */
int history_submit_order(history_store *h, const history_order_rec *r);
int history_submit_trade(history_store *h, const history_trade_rec *r);
int history_submit_account(history_store *h, const history_account_rec *r);
int history_submit_settlement(history_store *h, const history_settlement_rec *r);
int history_submit_transfer(history_store *h, const history_transfer_rec *r);
int history_submit_tick(history_store *h, const history_tick_rec *r);
int history_submit_kline(history_store *h, const history_kline_rec *r);
/* Every record of journal command seq has been submitted: lets the writer advance last_seq past
 * seq without waiting for a record of a later command. */
int history_submit_mark(history_store *h, uint64_t seq);

/* Waits until everything submitted before the call is committed. timeout_ms <= 0 waits forever.
 * HISTORY_OK, HISTORY_ETIMEOUT or HISTORY_ECLOSED. */
int history_flush(history_store *h, int timeout_ms);

/* The highest journal sequence whose records are all committed (0 for a new file). */
uint64_t history_last_seq(history_store *h);

/* The last command the file held before history_open rewound it (0: it was not rewound). */
uint64_t history_rewound_from(history_store *h);

/* Retention: deletes every record older than before_ts_ns (K-lines by their start). Returns the
 * number of rows deleted, or -1 on error. */
int64_t history_prune(history_store *h, int64_t before_ts_ns);

/* Maintenance policy. The file is created with auto_vacuum=INCREMENTAL. */
typedef enum history_vacuum_policy {
    HISTORY_VACUUM_NONE = 0,        /* WAL checkpoint (TRUNCATE) only */
    HISTORY_VACUUM_INCREMENTAL = 1, /* + give free pages back when they are over 10% of the file */
    HISTORY_VACUUM_FULL = 2,        /* + rewrite the whole file (blocks the writer meanwhile) */
} history_vacuum_policy;
int history_checkpoint(history_store *h, history_vacuum_policy policy);

typedef struct history_storage_stats {
    char path[512];
    int64_t db_bytes;
    int64_t wal_bytes;
    int64_t page_size;
    int64_t page_count;
    int64_t freelist_count;
    int64_t rows_orders;
    int64_t rows_trades;
    int64_t rows_accounts;
    int64_t rows_settlements;
    int64_t rows_transfers;
    int64_t rows_ticks;
    int64_t rows_klines;
    uint64_t last_seq;
    uint64_t submitted;          /* records accepted by submit */
    uint64_t committed;          /* records taken off the queue by a committed batch */
    uint64_t inserted;           /* rows actually inserted */
    uint64_t skipped_replayed;   /* records with journal_seq <= last_seq, dropped */
    uint64_t ignored_duplicates; /* INSERT OR IGNORE found the natural key present */
    uint64_t submit_full;        /* submits refused after the timeout (queue full) */
    uint64_t batches;            /* committed transactions */
    uint64_t write_errors;       /* failed commits (retried) */
    size_t queue_depth;
    size_t queue_capacity;
    char last_error[256];
} history_storage_stats;

/* Fills *out (row counts by COUNT(*) on a separate read connection). HISTORY_OK or HISTORY_EIO. */
int history_stats(history_store *h, history_storage_stats *out);
/* The stats as a JSON object (for /monitoring/storage); free() the result. */
char *history_stats_json(const history_storage_stats *s);

/* The schema's table names, NULL-terminated (orders, trades, accounts, settlements, transfers,
 * ticks, klines). */
extern const char *const history_table_names[];

#endif
