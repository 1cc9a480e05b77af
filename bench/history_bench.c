/* history_bench: the history store under the server's own feed (issue #8 must-show 3).
 *
 *   history_bench [--dir D] [--commands N] [--rows R] [--group-rows G] [--queries Q] [--parts 123]
 *
 * Everything lives in a fresh directory (mkdtemp under --dir, default /tmp), removed at the end.
 *
 *   1  insert rate while the engine trades at full speed: N commands (default 1,000,000) of
 *      crossing limit orders over 1,000 accounts (each pair of commands is one match: 2 order
 *      inserts, 2 fills, 2 trades, a tick) go through persistence_log + engine_apply on this
 *      thread, as the server's engine thread does, journal durability "sync". Once without the
 *      history, once with the history feed attached (replica engine + SQLite writer threads).
 *      Reports the engine's commands/s both ways (the slowdown), and the history's rows/s from
 *      the first command until the history has committed the last one.
 *   2  trades page P99: a history file with R trade rows (default 10,000,000) over 1,000
 *      accounts is filled through history_submit_trade; then Q (default 2,000) pages of 100
 *      (history_trades_page: count + totals + the page) for random accounts and random pages,
 *      newest first; P50/P99/max.
 *   3  GROUP BY over G trades (default 1,000,000): count, sum, avg per instrument and direction
 *      through history_sql, median of 5 runs (page cache warm). */
#include "engine/engine.h"
#include "history/history.h"
#include "history/query.h"
#include "server/history_feed.h"
#include "server/persistence.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *err) {
    fprintf(stderr, "history_bench: %s: %s\n", what, err);
    exit(1);
}

#define ACCOUNTS 1000
#define BASE_NS 1735781400000000000LL /* 2025-01-02 01:30 UTC (09:30 China time) */

static char base_dir[512];

static void rm_rf(const char *path) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "history_bench: could not remove %s\n", path);
}

static void log_apply(persistence *p, engine *e, const command *c) {
    uint64_t seq;
    char err[512];
    engine_result r;
    if (persistence_log(p, c, &seq, err, sizeof err) != 0) die("journal", err);
    engine_apply(e, c, &r);
}

/* Instruments and accounts, through the journal. */
static int64_t setup(persistence *p, engine *e) {
    int64_t ts = BASE_NS;
    instrument_spec specs[8];
    size_t n = engine_default_instruments(specs, 8);
    for (size_t i = 0; i < n; i++) {
        command c;
        memset(&c, 0, sizeof c);
        c.type = CMD_INSTRUMENT_ADD;
        c.ts_ns = ts++;
        c.u.instrument.spec = specs[i];
        log_apply(p, e, &c);
    }
    for (int i = 0; i < ACCOUNTS; i++) {
        command c;
        memset(&c, 0, sizeof c);
        c.type = CMD_ACCOUNT_OPEN;
        c.ts_ns = ts++;
        snprintf(c.u.account_open.account_id, sizeof c.u.account_open.account_id, "B%d", i);
        snprintf(c.u.account_open.user_id, sizeof c.u.account_open.user_id, "B%d", i);
        c.u.account_open.init_cash = 1e12;
        log_apply(p, e, &c);
    }
    return ts;
}

/* Command i of the stream: pairs of crossing orders between two accounts. */
static void order_command(uint64_t i, int64_t ts, command *c) {
    memset(c, 0, sizeof *c);
    c->type = CMD_ORDER_INSERT;
    c->ts_ns = ts;
    uint64_t pair = i / 2;
    int buyer = (int)(pair % ACCOUNTS), seller = (int)((pair + 1 + pair / ACCOUNTS) % ACCOUNTS);
    if (seller == buyer) seller = (buyer + 1) % ACCOUNTS;
    order_request *o = &c->u.order;
    snprintf(o->account_id, sizeof o->account_id, "B%d", i % 2 ? seller : buyer);
    snprintf(o->instrument_id, sizeof o->instrument_id, "CFFEX.IF2501");
    o->direction = i % 2 ? DIR_SELL : DIR_BUY;
    o->offset = OFFSET_OPEN;
    o->price_type = PRICE_LIMIT;
    o->time_condition = TC_GFD;
    o->volume_condition = VC_ANY;
    o->limit_price = 3800.0 + (double)(pair % 10) * 0.2;
    o->volume = 1;
}

