/* The history query engine (see query.h): read-only connections guarded by an authorizer, a
 * streaming result writer (JSON, CSV, JSON lines), the structured-query compiler and its JSON
 * front end, OHLCV buckets, trade paging and equity curves. */
#include "history/query.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- the tables a query may read ---- */

typedef struct history_table_desc {
    const char *name;
    const char *time_col;
    int time_in_ms; /* the time column is epoch ms (else ns) */
    const char *const *cols;
} history_table_desc;

static const char *const cols_orders[] = {
    "order_id",    "account_id",   "instrument_id", "direction", "offset", "price_type",
    "limit_price", "volume_orign", "volume_left",   "status",    "ts_ns",  "journal_seq",
    NULL};
static const char *const cols_trades[] = {"trade_id",
                                          "order_id",
                                          "exchange_trade_id",
                                          "account_id",
                                          "instrument_id",
                                          "direction",
                                          "offset",
                                          "price",
                                          "volume",
                                          "commission",
                                          "close_profit",
                                          "is_taker",
                                          "ts_ns",
                                          "trading_day",
                                          "journal_seq",
                                          "exchange_order_id",
                                          "is_liquidation",
                                          NULL};
static const char *const cols_accounts[] = {
    "account_id", "ts_ns",      "trading_day",     "balance",
    "available",  "margin",     "position_profit", "close_profit",
    "commission", "risk_ratio", "reason",          "journal_seq",
    NULL};
static const char *const cols_settlements[] = {"settlement_date",  "ts_ns",
                                               "total_accounts",   "settled_accounts",
                                               "failed_accounts",  "force_closed_accounts",
                                               "total_commission", "total_profit",
                                               "journal_seq",      NULL};
static const char *const cols_transfers[] = {
    "txn_id", "account_id", "kind",  "amount",      "balance_before", "balance_after",
    "status", "method",     "ts_ns", "trading_day", "journal_seq",    NULL};
static const char *const cols_ticks[] = {"instrument_id", "ts_ns",       "price", "volume",
                                         "open_interest", "journal_seq", NULL};
static const char *const cols_klines[] = {
    "instrument_id", "period_s", "start_ms", "open",     "high",        "low", "close",
    "volume",        "amount",   "open_oi",  "close_oi", "journal_seq", NULL};

static const history_table_desc tables[] = {
    {"orders", "ts_ns", 0, cols_orders},       {"trades", "ts_ns", 0, cols_trades},
    {"accounts", "ts_ns", 0, cols_accounts},   {"settlements", "ts_ns", 0, cols_settlements},
    {"transfers", "ts_ns", 0, cols_transfers}, {"ticks", "ts_ns", 0, cols_ticks},
    {"klines", "start_ms", 1, cols_klines},
};
#define N_TABLES (sizeof tables / sizeof tables[0])
#define TABLE_LIST "orders, trades, accounts, settlements, transfers, ticks, klines"

static const history_table_desc *find_table(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_TABLES; i++)
        if (strcasecmp(tables[i].name, name) == 0) return &tables[i];
    return NULL;
}

static const char *find_column(const history_table_desc *t, const char *col) {
    if (!col) return NULL;
    for (const char *const *c = t->cols; *c; c++)
        if (strcasecmp(*c, col) == 0) return *c;
    return NULL;
}

/* ---- errors, clock ---- */

