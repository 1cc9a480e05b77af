/* Order entry: validation, pre-trade risk, freezing, price-time matching, fills, cancels, the
 * call auction and forced liquidation. Every check runs before anything changes, so a rejected
 * order leaves no trace. */
#include "engine/engine_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static direction opposite(direction d) {
    return d == DIR_BUY ? DIR_SELL : DIR_BUY;
}

static bool crosses(direction incoming, int64_t incoming_tick, int64_t resting_tick) {
    return incoming == DIR_BUY ? resting_tick <= incoming_tick : resting_tick >= incoming_tick;
}

/* Walks the resting orders an incoming order would meet, in priority order, until `volume` lots
 * are covered. Returns the lots available; sets *self when one of them is the account's own. */
static int64_t scan_crossing(const engine *e, const instrument *ins, direction dir, int64_t tick,
                             int64_t volume, uint32_t account_slot, bool *self) {
    const book *b = &ins->book;
    direction side = opposite(dir);
    int64_t covered = 0;
    for (int32_t lv = book_best(b, side); lv != BOOK_NO_LEVEL && covered < volume;
         lv = book_next_worse(b, side, lv)) {
        if (!crosses(dir, tick, book_level_tick(b, lv))) break;
        if (self == NULL) {
            covered += book_level_at(b, side, lv)->volume;
            continue;
        }
        for (uint32_t s = book_level_at(b, side, lv)->head; s != SLOT_NONE && covered < volume;
             s = e->orders[s].level_next) {
            if (e->orders[s].account == account_slot) {
                *self = true;
                return covered;
            }
            covered += e->orders[s].volume_left;
        }
    }
    return covered;
}

typedef struct order_plan {
    double price;
    int64_t tick;
    double margin, commission;        /* frozen by an open order */
    int64_t freeze_today, freeze_his; /* frozen by a close order */
    bool fok_unfillable;
} order_plan;

static int check_price(const instrument *ins, const order_request *q, order_plan *plan,
                       engine_result *r) {
    if (q->price_type == PRICE_ANY) {
        plan->tick = q->direction == DIR_BUY ? ins->upper_tick : ins->lower_tick;
        plan->price = instrument_tick_to_price(ins, plan->tick);
        return QAEX_OK;
    }
    if (!isfinite(q->limit_price) || q->limit_price <= 0)
        return engine_fail(r, ERR_INVALID_ORDER, "limit price must be positive, got %g",
                           q->limit_price);
    if (!instrument_price_to_tick(ins, q->limit_price, &plan->tick))
        return engine_fail(r, ERR_INVALID_ORDER, "price %g is not a multiple of the tick %g of %s",
                           q->limit_price, ins->spec.price_tick, ins->spec.instrument_id);
    if (plan->tick > ins->upper_tick || plan->tick < ins->lower_tick)
        return engine_fail(r, ERR_INVALID_ORDER, "price %g is outside the limits [%g, %g] of %s",
                           q->limit_price, instrument_lower_limit(ins), instrument_upper_limit(ins),
                           ins->spec.instrument_id);
    /* on the tick exactly: a price a millionth of a tick off is accepted as the tick's */
    plan->price = instrument_tick_to_price(ins, plan->tick);
    return QAEX_OK;
}

