#include "engine/account.h"

int64_t position_volume_long(const position *p) {
    return p->volume_long_today + p->volume_long_his;
}

int64_t position_volume_short(const position *p) {
    return p->volume_short_today + p->volume_short_his;
}

bool position_is_empty(const position *p) {
    return position_volume_long(p) == 0 && position_volume_short(p) == 0 &&
           p->live_orders[DIR_BUY] == 0 && p->live_orders[DIR_SELL] == 0;
}

int64_t position_closable(const position *p, direction side_held, offset o) {
    int64_t today, his;
    if (side_held == DIR_BUY) {
        today = p->volume_long_today - p->volume_long_frozen_today;
        his = p->volume_long_his - p->volume_long_frozen_his;
    } else {
        today = p->volume_short_today - p->volume_short_frozen_today;
        his = p->volume_short_his - p->volume_short_frozen_his;
    }
    switch (o) {
        case OFFSET_CLOSETODAY:
            return today;
        case OFFSET_CLOSEYESTERDAY:
            return his;
        default:
            return today + his;
    }
}

static double lots_value(const instrument *ins, double price, int64_t volume) {
    return price * (double)volume * ins->spec.contract_multiplier;
}

void position_open(position *p, const instrument *ins, direction side, double price,
                   int64_t volume) {
    double value = lots_value(ins, price, volume);
    if (side == DIR_BUY) {
        p->volume_long_today += volume;
        p->open_cost_long += value;
        p->position_cost_long += value;
        p->margin_long = p->position_cost_long * ins->spec.margin_rate;
    } else {
        p->volume_short_today += volume;
        p->open_cost_short += value;
        p->position_cost_short += value;
        p->margin_short = p->position_cost_short * ins->spec.margin_rate;
    }
}

double position_close(position *p, const instrument *ins, direction side_held, int64_t volume_today,
                      int64_t volume_his, double price) {
    bool is_long = side_held == DIR_BUY;
    int64_t *today = is_long ? &p->volume_long_today : &p->volume_short_today;
    int64_t *his = is_long ? &p->volume_long_his : &p->volume_short_his;
    double *open_cost = is_long ? &p->open_cost_long : &p->open_cost_short;
    double *pos_cost = is_long ? &p->position_cost_long : &p->position_cost_short;
    double *margin = is_long ? &p->margin_long : &p->margin_short;

    int64_t held = *today + *his;
    int64_t volume = volume_today + volume_his;
    /* QIFI closes at the average position price: the closed share of the costs leaves */
    double closed_cost = *pos_cost * (double)volume / (double)held;
    double closed_value = lots_value(ins, price, volume);
    double profit = is_long ? closed_value - closed_cost : closed_cost - closed_value;

    *today -= volume_today;
    *his -= volume_his;
    if (*today + *his == 0) {
        /* exact zero, so a flat position carries no rounding residue */
        *open_cost = *pos_cost = *margin = 0.0;
    } else {
        *open_cost -= *open_cost * (double)volume / (double)held;
        *pos_cost -= closed_cost;
        *margin = *pos_cost * ins->spec.margin_rate;
    }
    return profit;
}

double position_settle(position *p, const instrument *ins, double settlement_price) {
    int64_t vl = position_volume_long(p), vs = position_volume_short(p);
    double long_value = lots_value(ins, settlement_price, vl);
    double short_value = lots_value(ins, settlement_price, vs);
    double profit = (long_value - p->position_cost_long) + (p->position_cost_short - short_value);
    p->position_cost_long = long_value;
    p->position_cost_short = short_value;
    p->margin_long = long_value * ins->spec.margin_rate;
    p->margin_short = short_value * ins->spec.margin_rate;
    p->volume_long_his = vl;
    p->volume_long_today = 0;
    p->volume_short_his = vs;
    p->volume_short_today = 0;
    if (vl == 0) p->open_cost_long = 0.0;
    if (vs == 0) p->open_cost_short = 0.0;
    return profit;
}

void position_view_of(const position *p, const instrument *ins, position_view *v) {
    double mult = ins->spec.contract_multiplier;
    double last = instrument_mark_price(ins);
    v->volume_long = position_volume_long(p);
    v->volume_short = position_volume_short(p);
    v->last_price = last;
    double long_value = last * (double)v->volume_long * mult;
    double short_value = last * (double)v->volume_short * mult;
    v->open_price_long = v->volume_long ? p->open_cost_long / ((double)v->volume_long * mult) : 0;
    v->open_price_short =
        v->volume_short ? p->open_cost_short / ((double)v->volume_short * mult) : 0;
    v->position_price_long =
        v->volume_long ? p->position_cost_long / ((double)v->volume_long * mult) : 0;
    v->position_price_short =
        v->volume_short ? p->position_cost_short / ((double)v->volume_short * mult) : 0;
    v->float_profit_long = v->volume_long ? long_value - p->open_cost_long : 0;
    v->float_profit_short = v->volume_short ? p->open_cost_short - short_value : 0;
    v->float_profit = v->float_profit_long + v->float_profit_short;
    v->position_profit_long = v->volume_long ? long_value - p->position_cost_long : 0;
    v->position_profit_short = v->volume_short ? p->position_cost_short - short_value : 0;
    v->position_profit = v->position_profit_long + v->position_profit_short;
    v->margin = p->margin_long + p->margin_short;
}

void account_view_finish(const account *a, double position_profit, double float_profit,
                         double margin, account_view *v) {
    v->static_balance = a->pre_balance + a->deposit - a->withdraw;
    v->position_profit = position_profit;
    v->float_profit = float_profit;
    v->margin = margin;
    v->balance = v->static_balance + a->close_profit - a->commission - a->premium + position_profit;
    v->available =
        v->balance - margin - a->frozen_margin - a->frozen_commission - a->frozen_premium;
    if (v->balance > 0)
        v->risk_ratio = margin / v->balance;
    else
        v->risk_ratio = margin > 0 ? 1e9 : 0.0; /* no equity left behind a margin: critical */
    /* position profit is not withdrawable until settlement realises it */
    double unrealised_gain = position_profit > 0 ? position_profit : 0.0;
    v->withdraw_quota = v->available - unrealised_gain;
    if (v->withdraw_quota < 0) v->withdraw_quota = 0;
}
