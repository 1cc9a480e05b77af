/* market_bench: what market data costs per trade inside the engine (issue 5, must-show 3).
 *
 * 1. Engine A/B: a stream of trades through engine_apply, each trade two commands (a maker
 *    order that rests, then a taker order that crosses it), applied in lockstep to two engines:
 *    A with the default market data (kline_history 10,000 bars per period, recent_trades 1,000)
 *    and B with the cheapest configuration (kline_history 0, recent_trades 0). B still
 *    aggregates the 7 bars in progress (the engine always does), so the difference A - B is the
 *    cost of keeping history and the tape, not of market data as a whole; part 2 measures the
 *    aggregation itself. The order in which A and B get each command alternates, so both see the
 *    same machine noise. Only engine_apply is timed (rdtsc around each call).
 * 2. market_record_trade alone, over --record-trades trades (default 10,000,000) 30 ms apart,
 *    so the stream spans 3.5 days and every period's bars close (EV_KLINE callbacks counted):
 *    per-call percentiles and a batch throughput without per-call timing, with the default caps
 *    and with both caps 0.
 * 3. engine_market_snapshot depth 5 (the snapshot the engine takes, as numbers), then encoding
 *    per trade: codec_market_snapshot (the 35-field snapshot, depth 5), diff_quote, and
 *    the depth-5 codec_orderbook, each built from an engine whose book has 10 levels a side,
 *    with and without json_dumps (what the server does to each push).
 *
 *   market_bench [--trades N] [--record-trades N] [--encodes N] [--cpu C] [--seed S]
 *
 * Timestamps are rdtsc between lfences, calibrated against CLOCK_MONOTONIC; the cost of two
 * back-to-back reads is printed and is inside every per-call figure. */
#define _GNU_SOURCE
#include "bench_clock.h"
#include "engine/engine.h"
#include "engine/market.h"
#include "proto/diff_codec.h"
#include "proto/market_codec.h"

#include <inttypes.h>
#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- clocks: bench_clock.h ---- */

typedef struct summary {
    double p50, p99, p999, max, mean; /* ns */
} summary;

/* Percentiles of samples in ticks (sorted in place), in ns. */
static summary summarize(uint32_t *lat, size_t n) {
    summary s = {0};
    if (n == 0) return s;
    qsort(lat, n, sizeof *lat, cmp_u32);
    s.p50 = lat[(size_t)(0.50 * (double)(n - 1))] * ns_per_tick;
    s.p99 = lat[(size_t)(0.99 * (double)(n - 1))] * ns_per_tick;
    s.p999 = lat[(size_t)(0.999 * (double)(n - 1))] * ns_per_tick;
    s.max = lat[n - 1] * ns_per_tick;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += lat[i];
    s.mean = sum / (double)n * ns_per_tick;
    return s;
}

static void print_summary(const char *label, summary s) {
    printf("  %-44s P50 %7.0f ns  P99 %7.0f ns  P99.9 %7.0f ns  max %9.0f ns  mean %7.1f ns\n",
           label, s.p50, s.p99, s.p999, s.max, s.mean);
}

static double timer_overhead_ns(void) {
    enum { N = 200000 };
    static uint32_t d[N];
    for (int i = 0; i < N; i++) {
        uint64_t a = ticks();
        uint64_t b = ticks();
        d[i] = (uint32_t)(b - a);
    }
    qsort(d, N, sizeof d[0], cmp_u32);
    return d[N / 2] * ns_per_tick;
}

static uint32_t *xalloc_u32(size_t n) {
    uint32_t *p = malloc(n * sizeof *p);
    if (p == NULL) {
        fprintf(stderr, "market_bench: out of memory\n");
        exit(1);
    }
    return p;
}

/* ---- options ---- */