static void qerr(history_query_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void qerr(history_query_error *err, int code, const char *fmt, ...) {
    if (!err) return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- a growable text buffer ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

static void sb_json_string(sbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        sb_put(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15], 0};
        switch (ch) {
            case '"':
                sb_put(b, "\\\"", 2);
                break;
            case '\\':
                sb_put(b, "\\\\", 2);
                break;
            case '\n':
                sb_put(b, "\\n", 2);
                break;
            case '\r':
                sb_put(b, "\\r", 2);
                break;
            case '\t':
                sb_put(b, "\\t", 2);
                break;
            default:
                sb_put(b, esc, 6);
                break;
        }
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

static void sb_csv_string(sbuf *b, const char *s, size_t n) {
    int quote = n > 0 && (s[0] == ' ' || s[n - 1] == ' ');
    for (size_t i = 0; i < n && !quote; i++)
        if (s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r') quote = 1;
    if (!quote) {
        sb_put(b, s, n);
        return;
    }
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '"') continue;
        sb_put(b, s + run, i + 1 - run);
        sb_put(b, "\"", 1);
        run = i + 1;
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

/* ---- the result writer ---- */

typedef struct qout {
    sbuf b;
    history_format fmt;
    int ncols;
    char **names; /* column names, JSON-quoted */
    char **raw_names;
    long rows;
    int full; /* the last row would have passed HISTORY_MAX_RESULT_BYTES: it was taken back */
} qout;

static void qout_begin(qout *o, history_format fmt, const char *const *names, int n) {
    memset(o, 0, sizeof *o);
    o->fmt = fmt;
    o->ncols = n;
    o->names = calloc((size_t)(n > 0 ? n : 1), sizeof *o->names);
    o->raw_names = calloc((size_t)(n > 0 ? n : 1), sizeof *o->raw_names);
    if (!o->names || !o->raw_names) {
        o->b.oom = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *nm = names[i] ? names[i] : "";
        sbuf t = {0};
        sb_json_string(&t, nm, strlen(nm));
        o->names[i] = t.p;
        o->raw_names[i] = strdup(nm);
        if (t.oom || !o->raw_names[i]) o->b.oom = 1;
    }
    if (fmt == HISTORY_FMT_JSON) {
        sb_str(&o->b, "{\"columns\":[");
        for (int i = 0; i < n; i++) {
            if (i) sb_put(&o->b, ",", 1);
            if (o->names[i]) sb_str(&o->b, o->names[i]);
        }
        sb_str(&o->b, "],\"rows\":[");
    } else if (fmt == HISTORY_FMT_CSV) {
        for (int i = 0; i < n; i++) {
            if (i) sb_put(&o->b, ",", 1);
            if (o->raw_names[i]) sb_csv_string(&o->b, o->raw_names[i], strlen(o->raw_names[i]));
        }
        sb_put(&o->b, "\n", 1);
    }
}

static void put_value(qout *o, const history_value *v) {
    char num[64];
    switch (v->type) {
        case HISTORY_VAL_INT:
            snprintf(num, sizeof num, "%lld", (long long)v->i);
            sb_str(&o->b, num);
            return;
        case HISTORY_VAL_REAL:
            if (!isfinite(v->d)) {
                if (o->fmt != HISTORY_FMT_CSV) sb_str(&o->b, "null");
                return;
            }
            snprintf(num, sizeof num, "%.15g", v->d);
            sb_str(&o->b, num);
            return;
        case HISTORY_VAL_TEXT: {
            const char *s = v->s ? v->s : "";
            size_t n = v->i > 0 ? (size_t)v->i : strlen(s);
            if (o->fmt == HISTORY_FMT_CSV)
                sb_csv_string(&o->b, s, n);
            else
                sb_json_string(&o->b, s, n);
            return;
        }
        default:
            if (o->fmt != HISTORY_FMT_CSV) sb_str(&o->b, "null");
            return;
    }
}

/* Appends value i of a row, or takes the row back (to row_start) when the text would grow
 * past HISTORY_MAX_RESULT_BYTES. 0 when the row was taken back. */
static int qout_value(qout *o, const history_value *v, size_t row_start) {
    put_value(o, v);
    if (o->b.len <= HISTORY_MAX_RESULT_BYTES) return 1;
    o->b.len = row_start;
    o->full = 1;
    return 0;
}

/* One row; when it does not fit, nothing of it stays and o->full is set. */
static void qout_row(qout *o, const history_value *v) {
    size_t start = o->b.len;
    if (o->fmt == HISTORY_FMT_JSON) {
        sb_str(&o->b, o->rows ? ",[" : "[");
        for (int i = 0; i < o->ncols; i++) {
            if (i) sb_put(&o->b, ",", 1);
            if (!qout_value(o, &v[i], start)) return;
        }
        sb_put(&o->b, "]", 1);
    } else if (o->fmt == HISTORY_FMT_CSV) {
        for (int i = 0; i < o->ncols; i++) {
            if (i) sb_put(&o->b, ",", 1);
            if (!qout_value(o, &v[i], start)) return;
        }
        sb_put(&o->b, "\n", 1);
    } else {
        sb_put(&o->b, "{", 1);
        for (int i = 0; i < o->ncols; i++) {
            if (i) sb_put(&o->b, ",", 1);
            if (o->names[i]) sb_str(&o->b, o->names[i]);
            sb_put(&o->b, ":", 1);
            if (!qout_value(o, &v[i], start)) return;
        }
        sb_put(&o->b, "}\n", 2);
    }
    o->rows++;
}

static void qout_free(qout *o) {
    for (int i = 0; i < o->ncols; i++) {
        if (o->names) free(o->names[i]);
        if (o->raw_names) free(o->raw_names[i]);
    }
    free(o->names);
    free(o->raw_names);
    free(o->b.p);
    memset(o, 0, sizeof *o);
}

/* Finishes the text; extra (an object, may be NULL, not consumed) adds fields to the JSON form.
 * Returns the text (caller frees) or NULL when out of memory. */
static char *qout_end(qout *o, int truncated, double elapsed_ms, const json_t *extra) {
    if (o->fmt == HISTORY_FMT_JSON) {
        sb_fmt(&o->b, "],\"row_count\":%ld,\"truncated\":%s,\"elapsed_ms\":%.3f", o->rows,
               truncated ? "true" : "false", elapsed_ms);
        if (extra) {
            const char *key;
            json_t *val;
            json_object_foreach((json_t *)extra, key, val) {
                char *t = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
                sb_put(&o->b, ",", 1);
                sb_json_string(&o->b, key, strlen(key));
                sb_put(&o->b, ":", 1);
                if (t) sb_str(&o->b, t);
                free(t);
            }
        }
        sb_put(&o->b, "}", 1);
    } else if (o->b.len == 0) {
        sb_put(&o->b, "", 0);
    }
    char *text = o->b.oom ? NULL : o->b.p;
    if (text) o->b.p = NULL;
    qout_free(o);
    return text;
}

/* Closes a result: the text to *out and the counts to *info (NULL: not wanted). */
static int qout_finish(qout *o, int truncated, int64_t t0, const json_t *extra, char **out,
                       history_result_info *info, history_query_error *err) {
    long rows = o->rows;
    double elapsed = (double)(now_ns() - t0) / 1e6;
    char *text = qout_end(o, truncated, elapsed, extra);
    if (!text) {
        qerr(err, HISTORY_QERR_STORAGE, "out of memory building the result");
        return HISTORY_QERR_STORAGE;
    }
    *out = text;
    if (info) {
        info->row_count = rows;
        info->truncated = truncated;
        info->elapsed_ms = elapsed;
    }
    return 0;
}

/* ---- connections ---- */

struct history_query_conn {
    sqlite3 *db;
    char deny[384]; /* why the authorizer refused the statement being prepared */
    int deny_prio;
    int64_t deadline_ns;
    int timed_out;
    char hidden[32][64]; /* tables of the file that queries may not read (meta, sqlite_*) */
    int n_hidden;
    int internal_txn; /* set while this file begins or ends its own read transaction */
};

static int hidden_table(const history_query_conn *c, const char *name) {
    if (strncasecmp(name, "sqlite_", 7) == 0 || strncasecmp(name, "pragma_", 7) == 0) return 1;
    for (int i = 0; i < c->n_hidden; i++)
        if (strcasecmp(c->hidden[i], name) == 0) return 1;
    return 0;
}

static void deny(history_query_conn *c, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void deny(history_query_conn *c, int prio, const char *fmt, ...) {
    if (prio <= c->deny_prio) return;
    c->deny_prio = prio;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->deny, sizeof c->deny, fmt, ap);
    va_end(ap);
}

static const char *action_name(int action, const char *a1) {
    switch (action) {
        case SQLITE_INSERT:
            return "INSERT";
        case SQLITE_UPDATE:
            return "UPDATE";
        case SQLITE_DELETE:
            return "DELETE";
        case SQLITE_CREATE_INDEX:
        case SQLITE_CREATE_TEMP_INDEX:
            return "CREATE INDEX";
        case SQLITE_CREATE_TABLE:
        case SQLITE_CREATE_TEMP_TABLE:
            return "CREATE TABLE";
        case SQLITE_CREATE_TRIGGER:
        case SQLITE_CREATE_TEMP_TRIGGER:
            return "CREATE TRIGGER";
        case SQLITE_CREATE_VIEW:
        case SQLITE_CREATE_TEMP_VIEW:
            return "CREATE VIEW";
        case SQLITE_CREATE_VTABLE:
            return "CREATE VIRTUAL TABLE";
        case SQLITE_DROP_INDEX:
        case SQLITE_DROP_TEMP_INDEX:
            return "DROP INDEX";
        case SQLITE_DROP_TABLE:
        case SQLITE_DROP_TEMP_TABLE:
            return "DROP TABLE";
        case SQLITE_DROP_TRIGGER:
        case SQLITE_DROP_TEMP_TRIGGER:
            return "DROP TRIGGER";
        case SQLITE_DROP_VIEW:
        case SQLITE_DROP_TEMP_VIEW:
            return "DROP VIEW";
        case SQLITE_DROP_VTABLE:
            return "DROP VIRTUAL TABLE";
        case SQLITE_ALTER_TABLE:
            return "ALTER TABLE";
        case SQLITE_REINDEX:
            return "REINDEX";
        case SQLITE_ANALYZE:
            return "ANALYZE";
        case SQLITE_TRANSACTION:
            return a1 ? a1 : "TRANSACTION";
        case SQLITE_SAVEPOINT:
            return "SAVEPOINT";
        case SQLITE_ATTACH:
            return "ATTACH";
        case SQLITE_DETACH:
            return "DETACH";
        case SQLITE_PRAGMA:
            return "PRAGMA";
        default:
            return "this statement";
    }
}

static int authorizer(void *ud, int action, const char *a1, const char *a2, const char *dbname,
                      const char *trigger) {
    history_query_conn *c = ud;
    (void)dbname;
    (void)trigger;
    switch (action) {
        case SQLITE_SELECT:
        case SQLITE_RECURSIVE:
            return SQLITE_OK;
        case SQLITE_TRANSACTION:
            if (c->internal_txn) return SQLITE_OK;
            deny(c, 3, "only SELECT is allowed: %s", action_name(action, a1));
            return SQLITE_DENY;
        case SQLITE_READ:
            /* the history tables, and names that are not in the schema (common table
             * expressions); every other table of the file is refused */
            if (a1 && (find_table(a1) || !hidden_table(c, a1))) return SQLITE_OK;
            deny(c, 2, "table %s is not available to queries (tables: " TABLE_LIST ")",
                 a1 ? a1 : "?");
            return SQLITE_DENY;
        case SQLITE_FUNCTION:
            if (a2 &&
                (strcasecmp(a2, "load_extension") == 0 || strcasecmp(a2, "fts3_tokenizer") == 0 ||
                 strncasecmp(a2, "readfile", 8) == 0 || strncasecmp(a2, "writefile", 9) == 0 ||
                 strcasecmp(a2, "edit") == 0)) {
                deny(c, 3, "function %s is not allowed", a2);
                return SQLITE_DENY;
            }
            return SQLITE_OK;
        case SQLITE_PRAGMA:
            deny(c, 3, "PRAGMA %s is not allowed: queries are read-only", a1 ? a1 : "");
            return SQLITE_DENY;
        case SQLITE_ATTACH:
        case SQLITE_DETACH:
            deny(c, 3, "%s is not allowed: queries read the history tables only",
                 action_name(action, a1));
            return SQLITE_DENY;
        case SQLITE_INSERT:
        case SQLITE_UPDATE:
        case SQLITE_DELETE:
            if (a1 && strncasecmp(a1, "sqlite_", 7) == 0) {
                deny(c, 1, "access to %s is not allowed", a1);
                return SQLITE_DENY;
            }
            deny(c, 3, "only SELECT is allowed: %s", action_name(action, a1));
            return SQLITE_DENY;
        default:
            deny(c, 3, "only SELECT is allowed: %s", action_name(action, a1));
            return SQLITE_DENY;
    }
}

static int progress_cb(void *ud) {
    history_query_conn *c = ud;
    if (now_ns() > c->deadline_ns) {
        c->timed_out = 1;
        return 1;
    }
    return 0;
}

history_query_conn *history_query_open(const char *path, history_query_error *err) {
    history_query_conn *c = calloc(1, sizeof *c);
    if (!c) {
        qerr(err, HISTORY_QERR_STORAGE, "out of memory");
        return NULL;
    }
    int rc =
        sqlite3_open_v2(path ? path : "", &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(c->db, 2000);
        sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
        sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
        sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
        sqlite3_limit(c->db, SQLITE_LIMIT_ATTACHED, 0);
        sqlite3_limit(c->db, SQLITE_LIMIT_LENGTH, 16 * 1024 * 1024);
        sqlite3_limit(c->db, SQLITE_LIMIT_SQL_LENGTH, 100000);
        rc = sqlite3_exec(c->db,
                          "PRAGMA query_only=1; PRAGMA mmap_size=268435456;"
                          " SELECT 1 FROM trades LIMIT 0",
                          NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        qerr(err, HISTORY_QERR_STORAGE, "cannot open history %s: %s", path ? path : "(null)",
             c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')",
                           -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW && c->n_hidden < 32) {
            const char *nm = (const char *)sqlite3_column_text(st, 0);
            if (nm && !find_table(nm))
                snprintf(c->hidden[c->n_hidden++], sizeof c->hidden[0], "%s", nm);
        }
    }
    sqlite3_finalize(st);
    sqlite3_set_authorizer(c->db, authorizer, c);
    return c;
}

void history_query_close(history_query_conn *c) {
    if (!c) return;
    sqlite3_close(c->db);
    free(c);
}

int history_format_parse(const char *s) {
    if (!s) return -1;
    if (strcasecmp(s, "json") == 0) return HISTORY_FMT_JSON;
    if (strcasecmp(s, "csv") == 0) return HISTORY_FMT_CSV;
    if (strcasecmp(s, "jsonl") == 0 || strcasecmp(s, "ndjson") == 0 ||
        strcasecmp(s, "jsonlines") == 0)
        return HISTORY_FMT_JSONL;
    return -1;
}

/* ---- running statements ---- */

typedef struct run_limits {
    long row_limit;
    int time_limit_ms;
    history_format fmt;
} run_limits;

static run_limits limits_of(const history_query_limits *lim) {
    run_limits r = {HISTORY_DEFAULT_ROW_LIMIT, HISTORY_DEFAULT_TIME_LIMIT_MS, HISTORY_FMT_JSON};
    if (lim) {
        if (lim->row_limit > 0) r.row_limit = lim->row_limit;
        if (lim->time_limit_ms > 0) r.time_limit_ms = lim->time_limit_ms;
        if (lim->format == HISTORY_FMT_CSV || lim->format == HISTORY_FMT_JSONL) r.fmt = lim->format;
    }
    if (r.row_limit > HISTORY_MAX_ROW_LIMIT) r.row_limit = HISTORY_MAX_ROW_LIMIT;
    return r;
}

static void limits_begin(history_query_conn *c, const run_limits *rl) {
    c->timed_out = 0;
    c->deadline_ns = now_ns() + (int64_t)rl->time_limit_ms * 1000000LL;
    sqlite3_progress_handler(c->db, 200, progress_cb, c);
}

static void limits_end(history_query_conn *c) {
    sqlite3_progress_handler(c->db, 0, NULL, NULL);
}

/* An error while stepping. */
static int step_error(history_query_conn *c, int rc, const run_limits *rl,
                      history_query_error *err) {
    if (c->timed_out || rc == SQLITE_INTERRUPT) {
        qerr(err, HISTORY_QERR_INVALID, "query exceeded the time limit of %d ms and was stopped",
             rl->time_limit_ms);
        return HISTORY_QERR_INVALID;
    }
    int prim = rc & 0xff;
    if (prim == SQLITE_BUSY || prim == SQLITE_IOERR || prim == SQLITE_CORRUPT ||
        prim == SQLITE_NOMEM || prim == SQLITE_CANTOPEN || prim == SQLITE_LOCKED ||
        prim == SQLITE_FULL || prim == SQLITE_NOTADB) {
        qerr(err, HISTORY_QERR_STORAGE, "history storage error: %s", sqlite3_errmsg(c->db));
        return HISTORY_QERR_STORAGE;
    }
    qerr(err, HISTORY_QERR_INVALID, "query failed: %s", sqlite3_errmsg(c->db));
    return HISTORY_QERR_INVALID;
}

static void column_value(sqlite3_stmt *st, int i, history_value *v) {
    memset(v, 0, sizeof *v);
    switch (sqlite3_column_type(st, i)) {
        case SQLITE_INTEGER:
            v->type = HISTORY_VAL_INT;
            v->i = sqlite3_column_int64(st, i);
            break;
        case SQLITE_FLOAT:
            v->type = HISTORY_VAL_REAL;
            v->d = sqlite3_column_double(st, i);
            break;
        case SQLITE_TEXT:
            v->type = HISTORY_VAL_TEXT;
            v->s = (const char *)sqlite3_column_text(st, i);
            v->i = sqlite3_column_bytes(st, i);
            if (v->i == 0) v->s = "";
            break;
        case SQLITE_BLOB: {
            /* shown as text; blobs do not occur in the history tables */
            v->type = HISTORY_VAL_TEXT;
            v->s = (const char *)sqlite3_column_text(st, i);
            v->i = sqlite3_column_bytes(st, i);
            if (!v->s || v->i == 0) {
                v->s = "";
                v->i = 0;
            }
            break;
        }
        default:
            v->type = HISTORY_VAL_NULL;
            break;
    }
}

/* Steps st to the end (or the row limit), writing the result. t0 is when the query started. */
static int run_stmt(history_query_conn *c, sqlite3_stmt *st, const run_limits *rl, int64_t t0,
                    const json_t *extra, char **out, history_result_info *info,
                    history_query_error *err) {
    int n = sqlite3_column_count(st);
    const char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
    history_value *vals = calloc((size_t)(n > 0 ? n : 1), sizeof *vals);
    if (!names || !vals) {
        free(names);
        free(vals);
        qerr(err, HISTORY_QERR_STORAGE, "out of memory");
        return HISTORY_QERR_STORAGE;
    }
    for (int i = 0; i < n; i++)
        names[i] = sqlite3_column_name(st, i);
    qout o;
    qout_begin(&o, rl->fmt, names, n);
    free(names);
    limits_begin(c, rl);
    int rc, truncated = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (o.rows >= rl->row_limit) {
            truncated = 1;
            break;
        }
        for (int i = 0; i < n; i++)
            column_value(st, i, &vals[i]);
        qout_row(&o, vals);
        if (o.full) {
            truncated = 1;
            break;
        }
        if (o.b.oom) break;
    }
    limits_end(c);
    free(vals);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        qout_free(&o);
        return step_error(c, rc, rl, err);
    }
    return qout_finish(&o, truncated, t0, extra, out, info, err);
}

/* Prepares one of our own statements (compiled, already validated). */
static int prepare_internal(history_query_conn *c, const char *sql, sqlite3_stmt **st,
                            history_query_error *err) {
    c->deny[0] = 0;
    c->deny_prio = 0;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        if (c->deny[0])
            qerr(err, HISTORY_QERR_INVALID, "%s", c->deny);
        else if ((rc & 0xff) == SQLITE_ERROR)
            qerr(err, HISTORY_QERR_INVALID, "invalid query: %s", sqlite3_errmsg(c->db));
        else
            qerr(err, HISTORY_QERR_STORAGE, "history storage error: %s", sqlite3_errmsg(c->db));
        return err ? err->code : HISTORY_QERR_INVALID;
    }
    return 0;
}

/* ---- SQL ---- */

/* Skips white space and comments. */
static const char *skip_space(const char *p) {
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : p + strlen(p);
        } else {
            return p;
        }
    }
}

