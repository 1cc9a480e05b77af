/* The history store and query engine (src/history): a scripted two-day trading session of about
 * 10,000 trades (with their order state changes, ticks, account snapshots, settlements and
 * transfers) goes through the writer queue; every answer of the query engine is compared with
 * figures this test computes itself from the records it generated: counts and sums by SQL, GROUP
 * BY, structured queries (C and JSON), OHLCV buckets for every granularity, trade paging and
 * totals, the equity curve. Then the guards: writes, ATTACH, PRAGMA, several statements and
 * load_extension are refused with 1008 and leave the file unchanged; the time limit stops a
 * runaway recursive query; the row limit truncates. Finally the writer's contract: records of
 * already-applied journal sequences are not inserted again, a half-written command is completed
 * without duplicates, a full queue makes submit wait and report, data survives a reopen, and
 * retention and maintenance work. */
#include "check.h"
#include "history/history.h"
#include "history/query.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the scripted day ---- */

#define N_ACCOUNTS 20
#define N_INSTR 3
#define MAX_TRADES 12000
#define MAX_ORDERS 16000
#define MAX_TICKS 16000
#define MAX_SNAPS 2000

static const char *const instr_ids[N_INSTR] = {"CFFEX.IF2501", "CFFEX.IC2501", "CFFEX.IH2501"};
static const double instr_mult[N_INSTR] = {300, 200, 300};
static const int64_t day_base_s[2] = {1735781400, 1735867800}; /* 01:30 UTC on 2025-01-02/03 */
static const char *const day_names[2] = {"2025-01-02", "2025-01-03"};

static history_trade_rec *g_trades;
static size_t g_ntrades;
static history_order_rec *g_orders;
static size_t g_norders;
static history_tick_rec *g_ticks;
static size_t g_nticks;
static history_account_rec *g_snaps;
static size_t g_nsnaps;
static history_settlement_rec g_settle[2];
static history_transfer_rec g_transfers[4];
static history_kline_rec g_klines[3];
static uint64_t g_last_seq;
static char g_dir[64];
static char g_path[128];

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t xorshift64(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static void account_name(int a, char *out, size_t len) {
    snprintf(out, len, "acc_%02d", a);
}

static void generate_day(void) {
    g_trades = calloc(MAX_TRADES, sizeof *g_trades);
    g_orders = calloc(MAX_ORDERS, sizeof *g_orders);
    g_ticks = calloc(MAX_TICKS, sizeof *g_ticks);
    g_snaps = calloc(MAX_SNAPS, sizeof *g_snaps);
    int64_t ticks_px[N_INSTR] = {19000, 28000, 14000}; /* price in 0.2 ticks */
    int64_t cum_vol[N_INSTR] = {0, 0, 0};
    uint64_t seq = 1, trade_no = 1, order_no = 1, match_no = 1;
    double balance[N_ACCOUNTS];
    for (int a = 0; a < N_ACCOUNTS; a++)
        balance[a] = 1000000.0;
    for (int d = 0; d < 2; d++) {
        int64_t ts = day_base_s[d] * 1000000000LL;
        for (int cmd = 0; cmd < 2300; cmd++) {
            ts += (int64_t)(1 + xorshift64() % 8) * 1000000000LL + (int64_t)(xorshift64() % 1000);
            int inst = (int)(xorshift64() % N_INSTR);
            int matches = cmd % 10 == 3 ? 2 : 1; /* two matches share a timestamp */
            for (int m = 0; m < matches; m++) {
                ticks_px[inst] += (int64_t)(xorshift64() % 5) - 2;
                double px = (double)ticks_px[inst] * 0.2;
                int64_t vol = 1 + (int64_t)(xorshift64() % 10);
                int taker = (int)(xorshift64() % N_ACCOUNTS);
                int maker = (taker + 1 + (int)(xorshift64() % (N_ACCOUNTS - 1))) % N_ACCOUNTS;
                int taker_buys = (int)(xorshift64() % 2);
                int closing = xorshift64() % 4 == 0;
                char mid[HISTORY_ID_LEN];
                snprintf(mid, sizeof mid, "M%020llu", (unsigned long long)match_no++);
                for (int side = 0; side < 2; side++) {
                    int acct = side == 0 ? taker : maker;
                    int buys = side == 0 ? taker_buys : !taker_buys;
                    history_trade_rec *t = &g_trades[g_ntrades++];
                    snprintf(t->trade_id, sizeof t->trade_id, "T%020llu",
                             (unsigned long long)trade_no++);
                    snprintf(t->order_id, sizeof t->order_id, "O%020llu",
                             (unsigned long long)order_no++);
                    snprintf(t->exchange_trade_id, sizeof t->exchange_trade_id, "%s", mid);
                    account_name(acct, t->account_id, sizeof t->account_id);
                    snprintf(t->instrument_id, sizeof t->instrument_id, "%s", instr_ids[inst]);
                    snprintf(t->direction, sizeof t->direction, "%s", buys ? "BUY" : "SELL");
                    snprintf(t->offset, sizeof t->offset, "%s", closing ? "CLOSE" : "OPEN");
                    t->price = px;
                    t->volume = vol;
                    t->commission = px * (double)vol * instr_mult[inst] * 0.000023;
                    t->close_profit =
                        closing ? (double)((int64_t)(xorshift64() % 2001) - 1000) : 0.0;
                    t->is_taker = side == 0;
                    t->ts_ns = ts;
                    snprintf(t->trading_day, sizeof t->trading_day, "%s", day_names[d]);
                    t->journal_seq = seq;
                    balance[acct] += t->close_profit - t->commission;
                    /* the order: the taker's was submitted, then filled; the maker's filled */
                    for (int st = side == 0 ? 0 : 1; st < 2; st++) {
                        history_order_rec *o = &g_orders[g_norders++];
                        snprintf(o->order_id, sizeof o->order_id, "%s", t->order_id);
                        snprintf(o->account_id, sizeof o->account_id, "%s", t->account_id);
                        snprintf(o->instrument_id, sizeof o->instrument_id, "%s", t->instrument_id);
                        snprintf(o->direction, sizeof o->direction, "%s", t->direction);
                        snprintf(o->offset, sizeof o->offset, "%s", t->offset);
                        snprintf(o->price_type, sizeof o->price_type, "LIMIT");
                        o->limit_price = px;
                        o->volume_orign = vol;
                        o->volume_left = st == 0 ? vol : 0;
                        snprintf(o->status, sizeof o->status, "%s",
                                 st == 0 ? "Submitted" : "Filled");
                        o->ts_ns = ts;
                        o->journal_seq = seq;
                    }
                }
                cum_vol[inst] += vol;
            }
            history_tick_rec *k = &g_ticks[g_nticks++];
            snprintf(k->instrument_id, sizeof k->instrument_id, "%s", instr_ids[inst]);
            k->ts_ns = ts;
            k->price = (double)ticks_px[inst] * 0.2;
            k->volume = cum_vol[inst];
            k->open_interest = cum_vol[inst] / 2;
            k->journal_seq = seq;
            /* interval snapshots of every account every 500 commands (not journaled) */
            if (cmd % 500 == 499) {
                for (int a = 0; a < N_ACCOUNTS; a++) {
                    history_account_rec *s = &g_snaps[g_nsnaps++];
                    account_name(a, s->account_id, sizeof s->account_id);
                    s->ts_ns = ts;
                    snprintf(s->trading_day, sizeof s->trading_day, "%s", day_names[d]);
                    s->balance = balance[a];
                    s->available = balance[a] * 0.8;
                    s->margin = balance[a] * 0.2;
                    s->risk_ratio = 0.2;
                    snprintf(s->reason, sizeof s->reason, "interval");
                    s->journal_seq = 0;
                }
            }
            seq += xorshift64() % 5 == 0 ? 2 : 1; /* some commands make no history */
        }
        /* the settlement closes the day */
        ts += 3600LL * 1000000000LL;
        for (int a = 0; a < N_ACCOUNTS; a++) {
            history_account_rec *s = &g_snaps[g_nsnaps++];
            account_name(a, s->account_id, sizeof s->account_id);
            s->ts_ns = ts;
            snprintf(s->trading_day, sizeof s->trading_day, "%s", day_names[d]);
            s->balance = balance[a];
            s->available = balance[a] * 0.7;
            s->margin = balance[a] * 0.3;
            s->risk_ratio = 0.3;
            snprintf(s->reason, sizeof s->reason, "settlement");
            s->journal_seq = seq;
        }
        history_settlement_rec *sr = &g_settle[d];
        snprintf(sr->settlement_date, sizeof sr->settlement_date, "%s", day_names[d]);
        sr->ts_ns = ts;
        sr->total_accounts = sr->settled_accounts = N_ACCOUNTS;
        sr->force_closed_accounts = d == 0 ? "[\"acc_07\"]" : NULL;
        sr->journal_seq = seq;
        seq++;
        for (int x = 0; x < 2; x++) {
            history_transfer_rec *tr = &g_transfers[d * 2 + x];
            snprintf(tr->txn_id, sizeof tr->txn_id, "TXN%s%08d", day_names[d], x + 1);
            account_name(x, tr->account_id, sizeof tr->account_id);
            snprintf(tr->kind, sizeof tr->kind, "%s", x ? "withdraw" : "deposit");
            tr->amount = 1000.0 * (x + 1);
            tr->ts_ns = ts + 1;
            snprintf(tr->trading_day, sizeof tr->trading_day, "%s", day_names[d]);
            snprintf(tr->status, sizeof tr->status, "completed");
            tr->journal_seq = seq++;
        }
    }
    for (int i = 0; i < 3; i++) {
        history_kline_rec *kl = &g_klines[i];
        snprintf(kl->instrument_id, sizeof kl->instrument_id, "%s", instr_ids[0]);
        kl->period_s = 60;
        kl->start_ms = day_base_s[0] * 1000 + i * 60000;
        kl->open = kl->high = kl->low = kl->close = 3800 + i;
        kl->volume = 10 + i;
        kl->journal_seq = seq;
    }
    g_last_seq = seq;
}

/* Submits everything in journal order; the K-lines and a final mark close sequence g_last_seq. */
static int submit_day(history_store *h) {
    int bad = 0;
    size_t ti = 0, oi = 0, ki = 0, si = 0;
    int d = 0;
    while (ti < g_ntrades) {
        uint64_t seq = g_trades[ti].journal_seq;
        while (oi < g_norders && g_orders[oi].journal_seq == seq)
            bad += history_submit_order(h, &g_orders[oi++]) != HISTORY_OK;
        while (ti < g_ntrades && g_trades[ti].journal_seq == seq)
            bad += history_submit_trade(h, &g_trades[ti++]) != HISTORY_OK;
        while (ki < g_nticks && g_ticks[ki].journal_seq == seq)
            bad += history_submit_tick(h, &g_ticks[ki++]) != HISTORY_OK;
        /* interval snapshots taken after this command */
        while (si < g_nsnaps && g_snaps[si].journal_seq == 0 &&
               g_snaps[si].ts_ns <= g_trades[ti - 1].ts_ns)
            bad += history_submit_account(h, &g_snaps[si++]) != HISTORY_OK;
        /* the day's settlement, once its trades are in */
        if (ti == g_ntrades || strcmp(g_trades[ti].trading_day, day_names[d]) != 0) {
            while (si < g_nsnaps && strcmp(g_snaps[si].trading_day, day_names[d]) == 0)
                bad += history_submit_account(h, &g_snaps[si++]) != HISTORY_OK;
            bad += history_submit_settlement(h, &g_settle[d]) != HISTORY_OK;
            bad += history_submit_transfer(h, &g_transfers[d * 2]) != HISTORY_OK;
            bad += history_submit_transfer(h, &g_transfers[d * 2 + 1]) != HISTORY_OK;
            d++;
        }
    }
    for (int i = 0; i < 3; i++)
        bad += history_submit_kline(h, &g_klines[i]) != HISTORY_OK;
    bad += history_submit_mark(h, g_last_seq) != HISTORY_OK;
    return bad;
}

/* ---- helpers ---- */

static history_query_limits lim_json(long rows, int ms) {
    history_query_limits l = {rows, ms, HISTORY_FMT_JSON};
    return l;
}

/* Runs SQL and returns the parsed JSON result (NULL on error, printed). */
static json_t *sql_json(history_query_conn *c, const char *sql) {
    history_query_limits l = lim_json(HISTORY_MAX_ROW_LIMIT, 10000);
    char *out = NULL;
    history_query_error err = {0, ""};
    int rc = history_sql(c, sql, &l, &out, NULL, &err);
    if (rc) {
        fprintf(stderr, "query failed (%d): %s: %s\n", rc, sql, err.message);
        return NULL;
    }
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    return j;
}

static json_t *cell(json_t *res, size_t row, size_t col) {
    return json_array_get(json_array_get(json_object_get(res, "rows"), row), col);
}

static double num(json_t *v) {
    return json_number_value(v);
}

static int64_t sql_count(history_query_conn *c, const char *sql) {
    json_t *r = sql_json(c, sql);
    int64_t v = r ? (int64_t)json_integer_value(cell(r, 0, 0)) : -1;
    json_decref(r);
    return v;
}

static int close_rel(double a, double b) {
    return fabs(a - b) <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b)));
}