static uint64_t opt_trades = 1000000;
static uint64_t opt_record_trades = 10000000;
static uint64_t opt_encodes = 200000;
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint64_t rng_next(void) {
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t rnd(uint32_t n) {
    return (uint32_t)((rng_next() >> 32) % n);
}

/* ---- engines ---- */

#define INSTRUMENT "CFFEX.IF2501"
#define N_ACCOUNTS 200
#define T0_NS 1735783200000000000LL /* 2025-01-02 02:00 UTC */

typedef struct sink_counts {
    uint64_t events, trades, klines;
} sink_counts;

static void count_sink(void *ctx, const engine_event *ev) {
    sink_counts *c = ctx;
    c->events++;
    c->trades += ev->type == EV_TRADE;
    c->klines += ev->type == EV_KLINE;
}

static engine *new_engine(uint32_t kline_history, uint32_t recent_trades) {
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.max_order_value = 1e15;
    cfg.max_position_ratio = 1e6;
    cfg.finished_orders_per_account = 32;
    cfg.trades_per_account = 32;
    cfg.kline_history = kline_history;
    cfg.recent_trades = recent_trades;
    engine *e = engine_create(&cfg);
    if (e == NULL) {
        fprintf(stderr, "market_bench: engine_create failed\n");
        exit(1);
    }
    instrument_spec specs[3];
    size_t n = engine_default_instruments(specs, 3);
    engine_result r;
    command c;
    for (size_t i = 0; i < n; i++) {
        memset(&c, 0, sizeof c);
        c.type = CMD_INSTRUMENT_ADD;
        c.ts_ns = T0_NS;
        c.u.instrument.spec = specs[i];
        if (engine_apply(e, &c, &r) != 0) {
            fprintf(stderr, "instrument add: %s\n", r.message);
            exit(1);
        }
    }
    for (int i = 0; i < N_ACCOUNTS; i++) {
        memset(&c, 0, sizeof c);
        c.type = CMD_ACCOUNT_OPEN;
        c.ts_ns = T0_NS + 1 + i;
        snprintf(c.u.account_open.account_id, QAEX_ID_LEN, "acct%03d", i);
        c.u.account_open.init_cash = 1e10;
        if (engine_apply(e, &c, &r) != 0) {
            fprintf(stderr, "account open: %s\n", r.message);
            exit(1);
        }
    }
    return e;
}

static command order_cmd(int64_t ts_ns, int acct, direction dir, time_condition tc,
                         int64_t price_tick, int64_t volume) {
    command c;
    memset(&c, 0, sizeof c);
    c.type = CMD_ORDER_INSERT;
    c.ts_ns = ts_ns;
    order_request *q = &c.u.order;
    snprintf(q->account_id, QAEX_ID_LEN, "acct%03d", acct);
    memcpy(q->instrument_id, INSTRUMENT, sizeof INSTRUMENT);
    q->direction = dir;
    q->offset = OFFSET_OPEN;
    q->price_type = PRICE_LIMIT;
    q->time_condition = tc;
    q->volume_condition = VC_ANY;
    q->limit_price = (double)price_tick * 0.2;
    q->volume = volume;
    return c;
}

/* ---- part 1: engine A/B ---- */

static void part_engine(void) {
    printf("\n== 1. engine_apply, market data default (A: kline_history 10000, recent_trades "
           "1000) vs cheapest (B: 0, 0)\n");
    engine *ea = new_engine(10000, 1000), *eb = new_engine(0, 0);
    sink_counts ca = {0}, cb = {0};
    engine_set_event_sink(ea, count_sink, &ca);
    engine_set_event_sink(eb, count_sink, &cb);
    engine *eng[2] = {ea, eb};
    uint64_t n = opt_trades, warm = n / 10;
    uint32_t *lat[2][2]; /* [engine][maker 0 / taker 1] */
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++)
            lat[i][k] = xalloc_u32(n);
    uint64_t sum[2][2] = {{0}};
    int64_t ts = T0_NS + 1000000000LL, tick = 19000;
    uint64_t rejected = 0;
    int64_t t_start = mono_ns();
    for (uint64_t i = 0; i < warm + n; i++) {
        /* a random walk of the price within +-1% keeps high/low moving */
        int step = (int)rnd(3) - 1;
        if (tick + step > 19190 || tick + step < 18810) step = -step;
        tick += step;
        direction maker_dir = rnd(2) ? DIR_BUY : DIR_SELL;
        int maker = (int)rnd(N_ACCOUNTS), taker = (int)rnd(N_ACCOUNTS - 1);
        if (taker >= maker) taker++;
        ts += 100000000LL; /* 100 ms between trades: 3 s bars close every 30 trades */
        command c[2] = {
            order_cmd(ts, maker, maker_dir, TC_GFD, tick, 1),
            order_cmd(ts + 1000, taker, maker_dir == DIR_BUY ? DIR_SELL : DIR_BUY, TC_IOC, tick, 1),
        };
        for (int k = 0; k < 2; k++) {
            int first = (int)((i + (uint64_t)k) & 1); /* alternate which engine goes first */
            for (int j = 0; j < 2; j++) {
                int which = first ^ j;
                engine_result r;
                uint64_t t0 = ticks();
                int rc = engine_apply(eng[which], &c[k], &r);
                uint64_t t1 = ticks();
                rejected += rc != 0;
                if (i >= warm) {
                    lat[which][k][i - warm] = (uint32_t)(t1 - t0);
                    sum[which][k] += t1 - t0;
                }
            }
        }
    }
    double secs = (double)(mono_ns() - t_start) / 1e9;
    const instrument *ia = engine_instrument_find(ea, INSTRUMENT);
    const instrument *ib = engine_instrument_find(eb, INSTRUMENT);
    printf("trades: %" PRIu64 " measured after %" PRIu64 " warm-up (each: a GFD maker order that "
           "rests, then an IOC taker that crosses it), 100 ms apart (%.1f days of bars); %" PRIu64
           " rejected; volume A %" PRId64 " B %" PRId64 "; EV_KLINE events A %" PRIu64 " B %" PRIu64
           "; state hashes %s; %.1f s wall\n",
           n, warm, (double)(warm + n) * 0.1 / 86400.0, rejected, ia->stats.volume,
           ib->stats.volume, ca.klines, cb.klines,
           engine_state_hash(ea) == engine_state_hash(eb) ? "equal" : "differ (history kept)",
           secs);
    printf("kept in A: %u 3s bars, %u 1min bars, %u day bars, %u recent trades; in B: %u, %u, "
           "%u, %u\n",
           market_kline_count(&ia->market, KLINE_3S), market_kline_count(&ia->market, KLINE_1MIN),
           market_kline_count(&ia->market, KLINE_DAY), market_trade_count(&ia->market),
           market_kline_count(&ib->market, KLINE_3S), market_kline_count(&ib->market, KLINE_1MIN),
           market_kline_count(&ib->market, KLINE_DAY), market_trade_count(&ib->market));
    double mean[2][2];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++)
            mean[i][k] = (double)sum[i][k] / (double)n * ns_per_tick;
    summary s[2][2];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++)
            s[i][k] = summarize(lat[i][k], n);
    print_summary("A maker insert (rests):", s[0][0]);
    print_summary("B maker insert (rests):", s[1][0]);
    print_summary("A taker insert (trades):", s[0][1]);
    print_summary("B taker insert (trades):", s[1][1]);
    printf("  per trade (maker + taker): A %.1f ns, B %.1f ns -> %.0f vs %.0f trades/s on one "
           "core\n",
           mean[0][0] + mean[0][1], mean[1][0] + mean[1][1], 1e9 / (mean[0][0] + mean[0][1]),
           1e9 / (mean[1][0] + mean[1][1]));
    printf("  added by history + tape (A - B), taker: mean %+.1f ns, P50 %+.0f ns, P99 %+.0f ns, "
           "P99.9 %+.0f ns; per trade (both commands) %+.1f ns\n",
           mean[0][1] - mean[1][1], s[0][1].p50 - s[1][1].p50, s[0][1].p99 - s[1][1].p99,
           s[0][1].p999 - s[1][1].p999, mean[0][0] + mean[0][1] - mean[1][0] - mean[1][1]);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++)
            free(lat[i][k]);
    engine_destroy(ea);
    engine_destroy(eb);
}

