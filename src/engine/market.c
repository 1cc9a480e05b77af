/* K-line aggregation and the recent-trades ring (see market.h). */
#include "engine/market.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const int64_t period_seconds[KLINE_PERIOD_COUNT] = {3, 60, 300, 900, 1800, 3600, 86400};
static const char *const period_names[KLINE_PERIOD_COUNT] = {"3s",    "1min",  "5min", "15min",
                                                             "30min", "60min", "day"};
static const int period_hqchart[KLINE_PERIOD_COUNT] = {3, 4, 5, 6, 7, 8, 0};

int64_t kline_period_seconds(kline_period p) {
    return period_seconds[p];
}

const char *kline_period_name(kline_period p) {
    return (unsigned)p < KLINE_PERIOD_COUNT ? period_names[p] : "?";
}

int kline_period_hqchart(kline_period p) {
    return period_hqchart[p];
}

int kline_period_parse(const char *text, kline_period *out) {
    static const struct {
        const char *name;
        kline_period p;
    } aliases[] = {
        {"3s", KLINE_3S},       {"3", KLINE_3S},      {"1min", KLINE_1MIN},
        {"1m", KLINE_1MIN},     {"60s", KLINE_1MIN},  {"60", KLINE_1MIN},
        {"5min", KLINE_5MIN},   {"5m", KLINE_5MIN},   {"300", KLINE_5MIN},
        {"15min", KLINE_15MIN}, {"15m", KLINE_15MIN}, {"900", KLINE_15MIN},
        {"30min", KLINE_30MIN}, {"30m", KLINE_30MIN}, {"1800", KLINE_30MIN},
        {"60min", KLINE_60MIN}, {"1h", KLINE_60MIN},  {"60m", KLINE_60MIN},
        {"3600", KLINE_60MIN},  {"day", KLINE_DAY},   {"1d", KLINE_DAY},
        {"d", KLINE_DAY},       {"86400", KLINE_DAY},
    };
    if (text == NULL) return -1;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(text, aliases[i].name) == 0) {
            *out = aliases[i].p;
            return 0;
        }
    return -1;
}

int kline_period_from_duration_ns(int64_t duration_ns, kline_period *out) {
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++)
        if (period_seconds[p] * 1000000000LL == duration_ns) {
            *out = (kline_period)p;
            return 0;
        }
    return -1;
}

int64_t kline_align_ms(kline_period p, int64_t ts_ms) {
    int64_t len = period_seconds[p] * 1000;
    int64_t q = ts_ms / len;
    if (ts_ms < 0 && q * len != ts_ms) q--; /* floor, so times before 1970 align too */
    return q * len;
}

void market_init(market_data *m, uint32_t history_cap, uint32_t trade_cap) {
    memset(m, 0, sizeof *m);
    m->history_cap = history_cap;
    m->trade_cap = trade_cap;
}

void market_free(market_data *m) {
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++)
        free(m->series[p].ring);
    free(m->trades);
    memset(m, 0, sizeof *m);
}

/* Makes room for one more element in a ring of `size`-byte elements that may still grow to
 * max: doubles the array (unrolled so the oldest is first) while below max. */
static int ring_reserve(void **ring, uint32_t *cap, uint32_t *start, uint32_t count, uint32_t max,
                        size_t size) {
    if (count < *cap || *cap >= max) return 0;
    uint32_t want = *cap ? *cap * 2 : 16;
    if (want > max) want = max;
    unsigned char *grown = malloc((size_t)want * size);
    if (grown == NULL) return -1;
    unsigned char *old = *ring;
    for (uint32_t i = 0; i < count; i++)
        memcpy(grown + (size_t)i * size, old + (size_t)((*start + i) % *cap) * size, size);
    free(old);
    *ring = grown;
    *cap = want;
    *start = 0;
    return 0;
}

static int series_push(kline_series *s, uint32_t max, const kline *bar) {
    if (max == 0) return 0;
    if (ring_reserve((void **)&s->ring, &s->cap, &s->start, s->count, max, sizeof(kline)) != 0)
        return -1;
    if (s->count == s->cap) { /* full at the cap: the oldest bar gives way */
        s->ring[s->start] = *bar;
        s->start = (s->start + 1) % s->cap;
    } else {
        s->ring[(s->start + s->count) % s->cap] = *bar;
        s->count++;
    }
    return 0;
}