static history_query_conn *open_conn(void) {
    history_query_error err = {0, ""};
    history_query_conn *c = history_query_open(g_path, &err);
    if (!c) fprintf(stderr, "history_query_open: %s\n", err.message);
    return c;
}

static history_store *g_store;

/* ---- tests ---- */

static void test_write_day_and_sql_totals(void) {
    history_options opt = {4096, 1000, 5, 5000, false, 0};
    char errbuf[256] = "";
    g_store = history_open(g_path, &opt, errbuf, sizeof errbuf);
    CHECK(g_store != NULL);
    if (!g_store) {
        fprintf(stderr, "%s\n", errbuf);
        return;
    }
    CHECK_INT(history_last_seq(g_store), 0);
    CHECK_INT(submit_day(g_store), 0);
    CHECK_INT(history_flush(g_store, 30000), HISTORY_OK);
    CHECK_INT(history_last_seq(g_store), g_last_seq);
    CHECK(g_ntrades >= 10000);

    int64_t vol = 0;
    double comm = 0, profit = 0;
    for (size_t i = 0; i < g_ntrades; i++) {
        vol += g_trades[i].volume;
        comm += g_trades[i].commission;
        profit += g_trades[i].close_profit;
    }
    history_query_conn *c = open_conn();
    CHECK(c != NULL);
    if (!c) return;
    json_t *r = sql_json(c, "SELECT COUNT(*) AS n, SUM(volume) AS v, SUM(commission) AS c,"
                            " SUM(close_profit) AS p FROM trades");
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(json_integer_value(cell(r, 0, 0)), g_ntrades);
        CHECK_INT(json_integer_value(cell(r, 0, 1)), vol);
        CHECK_MONEY(num(cell(r, 0, 2)), comm);
        CHECK_MONEY(num(cell(r, 0, 3)), profit);
        CHECK_STR(json_string_value(json_array_get(json_object_get(r, "columns"), 1)), "v");
        CHECK_INT(json_integer_value(json_object_get(r, "row_count")), 1);
        CHECK(json_is_false(json_object_get(r, "truncated")));
        CHECK(json_is_number(json_object_get(r, "elapsed_ms")));
    }
    json_decref(r);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM orders"), g_norders);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM ticks"), g_nticks);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM accounts"), g_nsnaps);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM settlements"), 2);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM transfers"), 4);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM klines"), 3);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM orders WHERE status = 'Filled'"), g_ntrades);
    /* "offset" is a column name like any other */
    int64_t closes = 0;
    for (size_t i = 0; i < g_ntrades; i++)
        closes += strcmp(g_trades[i].offset, "CLOSE") == 0;
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM trades WHERE \"offset\" = 'CLOSE'"), closes);
    r = sql_json(c, "SELECT force_closed_accounts FROM settlements ORDER BY settlement_date");
    CHECK(r && strcmp(json_string_value(cell(r, 0, 0)), "[\"acc_07\"]") == 0);
    CHECK(r && strcmp(json_string_value(cell(r, 1, 0)), "[]") == 0);
    json_decref(r);

    history_storage_stats st;
    CHECK_INT(history_stats(g_store, &st), HISTORY_OK);
    CHECK_INT(st.rows_trades, g_ntrades);
    CHECK_INT(st.rows_orders, g_norders);
    CHECK_INT(st.last_seq, g_last_seq);
    CHECK_INT(st.submitted, st.committed);
    CHECK_INT(st.inserted, g_ntrades + g_norders + g_nticks + g_nsnaps + 2 + 4 + 3);
    CHECK(st.batches > 1);
    CHECK(st.db_bytes > 0);
    CHECK_INT(st.queue_depth, 0);
    char *sj = history_stats_json(&st);
    json_t *js = json_loads(sj ? sj : "", 0, NULL);
    CHECK(js != NULL);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(js, "rows"), "trades")),
              g_ntrades);
    json_decref(js);
    free(sj);
    history_query_close(c);
}

static void test_sql_group_by(void) {
    int64_t n[N_INSTR] = {0}, v[N_INSTR] = {0};
    double px[N_INSTR] = {0}, hi[N_INSTR] = {0};
    for (size_t i = 0; i < g_ntrades; i++) {
        for (int k = 0; k < N_INSTR; k++) {
            if (strcmp(g_trades[i].instrument_id, instr_ids[k]) != 0) continue;
            n[k]++;
            v[k] += g_trades[i].volume;
            px[k] += g_trades[i].price;
            if (g_trades[i].price > hi[k]) hi[k] = g_trades[i].price;
        }
    }
    history_query_conn *c = open_conn();
    if (!c) return;
    json_t *r = sql_json(c, "SELECT instrument_id, COUNT(*) AS trade_count, SUM(volume) AS "
                            "total_volume, AVG(price) AS avg_price, MAX(price) FROM trades "
                            "GROUP BY instrument_id ORDER BY instrument_id");
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(json_integer_value(json_object_get(r, "row_count")), 3);
        /* sorted: IC2501, IF2501, IH2501 */
        const int order[3] = {1, 0, 2};
        for (size_t row = 0; row < 3; row++) {
            int k = order[row];
            CHECK_STR(json_string_value(cell(r, row, 0)), instr_ids[k]);
            CHECK_INT(json_integer_value(cell(r, row, 1)), n[k]);
            CHECK_INT(json_integer_value(cell(r, row, 2)), v[k]);
            CHECK(close_rel(num(cell(r, row, 3)), px[k] / (double)n[k]));
            CHECK(close_rel(num(cell(r, row, 4)), hi[k]));
        }
    }
    json_decref(r);
    history_query_close(c);
}