/* Finds a table-valued pragma function (pragma_xxx) used as an identifier, outside string
 * literals and comments, for a clear refusal (the authorizer refuses it anyway). */
static int find_pragma_function(const char *sql, char *name, size_t len) {
    const char *p = sql;
    while (*p) {
        const char *q = skip_space(p);
        if (q != p) {
            p = q;
            continue;
        }
        if (*p == '\'') {
            for (p++; *p; p++) {
                if (*p == '\'' && p[1] == '\'') {
                    p++;
                } else if (*p == '\'') {
                    p++;
                    break;
                }
            }
            continue;
        }
        const char *start = p;
        size_t n = 0;
        if (*p == '"' || *p == '`' || *p == '[') {
            char close = *p == '[' ? ']' : *p;
            start = ++p;
            while (*p && *p != close)
                p++;
            n = (size_t)(p - start);
            if (*p) p++;
        } else if (isalpha((unsigned char)*p) || *p == '_') {
            while (isalnum((unsigned char)*p) || *p == '_' || (unsigned char)*p >= 0x80)
                p++;
            n = (size_t)(p - start);
        } else {
            p++;
            continue;
        }
        if (n > 7 && strncasecmp(start, "pragma_", 7) == 0) {
            snprintf(name, len, "%.*s", (int)(n - 7), start + 7);
            return 1;
        }
    }
    return 0;
}

static void first_word(const char *sql, char *w, size_t wlen) {
    const char *p = skip_space(sql);
    while (*p == '(')
        p = skip_space(p + 1);
    size_t n = 0;
    while (*p && (isalnum((unsigned char)*p) || *p == '_') && n + 1 < wlen)
        w[n++] = (char)toupper((unsigned char)*p++);
    w[n] = 0;
}

int history_sql(history_query_conn *c, const char *sql, const history_query_limits *lim, char **out,
                history_result_info *info, history_query_error *err) {
    if (out) *out = NULL;
    if (!c || !sql || !out) {
        qerr(err, HISTORY_QERR_INVALID, "missing query");
        return HISTORY_QERR_INVALID;
    }
    int64_t t0 = now_ns();
    run_limits rl = limits_of(lim);
    char word[32];
    first_word(sql, word, sizeof word);
    if (!word[0]) {
        const char *p = skip_space(sql);
        if (!*p) {
            qerr(err, HISTORY_QERR_INVALID, "empty query");
        } else {
            qerr(err, HISTORY_QERR_INVALID, "only SELECT is allowed: the query starts with '%.20s'",
                 p);
        }
        return HISTORY_QERR_INVALID;
    }
    if (strcmp(word, "SELECT") != 0 && strcmp(word, "WITH") != 0 && strcmp(word, "VALUES") != 0) {
        if (strcmp(word, "PRAGMA") == 0) {
            char name[64];
            const char *p = skip_space(sql);
            p = skip_space(p + 6);
            size_t n = 0;
            while (*p && (isalnum((unsigned char)*p) || *p == '_' || *p == '.') &&
                   n + 1 < sizeof name)
                name[n++] = *p++;
            name[n] = 0;
            qerr(err, HISTORY_QERR_INVALID, "only SELECT is allowed: PRAGMA %s", name);
        } else {
            qerr(err, HISTORY_QERR_INVALID, "only SELECT is allowed: %s", word);
        }
        return HISTORY_QERR_INVALID;
    }
    char pragma[64];
    if (find_pragma_function(sql, pragma, sizeof pragma)) {
        qerr(err, HISTORY_QERR_INVALID, "PRAGMA %s is not allowed: queries are read-only", pragma);
        return HISTORY_QERR_INVALID;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    c->deny[0] = 0;
    c->deny_prio = 0;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, &tail);
    if (rc != SQLITE_OK) {
        if (c->deny[0])
            qerr(err, HISTORY_QERR_INVALID, "%s", c->deny);
        else if ((rc & 0xff) == SQLITE_ERROR || (rc & 0xff) == SQLITE_TOOBIG)
            qerr(err, HISTORY_QERR_INVALID, "invalid SQL: %s", sqlite3_errmsg(c->db));
        else
            qerr(err, HISTORY_QERR_STORAGE, "history storage error: %s", sqlite3_errmsg(c->db));
        sqlite3_finalize(st);
        return err ? err->code : HISTORY_QERR_INVALID;
    }
    if (!st) {
        qerr(err, HISTORY_QERR_INVALID, "empty query");
        return HISTORY_QERR_INVALID;
    }
    const char *rest = tail ? tail : "";
    for (;;) {
        rest = skip_space(rest);
        if (*rest != ';') break;
        rest++;
    }
    if (*rest) {
        qerr(err, HISTORY_QERR_INVALID,
             "multiple statements are not allowed: found '%.40s' after the first statement", rest);
        sqlite3_finalize(st);
        return HISTORY_QERR_INVALID;
    }
    if (!sqlite3_stmt_readonly(st) || sqlite3_stmt_isexplain(st)) {
        qerr(err, HISTORY_QERR_INVALID, "only SELECT is allowed: %s", word);
        sqlite3_finalize(st);
        return HISTORY_QERR_INVALID;
    }
    rc = run_stmt(c, st, &rl, t0, NULL, out, info, err);
    sqlite3_finalize(st);
    return rc;
}

/* ---- structured queries ---- */

typedef struct bindlist {
    history_value *v;
    size_t n, cap;
} bindlist;

static int bind_push(bindlist *b, const history_value *v) {
    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 16;
        history_value *nv = realloc(b->v, ncap * sizeof *nv);
        if (!nv) return -1;
        b->v = nv;
        b->cap = ncap;
    }
    b->v[b->n++] = *v;
    return 0;
}

