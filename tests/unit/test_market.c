/* Market data (src/engine/market.c and its use by the engine): bar alignment and period names,
 * K-lines of the seven periods built from real matches, bars closed by the command clock, gaps,
 * the day rollover across settlement, the history and recent-trades bounds, snapshots, and the
 * market_data module on its own. Every expected bar is worked out by hand in the test. */
#include "check.h"
#include "engine_fixture.h"

#include "engine/market.h"

#include <stdint.h>
#include <stdlib.h>

#define MS 1000000LL       /* nanoseconds in a millisecond */
#define DAY_MS 86400000LL  /* milliseconds in a day */
#define T0 1735783200000LL /* 2025-01-02 02:00:00 UTC: a multiple of every period but the day */
#define D0 1735776000000LL /* 2025-01-02 00:00:00 UTC: the day bar holding T0 */
#define D1 (D0 + DAY_MS)   /* 2025-01-03 00:00:00 UTC */
#define MULT 200.0         /* IX2401's contract multiplier */
#define INS "IX2401"

/* ---- helpers ---- */

static kline bar_of(int64_t start, double o, double h, double l, double c, int64_t volume,
                    double amount, int64_t open_oi, int64_t close_oi, int64_t trades) {
    kline k = {.start_ms = start,
               .open = o,
               .high = h,
               .low = l,
               .close = c,
               .volume = volume,
               .amount = amount,
               .open_oi = open_oi,
               .close_oi = close_oi,
               .trades = trades};
    return k;
}

static void check_bar(const kline *k, kline want) {
    if (k == NULL) {
        fprintf(stderr, "bar starting %lld is missing\n", (long long)want.start_ms);
        check_failures_in_test++;
        return;
    }
    CHECK_INT(k->start_ms, want.start_ms);
    CHECK_MONEY(k->open, want.open);
    CHECK_MONEY(k->high, want.high);
    CHECK_MONEY(k->low, want.low);
    CHECK_MONEY(k->close, want.close);
    CHECK_INT(k->volume, want.volume);
    CHECK_MONEY(k->amount, want.amount);
    CHECK_INT(k->open_oi, want.open_oi);
    CHECK_INT(k->close_oi, want.close_oi);
    CHECK_INT(k->trades, want.trades);
}

/* Names the caller's line when a bar differs. */
#define CHECK_BAR(k, want)                                                                         \
    do {                                                                                           \
        int check_bar_before_ = check_failures_in_test;                                            \
        check_bar((k), (want));                                                                    \
        if (check_failures_in_test != check_bar_before_)                                           \
            fprintf(stderr, "  (bar checked at %s:%d)\n", __FILE__, __LINE__);                     \
    } while (0)

static bool same_bar(const kline *a, const kline *b) {
    return a->start_ms == b->start_ms && a->open == b->open && a->high == b->high &&
           a->low == b->low && a->close == b->close && a->volume == b->volume &&
           a->amount == b->amount && a->open_oi == b->open_oi && a->close_oi == b->close_oi &&
           a->trades == b->trades;
}

/* Every EV_KLINE the engine emits, in order. */
#define LOG_MAX 256
typedef struct bar_log {
    int n;
    kline_period period[LOG_MAX];
    kline bar[LOG_MAX];
    const instrument *ins[LOG_MAX];
} bar_log;

static void log_event(void *ctx, const engine_event *ev) {
    bar_log *log = ctx;
    if (ev->type != EV_KLINE) return;
    if (log->n == LOG_MAX) {
        fprintf(stderr, "bar log full\n");
        check_failures_in_test++;
        return;
    }
    log->period[log->n] = ev->kline_period;
    log->bar[log->n] = *ev->kline;
    log->ins[log->n] = ev->instrument;
    log->n++;
}

/* The i-th logged bar of period p, NULL when fewer were logged. */
static const kline *logged(const bar_log *log, kline_period p, int i) {
    for (int k = 0; k < log->n; k++)
        if (log->period[k] == p && i-- == 0) return &log->bar[k];
    return NULL;
}

static int logged_count(const bar_log *log, kline_period p) {
    int n = 0;
    for (int k = 0; k < log->n; k++)
        n += log->period[k] == p;
    return n;
}

/* The next fixture command carries exactly ts_ms. */
static void at_ms(int64_t ts_ms) {
    fixture_clock_ns = ts_ms * MS - MS;
}

/* An engine with IX2401 and accounts A and B (slots 0 and 1), set up just before T0. */
static engine *market_engine(uint32_t kline_history, uint32_t recent_trades) {
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.kline_history = kline_history;
    cfg.recent_trades = recent_trades;
    engine *e = engine_create(&cfg);
    at_ms(T0 - 100);
    instrument_spec s = fx_ix2401();
    CHECK_INT(fx_add_instrument(e, &s), 0);
    CHECK_INT(fx_open_account(e, "A", 10000000.0), 0);
    CHECK_INT(fx_open_account(e, "B", 10000000.0), 0);
    return e;
}

static const market_data *market_of(engine *e) {
    return &engine_instrument_find(e, INS)->market;
}

/* One match at ts_ms: the maker's order rests, then the taker crosses it at the same time. */
static void cross(engine *e, int64_t ts_ms, const char *maker, direction maker_dir,
                  offset maker_off, const char *taker, offset taker_off, double price,
                  int64_t volume) {
    at_ms(ts_ms);
    CHECK_INT(fx_order(e, maker, INS, maker_dir, maker_off, price, volume, NULL), 0);
    at_ms(ts_ms);
    CHECK_INT(fx_order(e, taker, INS, maker_dir == DIR_BUY ? DIR_SELL : DIR_BUY, taker_off, price,
                       volume, NULL),
              0);
}

static int clock_ns(engine *e, int64_t ts_ns) {
    command c;
    memset(&c, 0, sizeof c);
    c.type = CMD_CLOCK;
    c.ts_ns = ts_ns;
    return fx_apply(e, &c, NULL);
}

static int clock_ms(engine *e, int64_t ts_ms) {
    return clock_ns(e, ts_ms * MS);
}

/* ---- 1. periods and alignment ---- */

static void test_align_seed_examples(void) {
    /* the seed's example time (its 15-minute figure is wrong: 1696683900000 is no multiple of
     * 900 s; the formula gives 13:00:00) */
    const int64_t t = 1696684405123LL;
    CHECK_INT(kline_align_ms(KLINE_3S, t), 1696684404000LL);
    CHECK_INT(kline_align_ms(KLINE_1MIN, t), 1696684380000LL);
    CHECK_INT(kline_align_ms(KLINE_5MIN, t), 1696684200000LL);
    CHECK_INT(kline_align_ms(KLINE_15MIN, t), 1696683600000LL);
    CHECK(kline_align_ms(KLINE_15MIN, t) != 1696683900000LL);
    CHECK_INT(kline_align_ms(KLINE_30MIN, t), 1696683600000LL);
    CHECK_INT(kline_align_ms(KLINE_60MIN, t), 1696683600000LL);
    CHECK_INT(kline_align_ms(KLINE_DAY, t), 1696636800000LL);
}

