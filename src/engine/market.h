/* Market data derived from trades, kept inside the engine: K-lines of seven periods and the
 * recent trades of each instrument.
 *
 * It lives in the engine's deterministic world: a bar closes when a trade falls into a later
 * period or when the command clock passes its end, never on a wall clock, so replaying the
 * journal rebuilds the same bars. The engine owns one market_data per instrument; this module
 * owns the arrays inside it. */
#ifndef QAEX_MARKET_H
#define QAEX_MARKET_H

#include "engine/types.h"

#include <stddef.h>
#include <stdint.h>

/* The periods of the seed, shortest first. */
typedef enum kline_period {
    KLINE_3S = 0,
    KLINE_1MIN,
    KLINE_5MIN,
    KLINE_15MIN,
    KLINE_30MIN,
    KLINE_60MIN,
    KLINE_DAY,
    KLINE_PERIOD_COUNT
} kline_period;

int64_t kline_period_seconds(kline_period p);
const char *kline_period_name(kline_period p); /* "3s", "1min", ..., "day" */
/* The seed's HQChart ids: day 0, 3s 3, 1min 4, 5min 5, 15min 6, 30min 7, 60min 8. */
int kline_period_hqchart(kline_period p);
/* Accepts "3s", "1min"/"1m"/"60s"/"60", "5min"/"5m", "15min"/"15m", "30min"/"30m",
 * "60min"/"1h"/"60m", "day"/"1d"/"d"/"86400" (case-insensitive); -1 when unknown. */
int kline_period_parse(const char *text, kline_period *out);
/* DIFF charts name a period by its length in nanoseconds; -1 when no period has that length. */
int kline_period_from_duration_ns(int64_t duration_ns, kline_period *out);

/* The start of the bar holding ts_ms: a multiple of the period since the epoch (days start at
 * UTC midnight, as the seed aligns them). */
int64_t kline_align_ms(kline_period p, int64_t ts_ms);

typedef struct kline {
    int64_t start_ms; /* the aligned start of the bar */
    double open, high, low, close;
    int64_t volume;
    double amount;   /* price * volume * contract multiplier, summed */
    int64_t open_oi; /* open interest before the bar's first trade */
    int64_t close_oi;
    int64_t trades; /* matches in the bar */
} kline;

/* A bounded history of finished bars (a ring, oldest dropped first) and the bar in progress. */
typedef struct kline_series {
    kline *ring;
    uint32_t cap, start, count; /* ring grows on demand up to history_cap */
    kline current;
    bool has_current;
} kline_series;

/* One match as the market saw it. Account slots (not ids) keep it small; accounts are never
 * removed, so a slot names the same account for the life of the engine. */
typedef struct market_trade {
    int64_t ts_ns;
    double price;
    int64_t volume;
    direction taker_side;
    uint64_t match_seq;
    uint32_t buyer, seller;
} market_trade;

typedef struct market_data {
    kline_series series[KLINE_PERIOD_COUNT];
    market_trade *trades; /* ring of the last trade_cap matches */
    uint32_t trades_cap, trades_start, trades_count;
    uint32_t history_cap, trade_cap;
} market_data;

/* Called for every bar that closes, in period order. */
typedef void (*kline_closed_fn)(void *ctx, kline_period p, const kline *bar);

/* history_cap: finished bars kept per period; trade_cap: recent matches kept. Nothing is
 * allocated until data arrives. */
void market_init(market_data *m, uint32_t history_cap, uint32_t trade_cap);
void market_free(market_data *m);

/* Folds one match into every period. Bars of earlier periods close first (reported through
 * closed). Returns -1 when memory for the history ran out: the bar is then dropped from the
 * history, the aggregates stay right. */
int market_record_trade(market_data *m, const market_trade *t, double amount, int64_t oi_before,
                        int64_t oi_after, kline_closed_fn closed, void *ctx);

/* Closes every bar whose period ended at or before now_ms. */
int market_advance_clock(market_data *m, int64_t now_ms, kline_closed_fn closed, void *ctx);

/* The earliest end of a bar in progress, INT64_MAX when none is open. */
int64_t market_next_close_ms(const market_data *m);

/* Finished bars of a period: i = 0 is the oldest kept. */
uint32_t market_kline_count(const market_data *m, kline_period p);
const kline *market_kline_at(const market_data *m, kline_period p, uint32_t i);
/* The bar in progress, NULL when none. */
const kline *market_kline_current(const market_data *m, kline_period p);

/* Recent matches: i = 0 is the newest. */
uint32_t market_trade_count(const market_data *m);
const market_trade *market_trade_at(const market_data *m, uint32_t i);

/* Rebuilding from a snapshot: appends a finished bar / a trade (oldest first) and sets the bar
 * in progress. Return -1 on allocation failure. */
int market_restore_kline(market_data *m, kline_period p, const kline *bar);
void market_restore_current(market_data *m, kline_period p, const kline *bar);
int market_restore_trade(market_data *m, const market_trade *t);

#endif
