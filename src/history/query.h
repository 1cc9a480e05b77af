/* The history query engine (issue #8): read-only SQL, structured queries, OHLCV time series,
 * trade paging and equity curves over the history file written by history.h.
 *
 * Each query thread opens its own history_query_conn: a read-only SQLite connection (WAL readers
 * never block the writer) with an authorizer that allows reading the history tables and nothing
 * else. A query has a row limit (extra rows are not returned and "truncated" is true) and a time
 * limit (a progress handler interrupts it).
 *
 * Results are JSON text:
 *   {"columns":[...],"rows":[[...],...],"row_count":N,"truncated":bool,"elapsed_ms":x}
 * or CSV (a header line, RFC 4180 quoting) or JSON lines (one {"column":value,...} per row).
 * Every function returns 0 with *out set (free() it), or an error code (HISTORY_QERR_INVALID =
 * 1008 for a refused or invalid request, HISTORY_QERR_STORAGE = 5002 for a storage failure) with
 * a message naming the problem in err->message and *out NULL.
 *
 * Times: table columns keep their units (ts_ns in epoch nanoseconds, klines.start_ms in epoch
 * milliseconds); the query parameters named *_ms are epoch milliseconds. */
#ifndef QAEX_HISTORY_QUERY_H
#define QAEX_HISTORY_QUERY_H

#include <stddef.h>
#include <stdint.h>

#define HISTORY_QERR_INVALID 1008
#define HISTORY_QERR_STORAGE 5002

#define HISTORY_DEFAULT_ROW_LIMIT 10000
#define HISTORY_MAX_ROW_LIMIT 1000000
/* A result stops (truncated, at a whole row) before its text passes this many bytes: rows are
 * limited in number, but one row can be made as wide as a query likes. */
#define HISTORY_MAX_RESULT_BYTES (64u << 20)
#define HISTORY_DEFAULT_TIME_LIMIT_MS 5000

typedef struct history_query_error {
    int code;
    char message[512];
} history_query_error;

typedef enum history_format {
    HISTORY_FMT_JSON = 0,
    HISTORY_FMT_CSV = 1,
    HISTORY_FMT_JSONL = 2,
} history_format;

/* Parses "json", "csv", "jsonl"/"ndjson" (case-insensitive); -1 otherwise. */
int history_format_parse(const char *s);

/* Limits of one query: row_limit <= 0 means HISTORY_DEFAULT_ROW_LIMIT (capped at
 * HISTORY_MAX_ROW_LIMIT); time_limit_ms <= 0 means HISTORY_DEFAULT_TIME_LIMIT_MS. */
typedef struct history_query_limits {
    long row_limit;
    int time_limit_ms;
    history_format format;
} history_query_limits;

/* What a query returned, besides the text (optional out-parameter, may be NULL). */
typedef struct history_result_info {
    long row_count;
    int truncated;
    double elapsed_ms;
} history_result_info;

typedef struct history_query_conn history_query_conn;

/* Opens the history file read-only (the writer must have created it). NULL with err set on
 * failure. One connection per thread. */
history_query_conn *history_query_open(const char *path, history_query_error *err);
void history_query_close(history_query_conn *c);

/* ---- SQL ---- */

/* Runs one read-only SELECT (or WITH ... SELECT, VALUES) over the tables orders, trades,
 * accounts, settlements, transfers, ticks, klines. Refused with 1008: any other statement ("only
 * SELECT is allowed: DELETE"), more than one statement, ATTACH/DETACH, PRAGMA, writes, other tables
 * (sqlite_master, meta), the functions load_extension and fts3_tokenizer; a query running past the
 * time limit is interrupted ("query exceeded the time limit of N ms"). */
int history_sql(history_query_conn *c, const char *sql, const history_query_limits *lim, char **out,
                history_result_info *info, history_query_error *err);

/* ---- structured queries ---- */

typedef enum history_value_type {
    HISTORY_VAL_NULL = 0,
    HISTORY_VAL_INT,
    HISTORY_VAL_REAL,
    HISTORY_VAL_TEXT,
} history_value_type;

typedef struct history_value {
    history_value_type type;
    int64_t i;
    double d;
    const char *s;
} history_value;

typedef enum history_filter_op {
    HISTORY_OP_EQ = 0,
    HISTORY_OP_NE,
    HISTORY_OP_LT,
    HISTORY_OP_LE,
    HISTORY_OP_GT,
    HISTORY_OP_GE,
    HISTORY_OP_IN,
    HISTORY_OP_NOT_IN,
    HISTORY_OP_LIKE,
} history_filter_op;

typedef struct history_filter {
    const char *column;
    history_filter_op op;
    history_value value;         /* every op but in / not in (= NULL means IS NULL) */
    const history_value *values; /* in / not in */
    size_t n_values;
} history_filter;

typedef enum history_agg_fn {
    HISTORY_AGG_SUM = 0,
    HISTORY_AGG_AVG,
    HISTORY_AGG_COUNT,
    HISTORY_AGG_MIN,
    HISTORY_AGG_MAX,
} history_agg_fn;

/* Output name: alias when given, else sum_<col>, avg_<col>, min_<col>, max_<col>, and "count"
 * for COUNT(*) (column NULL, "" or "*") or count_<col> for COUNT(col). */
typedef struct history_agg {
    history_agg_fn fn;
    const char *column;
    const char *alias;
} history_agg;

typedef struct history_order_by {
    const char *column; /* a table column or an output name (e.g. sum_volume) */
    int descending;
} history_order_by;