static int validate(const engine *e, const account *a, const instrument *ins,
                    const order_request *q, engine_result *r) {
    const engine_config *cfg = &e->cfg;
    const char *id = ins->spec.instrument_id;
    if (ins->status == INSTRUMENT_SUSPENDED)
        return engine_fail(r, ERR_INVALID_ORDER, "instrument %s is suspended", id);
    if (ins->status == INSTRUMENT_DELISTED)
        return engine_fail(r, ERR_INVALID_ORDER, "instrument %s is delisted", id);
    const struct {
        const char *field;
        int value, max;
    } enums[] = {
        {"direction", (int)q->direction, DIR_SELL},
        {"offset", (int)q->offset, OFFSET_CLOSEYESTERDAY},
        {"price_type", (int)q->price_type, PRICE_ANY},
        {"time_condition", (int)q->time_condition, TC_GTC},
        {"volume_condition", (int)q->volume_condition, VC_ALL},
    };
    for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++)
        if (enums[i].value < 0 || enums[i].value > enums[i].max)
            return engine_fail(r, ERR_INVALID_ORDER, "invalid %s: %d", enums[i].field,
                               enums[i].value);
    if (q->volume < cfg->min_order_volume || q->volume > cfg->max_order_volume)
        return engine_fail(r, ERR_INVALID_ORDER, "volume %lld is outside [%lld, %lld]",
                           (long long)q->volume, (long long)cfg->min_order_volume,
                           (long long)cfg->max_order_volume);
    if (ins->in_auction && (q->price_type == PRICE_ANY || q->time_condition == TC_IOC ||
                            q->volume_condition == VC_ALL))
        return engine_fail(r, ERR_INVALID_ORDER,
                           "%s is in the call auction: only limit GFD or GTC orders are accepted",
                           id);
    if (q->order_id[0] != '\0') {
        if (memchr(q->order_id, '\0', QAEX_ID_LEN) == NULL)
            return engine_fail(r, ERR_INVALID_ORDER, "order_id longer than %d characters",
                               QAEX_ID_LEN - 1);
        if (engine_is_server_order_id(q->order_id))
            return engine_fail(r, ERR_INVALID_ORDER,
                               "order_id %s has the form of server-assigned ids (O + 20 digits)",
                               q->order_id);
        if (engine_find_order_slot(e, (uint32_t)(a - e->accounts), q->order_id) != SLOT_NONE)
            return engine_fail(r, ERR_SUBMIT_FAILED, "duplicate order_id %s in account %s",
                               q->order_id, a->account_id);
    }
    return QAEX_OK;
}

static int check_risk(const engine *e, const account *a, const instrument *ins, const position *p,
                      const order_request *q, order_plan *plan, engine_result *r) {
    const engine_config *cfg = &e->cfg;
    double value = plan->price * (double)q->volume;
    if (value > cfg->max_order_value)
        return engine_fail(r, ERR_ORDER_VALUE, "order value %.2f exceeds the limit %.2f", value,
                           cfg->max_order_value);
    if (q->offset != OFFSET_OPEN) {
        direction held = opposite(q->direction);
        int64_t closable = p ? position_closable(p, held, q->offset) : 0;
        if (closable < q->volume)
            return engine_fail(r, ERR_INSUFFICIENT_POSITION,
                               "insufficient position: %s %s %s closable %lld, requested %lld",
                               direction_name(q->direction), offset_name(q->offset),
                               ins->spec.instrument_id, (long long)closable, (long long)q->volume);
        int64_t today = held == DIR_BUY ? p->volume_long_today - p->volume_long_frozen_today
                                        : p->volume_short_today - p->volume_short_frozen_today;
        if (q->offset == OFFSET_CLOSEYESTERDAY) today = 0;
        plan->freeze_today = today < q->volume ? today : q->volume;
        plan->freeze_his = q->volume - plan->freeze_today;
        return QAEX_OK;
    }
    account_view v;
    engine_view_of(e, a, &v);
    plan->margin = instrument_margin(ins, plan->price, q->volume);
    plan->commission = instrument_commission(ins, plan->price, q->volume);
    double need = plan->margin + plan->commission;
    if (need > v.available + 1e-9)
        return engine_fail(r, ERR_INSUFFICIENT_FUNDS,
                           "insufficient funds: need %.2f, available %.2f", need, v.available);
    /* the instrument's margin counts what the account already holds and has on order there */
    double instrument_margin_after =
        (p ? p->margin_long + p->margin_short + p->frozen_margin : 0) + plan->margin;
    if (instrument_margin_after > cfg->max_position_ratio * v.balance)
        return engine_fail(r, ERR_POSITION_LIMIT,
                           "position limit: margin in %s would be %.2f, %.1f%% of balance %.2f "
                           "(limit %.0f%%)",
                           ins->spec.instrument_id, instrument_margin_after,
                           100.0 * instrument_margin_after / v.balance, v.balance,
                           100.0 * cfg->max_position_ratio);
    double risk_after = (v.margin + a->frozen_margin + plan->margin) / v.balance;
    if (risk_after > cfg->risk_ratio_reject)
        return engine_fail(r, ERR_RISK_RATIO,
                           "risk ratio after the order would be %.4f, above %.4f", risk_after,
                           cfg->risk_ratio_reject);
    return QAEX_OK;
}

