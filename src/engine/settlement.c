/* Daily settlement: mark every position to the operator's settlement price, realise the day's
 * position profit into the balance, re-margin, roll today's lots into yesterday's, liquidate
 * accounts whose risk ratio reaches the threshold, and open the next trading day. */
#include "engine/engine_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int settlement_set_price(engine *e, const command *cmd, engine_result *r) {
    const char *id = cmd->u.settlement_price.instrument_id;
    uint32_t slot = engine_find_instrument_slot(e, id);
    if (slot == SLOT_NONE)
        return engine_fail(r, ERR_INSTRUMENT_NOT_FOUND, "instrument not found: %s", id);
    double price = cmd->u.settlement_price.price;
    if (!isfinite(price) || price <= 0 || price > 1e12)
        return engine_fail(r, ERR_INVALID_ORDER, "settlement price of %s must be positive, got %g",
                           id, price);
    instrument *ins = &e->instruments[slot];
    /* tomorrow's limits come from this price: it must make a band the book can hold, as a new
     * instrument's previous settlement must */
    instrument_spec next = ins->spec;
    next.pre_settlement = price;
    char why[QAEX_MSG_LEN];
    if (instrument_spec_validate(&next, why, sizeof why) != QAEX_OK)
        return engine_fail(r, ERR_INVALID_ORDER, "settlement price %g of %s refused: %s", price, id,
                           why);
    ins->stats.settlement_price = price;
    ins->stats.settlement_price_set = true;
    engine_event ev = {.type = EV_INSTRUMENT, .instrument = ins};
    engine_emit(e, &ev);
    return QAEX_OK;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

/* The next weekday after a YYYY-MM-DD date, written over it. */
static void advance_trading_day(char day[QAEX_DATE_LEN]) {
    int y = 1970;
    unsigned m = 1, d = 1;
    if (sscanf(day, "%d-%u-%u", &y, &m, &d) != 3 || m < 1 || m > 12 || d < 1 || d > 31) return;
    int64_t z = days_from_civil(y, m, d);
    do {
        z++;
    } while ((z + 4) % 7 == 6 || (z + 4) % 7 == 0); /* 1970-01-01 was a Thursday */
    civil_from_days(z, &y, &m, &d);
    if (y < 0 || y > 9999) return;
    char next[32];
    snprintf(next, sizeof next, "%04d-%02u-%02u", y, m % 100, d % 100);
    memcpy(day, next, QAEX_DATE_LEN - 1);
    day[QAEX_DATE_LEN - 1] = '\0';
}

static double settlement_price_of(const instrument *ins) {
    return ins->stats.settlement_price_set ? ins->stats.settlement_price
                                           : instrument_mark_price(ins);
}

static int check_prices(engine *e, engine_result *r) {
    bool *held = calloc(e->n_instruments ? e->n_instruments : 1, sizeof(bool));
    if (held == NULL) return engine_fail(r, ERR_INTERNAL, "out of memory checking prices");
    for (uint32_t j = 0; j < e->n_positions; j++) {
        const position *p = &e->positions[j];
        if (position_volume_long(p) + position_volume_short(p) > 0) held[p->instrument] = true;
    }
    char missing[QAEX_MSG_LEN] = "";
    size_t used = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < e->n_instruments; i++) {
        const instrument *ins = &e->instruments[i];
        if (ins->stats.settlement_price_set || !held[i]) continue;
        if (used + strlen(ins->spec.instrument_id) + 3 < sizeof missing)
            used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%s", n ? ", " : "",
                                     ins->spec.instrument_id);
        n++;
    }
    free(held);
    if (n == 0) return QAEX_OK;
    return engine_fail(r, ERR_SETTLEMENT_PRICE_MISSING,
                       "settlement price missing for %u instrument(s) with open positions: %s", n,
                       missing);
}

/* The day ends: live orders go, except good-till-cancelled opening orders, whose frozen money
 * stays valid across days. Closing orders go too, since their lots change from today's to
 * yesterday's. */