/* ---- part 2: market_record_trade alone ---- */

static uint64_t closed_count;

static void on_closed(void *ctx, kline_period p, const kline *bar) {
    (void)ctx;
    (void)p;
    (void)bar;
    closed_count++;
}

static void record_run(uint32_t history_cap, uint32_t trade_cap, bool per_call) {
    market_data m;
    market_init(&m, history_cap, trade_cap);
    uint64_t n = opt_record_trades;
    uint32_t *lat = per_call ? xalloc_u32(n) : NULL;
    int64_t ts = T0_NS, price_tick = 19000, oi = 0;
    closed_count = 0;
    uint64_t total = 0;
    uint64_t tb0 = ticks();
    for (uint64_t i = 0; i < n; i++) {
        /* deterministic, cheap walk: no rng call inside the timed region */
        price_tick += (int64_t)((i * 2654435761u >> 7) % 3) - 1;
        ts += 30000000LL; /* 30 ms apart: 10M trades span 3.5 days */
        market_trade t = {.ts_ns = ts,
                          .price = (double)price_tick * 0.2,
                          .volume = 1 + (int64_t)(i & 3),
                          .taker_side = (i & 1) ? DIR_BUY : DIR_SELL,
                          .match_seq = i + 1,
                          .buyer = (uint32_t)(i % 200),
                          .seller = (uint32_t)((i + 7) % 200)};
        double amount = t.price * (double)t.volume * 300.0;
        int64_t oi_after = oi + ((i & 1) ? 2 : 0);
        if (per_call) {
            uint64_t t0 = ticks();
            market_record_trade(&m, &t, amount, oi, oi_after, on_closed, NULL);
            uint64_t t1 = ticks();
            lat[i] = (uint32_t)(t1 - t0);
            total += t1 - t0;
        } else {
            market_record_trade(&m, &t, amount, oi, oi_after, on_closed, NULL);
        }
        oi = oi_after;
    }
    uint64_t tb1 = ticks();
    char label[96];
    snprintf(label, sizeof label, "history %u, tape %u, %s:", history_cap, trade_cap,
             per_call ? "per call" : "batch");
    if (per_call) {
        print_summary(label, summarize(lat, n));
        free(lat);
    } else {
        double ns = (double)(tb1 - tb0) * ns_per_tick / (double)n;
        printf("  %-44s %.1f ns per trade (loop included), %.1f million trades/s\n", label, ns,
               1000.0 / ns);
    }
    printf("    %" PRIu64 " bars closed; kept 3s %u, 1min %u, 60min %u, day %u; tape %u\n",
           closed_count, market_kline_count(&m, KLINE_3S), market_kline_count(&m, KLINE_1MIN),
           market_kline_count(&m, KLINE_60MIN), market_kline_count(&m, KLINE_DAY),
           market_trade_count(&m));
    (void)total;
    market_free(&m);
}