/* Copies a constant reason without the cost of printf: every cancel sets one. */
static void set_last_msg(order *o, const char *why) {
    size_t n = strnlen(why, sizeof o->last_msg - 1);
    memcpy(o->last_msg, why, n);
    o->last_msg[n] = '\0';
}

/* Keeps a trade in the account's history and reports it. Retaining it in memory is a
 * convenience for queries; the event is the record, so a full pool only skips the retention. */
static void publish_trade(engine *e, const trade *t, uint32_t pslot) {
    uint32_t tslot = engine_alloc_trade(e);
    const trade *published = t;
    if (tslot != SLOT_NONE) {
        e->trades[tslot] = *t;
        engine_account_append_trade(e, tslot);
        published = &e->trades[tslot];
    }
    engine_event ev = {.type = EV_TRADE, .trade = published};
    engine_emit(e, &ev);
    engine_touch_account(e, t->account);
    engine_touch_position(e, pslot);
}

/* ---- fills ---- */

static void fill_side(engine *e, uint32_t slot, int64_t qty, double price, bool is_taker,
                      uint64_t match_seq, int64_t ts_ns) {
    order *o = &e->orders[slot];
    account *a = &e->accounts[o->account];
    instrument *ins = &e->instruments[o->instrument];
    uint32_t pslot = o->position;
    position *p = &e->positions[pslot];
    double close_profit = 0;

    if (o->offset == OFFSET_OPEN) {
        bool last = qty == o->volume_left;
        double share = (double)qty / (double)o->volume_left;
        double m = last ? o->frozen_margin : o->frozen_margin * share;
        double c = last ? o->frozen_commission : o->frozen_commission * share;
        o->frozen_margin -= m;
        o->frozen_commission -= c;
        a->frozen_margin -= m;
        a->frozen_commission -= c;
        p->frozen_margin -= m;
        position_open(p, ins, o->direction, price, qty);
    } else {
        direction held = opposite(o->direction);
        int64_t qt = qty < o->frozen_today ? qty : o->frozen_today;
        int64_t qh = qty - qt;
        o->frozen_today -= qt;
        o->frozen_his -= qh;
        if (held == DIR_BUY) {
            p->volume_long_frozen_today -= qt;
            p->volume_long_frozen_his -= qh;
        } else {
            p->volume_short_frozen_today -= qt;
            p->volume_short_frozen_his -= qh;
        }
        close_profit = position_close(p, ins, held, qt, qh, price);
        a->close_profit += close_profit;
    }
    double commission = instrument_commission(ins, price, qty);
    a->commission += commission;
    o->volume_left -= qty;
    o->status = o->volume_left == 0 ? ORDER_FILLED : ORDER_PARTIALLY_FILLED;
    o->update_ns = ts_ns;

    trade t = {
        .seq = ++e->trade_seq,
        .match_seq = match_seq,
        .order_seq = o->seq,
        .exchange_seq = o->exchange_seq,
        .account = o->account,
        .instrument = o->instrument,
        .direction = o->direction,
        .offset = o->offset,
        .price = price,
        .volume = qty,
        .commission = commission,
        .close_profit = close_profit,
        .trade_ns = ts_ns,
        .is_taker = is_taker,
    };
    memcpy(t.order_id, o->order_id, sizeof t.order_id);
    engine_emit_order(e, o);
    publish_trade(e, &t, pslot);
}