static int bind_all(sqlite3_stmt *st, const bindlist *b) {
    for (size_t i = 0; i < b->n; i++) {
        const history_value *v = &b->v[i];
        int idx = (int)i + 1, rc;
        switch (v->type) {
            case HISTORY_VAL_INT:
                rc = sqlite3_bind_int64(st, idx, v->i);
                break;
            case HISTORY_VAL_REAL:
                rc = sqlite3_bind_double(st, idx, v->d);
                break;
            case HISTORY_VAL_TEXT:
                rc = sqlite3_bind_text(st, idx, v->s ? v->s : "", -1, SQLITE_TRANSIENT);
                break;
            default:
                rc = sqlite3_bind_null(st, idx);
                break;
        }
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

static int valid_alias(const char *s) {
    if (!s || !*s || strlen(s) > 64) return 0;
    if (!isalpha((unsigned char)s[0]) && s[0] != '_') return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') return 0;
    return 1;
}

static const char *agg_fn_name(history_agg_fn fn) {
    switch (fn) {
        case HISTORY_AGG_SUM:
            return "sum";
        case HISTORY_AGG_AVG:
            return "avg";
        case HISTORY_AGG_COUNT:
            return "count";
        case HISTORY_AGG_MIN:
            return "min";
        case HISTORY_AGG_MAX:
            return "max";
    }
    return NULL;
}

static int is_star(const char *col) {
    return !col || !*col || strcmp(col, "*") == 0;
}

/* An output name list, to check ORDER BY against. */
typedef struct namelist {
    char names[256][88];
    size_t n;
} namelist;

static void names_add(namelist *nl, const char *s) {
    if (nl->n < sizeof nl->names / sizeof nl->names[0])
        snprintf(nl->names[nl->n++], sizeof nl->names[0], "%s", s);
}

static const char *names_find(const namelist *nl, const char *s) {
    for (size_t i = 0; i < nl->n; i++)
        if (strcasecmp(nl->names[i], s) == 0) return nl->names[i];
    return NULL;
}

static int in_list(const char *const *list, size_t n, const char *col) {
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcasecmp(list[i], col) == 0) return 1;
    return 0;
}

/* Compiles q into sql/binds. bucket_s > 0 prepends time_bucket (epoch ms) to the output and the
 * grouping and orders by it (the seed's time-series query). */
static int compile_structured(const history_structured_query *q, int64_t bucket_s, sbuf *sql,
                              bindlist *binds, history_query_error *err) {
    const history_table_desc *t = find_table(q->table);
    if (!t) {
        qerr(err, HISTORY_QERR_INVALID, "Table not found: %s (tables: " TABLE_LIST ")",
             q->table ? q->table : "(none)");
        return HISTORY_QERR_INVALID;
    }
    namelist *out_names = calloc(1, sizeof *out_names);
    if (!out_names) {
        qerr(err, HISTORY_QERR_STORAGE, "out of memory");
        return HISTORY_QERR_STORAGE;
    }
    int rc = HISTORY_QERR_INVALID;
    int aggregating = q->n_aggs > 0 || q->n_group_by > 0 || bucket_s > 0;
    for (size_t i = 0; i < q->n_group_by; i++) {
        if (!find_column(t, q->group_by[i])) {
            qerr(err, rc, "unknown column in group_by: %s (table %s)",
                 q->group_by[i] ? q->group_by[i] : "(null)", t->name);
            goto fail;
        }
    }
    sb_str(sql, "SELECT ");
    int first = 1;
    if (bucket_s > 0) {
        if (t->time_in_ms)
            sb_fmt(sql, "(\"%s\" / %lld) * %lld AS \"time_bucket\"", t->time_col,
                   (long long)(bucket_s * 1000), (long long)(bucket_s * 1000));
        else
            sb_fmt(sql, "(\"%s\" / %lld) * %lld AS \"time_bucket\"", t->time_col,
                   (long long)(bucket_s * 1000000000LL), (long long)(bucket_s * 1000));
        names_add(out_names, "time_bucket");
        first = 0;
    }
    if (q->n_columns > 0) {
        for (size_t i = 0; i < q->n_columns; i++) {
            const char *col = q->columns[i];
            if (col && strcmp(col, "*") == 0 && !aggregating) {
                for (const char *const *cc = t->cols; *cc; cc++) {
                    sb_fmt(sql, "%s\"%s\"", first ? "" : ", ", *cc);
                    names_add(out_names, *cc);
                    first = 0;
                }
                continue;
            }
            const char *canon = find_column(t, col);
            if (!canon) {
                qerr(err, rc, "unknown column: %s (table %s)", col ? col : "(null)", t->name);
                goto fail;
            }
            if (aggregating && !in_list(q->group_by, q->n_group_by, canon)) {
                qerr(err, rc, "column %s must be in group_by when aggregating", canon);
                goto fail;
            }
            sb_fmt(sql, "%s\"%s\"", first ? "" : ", ", canon);
            names_add(out_names, canon);
            first = 0;
        }
    } else if (aggregating) {
        for (size_t i = 0; i < q->n_group_by; i++) {
            const char *canon = find_column(t, q->group_by[i]);
            sb_fmt(sql, "%s\"%s\"", first ? "" : ", ", canon);
            names_add(out_names, canon);
            first = 0;
        }
    } else {
        for (const char *const *cc = t->cols; *cc; cc++) {
            sb_fmt(sql, "%s\"%s\"", first ? "" : ", ", *cc);
            names_add(out_names, *cc);
            first = 0;
        }
    }
    for (size_t i = 0; i < q->n_aggs; i++) {
        const history_agg *a = &q->aggs[i];
        const char *fname = agg_fn_name(a->fn);
        if (!fname) {
            qerr(err, rc, "unsupported aggregation #%zu", i + 1);
            goto fail;
        }
        char alias[80];
        const char *canon = NULL;
        if (a->fn == HISTORY_AGG_COUNT && is_star(a->column)) {
            snprintf(alias, sizeof alias, "count");
        } else {
            canon = find_column(t, a->column);
            if (!canon) {
                qerr(err, rc, "unknown column in aggregation %s: %s (table %s)", fname,
                     a->column ? a->column : "(none)", t->name);
                goto fail;
            }
            snprintf(alias, sizeof alias, "%s_%s", fname, canon);
        }
        if (a->alias && *a->alias) {
            if (!valid_alias(a->alias)) {
                qerr(err, rc, "invalid alias: %.80s (letters, digits and _ only)", a->alias);
                goto fail;
            }
            snprintf(alias, sizeof alias, "%s", a->alias);
        }
        if (canon)
            sb_fmt(sql, "%s%s(\"%s\") AS \"%s\"", first ? "" : ", ", fname, canon, alias);
        else
            sb_fmt(sql, "%sCOUNT(*) AS \"%s\"", first ? "" : ", ", alias);
        names_add(out_names, alias);
        first = 0;
    }
    sb_fmt(sql, " FROM \"%s\"", t->name);

    const char *joiner = " WHERE ";
    if (q->has_time_range) {
        history_value lo = {HISTORY_VAL_INT, q->time_start_ms, 0, NULL};
        history_value hi = {HISTORY_VAL_INT, q->time_end_ms, 0, NULL};
        if (!t->time_in_ms) {
            if (q->time_start_ms > INT64_MAX / 1000000 || q->time_end_ms > INT64_MAX / 1000000 ||
                q->time_start_ms < INT64_MIN / 1000000 || q->time_end_ms < INT64_MIN / 1000000) {
                qerr(err, rc, "time_range out of range (epoch milliseconds expected)");
                goto fail;
            }
            lo.i *= 1000000;
            hi.i *= 1000000;
        }
        sb_fmt(sql, "%s\"%s\" >= ? AND \"%s\" < ?", joiner, t->time_col, t->time_col);
        joiner = " AND ";
        if (bind_push(binds, &lo) || bind_push(binds, &hi)) goto oom;
    }
    for (size_t i = 0; i < q->n_filters; i++) {
        const history_filter *f = &q->filters[i];
        const char *canon = find_column(t, f->column);
        if (!canon) {
            qerr(err, rc, "unknown column in filter: %s (table %s)",
                 f->column ? f->column : "(null)", t->name);
            goto fail;
        }
        sb_fmt(sql, "%s\"%s\"", joiner, canon);
        joiner = " AND ";
        const char *op = NULL;
        switch (f->op) {
            case HISTORY_OP_EQ:
                op = f->value.type == HISTORY_VAL_NULL ? " IS NULL" : " = ?";
                break;
            case HISTORY_OP_NE:
                op = f->value.type == HISTORY_VAL_NULL ? " IS NOT NULL" : " != ?";
                break;
            case HISTORY_OP_LT:
                op = " < ?";
                break;
            case HISTORY_OP_LE:
                op = " <= ?";
                break;
            case HISTORY_OP_GT:
                op = " > ?";
                break;
            case HISTORY_OP_GE:
                op = " >= ?";
                break;
            case HISTORY_OP_LIKE:
                op = " LIKE ?";
                break;
            case HISTORY_OP_IN:
            case HISTORY_OP_NOT_IN:
                break;
            default:
                qerr(err, rc, "unsupported filter operator on %s", canon);
                goto fail;
        }
        if (op) {
            if (f->value.type == HISTORY_VAL_NULL && f->op != HISTORY_OP_EQ &&
                f->op != HISTORY_OP_NE) {
                qerr(err, rc, "filter on %s: null can only be compared with = or !=", canon);
                goto fail;
            }
            if (f->op == HISTORY_OP_LIKE && f->value.type != HISTORY_VAL_TEXT) {
                qerr(err, rc, "filter on %s: like needs a text pattern", canon);
                goto fail;
            }
            sb_str(sql, op);
            if (f->value.type != HISTORY_VAL_NULL && bind_push(binds, &f->value)) goto oom;
            continue;
        }
        if (!f->values || f->n_values == 0 || f->n_values > 1000) {
            qerr(err, rc, "filter on %s: in / not in needs a list of 1 to 1000 values", canon);
            goto fail;
        }
        sb_str(sql, f->op == HISTORY_OP_IN ? " IN (" : " NOT IN (");
        for (size_t k = 0; k < f->n_values; k++) {
            if (f->values[k].type == HISTORY_VAL_NULL) {
                qerr(err, rc, "filter on %s: null in an in-list", canon);
                goto fail;
            }
            sb_str(sql, k ? ", ?" : "?");
            if (bind_push(binds, &f->values[k])) goto oom;
        }
        sb_str(sql, ")");
    }
    if (q->n_group_by > 0 || bucket_s > 0) {
        sb_str(sql, " GROUP BY ");
        first = 1;
        if (bucket_s > 0) {
            sb_str(sql, "1");
            first = 0;
        }
        for (size_t i = 0; i < q->n_group_by; i++) {
            sb_fmt(sql, "%s\"%s\"", first ? "" : ", ", find_column(t, q->group_by[i]));
            first = 0;
        }
    }
    if (q->n_order_by > 0 || bucket_s > 0) {
        sb_str(sql, " ORDER BY ");
        first = 1;
        if (bucket_s > 0 && q->n_order_by == 0) {
            sb_str(sql, "1");
            for (size_t i = 0; i < q->n_group_by; i++)
                sb_fmt(sql, ", \"%s\"", find_column(t, q->group_by[i]));
        }
        for (size_t i = 0; i < q->n_order_by; i++) {
            const char *col = q->order_by[i].column;
            const char *canon = col ? names_find(out_names, col) : NULL;
            if (!canon && !aggregating) canon = find_column(t, col);
            if (!canon) {
                qerr(err, rc, "unknown order_by column: %s", col ? col : "(null)");
                goto fail;
            }
            sb_fmt(sql, "%s\"%s\" %s", first ? "" : ", ", canon,
                   q->order_by[i].descending ? "DESC" : "ASC");
            first = 0;
        }
    }
    if (q->limit > 0) {
        history_value lv = {HISTORY_VAL_INT, q->limit, 0, NULL};
        sb_str(sql, " LIMIT ?");
        if (bind_push(binds, &lv)) goto oom;
    } else if (q->limit < 0) {
        qerr(err, rc, "limit must not be negative");
        goto fail;
    }
    if (sql->oom) goto oom;
    free(out_names);
    return 0;
oom:
    rc = HISTORY_QERR_STORAGE;
    qerr(err, rc, "out of memory");
fail:
    free(out_names);
    return rc;
}

char *history_structured_sql(const history_structured_query *q, history_query_error *err) {
    if (!q) {
        qerr(err, HISTORY_QERR_INVALID, "missing query");
        return NULL;
    }
    sbuf sql = {0};
    bindlist binds = {0};
    int rc = compile_structured(q, 0, &sql, &binds, err);
    free(binds.v);
    if (rc) {
        free(sql.p);
        return NULL;
    }
    return sql.p;
}

static int run_compiled(history_query_conn *c, const history_structured_query *q, int64_t bucket_s,
                        const history_query_limits *lim, history_format fmt, char **out,
                        history_result_info *info, history_query_error *err) {
    int64_t t0 = now_ns();
    sbuf sql = {0};
    bindlist binds = {0};
    int rc = compile_structured(q, bucket_s, &sql, &binds, err);
    sqlite3_stmt *st = NULL;
    if (rc == 0) rc = prepare_internal(c, sql.p, &st, err);
    if (rc == 0 && bind_all(st, &binds) != SQLITE_OK) {
        qerr(err, HISTORY_QERR_INVALID, "cannot bind the query parameters: %s",
             sqlite3_errmsg(c->db));
        rc = HISTORY_QERR_INVALID;
    }
    if (rc == 0) {
        run_limits rl = limits_of(lim);
        rl.fmt = fmt;
        rc = run_stmt(c, st, &rl, t0, NULL, out, info, err);
    }
    sqlite3_finalize(st);
    free(sql.p);
    free(binds.v);
    return rc;
}

int history_structured(history_query_conn *c, const history_structured_query *q,
                       const history_query_limits *lim, char **out, history_result_info *info,
                       history_query_error *err) {
    if (out) *out = NULL;
    if (!c || !q || !out) {
        qerr(err, HISTORY_QERR_INVALID, "missing query");
        return HISTORY_QERR_INVALID;
    }
    return run_compiled(c, q, 0, lim, limits_of(lim).fmt, out, info, err);
}

/* ---- the JSON front end ---- */

static json_t *jget(json_t *inner, json_t *root, const char *key) {
    json_t *v = inner ? json_object_get(inner, key) : NULL;
    if (!v && root && root != inner) v = json_object_get(root, key);
    return v;
}

static int json_to_value(json_t *j, history_value *v) {
    memset(v, 0, sizeof *v);
    if (json_is_integer(j)) {
        v->type = HISTORY_VAL_INT;
        v->i = json_integer_value(j);
    } else if (json_is_real(j)) {
        v->type = HISTORY_VAL_REAL;
        v->d = json_real_value(j);
    } else if (json_is_string(j)) {
        v->type = HISTORY_VAL_TEXT;
        v->s = json_string_value(j);
    } else if (json_is_boolean(j)) {
        v->type = HISTORY_VAL_INT;
        v->i = json_is_true(j) ? 1 : 0;
    } else if (!j || json_is_null(j)) {
        v->type = HISTORY_VAL_NULL;
    } else {
        return -1;
    }
    return 0;
}

static int parse_op(const char *s, history_filter_op *op) {
    static const struct {
        const char *name;
        history_filter_op op;
    } ops[] = {
        {"eq", HISTORY_OP_EQ},        {"=", HISTORY_OP_EQ},          {"==", HISTORY_OP_EQ},
        {"ne", HISTORY_OP_NE},        {"neq", HISTORY_OP_NE},        {"!=", HISTORY_OP_NE},
        {"<>", HISTORY_OP_NE},        {"lt", HISTORY_OP_LT},         {"<", HISTORY_OP_LT},
        {"lte", HISTORY_OP_LE},       {"le", HISTORY_OP_LE},         {"<=", HISTORY_OP_LE},
        {"gt", HISTORY_OP_GT},        {">", HISTORY_OP_GT},          {"gte", HISTORY_OP_GE},
        {"ge", HISTORY_OP_GE},        {">=", HISTORY_OP_GE},         {"in", HISTORY_OP_IN},
        {"notin", HISTORY_OP_NOT_IN}, {"not_in", HISTORY_OP_NOT_IN}, {"not in", HISTORY_OP_NOT_IN},
        {"nin", HISTORY_OP_NOT_IN},   {"like", HISTORY_OP_LIKE},
    };
    if (!s) return -1;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcasecmp(ops[i].name, s) == 0) {
            *op = ops[i].op;
            return 0;
        }
    return -1;
}