static void test_align_boundaries(void) {
    /* 2023-10-07 13:00:00.000 UTC is a boundary of every period but the day */
    const int64_t b = 1696683600000LL;
    for (int p = 0; p < KLINE_DAY; p++)
        CHECK_INT(kline_align_ms((kline_period)p, b), b);
    CHECK_INT(kline_align_ms(KLINE_DAY, b), 1696636800000LL);
    /* one millisecond earlier belongs to the previous bar of every period */
    CHECK_INT(kline_align_ms(KLINE_3S, b - 1), 1696683597000LL);
    CHECK_INT(kline_align_ms(KLINE_1MIN, b - 1), 1696683540000LL);
    CHECK_INT(kline_align_ms(KLINE_5MIN, b - 1), 1696683300000LL);
    CHECK_INT(kline_align_ms(KLINE_15MIN, b - 1), 1696682700000LL);
    CHECK_INT(kline_align_ms(KLINE_30MIN, b - 1), 1696681800000LL);
    CHECK_INT(kline_align_ms(KLINE_60MIN, b - 1), 1696680000000LL);
    CHECK_INT(kline_align_ms(KLINE_DAY, b - 1), 1696636800000LL);
    /* 13:30:00.001: a 30-minute boundary that is not an hour's */
    CHECK_INT(kline_align_ms(KLINE_30MIN, b + 1800001), b + 1800000);
    CHECK_INT(kline_align_ms(KLINE_60MIN, b + 1800001), b);
    CHECK_INT(kline_align_ms(KLINE_60MIN, b + 3599999), b);
    CHECK_INT(kline_align_ms(KLINE_60MIN, b + 3600000), b + 3600000);
    /* days start at UTC midnight */
    CHECK_INT(kline_align_ms(KLINE_DAY, D1), D1);
    CHECK_INT(kline_align_ms(KLINE_DAY, D1 - 1), D0);
    CHECK_INT(kline_align_ms(KLINE_DAY, T0), D0);
    /* the epoch itself */
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++)
        CHECK_INT(kline_align_ms((kline_period)p, 0), 0);
}

static void test_align_negative_times_floor(void) {
    const int64_t minus_one[KLINE_PERIOD_COUNT] = {-3000,    -60000,   -300000,  -900000,
                                                   -1800000, -3600000, -86400000};
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        CHECK_INT(kline_align_ms((kline_period)p, -1), minus_one[p]);
        /* a negative boundary is its own start */
        CHECK_INT(kline_align_ms((kline_period)p, minus_one[p]), minus_one[p]);
    }
    CHECK_INT(kline_align_ms(KLINE_1MIN, -60001), -120000);
    CHECK_INT(kline_align_ms(KLINE_3S, -60001), -63000);
    CHECK_INT(kline_align_ms(KLINE_DAY, -86400001), -172800000);
    CHECK_INT(kline_align_ms(KLINE_60MIN, -86400001), -90000000);
}

static void test_period_names_seconds_hqchart(void) {
    static const char *const names[] = {"3s", "1min", "5min", "15min", "30min", "60min", "day"};
    static const int64_t seconds[] = {3, 60, 300, 900, 1800, 3600, 86400};
    static const int hq[] = {3, 4, 5, 6, 7, 8, 0};
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        CHECK_STR(kline_period_name((kline_period)p), names[p]);
        CHECK_INT(kline_period_seconds((kline_period)p), seconds[p]);
        CHECK_INT(kline_period_hqchart((kline_period)p), hq[p]);
        /* a name parses back to its period */
        kline_period back = KLINE_PERIOD_COUNT;
        CHECK_INT(kline_period_parse(names[p], &back), 0);
        CHECK_INT(back, p);
    }
    CHECK_STR(kline_period_name(KLINE_PERIOD_COUNT), "?");
}

static void test_period_parse_aliases(void) {
    static const struct {
        const char *text;
        kline_period p;
    } ok[] = {
        {"3s", KLINE_3S},       {"3S", KLINE_3S},       {"3", KLINE_3S},
        {"1min", KLINE_1MIN},   {"1m", KLINE_1MIN},     {"60s", KLINE_1MIN},
        {"60", KLINE_1MIN},     {"1MIN", KLINE_1MIN},   {"1M", KLINE_1MIN},
        {"5min", KLINE_5MIN},   {"5m", KLINE_5MIN},     {"300", KLINE_5MIN},
        {"15min", KLINE_15MIN}, {"15m", KLINE_15MIN},   {"900", KLINE_15MIN},
        {"30min", KLINE_30MIN}, {"30m", KLINE_30MIN},   {"1800", KLINE_30MIN},
        {"60min", KLINE_60MIN}, {"1h", KLINE_60MIN},    {"1H", KLINE_60MIN},
        {"60m", KLINE_60MIN},   {"3600", KLINE_60MIN},  {"day", KLINE_DAY},
        {"Day", KLINE_DAY},     {"DAY", KLINE_DAY},     {"1d", KLINE_DAY},
        {"1D", KLINE_DAY},      {"d", KLINE_DAY},       {"D", KLINE_DAY},
        {"86400", KLINE_DAY},   {"15MIN", KLINE_15MIN}, {"30Min", KLINE_30MIN},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        kline_period got = KLINE_PERIOD_COUNT;
        int rc = kline_period_parse(ok[i].text, &got);
        if (rc != 0 || got != ok[i].p)
            fprintf(stderr, "  parsing \"%s\": rc %d, period %d, expected %d\n", ok[i].text, rc,
                    (int)got, (int)ok[i].p);
        CHECK_INT(rc, 0);
        CHECK_INT(got, ok[i].p);
    }
    static const char *const refused[] = {"",  "2min", "4h",  "1w",     "day ",   " day", "3000",
                                          "1", "0",    "-60", "1min5",  "60mins", "hour", "3ss",
                                          "m", "s",    "5",   "86400s", "1 min"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        kline_period got = KLINE_5MIN;
        int rc = kline_period_parse(refused[i], &got);
        if (rc != -1) fprintf(stderr, "  \"%s\" should be refused\n", refused[i]);
        CHECK_INT(rc, -1);
        CHECK_INT(got, KLINE_5MIN); /* untouched when refused */
    }
    kline_period got = KLINE_5MIN;
    CHECK_INT(kline_period_parse(NULL, &got), -1);
    CHECK_INT(got, KLINE_5MIN);
}

static void test_period_from_duration_ns(void) {
    static const struct {
        int64_t ns;
        kline_period p;
    } ok[] = {
        {3000000000LL, KLINE_3S},       {60000000000LL, KLINE_1MIN},
        {300000000000LL, KLINE_5MIN},   {900000000000LL, KLINE_15MIN},
        {1800000000000LL, KLINE_30MIN}, {3600000000000LL, KLINE_60MIN},
        {86400000000000LL, KLINE_DAY},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        kline_period got = KLINE_PERIOD_COUNT;
        CHECK_INT(kline_period_from_duration_ns(ok[i].ns, &got), 0);
        CHECK_INT(got, ok[i].p);
    }
    static const int64_t refused[] = {7000000000LL,  0,         -60000000000LL, 60000000001LL,
                                      59999999999LL, 3000000LL, 60LL,           172800000000000LL,
                                      INT64_MAX,     INT64_MIN};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        kline_period got = KLINE_15MIN;
        CHECK_INT(kline_period_from_duration_ns(refused[i], &got), -1);
        CHECK_INT(got, KLINE_15MIN);
    }
}

/* ---- 2. bars of all seven periods from real matches ---- */

/* Nine matches between A and B (amount = price * volume * 200; open interest moves by the volume
 * when both sides open, back when both close, not at all when one opens and one closes):
 *   #  time (T0 +)    price vol  offsets            oi
 *   1  1 000 ms       100.0  2   open/open          0 -> 2
 *   2  2 500 ms       101.0  3   open/open          2 -> 5
 *   3  4 000 ms        99.5  2   close/close        5 -> 3
 *   4  65 000 ms      102.0  1   open/open          3 -> 4
 *   5  310 000 ms      98.0  4   close/open         4 -> 4
 *   6  1 000 000 ms   103.5  1   open/open          4 -> 5
 *   7  1 900 000 ms    97.0  2   open/open          5 -> 7
 *   8  3 700 000 ms   104.0  1   close/close        7 -> 6
 *   9  79 230 000 ms  100.5  3   open/open          6 -> 9   (2025-01-03 00:00:30 UTC)
 */
