/* Market data encoders (see market_codec.h). */
#include "proto/market_codec.h"

#include "proto/json_builder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t ms_of(int64_t ns) {
    int64_t ms = ns / 1000000;
    return (ns % 1000000 < 0) ? ms - 1 : ms;
}

static json_t *price_or_null(bool present, double price) {
    return present ? jb_real_value(price) : json_null();
}

json_t *codec_market_snapshot(const engine *e, const instrument *ins, int64_t ts_ns) {
    enum { LEVELS = 5 };
    market_snapshot m;
    engine_market_snapshot(ins, LEVELS, &m);
    char day[16];
    const char *td = engine_trading_day(e); /* YYYY-MM-DD -> YYYYMMDD */
    snprintf(day, sizeof day, "%.4s%.2s%.2s", td, td + 5, td + 8);

    json_builder b = jb_new();
    jb_str(&b, "instrument_id", ins->spec.instrument_id);
    jb_int(&b, "timestamp", ms_of(ts_ns));
    jb_str(&b, "trading_day", day);
    jb_real(&b, "last_price", m.last_price);
    jb_real(&b, "change_percent", m.change_percent);
    jb_real(&b, "change_amount", m.change_amount);
    jb_real(&b, "pre_close", m.pre_close);
    static const char *const bid_price[LEVELS] = {"bid_price1", "bid_price2", "bid_price3",
                                                  "bid_price4", "bid_price5"};
    static const char *const bid_volume[LEVELS] = {"bid_volume1", "bid_volume2", "bid_volume3",
                                                   "bid_volume4", "bid_volume5"};
    static const char *const ask_price[LEVELS] = {"ask_price1", "ask_price2", "ask_price3",
                                                  "ask_price4", "ask_price5"};
    static const char *const ask_volume[LEVELS] = {"ask_volume1", "ask_volume2", "ask_volume3",
                                                   "ask_volume4", "ask_volume5"};
    for (int i = 0; i < LEVELS; i++) {
        jb_put(&b, bid_price[i], price_or_null(i < m.depth_bid, m.bid_price[i]));
        jb_int(&b, bid_volume[i], m.bid_volume[i]);
    }
    for (int i = 0; i < LEVELS; i++) {
        jb_put(&b, ask_price[i], price_or_null(i < m.depth_ask, m.ask_price[i]));
        jb_int(&b, ask_volume[i], m.ask_volume[i]);
    }
    jb_put(&b, "open", price_or_null(m.has_trade, m.open));
    jb_put(&b, "high", price_or_null(m.has_trade, m.high));
    jb_put(&b, "low", price_or_null(m.has_trade, m.low));
    jb_int(&b, "volume", m.volume);
    jb_real(&b, "turnover", m.turnover);
    jb_int(&b, "open_interest", m.open_interest);
    jb_real(&b, "upper_limit", m.upper_limit);
    jb_real(&b, "lower_limit", m.lower_limit);
    /* the level-1 names the REST ticker always had */
    jb_put(&b, "bid_price", price_or_null(m.depth_bid > 0, m.bid_price[0]));
    jb_int(&b, "bid_volume", m.bid_volume[0]);
    jb_put(&b, "ask_price", price_or_null(m.depth_ask > 0, m.ask_price[0]));
    jb_int(&b, "ask_volume", m.ask_volume[0]);
    jb_real(&b, "amount", m.turnover);
    jb_put(&b, "average", price_or_null(m.volume > 0, m.average));
    jb_real(&b, "pre_settlement", m.pre_settlement);
    jb_put(&b, "settlement", price_or_null(m.has_settlement, m.settlement));
    jb_int(&b, "pre_open_interest", m.pre_open_interest);
    jb_str(&b, "status", instrument_status_name(ins->status));
    return jb_done(&b);
}

