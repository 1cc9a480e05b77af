/* Helpers that build commands for engine tests, so each test reads as the scenario it plays. */
#ifndef QAEX_ENGINE_FIXTURE_H
#define QAEX_ENGINE_FIXTURE_H

#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

static int64_t fixture_clock_ns = 1735783200000000000LL; /* 2025-01-02 10:00 +08:00 */

static inline command fx_command(command_type type) {
    command c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.ts_ns = (fixture_clock_ns += 1000000);
    return c;
}

static inline int fx_apply(engine *e, const command *c, engine_result *r) {
    engine_result local;
    return engine_apply(e, c, r ? r : &local);
}

/* The seed's example contract: multiplier 200, margin 10%, 0.05 per lot, price 100.0. */
static inline instrument_spec fx_ix2401(void) {
    instrument_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.instrument_id, sizeof s.instrument_id, "CFFEX.IX2401");
    snprintf(s.instrument_name, sizeof s.instrument_name, "IX2401");
    s.contract_multiplier = 200;
    s.price_tick = 0.5;
    s.margin_rate = 0.10;
    s.commission_per_lot = 0.05;
    s.limit_up_rate = 0.10;
    s.limit_down_rate = 0.10;
    s.pre_settlement = 100.0;
    s.pre_close = 100.0;
    return s;
}

static inline int fx_add_instrument(engine *e, const instrument_spec *spec) {
    command c = fx_command(CMD_INSTRUMENT_ADD);
    c.u.instrument.spec = *spec;
    return fx_apply(e, &c, NULL);
}

static inline int fx_open_account(engine *e, const char *id, double cash) {
    command c = fx_command(CMD_ACCOUNT_OPEN);
    snprintf(c.u.account_open.account_id, sizeof c.u.account_open.account_id, "%s", id);
    c.u.account_open.init_cash = cash;
    return fx_apply(e, &c, NULL);
}

static inline int fx_transfer(engine *e, command_type type, const char *id, double amount,
                              engine_result *r) {
    command c = fx_command(type);
    snprintf(c.u.transfer.account_id, sizeof c.u.transfer.account_id, "%s", id);
    c.u.transfer.amount = amount;
    return fx_apply(e, &c, r);
}

/* A limit GFD order; returns the result code, and the order through *out when accepted. */
static inline int fx_order_full(engine *e, const char *acc, const char *ins, direction d, offset o,
                                double price, int64_t volume, price_type pt, time_condition tc,
                                volume_condition vc, const char *order_id, engine_result *r) {
    command c = fx_command(CMD_ORDER_INSERT);
    order_request *q = &c.u.order;
    snprintf(q->account_id, sizeof q->account_id, "%s", acc);
    snprintf(q->instrument_id, sizeof q->instrument_id, "%s", ins);
    if (order_id) snprintf(q->order_id, sizeof q->order_id, "%s", order_id);
    q->direction = d;
    q->offset = o;
    q->limit_price = price;
    q->volume = volume;
    q->price_type = pt;
    q->time_condition = tc;
    q->volume_condition = vc;
    return fx_apply(e, &c, r);
}

static inline int fx_order(engine *e, const char *acc, const char *ins, direction d, offset o,
                           double price, int64_t volume, engine_result *r) {
    return fx_order_full(e, acc, ins, d, o, price, volume, PRICE_LIMIT, TC_GFD, VC_ANY, NULL, r);
}

static inline int fx_cancel(engine *e, const char *acc, const char *order_id, engine_result *r) {
    command c = fx_command(CMD_ORDER_CANCEL);
    snprintf(c.u.cancel.account_id, sizeof c.u.cancel.account_id, "%s", acc);
    snprintf(c.u.cancel.order_id, sizeof c.u.cancel.order_id, "%s", order_id);
    return fx_apply(e, &c, r);
}

static inline int fx_instrument_cmd(engine *e, command_type type, const char *ins,
                                    engine_result *r) {
    command c = fx_command(type);
    snprintf(c.u.instrument_ref.instrument_id, sizeof c.u.instrument_ref.instrument_id, "%s", ins);
    return fx_apply(e, &c, r);
}

static inline int fx_set_settlement_price(engine *e, const char *ins, double price,
                                          engine_result *r) {
    command c = fx_command(CMD_SETTLEMENT_SET_PRICE);
    snprintf(c.u.settlement_price.instrument_id, sizeof c.u.settlement_price.instrument_id, "%s",
             ins);
    c.u.settlement_price.price = price;
    return fx_apply(e, &c, r);
}

static inline int fx_settle(engine *e, engine_result *r) {
    command c = fx_command(CMD_SETTLEMENT_EXECUTE);
    return fx_apply(e, &c, r);
}

static inline account_view fx_view(engine *e, const char *acc) {
    account_view v;
    memset(&v, 0, sizeof v);
    const account *a = engine_account_find(e, acc);
    if (a) engine_account_view(e, a, &v);
    return v;
}

static inline const position *fx_position(engine *e, const char *acc, const char *ins) {
    const account *a = engine_account_find(e, acc);
    const instrument *i = engine_instrument_find(e, ins);
    return a && i ? engine_position_find(e, a, i) : NULL;
}

/* An engine with IX2401 and the given accounts, each funded with `cash`. */
static inline engine *fx_engine(const char *const *accounts, int n, double cash) {
    engine_config cfg;
    engine_config_default(&cfg);
    engine *e = engine_create(&cfg);
    instrument_spec s = fx_ix2401();
    fx_add_instrument(e, &s);
    for (int i = 0; i < n; i++)
        fx_open_account(e, accounts[i], cash);
    return e;
}

#endif