/* Expected per-account (count, volume, commission) over trades of one instrument. */
static void account_sums(const char *instr, int64_t *cnt, int64_t *vol, double *comm) {
    for (int a = 0; a < N_ACCOUNTS; a++)
        cnt[a] = vol[a] = 0, comm[a] = 0;
    for (size_t i = 0; i < g_ntrades; i++) {
        if (instr && strcmp(g_trades[i].instrument_id, instr) != 0) continue;
        int a = atoi(g_trades[i].account_id + 4);
        cnt[a]++;
        vol[a] += g_trades[i].volume;
        comm[a] += g_trades[i].commission;
    }
}

static void test_structured_query(void) {
    int64_t cnt[N_ACCOUNTS], vol[N_ACCOUNTS];
    double comm[N_ACCOUNTS];
    account_sums(instr_ids[0], cnt, vol, comm);
    history_query_conn *c = open_conn();
    if (!c) return;

    /* the C form: group by account, filter instrument, order by sum_volume desc */
    const char *gb[] = {"account_id"};
    history_filter f[] = {
        {"instrument_id", HISTORY_OP_EQ, {HISTORY_VAL_TEXT, 0, 0, instr_ids[0]}, NULL, 0}};
    history_agg aggs[] = {{HISTORY_AGG_COUNT, NULL, NULL},
                          {HISTORY_AGG_SUM, "volume", NULL},
                          {HISTORY_AGG_SUM, "commission", NULL},
                          {HISTORY_AGG_MAX, "price", "top"}};
    history_order_by ob[] = {{"sum_volume", 1}, {"account_id", 0}};
    history_structured_query q = {.table = "trades",
                                  .filters = f,
                                  .n_filters = 1,
                                  .group_by = gb,
                                  .n_group_by = 1,
                                  .aggs = aggs,
                                  .n_aggs = 4,
                                  .order_by = ob,
                                  .n_order_by = 2,
                                  .limit = 5};
    history_query_limits l = lim_json(0, 0);
    char *out = NULL;
    history_query_error err = {0, ""};
    CHECK_INT(history_structured(c, &q, &l, &out, NULL, &err), 0);
    json_t *r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(r != NULL);
    if (r) {
        json_t *cols = json_object_get(r, "columns");
        CHECK_STR(json_string_value(json_array_get(cols, 0)), "account_id");
        CHECK_STR(json_string_value(json_array_get(cols, 1)), "count");
        CHECK_STR(json_string_value(json_array_get(cols, 2)), "sum_volume");
        CHECK_STR(json_string_value(json_array_get(cols, 3)), "sum_commission");
        CHECK_STR(json_string_value(json_array_get(cols, 4)), "top");
        CHECK_INT(json_integer_value(json_object_get(r, "row_count")), 5);
        int64_t prev = INT64_MAX, maxv = 0;
        for (int a = 0; a < N_ACCOUNTS; a++)
            if (vol[a] > maxv) maxv = vol[a];
        for (size_t row = 0; row < 5; row++) {
            int a = atoi(json_string_value(cell(r, row, 0)) + 4);
            CHECK_INT(json_integer_value(cell(r, row, 1)), cnt[a]);
            CHECK_INT(json_integer_value(cell(r, row, 2)), vol[a]);
            CHECK_MONEY(num(cell(r, row, 3)), comm[a]);
            CHECK(json_integer_value(cell(r, row, 2)) <= prev);
            prev = json_integer_value(cell(r, row, 2));
        }
        CHECK_INT(json_integer_value(cell(r, 0, 2)), maxv);
    }
    json_decref(r);

    /* values are parameters, never SQL text */
    char *sql = history_structured_sql(&q, &err);
    CHECK(sql && strstr(sql, "?") && !strstr(sql, "IF2501"));
    free(sql);
    history_filter inj[] = {
        {"account_id", HISTORY_OP_EQ, {HISTORY_VAL_TEXT, 0, 0, "x' OR '1'='1"}, NULL, 0}};
    history_structured_query qi = {.table = "trades", .filters = inj, .n_filters = 1};
    CHECK_INT(history_structured(c, &qi, &l, &out, NULL, &err), 0);
    r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK_INT(json_integer_value(json_object_get(r, "row_count")), 0);
    json_decref(r);
    /* identifiers are checked against the table */
    const char *evil[] = {"price FROM trades; DROP TABLE trades; --"};
    history_structured_query qe = {.table = "trades", .columns = evil, .n_columns = 1};
    CHECK_INT(history_structured(c, &qe, &l, &out, NULL, &err), HISTORY_QERR_INVALID);
    CHECK_INT(err.code, 1008);
    CHECK_CONTAINS(err.message, "unknown column");
    CHECK(out == NULL);
    history_structured_query qt = {.table = "meta"};
    CHECK_INT(history_structured(c, &qt, &l, &out, NULL, &err), HISTORY_QERR_INVALID);
    CHECK_CONTAINS(err.message, "Table not found: meta");

    /* the JSON front end, the seed's QueryRequest shape */
    int64_t buys = 0;
    double buy_px = 0;
    for (size_t i = 0; i < g_ntrades; i++)
        if (strcmp(g_trades[i].direction, "BUY") == 0) buys++, buy_px += g_trades[i].price;
    const char *req = "{\"query_type\":{\"Structured\":{\"select\":[],\"from\":\"trades\"}},"
                      "\"filters\":[{\"column\":\"direction\",\"op\":\"Eq\",\"value\":\"BUY\"}],"
                      "\"aggregations\":[{\"agg_type\":\"Count\",\"column\":\"price\","
                      "\"alias\":\"total_count\"},{\"agg_type\":\"Avg\",\"column\":\"price\","
                      "\"alias\":\"avg_price\"}],\"order_by\":null,\"limit\":null}";
    CHECK_INT(history_structured_json(c, req, &l, &out, NULL, &err), 0);
    r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(json_integer_value(json_object_get(r, "row_count")), 1);
        CHECK_STR(json_string_value(json_array_get(json_object_get(r, "columns"), 0)),
                  "total_count");
        CHECK_INT(json_integer_value(cell(r, 0, 0)), buys);
        CHECK(close_rel(num(cell(r, 0, 1)), buy_px / (double)buys));
    }
    json_decref(r);

    /* flat shape: group_by, {"Sum":"volume"}, in-list, sort, time_range (ms) */
    int64_t day2_start_ms = day_base_s[1] * 1000;
    int64_t v2[N_ACCOUNTS] = {0};
    for (size_t i = 0; i < g_ntrades; i++) {
        int a = atoi(g_trades[i].account_id + 4);
        if (g_trades[i].ts_ns >= day2_start_ms * 1000000 && (a == 3 || a == 5 || a == 11))
            v2[a] += g_trades[i].volume;
    }
    char req2[1024];
    snprintf(req2, sizeof req2,
             "{\"from\":\"trades\",\"group_by\":[\"account_id\"],\"aggregations\":[{\"Sum\":"
             "\"volume\"},\"count\"],\"filters\":[{\"column\":\"account_id\",\"op\":\"in\","
             "\"value\":[\"acc_03\",\"acc_05\",\"acc_11\"]}],\"sort\":{\"column\":\"account_id\","
             "\"descending\":false},\"time_range\":{\"start\":%lld,\"end\":%lld}}",
             (long long)day2_start_ms, (long long)(day2_start_ms + 86400000LL));
    CHECK_INT(history_structured_json(c, req2, &l, &out, NULL, &err), 0);
    r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(json_integer_value(json_object_get(r, "row_count")), 3);
        CHECK_STR(json_string_value(json_array_get(json_object_get(r, "columns"), 1)),
                  "sum_volume");
        CHECK_STR(json_string_value(cell(r, 0, 0)), "acc_03");
        CHECK_INT(json_integer_value(cell(r, 0, 1)), v2[3]);
        CHECK_INT(json_integer_value(cell(r, 1, 1)), v2[5]);
        CHECK_INT(json_integer_value(cell(r, 2, 1)), v2[11]);
    }
    json_decref(r);

    /* the JSON front end refuses what the compiler refuses */
    CHECK_INT(history_structured_json(c,
                                      "{\"from\":\"trades\",\"filters\":[{\"column\":\"x\","
                                      "\"op\":\"Eq\",\"value\":1}]}",
                                      &l, &out, NULL, &err),
              1008);
    CHECK_CONTAINS(err.message, "unknown column in filter: x");
    CHECK_INT(history_structured_json(c,
                                      "{\"from\":\"trades\",\"filters\":[{\"column\":"
                                      "\"price\",\"op\":\"~\",\"value\":1}]}",
                                      &l, &out, NULL, &err),
              1008);
    CHECK_CONTAINS(err.message, "unknown operator ~");
    CHECK_INT(history_structured_json(c, "not json", &l, &out, NULL, &err), 1008);
    CHECK_INT(history_structured_json(c,
                                      "{\"query_type\":{\"Sql\":{\"query\":\"DELETE FROM "
                                      "trades\"}}}",
                                      &l, &out, NULL, &err),
              1008);
    CHECK_CONTAINS(err.message, "only SELECT is allowed: DELETE");
    CHECK_INT(history_structured_json(c, "{\"sql\":\"SELECT COUNT(*) FROM trades\"}", &l, &out,
                                      NULL, &err),
              0);
    r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK_INT(json_integer_value(cell(r, 0, 0)), g_ntrades);
    json_decref(r);
    history_query_close(c);
}