static void cancel_day_orders(engine *e, uint32_t account_slot, bool everything, int64_t ts_ns) {
    uint32_t s = e->accounts[account_slot].live_head;
    while (s != SLOT_NONE) {
        uint32_t next = e->orders[s].account_next;
        const order *o = &e->orders[s];
        if (everything || o->time_condition != TC_GTC || o->offset != OFFSET_OPEN)
            matching_cancel_slot(e, s, ts_ns,
                                 everything ? "cancelled by forced liquidation"
                                            : "cancelled at the end of the day");
        s = next;
    }
}

/* Good-till-cancelled orders outlive the day, but not the day's limits: one priced outside the
 * band that the new settlement price sets is cancelled (what it froze goes back), or an order
 * inside the band would trade at its price, and the book would have to span it. */
static void cancel_outside_band(engine *e, uint32_t instrument_slot, int64_t ts_ns) {
    int64_t lower, upper;
    instrument_band_ticks(&e->instruments[instrument_slot].spec, &lower, &upper);
    for (uint32_t a = 0; a < e->n_accounts; a++) {
        uint32_t s = e->accounts[a].live_head;
        while (s != SLOT_NONE) {
            uint32_t next = e->orders[s].account_next;
            const order *o = &e->orders[s];
            if (o->instrument == instrument_slot &&
                (o->price_tick < lower || o->price_tick > upper))
                matching_cancel_slot(e, s, ts_ns, "cancelled: outside the new price limits");
            s = next;
        }
    }
}

/* Drops the day's finished orders and trades from memory: the journal and history keep them. */
static void purge_day(engine *e, account *a) {
    while (a->finished_head != SLOT_NONE) {
        uint32_t s = a->finished_head;
        a->finished_head = e->orders[s].account_next;
        a->finished_count--;
        engine_forget_order(e, s);
    }
    a->finished_tail = SLOT_NONE;
    while (a->trades_head != SLOT_NONE) {
        uint32_t s = a->trades_head;
        a->trades_head = e->trades[s].account_next;
        engine_forget_trade(e, s);
    }
    a->trades_tail = SLOT_NONE;
    a->trades_count = 0;
}

static bool settle_account(engine *e, uint32_t slot, const command *cmd, account_settlement *as) {
    account *a = &e->accounts[slot];
    memset(as, 0, sizeof *as);
    as->account = a;
    memcpy(as->date, e->trading_day, sizeof as->date);
    as->pre_balance = a->pre_balance;
    as->close_profit = a->close_profit;
    as->commission = a->commission;

    double realised = 0, margin = 0;
    for (uint32_t i = 0; i < a->n_positions; i++) {
        position *p = &e->positions[a->positions[i]];
        const instrument *ins = &e->instruments[p->instrument];
        realised += position_settle(p, ins, settlement_price_of(ins));
        margin += p->margin_long + p->margin_short;
        engine_touch_position(e, a->positions[i]);
    }
    as->position_profit = realised;
    double balance = a->pre_balance + a->deposit - a->withdraw + a->close_profit - a->commission -
                     a->premium + realised;
    a->pre_balance = balance;
    a->deposit = a->withdraw = a->close_profit = a->commission = a->premium = 0;
    as->balance = balance;
    as->risk_ratio = balance > 0 ? margin / balance : (margin > 0 ? 1e9 : 0.0);
    engine_touch_account(e, slot);

    if (margin > 0 && as->risk_ratio >= e->cfg.force_close_threshold) {
        /* liquidated at the settlement price, which the positions were just re-based to:
         * no further profit or loss, no fee */
        cancel_day_orders(e, slot, true, cmd->ts_ns);
        for (uint32_t i = 0; i < a->n_positions; i++) {
            const position *p = &e->positions[a->positions[i]];
            matching_liquidate(e, a->positions[i],
                               settlement_price_of(&e->instruments[p->instrument]), cmd->ts_ns);
        }
        a->pre_balance += a->close_profit;
        a->close_profit = 0;
        as->force_close = true;
    }
    return as->force_close;
}