static void part_record(void) {
    printf("\n== 2. market_record_trade alone: %" PRIu64 " trades 30 ms apart (%.2f days), 7 "
           "periods\n",
           opt_record_trades, (double)opt_record_trades * 0.03 / 86400.0);
    record_run(10000, 1000, false);
    record_run(10000, 1000, true);
    record_run(0, 0, false);
    record_run(0, 0, true);
}

/* ---- part 3: encoding ---- */

typedef json_t *(*encode_fn)(const engine *e, const instrument *ins, int64_t ts_ns);

static json_t *enc_snapshot(const engine *e, const instrument *ins, int64_t ts_ns) {
    return codec_market_snapshot(e, ins, ts_ns);
}

static json_t *enc_ticker(const engine *e, const instrument *ins, int64_t ts_ns) {
    json_t *m = codec_market_snapshot(e, ins, ts_ns);
    if (m) json_object_set_new(m, "type", json_string("ticker"));
    return m;
}

static json_t *enc_diff_quote(const engine *e, const instrument *ins, int64_t ts_ns) {
    return diff_quote(e, ins, ts_ns);
}

static json_t *enc_diff_push(const engine *e, const instrument *ins, int64_t ts_ns) {
    return json_pack("{s:{s:o}}", "quotes", ins->spec.instrument_id, diff_quote(e, ins, ts_ns));
}

static json_t *enc_orderbook(const engine *e, const instrument *ins, int64_t ts_ns) {
    (void)e;
    return codec_orderbook(ins, 5, ts_ns);
}

static void encode_run(const char *name, encode_fn fn, const engine *e, const instrument *ins,
                       bool dump) {
    uint64_t n = opt_encodes;
    uint32_t *lat = xalloc_u32(n);
    size_t bytes = 0;
    int64_t ts = T0_NS + 5000000000LL;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t0 = ticks();
        json_t *j = fn(e, ins, ts + (int64_t)i * 1000);
        char *text = dump ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        json_decref(j);
        if (text) {
            bytes = strlen(text);
            free(text);
        }
        uint64_t t1 = ticks();
        lat[i] = (uint32_t)(t1 - t0);
    }
    char label[96];
    snprintf(label, sizeof label, "%s%s", name, dump ? " + json_dumps:" : " (build, free):");
    print_summary(label, summarize(lat, n));
    if (dump) printf("    %zu bytes of JSON\n", bytes);
    free(lat);
}