/* One match between an incoming (or, in the auction, later) order and a resting one. */
static void execute_match(engine *e, uint32_t taker, uint32_t maker, int64_t qty, double price,
                          int64_t ts_ns) {
    instrument *ins = &e->instruments[e->orders[maker].instrument];
    uint64_t match_seq = ++e->match_seq;
    int n_open =
        (e->orders[taker].offset == OFFSET_OPEN) + (e->orders[maker].offset == OFFSET_OPEN);
    uint32_t sides[2] = {maker, taker};
    for (int i = 0; i < 2; i++) {
        order *o = &e->orders[sides[i]];
        if (o->in_book) book_reduce(&ins->book, o, qty);
        fill_side(e, sides[i], qty, price, sides[i] == taker, match_seq, ts_ns);
        if (o->volume_left == 0) {
            if (o->in_book) book_remove(&ins->book, e->orders, sides[i]);
            engine_finish_order(e, sides[i]);
        }
    }
    int64_t oi_before = ins->stats.open_interest;
    instrument_record_trade(ins, price, qty, qty * (n_open - 1), ts_ns);
    const order *taker_order = &e->orders[taker];
    uint32_t buyer =
        taker_order->direction == DIR_BUY ? taker_order->account : e->orders[maker].account;
    uint32_t seller =
        taker_order->direction == DIR_BUY ? e->orders[maker].account : taker_order->account;
    market_trade mt = {.ts_ns = ts_ns,
                       .price = price,
                       .volume = qty,
                       .taker_side = taker_order->direction,
                       .match_seq = match_seq,
                       .buyer = buyer,
                       .seller = seller};
    engine_record_market_trade(e, ins, &mt, price * (double)qty * ins->spec.contract_multiplier,
                               oi_before);
    engine_touch_instrument(e, e->orders[maker].instrument, true);
}

static void match_incoming(engine *e, uint32_t slot, int64_t ts_ns) {
    order *o = &e->orders[slot];
    instrument *ins = &e->instruments[o->instrument];
    direction side = opposite(o->direction);
    while (o->volume_left > 0) {
        int32_t lv = book_best(&ins->book, side);
        if (lv == BOOK_NO_LEVEL ||
            !crosses(o->direction, o->price_tick, book_level_tick(&ins->book, lv)))
            break;
        uint32_t maker = book_level_at(&ins->book, side, lv)->head;
        const order *m = &e->orders[maker];
        int64_t qty = o->volume_left < m->volume_left ? o->volume_left : m->volume_left;
        /* the trade prints at the resting order's price */
        execute_match(e, slot, maker, qty, m->limit_price, ts_ns);
    }
}

/* ---- entry ---- */