int settlement_execute(engine *e, const command *cmd, engine_result *r) {
    int rc = check_prices(e, r);
    if (rc != QAEX_OK) return rc;

    settlement_result sr;
    memset(&sr, 0, sizeof sr);
    memcpy(sr.settlement_date, e->trading_day, sizeof sr.settlement_date);
    sr.ts_ns = cmd->ts_ns;
    sr.total_accounts = e->n_accounts;
    uint32_t cap_closed = 0;
    sr.rows = calloc(e->n_accounts ? e->n_accounts : 1, sizeof *sr.rows);
    if (sr.rows == NULL) return engine_fail(r, ERR_INTERNAL, "out of memory settling the day");

    for (uint32_t i = 0; i < e->n_accounts; i++)
        cancel_day_orders(e, i, false, cmd->ts_ns);
    for (uint32_t i = 0; i < e->n_accounts; i++) {
        account_settlement as;
        /* the day's orders and trades leave memory first, so a liquidation made now stays
         * visible as the first record of the new day */
        purge_day(e, &e->accounts[i]);
        bool closed = settle_account(e, i, cmd, &as);
        sr.settled_accounts++;
        sr.total_commission += as.commission;
        sr.total_profit += as.close_profit + as.position_profit;
        if (closed) {
            if (sr.force_closed_count == cap_closed) {
                uint32_t n = cap_closed ? cap_closed * 2 : 8;
                void *p = realloc(sr.force_closed_accounts, (size_t)n * QAEX_ID_LEN);
                if (p == NULL) {
                    free(sr.force_closed_accounts);
                    free(sr.rows);
                    return engine_fail(r, ERR_INTERNAL, "out of memory recording settlement");
                }
                sr.force_closed_accounts = p;
                cap_closed = n;
            }
            memcpy(sr.force_closed_accounts[sr.force_closed_count++], e->accounts[i].account_id,
                   QAEX_ID_LEN);
        }
        settlement_row *row = &sr.rows[sr.n_rows++];
        memcpy(row->account_id, e->accounts[i].account_id, sizeof row->account_id);
        row->pre_balance = as.pre_balance;
        row->balance = as.balance;
        row->close_profit = as.close_profit;
        row->position_profit = as.position_profit;
        row->commission = as.commission;
        row->risk_ratio = as.risk_ratio;
        row->force_close = as.force_close;
        engine_event ev = {.type = EV_ACCOUNT_SETTLED, .settlement = &as};
        engine_emit(e, &ev);
    }

    for (uint32_t i = 0; i < e->n_instruments; i++) {
        instrument *ins = &e->instruments[i];
        market_stats *st = &ins->stats;
        ins->spec.pre_close = st->has_trade ? st->last_price : ins->spec.pre_close;
        double old_settlement = ins->spec.pre_settlement;
        ins->spec.pre_settlement = settlement_price_of(ins);
        int64_t open_interest = st->open_interest;
        memset(st, 0, sizeof *st);
        st->open_interest = st->pre_open_interest = open_interest;
        cancel_outside_band(e, i, cmd->ts_ns);
        if (instrument_rebase_band(ins) != 0 && instrument_rebase_band(ins) != 0) {
            /* no memory for the new book: the day keeps yesterday's limits, which the book
             * already holds, rather than limits it cannot hold */
            ins->spec.pre_settlement = old_settlement;
            instrument_rebase_band(ins);
        }
        engine_touch_instrument(e, i, false);
        engine_event ev = {.type = EV_INSTRUMENT, .instrument = ins};
        engine_emit(e, &ev);
    }

    advance_trading_day(e->trading_day);
    e->txn_seq = 0;
    if (engine_add_settlement(e, &sr) != 0) {
        free(sr.force_closed_accounts);
        free(sr.rows);
        return engine_fail(r, ERR_INTERNAL, "out of memory recording settlement");
    }
    engine_event ev = {.type = EV_SETTLEMENT,
                       .settlement_result = &e->settlements[e->n_settlements - 1]};
    engine_emit(e, &ev);
    return QAEX_OK;
}