static void play_script(engine *e) {
    cross(e, T0 + 1000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 100.0, 2);
    cross(e, T0 + 2500, "B", DIR_SELL, OFFSET_OPEN, "A", OFFSET_OPEN, 101.0, 3);
    cross(e, T0 + 4000, "B", DIR_BUY, OFFSET_CLOSE, "A", OFFSET_CLOSE, 99.5, 2);
    cross(e, T0 + 65000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 102.0, 1);
    cross(e, T0 + 310000, "A", DIR_SELL, OFFSET_CLOSE, "B", OFFSET_OPEN, 98.0, 4);
    cross(e, T0 + 1000000, "B", DIR_SELL, OFFSET_OPEN, "A", OFFSET_OPEN, 103.5, 1);
    cross(e, T0 + 1900000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 97.0, 2);
    cross(e, T0 + 3700000, "B", DIR_BUY, OFFSET_CLOSE, "A", OFFSET_CLOSE, 104.0, 1);
    cross(e, D1 + 30000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 100.5, 3);
}

static void test_script_bars_all_periods(void) {
    CHECK_INT(D1 + 30000, T0 + 79230000); /* the table's times */
    engine *e = market_engine(10000, 1000);
    bar_log log = {0};
    engine_set_event_sink(e, log_event, &log);
    play_script(e);

    const instrument *ins = engine_instrument_find(e, INS);
    CHECK_INT(ins->stats.open_interest, 9);
    CHECK_INT(ins->stats.volume, 19);
    CHECK_MONEY(ins->stats.amount, 379800.0);
    CHECK_INT(market_trade_count(&ins->market), 9);
    /* the last bar of every period is still in progress */
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++)
        CHECK_BAR(market_kline_current(&ins->market, (kline_period)p),
                  bar_of(kline_align_ms((kline_period)p, D1 + 30000), 100.5, 100.5, 100.5, 100.5, 3,
                         60300.0, 6, 9, 1));
    CHECK_INT(clock_ms(e, D1 + DAY_MS), 0); /* closes them all */

    static const struct {
        kline_period p;
        int n;
        kline bars[8];
    } want[KLINE_PERIOD_COUNT] = {
        {KLINE_3S,
         8,
         {{T0, 100, 101, 100, 101, 5, 100600, 0, 5, 2},
          {T0 + 3000, 99.5, 99.5, 99.5, 99.5, 2, 39800, 5, 3, 1},
          {T0 + 63000, 102, 102, 102, 102, 1, 20400, 3, 4, 1},
          {T0 + 309000, 98, 98, 98, 98, 4, 78400, 4, 4, 1},
          {T0 + 999000, 103.5, 103.5, 103.5, 103.5, 1, 20700, 4, 5, 1},
          {T0 + 1899000, 97, 97, 97, 97, 2, 38800, 5, 7, 1},
          {T0 + 3699000, 104, 104, 104, 104, 1, 20800, 7, 6, 1},
          {D1 + 30000, 100.5, 100.5, 100.5, 100.5, 3, 60300, 6, 9, 1}}},
        {KLINE_1MIN,
         7,
         {{T0, 100, 101, 99.5, 99.5, 7, 140400, 0, 3, 3},
          {T0 + 60000, 102, 102, 102, 102, 1, 20400, 3, 4, 1},
          {T0 + 300000, 98, 98, 98, 98, 4, 78400, 4, 4, 1},
          {T0 + 960000, 103.5, 103.5, 103.5, 103.5, 1, 20700, 4, 5, 1},
          {T0 + 1860000, 97, 97, 97, 97, 2, 38800, 5, 7, 1},
          {T0 + 3660000, 104, 104, 104, 104, 1, 20800, 7, 6, 1},
          {D1, 100.5, 100.5, 100.5, 100.5, 3, 60300, 6, 9, 1}}},
        {KLINE_5MIN,
         6,
         {{T0, 100, 102, 99.5, 102, 8, 160800, 0, 4, 4},
          {T0 + 300000, 98, 98, 98, 98, 4, 78400, 4, 4, 1},
          {T0 + 900000, 103.5, 103.5, 103.5, 103.5, 1, 20700, 4, 5, 1},
          {T0 + 1800000, 97, 97, 97, 97, 2, 38800, 5, 7, 1},
          {T0 + 3600000, 104, 104, 104, 104, 1, 20800, 7, 6, 1},
          {D1, 100.5, 100.5, 100.5, 100.5, 3, 60300, 6, 9, 1}}},
        {KLINE_15MIN,
         5,
         {{T0, 100, 102, 98, 98, 12, 239200, 0, 4, 5},
          {T0 + 900000, 103.5, 103.5, 103.5, 103.5, 1, 20700, 4, 5, 1},
          {T0 + 1800000, 97, 97, 97, 97, 2, 38800, 5, 7, 1},
          {T0 + 3600000, 104, 104, 104, 104, 1, 20800, 7, 6, 1},
          {D1, 100.5, 100.5, 100.5, 100.5, 3, 60300, 6, 9, 1}}},
        {KLINE_30MIN,
         4,
         {{T0, 100, 103.5, 98, 103.5, 13, 259900, 0, 5, 6},
          {T0 + 1800000, 97, 97, 97, 97, 2, 38800, 5, 7, 1},
          {T0 + 3600000, 104, 104, 104, 104, 1, 20800, 7, 6, 1},
          {D1, 100.5, 100.5, 100.5, 100.5, 3, 60300, 6, 9, 1}}},
        {KLINE_60MIN,
         3,
         {{T0, 100, 103.5, 97, 97, 15, 298700, 0, 7, 7},
          {T0 + 3600000, 104, 104, 104, 104, 1, 20800, 7, 6, 1},
          {D1, 100.5, 100.5, 100.5, 100.5, 3, 60300, 6, 9, 1}}},
        {KLINE_DAY,
         2,
         {{D0, 100, 104, 97, 104, 16, 319500, 0, 6, 8},
          {D1, 100.5, 100.5, 100.5, 100.5, 3, 60300, 6, 9, 1}}},
    };
    int total = 0;
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        kline_period kp = want[p].p;
        CHECK_INT(kp, p);
        total += want[p].n;
        CHECK_INT(market_kline_count(&ins->market, kp), want[p].n);
        CHECK_INT(logged_count(&log, kp), want[p].n);
        CHECK(market_kline_current(&ins->market, kp) == NULL);
        for (int i = 0; i < want[p].n; i++) {
            CHECK_BAR(market_kline_at(&ins->market, kp, (uint32_t)i), want[p].bars[i]);
            CHECK_BAR(logged(&log, kp, i), want[p].bars[i]);
        }
        CHECK(market_kline_at(&ins->market, kp, (uint32_t)want[p].n) == NULL);
    }
    CHECK_INT(log.n, total);
    CHECK_INT(total, 35);
    for (int k = 0; k < log.n; k++)
        CHECK(log.ins[k] == ins);
    CHECK_INT(engine_next_bar_close_ms(e), INT64_MAX);
    engine_destroy(e);
}

/* ---- 3. bars closed by the command clock ---- */