typedef struct bucket {
    int64_t start_ms, volume, count;
    double open, high, low, close, amount;
} bucket;

/* The test's own OHLCV: taker trades of instr in [start_ms, end_ms) in (ts, trade_id) order
 * (g_trades is generated in that order). */
static size_t expected_buckets(const char *instr, int64_t g_s, int64_t start_ms, int64_t end_ms,
                               bucket *out, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < g_ntrades; i++) {
        const history_trade_rec *t = &g_trades[i];
        if (!t->is_taker || strcmp(t->instrument_id, instr) != 0) continue;
        if (t->ts_ns < start_ms * 1000000 || t->ts_ns >= end_ms * 1000000) continue;
        int64_t b = t->ts_ns / (g_s * 1000000000LL) * g_s * 1000;
        if (n == 0 || out[n - 1].start_ms != b) {
            if (n == max) return n;
            out[n] = (bucket){b, 0, 0, t->price, t->price, t->price, t->price, 0};
            n++;
        }
        bucket *k = &out[n - 1];
        if (t->price > k->high) k->high = t->price;
        if (t->price < k->low) k->low = t->price;
        k->close = t->price;
        k->volume += t->volume;
        k->amount += t->price * (double)t->volume;
        k->count++;
    }
    return n;
}

static void test_timeseries_ohlcv(void) {
    history_query_conn *c = open_conn();
    if (!c) return;
    static bucket exp[MAX_TRADES];
    static const char *const grans[] = {"1s", "5s", "1m", "5m", "15m", "30m", "1h", "1d"};
    /* the whole of both days, and a window starting mid-day on a 5-minute boundary */
    int64_t ranges[2][2] = {{day_base_s[0] * 1000 - 86400000LL, day_base_s[1] * 1000 + 86400000LL},
                            {(day_base_s[0] + 1800) * 1000, (day_base_s[1] + 3600) * 1000}};
    for (int ri = 0; ri < 2; ri++) {
        for (size_t gi = 0; gi < sizeof grans / sizeof grans[0]; gi++) {
            for (int inst = 0; inst < N_INSTR; inst += 2) {
                int64_t gs = history_granularity_seconds(grans[gi]);
                size_t n = expected_buckets(instr_ids[inst], gs, ranges[ri][0], ranges[ri][1], exp,
                                            MAX_TRADES);
                history_query_limits l = lim_json(HISTORY_MAX_ROW_LIMIT, 10000);
                char *out = NULL;
                history_query_error err = {0, ""};
                int rc = history_timeseries(c, instr_ids[inst], grans[gi], ranges[ri][0],
                                            ranges[ri][1], &l, &out, NULL, &err);
                CHECK_INT(rc, 0);
                json_t *r = json_loads(out ? out : "", 0, NULL);
                free(out);
                CHECK(r != NULL);
                if (!r) continue;
                CHECK_INT(json_integer_value(json_object_get(r, "row_count")), n);
                size_t bad = 0;
                for (size_t b = 0; b < n; b++) {
                    bad += json_integer_value(cell(r, b, 0)) != exp[b].start_ms;
                    /* prices are printed to 15 digits */
                    bad += !close_rel(num(cell(r, b, 1)), exp[b].open);
                    bad += !close_rel(num(cell(r, b, 2)), exp[b].high);
                    bad += !close_rel(num(cell(r, b, 3)), exp[b].low);
                    bad += !close_rel(num(cell(r, b, 4)), exp[b].close);
                    bad += json_integer_value(cell(r, b, 5)) != exp[b].volume;
                    bad += !close_rel(num(cell(r, b, 6)), exp[b].amount);
                    bad += json_integer_value(cell(r, b, 7)) != exp[b].count;
                }
                if (bad)
                    fprintf(stderr, "granularity %s range %d: %zu mismatches\n", grans[gi], ri,
                            bad);
                CHECK_INT(bad, 0);
                if (strcmp(grans[gi], "1d") == 0 && ri == 0) CHECK_INT(n, 2);
                json_decref(r);
            }
        }
    }
    /* the seed's TimeSeries request: volume per hour bucket equals the OHLCV volume */
    size_t n = expected_buckets(instr_ids[1], 3600, 0, INT64_MAX / 1000000, exp, MAX_TRADES);
    char req[512];
    snprintf(req, sizeof req,
             "{\"query_type\":{\"TimeSeries\":{\"metrics\":[\"volume\",\"price\"],"
             "\"dimensions\":[\"instrument_id\"],\"granularity\":3600}},\"from\":\"trades\","
             "\"filters\":[{\"column\":\"is_taker\",\"op\":\"=\",\"value\":1},{\"column\":"
             "\"instrument_id\",\"op\":\"=\",\"value\":\"%s\"}]}",
             instr_ids[1]);
    history_query_limits l = lim_json(0, 0);
    char *out = NULL;
    history_query_error err = {0, ""};
    CHECK_INT(history_structured_json(c, req, &l, &out, NULL, &err), 0);
    json_t *r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(r != NULL);
    if (r) {
        json_t *cols = json_object_get(r, "columns");
        CHECK_STR(json_string_value(json_array_get(cols, 0)), "time_bucket");
        CHECK_STR(json_string_value(json_array_get(cols, 2)), "volume_sum");
        CHECK_STR(json_string_value(json_array_get(cols, 9)), "price_min");
        CHECK_INT(json_integer_value(json_object_get(r, "row_count")), n);
        for (size_t b = 0; b < n; b++) {
            CHECK_INT(json_integer_value(cell(r, b, 0)), exp[b].start_ms);
            CHECK_INT(json_integer_value(cell(r, b, 2)), exp[b].volume);
            CHECK_INT(json_integer_value(cell(r, b, 6)), exp[b].count);
            CHECK(close_rel(num(cell(r, b, 10)), exp[b].high));
        }
    }
    json_decref(r);
    CHECK_INT(history_timeseries(c, instr_ids[0], "7m", 0, 1, &l, &out, NULL, &err), 1008);
    CHECK_CONTAINS(err.message, "Unsupported granularity: 7m");
    /* a number of seconds, as JSON numbers arrive ("60s") or bare */
    CHECK_INT(history_granularity_seconds("60s"), 60);
    CHECK_INT(history_granularity_seconds("90"), 90);
    CHECK_INT(history_granularity_seconds("31622400s"), 366 * 86400);
    CHECK_INT(history_granularity_seconds("31622401s"), 0);
    CHECK_INT(history_granularity_seconds("0s"), 0);
    CHECK_INT(history_granularity_seconds("-5s"), 0);
    CHECK_INT(history_granularity_seconds("5ss"), 0);
    CHECK_INT(history_granularity_seconds("99999999999999999999999s"), 0);
    history_query_close(c);
}

static int cmp_trade_order(const void *a, const void *b) {
    const history_trade_rec *x = *(const history_trade_rec *const *)a;
    const history_trade_rec *y = *(const history_trade_rec *const *)b;
    if (x->ts_ns != y->ts_ns) return x->ts_ns < y->ts_ns ? -1 : 1;
    return strcmp(x->trade_id, y->trade_id);
}

/* Pages through one account's trades and compares with the test's own sorted list. */
static void page_through(history_query_conn *c, const char *acct, const char *instr, const char *sd,
                         const char *ed, int newest_first, long size) {
    static const history_trade_rec *mine[MAX_TRADES];
    size_t n = 0;
    int64_t vol = 0;
    double comm = 0, profit = 0;
    for (size_t i = 0; i < g_ntrades; i++) {
        const history_trade_rec *t = &g_trades[i];
        if (strcmp(t->account_id, acct) != 0) continue;
        if (instr && strcmp(t->instrument_id, instr) != 0) continue;
        if (sd && strcmp(t->trading_day, sd) < 0) continue;
        if (ed && strcmp(t->trading_day, ed) > 0) continue;
        mine[n++] = t;
        vol += t->volume;
        comm += t->commission;
        profit += t->close_profit;
    }
    qsort(mine, n, sizeof mine[0], cmp_trade_order);
    size_t seen = 0, wrong = 0;
    long pages = (long)((n + (size_t)size - 1) / (size_t)size);
    for (long page = 1; page <= pages + 1; page++) {
        history_trades_page_query q = {acct, instr, sd, ed, 0, 0, page, size, newest_first};
        char *out = NULL;
        history_query_error err = {0, ""};
        CHECK_INT(history_trades_page(c, &q, NULL, &out, &err), 0);
        json_t *r = json_loads(out ? out : "", 0, NULL);
        free(out);
        if (!r) {
            CHECK(r != NULL);
            return;
        }
        CHECK_INT(json_integer_value(json_object_get(r, "total")), n);
        CHECK_INT(json_integer_value(json_object_get(r, "total_volume")), vol);
        CHECK_MONEY(num(json_object_get(r, "total_commission")), comm);
        /* the blotter's close profit comes from the same read transaction as the page */
        CHECK(json_is_number(json_object_get(r, "total_close_profit")));
        CHECK_MONEY(num(json_object_get(r, "total_close_profit")), profit);
        CHECK_INT(json_integer_value(json_object_get(r, "pages")), pages);
        CHECK_INT(json_integer_value(json_object_get(r, "page")), page);
        size_t rows = json_array_size(json_object_get(r, "rows"));
        CHECK_INT(rows, page <= pages
                            ? (size_t)(page < pages ? (size_t)size : n - (size_t)(pages - 1) * size)
                            : 0);
        for (size_t i = 0; i < rows; i++, seen++) {
            size_t idx = newest_first ? n - 1 - seen : seen;
            if (seen >= n || strcmp(json_string_value(cell(r, i, 0)), mine[idx]->trade_id) != 0)
                wrong++;
        }
        json_decref(r);
    }
    CHECK_INT(seen, n);
    CHECK_INT(wrong, 0);
}