static int parse_agg_name(const char *s, history_agg_fn *fn) {
    if (!s) return -1;
    if (strcasecmp(s, "sum") == 0)
        *fn = HISTORY_AGG_SUM;
    else if (strcasecmp(s, "avg") == 0 || strcasecmp(s, "mean") == 0)
        *fn = HISTORY_AGG_AVG;
    else if (strcasecmp(s, "count") == 0)
        *fn = HISTORY_AGG_COUNT;
    else if (strcasecmp(s, "min") == 0)
        *fn = HISTORY_AGG_MIN;
    else if (strcasecmp(s, "max") == 0)
        *fn = HISTORY_AGG_MAX;
    else
        return -1;
    return 0;
}

/* Everything allocated while translating a JSON request (strings point into the JSON tree). */
typedef struct json_query {
    history_structured_query q;
    const char **columns;
    const char **group_by;
    history_filter *filters;
    history_value *values; /* the in-lists, all filters together */
    history_agg *aggs;
    history_order_by *order_by;
    char *aliases; /* time series: "<metric>_<fn>" names, 80 bytes each */
} json_query;

static void json_query_free(json_query *jq) {
    free(jq->columns);
    free(jq->group_by);
    free(jq->filters);
    free(jq->values);
    free(jq->aggs);
    free(jq->order_by);
    free(jq->aliases);
}

static int string_list(json_t *arr, const char *what, const char ***out, size_t *n,
                       history_query_error *err) {
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr)) return 0;
    if (json_is_string(arr)) {
        *out = malloc(sizeof **out);
        if (!*out) return -1;
        (*out)[0] = json_string_value(arr);
        *n = 1;
        return 0;
    }
    if (!json_is_array(arr)) {
        qerr(err, HISTORY_QERR_INVALID, "%s must be an array of column names", what);
        return -1;
    }
    size_t cnt = json_array_size(arr);
    *out = calloc(cnt ? cnt : 1, sizeof **out);
    if (!*out) return -1;
    for (size_t i = 0; i < cnt; i++) {
        json_t *s = json_array_get(arr, i);
        if (!json_is_string(s)) {
            qerr(err, HISTORY_QERR_INVALID, "%s[%zu] must be a column name", what, i);
            return -1;
        }
        (*out)[i] = json_string_value(s);
    }
    *n = cnt;
    return 0;
}

static int parse_filters(json_t *arr, json_query *jq, history_query_error *err) {
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) {
        qerr(err, HISTORY_QERR_INVALID, "filters must be an array");
        return -1;
    }
    size_t cnt = json_array_size(arr), nvals = 0;
    for (size_t i = 0; i < cnt; i++) {
        json_t *v = json_object_get(json_array_get(arr, i), "value");
        if (json_is_array(v)) nvals += json_array_size(v);
    }
    jq->filters = calloc(cnt ? cnt : 1, sizeof *jq->filters);
    jq->values = calloc(nvals ? nvals : 1, sizeof *jq->values);
    if (!jq->filters || !jq->values) return -1;
    size_t used = 0;
    for (size_t i = 0; i < cnt; i++) {
        json_t *f = json_array_get(arr, i);
        history_filter *hf = &jq->filters[i];
        json_t *col = json_object_get(f, "column");
        json_t *op = json_object_get(f, "op");
        if (!op) op = json_object_get(f, "operator");
        if (!json_is_object(f) || !json_is_string(col) || !json_is_string(op)) {
            qerr(err, HISTORY_QERR_INVALID,
                 "filters[%zu] must be {\"column\":..., \"op\":..., \"value\":...}", i);
            return -1;
        }
        hf->column = json_string_value(col);
        if (parse_op(json_string_value(op), &hf->op)) {
            qerr(err, HISTORY_QERR_INVALID,
                 "filters[%zu]: unknown operator %s (Eq Ne Gt Gte Lt Lte In NotIn Like)", i,
                 json_string_value(op));
            return -1;
        }
        json_t *val = json_object_get(f, "value");
        if (hf->op == HISTORY_OP_IN || hf->op == HISTORY_OP_NOT_IN) {
            if (!json_is_array(val)) {
                qerr(err, HISTORY_QERR_INVALID, "filters[%zu]: in / not in needs a list value", i);
                return -1;
            }
            hf->values = &jq->values[used];
            hf->n_values = json_array_size(val);
            for (size_t k = 0; k < hf->n_values; k++) {
                if (json_to_value(json_array_get(val, k), &jq->values[used++])) {
                    qerr(err, HISTORY_QERR_INVALID, "filters[%zu]: list values must be scalars", i);
                    return -1;
                }
            }
        } else if (json_to_value(val, &hf->value)) {
            qerr(err, HISTORY_QERR_INVALID, "filters[%zu]: value must be a number, string or null",
                 i);
            return -1;
        }
    }
    jq->q.filters = jq->filters;
    jq->q.n_filters = cnt;
    return 0;
}