static void test_clock_closes_bars(void) {
    engine *e = market_engine(100, 100);
    bar_log log = {0};
    engine_set_event_sink(e, log_event, &log);
    CHECK_INT(engine_next_bar_close_ms(e), INT64_MAX); /* no bar open yet */
    cross(e, T0 + 1000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 100.0, 1);
    CHECK_INT(engine_clock_ms(e), T0 + 1000);
    CHECK_INT(engine_next_bar_close_ms(e), T0 + 3000);
    CHECK_INT(log.n, 0);

    /* 1 ns and 1 ms before the end of the 3 s bar: nothing closes */
    CHECK_INT(clock_ms(e, T0 + 2999), 0);
    CHECK_INT(clock_ns(e, (T0 + 3000) * MS - 1), 0);
    CHECK_INT(engine_clock_ms(e), T0 + 2999);
    CHECK_INT(log.n, 0);
    CHECK(market_kline_current(market_of(e), KLINE_3S) != NULL);
    CHECK_INT(engine_next_bar_close_ms(e), T0 + 3000);

    /* exactly at the end: the 3 s bar closes, and only it */
    CHECK_INT(clock_ms(e, T0 + 3000), 0);
    CHECK_INT(engine_clock_ms(e), T0 + 3000);
    CHECK_INT(log.n, 1);
    CHECK_INT(log.period[0], KLINE_3S);
    CHECK(log.ins[0] == engine_instrument_find(e, INS));
    const kline one = bar_of(T0, 100, 100, 100, 100, 1, 20000, 0, 1, 1);
    CHECK_BAR(&log.bar[0], one);
    CHECK_INT(market_kline_count(market_of(e), KLINE_3S), 1);
    CHECK_BAR(market_kline_at(market_of(e), KLINE_3S, 0), one);
    CHECK(market_kline_current(market_of(e), KLINE_3S) == NULL);
    CHECK_INT(engine_next_bar_close_ms(e), T0 + 60000);

    /* a clock stepping back neither moves the clock nor closes anything */
    CHECK_INT(clock_ms(e, T0 + 500), 0);
    CHECK_INT(engine_clock_ms(e), T0 + 3000);
    CHECK_INT(log.n, 1);

    CHECK_INT(clock_ms(e, T0 + 59999), 0);
    CHECK_INT(log.n, 1);
    CHECK_INT(clock_ms(e, T0 + 60000), 0);
    CHECK_INT(log.n, 2);
    CHECK_INT(log.period[1], KLINE_1MIN);
    CHECK_BAR(&log.bar[1], one);
    CHECK_INT(engine_next_bar_close_ms(e), T0 + 300000);

    /* one clock past four ends closes them shortest first */
    CHECK_INT(clock_ms(e, T0 + 3600000), 0);
    CHECK_INT(log.n, 6);
    CHECK_INT(log.period[2], KLINE_5MIN);
    CHECK_INT(log.period[3], KLINE_15MIN);
    CHECK_INT(log.period[4], KLINE_30MIN);
    CHECK_INT(log.period[5], KLINE_60MIN);
    for (int k = 2; k < 6; k++)
        CHECK_BAR(&log.bar[k], one);
    CHECK_INT(engine_next_bar_close_ms(e), D1);
    CHECK(market_kline_current(market_of(e), KLINE_DAY) != NULL);

    CHECK_INT(clock_ms(e, D1 - 1), 0);
    CHECK_INT(log.n, 6);
    CHECK_INT(clock_ms(e, D1), 0);
    CHECK_INT(log.n, 7);
    CHECK_INT(log.period[6], KLINE_DAY);
    CHECK_BAR(&log.bar[6], bar_of(D0, 100, 100, 100, 100, 1, 20000, 0, 1, 1));
    CHECK_INT(engine_next_bar_close_ms(e), INT64_MAX);
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        CHECK_INT(market_kline_count(market_of(e), (kline_period)p), 1);
        CHECK(market_kline_current(market_of(e), (kline_period)p) == NULL);
    }
    /* nothing left to close */
    CHECK_INT(clock_ms(e, D1 + 10 * DAY_MS), 0);
    CHECK_INT(log.n, 7);
    engine_destroy(e);
}

static void test_rejected_command_does_not_close_bars(void) {
    engine *e = market_engine(100, 100);
    bar_log log = {0};
    engine_set_event_sink(e, log_event, &log);
    cross(e, T0 + 1000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 100.0, 1);
    uint64_t before = engine_state_hash(e);

    /* refused orders stamped well past the end of every bar but the day's */
    at_ms(T0 + 3600000);
    CHECK(fx_order(e, "nobody", INS, DIR_BUY, OFFSET_OPEN, 100.0, 1, NULL) != 0);
    at_ms(T0 + 3600000);
    CHECK(fx_order(e, "A", INS, DIR_BUY, OFFSET_OPEN, 100.0, 0, NULL) != 0);
    at_ms(T0 + 3600000);
    CHECK(fx_order(e, "A", "NOSUCH", DIR_BUY, OFFSET_OPEN, 100.0, 1, NULL) != 0);
    at_ms(T0 + 3600000);
    CHECK(fx_transfer(e, CMD_WITHDRAW, "A", 1e12, NULL) != 0);
    CHECK_INT(log.n, 0);
    CHECK_INT(engine_clock_ms(e), T0 + 1000);
    CHECK_INT(engine_next_bar_close_ms(e), T0 + 3000);
    CHECK(engine_state_hash(e) == before);
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        CHECK_INT(market_kline_count(market_of(e), (kline_period)p), 0);
        CHECK(market_kline_current(market_of(e), (kline_period)p) != NULL);
    }

    /* any accepted command moves the clock: a deposit at T0 + 10 s closes the 3 s bar */
    at_ms(T0 + 10000);
    CHECK_INT(fx_transfer(e, CMD_DEPOSIT, "A", 1.0, NULL), 0);
    CHECK_INT(engine_clock_ms(e), T0 + 10000);
    CHECK_INT(log.n, 1);
    CHECK_INT(log.period[0], KLINE_3S);
    CHECK_BAR(&log.bar[0], bar_of(T0, 100, 100, 100, 100, 1, 20000, 0, 1, 1));
    CHECK_INT(engine_next_bar_close_ms(e), T0 + 60000);
    CHECK(engine_state_hash(e) != before);
    engine_destroy(e);
}

/* ---- 4. gaps ---- */

static void test_gap_makes_no_empty_bars(void) {
    engine *e = market_engine(100, 100);
    bar_log log = {0};
    engine_set_event_sink(e, log_event, &log);
    cross(e, T0 + 1000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 100.0, 1);
    /* a bid rests before the first 3 s bar ends; B hits it ten minutes later, so the trade itself
     * closes the bars (no command in between moved the clock) */
    at_ms(T0 + 1500);
    CHECK_INT(fx_order(e, "A", INS, DIR_BUY, OFFSET_OPEN, 101.0, 1, NULL), 0);
    CHECK_INT(log.n, 0);
    at_ms(T0 + 601000);
    CHECK_INT(fx_order(e, "B", INS, DIR_SELL, OFFSET_OPEN, 101.0, 1, NULL), 0);
    CHECK_INT(log.n, 3);
    CHECK_INT(log.period[0], KLINE_3S);
    CHECK_INT(log.period[1], KLINE_1MIN);
    CHECK_INT(log.period[2], KLINE_5MIN);
    const kline first = bar_of(T0, 100, 100, 100, 100, 1, 20000, 0, 1, 1);
    for (int k = 0; k < 3; k++)
        CHECK_BAR(&log.bar[k], first);
    const market_data *m = market_of(e);
    CHECK_INT(market_kline_count(m, KLINE_1MIN), 1);
    const kline second = bar_of(T0 + 600000, 101, 101, 101, 101, 1, 20200, 1, 2, 1);
    CHECK_BAR(market_kline_current(m, KLINE_3S), second);
    CHECK_BAR(market_kline_current(m, KLINE_1MIN), second);
    CHECK_BAR(market_kline_current(m, KLINE_5MIN), second);
    const kline both = bar_of(T0, 100, 101, 100, 101, 2, 40200, 0, 2, 2);
    CHECK_BAR(market_kline_current(m, KLINE_15MIN), both);
    CHECK_INT(engine_next_bar_close_ms(e), T0 + 603000);

    /* a late clock closes every period, shortest first */
    log.n = 0;
    CHECK_INT(clock_ms(e, D1), 0);
    CHECK_INT(log.n, KLINE_PERIOD_COUNT);
    for (int k = 0; k < log.n; k++)
        CHECK_INT(log.period[k], k);
    for (int p = KLINE_3S; p <= KLINE_5MIN; p++) {
        CHECK_INT(market_kline_count(m, (kline_period)p), 2);
        CHECK_BAR(market_kline_at(m, (kline_period)p, 0), first);
        CHECK_BAR(market_kline_at(m, (kline_period)p, 1), second);
    }
    for (int p = KLINE_15MIN; p <= KLINE_60MIN; p++) {
        CHECK_INT(market_kline_count(m, (kline_period)p), 1);
        CHECK_BAR(market_kline_at(m, (kline_period)p, 0), both);
    }
    CHECK_INT(market_kline_count(m, KLINE_DAY), 1);
    CHECK_BAR(market_kline_at(m, KLINE_DAY, 0), bar_of(D0, 100, 101, 100, 101, 2, 40200, 0, 2, 2));
    engine_destroy(e);
}