int matching_insert(engine *e, const command *cmd, engine_result *r) {
    const order_request *q = &cmd->u.order;
    uint32_t aslot = engine_find_account_slot(e, q->account_id);
    if (aslot == SLOT_NONE)
        return engine_fail(r, ERR_ACCOUNT_NOT_FOUND, "account not found: %s", q->account_id);
    r->account = aslot;
    account *a = &e->accounts[aslot];
    engine_prefetch_account(e, aslot);
    /* the slot the order will take, most often one just given back, cold but for one line */
    if (e->order_free != SLOT_NONE) engine_prefetch_bytes(&e->orders[e->order_free], sizeof(order));
    if (a->frozen) return engine_fail(r, ERR_ACCOUNT_FROZEN, "account %s is frozen", a->account_id);
    uint32_t islot = engine_find_instrument_slot(e, q->instrument_id);
    if (islot == SLOT_NONE)
        return engine_fail(r, ERR_INSTRUMENT_NOT_FOUND, "instrument not found: %s",
                           q->instrument_id);
    e->recent_instrument = islot;
    instrument *ins = &e->instruments[islot];
    uint32_t pslot = engine_find_position_slot(e, aslot, islot);
    const position *p = pslot == SLOT_NONE ? NULL : &e->positions[pslot];
    if (p != NULL) engine_prefetch_bytes(p, sizeof *p);
    order_plan plan = {0};
    int rc = validate(e, a, ins, q, r);
    if (rc == QAEX_OK) rc = check_price(ins, q, &plan, r);
    if (rc == QAEX_OK) rc = check_risk(e, a, ins, p, q, &plan, r);
    if (rc != QAEX_OK) return rc;

    if (e->cfg.self_trade_prevention && p != NULL && p->live_orders[opposite(q->direction)] > 0) {
        bool self = false;
        /* in the auction every crossing order will trade, whatever the volume */
        scan_crossing(e, ins, q->direction, plan.tick, ins->in_auction ? INT64_MAX : q->volume,
                      aslot, &self);
        if (self)
            return engine_fail(r, ERR_SELF_TRADE,
                               "self-trade: %s %s at %g would match a resting order of account "
                               "%s",
                               direction_name(q->direction), ins->spec.instrument_id, plan.price,
                               a->account_id);
    }
    if (q->volume_condition == VC_ALL)
        plan.fok_unfillable =
            scan_crossing(e, ins, q->direction, plan.tick, q->volume, aslot, NULL) < q->volume;

    /* all checks passed: from here on the order exists */
    uint32_t slot = engine_alloc_order(e);
    if (slot == SLOT_NONE) return engine_fail(r, ERR_INTERNAL, "out of memory for a new order");
    if (pslot == SLOT_NONE) pslot = engine_get_position_slot(e, aslot, islot);
    order *o = &e->orders[slot];
    o->seq = e->order_seq + 1;
    if (q->order_id[0])
        memcpy(o->order_id, q->order_id, sizeof o->order_id);
    else
        order_format_seq('O', o->seq, o->order_id, sizeof o->order_id);
    o->account = aslot;
    if (pslot == SLOT_NONE || engine_register_order(e, slot) != 0) {
        /* give the slot back through the finished path would publish it: free it directly */
        o->account_next = e->order_free;
        e->order_free = slot;
        e->orders_in_use--;
        return engine_fail(r, ERR_INTERNAL, "out of memory for a new order");
    }
    e->order_seq = o->seq;
    o->exchange_seq = ++ins->exchange_seq;
    o->instrument = islot;
    o->position = pslot;
    o->direction = q->direction;
    o->offset = q->offset;
    o->price_type = q->price_type;
    o->time_condition = q->price_type == PRICE_ANY ? TC_IOC : q->time_condition;
    o->volume_condition = q->volume_condition;
    o->status = ORDER_SUBMITTED;
    o->limit_price = plan.price;
    o->price_tick = plan.tick;
    o->volume_orign = o->volume_left = q->volume;
    o->insert_ns = o->update_ns = cmd->ts_ns;
    o->level_prev = o->level_next = SLOT_NONE;

    position *pos = &e->positions[pslot];
    if (o->offset == OFFSET_OPEN) {
        o->frozen_margin = plan.margin;
        o->frozen_commission = plan.commission;
        a->frozen_margin += plan.margin;
        a->frozen_commission += plan.commission;
        pos->frozen_margin += plan.margin;
    } else {
        o->frozen_today = plan.freeze_today;
        o->frozen_his = plan.freeze_his;
        if (o->direction == DIR_SELL) {
            pos->volume_long_frozen_today += plan.freeze_today;
            pos->volume_long_frozen_his += plan.freeze_his;
        } else {
            pos->volume_short_frozen_today += plan.freeze_today;
            pos->volume_short_frozen_his += plan.freeze_his;
        }
    }
    pos->live_orders[o->direction]++;
    o->account_prev = a->live_tail;
    o->account_next = SLOT_NONE;
    if (a->live_tail != SLOT_NONE)
        e->orders[a->live_tail].account_next = slot;
    else
        a->live_head = slot;
    a->live_tail = slot;
    a->live_count++;
    r->order = slot;
    engine_emit_order(e, o);
    engine_touch_account(e, aslot);
    engine_touch_position(e, pslot);

    if (plan.fok_unfillable) {
        o->status = ORDER_CANCELLED;
        snprintf(o->last_msg, sizeof o->last_msg, "FOK cancelled: %lld lots not available",
                 (long long)o->volume_orign);
        engine_emit_order(e, o);
        engine_finish_order(e, slot);
        return QAEX_OK;
    }
    if (!ins->in_auction) match_incoming(e, slot, cmd->ts_ns);
    if (o->volume_left == 0) return QAEX_OK;
    if (o->time_condition == TC_IOC) {
        o->status = ORDER_CANCELLED;
        snprintf(o->last_msg, sizeof o->last_msg, "IOC remainder of %lld lots cancelled",
                 (long long)o->volume_left);
        engine_emit_order(e, o);
        engine_finish_order(e, slot);
        return QAEX_OK;
    }
    book_insert(&ins->book, e->orders, slot);
    engine_touch_instrument(e, islot, false);
    return QAEX_OK;
}

void matching_cancel_slot(engine *e, uint32_t slot, int64_t ts_ns, const char *why) {
    order *o = &e->orders[slot];
    if (o->in_book) {
        book_remove(&e->instruments[o->instrument].book, e->orders, slot);
        engine_touch_instrument(e, o->instrument, false);
    }
    o->status = ORDER_CANCELLED;
    o->update_ns = ts_ns;
    set_last_msg(o, why);
    engine_emit_order(e, o);
    engine_finish_order(e, slot);
}