static void test_trades_paging(void) {
    history_query_conn *c = open_conn();
    if (!c) return;
    page_through(c, "acc_03", NULL, NULL, NULL, 0, 50);
    page_through(c, "acc_03", NULL, NULL, NULL, 1, 37);
    page_through(c, "acc_11", instr_ids[2], NULL, NULL, 0, 20);
    page_through(c, "acc_07", NULL, day_names[1], day_names[1], 1, 100);
    page_through(c, "acc_07", NULL, day_names[0], day_names[0], 0, 1000);
    page_through(c, "nobody", NULL, NULL, NULL, 0, 10);
    /* the same page twice is the same text but for elapsed_ms */
    history_trades_page_query q = {"acc_05", NULL, NULL, NULL, 0, 0, 3, 25, 0};
    char *a = NULL, *b = NULL;
    history_query_error err = {0, ""};
    CHECK_INT(history_trades_page(c, &q, NULL, &a, &err), 0);
    CHECK_INT(history_trades_page(c, &q, NULL, &b, &err), 0);
    json_t *ja = json_loads(a ? a : "", 0, NULL), *jb = json_loads(b ? b : "", 0, NULL);
    CHECK(ja && jb && json_equal(json_object_get(ja, "rows"), json_object_get(jb, "rows")));
    json_decref(ja);
    json_decref(jb);
    free(a);
    free(b);
    q.start_date = "2025-1-2";
    CHECK_INT(history_trades_page(c, &q, NULL, &a, &err), 1008);
    CHECK_CONTAINS(err.message, "start_date '2025-1-2' is not a date");
    q.start_date = NULL;
    q.end_date = "2025-02-29"; /* not a leap year */
    CHECK_INT(history_trades_page(c, &q, NULL, &a, &err), 1008);
    CHECK_CONTAINS(err.message, "end_date '2025-02-29' is not a date");
    CHECK_INT(history_date_valid("2024-02-29"), 1);
    CHECK_INT(history_date_valid("2000-02-29"), 1);
    CHECK_INT(history_date_valid("1900-02-29"), 0);
    CHECK_INT(history_date_valid("2025-04-31"), 0);
    CHECK_INT(history_date_valid("2025-12-31"), 1);
    CHECK_INT(history_date_valid("2025-00-01"), 0);
    q.end_date = NULL;
    q.size = 5000;
    CHECK_INT(history_trades_page(c, &q, NULL, &a, &err), 1008);
    history_query_close(c);
}

/* The queries behind the trades page read the covering index alone: the totals and the page's
 * keys never touch the table (what makes a page of 100 out of 10,000 trades of an account take
 * about a millisecond; docs/BENCHMARKS.md). A plan that reads the table again would still give
 * the right answers, so only the plan can show it. */
static int plan_mentions(sqlite3 *db, const char *sql, const char *needle) {
    char text[2048] = "";
    size_t len = 0;
    sqlite3_stmt *st = NULL;
    char q[1024];
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "plan: %s\n", sqlite3_errmsg(db));
        return 0;
    }
    while (sqlite3_step(st) == SQLITE_ROW && len < sizeof text - 200)
        len += (size_t)snprintf(text + len, sizeof text - len, "%s | ",
                                (const char *)sqlite3_column_text(st, 3));
    sqlite3_finalize(st);
    if (!strstr(text, needle)) fprintf(stderr, "plan of %s: %s\n", sql, text);
    return strstr(text, needle) != NULL;
}