/* ---- 5. the day rolls over across settlement ---- */

static void test_day_rollover_and_settlement(void) {
    engine *e = market_engine(100, 100);
    bar_log log = {0};
    engine_set_event_sink(e, log_event, &log);
    const instrument *ins = engine_instrument_find(e, INS);
    cross(e, D1 - 60000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 100.0, 2);  /* 23:59:00 */
    cross(e, D1 - 30000, "B", DIR_SELL, OFFSET_OPEN, "A", OFFSET_OPEN, 101.0, 1); /* 23:59:30 */
    CHECK(ins->stats.has_trade);
    CHECK_MONEY(ins->stats.open, 100.0);
    CHECK_MONEY(ins->stats.high, 101.0);
    CHECK_MONEY(ins->stats.low, 100.0);
    CHECK_MONEY(ins->stats.last_price, 101.0);
    CHECK_INT(ins->stats.volume, 3);
    CHECK_MONEY(ins->stats.amount, 60200.0);
    CHECK_INT(ins->stats.open_interest, 3);

    at_ms(D1 - 20000);
    CHECK_INT(fx_set_settlement_price(e, INS, 101.0, NULL), 0);
    at_ms(D1 - 10000);
    CHECK_INT(fx_settle(e, NULL), 0);
    CHECK_INT(engine_clock_ms(e), D1 - 10000);
    /* the day's statistics start again; the open interest carries over */
    CHECK(!ins->stats.has_trade);
    CHECK_MONEY(ins->stats.open, 0.0);
    CHECK_MONEY(ins->stats.high, 0.0);
    CHECK_MONEY(ins->stats.low, 0.0);
    CHECK_INT(ins->stats.volume, 0);
    CHECK_MONEY(ins->stats.amount, 0.0);
    CHECK_INT(ins->stats.open_interest, 3);
    CHECK_INT(ins->stats.pre_open_interest, 3);
    /* ... while the K-lines do not: the day bar is still open with both trades */
    const kline day0 = bar_of(D0, 100, 101, 100, 101, 3, 60200, 0, 3, 2);
    CHECK_INT(market_kline_count(&ins->market, KLINE_DAY), 0);
    CHECK_BAR(market_kline_current(&ins->market, KLINE_DAY), day0);
    CHECK_BAR(market_kline_current(&ins->market, KLINE_1MIN),
              bar_of(D1 - 60000, 100, 101, 100, 101, 3, 60200, 0, 3, 2));
    CHECK_INT(logged_count(&log, KLINE_3S), 2); /* the 3 s bars ended before the settlement */
    CHECK_INT(logged_count(&log, KLINE_DAY), 0);
    CHECK_INT(engine_next_bar_close_ms(e), D1);

    /* the first trade of the new UTC day closes yesterday's bar */
    cross(e, D1 + 1000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 102.0, 1);
    CHECK_INT(logged_count(&log, KLINE_DAY), 1);
    CHECK_BAR(logged(&log, KLINE_DAY, 0), day0);
    CHECK_INT(market_kline_count(&ins->market, KLINE_DAY), 1);
    CHECK_BAR(market_kline_at(&ins->market, KLINE_DAY, 0), day0);
    const kline day1 = bar_of(D1, 102, 102, 102, 102, 1, 20400, 3, 4, 1);
    CHECK_BAR(market_kline_current(&ins->market, KLINE_DAY), day1);
    CHECK_INT(market_kline_count(&ins->market, KLINE_1MIN), 1);
    CHECK_BAR(market_kline_at(&ins->market, KLINE_1MIN, 0),
              bar_of(D1 - 60000, 100, 101, 100, 101, 3, 60200, 0, 3, 2));
    CHECK(ins->stats.has_trade);
    CHECK_MONEY(ins->stats.open, 102.0);
    CHECK_MONEY(ins->stats.high, 102.0);
    CHECK_MONEY(ins->stats.low, 102.0);
    CHECK_INT(ins->stats.volume, 1);
    CHECK_MONEY(ins->stats.amount, 20400.0);
    CHECK_INT(ins->stats.open_interest, 4);

    CHECK_INT(clock_ms(e, D1 + DAY_MS), 0);
    CHECK_INT(market_kline_count(&ins->market, KLINE_DAY), 2);
    CHECK_BAR(market_kline_at(&ins->market, KLINE_DAY, 0), day0);
    CHECK_BAR(market_kline_at(&ins->market, KLINE_DAY, 1), day1);
    CHECK_BAR(logged(&log, KLINE_DAY, 1), day1);
    engine_destroy(e);
}

/* The quote of a day before its first trade: the last price is still yesterday's close, so the
 * change is nothing, whatever the settlement price (the mark price of positions) became. */
static void test_quote_before_the_first_trade(void) {
    engine *e = market_engine(100, 100);
    const instrument *ins = engine_instrument_find(e, INS);
    market_snapshot m;
    engine_market_snapshot(ins, 5, &m);
    CHECK_MONEY(m.last_price, 100.0);
    CHECK_MONEY(m.change_amount, 0.0);
    CHECK_MONEY(m.change_percent, 0.0);
    cross(e, T0, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 101.0, 2);
    engine_market_snapshot(ins, 5, &m);
    CHECK_MONEY(m.last_price, 101.0);
    CHECK_MONEY(m.change_amount, 1.0);
    CHECK_MONEY(m.change_percent, 1.0);
    /* settled at 100.5: tomorrow's reference, while the close was 101 */
    at_ms(T0 + 1000);
    CHECK_INT(fx_set_settlement_price(e, INS, 100.5, NULL), 0);
    CHECK_INT(fx_settle(e, NULL), 0);
    engine_market_snapshot(ins, 5, &m);
    CHECK_MONEY(m.pre_close, 101.0);
    CHECK_MONEY(m.pre_settlement, 100.5);
    CHECK(!m.has_trade);
    CHECK_INT(m.volume, 0);
    CHECK_INT(m.open_interest, 2);
    CHECK_INT(m.pre_open_interest, 2);
    CHECK_MONEY(m.last_price, 101.0);
    CHECK_MONEY(m.change_amount, 0.0);
    CHECK_MONEY(m.change_percent, 0.0);
    /* positions are still marked at the settlement price */
    CHECK_MONEY(instrument_mark_price(ins), 100.5);
    /* the first trade of the day moves it against the close */
    cross(e, T0 + 2000, "A", DIR_SELL, OFFSET_CLOSE, "B", OFFSET_CLOSE, 99.0, 1);
    engine_market_snapshot(ins, 5, &m);
    CHECK_MONEY(m.last_price, 99.0);
    CHECK_MONEY(m.change_amount, -2.0);
    CHECK_MONEY(m.change_percent, -2.0 / 101.0 * 100.0);
    CHECK_INT(m.open_interest, 1);
    engine_destroy(e);
}