static int parse_aggs(json_t *arr, json_query *jq, history_query_error *err) {
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) {
        qerr(err, HISTORY_QERR_INVALID, "aggregations must be an array");
        return -1;
    }
    size_t cnt = json_array_size(arr);
    jq->aggs = calloc(cnt ? cnt : 1, sizeof *jq->aggs);
    if (!jq->aggs) return -1;
    for (size_t i = 0; i < cnt; i++) {
        json_t *a = json_array_get(arr, i);
        history_agg *ha = &jq->aggs[i];
        const char *fname = NULL;
        if (json_is_string(a)) {
            fname = json_string_value(a);
        } else if (json_is_object(a)) {
            json_t *t = json_object_get(a, "agg_type");
            if (!t) t = json_object_get(a, "type");
            if (!t) t = json_object_get(a, "fn");
            if (!t) t = json_object_get(a, "func");
            if (json_is_string(t)) {
                fname = json_string_value(t);
                json_t *col = json_object_get(a, "column");
                json_t *alias = json_object_get(a, "alias");
                ha->column = json_is_string(col) ? json_string_value(col) : NULL;
                ha->alias = json_is_string(alias) ? json_string_value(alias) : NULL;
            } else if (json_object_size(a) == 1) {
                /* {"Sum":"volume"} */
                const char *key;
                json_t *val;
                json_object_foreach(a, key, val) {
                    fname = key;
                    ha->column = json_is_string(val) ? json_string_value(val) : NULL;
                }
            }
        }
        if (!fname || parse_agg_name(fname, &ha->fn)) {
            qerr(err, HISTORY_QERR_INVALID,
                 "aggregations[%zu]: unsupported aggregation %s (Sum Avg Count Min Max)", i,
                 fname ? fname : "(missing agg_type)");
            return -1;
        }
        if (ha->fn != HISTORY_AGG_COUNT && is_star(ha->column)) {
            qerr(err, HISTORY_QERR_INVALID, "aggregations[%zu]: %s needs a column", i, fname);
            return -1;
        }
    }
    jq->q.aggs = jq->aggs;
    jq->q.n_aggs = cnt;
    return 0;
}

static int parse_order(json_t *arr, json_t *sort, json_query *jq, history_query_error *err) {
    json_t *single = NULL;
    if (!arr || json_is_null(arr)) {
        if (!sort || json_is_null(sort)) return 0;
        single = sort;
    } else if (!json_is_array(arr)) {
        single = arr;
    }
    size_t cnt = single ? 1 : json_array_size(arr);
    jq->order_by = calloc(cnt ? cnt : 1, sizeof *jq->order_by);
    if (!jq->order_by) return -1;
    for (size_t i = 0; i < cnt; i++) {
        json_t *o = single ? single : json_array_get(arr, i);
        history_order_by *ob = &jq->order_by[i];
        if (json_is_string(o)) {
            ob->column = json_string_value(o);
            continue;
        }
        json_t *col = json_object_get(o, "column");
        if (!json_is_string(col)) {
            qerr(err, HISTORY_QERR_INVALID,
                 "order_by[%zu] must be {\"column\":..., "
                 "\"descending\":bool}",
                 i);
            return -1;
        }
        ob->column = json_string_value(col);
        json_t *d = json_object_get(o, "descending");
        if (!d) d = json_object_get(o, "desc");
        json_t *dir = json_object_get(o, "direction");
        if (!dir) dir = json_object_get(o, "order");
        if (json_is_true(d)) ob->descending = 1;
        if (json_is_string(dir) && strcasecmp(json_string_value(dir), "desc") == 0)
            ob->descending = 1;
    }
    jq->q.order_by = jq->order_by;
    jq->q.n_order_by = cnt;
    return 0;
}

static int json_int_field(json_t *v, const char *what, int64_t *out, history_query_error *err) {
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
        fabs(json_real_value(v)) < 9.2e18) {
        *out = (int64_t)json_real_value(v);
        return 0;
    }
    qerr(err, HISTORY_QERR_INVALID, "%s must be an integer", what);
    return -1;
}

int history_structured_json(history_query_conn *c, const char *json_request,
                            const history_query_limits *lim, char **out, history_result_info *info,
                            history_query_error *err) {
    if (out) *out = NULL;
    if (!c || !json_request || !out) {
        qerr(err, HISTORY_QERR_INVALID, "missing query");
        return HISTORY_QERR_INVALID;
    }
    json_error_t jerr;
    json_t *root = json_loads(json_request, 0, &jerr);
    if (!root || !json_is_object(root)) {
        qerr(err, HISTORY_QERR_INVALID, "the query must be a JSON object%s%s", root ? "" : ": ",
             root ? "" : jerr.text);
        json_decref(root);
        return HISTORY_QERR_INVALID;
    }
    history_query_limits l = lim ? *lim : (history_query_limits){0, 0, HISTORY_FMT_JSON};
    json_t *fmt = json_object_get(root, "format");
    if (json_is_string(fmt)) {
        int f = history_format_parse(json_string_value(fmt));
        if (f < 0) {
            qerr(err, HISTORY_QERR_INVALID, "unknown format %s (json, csv, jsonl)",
                 json_string_value(fmt));
            json_decref(root);
            return HISTORY_QERR_INVALID;
        }
        l.format = (history_format)f;
    }

    /* which kind of query, and where its fields are */
    enum { K_STRUCTURED, K_SQL, K_TIMESERIES } kind = K_STRUCTURED;
    json_t *inner = root;
    json_t *qt = json_object_get(root, "query_type");
    const char *kname = NULL;
    if (json_is_object(qt) && json_object_size(qt) == 1) {
        const char *key;
        json_t *val;
        json_object_foreach(qt, key, val) {
            kname = key;
            inner = json_is_object(val) ? val : root;
        }
    } else if (json_is_string(qt)) {
        kname = json_string_value(qt);
    } else if (qt && !json_is_null(qt)) {
        qerr(err, HISTORY_QERR_INVALID, "query_type must be Structured, Sql or TimeSeries");
        json_decref(root);
        return HISTORY_QERR_INVALID;
    } else if (json_is_string(json_object_get(root, "sql")) ||
               json_is_string(json_object_get(root, "query"))) {
        kname = "sql";
    }
    if (kname) {
        if (strcasecmp(kname, "structured") == 0)
            kind = K_STRUCTURED;
        else if (strcasecmp(kname, "sql") == 0)
            kind = K_SQL;
        else if (strcasecmp(kname, "timeseries") == 0 || strcasecmp(kname, "time_series") == 0)
            kind = K_TIMESERIES;
        else {
            qerr(err, HISTORY_QERR_INVALID, "unknown query_type %s (Structured, Sql, TimeSeries)",
                 kname);
            json_decref(root);
            return HISTORY_QERR_INVALID;
        }
    }
    int rc;
    if (kind == K_SQL) {
        json_t *s = jget(inner, root, "query");
        if (!s) s = jget(inner, root, "sql");
        if (!json_is_string(s)) {
            qerr(err, HISTORY_QERR_INVALID, "an Sql query needs \"query\": \"SELECT ...\"");
            rc = HISTORY_QERR_INVALID;
        } else {
            json_t *lj = jget(inner, root, "limit");
            if (json_is_integer(lj) && json_integer_value(lj) > 0 &&
                (l.row_limit <= 0 || json_integer_value(lj) < l.row_limit))
                l.row_limit = (long)json_integer_value(lj);
            rc = history_sql(c, json_string_value(s), &l, out, info, err);
        }
        json_decref(root);
        return rc;
    }

    json_query jq;
    memset(&jq, 0, sizeof jq);
    int64_t bucket_s = 0;
    rc = HISTORY_QERR_INVALID;
    json_t *table = jget(inner, root, "from");
    if (!table) table = jget(inner, root, "table");
    if (!table && kind == K_TIMESERIES)
        jq.q.table = "trades";
    else if (!json_is_string(table)) {
        qerr(err, rc, "the query needs \"from\": a table (" TABLE_LIST ")");
        goto done;
    } else {
        jq.q.table = json_string_value(table);
    }
    const char **sel = NULL;
    size_t nsel = 0;
    if (kind == K_STRUCTURED) {
        json_t *s = jget(inner, root, "select");
        if (!s) s = jget(inner, root, "columns");
        int bad = string_list(s, "select", &sel, &nsel, err);
        jq.columns = sel;
        if (bad) goto done;
        jq.q.columns = sel;
        jq.q.n_columns = nsel;
        json_t *gb = jget(inner, root, "group_by");
        const char **g = NULL;
        size_t ng = 0;
        bad = string_list(gb, "group_by", &g, &ng, err);
        jq.group_by = g;
        if (bad) goto done;
        jq.q.group_by = g;
        jq.q.n_group_by = ng;
        if (parse_aggs(jget(inner, root, "aggregations"), &jq, err)) goto done;
    } else {
        /* the seed's TimeSeries: metrics x {sum, avg, min, max, count} per bucket and dimension */
        const char **metrics = NULL, **dims = NULL;
        size_t nm = 0, nd = 0;
        if (string_list(jget(inner, root, "metrics"), "metrics", &metrics, &nm, err) ||
            string_list(jget(inner, root, "dimensions"), "dimensions", &dims, &nd, err)) {
            free(metrics);
            free(dims);
            goto done;
        }
        jq.group_by = dims;
        jq.q.group_by = dims;
        jq.q.n_group_by = nd;
        json_t *g = jget(inner, root, "granularity");
        if (json_is_string(g)) {
            bucket_s = history_granularity_seconds(json_string_value(g));
            if (!bucket_s) {
                qerr(err, rc, "Unsupported granularity: %s", json_string_value(g));
                free(metrics);
                goto done;
            }
        } else if (!g || json_is_null(g)) {
            bucket_s = 60;
        } else if (json_int_field(g, "granularity", &bucket_s, err) || bucket_s <= 0 ||
                   bucket_s > 366LL * 86400) {
            qerr(err, rc, "granularity must be a positive number of seconds (at most a year)");
            free(metrics);
            goto done;
        }
        static const history_agg_fn fns[5] = {HISTORY_AGG_SUM, HISTORY_AGG_AVG, HISTORY_AGG_MIN,
                                              HISTORY_AGG_MAX, HISTORY_AGG_COUNT};
        static const char *const suffix[5] = {"sum", "avg", "min", "max", "count"};
        jq.aggs = calloc(nm * 5 + 1, sizeof *jq.aggs);
        /* aliases: metric_sum etc., kept in one block freed with the columns list */
        char *alias_block = calloc(nm * 5 + 1, 80);
        jq.aliases = alias_block;
        if (!jq.aggs || !alias_block) {
            free(metrics);
            qerr(err, HISTORY_QERR_STORAGE, "out of memory");
            rc = HISTORY_QERR_STORAGE;
            goto done;
        }
        for (size_t i = 0; i < nm; i++) {
            for (int k = 0; k < 5; k++) {
                history_agg *a = &jq.aggs[i * 5 + (size_t)k];
                char *al = alias_block + (i * 5 + (size_t)k) * 80;
                snprintf(al, 80, "%.60s_%s", metrics[i], suffix[k]);
                a->fn = fns[k];
                a->column = metrics[i];
                a->alias = valid_alias(al) ? al : NULL;
            }
        }
        jq.q.aggs = jq.aggs;
        jq.q.n_aggs = nm * 5;
        free(metrics); /* the strings live in the JSON tree */
    }
    if (parse_filters(jget(inner, root, "filters"), &jq, err)) goto done;
    if (parse_order(jget(inner, root, "order_by"), jget(inner, root, "sort"), &jq, err)) goto done;
    json_t *tr = jget(inner, root, "time_range");
    if (tr && !json_is_null(tr)) {
        if (!json_is_object(tr) ||
            json_int_field(json_object_get(tr, "start"), "time_range.start", &jq.q.time_start_ms,
                           err) ||
            json_int_field(json_object_get(tr, "end"), "time_range.end", &jq.q.time_end_ms, err)) {
            qerr(err, rc, "time_range must be {\"start\": ms, \"end\": ms}");
            goto done;
        }
        jq.q.has_time_range = 1;
    }
    json_t *lj = jget(inner, root, "limit");
    if (lj && !json_is_null(lj)) {
        int64_t lim_v = 0;
        if (json_int_field(lj, "limit", &lim_v, err) || lim_v < 0) {
            qerr(err, rc, "limit must be a non-negative integer");
            goto done;
        }
        jq.q.limit = (long)lim_v;
    }
    rc = run_compiled(c, &jq.q, bucket_s, &l, limits_of(&l).fmt, out, info, err);
done:
    json_query_free(&jq);
    json_decref(root);
    return rc;
}