static json_t *book_side(const instrument *ins, direction side, int depth) {
    int64_t ticks[50], vols[50];
    if (depth > 50) depth = 50;
    int n = book_depth(&ins->book, side, depth, ticks, vols);
    json_t *arr = json_array();
    for (int i = 0; i < n && arr; i++) {
        /* the seed's Level2 entries count the orders resting at each price */
        const book_level *lv =
            book_level_at(&ins->book, side, (int32_t)(ticks[i] - ins->book.base_tick));
        json_builder b = jb_new();
        jb_real(&b, "price", instrument_tick_to_price(ins, ticks[i]));
        jb_int(&b, "volume", vols[i]);
        jb_int(&b, "order_count", lv->count);
        if (json_array_append_new(arr, jb_done(&b)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *codec_orderbook(const instrument *ins, int depth, int64_t ts_ns) {
    json_builder b = jb_new();
    jb_str(&b, "instrument_id", ins->spec.instrument_id);
    jb_put(&b, "bids", book_side(ins, DIR_BUY, depth));
    jb_put(&b, "asks", book_side(ins, DIR_SELL, depth));
    jb_int(&b, "timestamp", ms_of(ts_ns));
    return jb_done(&b);
}

json_t *codec_kline(const instrument *ins, kline_period p, const kline *k, bool finished) {
    json_builder b = jb_new();
    jb_str(&b, "instrument_id", ins->spec.instrument_id);
    jb_str(&b, "period", kline_period_name(p));
    jb_int(&b, "timestamp", k->start_ms);
    jb_real(&b, "open", k->open);
    jb_real(&b, "high", k->high);
    jb_real(&b, "low", k->low);
    jb_real(&b, "close", k->close);
    jb_int(&b, "volume", k->volume);
    jb_real(&b, "amount", k->amount);
    jb_int(&b, "open_oi", k->open_oi);
    jb_int(&b, "close_oi", k->close_oi);
    jb_int(&b, "trades", k->trades);
    jb_bool(&b, "is_finished", finished);
    return jb_done(&b);
}

static bool in_window(const kline *k, int64_t start_ms, int64_t end_ms) {
    return (start_ms == 0 || k->start_ms >= start_ms) && (end_ms == 0 || k->start_ms < end_ms);
}

json_t *codec_klines(const instrument *ins, kline_period p, int64_t count, int64_t start_ms,
                     int64_t end_ms) {
    const market_data *m = &ins->market;
    const kline *cur = market_kline_current(m, p);
    uint32_t n = market_kline_count(m, p);
    /* walk back from the newest to find where the last `count` bars in the window begin */
    int64_t want = count > 0 ? count : INT64_MAX, taken = 0;
    bool with_current = cur != NULL && in_window(cur, start_ms, end_ms);
    if (with_current) taken++;
    uint32_t first = n;
    while (first > 0 && taken < want) {
        const kline *k = market_kline_at(m, p, first - 1);
        if (start_ms != 0 && k->start_ms < start_ms) break;
        first--;
        if (in_window(k, start_ms, end_ms)) taken++;
    }
    json_t *arr = json_array();
    for (uint32_t i = first; i < n && arr; i++) {
        const kline *k = market_kline_at(m, p, i);
        if (in_window(k, start_ms, end_ms) &&
            json_array_append_new(arr, codec_kline(ins, p, k, true)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    if (arr && with_current && json_array_append_new(arr, codec_kline(ins, p, cur, false)) != 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static json_t *market_trade_json(const engine *e, const instrument *ins, const market_trade *t,
                                 bool with_parties) {
    json_builder b = jb_new();
    jb_str(&b, "instrument_id", ins->spec.instrument_id);
    jb_real(&b, "price", t->price);
    jb_int(&b, "volume", t->volume);
    jb_str(&b, "direction", direction_name(t->taker_side));
    jb_int(&b, "timestamp", ms_of(t->ts_ns));
    if (with_parties) {
        const account *buyer = engine_account_at(e, t->buyer);
        const account *seller = engine_account_at(e, t->seller);
        jb_str(&b, "buyer", buyer ? buyer->account_id : "");
        jb_str(&b, "seller", seller ? seller->account_id : "");
    }
    return jb_done(&b);
}

json_t *codec_recent_trades(const instrument *ins, int64_t limit) {
    const market_data *m = &ins->market;
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < market_trade_count(m) && (limit <= 0 || i < limit); i++) {
        if (json_array_append_new(
                arr, market_trade_json(NULL, ins, market_trade_at(m, i), false)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *codec_transactions(const engine *e, const instrument *only, int64_t limit) {
    uint32_t n_ins = engine_instrument_count(e);
    /* per instrument: how many of its newest trades are taken */
    uint32_t *next = calloc(n_ins ? n_ins : 1, sizeof *next);
    json_t *arr = next ? json_array() : NULL;
    /* a merge of the per-instrument tapes, newest match first */
    for (int64_t taken = 0; arr && (limit <= 0 || taken < limit); taken++) {
        const instrument *best_ins = NULL;
        const market_trade *best = NULL;
        uint32_t best_i = 0;
        for (uint32_t i = 0; i < n_ins; i++) {
            const instrument *ins = engine_instrument_at(e, i);
            if (only && ins != only) continue;
            const market_trade *t = market_trade_at(&ins->market, next[i]);
            if (t && (best == NULL || t->match_seq > best->match_seq)) {
                best = t;
                best_ins = ins;
                best_i = i;
            }
        }
        if (best == NULL) break;
        next[best_i]++;
        if (json_array_append_new(arr, market_trade_json(e, best_ins, best, true)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(next);
    return arr;
}

json_t *codec_order_stats(const engine *e) {
    int64_t total = 0, buy = 0, sell = 0, live = 0, filled = 0, cancelled = 0;
    json_t *by_ins = json_object();
    for (uint32_t i = 0; i < engine_account_count(e); i++) {
        const account *a = engine_account_at(e, i);
        for (const order *o = engine_order_first(e, a); o; o = engine_order_next(e, o)) {
            total++;
            if (o->direction == DIR_BUY)
                buy++;
            else
                sell++;
            if (order_status_alive(o->status)) live++;
            if (o->status == ORDER_FILLED) filled++;
            if (o->status == ORDER_CANCELLED) cancelled++;
            const instrument *ins = engine_instrument_of(e, o->instrument);
            json_t *cnt = by_ins ? json_object_get(by_ins, ins->spec.instrument_id) : NULL;
            if (by_ins)
                json_object_set_new(by_ins, ins->spec.instrument_id,
                                    json_integer(cnt ? json_integer_value(cnt) + 1 : 1));
        }
    }
    json_builder b = jb_new();
    jb_int(&b, "total_orders", total);
    jb_int(&b, "buy_orders", buy);
    jb_int(&b, "sell_orders", sell);
    jb_int(&b, "live_orders", live);
    jb_int(&b, "filled_orders", filled);
    jb_int(&b, "cancelled_orders", cancelled);
    jb_put(&b, "by_instrument", by_ins);
    return jb_done(&b);
}

int codec_price_decimals(double tick) {
    for (int d = 0; d < 8; d++) {
        double scaled = tick * pow(10, d);
        if (fabs(scaled - round(scaled)) < 1e-9) return d;
    }
    return 8;
}

/* The letters that start an instrument code: the product ("IF" of "IF2501"). */
static void product_of(const char *code, char *out, size_t cap) {
    size_t n = 0;
    while (code[n] && n + 1 < cap && !(code[n] >= '0' && code[n] <= '9')) {
        out[n] = code[n];
        n++;
    }
    out[n] = '\0';
}

/* Epoch seconds of a date at 15:00 China time, when DIFF clients consider a contract expired. */
static int64_t expire_seconds(const char *date) {
    struct tm tm = {0};
    if (date == NULL || strlen(date) != 10 ||
        sscanf(date, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_hour = 15 - 8;
    return (int64_t)timegm(&tm);
}

static const char *diff_class(instrument_type t) {
    switch (t) {
        case INSTRUMENT_OPTION:
            return "OPTION";
        case INSTRUMENT_STOCK:
            return "STOCK";
        default:
            return "FUTURE";
    }
}

json_t *codec_symbols(const engine *e) {
    json_t *doc = json_object();
    for (uint32_t i = 0; doc && i < engine_instrument_count(e); i++) {
        const instrument *ins = engine_instrument_at(e, i);
        const instrument_spec *sp = &ins->spec;
        char product[QAEX_INSTRUMENT_ID_LEN];
        product_of(ins->code, product, sizeof product);
        json_builder b = jb_new();
        jb_str(&b, "class", diff_class(sp->instrument_type));
        jb_str(&b, "instrument_id", sp->instrument_id);
        jb_str(&b, "exchange_id", sp->exchange);
        jb_str(&b, "ins_id", ins->code);
        jb_str(&b, "ins_name", sp->instrument_name);
        jb_str(&b, "product_id", product);
        jb_str(&b, "product_short_name", product);
        jb_real(&b, "price_tick", sp->price_tick);
        jb_int(&b, "price_decs", codec_price_decimals(sp->price_tick));
        jb_int(&b, "volume_multiple", sp->contract_multiplier);
        jb_real(&b, "margin_rate", sp->margin_rate);
        jb_real(&b, "commission_rate", sp->commission_rate);
        jb_real(&b, "commission_per_lot", sp->commission_per_lot);
        jb_bool(&b, "expired", ins->status == INSTRUMENT_DELISTED);
        jb_int(&b, "expire_datetime", expire_seconds(sp->expire_date));
        jb_real(&b, "pre_settlement", sp->pre_settlement);
        jb_real(&b, "pre_close", sp->pre_close);
        jb_real(&b, "upper_limit", instrument_upper_limit(ins));
        jb_real(&b, "lower_limit", instrument_lower_limit(ins));
        jb_str(&b, "status", instrument_status_name(ins->status));
        if (json_object_set_new(doc, sp->instrument_id, jb_done(&b)) != 0) {
            json_decref(doc);
            return NULL;
        }
    }
    return doc;
}