/* ---- 6. bounded history and recent trades ---- */

static void test_history_and_recent_trades_caps(void) {
    engine *e = market_engine(5, 4);
    CHECK_INT(engine_get_config(e)->kline_history, 5);
    CHECK_INT(engine_get_config(e)->recent_trades, 4);
    bar_log log = {0};
    engine_set_event_sink(e, log_event, &log);
    /* 13 matches, one per 3 s bar, all opening: bar i has price 100 + i/2 and oi i -> i + 1.
     * Even i: A bids, B sells into it (taker sells); odd i: A offers, B buys (taker buys). */
    for (int i = 0; i < 13; i++) {
        int64_t ts = T0 + 3000 * i + 500;
        double price = 100.0 + 0.5 * i;
        if (i % 2 == 0)
            cross(e, ts, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, price, 1);
        else
            cross(e, ts, "A", DIR_SELL, OFFSET_OPEN, "B", OFFSET_OPEN, price, 1);
    }
    const market_data *m = market_of(e);
    CHECK_INT(logged_count(&log, KLINE_3S), 12);   /* every close is reported... */
    CHECK_INT(market_kline_count(m, KLINE_3S), 5); /* ...the newest five are kept */
    for (uint32_t k = 0; k < 5; k++) {
        int i = 7 + (int)k;
        double price = 100.0 + 0.5 * i;
        CHECK_BAR(market_kline_at(m, KLINE_3S, k),
                  bar_of(T0 + 3000 * i, price, price, price, price, 1, price * MULT, i, i + 1, 1));
    }
    CHECK(market_kline_at(m, KLINE_3S, 5) == NULL);
    CHECK_BAR(market_kline_current(m, KLINE_3S),
              bar_of(T0 + 36000, 106, 106, 106, 106, 1, 106 * MULT, 12, 13, 1));
    CHECK_BAR(market_kline_current(m, KLINE_1MIN),
              bar_of(T0, 100, 106, 100, 106, 13, 1339 * MULT, 0, 13, 13));

    const account *a = engine_account_find(e, "A");
    const account *b = engine_account_find(e, "B");
    CHECK(a != NULL && b != NULL && a != b);
    CHECK_INT(market_trade_count(m), 4);
    for (uint32_t k = 0; k < 4; k++) {
        const market_trade *t = market_trade_at(m, k);
        int i = 12 - (int)k; /* newest first */
        CHECK(t != NULL);
        if (t == NULL) continue;
        CHECK_INT(t->ts_ns, (T0 + 3000 * i + 500) * MS);
        CHECK_MONEY(t->price, 100.0 + 0.5 * i);
        CHECK_INT(t->volume, 1);
        CHECK_INT(t->taker_side, i % 2 == 0 ? DIR_SELL : DIR_BUY);
        CHECK(engine_account_of(e, t->buyer) == (i % 2 == 0 ? a : b));
        CHECK(engine_account_of(e, t->seller) == (i % 2 == 0 ? b : a));
        if (k > 0) CHECK_INT(market_trade_at(m, k - 1)->match_seq, t->match_seq + 1);
    }
    CHECK(market_trade_at(m, 4) == NULL);
    engine_destroy(e);
}

/* ---- 7. snapshots ---- */

static void check_same_market(const market_data *x, const market_data *y) {
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        kline_period kp = (kline_period)p;
        CHECK_INT(market_kline_count(x, kp), market_kline_count(y, kp));
        for (uint32_t i = 0; i < market_kline_count(x, kp); i++) {
            const kline *kx = market_kline_at(x, kp, i), *ky = market_kline_at(y, kp, i);
            CHECK(kx != NULL && ky != NULL && same_bar(kx, ky));
        }
        const kline *cx = market_kline_current(x, kp), *cy = market_kline_current(y, kp);
        CHECK((cx == NULL) == (cy == NULL));
        if (cx && cy) CHECK(same_bar(cx, cy));
    }
    CHECK_INT(market_trade_count(x), market_trade_count(y));
    for (uint32_t i = 0; i < market_trade_count(x); i++) {
        const market_trade *tx = market_trade_at(x, i), *ty = market_trade_at(y, i);
        CHECK(tx != NULL && ty != NULL);
        if (tx == NULL || ty == NULL) continue;
        CHECK_INT(tx->ts_ns, ty->ts_ns);
        CHECK(tx->price == ty->price);
        CHECK_INT(tx->volume, ty->volume);
        CHECK_INT(tx->taker_side, ty->taker_side);
        CHECK_INT(tx->match_seq, ty->match_seq);
        CHECK_INT(tx->buyer, ty->buyer);
        CHECK_INT(tx->seller, ty->seller);
    }
}

static void check_same_log(const bar_log *x, const bar_log *y) {
    CHECK_INT(x->n, y->n);
    for (int k = 0; k < x->n && k < y->n; k++) {
        CHECK_INT(x->period[k], y->period[k]);
        CHECK(same_bar(&x->bar[k], &y->bar[k]));
    }
}

static void test_snapshot_round_trip(void) {
    /* small bounds so the saved rings have wrapped */
    engine *e = market_engine(3, 2);
    for (int i = 0; i < 6; i++)
        cross(e, T0 + 1000 + 3000 * i, i % 2 ? "B" : "A", i % 2 ? DIR_SELL : DIR_BUY, OFFSET_OPEN,
              i % 2 ? "A" : "B", OFFSET_OPEN, 100.0 + i, 1 + i);
    const market_data *m = market_of(e);
    CHECK_INT(market_kline_count(m, KLINE_3S), 3);
    CHECK_INT(market_kline_at(m, KLINE_3S, 0)->start_ms, T0 + 6000);
    CHECK(market_kline_current(m, KLINE_1MIN) != NULL);
    CHECK_INT(market_trade_count(m), 2);

    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_INT(engine_snapshot_save(e, &buf, &len), 0);
    char err[256] = "";
    engine *copy = engine_snapshot_load(buf, len, err, sizeof err);
    free(buf);
    CHECK(copy != NULL);
    if (copy == NULL) {
        fprintf(stderr, "  snapshot load failed: %s\n", err);
        engine_destroy(e);
        return;
    }
    CHECK(engine_state_hash(copy) == engine_state_hash(e));
    CHECK_INT(engine_clock_ms(copy), engine_clock_ms(e));
    CHECK_INT(engine_clock_ms(copy), T0 + 16000);
    CHECK_INT(engine_next_bar_close_ms(copy), engine_next_bar_close_ms(e));
    CHECK_INT(engine_next_bar_close_ms(copy), T0 + 18000);
    CHECK_INT(engine_get_config(copy)->kline_history, 3);
    CHECK_INT(engine_get_config(copy)->recent_trades, 2);
    check_same_market(market_of(copy), m);

    bar_log log_e = {0}, log_c = {0};
    engine_set_event_sink(e, log_event, &log_e);
    engine_set_event_sink(copy, log_event, &log_c);
    /* the same clock, then the same match, then the end of the day, in both */
    CHECK_INT(clock_ms(e, T0 + 60000), 0);
    CHECK_INT(clock_ms(copy, T0 + 60000), 0);
    CHECK_INT(log_e.n, 2); /* the 3 s and the 1 min bar in progress */
    check_same_log(&log_e, &log_c);
    /* 1 min: 100 x1, 101 x2, ..., 105 x6; amount (100 + 202 + 306 + 412 + 520 + 630) * 200 */
    CHECK_BAR(&log_e.bar[1], bar_of(T0, 100, 105, 100, 105, 21, 2170 * MULT, 0, 21, 6));
    CHECK(engine_state_hash(copy) == engine_state_hash(e));
    cross(e, T0 + 61000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 99.0, 2);
    cross(copy, T0 + 61000, "A", DIR_BUY, OFFSET_OPEN, "B", OFFSET_OPEN, 99.0, 2);
    CHECK(engine_state_hash(copy) == engine_state_hash(e));
    CHECK_INT(clock_ms(e, D1), 0);
    CHECK_INT(clock_ms(copy, D1), 0);
    CHECK_INT(log_e.n, 2 + 7);
    check_same_log(&log_e, &log_c);
    CHECK_BAR(logged(&log_e, KLINE_DAY, 0),
              bar_of(D0, 100, 105, 99, 99, 23, (2170 + 198) * MULT, 0, 23, 7));
    CHECK(engine_state_hash(copy) == engine_state_hash(e));
    check_same_market(market_of(copy), market_of(e));
    engine_destroy(copy);
    engine_destroy(e);
}