int matching_cancel(engine *e, const command *cmd, engine_result *r) {
    uint32_t aslot = engine_find_account_slot(e, cmd->u.cancel.account_id);
    if (aslot == SLOT_NONE)
        return engine_fail(r, ERR_ACCOUNT_NOT_FOUND, "account not found: %s",
                           cmd->u.cancel.account_id);
    r->account = aslot;
    engine_prefetch_account(e, aslot);
    uint32_t slot = engine_find_order_slot(e, aslot, cmd->u.cancel.order_id);
    if (slot == SLOT_NONE)
        return engine_fail(r, ERR_ORDER_NOT_FOUND, "order not found: %s in account %s",
                           cmd->u.cancel.order_id, cmd->u.cancel.account_id);
    r->order = slot;
    const order *o = &e->orders[slot];
    if (!order_status_alive(o->status))
        return engine_fail(r, ERR_ORDER_NOT_CANCELLABLE, "order %s is %s and cannot be cancelled",
                           o->order_id, order_status_name(o->status));
    /* the rest of the order, and its neighbours in the book and in the account's live list */
    engine_prefetch_bytes(&o->frozen_margin,
                          offsetof(order, order_id) - offsetof(order, frozen_margin));
    if (o->level_prev != SLOT_NONE) __builtin_prefetch(&e->orders[o->level_prev], 1, 3);
    if (o->level_next != SLOT_NONE) __builtin_prefetch(&e->orders[o->level_next], 1, 3);
    if (o->account_prev != SLOT_NONE)
        __builtin_prefetch(&e->orders[o->account_prev].account_next, 1, 3);
    if (o->account_next != SLOT_NONE)
        __builtin_prefetch(&e->orders[o->account_next].account_next, 1, 3);
    engine_prefetch_finish(e, slot);
    matching_cancel_slot(e, slot, cmd->ts_ns, "cancelled");
    return QAEX_OK;
}

/* ---- call auction ---- */

static instrument *auction_instrument(engine *e, const command *cmd, engine_result *r) {
    uint32_t islot = engine_find_instrument_slot(e, cmd->u.instrument_ref.instrument_id);
    if (islot == SLOT_NONE) {
        engine_fail(r, ERR_INSTRUMENT_NOT_FOUND, "instrument not found: %s",
                    cmd->u.instrument_ref.instrument_id);
        return NULL;
    }
    return &e->instruments[islot];
}

int matching_auction_open(engine *e, const command *cmd, engine_result *r) {
    instrument *ins = auction_instrument(e, cmd, r);
    if (ins == NULL) return r->code;
    if (ins->status != INSTRUMENT_TRADING)
        return engine_fail(r, ERR_INVALID_ORDER, "instrument %s is %s", ins->spec.instrument_id,
                           instrument_status_name(ins->status));
    if (ins->in_auction)
        return engine_fail(r, ERR_INVALID_ORDER, "instrument %s is already in the call auction",
                           ins->spec.instrument_id);
    ins->in_auction = true;
    engine_event ev = {.type = EV_INSTRUMENT, .instrument = ins};
    engine_emit(e, &ev);
    return QAEX_OK;
}

/* The equilibrium tick: the most executable volume, then the least imbalance, then the nearest
 * to the reference price, then the lower price. Every tick from the best ask to the best bid is a
 * candidate, not only the prices orders name: between two order prices the bids of the upper one
 * meet the asks of the lower one, which can trade as much with less imbalance, and the reference
 * price may lie there too. Returns false when nothing crosses. */