static int close_current(market_data *m, kline_period p, kline_closed_fn closed, void *ctx) {
    kline_series *s = &m->series[p];
    s->has_current = false;
    int rc = series_push(s, m->history_cap, &s->current);
    if (closed) closed(ctx, p, &s->current);
    return rc;
}

int market_record_trade(market_data *m, const market_trade *t, double amount, int64_t oi_before,
                        int64_t oi_after, kline_closed_fn closed, void *ctx) {
    int rc = 0;
    int64_t ts_ms = t->ts_ns / 1000000;
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        kline_series *s = &m->series[p];
        int64_t start = kline_align_ms((kline_period)p, ts_ms);
        /* a trade stamped before the open bar (a clock step back) still belongs to that bar */
        if (s->has_current && start > s->current.start_ms &&
            close_current(m, (kline_period)p, closed, ctx) != 0)
            rc = -1;
        kline *k = &s->current;
        if (!s->has_current) {
            *k = (kline){.start_ms = start,
                         .open = t->price,
                         .high = t->price,
                         .low = t->price,
                         .open_oi = oi_before};
            s->has_current = true;
        }
        if (t->price > k->high) k->high = t->price;
        if (t->price < k->low) k->low = t->price;
        k->close = t->price;
        k->volume += t->volume;
        k->amount += amount;
        k->close_oi = oi_after;
        k->trades++;
    }
    if (market_restore_trade(m, t) != 0) return -1;
    return rc;
}

int market_advance_clock(market_data *m, int64_t now_ms, kline_closed_fn closed, void *ctx) {
    int rc = 0;
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        kline_series *s = &m->series[p];
        if (s->has_current && s->current.start_ms + period_seconds[p] * 1000 <= now_ms &&
            close_current(m, (kline_period)p, closed, ctx) != 0)
            rc = -1;
    }
    return rc;
}

int64_t market_next_close_ms(const market_data *m) {
    int64_t next = INT64_MAX;
    for (int p = 0; p < KLINE_PERIOD_COUNT; p++) {
        const kline_series *s = &m->series[p];
        if (s->has_current) {
            int64_t end = s->current.start_ms + period_seconds[p] * 1000;
            if (end < next) next = end;
        }
    }
    return next;
}

uint32_t market_kline_count(const market_data *m, kline_period p) {
    return m->series[p].count;
}

const kline *market_kline_at(const market_data *m, kline_period p, uint32_t i) {
    const kline_series *s = &m->series[p];
    return i < s->count ? &s->ring[(s->start + i) % s->cap] : NULL;
}

const kline *market_kline_current(const market_data *m, kline_period p) {
    return m->series[p].has_current ? &m->series[p].current : NULL;
}

uint32_t market_trade_count(const market_data *m) {
    return m->trades_count;
}

const market_trade *market_trade_at(const market_data *m, uint32_t i) {
    if (i >= m->trades_count) return NULL;
    return &m->trades[(m->trades_start + m->trades_count - 1 - i) % m->trades_cap];
}

int market_restore_kline(market_data *m, kline_period p, const kline *bar) {
    return series_push(&m->series[p], m->history_cap, bar);
}

void market_restore_current(market_data *m, kline_period p, const kline *bar) {
    m->series[p].current = *bar;
    m->series[p].has_current = true;
}

int market_restore_trade(market_data *m, const market_trade *t) {
    if (m->trade_cap == 0) return 0;
    if (ring_reserve((void **)&m->trades, &m->trades_cap, &m->trades_start, m->trades_count,
                     m->trade_cap, sizeof(market_trade)) != 0)
        return -1;
    if (m->trades_count == m->trades_cap) {
        m->trades[m->trades_start] = *t;
        m->trades_start = (m->trades_start + 1) % m->trades_cap;
    } else {
        m->trades[(m->trades_start + m->trades_count) % m->trades_cap] = *t;
        m->trades_count++;
    }
    return 0;
}