typedef struct run_result {
    double engine_secs;
    double history_secs; /* first command .. last committed */
    uint64_t rows;
    uint64_t trades;
    uint64_t ring_dropped, from_journal;
} run_result;

static uint64_t json_u64(json_t *o, const char *a, const char *b) {
    json_t *v = json_object_get(o, a);
    if (b) v = json_object_get(v, b);
    return (uint64_t)json_integer_value(v);
}

static run_result run_engine(uint64_t n, bool with_history, const command *stream) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/run-%s", base_dir, with_history ? "history" : "plain");
    mkdir(dir, 0755);
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.trades_per_account = 100;
    cfg.finished_orders_per_account = 100;
    persistence_options po = {.data_dir = dir, .snapshot_every_commands = 0};
    persistence_recovery info;
    engine *e;
    char err[1024];
    persistence *p = persistence_open(&po, &cfg, &e, &info, err, sizeof err);
    if (p == NULL) die("persistence_open", err);
    history_feed *feed = NULL;
    if (with_history) {
        history_feed_options ho = {
            .data_dir = dir, .engine_cfg = &cfg, .p = p, .ring_capacity = 65536};
        feed = history_feed_start(&ho, err, sizeof err);
        if (feed == NULL) die("history_feed_start", err);
    }
    setup(p, e);
    run_result r = {0};
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        log_apply(p, e, &stream[i]);
    uint64_t t1 = now_ns();
    r.engine_secs = (double)(t1 - t0) / 1e9;
    uint64_t last = persistence_last_seq(p);
    if (feed) {
        while (!history_feed_wait(feed, last, 60000)) {
        }
        uint64_t t2 = now_ns();
        r.history_secs = (double)(t2 - t0) / 1e9;
        char *text = history_feed_stats_json(feed);
        json_t *j = text ? json_loads(text, 0, NULL) : NULL;
        free(text);
        r.rows = json_u64(j, "inserted", NULL);
        r.trades = json_u64(j, "rows", "trades");
        r.ring_dropped = json_u64(j, "feed", "ring_dropped");
        r.from_journal = json_u64(j, "feed", "from_journal");
        json_decref(j);
        history_feed_stop(feed);
    }
    persistence_close(p, NULL);
    engine_destroy(e);
    rm_rf(dir);
    return r;
}

static void part_insert(uint64_t n) {
    command *stream = malloc(n * sizeof *stream);
    if (stream == NULL) die("memory", "command stream");
    int64_t ts = BASE_NS + 10000;
    for (uint64_t i = 0; i < n; i++)
        order_command(i, ts += 1000, &stream[i]); /* 1 µs apart: ~1 s of market time per 1M */
    printf("== 1. insert rate while the engine trades (%llu commands, %d accounts, sync journal)\n",
           (unsigned long long)n, ACCOUNTS);
    run_result plain = run_engine(n, false, stream);
    run_result hist = run_engine(n, true, stream);
    run_result plain2 = run_engine(n, false, stream);
    double base = plain.engine_secs < plain2.engine_secs ? plain.engine_secs : plain2.engine_secs;
    printf("engine alone:        %.3f s, %.0f commands/s (second run %.3f s)\n", plain.engine_secs,
           (double)n / base, plain2.engine_secs);
    printf("engine with history: %.3f s, %.0f commands/s: slowed by %.1f%%\n", hist.engine_secs,
           (double)n / hist.engine_secs, 100.0 * (hist.engine_secs / base - 1.0));
    printf("history: %llu rows (%llu trades) committed %.3f s after the first command: %.0f rows/s "
           "sustained; ring drops %llu, commands read back from the journal %llu\n",
           (unsigned long long)hist.rows, (unsigned long long)hist.trades, hist.history_secs,
           (double)hist.rows / hist.history_secs, (unsigned long long)hist.ring_dropped,
           (unsigned long long)hist.from_journal);
    free(stream);
}