static bool auction_price(const instrument *ins, int64_t *eq_tick) {
    const book *b = &ins->book;
    int32_t best_bid = book_best(b, DIR_BUY), best_ask = book_best(b, DIR_SELL);
    if (best_bid == BOOK_NO_LEVEL || best_ask == BOOK_NO_LEVEL || best_bid < best_ask) return false;
    /* the reference (last or settlement price) need not lie on the tick: compare in price */
    double reference = instrument_mark_price(ins);
    /* at a price, the bids at or above it meet the asks at or below it: walking up from the best
     * ask, each level's asks join before it is weighed and its bids leave after */
    int64_t buy = 0, sell = 0;
    for (int32_t x = best_bid; x != BOOK_NO_LEVEL && x >= best_ask;
         x = book_next_worse(b, DIR_BUY, x))
        buy += b->levels[DIR_BUY][x].volume;
    int64_t best_exec = 0, best_imbalance = 0;
    double best_distance = 0;
    bool found = false;
    for (int32_t lv = best_ask; lv <= best_bid; lv++) {
        sell += b->levels[DIR_SELL][lv].volume;
        int64_t exec = buy < sell ? buy : sell;
        int64_t imbalance = buy > sell ? buy - sell : sell - buy;
        int64_t tick = book_level_tick(b, lv);
        double distance = fabs(instrument_tick_to_price(ins, tick) - reference);
        bool better =
            !found || exec > best_exec ||
            (exec == best_exec && (imbalance < best_imbalance ||
                                   (imbalance == best_imbalance && distance < best_distance)));
        if (better && exec > 0) {
            found = true;
            best_exec = exec;
            best_imbalance = imbalance;
            best_distance = distance;
            *eq_tick = tick;
        }
        buy -= b->levels[DIR_BUY][lv].volume;
    }
    return found;
}

int matching_auction_close(engine *e, const command *cmd, engine_result *r) {
    instrument *ins = auction_instrument(e, cmd, r);
    if (ins == NULL) return r->code;
    if (!ins->in_auction)
        return engine_fail(r, ERR_INVALID_ORDER, "instrument %s is not in the call auction",
                           ins->spec.instrument_id);
    int64_t eq_tick;
    if (auction_price(ins, &eq_tick)) {
        double price = instrument_tick_to_price(ins, eq_tick);
        book *b = &ins->book;
        for (;;) {
            int32_t bid = book_best(b, DIR_BUY), ask = book_best(b, DIR_SELL);
            if (bid == BOOK_NO_LEVEL || ask == BOOK_NO_LEVEL) break;
            if (book_level_tick(b, bid) < eq_tick || book_level_tick(b, ask) > eq_tick) break;
            uint32_t bs = book_level_at(b, DIR_BUY, bid)->head;
            uint32_t as = book_level_at(b, DIR_SELL, ask)->head;
            int64_t qty = e->orders[bs].volume_left < e->orders[as].volume_left
                              ? e->orders[bs].volume_left
                              : e->orders[as].volume_left;
            /* the later order of the pair is the taker */
            bool bid_later = e->orders[bs].seq > e->orders[as].seq;
            execute_match(e, bid_later ? bs : as, bid_later ? as : bs, qty, price, cmd->ts_ns);
        }
    }
    ins->in_auction = false;
    engine_touch_instrument(e, (uint32_t)(ins - e->instruments), false);
    engine_event ev = {.type = EV_INSTRUMENT, .instrument = ins};
    engine_emit(e, &ev);
    return QAEX_OK;
}

/* ---- forced liquidation ---- */

static void liquidate_side(engine *e, uint32_t pslot, direction held, double price, int64_t ts_ns) {
    position *p = &e->positions[pslot];
    int64_t today = held == DIR_BUY ? p->volume_long_today : p->volume_short_today;
    int64_t his = held == DIR_BUY ? p->volume_long_his : p->volume_short_his;
    if (today + his == 0) return;
    instrument *ins = &e->instruments[p->instrument];
    account *a = &e->accounts[p->account];
    double profit = position_close(p, ins, held, today, his, price);
    a->close_profit += profit;
    trade t = {
        .seq = ++e->trade_seq,
        .match_seq = ++e->match_seq,
        .account = p->account,
        .instrument = p->instrument,
        .direction = opposite(held),
        .offset = OFFSET_CLOSE,
        .price = price,
        .volume = today + his,
        .close_profit = profit,
        .trade_ns = ts_ns,
        .is_liquidation = true,
    };
    snprintf(t.order_id, sizeof t.order_id, "LIQ-%llu", (unsigned long long)t.seq);
    publish_trade(e, &t, pslot);
}

void matching_liquidate(engine *e, uint32_t pslot, double price, int64_t ts_ns) {
    liquidate_side(e, pslot, DIR_BUY, price, ts_ns);
    liquidate_side(e, pslot, DIR_SELL, price, ts_ns);
}
