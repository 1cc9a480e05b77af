/* DIFF encoders (see diff_codec.h). */
#include "proto/diff_codec.h"

#include "proto/codec.h"
#include "proto/json_builder.h"
#include "proto/market_codec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A price for a DIFF client: "NaN" when there is none, since null would delete the field. */
static json_t *diff_price(bool present, double v) {
    return present && isfinite(v) ? jb_real_value(v) : json_string("NaN");
}

static const char *account_id_of(const engine *e, uint32_t slot) {
    const account *a = engine_account_of(e, slot);
    return a ? a->account_id : "";
}

static void trading_day_compact(const engine *e, char out[16]) {
    const char *td = engine_trading_day(e);
    snprintf(out, 16, "%.4s%.2s%.2s", td, td + 5, td + 8);
}

json_t *diff_account(const engine *e, const account *acc) {
    return codec_account(e, acc);
}

json_t *diff_order(const engine *e, const order *ord) {
    const instrument *ins = engine_instrument_of(e, ord->instrument);
    const char *acc_id = account_id_of(e, ord->account);
    char exchange_order_id[QAEX_ID_LEN];
    engine_order_exchange_id(e, ord, exchange_order_id, sizeof exchange_order_id);
    json_builder b = jb_new();
    jb_str(&b, "order_id", ord->order_id);
    jb_str(&b, "exchange_order_id", exchange_order_id);
    jb_str(&b, "exchange_id", ins ? ins->spec.exchange : "");
    jb_str(&b, "instrument_id", ins ? ins->code : "");
    jb_str(&b, "direction", direction_name(ord->direction));
    jb_str(&b, "offset", offset_name(ord->offset));
    jb_int(&b, "volume_orign", ord->volume_orign);
    jb_int(&b, "volume_left", ord->volume_left);
    jb_str(&b, "price_type", price_type_name(ord->price_type));
    jb_put(&b, "limit_price", diff_price(ord->price_type == PRICE_LIMIT, ord->limit_price));
    jb_str(&b, "volume_condition", volume_condition_name(ord->volume_condition));
    jb_str(&b, "time_condition", time_condition_name(ord->time_condition));
    jb_int(&b, "insert_date_time", ord->insert_ns);
    jb_str(&b, "status", order_status_alive(ord->status) ? "ALIVE" : "FINISHED");
    jb_str(&b, "last_msg", ord->last_msg[0] ? ord->last_msg : order_status_name(ord->status));
    jb_str(&b, "user_id", acc_id);
    jb_int(&b, "seqno", (int64_t)ord->seq);
    jb_real(&b, "frozen_margin", ord->frozen_margin);
    return jb_done(&b);
}

void diff_trade_key(const trade *trd, char *out, size_t cap) {
    order_format_seq('T', trd->seq, out, cap);
}

json_t *diff_trade(const engine *e, const trade *trd) {
    const instrument *ins = engine_instrument_of(e, trd->instrument);
    char trade_id[32], match_id[32], exchange_order_id[QAEX_ID_LEN];
    order_format_seq('T', trd->seq, trade_id, sizeof trade_id);
    order_format_seq('M', trd->match_seq, match_id, sizeof match_id);
    json_t *full = codec_trade(e, trd); /* for the exchange order id the engine formats */
    const char *xid = full ? json_string_value(json_object_get(full, "exchange_order_id")) : NULL;
    snprintf(exchange_order_id, sizeof exchange_order_id, "%s", xid ? xid : "");
    json_decref(full);
    json_builder b = jb_new();
    jb_str(&b, "trade_id", trade_id);
    jb_str(&b, "order_id", trd->order_id);
    jb_str(&b, "exchange_trade_id", match_id);
    jb_str(&b, "exchange_order_id", exchange_order_id);
    jb_str(&b, "exchange_id", ins ? ins->spec.exchange : "");
    jb_str(&b, "instrument_id", ins ? ins->code : "");
    jb_str(&b, "direction", direction_name(trd->direction));
    jb_str(&b, "offset", offset_name(trd->offset));
    jb_int(&b, "volume", trd->volume);
    jb_real(&b, "price", trd->price);
    jb_int(&b, "trade_date_time", trd->trade_ns);
    jb_real(&b, "commission", trd->commission);
    jb_real(&b, "close_profit", trd->close_profit);
    jb_str(&b, "user_id", account_id_of(e, trd->account));
    jb_int(&b, "seqno", (int64_t)trd->seq);
    return jb_done(&b);
}

json_t *diff_position(const engine *e, const position *pos) {
    json_t *p = codec_position(e, pos);
    const instrument *ins = engine_instrument_of(e, pos->instrument);
    if (p && ins) {
        json_object_set_new(p, "instrument_id", json_string(ins->code));
        json_object_set_new(p, "exchange_id", json_string(ins->spec.exchange));
    }
    return p;
}