/* A history file of `rows` trades over ACCOUNTS accounts, 3 instruments. */
static void fill_trades(const char *path, uint64_t rows) {
    char err[512];
    history_options opts = {
        .queue_capacity = 1 << 17, .batch_max = 50000, .batch_ms = 50, .submit_timeout_ms = 60000};
    history_store *h = history_open(path, &opts, err, sizeof err);
    if (h == NULL) die("history_open", err);
    static const char *const ins[] = {"CFFEX.IF2501", "CFFEX.IC2501", "CFFEX.IH2501"};
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < rows; i++) {
        history_trade_rec r;
        memset(&r, 0, sizeof r);
        snprintf(r.trade_id, sizeof r.trade_id, "T%020llu", (unsigned long long)i + 1);
        snprintf(r.order_id, sizeof r.order_id, "O%020llu", (unsigned long long)i / 2 + 1);
        snprintf(r.exchange_trade_id, sizeof r.exchange_trade_id, "M%020llu",
                 (unsigned long long)i / 2 + 1);
        snprintf(r.account_id, sizeof r.account_id, "B%llu",
                 (unsigned long long)((i * 7919) % ACCOUNTS));
        snprintf(r.instrument_id, sizeof r.instrument_id, "%s", ins[(i / 2) % 3]);
        snprintf(r.direction, sizeof r.direction, "%s", i % 2 ? "SELL" : "BUY");
        snprintf(r.offset, sizeof r.offset, "OPEN");
        r.price = 3800.0 + (double)(i % 50) * 0.2;
        r.volume = 1 + (int64_t)(i % 5);
        r.commission = 26.22;
        r.is_taker = (int)(i % 2);
        r.ts_ns = BASE_NS + (int64_t)(i / 2) * 100000;
        snprintf(r.trading_day, sizeof r.trading_day, "2025-01-%02u",
                 2u + (unsigned)(i * 20 / rows) % 28u);
        r.journal_seq = i / 2 + 1;
        if (history_submit_trade(h, &r) != HISTORY_OK) die("submit", "queue full");
        if (i % 2) history_submit_mark(h, i / 2 + 1);
    }
    history_flush(h, 0);
    uint64_t t1 = now_ns();
    history_close(h);
    printf("filled %llu trade rows in %.1f s (%.0f rows/s, writer alone)\n",
           (unsigned long long)rows, (double)(t1 - t0) / 1e9, (double)rows / ((t1 - t0) / 1e9));
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void part_pages(uint64_t rows, int queries) {
    char path[700];
    snprintf(path, sizeof path, "%s/pages.db", base_dir);
    printf("== 2. trades page of 100 out of %llu rows (%d accounts, %d queries)\n",
           (unsigned long long)rows, ACCOUNTS, queries);
    fill_trades(path, rows);
    history_query_error qe;
    history_query_conn *c = history_query_open(path, &qe);
    if (c == NULL) die("history_query_open", qe.message);
    uint64_t *lat = malloc((size_t)queries * sizeof *lat);
    uint64_t per_account = rows / ACCOUNTS, seed = 12345;
    for (int k = -50; k < queries; k++) { /* 50 warm-up queries */
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        char acc[16];
        snprintf(acc, sizeof acc, "B%llu", (unsigned long long)((seed >> 33) % ACCOUNTS));
        long pages = (long)(per_account / 100);
        history_trades_page_query q = {.account_id = acc,
                                       .page = 1 + (long)((seed >> 13) % (uint64_t)(pages + 1)),
                                       .size = 100,
                                       .newest_first = 1};
        char *out = NULL;
        uint64_t t0 = now_ns();
        if (history_trades_page(c, &q, NULL, &out, &qe) != 0) die("trades page", qe.message);
        uint64_t t1 = now_ns();
        free(out);
        if (k >= 0) lat[k] = t1 - t0;
    }
    qsort(lat, (size_t)queries, sizeof *lat, cmp_u64);
    printf("page of 100 (count + totals + rows), %llu trades per account: P50 %.2f ms, P99 %.2f "
           "ms, max %.2f ms\n",
           (unsigned long long)per_account, lat[queries / 2] / 1e6,
           lat[(size_t)queries * 99 / 100] / 1e6, lat[queries - 1] / 1e6);
    /* the first page, as a blotter opens */
    for (int k = 0; k < queries; k++) {
        char acc[16];
        snprintf(acc, sizeof acc, "B%d", k % ACCOUNTS);
        history_trades_page_query q = {
            .account_id = acc, .page = 1, .size = 100, .newest_first = 1};
        char *out = NULL;
        uint64_t t0 = now_ns();
        if (history_trades_page(c, &q, NULL, &out, &qe) != 0) die("trades page", qe.message);
        lat[k] = now_ns() - t0;
        free(out);
    }
    qsort(lat, (size_t)queries, sizeof *lat, cmp_u64);
    printf("first page of 100: P50 %.2f ms, P99 %.2f ms, max %.2f ms\n", lat[queries / 2] / 1e6,
           lat[(size_t)queries * 99 / 100] / 1e6, lat[queries - 1] / 1e6);
    free(lat);
    history_query_close(c);
    unlink(path);
}