/* ---- OHLCV time series ---- */

int64_t history_granularity_seconds(const char *g) {
    static const struct {
        const char *name;
        int64_t s;
    } gs[] = {
        {"1s", 1},      {"3s", 3},     {"5s", 5},       {"10s", 10},   {"30s", 30},
        {"1m", 60},     {"1min", 60},  {"5m", 300},     {"5min", 300}, {"15m", 900},
        {"15min", 900}, {"30m", 1800}, {"30min", 1800}, {"1h", 3600},  {"60min", 3600},
        {"4h", 14400},  {"1d", 86400}, {"day", 86400},
    };
    if (!g) return 0;
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++)
        if (strcasecmp(gs[i].name, g) == 0) return gs[i].s;
    /* any number of seconds, "90" or "90s" (a JSON number reaches here as "<n>s"), up to a
     * year as the structured TimeSeries takes them; nanosecond buckets stay far from overflow */
    int64_t n = 0;
    const char *p = g;
    for (; isdigit((unsigned char)*p) && n <= 366LL * 86400; p++)
        n = n * 10 + (*p - '0');
    if (p == g || (*p != '\0' && strcmp(p, "s") != 0) || n < 1 || n > 366LL * 86400) return 0;
    return n;
}

int history_timeseries(history_query_conn *c, const char *instrument_id, const char *granularity,
                       int64_t start_ms, int64_t end_ms, const history_query_limits *lim,
                       char **out, history_result_info *info, history_query_error *err) {
    if (out) *out = NULL;
    if (!c || !out || !instrument_id || !*instrument_id) {
        qerr(err, HISTORY_QERR_INVALID, "a time series needs an instrument_id");
        return HISTORY_QERR_INVALID;
    }
    int64_t g = history_granularity_seconds(granularity);
    if (!g) {
        qerr(err, HISTORY_QERR_INVALID,
             "Unsupported granularity: %s (1s 5s 10s 30s 1m 5m 15m 30m 1h 4h 1d, or seconds up "
             "to a year)",
             granularity ? granularity : "(none)");
        return HISTORY_QERR_INVALID;
    }
    if (start_ms < 0 || end_ms <= start_ms || end_ms > INT64_MAX / 1000000) {
        qerr(err, HISTORY_QERR_INVALID, "time range [%lld, %lld) is empty or out of range",
             (long long)start_ms, (long long)end_ms);
        return HISTORY_QERR_INVALID;
    }
    int64_t t0 = now_ns();
    run_limits rl = limits_of(lim);
    sqlite3_stmt *st = NULL;
    int rc = prepare_internal(c,
                              "SELECT ts_ns, price, volume FROM trades"
                              " WHERE instrument_id = ?1 AND ts_ns >= ?2 AND ts_ns < ?3"
                              " AND is_taker = 1 ORDER BY ts_ns, trade_id",
                              &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, instrument_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, start_ms * 1000000);
    sqlite3_bind_int64(st, 3, end_ms * 1000000);
    static const char *const names[] = {"bucket_start_ms", "open",   "high",   "low",
                                        "close",           "volume", "amount", "trade_count"};
    qout o;
    qout_begin(&o, rl.fmt, names, 8);
    const int64_t gns = g * 1000000000LL;
    int64_t bucket = -1, volume = 0, count = 0;
    double open = 0, high = 0, low = 0, close = 0, amount = 0;
    int truncated = 0;
    history_value v[8];
    memset(v, 0, sizeof v);
    limits_begin(c, &rl);
    for (;;) {
        rc = sqlite3_step(st);
        int64_t b = -2;
        int64_t ts = 0, vol = 0;
        double px = 0;
        if (rc == SQLITE_ROW) {
            ts = sqlite3_column_int64(st, 0);
            px = sqlite3_column_double(st, 1);
            vol = sqlite3_column_int64(st, 2);
            b = ts / gns;
        } else if (rc != SQLITE_DONE) {
            break;
        }
        if (b != bucket && count > 0) {
            if (o.rows >= rl.row_limit) {
                truncated = 1;
                break;
            }
            v[0] = (history_value){HISTORY_VAL_INT, bucket * g * 1000, 0, NULL};
            v[1] = (history_value){HISTORY_VAL_REAL, 0, open, NULL};
            v[2] = (history_value){HISTORY_VAL_REAL, 0, high, NULL};
            v[3] = (history_value){HISTORY_VAL_REAL, 0, low, NULL};
            v[4] = (history_value){HISTORY_VAL_REAL, 0, close, NULL};
            v[5] = (history_value){HISTORY_VAL_INT, volume, 0, NULL};
            v[6] = (history_value){HISTORY_VAL_REAL, 0, amount, NULL};
            v[7] = (history_value){HISTORY_VAL_INT, count, 0, NULL};
            qout_row(&o, v);
            count = 0;
            if (o.full) {
                truncated = 1;
                break;
            }
        }
        if (rc != SQLITE_ROW) break;
        if (count == 0) {
            bucket = b;
            open = high = low = px;
            volume = 0;
            amount = 0;
        }
        if (px > high) high = px;
        if (px < low) low = px;
        close = px;
        volume += vol;
        amount += px * (double)vol;
        count++;
    }
    limits_end(c);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = step_error(c, rc, &rl, err);
        sqlite3_finalize(st);
        qout_free(&o);
        return rc;
    }
    sqlite3_finalize(st);
    return qout_finish(&o, truncated, t0, NULL, out, info, err);
}

/* ---- trades paging ---- */

int history_date_valid(const char *d) {
    if (!d || strlen(d) != 10) return 0;
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7) {
            if (d[i] != '-') return 0;
        } else if (!isdigit((unsigned char)d[i])) {
            return 0;
        }
    }
    /* a day of the calendar: "2025-02-30" compared as text would quietly stand for a day
     * that does not exist, and turned into a time it would roll over into March */
    int y = atoi(d), m = atoi(d + 5), day = atoi(d + 8);
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || day < 1) return 0;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return day <= days[m - 1] + (m == 2 && leap);
}

/* Refuses a start or end date that is not a calendar date, naming it. */
static int check_dates(const char *sd, const char *ed, history_query_error *err) {
    const char *name = sd && !history_date_valid(sd) ? "start_date" : "end_date";
    const char *bad = sd && !history_date_valid(sd)   ? sd
                      : ed && !history_date_valid(ed) ? ed
                                                      : NULL;
    if (!bad) return 0;
    qerr(err, HISTORY_QERR_INVALID, "%s '%.40s' is not a date (YYYY-MM-DD expected)", name, bad);
    return HISTORY_QERR_INVALID;
}