static json_t *positions_tree(const engine *e, const account *acc) {
    json_t *obj = json_object();
    for (uint32_t i = 0; obj; i++) {
        const position *p = engine_account_position(e, acc, i);
        if (p == NULL) break;
        const instrument *ins = engine_instrument_of(e, p->instrument);
        if (json_object_set_new(obj, ins->spec.instrument_id, diff_position(e, p)) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *orders_tree(const engine *e, const account *acc) {
    json_t *orders = json_object();
    for (const order *o = engine_order_first(e, acc); o && orders; o = engine_order_next(e, o))
        if (json_object_set_new(orders, o->order_id, diff_order(e, o)) != 0) {
            json_decref(orders);
            orders = NULL;
        }
    return orders;
}

static json_t *trades_tree(const engine *e, const account *acc) {
    json_t *trades = json_object();
    for (const trade *t = engine_trade_first(e, acc); t && trades; t = engine_trade_next(e, t)) {
        char key[32];
        diff_trade_key(t, key, sizeof key);
        if (json_object_set_new(trades, key, diff_trade(e, t)) != 0) {
            json_decref(trades);
            trades = NULL;
        }
    }
    return trades;
}

json_t *diff_day_tree(const engine *e, const account *acc) {
    char day[16];
    trading_day_compact(e, day);
    json_builder session = jb_new();
    jb_str(&session, "trading_day", day);
    json_builder b = jb_new();
    jb_str(&b, "trading_day", day);
    jb_put(&b, "session", jb_done(&session));
    jb_put(&b, "orders", orders_tree(e, acc));
    jb_put(&b, "trades", trades_tree(e, acc));
    return jb_done(&b);
}

json_t *diff_trade_tree(const engine *e, const account *acc, const char *user_key) {
    char day[16];
    trading_day_compact(e, day);
    json_t *orders = orders_tree(e, acc), *trades = trades_tree(e, acc);
    json_builder session = jb_new();
    jb_str(&session, "user_id", user_key);
    jb_str(&session, "trading_day", day);
    json_builder accounts = jb_new();
    jb_put(&accounts, "CNY", diff_account(e, acc));

    json_builder b = jb_new();
    jb_str(&b, "user_id", user_key);
    jb_str(&b, "account_id", acc->account_id);
    jb_str(&b, "trading_day", day);
    jb_put(&b, "session", jb_done(&session));
    jb_bool(&b, "trade_more_data", false);
    jb_put(&b, "accounts", jb_done(&accounts));
    jb_put(&b, "positions", positions_tree(e, acc));
    jb_put(&b, "orders", orders);
    jb_put(&b, "trades", trades);
    return jb_done(&b);
}

/* "YYYY-MM-DD HH:MM:SS.ffffff" in China time (UTC+8), as DIFF quotes carry it. */
static void diff_datetime(int64_t ns, char *out, size_t cap) {
    time_t secs = (time_t)(ns / 1000000000LL) + 8 * 3600;
    struct tm tm;
    char head[32];
    if (gmtime_r(&secs, &tm) == NULL || strftime(head, sizeof head, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        head[0] = '\0';
    snprintf(out, cap, "%s.%06lld", head, (long long)(ns % 1000000000LL / 1000));
}

json_t *diff_quote(const engine *e, const instrument *ins, int64_t ts_ns) {
    enum { LEVELS = 5 };
    market_snapshot m;
    engine_market_snapshot(ins, LEVELS, &m);
    const instrument_spec *sp = &ins->spec;
    char when[48];
    diff_datetime(ins->stats.has_trade ? ins->stats.last_trade_ns : ts_ns, when, sizeof when);
    static const char *const keys[4][LEVELS] = {
        {"ask_price1", "ask_price2", "ask_price3", "ask_price4", "ask_price5"},
        {"ask_volume1", "ask_volume2", "ask_volume3", "ask_volume4", "ask_volume5"},
        {"bid_price1", "bid_price2", "bid_price3", "bid_price4", "bid_price5"},
        {"bid_volume1", "bid_volume2", "bid_volume3", "bid_volume4", "bid_volume5"}};
    json_builder b = jb_new();
    jb_str(&b, "instrument_id", sp->instrument_id);
    jb_str(&b, "datetime", when);
    for (int i = 0; i < LEVELS; i++) {
        jb_put(&b, keys[0][i], diff_price(i < m.depth_ask, m.ask_price[i]));
        jb_int(&b, keys[1][i], m.ask_volume[i]);
        jb_put(&b, keys[2][i], diff_price(i < m.depth_bid, m.bid_price[i]));
        jb_int(&b, keys[3][i], m.bid_volume[i]);
    }
    jb_put(&b, "last_price", diff_price(true, m.last_price));
    jb_put(&b, "highest", diff_price(m.has_trade, m.high));
    jb_put(&b, "lowest", diff_price(m.has_trade, m.low));
    jb_put(&b, "open", diff_price(m.has_trade, m.open));
    jb_put(&b, "close", json_string("NaN")); /* known only once the day is over */
    jb_put(&b, "average", diff_price(m.volume > 0, m.average));
    jb_int(&b, "volume", m.volume);
    jb_real(&b, "amount", m.turnover);
    jb_int(&b, "open_interest", m.open_interest);
    jb_put(&b, "settlement", diff_price(m.has_settlement, m.settlement));
    jb_real(&b, "upper_limit", m.upper_limit);
    jb_real(&b, "lower_limit", m.lower_limit);
    jb_int(&b, "pre_open_interest", m.pre_open_interest);
    jb_real(&b, "pre_settlement", m.pre_settlement);
    jb_real(&b, "pre_close", m.pre_close);
    jb_real(&b, "price_tick", sp->price_tick);
    jb_int(&b, "price_decs", codec_price_decimals(sp->price_tick));
    jb_int(&b, "volume_multiple", sp->contract_multiplier);
    /* quote.rst's order size bounds: the [risk] volume limits, which bind both order types */
    const engine_config *cfg = engine_get_config(e);
    jb_int(&b, "max_limit_order_volume", cfg->max_order_volume);
    jb_int(&b, "min_limit_order_volume", cfg->min_order_volume);
    jb_int(&b, "max_market_order_volume", cfg->max_order_volume);
    jb_int(&b, "min_market_order_volume", cfg->min_order_volume);
    jb_real(&b, "margin", instrument_margin(ins, m.last_price, 1));
    jb_real(&b, "commission", instrument_commission(ins, m.last_price, 1));
    jb_str(&b, "status", instrument_status_name(ins->status));
    return jb_done(&b);
}

int64_t diff_kline_id(kline_period p, const kline *k) {
    return k->start_ms / (kline_period_seconds(p) * 1000);
}

static json_t *diff_bar(kline_period p, const kline *k) {
    json_builder b = jb_new();
    jb_int(&b, "datetime", k->start_ms * 1000000);
    jb_real(&b, "open", k->open);
    jb_real(&b, "high", k->high);
    jb_real(&b, "low", k->low);
    jb_real(&b, "close", k->close);
    jb_int(&b, "volume", k->volume);
    jb_int(&b, "open_oi", k->open_oi);
    jb_int(&b, "close_oi", k->close_oi);
    (void)p;
    return jb_done(&b);
}

static bool add_bar(json_t *data, kline_period p, const kline *k) {
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)diff_kline_id(p, k));
    return json_object_set_new(data, key, diff_bar(p, k)) == 0;
}

json_t *diff_klines(const instrument *ins, kline_period p, int64_t count, int64_t *left_id,
                    int64_t *right_id) {
    const market_data *m = &ins->market;
    const kline *cur = market_kline_current(m, p);
    uint32_t n = market_kline_count(m, p);
    int64_t room = count - (cur != NULL);
    uint32_t first = room <= 0 ? n : (n > room ? n - (uint32_t)room : 0);
    json_t *data = json_object();
    *left_id = *right_id = -1;
    for (uint32_t i = first; data && i < n; i++) {
        const kline *k = market_kline_at(m, p, i);
        if (*left_id < 0) *left_id = diff_kline_id(p, k);
        *right_id = diff_kline_id(p, k);
        if (!add_bar(data, p, k)) {
            json_decref(data);
            data = NULL;
        }
    }
    if (data && cur) {
        if (*left_id < 0) *left_id = diff_kline_id(p, cur);
        *right_id = diff_kline_id(p, cur);
        if (!add_bar(data, p, cur)) {
            json_decref(data);
            data = NULL;
        }
    }
    json_builder b = jb_new();
    jb_int(&b, "last_id", *right_id);
    jb_int(&b, "trading_day_start_id", *left_id);
    jb_int(&b, "trading_day_end_id", *right_id);
    jb_put(&b, "data", data);
    return jb_done(&b);
}

json_t *diff_kline_current(const instrument *ins, kline_period p) {
    const kline *cur = market_kline_current(&ins->market, p);
    if (cur == NULL) return json_object();
    json_t *data = json_object();
    if (data && !add_bar(data, p, cur)) {
        json_decref(data);
        return NULL;
    }
    json_builder b = jb_new();
    jb_int(&b, "last_id", diff_kline_id(p, cur));
    jb_int(&b, "trading_day_end_id", diff_kline_id(p, cur));
    jb_put(&b, "data", data);
    return jb_done(&b);
}