static void part_group(uint64_t rows) {
    char path[700];
    snprintf(path, sizeof path, "%s/group.db", base_dir);
    printf("== 3. GROUP BY over %llu trades\n", (unsigned long long)rows);
    fill_trades(path, rows);
    history_query_error qe;
    history_query_conn *c = history_query_open(path, &qe);
    if (c == NULL) die("history_query_open", qe.message);
    const char *sql = "SELECT instrument_id, direction, COUNT(*) AS n, SUM(volume) AS volume,"
                      " AVG(price) AS avg_price, SUM(price * volume) AS amount FROM trades"
                      " GROUP BY instrument_id, direction ORDER BY instrument_id, direction";
    uint64_t t[6];
    char *out = NULL;
    for (int k = 0; k < 6; k++) { /* the first run warms the page cache */
        uint64_t t0 = now_ns();
        history_query_limits lim = {.time_limit_ms = 60000};
        if (history_sql(c, sql, &lim, &out, NULL, &qe) != 0) die("group by", qe.message);
        t[k] = now_ns() - t0;
        if (k < 5) free(out);
    }
    qsort(t + 1, 5, sizeof t[0], cmp_u64);
    printf("%s\ncold %.1f ms, warm median of 5 %.1f ms (min %.1f)\n%.300s\n", sql, t[0] / 1e6,
           t[3] / 1e6, t[1] / 1e6, out);
    free(out);
    history_query_close(c);
    unlink(path);
}

int main(int argc, char **argv) {
    const char *dir = "/tmp", *parts = "123";
    uint64_t commands = 1000000, rows = 10000000, group_rows = 1000000;
    int queries = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--commands") == 0)
            commands = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--rows") == 0)
            rows = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--group-rows") == 0)
            group_rows = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--queries") == 0)
            queries = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--parts") == 0)
            parts = argv[i + 1];
        else {
            fprintf(stderr,
                    "usage: history_bench [--dir D] [--commands N] [--rows R] [--group-rows G] "
                    "[--queries Q] [--parts 123]\n");
            return 2;
        }
    }
    if (queries < 1) queries = 1;
    snprintf(base_dir, sizeof base_dir, "%s/history_bench.XXXXXX", dir);
    if (mkdtemp(base_dir) == NULL) die("mkdtemp", base_dir);
    printf("history_bench in %s, %ld CPUs\n", base_dir, sysconf(_SC_NPROCESSORS_ONLN));
    if (strchr(parts, '1')) part_insert(commands);
    if (strchr(parts, '2')) part_pages(rows, queries);
    if (strchr(parts, '3')) part_group(group_rows);
    rm_rf(base_dir);
    return 0;
}