/* ---- market.c on its own ---- */

typedef struct counter {
    int n;
    kline_period period[64];
    kline bar[64];
} counter;

static void count_bar(void *ctx, kline_period p, const kline *bar) {
    counter *c = ctx;
    if (c->n < 64) {
        c->period[c->n] = p;
        c->bar[c->n] = *bar;
    }
    c->n++;
}

static market_trade trade_at_ms(int64_t ts_ms, double price, int64_t volume, uint64_t seq) {
    market_trade t = {.ts_ns = ts_ms * MS,
                      .price = price,
                      .volume = volume,
                      .taker_side = seq % 2 ? DIR_BUY : DIR_SELL,
                      .match_seq = seq,
                      .buyer = (uint32_t)seq,
                      .seller = (uint32_t)seq + 1000};
    return t;
}

/* 50 bars into a history of 40: the ring grows 16 -> 32 -> 40 and then drops the oldest. */
static void test_market_ring_growth(void) {
    market_data m;
    market_init(&m, 40, 20);
    CHECK(m.series[KLINE_3S].ring == NULL && m.trades == NULL); /* nothing allocated yet */
    CHECK_INT(market_next_close_ms(&m), INT64_MAX);
    for (int i = 0; i < 50; i++) {
        market_trade t = trade_at_ms(T0 + 3000 * i, 100 + i, 1, (uint64_t)i + 1);
        CHECK_INT(market_record_trade(&m, &t, (100 + i) * 10.0, i, i + 1, NULL, NULL), 0);
        uint32_t closed = (uint32_t)i; /* bars 0 .. i-1 */
        CHECK_INT(market_kline_count(&m, KLINE_3S), closed < 40 ? closed : 40);
        if (closed == 1) CHECK_INT(m.series[KLINE_3S].cap, 16); /* the first allocation */
        if (closed == 16) CHECK_INT(m.series[KLINE_3S].cap, 16);
        if (closed == 17) CHECK_INT(m.series[KLINE_3S].cap, 32);
        if (closed == 33) CHECK_INT(m.series[KLINE_3S].cap, 40);
        if (i + 1 == 16) CHECK_INT(m.trades_cap, 16);
        if (i + 1 == 17) CHECK_INT(m.trades_cap, 20);
    }
    CHECK_INT(m.series[KLINE_3S].cap, 40);
    for (uint32_t k = 0; k < 40; k++) {
        int i = 9 + (int)k;
        CHECK_BAR(market_kline_at(&m, KLINE_3S, k),
                  bar_of(T0 + 3000 * i, 100 + i, 100 + i, 100 + i, 100 + i, 1, (100 + i) * 10.0, i,
                         i + 1, 1));
    }
    CHECK(market_kline_at(&m, KLINE_3S, 40) == NULL);
    /* 50 trades over 150 s: 1 min bars of 20, 20 and (in progress) 10 */
    CHECK_INT(market_kline_count(&m, KLINE_1MIN), 2);
    CHECK_BAR(market_kline_at(&m, KLINE_1MIN, 0),
              bar_of(T0, 100, 119, 100, 119, 20, 21900, 0, 20, 20));
    CHECK_BAR(market_kline_at(&m, KLINE_1MIN, 1),
              bar_of(T0 + 60000, 120, 139, 120, 139, 20, 25900, 20, 40, 20));
    CHECK_BAR(market_kline_current(&m, KLINE_1MIN),
              bar_of(T0 + 120000, 140, 149, 140, 149, 10, 14450, 40, 50, 10));
    CHECK_INT(market_trade_count(&m), 20);
    for (uint32_t k = 0; k < 20; k++) {
        const market_trade *t = market_trade_at(&m, k);
        CHECK_MONEY(t->price, 149.0 - k);
        CHECK_INT(t->match_seq, 50 - k);
        CHECK_INT(t->buyer, 50 - k);
        CHECK_INT(t->seller, 1050 - k);
        CHECK_INT(t->ts_ns, (T0 + 3000 * (49 - (int64_t)k)) * MS);
    }
    CHECK(market_trade_at(&m, 20) == NULL);
    CHECK_INT(market_next_close_ms(&m), T0 + 150000);
    CHECK_INT(market_advance_clock(&m, D1, NULL, NULL), 0);
    CHECK_INT(market_next_close_ms(&m), INT64_MAX);
    CHECK_INT(market_kline_count(&m, KLINE_3S), 40);
    CHECK_INT(market_kline_at(&m, KLINE_3S, 39)->start_ms, T0 + 3000 * 49);
    CHECK_INT(market_kline_count(&m, KLINE_DAY), 1);
    CHECK_BAR(market_kline_at(&m, KLINE_DAY, 0),
              bar_of(D0, 100, 149, 100, 149, 50, 62250, 0, 50, 50));
    market_free(&m);
    CHECK(m.trades == NULL && m.series[KLINE_3S].ring == NULL);
    CHECK_INT(market_trade_count(&m), 0);
}

/* A cap that is no power of two: the ring stops at 20 and wraps many times over. */
static void test_market_wrap_at_cap(void) {
    market_data m;
    market_init(&m, 20, 5);
    counter c = {0};
    for (int i = 0; i < 75; i++) {
        market_trade t = trade_at_ms(T0 + 3000 * i + 1, 200 - i, 2, (uint64_t)i);
        CHECK_INT(market_record_trade(&m, &t, 1.0, 0, 0, count_bar, &c), 0);
    }
    /* closed 3 s bars 0..73 plus the 1 min bars T0, T0+60s, T0+120s */
    CHECK_INT(c.n, 74 + 3);
    CHECK_INT(m.series[KLINE_3S].cap, 20);
    CHECK_INT(market_kline_count(&m, KLINE_3S), 20);
    for (uint32_t k = 0; k < 20; k++) {
        int i = 54 + (int)k;
        const kline *bar = market_kline_at(&m, KLINE_3S, k);
        CHECK(bar != NULL);
        if (bar == NULL) continue;
        CHECK_INT(bar->start_ms, T0 + 3000 * i);
        CHECK_MONEY(bar->open, 200 - i);
        CHECK_INT(bar->volume, 2);
    }
    CHECK(market_kline_at(&m, KLINE_3S, 20) == NULL);
    CHECK_INT(m.trades_cap, 5);
    CHECK_INT(market_trade_count(&m), 5);
    for (uint32_t k = 0; k < 5; k++)
        CHECK_INT(market_trade_at(&m, k)->match_seq, 74 - k);
    CHECK(market_trade_at(&m, 5) == NULL);
    market_free(&m);
}