static void test_trades_page_plan_is_index_only(void) {
    sqlite3 *db = NULL;
    CHECK_INT(sqlite3_open_v2(g_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CHECK(plan_mentions(db,
                        "SELECT COUNT(*), COALESCE(SUM(volume), 0), COALESCE(SUM(commission), 0.0)"
                        " FROM trades WHERE account_id = 'acc_01'",
                        "COVERING INDEX trades_account_cover"));
    CHECK(plan_mentions(db,
                        "SELECT trade_id, ts_ns FROM trades WHERE account_id = 'acc_01'"
                        " ORDER BY ts_ns DESC, trade_id DESC LIMIT 100 OFFSET 5000",
                        "COVERING INDEX trades_account_cover"));
    CHECK(plan_mentions(db, "SELECT SUM(close_profit) FROM trades WHERE account_id = 'acc_01'",
                        "COVERING INDEX trades_account_cover"));
    CHECK(plan_mentions(db,
                        "SELECT ts_ns, price, volume FROM trades WHERE instrument_id = 'X'"
                        " AND ts_ns >= 1 AND ts_ns < 2 AND is_taker = 1 ORDER BY ts_ns, trade_id",
                        "COVERING INDEX trades_instrument_cover"));
    sqlite3_close(db);
}

/* A file written by schema version 1 (rowid tables, trades_account_ts without volume and
 * commission, orders_account_ts) opens as version 2: its indexes are rebuilt, its rows and
 * natural keys are kept, records replayed into it are still de-duplicated and the trades page
 * totals are right. */
static void test_schema_v1_file_is_upgraded(void) {
    char path[200], errbuf[256] = "";
    snprintf(path, sizeof path, "%s/v1.db", g_dir);
    sqlite3 *db = NULL;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    static const char *const v1 =
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO meta VALUES('schema_version', 1), ('last_seq', 7);"
        "CREATE TABLE orders(order_id TEXT NOT NULL, account_id TEXT NOT NULL,"
        " instrument_id TEXT NOT NULL, direction TEXT, \"offset\" TEXT, price_type TEXT,"
        " limit_price REAL, volume_orign INTEGER, volume_left INTEGER NOT NULL,"
        " status TEXT NOT NULL, ts_ns INTEGER NOT NULL, journal_seq INTEGER NOT NULL,"
        " UNIQUE(order_id, journal_seq, status, volume_left));"
        "CREATE INDEX orders_account_ts ON orders(account_id, ts_ns);"
        "CREATE TABLE trades(trade_id TEXT PRIMARY KEY, order_id TEXT NOT NULL,"
        " exchange_trade_id TEXT, account_id TEXT NOT NULL, instrument_id TEXT NOT NULL,"
        " direction TEXT, \"offset\" TEXT, price REAL NOT NULL, volume INTEGER NOT NULL,"
        " commission REAL, close_profit REAL, is_taker INTEGER, ts_ns INTEGER NOT NULL,"
        " trading_day TEXT, journal_seq INTEGER NOT NULL);"
        "CREATE INDEX trades_account_ts ON trades(account_id, ts_ns, trade_id);"
        "CREATE INDEX trades_instrument_ts ON trades(instrument_id, ts_ns, trade_id);"
        "INSERT INTO trades VALUES('T1','O1','M1','a','X','BUY','OPEN',10.0,2,1.25,0.0,1,100,"
        "'2025-01-02',5),('T2','O2','M1','b','X','SELL','OPEN',10.0,2,1.25,0.0,0,100,"
        "'2025-01-02',5),('T3','O3','M2','a','X','SELL','CLOSE',11.0,3,1.5,3.0,1,200,"
        "'2025-01-02',7);";
    CHECK_INT(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    history_store *h = history_open(path, NULL, errbuf, sizeof errbuf);
    CHECK(h != NULL);
    if (!h) {
        fprintf(stderr, "history_open: %s\n", errbuf);
        return;
    }
    CHECK_INT(history_last_seq(h), 7);
    /* a replayed record of command 8 whose trade is in the file already, and a new one */
    history_trade_rec t;
    memset(&t, 0, sizeof t);
    snprintf(t.trade_id, sizeof t.trade_id, "T3");
    snprintf(t.order_id, sizeof t.order_id, "O3");
    snprintf(t.account_id, sizeof t.account_id, "a");
    snprintf(t.instrument_id, sizeof t.instrument_id, "X");
    snprintf(t.direction, sizeof t.direction, "SELL");
    t.price = 11.0;
    t.volume = 3;
    t.commission = 1.5;
    t.ts_ns = 200;
    t.journal_seq = 8;
    CHECK_INT(history_submit_trade(h, &t), HISTORY_OK);
    snprintf(t.trade_id, sizeof t.trade_id, "T4");
    t.volume = 4;
    t.commission = 2.0;
    t.ts_ns = 300;
    CHECK_INT(history_submit_trade(h, &t), HISTORY_OK);
    CHECK_INT(history_submit_mark(h, 8), HISTORY_OK);
    CHECK_INT(history_flush(h, 10000), HISTORY_OK);
    history_storage_stats st;
    CHECK_INT(history_stats(h, &st), HISTORY_OK);
    CHECK_INT(st.rows_trades, 4);
    CHECK_INT(st.ignored_duplicates, 1);
    CHECK_INT(history_last_seq(h), 8);
    CHECK_INT(history_close(h), 0);

    CHECK_INT(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    CHECK_INT(sqlite3_prepare_v2(db,
                                 "SELECT (SELECT value FROM meta WHERE key = 'schema_version'),"
                                 " (SELECT group_concat(name, ',') FROM (SELECT name FROM"
                                 " sqlite_master WHERE type = 'index' AND tbl_name IN"
                                 " ('trades', 'orders') AND sql IS NOT NULL ORDER BY name))",
                                 -1, &q, NULL),
              SQLITE_OK);
    CHECK_INT(sqlite3_step(q), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int64(q, 0), 3);
    CHECK_STR((const char *)sqlite3_column_text(q, 1),
              "trades_account_cover,trades_instrument_cover");
    sqlite3_finalize(q);
    sqlite3_close(db);

    history_query_error err = {0, ""};
    history_query_conn *c = history_query_open(path, &err);
    CHECK(c != NULL);
    if (!c) return;
    history_trades_page_query pq = {"a", NULL, NULL, NULL, 0, 0, 1, 2, 1};
    char *out = NULL;
    CHECK_INT(history_trades_page(c, &pq, NULL, &out, &err), 0);
    json_t *r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(json_integer_value(json_object_get(r, "total")), 3);
        CHECK_INT(json_integer_value(json_object_get(r, "total_volume")), 9);
        CHECK_MONEY(num(json_object_get(r, "total_commission")), 4.75);
        CHECK_INT(json_array_size(json_object_get(r, "rows")), 2);
        CHECK_STR(json_string_value(cell(r, 0, 0)), "T4");
        CHECK_STR(json_string_value(cell(r, 1, 0)), "T3");
        json_decref(r);
    }
    /* the page query ends its read transaction: a later commit is in the next page query */
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_INT(sqlite3_exec(db,
                           "INSERT INTO trades VALUES('T5','O5','M3','a','X','BUY','OPEN',12.0,1,"
                           "0.5,0.0,1,400,'2025-01-02',9,'X-000000000005',0)",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    out = NULL;
    CHECK_INT(history_trades_page(c, &pq, NULL, &out, &err), 0);
    r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(json_integer_value(json_object_get(r, "total")), 4);
        CHECK_STR(json_string_value(cell(r, 0, 0)), "T5");
        json_decref(r);
    }
    history_query_close(c);
    char side[220];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

static void test_equity_curve(void) {
    history_query_conn *c = open_conn();
    if (!c) return;
    char *out = NULL;
    history_query_error err = {0, ""};
    CHECK_INT(history_equity_curve(c, "acc_04", NULL, NULL, 1, NULL, &out, &err), 0);
    json_t *r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(json_integer_value(json_object_get(r, "row_count")), 2);
        for (int d = 0; d < 2; d++) {
            /* the day's last snapshot is its settlement */
            const history_account_rec *last = NULL;
            for (size_t i = 0; i < g_nsnaps; i++)
                if (strcmp(g_snaps[i].account_id, "acc_04") == 0 &&
                    strcmp(g_snaps[i].trading_day, day_names[d]) == 0)
                    last = &g_snaps[i];
            CHECK(last != NULL);
            if (!last) continue;
            CHECK_STR(json_string_value(cell(r, (size_t)d, 0)), day_names[d]);
            CHECK_INT(json_integer_value(cell(r, (size_t)d, 1)), last->ts_ns);
            CHECK_STR(json_string_value(cell(r, (size_t)d, 2)), "settlement");
            CHECK_MONEY(num(cell(r, (size_t)d, 3)), last->balance);
            CHECK_MONEY(num(cell(r, (size_t)d, 4)), last->available);
            CHECK_MONEY(num(cell(r, (size_t)d, 5)), last->margin);
        }
    }
    json_decref(r);
    size_t per_acct = 0;
    for (size_t i = 0; i < g_nsnaps; i++)
        per_acct += strcmp(g_snaps[i].account_id, "acc_04") == 0 &&
                    strcmp(g_snaps[i].trading_day, day_names[1]) == 0;
    CHECK_INT(history_equity_curve(c, "acc_04", day_names[1], NULL, 0, NULL, &out, &err), 0);
    r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK_INT(json_integer_value(json_object_get(r, "row_count")), per_acct);
    json_decref(r);
    history_query_close(c);
}

/* Everything a query may not do. */
static void test_refusals_leave_database_unchanged(void) {
    history_query_conn *c = open_conn();
    if (!c) return;
    static const struct {
        const char *sql;
        const char *msg;
    } bad[] = {
        {"DELETE FROM trades", "only SELECT is allowed: DELETE"},
        {"  delete from trades where 1", "only SELECT is allowed: DELETE"},
        {"UPDATE trades SET price = 0", "only SELECT is allowed: UPDATE"},
        {"INSERT INTO trades(trade_id) VALUES('x')", "only SELECT is allowed: INSERT"},
        {"REPLACE INTO meta VALUES('last_seq', 0)", "only SELECT is allowed: REPLACE"},
        {"DROP TABLE trades", "only SELECT is allowed: DROP"},
        {"CREATE TABLE x(a)", "only SELECT is allowed: CREATE"},
        {"ATTACH DATABASE '/tmp/qaex_evil.db' AS evil", "only SELECT is allowed: ATTACH"},
        {"DETACH DATABASE main", "only SELECT is allowed: DETACH"},
        {"PRAGMA writable_schema=1", "only SELECT is allowed: PRAGMA writable_schema"},
        {"PRAGMA main.writable_schema = ON", "PRAGMA main.writable_schema"},
        {"VACUUM", "only SELECT is allowed: VACUUM"},
        {"BEGIN", "only SELECT is allowed: BEGIN"},
        {"EXPLAIN SELECT 1", "only SELECT is allowed: EXPLAIN"},
        {"SELECT 1; DELETE FROM trades", "multiple statements are not allowed"},
        {"SELECT COUNT(*) FROM trades;; SELECT 2", "multiple statements are not allowed"},
        {"WITH d AS (SELECT 1) DELETE FROM trades", "only SELECT is allowed: DELETE"},
        {"WITH d AS (SELECT 1) UPDATE trades SET volume = 0", "only SELECT is allowed: UPDATE"},
        {"SELECT load_extension('/tmp/qaex_evil.so')", "function load_extension is not allowed"},
        {"SELECT * FROM pragma_writable_schema", "PRAGMA writable_schema is not allowed"},
        {"SELECT * FROM pragma_table_info('trades')", "PRAGMA table_info is not allowed"},
        {"SELECT * FROM sqlite_master", "table sqlite_master is not available"},
        {"SELECT * FROM meta", "table meta is not available"},
        {"SELECT nosuch FROM trades", "invalid SQL: no such column: nosuch"},
        {"SELEC 1", "only SELECT is allowed: SELEC"},
        {"", "empty query"},
        {"  -- nothing\n", "empty query"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        history_query_limits l = lim_json(0, 0);
        char *out = (char *)"untouched";
        history_query_error err = {0, ""};
        int rc = history_sql(c, bad[i].sql, &l, &out, NULL, &err);
        if (rc != HISTORY_QERR_INVALID || !strstr(err.message, bad[i].msg))
            fprintf(stderr, "refusal %zu (%s): rc %d, message \"%s\"\n", i, bad[i].sql, rc,
                    err.message);
        CHECK_INT(rc, 1008);
        CHECK_INT(err.code, 1008);
        CHECK_CONTAINS(err.message, bad[i].msg);
        CHECK(out == NULL);
    }
    history_query_close(c);
    /* nothing changed: counts, schema, meta; the writer still works */
    c = open_conn();
    if (!c) return;
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM trades"), g_ntrades);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM trades WHERE price = 0 OR volume = 0"), 0);
    CHECK_INT(history_last_seq(g_store), g_last_seq);
    history_query_close(c);
    sqlite3 *db = NULL;
    CHECK_INT(sqlite3_open_v2(g_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('x', 'evil')", -1,
                       &st, NULL);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK(access("/tmp/qaex_evil.db", F_OK) != 0);
}

static void test_time_limit_stops_runaway_query(void) {
    history_query_conn *c = open_conn();
    if (!c) return;
    history_query_limits l = lim_json(0, 200);
    char *out = NULL;
    history_query_error err = {0, ""};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = history_sql(c,
                         "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
                         "SELECT COUNT(*) FROM r",
                         &l, &out, NULL, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK_INT(rc, 1008);
    CHECK_CONTAINS(err.message, "time limit of 200 ms");
    CHECK(ms >= 150 && ms < 3000);
    CHECK(out == NULL);
    /* a cross join of the trades with themselves, too */
    rc = history_sql(c, "SELECT SUM(a.volume * b.volume) FROM trades a, trades b", &l, &out, NULL,
                     &err);
    CHECK_INT(rc, 1008);
    CHECK_CONTAINS(err.message, "time limit");
    /* the connection is usable afterwards */
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM settlements"), 2);
    history_query_close(c);
}

/* Rows as wide as a query likes: the result stops at a whole row before its size limit. */
static void test_result_size_limit(void) {
    history_query_conn *c = open_conn();
    if (!c) return;
    history_query_limits l = lim_json(1000, 60000);
    char *out = NULL;
    history_query_error err = {0, ""};
    history_result_info info;
    /* 20 rows of 6 MB each: 120 MB asked, 10 rows fit in 64 MB */
    CHECK_INT(history_sql(c,
                          "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE "
                          "x < 20) SELECT x, printf('%.*c', 6291456, 'y') AS wide FROM n",
                          &l, &out, &info, &err),
              0);
    CHECK(out != NULL && strlen(out) <= HISTORY_MAX_RESULT_BYTES + 4096);
    CHECK_INT(info.row_count, 10);
    CHECK_INT(info.truncated, 1);
    json_t *r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(json_array_size(json_object_get(r, "rows")), 10);
        CHECK_INT(json_integer_value(cell(r, 9, 0)), 10);
        CHECK_INT(strlen(json_string_value(cell(r, 9, 1))), 6291456);
        CHECK(json_is_true(json_object_get(r, "truncated")));
        json_decref(r);
    }
    history_query_close(c);
}

static void test_row_limit_and_formats(void) {
    history_query_conn *c = open_conn();
    if (!c) return;
    history_query_limits l = lim_json(100, 0);
    char *out = NULL;
    history_query_error err = {0, ""};
    history_result_info info;
    CHECK_INT(history_sql(c, "SELECT trade_id, price FROM trades ORDER BY trade_id", &l, &out,
                          &info, &err),
              0);
    json_t *r = json_loads(out ? out : "", 0, NULL);
    free(out);
    CHECK_INT(json_array_size(json_object_get(r, "rows")), 100);
    CHECK_INT(json_integer_value(json_object_get(r, "row_count")), 100);
    CHECK(json_is_true(json_object_get(r, "truncated")));
    CHECK_STR(json_string_value(cell(r, 99, 0)), g_trades[99].trade_id);
    CHECK_INT(info.row_count, 100);
    CHECK_INT(info.truncated, 1);
    json_decref(r);
    /* exactly at the limit: not truncated */
    l.row_limit = (long)g_ntrades;
    CHECK_INT(history_sql(c, "SELECT trade_id FROM trades", &l, &out, &info, &err), 0);
    free(out);
    CHECK_INT(info.row_count, g_ntrades);
    CHECK_INT(info.truncated, 0);
    /* CSV and JSON lines */
    l.row_limit = 3;
    l.format = HISTORY_FMT_CSV;
    CHECK_INT(history_sql(c,
                          "SELECT trade_id, price, 'a,\"b\"' AS q, NULL AS n FROM trades ORDER BY "
                          "trade_id",
                          &l, &out, &info, &err),
              0);
    char expect[512];
    snprintf(expect, sizeof expect,
             "trade_id,price,q,n\n%s,%.15g,\"a,\"\"b\"\"\",\n%s,%.15g,\"a,\"\"b\"\"\",\n",
             g_trades[0].trade_id, g_trades[0].price, g_trades[1].trade_id, g_trades[1].price);
    CHECK(out && strncmp(out, expect, strlen(expect)) == 0);
    CHECK_INT(info.truncated, 1);
    free(out);
    l.format = HISTORY_FMT_JSONL;
    CHECK_INT(history_sql(c, "SELECT trade_id, volume FROM trades ORDER BY trade_id", &l, &out,
                          &info, &err),
              0);
    int lines = 0;
    for (char *p = out, *nl; p && (nl = strchr(p, '\n')); p = nl + 1, lines++) {
        *nl = 0;
        json_t *o = json_loads(p, 0, NULL);
        CHECK(o && json_integer_value(json_object_get(o, "volume")) == g_trades[lines].volume);
        json_decref(o);
    }
    CHECK_INT(lines, 3);
    free(out);
    CHECK_INT(history_format_parse("CSV"), HISTORY_FMT_CSV);
    CHECK_INT(history_format_parse("ndjson"), HISTORY_FMT_JSONL);
    CHECK_INT(history_format_parse("xml"), -1);
    history_query_close(c);
}

static void test_replay_is_exactly_once(void) {
    history_storage_stats before, after;
    history_stats(g_store, &before);
    /* the whole day again, as a server would if it replayed from an old position */
    CHECK_INT(submit_day(g_store), 0);
    CHECK_INT(history_flush(g_store, 30000), HISTORY_OK);
    history_stats(g_store, &after);
    CHECK_INT(after.inserted, before.inserted);
    CHECK_INT(after.rows_trades, g_ntrades);
    CHECK_INT(after.rows_orders, g_norders);
    CHECK_INT(after.rows_accounts, g_nsnaps);
    /* every journaled record was dropped by sequence; the interval snapshots (sequence 0) by key */
    size_t journaled = g_ntrades + g_norders + g_nticks + 2 + 4 + 3;
    size_t unjournaled = 0;
    for (size_t i = 0; i < g_nsnaps; i++) {
        if (g_snaps[i].journal_seq)
            journaled++;
        else
            unjournaled++;
    }
    CHECK_INT(after.skipped_replayed - before.skipped_replayed, journaled);
    CHECK_INT(after.ignored_duplicates - before.ignored_duplicates, unjournaled);
    CHECK_INT(history_last_seq(g_store), g_last_seq);

    /* a command half-written before a crash: seq L+1 has two trades, only one got in */
    uint64_t s = g_last_seq + 1;
    history_trade_rec t1 = g_trades[0], t2 = g_trades[1];
    snprintf(t1.trade_id, sizeof t1.trade_id, "T99999999999999999001");
    snprintf(t2.trade_id, sizeof t2.trade_id, "T99999999999999999002");
    t1.journal_seq = t2.journal_seq = s;
    CHECK_INT(history_submit_trade(g_store, &t1), HISTORY_OK);
    CHECK_INT(history_flush(g_store, 10000), HISTORY_OK);
    CHECK_INT(history_last_seq(g_store), g_last_seq); /* L+1 not known to be complete */
    /* the replay of L+1 after restart: both trades, then the mark */
    CHECK_INT(history_submit_trade(g_store, &t1), HISTORY_OK);
    CHECK_INT(history_submit_trade(g_store, &t2), HISTORY_OK);
    CHECK_INT(history_submit_mark(g_store, s), HISTORY_OK);
    CHECK_INT(history_flush(g_store, 10000), HISTORY_OK);
    CHECK_INT(history_last_seq(g_store), s);
    history_query_conn *c = open_conn();
    if (!c) return;
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM trades WHERE trade_id LIKE 'T999999999%'"), 2);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM trades"), g_ntrades + 2);
    history_query_close(c);
    /* a record of a later command also completes the earlier ones */
    history_trade_rec t3 = t1;
    snprintf(t3.trade_id, sizeof t3.trade_id, "T99999999999999999003");
    t3.journal_seq = s + 5;
    CHECK_INT(history_submit_trade(g_store, &t3), HISTORY_OK);
    CHECK_INT(history_flush(g_store, 10000), HISTORY_OK);
    CHECK_INT(history_last_seq(g_store), s + 4);
    CHECK_INT(history_submit_mark(g_store, s + 5), HISTORY_OK);
    CHECK_INT(history_flush(g_store, 10000), HISTORY_OK);
    CHECK_INT(history_last_seq(g_store), s + 5);
    g_last_seq = s + 5;
}

static void test_reopen_keeps_data(void) {
    CHECK_INT(history_close(g_store), 0);
    g_store = NULL;
    /* a reader on the closed file */
    history_query_conn *c = open_conn();
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM trades"), g_ntrades + 3);
        history_query_close(c);
    }
    char errbuf[256] = "";
    g_store = history_open(g_path, NULL, errbuf, sizeof errbuf);
    CHECK(g_store != NULL);
    if (!g_store) return;
    CHECK_INT(history_last_seq(g_store), g_last_seq);
    history_storage_stats st;
    CHECK_INT(history_stats(g_store, &st), HISTORY_OK);
    CHECK_INT(st.rows_trades, g_ntrades + 3);
    CHECK_INT(st.rows_orders, g_norders);
    /* replayed records after reopening: dropped by the stored sequence */
    CHECK_INT(history_submit_trade(g_store, &g_trades[5]), HISTORY_OK);
    history_trade_rec t = g_trades[5];
    snprintf(t.trade_id, sizeof t.trade_id, "T99999999999999999100");
    t.journal_seq = g_last_seq + 1;
    CHECK_INT(history_submit_trade(g_store, &t), HISTORY_OK);
    CHECK_INT(history_submit_mark(g_store, g_last_seq + 1), HISTORY_OK);
    CHECK_INT(history_flush(g_store, 10000), HISTORY_OK);
    CHECK_INT(history_stats(g_store, &st), HISTORY_OK);
    CHECK_INT(st.rows_trades, g_ntrades + 4);
    CHECK_INT(st.skipped_replayed, 1);
    CHECK_INT(st.inserted, 1);
    CHECK_INT(history_last_seq(g_store), g_last_seq + 1);
    g_last_seq++;
}

static int64_t count_rows(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int64_t n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

/* Opening with rewind removes the records of commands after the journal's end, and only those. */
static void test_rewind_to_the_journal_end(void) {
    char path[160], errbuf[256] = "";
    snprintf(path, sizeof path, "%s/rewind.db", g_dir);
    history_store *h = history_open(path, NULL, errbuf, sizeof errbuf);
    CHECK(h != NULL);
    if (!h) return;
    for (uint64_t seq = 1; seq <= 5; seq++) {
        history_tick_rec k = {"CFFEX.IF2501", (int64_t)seq * 1000, 3800, (int64_t)seq, 0, seq};
        CHECK_INT(history_submit_tick(h, &k), HISTORY_OK);
        history_order_rec o;
        memset(&o, 0, sizeof o);
        snprintf(o.order_id, sizeof o.order_id, "O%llu", (unsigned long long)seq);
        snprintf(o.account_id, sizeof o.account_id, "a");
        snprintf(o.instrument_id, sizeof o.instrument_id, "CFFEX.IF2501");
        snprintf(o.status, sizeof o.status, "ALIVE");
        o.ts_ns = (int64_t)seq * 1000;
        o.journal_seq = seq;
        CHECK_INT(history_submit_order(h, &o), HISTORY_OK);
        CHECK_INT(history_submit_mark(h, seq), HISTORY_OK);
    }
    CHECK_INT(history_flush(h, 10000), HISTORY_OK);
    CHECK_INT(history_close(h), 0);

    history_options opt;
    memset(&opt, 0, sizeof opt);
    opt.rewind = true;
    opt.rewind_to = 3;
    h = history_open(path, &opt, errbuf, sizeof errbuf);
    CHECK(h != NULL);
    if (!h) return;
    CHECK_INT(history_last_seq(h), 3);
    CHECK_INT(history_rewound_from(h), 5);
    CHECK_INT(history_close(h), 0);
    CHECK_INT(count_rows(path, "SELECT COUNT(*) FROM ticks"), 3);
    CHECK_INT(count_rows(path, "SELECT MAX(journal_seq) FROM orders"), 3);
    CHECK_INT(count_rows(path, "SELECT value FROM meta WHERE key = 'last_seq'"), 3);

    /* a journal that ends after the history: nothing to remove */
    opt.rewind_to = 10;
    h = history_open(path, &opt, errbuf, sizeof errbuf);
    CHECK(h != NULL);
    if (!h) return;
    CHECK_INT(history_last_seq(h), 3);
    CHECK_INT(history_rewound_from(h), 0);
    CHECK_INT(history_close(h), 0);
    CHECK_INT(count_rows(path, "SELECT COUNT(*) FROM orders"), 3);
}

static void test_full_queue_blocks_then_reports(void) {
    char path[160], errbuf[256] = "";
    snprintf(path, sizeof path, "%s/small.db", g_dir);
    history_options opt = {16, 8, 1, 100, false, 0};
    history_store *h = history_open(path, &opt, errbuf, sizeof errbuf);
    CHECK(h != NULL);
    if (!h) return;
    /* another connection holds the write lock: the writer cannot commit */
    sqlite3 *db = NULL;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    int ok = 0, full = 0;
    for (int i = 0; i < 20; i++) {
        history_tick_rec k = {"CFFEX.IF2501", 1000 + i, 3800, i, 0, (uint64_t)i + 1};
        int rc = history_submit_tick(h, &k);
        ok += rc == HISTORY_OK;
        full += rc == HISTORY_EFULL;
    }
    CHECK_INT(ok, 16);
    CHECK_INT(full, 4);
    CHECK_INT(history_flush(h, 50), HISTORY_ETIMEOUT);
    history_storage_stats st;
    history_stats(h, &st);
    CHECK_INT(st.submit_full, 4);
    CHECK_INT(st.queue_depth, 16);
    /* the lock goes away: everything accepted is written */
    CHECK_INT(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK_INT(history_flush(h, 30000), HISTORY_OK);
    history_stats(h, &st);
    CHECK_INT(st.rows_ticks, 16);
    CHECK_INT(history_close(h), 0);
    char side[200];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

/* A reader thread counts trades while the writer inserts: WAL readers see a consistent,
 * growing history and never fail or stall the writer. */
typedef struct reader_ctx {
    volatile int stop;
    int errors, decreases, queries;
} reader_ctx;

static void *reader_main(void *arg) {
    reader_ctx *rc = arg;
    history_query_conn *c = open_conn();
    if (!c) {
        rc->errors++;
        return NULL;
    }
    int64_t prev = 0;
    while (!rc->stop) {
        int64_t n = sql_count(c, "SELECT COUNT(*) FROM trades");
        if (n < 0) rc->errors++;
        if (n < prev) rc->decreases++;
        prev = n;
        rc->queries++;
    }
    history_query_close(c);
    return NULL;
}

static void test_concurrent_reader_while_writing(void) {
    if (!g_store) return;
    reader_ctx rc = {0, 0, 0, 0};
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, reader_main, &rc), 0);
    history_storage_stats st0, st1;
    history_stats(g_store, &st0);
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        history_trade_rec t = g_trades[i % g_ntrades];
        snprintf(t.trade_id, sizeof t.trade_id, "T8%019d", i);
        t.journal_seq = g_last_seq + 1 + (uint64_t)i;
        t.ts_ns = 1 + i; /* in 1970: the retention test removes them */
        bad += history_submit_trade(g_store, &t) != HISTORY_OK;
    }
    g_last_seq += 20000;
    CHECK_INT(history_submit_mark(g_store, g_last_seq), HISTORY_OK);
    CHECK_INT(bad, 0);
    CHECK_INT(history_flush(g_store, 30000), HISTORY_OK);
    rc.stop = 1;
    pthread_join(th, NULL);
    CHECK_INT(rc.errors, 0);
    CHECK_INT(rc.decreases, 0);
    CHECK(rc.queries > 0);
    history_stats(g_store, &st1);
    CHECK_INT(st1.rows_trades - st0.rows_trades, 20000);
    CHECK_INT(history_last_seq(g_store), g_last_seq);
    /* leave the trade table as the later tests expect it */
    history_query_conn *c = open_conn();
    if (c) {
        CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM trades WHERE trade_id LIKE 'T8%'"), 20000);
        history_query_close(c);
    }
    CHECK(history_prune(g_store, 0) == 0);
}

static void test_prune_and_maintenance(void) {
    if (!g_store) return;
    int64_t cut = day_base_s[1] * 1000000000LL; /* everything of day 1 */
    int64_t expect = 0;
    for (size_t i = 0; i < g_ntrades; i++)
        expect += g_trades[i].ts_ns < cut;
    for (size_t i = 0; i < g_norders; i++)
        expect += g_orders[i].ts_ns < cut;
    for (size_t i = 0; i < g_nticks; i++)
        expect += g_ticks[i].ts_ns < cut;
    for (size_t i = 0; i < g_nsnaps; i++)
        expect += g_snaps[i].ts_ns < cut;
    /* settlement, transfers, klines of day 1, 4 test trades, the concurrent test's 20,000 */
    expect += 1 + 2 + 3 + 4 + 20000;
    history_storage_stats st0, st1;
    history_stats(g_store, &st0);
    CHECK_INT(history_prune(g_store, cut), expect);
    CHECK_INT(history_checkpoint(g_store, HISTORY_VACUUM_INCREMENTAL), HISTORY_OK);
    CHECK_INT(history_checkpoint(g_store, HISTORY_VACUUM_FULL), HISTORY_OK);
    CHECK_INT(history_stats(g_store, &st1), HISTORY_OK);
    CHECK_INT(st1.wal_bytes, 0);
    CHECK(st1.db_bytes < st0.db_bytes + st0.wal_bytes);
    CHECK_INT(st1.freelist_count, 0);
    history_query_conn *c = open_conn();
    if (!c) return;
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM trades WHERE ts_ns < %lld", (long long)cut);
    CHECK_INT(sql_count(c, sql), 0);
    int64_t day2 = 0;
    for (size_t i = 0; i < g_ntrades; i++)
        day2 += g_trades[i].ts_ns >= cut;
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM trades"), day2);
    CHECK_INT(sql_count(c, "SELECT COUNT(*) FROM settlements"), 1);
    history_query_close(c);
    CHECK_INT(history_last_seq(g_store), g_last_seq);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/qaex_history_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_path, sizeof g_path, "%s/history.db", g_dir);
    generate_day();

    RUN_TEST(test_write_day_and_sql_totals);
    RUN_TEST(test_sql_group_by);
    RUN_TEST(test_structured_query);
    RUN_TEST(test_timeseries_ohlcv);
    RUN_TEST(test_trades_paging);
    RUN_TEST(test_trades_page_plan_is_index_only);
    RUN_TEST(test_equity_curve);
    RUN_TEST(test_refusals_leave_database_unchanged);
    RUN_TEST(test_time_limit_stops_runaway_query);
    RUN_TEST(test_row_limit_and_formats);
    RUN_TEST(test_result_size_limit);
    RUN_TEST(test_replay_is_exactly_once);
    RUN_TEST(test_reopen_keeps_data);
    RUN_TEST(test_full_queue_blocks_then_reports);
    RUN_TEST(test_rewind_to_the_journal_end);
    RUN_TEST(test_concurrent_reader_while_writing);
    RUN_TEST(test_prune_and_maintenance);
    RUN_TEST(test_schema_v1_file_is_upgraded);

    history_close(g_store);
    char side[200];
    unlink(g_path);
    snprintf(side, sizeof side, "%s-wal", g_path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", g_path);
    unlink(side);
    rmdir(g_dir);
    free(g_trades);
    free(g_orders);
    free(g_ticks);
    free(g_snaps);
    return CHECK_REPORT();
}
