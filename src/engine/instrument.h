/* Instruments: the contract terms an operator registers (instrument_spec), the trading status,
 * the limit band derived from the previous settlement, the day's market statistics and the book.
 * Prices cross this boundary as doubles and are held in the book as integer ticks. */
#ifndef QAEX_INSTRUMENT_H
#define QAEX_INSTRUMENT_H

#include "engine/book.h"
#include "engine/market.h"
#include "engine/types.h"

typedef struct instrument_spec {
    char instrument_id[QAEX_INSTRUMENT_ID_LEN]; /* "EXCH.CODE" */
    char instrument_name[QAEX_NAME_LEN];
    instrument_type instrument_type;
    char exchange[16]; /* the part before the dot when left empty */
    int32_t contract_multiplier;
    double price_tick;
    double margin_rate;
    double commission_rate; /* fraction of notional */
    double commission_per_lot;
    double limit_up_rate;
    double limit_down_rate;
    char list_date[QAEX_DATE_LEN];
    char expire_date[QAEX_DATE_LEN];
    double pre_settlement;
    double pre_close;
} instrument_spec;

/* The day's statistics, reset by settlement. */
typedef struct market_stats {
    double open, high, low, last_price;
    int64_t volume;
    double amount; /* price * volume * multiplier, summed */
    int64_t open_interest;
    int64_t pre_open_interest;
    int64_t last_trade_ns;
    double settlement_price; /* set by the operator before settlement */
    bool has_trade;
    bool settlement_price_set;
} market_stats;

typedef struct instrument {
    instrument_spec spec;
    instrument_status status;
    bool in_auction; /* call auction: orders rest uncrossed until the auction closes */
    char code[QAEX_INSTRUMENT_ID_LEN]; /* "IF2501": the alias without the exchange */
    int64_t upper_tick, lower_tick;    /* the limit band */
    double tick_scale; /* 10^d for a tick of d decimals (0.2: 10), 0 beyond 9 (see tick_to_price) */
    uint64_t exchange_seq; /* last exchange_order_id issued */
    market_stats stats;
    market_data market; /* K-lines and recent trades */
    book book;
} instrument;

/* Checks an operator's terms; on failure writes why (naming the value) and returns 1008/5001. */
int instrument_spec_validate(const instrument_spec *spec, char *msg, size_t msglen);

/* Fills exchange from the id prefix and computes the band; allocates the book. */
int instrument_init(instrument *ins, const instrument_spec *spec);
void instrument_free(instrument *ins);

/* The ticks inside the limits that pre_settlement and the limit rates of spec set. */
void instrument_band_ticks(const instrument_spec *spec, int64_t *lower_tick, int64_t *upper_tick);

/* Recomputes the band from pre_settlement and the limit rates, re-spanning the book. */
int instrument_rebase_band(instrument *ins);

double instrument_upper_limit(const instrument *ins);
double instrument_lower_limit(const instrument *ins);

/* Converts a price to ticks; returns false when it is not a multiple of the tick (within a
 * millionth of one). */
bool instrument_price_to_tick(const instrument *ins, double price, int64_t *tick);
/* The price of a tick, as the decimal a user would write for it: 19001 ticks of 0.2 are the
 * double nearest 3800.2, not 19001 * 0.2 (one unit in the last place above it). */
double instrument_tick_to_price(const instrument *ins, int64_t tick);

/* The price positions are marked at: the last trade, else the previous settlement. */
double instrument_mark_price(const instrument *ins);
/* The last price quotes show: the day's last trade, else the previous close, so that before the
 * day's first trade the change against the close is nothing. */
double instrument_last_price(const instrument *ins);

/* Commission of a fill: notional * rate + lots * per-lot fee. */
double instrument_commission(const instrument *ins, double price, int64_t volume);
/* Margin of lots at a price. */
double instrument_margin(const instrument *ins, double price, int64_t volume);

/* Records a trade in the day's statistics. open_interest_delta is +2/0/-2 per lot pair / 2. */
void instrument_record_trade(instrument *ins, double price, int64_t volume,
                             int64_t open_interest_delta, int64_t ts_ns);

#endif