static void test_market_callback_and_clock(void) {
    market_data m;
    market_init(&m, 10, 10);
    counter c = {0};
    market_trade t = trade_at_ms(T0 + 1000, 100, 3, 1);
    CHECK_INT(market_record_trade(&m, &t, 60000, 7, 10, count_bar, &c), 0);
    CHECK_INT(c.n, 0);
    CHECK_INT(market_next_close_ms(&m), T0 + 3000);
    CHECK_INT(market_advance_clock(&m, T0 + 2999, count_bar, &c), 0);
    CHECK_INT(c.n, 0);
    CHECK_INT(market_advance_clock(&m, T0 + 3000, count_bar, &c), 0);
    CHECK_INT(c.n, 1);
    CHECK_INT(c.period[0], KLINE_3S);
    const kline first = bar_of(T0, 100, 100, 100, 100, 3, 60000, 7, 10, 1);
    CHECK_BAR(&c.bar[0], first);
    CHECK_INT(market_next_close_ms(&m), T0 + 60000);
    /* advancing again to the same time closes nothing more */
    CHECK_INT(market_advance_clock(&m, T0 + 3000, count_bar, &c), 0);
    CHECK_INT(c.n, 1);

    /* a trade an hour later closes the 1, 5, 15, 30 and 60 min bars, shortest first */
    t = trade_at_ms(T0 + 3600500, 101, 1, 2);
    CHECK_INT(market_record_trade(&m, &t, 20200, 10, 11, count_bar, &c), 0);
    CHECK_INT(c.n, 6);
    for (int k = 1; k < 6; k++) {
        CHECK_INT(c.period[k], k);
        CHECK_BAR(&c.bar[k], first);
    }
    CHECK_INT(market_next_close_ms(&m), T0 + 3603000);

    /* a trade stamped before the open bar (the clock stepped back) joins that bar */
    t = trade_at_ms(T0 + 3599000, 99, 2, 3);
    CHECK_INT(market_record_trade(&m, &t, 39600, 11, 13, count_bar, &c), 0);
    CHECK_INT(c.n, 6);
    CHECK_BAR(market_kline_current(&m, KLINE_3S),
              bar_of(T0 + 3600000, 101, 101, 99, 99, 3, 59800, 10, 13, 2));
    CHECK_BAR(market_kline_current(&m, KLINE_DAY),
              bar_of(D0, 100, 101, 99, 99, 6, 119800, 7, 13, 3));
    CHECK_INT(market_trade_count(&m), 3);
    CHECK_INT(market_trade_at(&m, 0)->match_seq, 3);

    /* the end of the day closes everything left, shortest first */
    CHECK_INT(market_advance_clock(&m, D1, count_bar, &c), 0);
    CHECK_INT(c.n, 13);
    for (int k = 6; k < 13; k++)
        CHECK_INT(c.period[k], k - 6);
    CHECK_BAR(&c.bar[12], bar_of(D0, 100, 101, 99, 99, 6, 119800, 7, 13, 3));
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++)
        CHECK(market_kline_current(&m, (kline_period)p) == NULL);
    CHECK_INT(market_next_close_ms(&m), INT64_MAX);
    CHECK_INT(market_kline_count(&m, KLINE_3S), 2);
    CHECK_INT(market_kline_count(&m, KLINE_60MIN), 2);
    CHECK_INT(market_kline_count(&m, KLINE_DAY), 1);
    market_free(&m);
}

static void test_market_zero_caps(void) {
    market_data m;
    market_init(&m, 0, 0);
    counter c = {0};
    for (int i = 0; i < 5; i++) {
        market_trade t = trade_at_ms(T0 + 3000 * i, 100, 1, (uint64_t)i);
        CHECK_INT(market_record_trade(&m, &t, 1.0, 0, 0, count_bar, &c), 0);
    }
    CHECK_INT(c.n, 4); /* reported, though none is kept */
    CHECK_INT(market_kline_count(&m, KLINE_3S), 0);
    CHECK(market_kline_at(&m, KLINE_3S, 0) == NULL);
    CHECK(market_kline_current(&m, KLINE_3S) != NULL);
    CHECK_INT(market_trade_count(&m), 0);
    CHECK(market_trade_at(&m, 0) == NULL);
    CHECK(m.series[KLINE_3S].ring == NULL && m.trades == NULL);
    market_free(&m);
}

static void test_market_restore(void) {
    market_data m;
    market_init(&m, 2, 3);
    for (int i = 0; i < 3; i++) {
        kline k = bar_of(T0 + 3000 * i, 100 + i, 100 + i, 100 + i, 100 + i, 1, 5, 0, 0, 1);
        CHECK_INT(market_restore_kline(&m, KLINE_3S, &k), 0);
    }
    CHECK_INT(market_kline_count(&m, KLINE_3S), 2); /* the oldest gave way */
    CHECK_INT(market_kline_at(&m, KLINE_3S, 0)->start_ms, T0 + 3000);
    CHECK_INT(market_kline_at(&m, KLINE_3S, 1)->start_ms, T0 + 6000);
    kline cur = bar_of(T0 + 9000, 50, 55, 45, 52, 4, 100, 1, 2, 3);
    market_restore_current(&m, KLINE_3S, &cur);
    CHECK_BAR(market_kline_current(&m, KLINE_3S), cur);
    CHECK_INT(market_next_close_ms(&m), T0 + 12000);
    for (int i = 0; i < 4; i++) {
        market_trade t = trade_at_ms(T0 + i, 10 + i, 1, (uint64_t)i);
        CHECK_INT(market_restore_trade(&m, &t), 0);
    }
    CHECK_INT(market_trade_count(&m), 3);
    CHECK_INT(market_trade_at(&m, 0)->match_seq, 3);
    CHECK_INT(market_trade_at(&m, 2)->match_seq, 1);

    /* a later trade closes the restored bar in progress as it was */
    counter c = {0};
    market_trade t = trade_at_ms(T0 + 12000, 60, 1, 9);
    CHECK_INT(market_record_trade(&m, &t, 7, 2, 3, count_bar, &c), 0);
    CHECK_INT(c.n, 1);
    CHECK_BAR(&c.bar[0], cur);
    CHECK_INT(market_kline_count(&m, KLINE_3S), 2);
    CHECK_BAR(market_kline_at(&m, KLINE_3S, 1), cur);
    CHECK_INT(market_trade_at(&m, 0)->match_seq, 9);
    market_free(&m);
}

int main(void) {
    RUN_TEST(test_align_seed_examples);
    RUN_TEST(test_align_boundaries);
    RUN_TEST(test_align_negative_times_floor);
    RUN_TEST(test_period_names_seconds_hqchart);
    RUN_TEST(test_period_parse_aliases);
    RUN_TEST(test_period_from_duration_ns);
    RUN_TEST(test_script_bars_all_periods);
    RUN_TEST(test_clock_closes_bars);
    RUN_TEST(test_rejected_command_does_not_close_bars);
    RUN_TEST(test_gap_makes_no_empty_bars);
    RUN_TEST(test_day_rollover_and_settlement);
    RUN_TEST(test_quote_before_the_first_trade);
    RUN_TEST(test_history_and_recent_trades_caps);
    RUN_TEST(test_snapshot_round_trip);
    RUN_TEST(test_market_ring_growth);
    RUN_TEST(test_market_wrap_at_cap);
    RUN_TEST(test_market_callback_and_clock);
    RUN_TEST(test_market_zero_caps);
    RUN_TEST(test_market_restore);
    return CHECK_REPORT();
}