typedef struct history_structured_query {
    const char *table;
    const char *const *columns; /* NULL/0 = every column (or the group_by columns) */
    size_t n_columns;
    const history_filter *filters;
    size_t n_filters;
    const char *const *group_by;
    size_t n_group_by;
    const history_agg *aggs;
    size_t n_aggs;
    const history_order_by *order_by;
    size_t n_order_by;
    int has_time_range; /* [time_start_ms, time_end_ms) on the table's time column */
    int64_t time_start_ms;
    int64_t time_end_ms;
    long limit; /* 0 = none (the row limit still applies) */
} history_structured_query;

/* Compiles q to one SELECT (identifiers checked against the table's columns, values bound as
 * parameters) and runs it. */
int history_structured(history_query_conn *c, const history_structured_query *q,
                       const history_query_limits *lim, char **out, history_result_info *info,
                       history_query_error *err);

/* The SQL history_structured would run (for logs and tests); free() it. NULL with err set when q
 * is invalid. */
char *history_structured_sql(const history_structured_query *q, history_query_error *err);

/* The JSON front end. Accepted shapes (field names of the seed's QueryRequest):
 *   {"query_type":{"Structured":{"select":[...],"from":"trades"}},
 *    "time_range":{"start":ms,"end":ms}, "filters":[{"column":c,"op":"Eq","value":v}],
 *    "aggregations":[{"agg_type":"Sum","column":"volume","alias":null}],
 *    "group_by":[...], "order_by":[{"column":c,"descending":true}], "limit":N}
 *   the same flat: {"table"|"from":..., "select"|"columns":[...], ...}
 *   {"query_type":{"Sql":{"query":"SELECT ..."}}} or {"sql"|"query":"SELECT ..."}
 *   {"query_type":{"TimeSeries":{"metrics":["price"],"dimensions":["instrument_id"],
 *    "granularity":60}}, "from":"trades", "time_range":..., "filters":...}: per bucket of
 *    granularity seconds (or "1m" style), time_bucket (epoch ms), the dimensions and
 *    <metric>_sum/_avg/_min/_max/_count.
 * Ops: Eq Ne Gt Gte Lt Lte In NotIn Like or = != <> < <= > >= in "not in" like. Aggregations:
 * {"agg_type"|"type"|"fn": "Sum", "column":..}, {"Sum":"volume"}, "Count". "sort":{"column",
 * "descending"} is accepted for order_by. "format" ("json"|"csv"|"jsonl") overrides lim->format. */
int history_structured_json(history_query_conn *c, const char *json_request,
                            const history_query_limits *lim, char **out, history_result_info *info,
                            history_query_error *err);

/* ---- OHLCV time series from trades ---- */

/* Granularity in seconds for "1s" "5s" "10s" "30s" "1m" "5m" "15m" "30m" "1h" "4h" "1d" (also
 * "1min" "5min" "15min" "30min" "60min" "day"), or a number of seconds "N" / "Ns" with N in
 * [1, 366 days]; 0 when unsupported. */
int64_t history_granularity_seconds(const char *g);

/* Buckets of the instrument's trades (the taker side of each match, so a match counts once) over
 * [start_ms, end_ms), aligned to the epoch (UTC), oldest first. Columns: bucket_start_ms, open,
 * high, low, close, volume, amount (sum of price * volume), trade_count. Open and close are the
 * first and last trade of the bucket by (ts_ns, trade_id). Empty buckets are omitted. */
int history_timeseries(history_query_conn *c, const char *instrument_id, const char *granularity,
                       int64_t start_ms, int64_t end_ms, const history_query_limits *lim,
                       char **out, history_result_info *info, history_query_error *err);

/* 1 when d is a day of the calendar written YYYY-MM-DD ("2024-02-29" yes, "2025-02-30" and
 * "2025-1-5" no), else 0. The rule of the engine's qaex_date_valid, kept here because this
 * library links nothing of the engine. */
int history_date_valid(const char *d);

/* ---- trades paging ---- */

typedef struct history_trades_page_query {
    const char *account_id;    /* required */
    const char *instrument_id; /* NULL or "" = all */
    const char *start_date;    /* trading_day >= "YYYY-MM-DD"; NULL = open */
    const char *end_date;      /* trading_day <= "YYYY-MM-DD"; NULL = open */
    int64_t start_ms, end_ms;  /* ts_ns in [start_ms, end_ms) when non-zero */
    long page;                 /* 1-based; <= 0 means 1 */
    long size;                 /* 1..1000; <= 0 means 20 */
    int newest_first;          /* order by (ts_ns, trade_id) descending instead of ascending */
} history_trades_page_query;

/* JSON: the result object plus "page", "size", "total" (matching trades), "total_volume",
 * "total_commission", "total_close_profit", "pages", all read in one transaction with the page.
 * The order (ts_ns, trade_id) is total, so pages never overlap. */
int history_trades_page(history_query_conn *c, const history_trades_page_query *q,
                        const history_query_limits *lim, char **out, history_query_error *err);

/* ---- equity curve ---- */

/* per_day: one row per trading day (the day's last snapshot); otherwise every snapshot. Dates
 * inclusive, NULL = open. Columns: trading_day, ts_ns, reason, balance, available, margin,
 * position_profit, close_profit, commission, risk_ratio. */
int history_equity_curve(history_query_conn *c, const char *account_id, const char *start_date,
                         const char *end_date, int per_day, const history_query_limits *lim,
                         char **out, history_query_error *err);

#endif
