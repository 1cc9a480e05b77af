#include "engine/instrument.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A price is on the tick when it is within a millionth of a tick of a multiple of it: doubles
 * such as 3800.2 are never exact. */
#define TICK_EPSILON 1e-6

int instrument_spec_validate(const instrument_spec *s, char *msg, size_t msglen) {
    const char *dot = strchr(s->instrument_id, '.');
    if (s->instrument_id[0] == '\0' || dot == NULL || dot == s->instrument_id || dot[1] == '\0') {
        snprintf(msg, msglen, "instrument_id must look like EXCHANGE.CODE, got \"%s\"",
                 s->instrument_id);
        return ERR_INVALID_ORDER;
    }
    if (s->contract_multiplier <= 0) {
        snprintf(msg, msglen, "contract_multiplier must be positive, got %d",
                 s->contract_multiplier);
        return ERR_INVALID_ORDER;
    }
    struct {
        const char *name;
        double value;
        double min, max;
    } checks[] = {
        {"price_tick", s->price_tick, 1e-9, 1e9},
        {"margin_rate", s->margin_rate, 0.0, 1.0},
        {"commission_rate", s->commission_rate, 0.0, 1.0},
        {"commission_per_lot", s->commission_per_lot, 0.0, 1e9},
        {"limit_up_rate", s->limit_up_rate, 1e-9, 10.0},
        {"limit_down_rate", s->limit_down_rate, 1e-9, 1.0},
        {"pre_settlement", s->pre_settlement, 1e-9, 1e12},
        {"pre_close", s->pre_close, 0.0, 1e12},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        double v = checks[i].value;
        if (!isfinite(v) || v < checks[i].min || v > checks[i].max) {
            snprintf(msg, msglen, "%s out of range [%g, %g]: %g", checks[i].name, checks[i].min,
                     checks[i].max, v);
            return ERR_INVALID_ORDER;
        }
    }
    double band_ticks = s->pre_settlement * (s->limit_up_rate + s->limit_down_rate) / s->price_tick;
    if (band_ticks > (double)(1 << 24)) {
        snprintf(msg, msglen, "limit band of %s spans %.0f ticks; at most %d are supported",
                 s->instrument_id, band_ticks, 1 << 24);
        return ERR_INVALID_ORDER;
    }
    return QAEX_OK;
}

double instrument_tick_to_price(const instrument *ins, int64_t tick) {
    double price = (double)tick * ins->spec.price_tick;
    if (ins->tick_scale == 0) return price;
    /* an integer over a power of ten is correctly rounded: the double that parses from the
     * decimal text (the product misses it by one ulp for about a third of the ticks of 0.2) */
    return nearbyint(price * ins->tick_scale) / ins->tick_scale;
}

/* 10^d for the fewest decimals d <= 9 that write the tick, or 0 when none do. */
static double decimal_scale(double tick) {
    double scale = 1;
    for (int d = 0; d <= 9; d++, scale *= 10) {
        double x = tick * scale;
        if (fabs(x - nearbyint(x)) <= 1e-9 * x) return scale;
    }
    return 0;
}

bool instrument_price_to_tick(const instrument *ins, double price, int64_t *tick) {
    double t = price / ins->spec.price_tick;
    double r = nearbyint(t);
    if (!(fabs(t - r) <= TICK_EPSILON) || !isfinite(r) || fabs(r) > 9e15) return false;
    *tick = (int64_t)r;
    return true;
}

void instrument_band_ticks(const instrument_spec *s, int64_t *lower_tick, int64_t *upper_tick) {
    double up = s->pre_settlement * (1.0 + s->limit_up_rate) / s->price_tick;
    double down = s->pre_settlement * (1.0 - s->limit_down_rate) / s->price_tick;
    /* the band is the ticks inside the limits; the tiny slack keeps exact multiples inside */
    *upper_tick = (int64_t)floor(up + TICK_EPSILON);
    *lower_tick = (int64_t)ceil(down - TICK_EPSILON);
    if (*lower_tick < 1) *lower_tick = 1;
    if (*upper_tick < *lower_tick) *upper_tick = *lower_tick;
}

static void compute_band(instrument *ins) {
    instrument_band_ticks(&ins->spec, &ins->lower_tick, &ins->upper_tick);
    ins->tick_scale = decimal_scale(ins->spec.price_tick);
}

int instrument_init(instrument *ins, const instrument_spec *spec) {
    memset(ins, 0, sizeof *ins);
    ins->spec = *spec;
    const char *dot = strchr(spec->instrument_id, '.');
    if (ins->spec.exchange[0] == '\0' && dot != NULL) {
        size_t n = (size_t)(dot - spec->instrument_id);
        if (n >= sizeof ins->spec.exchange) n = sizeof ins->spec.exchange - 1;
        memcpy(ins->spec.exchange, spec->instrument_id, n);
        ins->spec.exchange[n] = '\0';
    }
    snprintf(ins->code, sizeof ins->code, "%s", dot ? dot + 1 : spec->instrument_id);
    if (ins->spec.pre_close <= 0) ins->spec.pre_close = ins->spec.pre_settlement;
    ins->status = INSTRUMENT_TRADING;
    compute_band(ins);
    return book_init(&ins->book, ins->lower_tick, ins->upper_tick);
}

void instrument_free(instrument *ins) {
    market_free(&ins->market);
    book_free(&ins->book);
}

int instrument_rebase_band(instrument *ins) {
    compute_band(ins);
    return book_rebase(&ins->book, ins->lower_tick, ins->upper_tick);
}

double instrument_upper_limit(const instrument *ins) {
    return instrument_tick_to_price(ins, ins->upper_tick);
}

double instrument_lower_limit(const instrument *ins) {
    return instrument_tick_to_price(ins, ins->lower_tick);
}

double instrument_mark_price(const instrument *ins) {
    return ins->stats.has_trade ? ins->stats.last_price : ins->spec.pre_settlement;
}

double instrument_last_price(const instrument *ins) {
    return ins->stats.has_trade ? ins->stats.last_price : ins->spec.pre_close;
}

double instrument_commission(const instrument *ins, double price, int64_t volume) {
    return price * (double)volume * ins->spec.contract_multiplier * ins->spec.commission_rate +
           (double)volume * ins->spec.commission_per_lot;
}

double instrument_margin(const instrument *ins, double price, int64_t volume) {
    return price * (double)volume * ins->spec.contract_multiplier * ins->spec.margin_rate;
}

void instrument_record_trade(instrument *ins, double price, int64_t volume,
                             int64_t open_interest_delta, int64_t ts_ns) {
    market_stats *st = &ins->stats;
    if (!st->has_trade) {
        st->open = st->high = st->low = price;
        st->has_trade = true;
    }
    if (price > st->high) st->high = price;
    if (price < st->low) st->low = price;
    st->last_price = price;
    st->volume += volume;
    st->amount += price * (double)volume * ins->spec.contract_multiplier;
    st->open_interest += open_interest_delta;
    st->last_trade_ns = ts_ns;
}