/* BEGIN or COMMIT of a read transaction: statements between the two see one snapshot of the
 * file even while the writer commits. Queries themselves may not do this (the authorizer). */
static int read_txn(history_query_conn *c, const char *verb, history_query_error *err) {
    c->internal_txn = 1;
    int rc = sqlite3_exec(c->db, verb, NULL, NULL, NULL);
    c->internal_txn = 0;
    if (rc == SQLITE_OK) return 0;
    qerr(err, HISTORY_QERR_STORAGE, "history storage error: %s: %s", verb, sqlite3_errmsg(c->db));
    return HISTORY_QERR_STORAGE;
}

static int trades_page_in_txn(history_query_conn *c, const history_trades_page_query *q,
                              const history_query_limits *lim, char **out,
                              history_query_error *err);

/* The totals and the page are two statements: one read transaction keeps them consistent (a
 * trade committed between them would otherwise be on the page but not in the total). */
int history_trades_page(history_query_conn *c, const history_trades_page_query *q,
                        const history_query_limits *lim, char **out, history_query_error *err) {
    if (out) *out = NULL;
    if (!c) return trades_page_in_txn(c, q, lim, out, err);
    int rc = read_txn(c, "BEGIN", err);
    if (rc != 0) return rc;
    rc = trades_page_in_txn(c, q, lim, out, err);
    history_query_error end_err;
    /* a read transaction left open would pin the connection to this snapshot for good */
    if (read_txn(c, "COMMIT", &end_err) != 0) read_txn(c, "ROLLBACK", &end_err);
    return rc;
}

static int trades_page_in_txn(history_query_conn *c, const history_trades_page_query *q,
                              const history_query_limits *lim, char **out,
                              history_query_error *err) {
    if (out) *out = NULL;
    if (!c || !q || !out || !q->account_id || !*q->account_id) {
        qerr(err, HISTORY_QERR_INVALID, "trade history needs an account_id");
        return HISTORY_QERR_INVALID;
    }
    const char *sd = q->start_date && *q->start_date ? q->start_date : NULL;
    const char *ed = q->end_date && *q->end_date ? q->end_date : NULL;
    if (check_dates(sd, ed, err)) return HISTORY_QERR_INVALID;
    long page = q->page > 0 ? q->page : 1;
    long size = q->size > 0 ? q->size : 20;
    if (size > 1000) {
        qerr(err, HISTORY_QERR_INVALID, "size %ld is too large (at most 1000)", size);
        return HISTORY_QERR_INVALID;
    }
    if (page > (INT64_MAX / 1000) / size) {
        qerr(err, HISTORY_QERR_INVALID, "page %ld is out of range", page);
        return HISTORY_QERR_INVALID;
    }
    int64_t t0 = now_ns();
    run_limits rl = limits_of(lim);
    sbuf where = {0};
    bindlist binds = {0};
    history_value v = {HISTORY_VAL_TEXT, 0, 0, q->account_id};
    sb_str(&where, " WHERE account_id = ?");
    bind_push(&binds, &v);
    if (q->instrument_id && *q->instrument_id) {
        sb_str(&where, " AND instrument_id = ?");
        v = (history_value){HISTORY_VAL_TEXT, 0, 0, q->instrument_id};
        bind_push(&binds, &v);
    }
    if (sd) {
        sb_str(&where, " AND trading_day >= ?");
        v = (history_value){HISTORY_VAL_TEXT, 0, 0, sd};
        bind_push(&binds, &v);
    }
    if (ed) {
        sb_str(&where, " AND trading_day <= ?");
        v = (history_value){HISTORY_VAL_TEXT, 0, 0, ed};
        bind_push(&binds, &v);
    }
    if (q->start_ms > 0 && q->start_ms < INT64_MAX / 1000000) {
        sb_str(&where, " AND ts_ns >= ?");
        v = (history_value){HISTORY_VAL_INT, q->start_ms * 1000000, 0, NULL};
        bind_push(&binds, &v);
    }
    if (q->end_ms > 0 && q->end_ms < INT64_MAX / 1000000) {
        sb_str(&where, " AND ts_ns < ?");
        v = (history_value){HISTORY_VAL_INT, q->end_ms * 1000000, 0, NULL};
        bind_push(&binds, &v);
    }
    sbuf sql = {0};
    sb_fmt(&sql,
           "SELECT COUNT(*), COALESCE(SUM(volume), 0), COALESCE(SUM(commission), 0.0),"
           " COALESCE(SUM(close_profit), 0.0) FROM trades%s",
           where.p ? where.p : "");
    int rc = 0;
    if (where.oom || sql.oom || binds.n == 0) {
        qerr(err, HISTORY_QERR_STORAGE, "out of memory");
        rc = HISTORY_QERR_STORAGE;
    }
    sqlite3_stmt *st = NULL;
    int64_t total = 0, total_volume = 0;
    double total_commission = 0, total_close_profit = 0;
    if (rc == 0) rc = prepare_internal(c, sql.p, &st, err);
    if (rc == 0) {
        bind_all(st, &binds);
        limits_begin(c, &rl);
        int src = sqlite3_step(st);
        limits_end(c);
        if (src == SQLITE_ROW) {
            total = sqlite3_column_int64(st, 0);
            total_volume = sqlite3_column_int64(st, 1);
            total_commission = sqlite3_column_double(st, 2);
            total_close_profit = sqlite3_column_double(st, 3);
        } else {
            rc = step_error(c, src, &rl, err);
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (rc == 0) {
        sql.len = 0;
        /* The page's keys come from the (account_id, ts_ns, trade_id, ...) index alone, and
         * only the page's rows are read from the table: the rows OFFSET skips (up to the
         * account's whole history) are never fetched. The outer ORDER BY repeats the inner one
         * (a total order: trade_id is unique), so pages and ties are as before. */
        const char *dir = q->newest_first ? "DESC" : "ASC";
        sb_fmt(&sql,
               "WITH page(trade_id, ts_ns) AS (SELECT trade_id, ts_ns FROM trades%s"
               " ORDER BY ts_ns %s, trade_id %s LIMIT ? OFFSET ?)"
               " SELECT t.trade_id AS trade_id, t.order_id AS order_id,"
               " t.exchange_trade_id AS exchange_trade_id, t.account_id AS account_id,"
               " t.instrument_id AS instrument_id, t.direction AS direction,"
               " t.\"offset\" AS \"offset\", t.price AS price, t.volume AS volume,"
               " t.commission AS commission, t.close_profit AS close_profit,"
               " t.is_taker AS is_taker, t.ts_ns AS ts_ns, t.trading_day AS trading_day,"
               " t.exchange_order_id AS exchange_order_id, t.is_liquidation AS is_liquidation"
               " FROM page JOIN trades AS t ON t.trade_id = page.trade_id"
               " ORDER BY page.ts_ns %s, page.trade_id %s",
               where.p, dir, dir, dir, dir);
        v = (history_value){HISTORY_VAL_INT, size, 0, NULL};
        bind_push(&binds, &v);
        v = (history_value){HISTORY_VAL_INT, (page - 1) * size, 0, NULL};
        bind_push(&binds, &v);
        if (sql.oom) {
            qerr(err, HISTORY_QERR_STORAGE, "out of memory");
            rc = HISTORY_QERR_STORAGE;
        }
    }
    if (rc == 0) rc = prepare_internal(c, sql.p, &st, err);
    if (rc == 0) {
        bind_all(st, &binds);
        json_t *extra =
            json_pack("{sIsIsIsIsIsfsf}", "page", (json_int_t)page, "size", (json_int_t)size,
                      "pages", (json_int_t)((total + size - 1) / size), "total", (json_int_t)total,
                      "total_volume", (json_int_t)total_volume, "total_commission",
                      total_commission, "total_close_profit", total_close_profit);
        rc = run_stmt(c, st, &rl, t0, extra, out, NULL, err);
        json_decref(extra);
    }
    sqlite3_finalize(st);
    free(sql.p);
    free(where.p);
    free(binds.v);
    return rc;
}

/* ---- equity curve ---- */

int history_equity_curve(history_query_conn *c, const char *account_id, const char *start_date,
                         const char *end_date, int per_day, const history_query_limits *lim,
                         char **out, history_query_error *err) {
    if (out) *out = NULL;
    if (!c || !out || !account_id || !*account_id) {
        qerr(err, HISTORY_QERR_INVALID, "an equity curve needs an account_id");
        return HISTORY_QERR_INVALID;
    }
    const char *sd = start_date && *start_date ? start_date : NULL;
    const char *ed = end_date && *end_date ? end_date : NULL;
    if (check_dates(sd, ed, err)) return HISTORY_QERR_INVALID;
    int64_t t0 = now_ns();
    run_limits rl = limits_of(lim);
    char sql[800];
    /* per day: SQLite takes the bare columns from the row holding MAX(ts_ns) */
    snprintf(sql, sizeof sql,
             "SELECT trading_day, %s, reason, balance, available, margin, position_profit,"
             " close_profit, commission, risk_ratio FROM accounts WHERE account_id = ?1"
             " AND (?2 IS NULL OR trading_day >= ?2) AND (?3 IS NULL OR trading_day <= ?3)%s",
             per_day ? "MAX(ts_ns) AS ts_ns" : "ts_ns",
             per_day ? " GROUP BY trading_day ORDER BY trading_day" : " ORDER BY ts_ns");
    sqlite3_stmt *st = NULL;
    int rc = prepare_internal(c, sql, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, account_id, -1, SQLITE_TRANSIENT);
    if (sd) sqlite3_bind_text(st, 2, sd, -1, SQLITE_TRANSIENT);
    if (ed) sqlite3_bind_text(st, 3, ed, -1, SQLITE_TRANSIENT);
    rc = run_stmt(c, st, &rl, t0, NULL, out, NULL, err);
    sqlite3_finalize(st);
    return rc;
}