/* The depth-5 snapshot as the engine takes it: numbers only, no JSON. */
static void snapshot_run(const instrument *ins) {
    uint64_t n = opt_encodes;
    uint32_t *lat = xalloc_u32(n);
    market_snapshot m;
    double sink = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t0 = ticks();
        engine_market_snapshot(ins, 5, &m);
        uint64_t t1 = ticks();
        sink += m.bid_price[0];
        lat[i] = (uint32_t)(t1 - t0);
    }
    print_summary("engine_market_snapshot depth 5 (numbers, no JSON):", summarize(lat, n));
    if (sink < 0) printf("%g\n", sink);
    free(lat);
}

static void part_encode(void) {
    printf("\n== 3. encoding per trade (10 price levels a side in the book, the day has "
           "traded)\n");
    engine *e = new_engine(10000, 1000);
    engine_result r;
    int64_t ts = T0_NS + 1000000000LL;
    /* 10 levels a side, 2 orders each, then a few trades so the day's stats are set */
    for (int lvl = 0; lvl < 10; lvl++)
        for (int k = 0; k < 2; k++) {
            command b = order_cmd(ts += 1000, (lvl * 2 + k) % N_ACCOUNTS, DIR_BUY, TC_GFD,
                                  19000 - 1 - lvl, 3 + k);
            command s = order_cmd(ts += 1000, (lvl * 2 + k + 50) % N_ACCOUNTS, DIR_SELL, TC_GFD,
                                  19000 + 1 + lvl, 2 + k);
            if (engine_apply(e, &b, &r) || engine_apply(e, &s, &r)) {
                fprintf(stderr, "book setup: %s\n", r.message);
                exit(1);
            }
        }
    for (int k = 0; k < 4; k++) {
        command m = order_cmd(ts += 1000, 100 + k, DIR_SELL, TC_GFD, 19000, 1);
        command t = order_cmd(ts += 1000, 150 + k, DIR_BUY, TC_IOC, 19000, 1);
        if (engine_apply(e, &m, &r) || engine_apply(e, &t, &r)) {
            fprintf(stderr, "trade setup: %s\n", r.message);
            exit(1);
        }
    }
    const instrument *ins = engine_instrument_find(e, INSTRUMENT);
    snapshot_run(ins);
    static const struct {
        const char *name;
        encode_fn fn;
    } encoders[] = {
        {"codec_market_snapshot (35 fields, depth 5)", enc_snapshot},
        {"/ws ticker push (snapshot + type)", enc_ticker},
        {"diff_quote", enc_diff_quote},
        {"DIFF quote push {quotes:{id:quote}}", enc_diff_push},
        {"codec_orderbook depth 5", enc_orderbook},
    };
    for (size_t i = 0; i < sizeof encoders / sizeof encoders[0]; i++) {
        encode_run(encoders[i].name, encoders[i].fn, e, ins, false);
        encode_run(encoders[i].name, encoders[i].fn, e, ins, true);
    }
    engine_destroy(e);
}

int main(int argc, char **argv) {
    int cpu = -1;
    bool only[4] = {false};
    bool any_only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--trades") == 0 && v)
            opt_trades = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--record-trades") == 0 && v)
            opt_record_trades = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--encodes") == 0 && v)
            opt_encodes = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--cpu") == 0 && v)
            cpu = atoi(argv[++i]);
        else if (strcmp(a, "--seed") == 0 && v)
            rng_state = strtoull(argv[++i], NULL, 10) | 1;
        else if (strcmp(a, "--part") == 0 && v) {
            int p = atoi(argv[++i]);
            if (p >= 1 && p <= 3) only[p] = any_only = true;
        } else {
            printf("usage: market_bench [--trades N (1000000)] [--record-trades N (10000000)]\n"
                   "                    [--encodes N (200000)] [--cpu C] [--seed S] [--part 1|2|3]"
                   "\n");
            return strcmp(a, "--help") == 0 ? 0 : 2;
        }
    }
    if (opt_trades < 10 || opt_record_trades < 10 || opt_encodes < 10) {
        fprintf(stderr, "market_bench: counts must be at least 10\n");
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
    }
    calibrate();
    printf("clock: %.3f ns per tick; two back-to-back reads take %.1f ns (inside every per-call "
           "figure)\n",
           ns_per_tick, timer_overhead_ns());
    if (!any_only || only[1]) part_engine();
    if (!any_only || only[2]) part_record();
    if (!any_only || only[3]) part_encode();
    return 0;
}
